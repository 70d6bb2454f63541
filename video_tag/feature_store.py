"""A save_dir of features: where each video's features and provenance record are, whether they are up to
date, and the lists that index the folder. Used by ``tsn_extractor.py`` and ``videotag.py --save_features``.

Two layouts, one copy of each video's features in a folder:

    one file per video (default)   <stem>_<hash>.npy (.npz for uint8) and <stem>_<hash>.json beside it
    shards (``shard_size`` N > 0)   the same two files as members of shard-NNNNNN.tar (``shards.py``),
                                    listed as save_dir/shard-NNNNNN.tar/<stem>_<hash>.npy

A video's name is ``<stem>_<hash>`` (``lists.output_stem``: 16 hex digits of the hash of its real path,
the stem made safe and short enough for any file system). Its provenance record holds the video (as listed,
real path, size, mtime; paths in ``names.text_path`` form) and the run's settings; a video counts as done
only when its features are complete and the record matches the run in every field, in the run's layout
(features stored the other way, or as another dtype, are extracted again, and the old copy is removed: a
file deleted, a shard member taken out of its index). A name whose record holds another real path (two
paths whose hashes share 64 bits) is never reused: that video fails, with the reason, into ``failed.list``.
Features stored under the names of earlier versions (``<stem>_<8 hex>``) are extracted again under the new
name and the old copy removed, with a warning.

What is done is read from the records index (``record_index.py``: one file, read once per run), checked
against the features it names (one stat of a plain feature file; a shard that is still there); the
per-video records stay the truth when the index is missing or stale. A save_dir of a million videos costs
a run two system calls (a ``lstat`` of the video, a ``stat`` of its feature file; on a long list half of
them in a helper process, ``stats.py``) and a few microseconds of Python per video of its list
(bench/bench_bookkeeping.py).

A video's own write error (a name the file system refuses: ENAMETOOLONG, EILSEQ...) fails that video into
``failed.list``; an error that every next write would meet too (ENOSPC, EDQUOT, EROFS, EIO, EACCES, EPERM:
``files.FOLDER_ERRNOS``) stops the run (``RunError``, exit 3), what was complete listed.

The lists, merged under a file lock so that extractors with different lists can share one save_dir::

    features.list      one feature path per line, for every video extracted into save_dir (this run or before)
    manifest.tsv       video<TAB>feature for the same videos
    failed.list        video<TAB>reason for every video whose last extraction failed

The video column holds ``names.text_path(video)``: the path itself, or, for a path with a TAB, CR, newline
or bytes that are not UTF-8, that path with those escaped as ``\\t``, ``\\r``, ``\\n``, ``\\xNN`` (the rows
never break; such a video is extracted like any other, its feature name made safe). A backslash is not
escaped, so two paths can be written alike (a TAB in one, the two characters ``\\t`` in the other): the
second of them in a run is refused, with the reason, into ``failed.list``.
"""
import collections
import contextlib
import io
import itertools
import json
import logging
import os
import stat
from operator import itemgetter, methodcaller

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent extractors into one folder are unsupported there
    fcntl = None

from . import feature_files, files, shards, stats
from .errors import RunError, UserError
from .names import text_path, text_paths
from .readers.lists import output_stem, path_digest
from .record_index import RecordIndex, settings_text, split_record

log = logging.getLogger(__name__)

LAYOUT = "layout (one file per video / shards)"
Plan = collections.namedtuple("Plan", "todo done failed stale provenance")


def video_provenance(video, settings, real_path=None, size_mtime=None):
    """The provenance record of ``video``'s features: path as listed, real path, size, mtime, ``settings``
    (what every feature of the run depends on: weights, precision, dtype, sizes, version). Paths are in
    ``names.text_path`` form. None when the video cannot be stat'ed (decoding will report it).
    ``real_path``, ``size_mtime`` (size, mtime_ns): what the caller already knows of the video."""
    if size_mtime is None:
        try:
            st = os.stat(video)
        except OSError:
            return None
        size_mtime = (st.st_size, st.st_mtime_ns)
    real = real_path or os.path.realpath(video)
    return {"video": text_path(video), "real_path": text_path(real), "size": size_mtime[0],
            "mtime_ns": size_mtime[1], **settings}


