"""Feature extraction: the TSN features of every video of a list, fast and in bounded memory.

The list has one video path per line (the whole line is the path)::

    data/mp4/cooking class.mp4
    data/mp4/海边 日落.mp4

or, with ``train_list``, one labelled video per line, as in AttentionLSTM lists (the trailing integer
fields are the labels); ``train_list`` then gets the AttentionLSTM training list of their features::

    data/mp4/cooking class.mp4 3110
    data/mp4/海边 日落.mp4 12 405

Outputs in ``save_dir``::

    <stem>_<hash>.npy  [INFER.seg_num, 2048] per video, float32 (``feature_dtype``, default) or float16;
                       with uint8, <stem>_<hash>.npz (q, scale, offset: ``feature_files``). The name is
                       the video's file stem and 8 hex digits of sha1(its real path), so the same video
                       always maps to the same file and different videos never share one
    <stem>_<hash>.json its provenance: the video (as listed, real path, size, mtime), sha256 of the
                       weights, precision, feature_dtype, seg_num, short_size, target_size, the videotag
                       version
    features.list      one feature path per line, for every video extracted into save_dir (this run or before)
    manifest.tsv       video<TAB>feature for the same videos
    failed.list        video<TAB>reason for every video whose last extraction failed

Re-running skips a video only when its feature file is complete and its provenance matches this run in
every field (``overwrite`` redoes them all). Every file is written under a temporary name and renamed, so
a killed run leaves no truncated output. The three lists are merged under a file lock, so extractors
with different lists can share one save_dir. Videos are decoded in worker processes (only the sampled frames are kept, resized and
cropped as uint8; one thread each, at the lowest CPU priority, so that they take the cycles the network
leaves instead of slowing it) while the backbone runs in Paddle Inference in the main process; frames
of consecutive videos share batches. Processes, not threads: the predictor holds the GIL while it runs,
and a decoder that crashes on a broken file takes down only its worker (the video is reported, the run
goes on).
"""
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent extractors into one folder are unsupported there
    fcntl = None

import numpy as np
import paddle
from tqdm import tqdm

from . import __version__
from . import distributed as dist
from . import cache, feature_files, files, weights
from .errors import RunError, UserError
from .inference import InferenceEngine, check_device, export_layer
from .models.tsn import FEATURE_DIM, TSN
from .readers.lists import output_stem, read_list, read_lines
from .readers.video_reader import crop_normalize, decode_cropped, init_decode_worker

log = logging.getLogger(__name__)


def read_video_list(list_path):
    """The videos of an extractor list, in order, duplicates removed: ``[path, ...]``."""
    paths = [text for _, text in read_lines(list_path)]
    if not paths:
        raise UserError(f"list file {list_path} has no entries")
    return list(dict.fromkeys(paths))


def write_training_list(path, labelled, outputs, extracted):
    """The AttentionLSTM training list of a labelled video list: ``feature label [label ...]`` for each
    of its lines (``labelled``: list Entry) whose video is in ``extracted``, in list order; the others
    are left out. Returns the videos left out."""
    files.write_text(path, "".join(f"{outputs[e.path]} {' '.join(str(l) for l in e.labels)}\n"
                                   for e in labelled if e.path in extracted))
    return list(dict.fromkeys(e.path for e in labelled if e.path not in extracted))


def feature_dtype(cfg):
    """``INFER.feature_dtype``: how the features are stored (``feature_files.DTYPES``; float32 by default)."""
    return cfg["INFER"].get("feature_dtype") or "float32"


def feature_path(save_dir, video, dtype):
    """Where ``video``'s features go: ``save_dir/<stem>_<hash>.npy`` (``.npz`` for uint8)."""
    return os.path.join(save_dir, feature_name(video) + feature_files.suffix(dtype))


