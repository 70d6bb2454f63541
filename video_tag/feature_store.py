"""A save_dir of features: where each video's features and provenance record are, whether they are up to
date, and the lists that index the folder. Used by ``tsn_extractor.py`` and ``videotag.py --save_features``.

Two layouts, one copy of each video's features in a folder:

    one file per video (default)   <stem>_<hash>.npy (.npz for uint8) and <stem>_<hash>.json beside it
    shards (``shard_size`` N > 0)   the same two files as members of shard-NNNNNN.tar (``shards.py``),
                                    listed as save_dir/shard-NNNNNN.tar/<stem>_<hash>.npy

A video's name is ``<stem>_<hash>`` (``lists.output_stem``: 16 hex digits of the hash of its real path,
the stem made safe and short enough for any file system). Its provenance record holds the video (as listed,
real path, size, mtime; paths in ``files.text_path`` form) and the run's settings; a video counts as done
only when its features are complete and the record matches the run in every field, in the run's layout
(features stored the other way, or as another dtype, are extracted again, and the old copy is removed: a
file deleted, a shard member taken out of its index). A name whose record holds another real path (two
paths whose hashes share 64 bits) is never reused: that video fails, with the reason, into ``failed.list``.
Features named as before videotag 1.x's 16-digit names (``<stem>_<8 hex>``) are extracted again under the
new name and the old copy removed, with a warning.

What is done is read from the records index (``record_index.py``: one file, read once per run), checked
against the files it names; the per-video records stay the truth when the index is missing or stale.

The lists, merged under a file lock so that extractors with different lists can share one save_dir::

    features.list      one feature path per line, for every video extracted into save_dir (this run or before)
    manifest.tsv       video<TAB>feature for the same videos
    failed.list        video<TAB>reason for every video whose last extraction failed

The video column holds ``files.text_path(video)``: the path itself, or, for a path with a TAB, CR, newline
or bytes that are not UTF-8, that path with those escaped as ``\\t``, ``\\r``, ``\\n``, ``\\xNN``.
"""
import collections
import contextlib
import io
import json
import logging
import os
import stat

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent extractors into one folder are unsupported there
    fcntl = None

from . import feature_files, files, shards
from .errors import RunError, UserError
from .readers.lists import output_stem, path_digest
from .record_index import RecordIndex, settings_text, split_record

log = logging.getLogger(__name__)

LAYOUT = "layout (one file per video / shards)"
Plan = collections.namedtuple("Plan", "todo done failed stale provenance")


def video_provenance(video, settings, real_path=None, st=None):
    """The provenance record of ``video``'s features: path as listed, real path, size, mtime, ``settings``
    (what every feature of the run depends on: weights, precision, dtype, sizes, version). Paths are in
    ``files.text_path`` form. None when the video cannot be stat'ed (decoding will report it)."""
    if st is None:
        try:
            st = os.stat(video)
        except OSError:
            return None
    real = real_path or os.path.realpath(video)
    return {"video": files.text_path(video), "real_path": files.text_path(real), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, **settings}


def legacy_stem(video, real_path):
    """The name videotag gave ``video`` before 16-digit hashes: ``<stem>_<8 hex>``."""
    return f"{os.path.splitext(os.path.basename(video))[0]}_{path_digest(real_path)[:8]}"


class Layout:
    """Names and paths in ``save_dir``: ``where`` (relative to save_dir) is ``<stem><suffix>`` for a plain
    file, ``shard-NNNNNN.tar/<stem><suffix>`` for a shard member."""

    def __init__(self, save_dir, dtype, shard_size):
        self.save_dir, self.dtype, self.shard_size = save_dir, dtype, shard_size
        self.suffix = feature_files.suffix(dtype)

    def path(self, where):
        return os.path.join(self.save_dir, where)

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


def stamp(*paths):
    """``"size:mtime_ns,..."`` of files (None when one is missing)."""
    try:
        return ",".join(f"{st.st_size}:{st.st_mtime_ns}" for st in map(os.stat, paths))
    except OSError:
        return None


def compare(expected, settings, entry, stored_settings):
    """What differs between the record a run expects (``expected``: text real path, size, mtime_ns; its
    ``settings``) and an index ``entry`` with ``stored_settings``: a list of field names."""
    differ = [k for k, a, b in zip(("real_path", "size", "mtime_ns"), expected,
                                   (entry.real_path, entry.size, entry.mtime_ns)) if str(a) != b]
    if stored_settings is None:
        return differ + ["provenance (unreadable)"]
    return differ + [k for k in settings if stored_settings.get(k) != settings[k]]