def legacy_stem(video, real_path):
    """The name videotag gave ``video`` before 16-digit hashes: ``<stem>_<8 hex>``."""
    return f"{os.path.splitext(os.path.basename(video))[0]}_{path_digest(real_path)[:8]}"


class Layout:
    """Names and paths in ``save_dir``: ``where`` (relative to save_dir) is ``<stem><suffix>`` for a plain
    file, ``shard-NNNNNN.tar/<stem><suffix>`` for a shard member."""

    def __init__(self, save_dir, dtype, shard_size):
        self.save_dir, self.dtype, self.shard_size = save_dir, dtype, shard_size
        self.suffix = feature_files.suffix(dtype)
        self.prefix = os.path.join(save_dir, "")

    def path(self, where):
        return self.prefix + where

    def ours(self, where):
        """True when ``where`` is in this layout and dtype."""
        return ("/" in where) == bool(self.shard_size) and where.endswith(self.suffix)

    def plain(self, stem):
        """``(feature, record)`` paths of ``stem``'s plain files when both exist (this dtype first), else None."""
        other = ".npz" if self.suffix == ".npy" else ".npy"
        record = os.path.join(self.save_dir, stem + ".json")
        for suffix in (self.suffix, other):
            feature = os.path.join(self.save_dir, stem + suffix)
            if os.path.isfile(feature):
                return (feature, record) if os.path.isfile(record) else None
        return None


def stamp(path):
    """``"size:mtime_ns"`` of a file (None when it is missing)."""
    return stamp_of(stats.stat_many([path])[0])


def stamp_of(st):
    """``stamp`` from a ``stats.stat_many`` tuple (or None)."""
    return None if st is None else f"{st[1]}:{st[2]}"


def compare(expected, settings, entry, stored_settings):
    """What differs between the record a run expects (``expected``: text real path, size, mtime_ns; its
    ``settings``) and an index ``entry`` with ``stored_settings``: a list of field names."""
    differ = [k for k, a, b in zip(("real_path", "size", "mtime_ns"), expected,
                                   (entry.real_path, entry.size, entry.mtime_ns)) if str(a) != b]
    if stored_settings is None:
        return differ + ["provenance (unreadable)"]
    return differ + [k for k in settings if stored_settings.get(k) != settings[k]]


class Names:
    """The names of videos: their real paths (one ``lstat`` per video), stems and one spelling per real path.
    What a video's look found is kept for the run (``look``): the verdict at its end compares the records with
    the video as it was when the run decided to extract it."""

    def __init__(self, suffix):
        self.suffix = suffix
        self.known, self.dirs = {}, {}  # video -> what ``look`` found; folder -> its real path + "/"

    def look(self, video):
        """``(real path, size, mtime_ns, stem)`` of ``video``, looked at once per run (size and mtime_ns None
        when it cannot be stat'ed): one ``lstat`` when it is not a link (the real paths of folders are
        cached)."""
        hit = self.known.get(video)
        if hit is None:
            self.look_all([video])
            hit = self.known[video]
        return hit

    def look_all(self, videos):
        """``look`` at each video of ``videos`` not looked at yet, their ``lstat`` calls on two cores
        (``stats.stat_many``)."""
        known, dirs, sep, S_ISLNK = self.known, self.dirs, os.sep, stat.S_ISLNK
        new = [v for v in videos if v not in known]
        for video, st in zip(new, stats.stat_many(new, follow_symlinks=False)):
            head, found, tail = video.rpartition(sep)
            if st is None or S_ISLNK(st[0]) or tail in ("", ".", ".."):
                if st is not None:
                    st = stats.stat_many([video])[0]
                real = os.path.realpath(video)
            else:
                if found and not head:
                    head = sep  # "/clip.mp4": the root, not "" (which would be the working folder)
                folder = dirs.get(head)
                if folder is None:
                    folder = dirs[head] = os.path.join(os.path.realpath(head or "."), "")
                real = folder + tail
            stem = output_stem(video, path_digest(real))
            known[video] = (real, None, None, stem) if st is None else (real, st[1], st[2], stem)

    def stem(self, video):
        """``video``'s name (``lists.output_stem``)."""
        return self.look(video)[3]

    @files.collector_paused()
    def assign(self, videos):
        """``(unique, failed, same)``: ``videos`` with one spelling per real path (the first), in order;
        {video: reason} for a video that is not extracted: its name is another real path's of the list (a
        hash collision), or its path is written in the lists (``names.text_path``) as another's (a TAB in
        one, the characters ``\\t`` in the other); {other spelling: the first}."""
        held, texts, unique, failed, same = {}, {}, [], {}, {}
        self.look_all(videos)
        known = self.known
        for v, text in zip(videos, text_paths(videos)):
            real, _, _, stem = known[v]
            first = held.setdefault(stem, v)
            if first != v:
                holder = self.known[first][0]
                if holder == real:
                    same[v] = first
                else:
                    failed[v] = collision(stem, text_path(holder))
                continue
            # Two paths are written alike only with a backslash in both (one escaped, one verbatim).
            if "\\" in text and texts.setdefault(text, v) != v:
                failed[v] = (f"its path is written as {text} in the lists, as that of another video of the list "
                             f"(a TAB, newline or bytes that are not UTF-8 in one path): rename one")
                del held[stem]
            else:
                unique.append(v)
        return unique, failed, same


