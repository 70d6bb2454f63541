"""Feature extraction: the TSN features of every video of a list, fast and in bounded memory.

The list has one video path per line (the whole line is the path)::

    data/mp4/cooking class.mp4
    data/mp4/海边 日落.mp4

Outputs in ``save_dir``::

    <stem>.npy       float32 [INFER.seg_num, 2048] per video; the video's file stem, unchanged, except
                     where two listed videos share a stem: those get ``<stem>_<8 hex digits of sha1(path)>``
    features.list    one feature path per line, in list order, for every video extracted (this run or before)
    manifest.tsv     video<TAB>feature for the same videos
    failed.list      video<TAB>reason for every video that could not be read (rewritten each run)

Re-running skips videos whose feature file exists with the expected shape and dtype (``overwrite``
redoes them). Every file is written under a temporary name and renamed, so a killed run leaves no
truncated output. Videos are decoded in worker processes (only the sampled frames are kept, resized and
cropped as uint8; one thread each, at the lowest CPU priority, so that they take the cycles the network
leaves instead of slowing it) while the backbone runs in Paddle Inference in the main process; frames
of consecutive videos share batches. Processes, not threads: the predictor holds the GIL while it runs,
and a decoder that crashes on a broken file takes down only its worker (the video is reported, the run
goes on).
"""
import collections
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import paddle
from tqdm import tqdm

from . import distributed as dist
from . import weights
from .errors import UserError
from .inference import InferenceEngine
from .models.tsn import FEATURE_DIM, TSN
from .readers.lists import read_lines, unique_stems
from .readers.video_reader import crop_normalize, decode_cropped, init_decode_worker

log = logging.getLogger(__name__)


def read_video_list(list_path):
    """The videos of an extractor list, in order, duplicates removed: ``[path, ...]``."""
    paths = [text for _, text in read_lines(list_path)]
    if not paths:
        raise UserError(f"list file {list_path} has no entries")
    return list(dict.fromkeys(paths))


def feature_ok(path, seg_num):
    """True when ``path`` is a complete float32 [seg_num, 2048] ``.npy`` file (only the header is read)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return array.dtype == np.float32 and array.shape == (seg_num, FEATURE_DIM)


def build_engine(cfg, weights_path, precision="fp32", use_gpu=False, batch_size=8, device_id=0):
    """The TSN backbone of ``weights_path`` (release ``tsn.pdparams`` or our own) in Paddle Inference."""
    model = TSN(num_classes=cfg["MODEL"]["num_classes"], num_layers=cfg["MODEL"]["num_layers"])
    weights.load_weights(model, weights_path, skip=("fc_0.",))  # the extractor needs no classifier
    target = int(cfg["INFER"]["target_size"])
    try:
        return InferenceEngine(model.backbone, (None, 3, target, target), precision=precision,
                               use_gpu=use_gpu, batch_size=batch_size, device_id=device_id)
    except (RuntimeError, ValueError) as e:  # precision or device not available here
        raise UserError(str(e)) from None


def extract(cfg, weights_path, list_path, save_dir, overwrite=False, use_gpu=False, precision="fp32",
            batch_size=8, num_workers=2):
    """``tsn_extractor.py``: extract every video of ``list_path``. Returns the exit code (1 if any failed).

    Under ``paddle.distributed.launch`` (one process per GPU, or several nodes) each process takes every
    world_size-th video still to do; rank 0 writes the lists once all are done.
    """
    if use_gpu and not paddle.is_compiled_with_cuda():
        log.warning("use_gpu is set but this Paddle has no CUDA: running on CPU")
        use_gpu = False
    dist.init(use_gpu)
    world, rank = dist.world_size(), dist.rank()
    seg_num = int(cfg["INFER"]["seg_num"])
    short_size, target = int(cfg["INFER"]["short_size"]), int(cfg["INFER"]["target_size"])
    videos = read_video_list(list_path)
    os.makedirs(save_dir, exist_ok=True)
    stems = unique_stems(videos)
    outputs = {v: os.path.join(save_dir, stems[v] + ".npy") for v in videos}
    todo = [v for v in videos if overwrite or not feature_ok(outputs[v], seg_num)]
    log.info("%d video(s) in %s: %d to extract, %d already done", len(videos), list_path, len(todo),
             len(videos) - len(todo))
    todo = todo[rank::world]
    failed = {}
    try:
        if todo:
            # Decoding starts first: the first videos decode while the network is built (seconds).
            with _DecodeQueue(todo, (decode_cropped, seg_num, short_size, target), num_workers) as decoded:
                engine = build_engine(cfg, weights_path, precision, use_gpu, batch_size,
                                      paddle.distributed.ParallelEnv().device_id if use_gpu else 0)
                _run(engine, decoded, len(todo), outputs, failed, seg_num, target)
    except BaseException:
        if world == 1:  # interrupted: list what is complete (with several processes, the rerun will)
            _write_lists(save_dir, videos, outputs, failed, seg_num)
        raise
    for part in dist.gather(failed):
        failed.update(part)
    if dist.is_main():
        _write_lists(save_dir, videos, outputs, failed, seg_num)
    return 1 if failed else 0


class _Video:
    """A video whose frames are in flight: features [seg_num, 2048] filled batch by batch."""

    def __init__(self, path, output, seg_num):
        self.path, self.output = path, output
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


def _run(engine, decoded, total, outputs, failed, seg_num, target):
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
                _save(video.output, video.features)
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
            video = _Video(path, outputs[path], seg_num)
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


def _save(path, features):
    weights.atomic_write(path, lambda f: np.save(f, features))


def _write_lists(save_dir, videos, outputs, failed, seg_num):
    done = [v for v in videos if v not in failed and feature_ok(outputs[v], seg_num)]

    def write(name, lines):
        weights.write_text(os.path.join(save_dir, name), "".join(lines))

    write("features.list", (outputs[v] + "\n" for v in done))
    write("manifest.tsv", (f"{v}\t{outputs[v]}\n" for v in done))
    write("failed.list", (f"{v}\t{r}\n" for v, r in failed.items()))
    log.info("%d feature file(s) listed in %s; %d failed", len(done), os.path.join(save_dir, "features.list"),
             len(failed))
    if failed:
        log.warning("%d video(s) could not be read: see %s", len(failed), os.path.join(save_dir, "failed.list"))