class FeatureStore:
    """The features of ``save_dir`` stored as ``dtype`` in one file per video, or in shards of
    ``shard_size`` videos. ``plan`` (or ``up_to_date``) what to extract, ``save`` the videos of a run, then
    ``close``; ``write_lists`` on one process."""

    def __init__(self, save_dir, dtype, shard_size=0, feature_dim=2048):
        if files.text_path(save_dir) != save_dir:
            raise UserError(f"save_dir {files.text_path(save_dir)}: a TAB, newline or bytes that are not UTF-8 "
                            f"in its path cannot be written into features.list; choose another folder")
        os.makedirs(save_dir, exist_ok=True)
        self.save_dir, self.dtype, self.shard_size = save_dir, dtype, int(shard_size or 0)
        self.feature_dim = feature_dim  # F of the features [seg_num, F] (a record holds seg_num)
        self.layout = Layout(save_dir, dtype, self.shard_size)
        self.writer = shards.ShardWriter(save_dir, self.shard_size, self._placed) if self.shard_size else None
        self.records = RecordIndex(save_dir)
        self.stems, self.dirs, self.legacy, self.placing = {}, {}, {}, {}
        self.drops = collections.defaultdict(set)  # shard -> members to take out of its index (batched)
        with self.locked():
            self.scan()

    # -- names ------------------------------------------------------------------------------------------

    def probe(self, video):
        """``(real path, os.stat_result or None)`` of ``video``: one ``lstat`` when it is not a link (the real
        paths of folders are cached)."""
        head, tail = os.path.split(video)
        try:
            st = os.lstat(video)
        except OSError:
            return os.path.realpath(video), None
        if stat.S_ISLNK(st.st_mode) or tail in ("", ".", ".."):
            try:
                st = os.stat(video)
            except OSError:
                st = None
            return os.path.realpath(video), st
        folder = self.dirs.get(head)
        if folder is None:
            folder = self.dirs[head] = os.path.realpath(head or ".")
        return os.path.join(folder, tail), st

    def stem(self, video, real_path=None):
        """``video``'s name (``lists.output_stem``), once per video."""
        stem = self.stems.get(video)
        if stem is None:
            real = real_path or self.probe(video)[0]
            stem = self.stems[video] = output_stem(video, path_digest(real))
        return stem

    def name(self, video):
        """``video``'s feature file name: ``<stem>.npy`` (``.npz`` for uint8)."""
        return self.stem(video) + self.layout.suffix

    def assign(self, videos):
        """``(unique, failed, same)``: ``videos`` with one spelling per real path (the first), in order;
        {video: reason} for a video that is not extracted: its name is another real path's of the list (a
        hash collision), or its path is written in the lists (``files.text_path``) as another's (a TAB in
        one, the characters ``\\t`` in the other); {other spelling: the first}."""
        held, texts, unique, failed, same = {}, {}, [], {}, {}
        for v in videos:
            real = self.probe(v)[0]
            stem = self.stem(v, real)
            first = held.setdefault(stem, (real, v))
            text = files.text_path(v)
            if first[1] != v:
                if first[0] == real:
                    same[v] = first[1]
                else:
                    failed[v] = collision(stem, files.text_path(first[0]))
            elif texts.setdefault(text, v) != v:
                failed[v] = (f"its path is written as {text} in the lists, as that of another video of the list "
                             f"(a TAB, newline or bytes that are not UTF-8 in one path): rename one")
                del held[stem]
            else:
                unique.append(v)
        return unique, failed, same

    # -- what is done -----------------------------------------------------------------------------------

    def scan(self):
        """Take the shards the index does not know yet (written by an older videotag, or placed by a run
        killed before it wrote its lines) into the index; forget the shards that are gone (lock held)."""
        found = {os.path.basename(s): s for s in shards.shards_in(self.save_dir)}
        self.live = set(found)
        for name in sorted(self.records.shards - self.live):
            self.records.shard_gone(name)
        for name, shard in found.items():
            if name not in self.records.shards:
                try:
                    self._take_shard(shard, _records_of(shard))
                except ValueError as e:
                    log.warning("skipped shard %s: %s", shard, e)
        self._flush()

    def _valid(self, entry):
        """True while the files of an index entry are as it says."""
        if "/" in entry.where:
            return entry.where.split("/", 1)[0] in self.live
        path = self.layout.path(entry.where)
        return entry.stamp == stamp(path, os.path.join(self.save_dir, entry.stem + ".json"))

    def _inspect(self, stem):
        """An index entry for ``stem``'s plain files, from its record file (complete features with a readable
        record only), or None."""
        found = self.layout.plain(stem)
        if found is None:
            return None
        feature, record_path = found
        try:
            with open(record_path, encoding="utf-8") as f:
                record = json.load(f)
            per_video, settings = split_record(record)
            shape = (int(settings["seg_num"]), self.feature_dim)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not feature_files.complete(feature, settings["feature_dtype"], shape):
            return None
        self.records.add(stem, os.path.basename(feature), stamp(feature, record_path), record)
        return self.records.get(stem)

    def _entry(self, stem):
        """The index entry of ``stem`` whose files are as it says, else one from its plain files, else None."""
        entry = self.records.get(stem)
        if entry is not None and not self._valid(entry):
            entry = None
        if entry is None or ("/" in entry.where and not self.shard_size):
            entry = self._inspect(stem) or entry  # a newer plain copy the index does not know of
        return entry

    def judge(self, video, expected, settings, key):
        """``(fresh, differ, reason)`` of ``video`` against the record a run expects (``expected``: text real
        path, size, mtime_ns; ``settings`` with their ``key``): fresh when its features are complete here in
        this layout and dtype and match; ``differ`` what does not; ``reason`` when the name is held by another
        real path (the video must not be extracted here)."""
        stem = self.stem(video)
        entry = self._entry(stem)
        if entry is None:
            self._find_legacy(video)
            return False, [], None
        if entry.real_path != expected[0]:
            return False, [], collision(stem, entry.real_path)
        differ = [] if self.layout.ours(entry.where) or entry.key != key else [LAYOUT]
        if entry.key != key or entry.size != str(expected[1]) or entry.mtime_ns != str(expected[2]):
            differ += compare(expected, settings, entry, self.records.record_settings(entry))
        elif not self.layout.ours(entry.where):
            differ = [LAYOUT]
        return not differ, differ, None

    def _find_legacy(self, video):
        """Remember where ``video``'s features named as before 16-digit hashes are (removed once saved)."""
        real = self.probe(video)[0]
        old = legacy_stem(video, real)
        entry = self.records.get(old) or self._inspect(old)
        if entry is not None and entry.real_path == files.text_path(real):
            self.legacy[video] = entry

    def plan(self, videos, settings, seg_num, feature_dim, overwrite=False):
        """What a run of ``settings`` has to do for ``videos``: ``Plan(todo, done, failed, stale,
        provenance)``: todo in order; done a set; failed {video: reason} (names held by other videos);
        stale a Counter of what differed; provenance {video in todo: its record}."""
        self.feature_dim = feature_dim
        settings = split_record(settings)[1]
        key = settings_text(settings)[1]
        todo, done, failed, stale, provenance = [], set(), {}, collections.Counter(), {}
        for v in videos:
            real, st = self.probe(v)
            if st is None:
                todo.append(v)
                provenance[v] = None  # decoding will say what is wrong
                continue
            fresh, differ, reason = self.judge(v, (files.text_path(real), st.st_size, st.st_mtime_ns), settings, key)
            if reason:
                failed[v] = reason
            elif fresh and not overwrite:
                done.add(v)
            else:
                todo.append(v)
                stale.update(differ)
                provenance[v] = video_provenance(v, settings, real, st)
        if self.legacy:
            example = next(iter(self.legacy.values()))
            log.warning("%d video(s) have features in %s under their name from before 16-digit hashes (e.g. %s): "
                        "they are extracted again under the new name and the old copies removed",
                        len(self.legacy), self.save_dir, example.where)
        return Plan(todo, done, failed, stale, provenance)

    def up_to_date(self, video, expected, seg_num, feature_dim):
        """``(True, [])`` when ``video``'s features are complete in this layout and dtype and their record
        matches ``expected`` (a ``video_provenance``; all but the path as listed); else ``(False, [what
        differs])`` (the name held by another real path counts as not up to date)."""
        if expected is None:
            return False, []
        self.feature_dim = feature_dim
        per_video, settings = split_record(expected)
        fresh, differ, _ = self.judge(video, (per_video["real_path"], per_video["size"], per_video["mtime_ns"]),
                                      settings, settings_text(settings)[1])
        return fresh, differ

    def done(self, videos, settings, seg_num, feature_dim):
        """The videos of ``videos`` whose features here are complete and match ``settings`` (the index and
        the shards read anew: other processes may have added to them)."""
        with self.locked():
            self.records.refresh()
            self.scan()
        return self.plan(videos, settings, seg_num, feature_dim).done

    def location(self, video):
        """Where ``video``'s features are (a path or shard member), or None."""
        entry = self.records.get(self.stem(video))
        return self.layout.path(entry.where) if entry is not None and self.layout.ours(entry.where) else None

    # -- writing ----------------------------------------------------------------------------------------

    def save(self, video, features, provenance):
        """Store ``features`` [T, F] float32 of ``video`` as this store's dtype, with its provenance record
        (a ``video_provenance``). With shards, they are done once their shard is in place. Returns None, or
        the reason this video could not be stored (an ``OSError`` of its own, e.g. a name the file system
        refuses: it goes to failed.list); raises ``RunError`` when the folder cannot take any more (a full
        disk, a read-only file system, no permission)."""
        stem = self.stem(video)
        buffer = io.BytesIO()
        try:
            feature_files.write(buffer, features, self.dtype)
        except ValueError as e:  # NaN or Inf cannot be quantised: the weights are broken, not this video
            raise RunError(f"cannot store the features of {video} as {self.dtype}: {e}") from None
        text = json.dumps(provenance, ensure_ascii=False, indent=1) + "\n"
        if self.writer is not None:
            self.placing[stem] = (provenance, self.legacy.pop(video, None))  # before add: it may place the shard
            self.writer.add(stem + self.layout.suffix, buffer.getvalue(), stem + ".json", text)
            return None
        # The record goes first and comes back last: a feature file without a matching record (e.g. killed
        # in between) is extracted again on resume, never trusted.
        output, record = os.path.join(self.save_dir, stem + self.layout.suffix), os.path.join(self.save_dir, stem + ".json")
        try:
            for old in (".json", ".npy", ".npz"):
                with contextlib.suppress(FileNotFoundError):
                    if self.layout.path(stem + old) != output:
                        os.remove(self.layout.path(stem + old))
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
            self._discard(old)
        self.records.add(stem, stem + self.layout.suffix, stamp(output, record), provenance)
        self._drop_legacy(self.legacy.pop(video, None))
        if len(self.records.pending) >= 1000:
            with self.locked():
                self._flush()
        return None

    def _discard(self, entry):
        """Remove the copy ``entry`` names (a shard member: taken out of its index at the next flush)."""
        if "/" in entry.where:
            shard, member = entry.where.split("/", 1)
            self.drops[self.layout.path(shard)].update({member, member[:-4] + ".json"})
        else:
            for path in (entry.where, entry.stem + ".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.layout.path(path))

    def _drop_legacy(self, entry):
        if entry is not None:
            log.warning("removed %s: features named as before 16-digit hashes (extracted again as %s)",
                        self.layout.path(entry.where), entry.real_path)
            self._discard(entry)
            if self.records.get(entry.stem) is entry:
                self.records.remove(entry.stem)

    def _take_shard(self, shard, members):
        """``members`` {feature member: record dict} of ``shard`` (in place) are their videos' one copy: older
        copies go, the index learns them (lock held)."""
        name = os.path.basename(shard)
        for member, record in members.items():
            stem, where = member[:-4], f"{name}/{member}"
            old = self.records.get(stem)
            if old is not None and old.where != where:
                self._discard(old)
            for suffix in (".npy", ".npz", ".json"):  # plain copies the index may not know of
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.layout.path(stem + suffix))
            self.records.add(stem, where, "", record)
        self.live.add(name)
        self.records.shard_added(name)

    def _placed(self, shard, names):
        """A shard is in place: older copies of its videos (in other shards, or as files) go."""
        log.info("wrote %s: %d video(s)", shard, len(names))
        placed = {name: self.placing.pop(name[:-4]) for name in names}
        with self.locked():
            self._take_shard(shard, {name: provenance for name, (provenance, _) in placed.items()})
            for _, legacy in placed.values():
                self._drop_legacy(legacy)
            self._flush()

    def _flush(self):
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

    def remove_orphans(self):
        """Delete the unfinished shards of killed runs (one process should, before any writes)."""
        for part in shards.remove_orphans(self.save_dir):
            log.warning("removed %s: an unfinished shard of a killed run (its videos are extracted again)", part)

    def close(self, interrupted=False):
        """Put the shard in progress in place (or drop it when interrupted mid-video); write what the index
        and the shards' indexes still have to learn."""
        try:
            if self.writer is not None:
                self.writer.close(interrupted)
        finally:
            with self.locked():
                self._flush()

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

    # -- the lists --------------------------------------------------------------------------------------

    def write_lists(self, videos, failed, done):
        """Update ``features.list``, ``manifest.tsv`` and ``failed.list`` with this run's ``videos``
        (``failed`` {video: reason}, ``done`` the set of videos complete here). Returns {video: feature
        path} of the done videos.

        The lists index the whole folder: rows of videos of other lists (another extractor writing into the
        same folder, before or at the same time) are kept, under the lock, as long as the record of their
        features (in the index) names that video and the features are still there. This run's videos are
        listed in list order after them.
        """
        with self.locked():
            self._flush()
            self.records.refresh()
            outputs = {v: self.location(v) for v in videos if v in done and v not in failed}
            rows = merge_lists(_read_rows(os.path.join(self.save_dir, "manifest.tsv")),
                               _read_rows(os.path.join(self.save_dir, "failed.list")),
                               [(files.text_path(v), outputs.get(v)) for v in videos],
                               {files.text_path(v): one_line(r) for v, r in failed.items()}, self._holds())
            manifest, failures = rows
            self._flush()  # what _holds read from records files

            def write(name, lines):
                files.write_text(os.path.join(self.save_dir, name), "".join(lines))

            write("features.list", (f + "\n" for f in manifest.values()))
            write("manifest.tsv", (f"{v}\t{f}\n" for v, f in manifest.items()))
            write("failed.list", (f"{v}\t{r}\n" for v, r in failures.items()))
        outputs = {v: f for v, f in outputs.items() if f is not None}
        others = len(manifest) - sum(1 for v in videos if files.text_path(v) in manifest)
        log.info("%d feature file(s) of this list listed in %s%s; %d failed", len(outputs),
                 os.path.join(self.save_dir, "features.list"),
                 f" (and {others} of other lists extracted into the same folder)" if others else "", len(failed))
        if failed:
            log.warning("%d video(s) could not be read: see %s", len(failed),
                        os.path.join(self.save_dir, "failed.list"))
        return outputs

    def _holds(self):
        """``holds(video, feature)``: True when ``feature`` (a path in a manifest row) holds ``video``'s
        features: its record names that video, and it is still there."""
        prefix = os.path.join(self.save_dir, "")
        names = None

        def holds(video, feature):
            nonlocal names
            if not feature.startswith(prefix):
                return False
            where = feature[len(prefix):]
            stem = os.path.basename(where)[:-4]
            entry = self.records.get(stem)
            if entry is None and "/" not in where:
                entry = self._inspect(stem)  # a folder from before the index
            if entry is None or entry.where != where or entry.video != video:
                return False
            if "/" in where:
                return where.split("/", 1)[0] in self.live
            if names is None:
                names = set(os.listdir(self.save_dir))
            return where in names and entry.stem + ".json" in names

        return holds