def build_engine(cfg, weights_path, precision="fp32", use_gpu=False, batch_size=8, device_id=0,
                 weights_sha256=None):
    """The TSN backbone of ``weights_path`` (release ``tsn.pdparams`` or our own) in Paddle Inference.

    The exported backbone is cached (``cache.py``) under the sha256 of the weight file (``weights_sha256``
    when the caller has it), the depth, the input size and the versions, so that the next run starts
    from the exported files instead of building, loading and tracing the network again.
    """
    path = weights.resolve(weights_path)
    layers, target = int(cfg["MODEL"]["num_layers"]), int(cfg["INFER"]["target_size"])
    shape = (None, 3, target, target)
    try:
        check_device(precision, use_gpu, batch_size)
    except (RuntimeError, ValueError) as e:  # precision or device not available here
        raise UserError(str(e)) from None
    sha = weights_sha256 or files.sha256(path)
    key = {"model": "TSN backbone", "weights_sha256": sha, "num_layers": layers, "input_shape": list(shape),
           "paddle": paddle.__version__, "videotag": __version__}

    def export(folder):
        model = TSN(num_classes=cfg["MODEL"]["num_classes"], num_layers=layers)
        weights.load_weights(model, path, skip=("fc_0.",))  # the extractor needs no classifier
        export_layer(model.backbone, shape, os.path.join(folder, "backbone"))

    with cache.exported("tsn_backbone", key, export, lambda: files.sha256(path) == sha) as folder:
        return InferenceEngine(None, shape, precision=precision, use_gpu=use_gpu, batch_size=batch_size,
                               device_id=device_id, exported=folder)


def extract(cfg, weights_path, list_path, save_dir, overwrite=False, use_gpu=False, precision="fp32",
            batch_size=8, num_workers=2, train_list=None):
    """``tsn_extractor.py``: extract every video of ``list_path``. Returns the exit code (1 if any failed).

    train_list: ``list_path`` is labelled (``video label [label ...]`` per line); write the AttentionLSTM
    training list of the features, with the same labels, to this path, leaving out the videos that
    failed (they are logged and in ``failed.list``).

    Under ``paddle.distributed.launch`` (one process per GPU, or several nodes) the list is split
    between the processes first (every world_size-th video), then each skips what is already done;
    rank 0 writes the lists once all are done. ``save_dir`` must then be on a filesystem every process
    sees.
    """
    if use_gpu and not paddle.is_compiled_with_cuda():
        log.warning("use_gpu is set but this Paddle has no CUDA: running on CPU")
        use_gpu = False
    dist.init(use_gpu)
    world, rank = dist.world_size(), dist.rank()
    seg_num = int(cfg["INFER"]["seg_num"])
    short_size, target = int(cfg["INFER"]["short_size"]), int(cfg["INFER"]["target_size"])
    if train_list and (os.path.isdir(train_list) or os.path.realpath(train_list) == os.path.realpath(list_path)):
        raise UserError(f"--train_list {train_list}: must be a new file, not "
                        f"{'a folder' if os.path.isdir(train_list) else 'the video list itself'}")
    labelled = read_list(list_path, check_files=False) if train_list else None
    videos = list(dict.fromkeys(e.path for e in labelled)) if train_list else read_video_list(list_path)
    weights.resolve(weights_path)  # a missing file is refused before anything starts
    os.makedirs(save_dir, exist_ok=True)
    dtype = feature_dtype(cfg)
    outputs = {v: feature_path(save_dir, v, dtype) for v in videos}
    shared = run_settings(cfg, weights_path, precision)
    mine = list(dict((outputs[v], v) for v in reversed(videos)).values())[::-1]  # one video per output
    mine = mine[rank::world]  # split first, then filter: every rank sees the same split
    provenance = {v: video_provenance(v, shared) for v in mine}
    todo, stale = [], collections.Counter()
    for v in mine:
        fresh, differ = up_to_date(outputs[v], provenance[v], seg_num)
        if overwrite or not fresh:
            todo.append(v)
            stale.update(differ)
    log.info("%d video(s) in %s%s: %d to extract, %d already done", len(videos), list_path,
             f" ({len(mine)} for this process of {world})" if world > 1 else "", len(todo),
             len(mine) - len(todo))
    if stale and not overwrite:
        log.info("extracting again videos whose features in %s were made otherwise: %s", save_dir,
                 ", ".join(f"{n} with another {k}" for k, n in stale.most_common()))
    failed = {}
    try:
        if todo:
            # Decoding starts first: the first videos decode while the network is built (seconds).
            with _DecodeQueue(todo, (decode_cropped, seg_num, short_size, target), num_workers) as decoded:
                engine = build_engine(cfg, weights_path, precision, use_gpu, batch_size,
                                      paddle.distributed.ParallelEnv().device_id if use_gpu else 0,
                                      shared["weights_sha256"])
                _run(engine, decoded, len(todo), outputs, provenance, failed, seg_num, target, dtype)
    except BaseException:
        if world == 1:  # interrupted: list what is complete (with several processes, the rerun will)
            _write_lists(save_dir, videos, outputs, failed, _complete(videos, outputs, shared, seg_num))
        raise
    reports = dist.gather((rank, [v for v in mine if v not in failed], failed))
    if dist.is_main():
        done = _complete(videos, outputs, shared, seg_num)
        for other, finished, their_failed in reports:
            failed.update(their_failed)
            unseen = [v for v in finished if v not in done]
            if unseen:
                raise RunError(f"rank 0 cannot see the features rank {other} wrote for {len(unseen)} "
                               f"video(s) (e.g. {outputs.get(unseen[0], unseen[0])}): with several nodes, save_dir must be "
                               f"on a filesystem they all share; features.list was not written")
        _write_lists(save_dir, videos, outputs, failed, done)
        if train_list:
            left_out = write_training_list(train_list, labelled, outputs, done.difference(failed))
            log.info("training list %s: %d video(s)%s", train_list, len(videos) - len(left_out),
                     f"; {len(left_out)} left out, they failed (see failed.list)" if left_out else "")
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def feature_name(video):
    """The feature file's name (without suffix): ``lists.output_stem``, ``<stem>_<8 hex digits>``."""
    return output_stem(video)


def run_settings(cfg, weights_path, precision):
    """What every feature of this run depends on besides its video (recorded beside each feature file)."""
    return {"weights_sha256": files.sha256(weights.resolve(weights_path)), "precision": precision,
            "feature_dtype": feature_dtype(cfg), "seg_num": int(cfg["INFER"]["seg_num"]),
            "short_size": int(cfg["INFER"]["short_size"]), "target_size": int(cfg["INFER"]["target_size"]),
            "videotag": __version__}


def video_provenance(video, settings):
    """The provenance record of ``video``'s features: path as listed, real path, size, mtime, settings."""
    try:
        st = os.stat(video)
    except OSError:
        return None  # decoding will report it
    return {"video": video, "real_path": os.path.realpath(video), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, **settings}


def provenance_path(feature):
    """``x_1f3a9c2e.npy`` (or ``.npz``) ``-> x_1f3a9c2e.json``: the provenance record beside a feature file."""
    return os.path.splitext(feature)[0] + ".json"


def up_to_date(feature, expected, seg_num):
    """``(True, [])`` when ``feature`` is complete and its provenance record matches ``expected`` (all but
    the path as listed); else ``(False, [what differs])``."""
    if expected is None:
        return False, []
    try:
        with open(provenance_path(feature), encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        recorded = None
    differ = ["provenance (none recorded)"] if recorded is None else ["provenance (unreadable)"]
    if isinstance(recorded, dict):
        recorded.setdefault("feature_dtype", "float32")  # records from before the field: float32 was all there was
        differ = [k for k in expected if k != "video" and recorded.get(k) != expected[k]]
    if not feature_files.complete(feature, expected["feature_dtype"], (seg_num, FEATURE_DIM)):
        # e.g. killed while writing, or features of another dtype under the other suffix
        return False, [k for k in differ if not k.startswith("provenance")]
    return not differ, differ


def _complete(videos, outputs, settings, seg_num):
    """The videos of ``videos`` whose features in save_dir are complete and match this run."""
    return {v for v in videos if up_to_date(outputs[v], video_provenance(v, settings), seg_num)[0]}


class _Video:
    """A video whose frames are in flight: features [seg_num, 2048] filled batch by batch."""

    def __init__(self, path, output, provenance, seg_num):
        self.path, self.output, self.provenance = path, output, provenance
        self.features = np.empty((seg_num, FEATURE_DIM), np.float32)
        self.missing = seg_num


class _DecodeQueue:
    """Videos decoded in worker processes, in list order, up to ``num_workers + 1`` ahead of the network.

    ``decode``: ``(function, *args)``, run as ``function(path, *args)`` in a worker. Iterating yields
    ``(path, frames, None)``, or ``(path, None, reason)`` for a video that could not be decoded. Decoding
    starts at construction. Processes, not threads: the predictor holds the GIL while it runs, and a
    decoder that crashes takes down only its worker (the video is reported; a fresh pool takes over).
    """

    def __init__(self, videos, decode, num_workers):
        self.function, self.args = decode[0], decode[1:]
        self.num_workers = max(1, num_workers)
        self.queue = iter(videos)
        self.pending = collections.deque()
        self.pool = self._new_pool()
        self._fill()

    def _new_pool(self):
        # spawn: workers import no Paddle and inherit no threads; init_decode_worker: one thread, low priority
        return ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_decode_worker)

    def _fill(self):
        while len(self.pending) < self.num_workers + 1:
            video = next(self.queue, None)
            if video is None:
                return
            try:
                future = self.pool.submit(self.function, video, *self.args)
            except BrokenProcessPool:  # a worker died since the last look
                self._restart()
                future = self.pool.submit(self.function, video, *self.args)
            self.pending.append((video, future))

    def _restart(self):
        """A fresh pool; the videos in flight whose decoding did not complete go to it again."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        self.pending = collections.deque(
            (v, f if f.done() and not f.cancelled() and f.exception() is None
             else self.pool.submit(self.function, v, *self.args)) for v, f in self.pending)

    def __iter__(self):
        while self.pending:
            path, future = self.pending.popleft()
            try:
                frames, reason = future.result(), None
            except BrokenProcessPool:
                # A worker died: every future in flight fails with it, whichever video killed it. Start a
                # fresh pool for the others and try this one alone: only a video that crashes its
                # decoder on its own is blamed.
                self._restart()
                frames, reason = self._alone(path)
            except Exception as e:  # cv2.error, MemoryError, a PIL error...: this video's problem
                frames, reason = None, _reason(e)
            self._fill()  # keep the workers busy while the network takes this video
            yield path, frames, reason

    def _alone(self, path):
        """Decode ``path`` in a worker of its own: ``(frames, None)`` or ``(None, reason)``."""
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=init_decode_worker) as solo:
            try:
                return solo.submit(self.function, path, *self.args).result(), None
            except BrokenProcessPool:
                return None, "the decoder crashed on this video"
            except Exception as e:
                return None, _reason(e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=False, cancel_futures=True)


def _reason(error):
    """One line for ``failed.list``: the message of a ValueError/OSError, else the type and message."""
    text = " ".join(str(error).split())
    return text if isinstance(error, (ValueError, OSError)) and text else f"{type(error).__name__}: {text}"


def _run(engine, decoded, total, outputs, provenance, failed, seg_num, target, dtype):
    """Run the network over the frames of ``decoded`` (a ``_DecodeQueue``), frames of consecutive videos
    sharing batches; save each video's features as soon as they are complete."""
    batch_size = engine.batch_size
    batch = np.empty((batch_size, 3, target, target), np.float32)
    slots = []  # (video, first frame, count) for the rows of `batch`, in order
    fill = 0
    frames_done, start = 0, time.time()
    progress = tqdm(total=total, unit="video", desc="extract", dynamic_ncols=True)

    def flush():
        nonlocal fill, frames_done
        if not fill:
            return
        features = engine.run(batch[:fill])
        row = 0
        for video, first, count in slots:
            video.features[first:first + count] = features[row:row + count]
            row += count
            video.missing -= count
            if video.missing == 0:
                _save(video, dtype)
                progress.update(1)
        frames_done += fill
        progress.set_postfix(frames_per_s=f"{frames_done / (time.time() - start):.1f}")
        slots.clear()
        fill = 0

    try:
        for path, frames, reason in decoded:
            if reason is not None:
                log.warning("cannot read %s: %s", path, reason)
                failed[path] = reason
                progress.update(1)
                continue
            video = _Video(path, outputs[path], provenance[path], seg_num)
            k = 0
            while k < seg_num:
                count = min(batch_size - fill, seg_num - k)
                batch[fill:fill + count] = crop_normalize(frames[k:k + count], "infer", target)
                slots.append((video, k, count))
                fill += count
                k += count
                if fill == batch_size:
                    flush()
            del frames
        flush()
    finally:
        progress.close()
    elapsed = time.time() - start
    log.info("extracted %d frame(s) in %.1f s: %.1f frames/s", frames_done, elapsed,
             frames_done / max(elapsed, 1e-9))


def _save(video, dtype):
    """The features stored as ``dtype``, then their provenance record: a feature file without a matching
    record (e.g. killed in between) is extracted again on resume, never trusted. The video's file of the
    other suffix (features of another dtype, from an earlier run) goes: one feature file per video."""
    record = provenance_path(video.output)
    stem = os.path.splitext(video.output)[0]
    others = {stem + s for s in feature_files.SUFFIXES.values()} - {video.output}
    for old in (record, *sorted(others)):
        if os.path.exists(old):
            os.remove(old)
    try:
        files.atomic_write(video.output, lambda f: feature_files.write(f, video.features, dtype))
    except ValueError as e:  # NaN or Inf cannot be quantised: the weights are broken, not this video
        raise RunError(f"cannot store the features of {video.path} as {dtype}: {e}") from None
    files.write_text(record, json.dumps(video.provenance, ensure_ascii=False, indent=1) + "\n")


def _write_lists(save_dir, videos, outputs, failed, done):
    """Update ``features.list``, ``manifest.tsv`` and ``failed.list`` of ``save_dir`` with this run's videos.

    The lists index the whole ``save_dir``: rows of videos of other lists (another extractor writing
    into the same folder, before or at the same time) are kept, under a file lock, as long as their
    feature file exists. This run's videos are listed in list order after them.
    """
    with _locked(os.path.join(save_dir, ".videotag.lock")):
        manifest = {}  # video -> feature, in file order
        for row in _read_rows(os.path.join(save_dir, "manifest.tsv")):
            if len(row) == 2 and row[0] not in outputs and os.path.isfile(row[1]):
                manifest[row[0]] = row[1]
        old_failed = {row[0]: row[1] for row in _read_rows(os.path.join(save_dir, "failed.list"))
                      if len(row) == 2 and row[0] not in outputs}
        listed = set(manifest.values())
        for v in videos:
            if v in done and v not in failed and outputs[v] not in listed:
                manifest[v] = outputs[v]
                listed.add(outputs[v])
        failures = {**old_failed, **failed}

        def write(name, lines):
            files.write_text(os.path.join(save_dir, name), "".join(lines))

        write("features.list", (f + "\n" for f in manifest.values()))
        write("manifest.tsv", (f"{v}\t{f}\n" for v, f in manifest.items()))
        write("failed.list", (f"{v}\t{r}\n" for v, r in failures.items()))
    mine = sum(1 for v in videos if v in done and v not in failed)
    others = len(manifest) - sum(1 for v in videos if v in manifest)
    log.info("%d feature file(s) of this list listed in %s%s; %d failed", mine,
             os.path.join(save_dir, "features.list"),
             f" (and {others} of other lists extracted into the same folder)" if others else "", len(failed))
    if failed:
        log.warning("%d video(s) could not be read: see %s", len(failed), os.path.join(save_dir, "failed.list"))


def _read_rows(path):
    """The tab-separated rows of one of the lists (none if it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` (created if needed) between processes, where the OS offers one."""
    with open(path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