class Verdict:
    """The provenance verdict: whether a video's features here match what a run would make, from the records
    index (``record_index.py``) checked against the files it names, else from the records themselves.
    ``live``: the shards in place (shared with the ``Writer``); ``legacy`` {video: index entry of its
    features named as before 16-digit hashes} (the ``Writer`` removes them once the video is saved again)."""

    def __init__(self, layout, records, names, live, feature_dim):
        self.layout, self.records, self.names, self.live = layout, records, names, live
        self.feature_dim = feature_dim  # F of the features [seg_num, F] (a record holds seg_num)
        self.legacy = {}
        self.found = {}  # video -> where its features are, for the videos ``plan`` found done

    def valid(self, entry):
        """True while the features of an index entry are as it says."""
        if "/" in entry.where:
            return entry.where.split("/", 1)[0] in self.live
        return entry.stamp == stamp(self.layout.prefix + entry.where)

    def inspect(self, stem):
        """An index entry for ``stem``'s plain files, from its record file (complete features with a readable
        record only; indexed), or None."""
        found = self.layout.plain(stem)
        if found is None:
            return None
        feature, record_path = found
        try:
            with open(record_path, encoding="utf-8") as f:
                record = json.load(f)
            settings = split_record(record)[1]
            shape = (int(settings["seg_num"]), self.feature_dim)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not feature_files.complete(feature, settings["feature_dtype"], shape):
            return None
        self.records.add(stem, os.path.basename(feature), stamp(feature), record)
        return self.records.get(stem)

    def entry(self, stem):
        """The index entry of ``stem`` whose features are as it says, else one from its plain files, else None."""
        entry = self.records.get(stem)
        if entry is not None and not self.valid(entry):
            entry = None
        if entry is None or ("/" in entry.where and not self.layout.shard_size):
            entry = self.inspect(stem) or entry  # a newer plain copy the index does not know of
        return entry

    def judge(self, video, expected, settings, key):
        """``(fresh, differ, reason)`` of ``video`` against the record a run expects (``expected``: text real
        path, size, mtime_ns; ``settings`` with their ``key``): ``fresh`` the path of its features when they
        are complete here in this layout and dtype and match, else False; ``differ`` what does not match;
        ``reason`` when the name is held by another real path (the video must not be extracted here)."""
        stem = self.names.stem(video)
        entry = self.entry(stem)
        if entry is None:
            self.find_legacy(video)
            return False, [], None
        if entry.real_path != expected[0]:
            return False, [], collision(stem, entry.real_path)
        ours = self.layout.ours(entry.where)
        if entry.key != key or entry.size != str(expected[1]) or entry.mtime_ns != str(expected[2]):
            differ = ([] if ours or entry.key != key else [LAYOUT]) + compare(
                expected, settings, entry, self.records.record_settings(entry))
        else:
            differ = [] if ours else [LAYOUT]
        return (False if differ else self.layout.prefix + entry.where), differ, None

    def matcher(self, key):
        """``matches(stem, video, real, size, mtime_ns, feature)``: ``judge``'s answer for the common case, from
        the index line as it is: True when ``stem``'s line is the very line a run of the settings ``key`` writes
        for the video (``video``, ``real``: the text paths as listed and real; its size and mtime_ns) stored
        in this layout's plain file, whose ``stamp`` is ``feature``; else False (``judge`` then decides). A
        closure: it runs once per video of a list of millions."""
        entries, suffix = self.records.entries, self.layout.suffix

        def matches(stem, video, real, size, mtime_ns, feature):
            return entries.get(stem) == f"{stem}{suffix}\t{feature}\t{video}\t{real}\t{size}\t{mtime_ns}\t{key}"

        return matches

    def find_legacy(self, video):
        """Remember where ``video``'s features named as before 16-digit hashes are, if they are its own."""
        real = self.names.look(video)[0]
        old = legacy_stem(video, real)
        entry = self.records.get(old) or self.inspect(old)
        if entry is not None and entry.real_path == text_path(real):
            self.legacy[video] = entry

    @files.collector_paused()
    def plan(self, videos, settings, overwrite=False):
        """What a run of ``settings`` has to do for ``videos``: ``Plan(todo, done, failed, stale,
        provenance)``: todo in order; done a set; failed {video: reason} (names held by other videos);
        stale a Counter of what differed; provenance {video in todo: its record}."""
        settings = split_record(settings)[1]
        key = settings_text(settings)[1]
        todo, done, failed, stale, provenance = [], set(), {}, collections.Counter(), {}
        self.names.look_all(videos)
        looks = list(map(self.names.known.__getitem__, videos))
        if self.layout.shard_size or overwrite:
            paths = features = itertools.repeat(None)
        else:  # the stamps of the plain feature files the videos would have, for the fast verdict
            prefix, suffix = self.layout.prefix, self.layout.suffix
            paths = [prefix + look[3] + suffix for look in looks]
            features = map(stamp_of, stats.stat_many(paths))
        matches, found = self.matcher(key), self.found
        reals = text_paths([look[0] for look in looks])
        for v, text, (real, size, mtime_ns, stem), real_text, path, feature in zip(
                videos, text_paths(videos), looks, reals, paths, features):
            if size is None:
                todo.append(v)
                provenance[v] = None  # decoding will say what is wrong
                continue
            if feature is not None and matches(stem, text, real_text, size, mtime_ns, feature):
                done.add(v)
                found[v] = path
                continue
            fresh, differ, reason = self.judge(v, (real_text, size, mtime_ns), settings, key)
            if reason:
                failed[v] = reason
            elif fresh and not overwrite:
                done.add(v)
                found[v] = fresh
            else:
                todo.append(v)
                stale.update(differ)
                provenance[v] = video_provenance(v, settings, real, (size, mtime_ns))
        if self.legacy:
            example = next(iter(self.legacy.values()))
            log.warning("%d video(s) have features in %s under their name from before 16-digit hashes (e.g. %s): "
                        "they are extracted again under the new name and the old copies removed",
                        len(self.legacy), self.layout.save_dir, example.where)
        return Plan(todo, done, failed, stale, provenance)

    def holder(self):
        """``holds(video, feature)``: True when ``feature`` (a path in a manifest row) holds ``video``'s
        features: its record names that video, and it is still there (the folder listed once)."""
        prefix, names = self.layout.prefix, None

        def holds(video, feature):
            nonlocal names
            if not feature.startswith(prefix):
                return False
            where = feature[len(prefix):]
            stem = os.path.basename(where)[:-4]
            entry = self.records.get(stem)
            if entry is None and "/" not in where:
                entry = self.inspect(stem)  # a folder from before the index
            if entry is None or entry.where != where or entry.video != video:
                return False
            if "/" in where:
                return where.split("/", 1)[0] in self.live
            if names is None:
                names = set(os.listdir(self.layout.save_dir))
            return where in names and entry.stem + ".json" in names

        return holds


class Writer:
    """Stores the features of a run, and keeps one copy per video: an older copy (a shard member, a plain
    file, a name from before 16-digit hashes) goes once the new one is in place; shard members are taken out
    of their shard's index in one batch per shard. ``locked``: the folder's lock (a context manager)."""

    def __init__(self, layout, records, names, verdict, locked):
        self.layout, self.records, self.names, self.verdict, self.locked = layout, records, names, verdict, locked
        self.live = verdict.live
        self.shards = shards.ShardWriter(layout.save_dir, layout.shard_size, self.placed) if layout.shard_size else None
        self.placing = {}  # stem -> (provenance, legacy entry) of the videos in the shard in progress
        self.drops = collections.defaultdict(set)  # shard -> members to take out of its index (batched)

    def save(self, video, features, provenance):
        """``FeatureStore.save``."""
        stem, dtype, suffix = self.names.stem(video), self.layout.dtype, self.layout.suffix
        buffer = io.BytesIO()
        try:
            feature_files.write(buffer, features, dtype)
        except ValueError as e:  # NaN or Inf cannot be quantised: the weights are broken, not this video
            raise RunError(f"cannot store the features of {video} as {dtype}: {e}") from None
        text = json.dumps(provenance, ensure_ascii=False, indent=1) + "\n"
        legacy = self.verdict.legacy.pop(video, None)
        self.verdict.found.pop(video, None)
        if self.shards is not None:
            self.placing[stem] = (provenance, legacy)  # before add: it may place the shard
            self.shards.add(stem + suffix, buffer.getvalue(), stem + ".json", text)
            return None
        # The record goes first and comes back last: a feature file without a matching record (e.g. killed
        # in between) is extracted again on resume, never trusted.
        output, record = self.layout.path(stem + suffix), self.layout.path(stem + ".json")
        try:
            for old in (".json", ".npy", ".npz"):
                try:
                    if old != suffix:
                        os.remove(self.layout.path(stem + old))
                except FileNotFoundError:
                    pass
                except OSError as e:  # no permission, a read-only folder: as a failed write
                    raise files.WriteError(f"cannot remove {self.layout.path(stem + old)}: {e.strerror or e}",
                                           e.errno) from None
            files.atomic_write(output, lambda f: f.write(buffer.getbuffer()))
            files.write_text(record, text)
        except files.WriteError as e:
            if e.folder_wide:
                raise
            for path in (output, record):
                with contextlib.suppress(OSError):
                    os.remove(path)
            return f"cannot store its features: {e}"
        old = self.records.get(stem)
        if old is not None and "/" in old.where:
            self.discard(old)
        self.records.add(stem, stem + suffix, stamp(output), provenance)
        self.drop_legacy(legacy)
        if len(self.records.pending) >= 1000:
            with self.locked():
                self.flush()
        return None

    def discard(self, entry):
        """Remove the copy ``entry`` names (a shard member: taken out of its index at the next flush)."""
        if "/" in entry.where:
            shard, member = entry.where.split("/", 1)
            self.drops[self.layout.path(shard)].update({member, member[:-4] + ".json"})
        else:
            for path in (entry.where, entry.stem + ".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.layout.path(path))

    def drop_legacy(self, entry):
        """Remove features named as before 16-digit hashes (their video is stored under its new name)."""
        if entry is not None:
            log.warning("removed %s: features named as before 16-digit hashes (extracted again as %s)",
                        self.layout.path(entry.where), entry.real_path)
            self.discard(entry)
            if self.records.get(entry.stem) == entry:
                self.records.remove(entry.stem)

    def take_shard(self, shard, members, present=None):
        """``members`` {feature member: record dict} of ``shard`` (in place) are their videos' one copy: older
        copies go, the index learns them (lock held). ``present``: the names in save_dir, when known."""
        name = os.path.basename(shard)
        for member, record in members.items():
            stem, where = member[:-4], f"{name}/{member}"
            old = self.records.get(stem)
            if old is not None and old.where != where:
                self.discard(old)
            for suffix in (".npy", ".npz", ".json"):  # plain copies the index may not know of
                if present is None or stem + suffix in present:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.layout.path(stem + suffix))
            self.records.add(stem, where, "", record)
        self.live.add(name)
        self.records.shard_added(name)

    def placed(self, shard, names):
        """A shard is in place (``ShardWriter``'s callback): older copies of its videos go."""
        log.info("wrote %s: %d video(s)", shard, len(names))
        placed = {name: self.placing.pop(name[:-4]) for name in names}
        with self.locked():
            self.take_shard(shard, {name: provenance for name, (provenance, _) in placed.items()})
            for _, legacy in placed.values():
                self.drop_legacy(legacy)
            self.flush()

    def flush(self):
        """Take the batched members out of their shards' indexes (one rewrite per shard), then append the
        index's new lines (lock held)."""
        drops, self.drops = self.drops, collections.defaultdict(set)
        for shard, members in drops.items():
            if os.path.isfile(shard):
                shards.drop_members(shard, members)
                if not os.path.isfile(shard):
                    self.live.discard(os.path.basename(shard))
                    self.records.shard_gone(os.path.basename(shard))
        self.records.flush()

    def close(self, interrupted=False):
        """Put the shard in progress in place (with its whole videos when interrupted); write what the
        index and the shards' indexes still have to learn."""
        try:
            if self.shards is not None:
                self.shards.close(interrupted)
        finally:
            with self.locked():
                self.flush()


class FeatureStore:
    """The features of ``save_dir`` stored as ``dtype`` in one file per video, or in shards of
    ``shard_size`` videos: ``assign`` names, ``plan`` (or ``up_to_date``) what to extract, ``save`` the videos
    of a run, then ``close``; ``write_lists`` on one process. Made of a ``Layout``, ``Names``, the records
    index, a ``Verdict`` and a ``Writer``; the lists are merged by ``merge_lists``."""

    def __init__(self, save_dir, dtype, shard_size=0, feature_dim=2048):
        if text_path(save_dir) != save_dir:
            raise UserError(f"save_dir {text_path(save_dir)}: a TAB, newline or bytes that are not UTF-8 "
                            f"in its path cannot be written into features.list; choose another folder")
        os.makedirs(save_dir, exist_ok=True)
        self.save_dir, self.dtype, self.shard_size = save_dir, dtype, int(shard_size or 0)
        self.layout = Layout(save_dir, dtype, self.shard_size)
        self.records = RecordIndex(save_dir)
        self.names = Names(self.layout.suffix)
        self.verdict = Verdict(self.layout, self.records, self.names, set(), feature_dim)
        self.writer = Writer(self.layout, self.records, self.names, self.verdict, self.locked)
        self.listing = None  # the shard files of the first look at the folder, until remove_orphans
        with self.locked():
            self.scan(first=True)

    def scan(self, first=False):
        """Take the shards the index does not know yet (written by an older videotag, or placed by a run
        killed before it wrote its lines) into the index; forget the shards that are gone (lock held)."""
        if first and not self.shard_size and self.records.stamp is not None and not self.records.shards:
            # One file per video and an index that knows no shard: nothing to take in (a listing of a folder
            # of a million files costs a second). A sharded run lists it and removes killed runs' orphans.
            listing = []
        else:
            listing = shards.shard_files(self.save_dir)
        if first:
            self.listing = listing
        found = {os.path.basename(s): s for s in shards.shards_in(self.save_dir, listing)}
        live = self.verdict.live
        live.clear()
        live.update(found)
        for name in sorted(self.records.shards - live):
            self.records.shard_gone(name)
        new = [name for name in found if name not in self.records.shards]
        present = set(os.listdir(self.save_dir)) if new else None
        for name in new:
            shard = found[name]
            if name not in self.records.shards:
                try:
                    self.writer.take_shard(shard, _records_of(shard), present)
                except (OSError, ValueError) as e:
                    log.warning("skipped shard %s: %s", shard, e)
        self.writer.flush()

    def name(self, video):
        """``video``'s feature file name: ``<stem>.npy`` (``.npz`` for uint8)."""
        return self.names.stem(video) + self.layout.suffix

    def assign(self, videos):
        """``Names.assign``."""
        return self.names.assign(videos)

    def plan(self, videos, settings, seg_num, feature_dim, overwrite=False):
        """``Verdict.plan`` of ``videos`` for a run of ``settings`` (features [seg_num, feature_dim])."""
        self.verdict.feature_dim = feature_dim
        return self.verdict.plan(videos, settings, overwrite)

    def up_to_date(self, video, expected, seg_num, feature_dim):
        """``(True, [])`` when ``video``'s features are complete in this layout and dtype and their record
        matches ``expected`` (a ``video_provenance``; all but the path as listed); else ``(False, [what
        differs])`` (the name held by another real path counts as not up to date)."""
        if expected is None:
            return False, []
        self.verdict.feature_dim = feature_dim
        per_video, settings = split_record(expected)
        fresh, differ, _ = self.verdict.judge(
            video, (per_video["real_path"], per_video["size"], per_video["mtime_ns"]), settings,
            settings_text(settings)[1])
        return bool(fresh), differ

    def done(self, videos, settings, seg_num, feature_dim):
        """The videos of ``videos`` whose features here are complete and match ``settings`` (the index and
        the shards read anew: other processes may have added to them)."""
        with self.locked():
            self.records.refresh()
            if self.shard_size:  # one file per video: the index says all (a listing of the folder is slow)
                self.scan()
        return self.plan(videos, settings, seg_num, feature_dim).done

    def location(self, video):
        """Where ``video``'s features are (a path or shard member), or None."""
        found = self.verdict.found.get(video)
        if found is not None:
            return found
        entry = self.records.get(self.names.stem(video))
        return self.layout.prefix + entry.where if entry is not None and self.layout.ours(entry.where) else None

    def save(self, video, features, provenance):
        """Store ``features`` [T, F] float32 of ``video`` as this store's dtype, with its provenance record
        (a ``video_provenance``). With shards, they are done once their shard is in place. Returns None, or
        the reason this video could not be stored (an ``OSError`` of its own, e.g. a name the file system
        refuses: it goes to failed.list); raises ``RunError`` when the folder cannot take any more (a full
        disk, a read-only file system, no permission)."""
        return self.writer.save(video, features, provenance)

    def close(self, interrupted=False):
        """``Writer.close``."""
        self.writer.close(interrupted)

    def remove_orphans(self):
        """Delete the unfinished shards of killed runs (one process should, before any writes)."""
        listing, self.listing = self.listing, None
        for part in shards.remove_orphans(self.save_dir, listing):
            log.warning("removed %s: an unfinished shard of a killed run (its videos are extracted again)", part)

    @contextlib.contextmanager
    def locked(self):
        """The folder's lock (``.videotag.lock``) between processes, where the OS offers one."""
        with open(os.path.join(self.save_dir, ".videotag.lock"), "a") as f:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f, fcntl.LOCK_UN)

    def features_of(self, videos, failed, done):
        """[where each video's features are, or None when it is not in ``done`` or is in ``failed``]."""
        found = self.verdict.found
        if found.keys() == done:  # the videos ``plan`` found done and no other (the common case): C loops
            features = list(map(found.get, videos))
        else:
            features = [found.get(v) or self.location(v) if v in done else None for v in videos]
        return [None if v in failed else f for v, f in zip(videos, features)] if failed else features

    def write_lists(self, videos, failed, done):
        """Update ``features.list``, ``manifest.tsv`` and ``failed.list`` with this run's ``videos``
        (``failed`` {video: reason}, ``done`` the set of videos complete here). Returns {video: feature
        path} of the done videos.

        The lists index the whole folder: rows of videos of other lists (another extractor writing into the
        same folder, before or at the same time) are kept, under the lock, as long as the record of their
        features (in the index) names that video and the features are still there. This run's videos are
        listed in list order after them.
        """
        with self.locked(), files.collector_paused():
            self.writer.flush()
            self.records.refresh()
            features = self.features_of(videos, failed, done)
            manifest, failures, others = merge_lists(
                _read_rows(os.path.join(self.save_dir, "manifest.tsv")),
                _read_rows(os.path.join(self.save_dir, "failed.list")),
                list(zip(text_paths(videos), features)),
                {text_path(v): one_line(r) for v, r in failed.items()}, self.verdict.holder())
            self.writer.flush()  # what the verdict read from records files

            def write(name, lines):
                files.write_text(os.path.join(self.save_dir, name), "".join(lines))

            write("features.list", ("\n".join(manifest.values()), "\n" if manifest else ""))
            write("manifest.tsv", ("\n".join(map("\t".join, manifest.items())), "\n" if manifest else ""))
            write("failed.list", (f"{v}\t{r}\n" for v, r in failures.items()))
        outputs = dict(zip(videos, features))
        if None in features:
            outputs = {v: f for v, f in outputs.items() if f is not None}
        log.info("%d feature file(s) of this list listed in %s%s; %d failed", len(outputs),
                 os.path.join(self.save_dir, "features.list"),
                 f" (and {others} of other lists extracted into the same folder)" if others else "", len(failed))
        if failed:
            log.warning("%d video(s) could not be read: see %s", len(failed),
                        os.path.join(self.save_dir, "failed.list"))
        return outputs


def merge_lists(manifest_rows, failed_rows, mine, failed, holds):
    """The rows of ``manifest.tsv`` and ``failed.list`` after a run: ``({video: feature}, {video: reason},
    the number of rows of other lists kept)`` in file order. ``manifest_rows``/``failed_rows``: the rows there
    now; ``mine``: (video, feature or None) of this run's videos in list order (a video listed twice has one
    feature); ``failed``: {video: reason} of this run; ``holds(video, feature)`` says whether an old row is
    still true. Rows of this run's videos are replaced; a feature is listed once."""
    ours = set(map(itemgetter(0), mine))
    ours.update(failed)  # rows of these are replaced
    manifest = {row[0]: row[1] for row in manifest_rows
                if len(row) == 2 and row[0] not in ours and holds(row[0], row[1])}
    kept = len(manifest)
    listed = set(manifest.values())
    if all(map(itemgetter(1), mine)):  # no None (failed, or not done): C loops
        new = dict(mine)
    else:
        new = {video: feature for video, feature in mine if feature is not None}
    features = set(new.values())
    if len(features) == len(new) and listed.isdisjoint(features):
        manifest.update(new)  # the common case, no feature twice: C loops over a list of millions
    else:
        for video, feature in mine:
            if feature is not None and feature not in listed:
                manifest[video] = feature
                listed.add(feature)
    old_failed = {row[0]: row[1] for row in failed_rows if len(row) == 2 and row[0] not in ours}
    return manifest, {**old_failed, **failed}, kept


def collision(stem, holder):
    """The reason a video is not extracted when its name is held by another real path."""
    return (f"its feature name {stem} is already that of {holder} (their path hashes share 64 bits): rename or "
            f"move one of the two videos, or extract it into another save_dir")


def one_line(reason):
    return " ".join(str(reason).split())


def _records_of(shard):
    """{feature member: record dict} of a shard (records that cannot be read are left out)."""
    index = shards.read_index(shard)
    found = {}
    with open(shard, "rb") as f:
        for member in index:
            record = member[:-4] + ".json"
            if member.endswith((".npy", ".npz")) and record in index:
                offset, size = index[record]
                f.seek(offset)
                try:
                    found[member] = json.loads(f.read(size))
                except ValueError:
                    continue
    return found


def _read_rows(path):
    """The tab-separated rows of one of the lists (none if it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return []
    return list(map(methodcaller("split", "\t"), filter(str.strip, text.split("\n"))))
