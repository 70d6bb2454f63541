"""A save_dir of features: where each video's features and provenance record are, whether they are up to
date, and the lists that index the folder. Used by ``tsn_extractor.py`` and ``videotag.py --save_features``.

Two layouts, one copy of each video's features in a folder:

    one file per video (default)   <stem>_<hash>.npy (.npz for uint8) and <stem>_<hash>.json beside it
    shards (``shard_size`` N > 0)   the same two files as members of shard-NNNNNN.tar (``shards.py``),
                                    listed as save_dir/shard-NNNNNN.tar/<stem>_<hash>.npy

A video's name is ``<stem>_<hash>`` (``lists.output_stem``): the same video always maps to the same name,
different videos never share one. Its provenance record holds the video (as listed, real path, size,
mtime) and the run's settings; a video counts as done only when its features are complete and the record
matches the run in every field, in the run's layout (features stored the other way, or as another dtype,
are extracted again, and the old copy is removed: a file deleted, a shard member taken out of its index).

The lists, merged under a file lock so that extractors with different lists can share one save_dir::

    features.list      one feature path per line, for every video extracted into save_dir (this run or before)
    manifest.tsv       video<TAB>feature for the same videos
    failed.list        video<TAB>reason for every video whose last extraction failed
"""
import contextlib
import io
import json
import logging
import os

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent extractors into one folder are unsupported there
    fcntl = None

from . import feature_files, files, shards
from .errors import RunError
from .readers.lists import output_stem

log = logging.getLogger(__name__)


def video_provenance(video, settings):
    """The provenance record of ``video``'s features: path as listed, real path, size, mtime, ``settings``
    (what every feature of the run depends on: weights, precision, dtype, sizes, version). None when the
    video cannot be stat'ed (decoding will report it)."""
    try:
        st = os.stat(video)
    except OSError:
        return None
    return {"video": video, "real_path": os.path.realpath(video), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, **settings}