def merge_lists(manifest_rows, failed_rows, mine, failed, holds):
    """The rows of ``manifest.tsv`` and ``failed.list`` after a run: ``({video: feature}, {video: reason})``
    in file order. ``manifest_rows``/``failed_rows``: the rows there now; ``mine``: (video, feature or None)
    of this run's videos in list order; ``failed``: {video: reason} of this run; ``holds(video, feature)``
    says whether an old row is still true. Rows of this run's videos are replaced; a feature is listed once."""
    ours = {v for v, _ in mine} | set(failed)  # rows of these are replaced
    manifest = {row[0]: row[1] for row in manifest_rows
                if len(row) == 2 and row[0] not in ours and holds(row[0], row[1])}
    listed = set(manifest.values())
    for video, feature in mine:
        if feature is not None and feature not in listed:  # None: failed, or not done
            manifest[video] = feature
            listed.add(feature)
    old_failed = {row[0]: row[1] for row in failed_rows if len(row) == 2 and row[0] not in ours}
    return manifest, {**old_failed, **failed}


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
    for member in index:
        if member.endswith((".npy", ".npz")) and member[:-4] + ".json" in index:
            try:
                found[member] = json.loads(shards.read_member(os.path.join(shard, member[:-4] + ".json")))
            except (OSError, ValueError):
                continue
    return found


def _read_rows(path):
    """The tab-separated rows of one of the lists (none if it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []
