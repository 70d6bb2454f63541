"""Feature extraction: the TSN features of every video of a list, fast and in bounded memory.

The list has one video path per line (the whole line is the path)::

    data/mp4/cooking class.mp4
    data/mp4/海边 日落.mp4

or, with ``train_list``, one labelled video per line, as in AttentionLSTM lists (the trailing integer
fields are the labels); ``train_list`` then gets the AttentionLSTM training list of their features::

    data/mp4/cooking class.mp4 3110
    data/mp4/海边 日落.mp4 12 405

Outputs in ``save_dir`` (``feature_store.py``)::

    <stem>_<hash>.npy  [INFER.seg_num, 2048] per video, float32 (``feature_dtype``, default) or float16;
                       with uint8, <stem>_<hash>.npz (q, scale, offset: ``feature_files``). The name is
                       the video's file stem (made safe, cut to 180 bytes) and 16 hex digits of sha1(its
                       real path), so the same video always maps to the same file; a name already held by
                       another video (a 64-bit hash collision) fails that video into failed.list
    <stem>_<hash>.json its provenance: the video (as listed, real path, size, mtime), sha256 of the
                       weights, precision, feature_dtype, seg_num, short_size, target_size, the videotag
                       version
    shard-NNNNNN.tar   with ``shard_size`` N: the two files above of N videos per uncompressed tar, and
    shard-NNNNNN.index.tsv   where each member lies in it (``shards.py``); lists name members as
                       save_dir/shard-NNNNNN.tar/<stem>_<hash>.npy
    features.list      one feature path per line, for every video extracted into save_dir (this run or before)
    manifest.tsv       video<TAB>feature for the same videos
    failed.list        video<TAB>reason for every video whose last extraction failed
    .videotag-records.tsv  the records index: every stored video's record in one file, read once per run
                       (``record_index.py``; the per-video records stay the truth)

Re-running skips a video only when its features are complete and their provenance matches this run in
every field (``overwrite`` redoes them all). Every file is written under a temporary name and renamed, so
a killed run leaves no truncated output. The three lists are merged under a file lock, so extractors
with different lists can share one save_dir. Videos are decoded in worker processes (only the sampled frames are kept, resized and
cropped as uint8; one thread each, at the lowest CPU priority, so that they take the cycles the network
leaves instead of slowing it) while the backbone runs in Paddle Inference in the main process; frames
of consecutive videos share batches. Processes, not threads: the predictor holds the GIL while it runs,
and a decoder that crashes on a broken file takes down only its worker (the video is reported, the run
goes on).
"""
import logging
import os
import time

import numpy as np
import paddle
from tqdm import tqdm

from . import __version__
from . import distributed as dist
from . import cache, files, weights
from .decode_pool import DecodePool, returned
from .errors import RunError, UserError
from .feature_store import FeatureStore
from .inference import InferenceEngine, check_device, export_layer
from .models.tsn import FEATURE_DIM, TSN
from .readers.lists import read_list, read_texts
from .readers.video_reader import crop_normalize, decode_cropped

log = logging.getLogger(__name__)


def read_video_list(list_path):
    """The videos of an extractor list, in order, duplicates removed: ``[path, ...]``."""
    paths = read_texts(list_path)
    if not paths:
        raise UserError(f"list file {list_path} has no entries")
    return list(dict.fromkeys(paths))


def write_training_list(path, labelled, outputs):
    """The AttentionLSTM training list of a labelled video list: ``feature label [label ...]`` for each
    of its lines (``labelled``: list Entry) whose video has features (``outputs`` {video: feature path}),
    in list order; the others are left out. Returns the videos left out."""
    files.write_text(path, "".join(f"{outputs[e.path]} {' '.join(str(l) for l in e.labels)}\n"
                                   for e in labelled if e.path in outputs))
    return list(dict.fromkeys(e.path for e in labelled if e.path not in outputs))


def feature_dtype(cfg):
    """``INFER.feature_dtype``: how the features are stored (``feature_files.DTYPES``; float32 by default)."""
    return cfg["INFER"].get("feature_dtype") or "float32"


def shard_size(cfg):
    """``INFER.shard_size``: videos per shard (0, the default: one file per video; checked with the config)."""
    return int(cfg["INFER"].get("shard_size") or 0)


def refuse_unsupported(precision, use_gpu, batch_size):
    """A ``UserError`` (exit 2) when this Paddle build or machine cannot run ``precision`` (e.g. bf16 on a CPU
    without native bf16): scripts call it before they write anything."""
    try:
        check_device(precision, use_gpu, batch_size)
    except (RuntimeError, ValueError) as e:  # precision or device not available here
        raise UserError(str(e)) from None


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
    refuse_unsupported(precision, use_gpu, batch_size)
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
    weights.resolve(weights_path)  # a missing file, or a precision this machine lacks, is refused before
    refuse_unsupported(precision, use_gpu, batch_size)  # anything is written
    store = FeatureStore(save_dir, feature_dtype(cfg), shard_size(cfg))
    if dist.is_main():
        store.remove_orphans()
    dist.barrier()  # no process starts a shard before the unfinished ones of killed runs are gone
    shared = run_settings(cfg, weights_path, precision)
    unique, failed, same = store.assign(videos)  # one video per real path; a name shared by two fails one
    mine = unique[rank::world]  # split first, then filter: every rank sees the same split
    plan = store.plan(mine, shared, seg_num, FEATURE_DIM, overwrite)
    failed.update(plan.failed)
    todo = plan.todo
    for video, reason in failed.items():
        log.warning("cannot extract %s: %s", video, reason)
    log.info("%d video(s) in %s%s: %d to extract, %d already done", len(videos), list_path,
             f" ({len(mine)} for this process of {world})" if world > 1 else "", len(todo), len(plan.done))
    if plan.stale and not overwrite:
        log.info("extracting again videos whose features in %s were made otherwise: %s", save_dir,
                 ", ".join(f"{n} with another {k}" for k, n in plan.stale.most_common()))

    def with_spellings(done):  # a video listed twice under two spellings is done with its first
        return done | {v for v, first in same.items() if first in done} if same else done

    try:
        if todo:
            # Decoding starts first: the first videos decode while the network is built (seconds).
            with _DecodeQueue(todo, (decode_cropped, seg_num, short_size, target), num_workers) as decoded:
                engine = build_engine(cfg, weights_path, precision, use_gpu, batch_size,
                                      paddle.distributed.ParallelEnv().device_id if use_gpu else 0,
                                      shared["weights_sha256"])
                _run(engine, decoded, len(todo), store, plan.provenance, failed, seg_num, target)
        store.close()
    except BaseException:
        store.close(interrupted=True)
        if world == 1:  # interrupted: list what is complete (with several processes, the rerun will)
            finished = store.done([v for v in todo if v not in failed], shared, seg_num, FEATURE_DIM)
            store.write_lists(videos, failed, with_spellings(plan.done | finished))
        raise
    # Each rank reports what it found done and what it extracted; rank 0 checks only the latter (its own
    # found set is not copied: a million videos).
    reports = dist.gather_to_main((rank, list(plan.done) if rank else None, [v for v in todo if v not in failed],
                                   failed))
    if dist.is_main():
        for _, _, _, their_failed in reports:
            failed.update(their_failed)
        # one look at the folder (index and shards read anew) for what every rank extracted
        seen = store.done([v for _, _, finished, _ in reports for v in finished], shared, seg_num, FEATURE_DIM)
        done = plan.done
        done |= seen
        for other, found, finished, _ in reports:
            unseen = [v for v in finished if v not in seen]
            if unseen:
                raise RunError(f"rank 0 cannot see the features rank {other} wrote for {len(unseen)} "
                               f"video(s) (e.g. {store.name(unseen[0])} of {unseen[0]}): with several nodes, "
                               f"save_dir must be on a filesystem they all share; features.list was not written")
            done.update(found or ())
        outputs = store.write_lists(videos, failed, with_spellings(done))
        if train_list:
            left_out = write_training_list(train_list, labelled, outputs)
            log.info("training list %s: %d video(s)%s", train_list, len(videos) - len(left_out),
                     f"; {len(left_out)} left out, they failed (see failed.list)" if left_out else "")
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def run_settings(cfg, weights_path, precision):
    """What every feature of this run depends on besides its video (recorded beside each feature file)."""
    return {"weights_sha256": files.sha256(weights.resolve(weights_path)), "precision": precision,
            "feature_dtype": feature_dtype(cfg), "seg_num": int(cfg["INFER"]["seg_num"]),
            "short_size": int(cfg["INFER"]["short_size"]), "target_size": int(cfg["INFER"]["target_size"]),
            "videotag": __version__}


class _Video:
    """A video whose frames are in flight: features [seg_num, 2048] filled batch by batch."""

    def __init__(self, path, provenance, seg_num):
        self.path, self.provenance = path, provenance
        self.features = np.empty((seg_num, FEATURE_DIM), np.float32)
        self.missing = seg_num


class _DecodeQueue:
    """Videos decoded in worker processes (``decode_pool.DecodePool``: its crash rule and shutdown), in list
    order, each worker up to two videos ahead of the network (one in its pipe, one ready).

    ``decode``: ``(function, *args)``, run as ``function(path, *args)`` in a worker (a module-level
    function: spawned workers import it). Iterating yields ``(path, frames, None)``, or ``(path, None,
    reason)`` for a video that could not be decoded. Decoding starts at construction.
    """

    def __init__(self, videos, decode, num_workers):
        self.pool = DecodePool(videos, returned, decode, num_workers, buffered=1)  # a video ready beyond the pipe

    def __iter__(self):
        for path, messages in self.pool:
            # ("result", frames) or ("failed", reason); a result, once delivered, stands (a worker that dies
            # after it may add a "failed")
            got = dict(messages)
            yield (path, got["result"], None) if "result" in got else (path, None, got["failed"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.__exit__(*exc)


def _run(engine, decoded, total, store, provenance, failed, seg_num, target):
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
                reason = store.save(video.path, video.features, video.provenance)
                if reason is not None:  # e.g. a name the file system refuses: this video fails, not the run
                    log.warning("cannot store %s: %s", video.path, reason)
                    failed[video.path] = reason
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
            video = _Video(path, provenance[path], seg_num)
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