class FeatureStore:
    """The features of ``save_dir`` stored as ``dtype`` in one file per video, or in shards of
    ``shard_size`` videos. ``save`` the videos of a run, then ``close``; ``write_lists`` on one process."""

    def __init__(self, save_dir, dtype, shard_size=0):
        os.makedirs(save_dir, exist_ok=True)
        self.save_dir, self.dtype, self.shard_size = save_dir, dtype, int(shard_size or 0)
        self.writer = shards.ShardWriter(save_dir, self.shard_size, self._placed) if self.shard_size else None
        self.scan()

    def remove_orphans(self):
        """Delete the unfinished shards of killed runs (one process should, before any writes)."""
        for part in shards.remove_orphans(self.save_dir):
            log.warning("removed %s: an unfinished shard of a killed run (its videos are extracted again)", part)

    def scan(self):
        """Read the shards' indexes: ``self.members`` {feature member: [shards holding it, oldest first]}."""
        self.members = {}
        for shard in shards.shards_in(self.save_dir):
            for member in shards.read_index(shard):
                if not member.endswith(".json"):
                    self.members.setdefault(member, []).append(shard)

    def name(self, video):
        """``video``'s feature file name: ``<stem>_<hash>.npy`` (``.npz`` for uint8)."""
        return output_stem(video) + feature_files.suffix(self.dtype)

    def _stored(self, stem, sharded):
        """``(features, record)`` paths of ``stem`` in one layout, features of this store's dtype first, else
        of the other; (None, None)."""
        own = feature_files.suffix(self.dtype)
        for suffix in (own, ".npz" if own == ".npy" else ".npy"):
            if sharded:
                held = self.members.get(stem + suffix)
                if held:
                    return os.path.join(held[-1], stem + suffix), os.path.join(held[-1], stem + ".json")
            else:
                path = os.path.join(self.save_dir, stem + suffix)
                if os.path.isfile(path):
                    return path, os.path.join(self.save_dir, stem + ".json")
        return None, None

    def location(self, video):
        """Where ``video``'s features are in this store's layout and dtype (a path or shard member), or None."""
        stem = output_stem(video)
        path = self._stored(stem, bool(self.shard_size))[0]
        return path if path is not None and path.endswith(feature_files.suffix(self.dtype)) else None

    def up_to_date(self, video, expected, seg_num, feature_dim):
        """``(True, [])`` when ``video``'s features are complete in this layout and dtype and their record
        matches ``expected`` (all but the path as listed); else ``(False, [what differs])``."""
        if expected is None:
            return False, []
        stem = output_stem(video)
        feature, record = self._stored(stem, bool(self.shard_size))
        if feature is None:
            other = self._stored(stem, not self.shard_size)[0]
            return False, (["layout (one file per video / shards)"] if other else [])
        try:
            recorded = json.loads(shards.read_member(record).decode("utf-8"))
        except (OSError, ValueError):
            recorded = None
        differ = ["provenance (none recorded)"] if recorded is None else ["provenance (unreadable)"]
        if isinstance(recorded, dict):
            recorded.setdefault("feature_dtype", "float32")  # records from before the field: float32 was all there was
            differ = [k for k in expected if k != "video" and recorded.get(k) != expected[k]]
        wanted = feature[:-4] + feature_files.suffix(expected["feature_dtype"])
        if not feature_files.complete(wanted, expected["feature_dtype"], (seg_num, feature_dim)):
            # e.g. killed while writing, or features of another dtype under the other suffix
            return False, [k for k in differ if not k.startswith("provenance")]
        return not differ, differ

    def done(self, videos, settings, seg_num, feature_dim):
        """The videos of ``videos`` whose features here are complete and match ``settings`` (shards read anew)."""
        self.scan()
        return {v for v in videos
                if self.up_to_date(v, video_provenance(v, settings), seg_num, feature_dim)[0]}

    def save(self, video, features, provenance):
        """Store ``features`` [T, F] float32 of ``video`` as this store's dtype, with its provenance record.
        With shards, they are done once their shard is in place."""
        stem = output_stem(video)
        text = json.dumps(provenance, ensure_ascii=False, indent=1) + "\n"
        buffer = io.BytesIO()
        try:
            feature_files.write(buffer, features, self.dtype)
        except ValueError as e:  # NaN or Inf cannot be quantised: the weights are broken, not this video
            raise RunError(f"cannot store the features of {video} as {self.dtype}: {e}") from None
        if self.writer is not None:
            self.writer.add(stem + feature_files.suffix(self.dtype), buffer.getvalue(), stem + ".json", text)
            return
        # The record goes first and comes back last: a feature file without a matching record (e.g. killed
        # in between) is extracted again on resume, never trusted.
        output = os.path.join(self.save_dir, self.name(video))
        for old in (stem + ".json", stem + ".npy", stem + ".npz"):
            if os.path.join(self.save_dir, old) != output and os.path.exists(os.path.join(self.save_dir, old)):
                os.remove(os.path.join(self.save_dir, old))
        files.atomic_write(output, lambda f: f.write(buffer.getbuffer()))
        files.write_text(os.path.join(self.save_dir, stem + ".json"), text)
        if any(stem + s in self.members for s in (".npy", ".npz")):
            with self.locked():
                self._drop_from_shards(stem, keep=None)

    def close(self, interrupted=False):
        """Put the shard in progress in place (or drop it when interrupted mid-video)."""
        if self.writer is not None:
            self.writer.close(interrupted)

    def _placed(self, shard, names):
        """A shard is in place: older copies of its videos (in other shards, or as files) go."""
        log.info("wrote %s: %d video(s)", shard, len(names))
        with self.locked():
            for name in names:
                self._only_in(shard, name)

    def _only_in(self, shard, name):
        """Make the member ``name`` of ``shard`` its video's one copy: the others (members of other shards,
        plain files) go (the lock is held)."""
        stem = name[:-4]
        self._drop_from_shards(stem, keep=shard)
        for suffix in (".npy", ".npz", ".json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.save_dir, stem + suffix))
        self.members[name] = [shard]

    def _drop_from_shards(self, stem, keep):
        """Take every member of ``stem`` out of the shards other than ``keep`` (the lock is held)."""
        for suffix in (".npy", ".npz"):
            for shard in self.members.pop(stem + suffix, []):
                if shard != keep and os.path.isfile(shard):
                    shards.drop_members(shard, [stem + ".npy", stem + ".npz", stem + ".json"])

    def tidy(self, videos):
        """One copy per video of ``videos`` that is done here: copies left by a run killed after a shard
        was in place and before the old copies went (the lock is held)."""
        for video in videos:
            where = self.location(video)
            if where is None:
                continue
            if self.shard_size:
                self._only_in(os.path.dirname(where), os.path.basename(where))
            else:
                self._drop_from_shards(output_stem(video), keep=None)

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

    def write_lists(self, videos, failed, done):
        """Update ``features.list``, ``manifest.tsv`` and ``failed.list`` with this run's ``videos``
        (``failed`` {video: reason}, ``done`` the set of videos complete here). Returns {video: feature
        path} of the done videos.

        The lists index the whole folder: rows of videos of other lists (another extractor writing into the
        same folder, before or at the same time) are kept, under the lock, as long as their features are
        still there. This run's videos are listed in list order after them.
        """
        with self.locked():
            self.tidy(v for v in videos if v in done)
            outputs = {v: self.location(v) for v in videos if v in done and v not in failed}
            mine, manifest = set(videos), {}  # manifest: video -> feature, in file order
            for row in _read_rows(os.path.join(self.save_dir, "manifest.tsv")):
                if len(row) == 2 and row[0] not in mine and shards.exists(row[1]):
                    manifest[row[0]] = row[1]
            old_failed = {row[0]: row[1] for row in _read_rows(os.path.join(self.save_dir, "failed.list"))
                          if len(row) == 2 and row[0] not in mine}
            listed = set(manifest.values())
            for v in videos:
                if v in outputs and outputs[v] is not None and outputs[v] not in listed:
                    manifest[v] = outputs[v]
                    listed.add(outputs[v])
            failures = {**old_failed, **failed}

            def write(name, lines):
                files.write_text(os.path.join(self.save_dir, name), "".join(lines))

            write("features.list", (f + "\n" for f in manifest.values()))
            write("manifest.tsv", (f"{v}\t{f}\n" for v, f in manifest.items()))
            write("failed.list", (f"{v}\t{r}\n" for v, r in failures.items()))
        others = len(manifest) - sum(1 for v in videos if v in manifest)
        log.info("%d feature file(s) of this list listed in %s%s; %d failed", len(outputs),
                 os.path.join(self.save_dir, "features.list"),
                 f" (and {others} of other lists extracted into the same folder)" if others else "", len(failed))
        if failed:
            log.warning("%d video(s) could not be read: see %s", len(failed),
                        os.path.join(self.save_dir, "failed.list"))
        return outputs


def _read_rows(path):
    """The tab-separated rows of one of the lists (none if it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []
