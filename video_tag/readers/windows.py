"""Sampling a video as a whole and, optionally, window by window, in one sequential decoding pass.

A window of ``seconds`` (``round(seconds * fps)`` frames) starts every ``stride`` seconds; the last one
ends with the video (a video shorter than one window gives one window covering it). Each window is
sampled as the extractor samples a whole video (``sample_indices`` over the window's frames, infer
mode), and so is the whole video. Times come from the container's timestamps (``CAP_PROP_POS_MSEC``),
or frame index / fps where the container has none.

Memory: the sampled frames of the windows that contain the current frame plus the whole video's, never
the whole video. As with ``decode_sampled``, a container that claims another frame count than the
decoder delivers costs a second pass for what depends on the real count (the last windows and the
whole-video sample).
"""
import functools

import cv2

from ..errors import failure_reason
from .video_reader import (_grab, _open, centre_crop, container_frame_count, decoded_frames,
                           init_decode_worker, resize_frame, sample_indices)

DEFAULT_FPS = 25.0  # when the container gives none


def plan_windows(num_frames, size, step):
    """``[(start, stop)]`` frame ranges: one every ``step`` frames, ``size`` long, the last ending with the video."""
    windows, start = [], 0
    while True:
        stop = min(start + size, num_frames)
        windows.append((start, stop))
        if stop >= num_frames:
            return windows
        start += step


def decode_windows(path, seg_num, transform, emit, seconds=None, stride=None, window_seg_num=None):
    """Decode ``path`` once; call ``emit`` for each complete window, then for the whole video.

    emit(("window", k, start_seconds, end_seconds, frames)) for window k (only with ``seconds``), in order;
    emit(("video", frames, num_frames)) last. ``frames``: lists of ``transform(RGB uint8 frame)``,
    ``window_seg_num`` (default ``seg_num``) per window, ``seg_num`` for the video. Raises ``ValueError``.
    """
    window_seg_num = window_seg_num or seg_num
    stride = stride or seconds

    def first_pass(cap):
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps == fps and 0 < fps < 1000 else DEFAULT_FPS
        claimed = container_frame_count(cap)
        size = max(1, round(seconds * fps)) if seconds else None
        step = max(1, round(stride * fps)) if seconds else None
        return claimed, size, step, _Pass(cap, fps, seg_num, window_seg_num, claimed, size, step, transform,
                                          emit).run()

    claimed, size, step, state = _open(path, first_pass)
    total = state.num_frames
    if total == 0:
        raise ValueError("no frames decoded")
    pending = []  # windows of the real plan not emitted yet, with their sample indices
    if size:
        for k, (start, stop) in enumerate(plan_windows(total, size, step)):
            if k in state.emitted:
                continue
            indices = [start + i for i in sample_indices(stop - start, window_seg_num, "infer")]
            pending.append((k, start, stop, indices))
    video = sample_indices(total, seg_num, "infer")
    if total == claimed:  # the first pass sampled with the right count: everything is at hand
        for k, start, stop, indices in pending:
            emit(("window", k, state.start_seconds(start), state.end_seconds(), [state.kept[i] for i in indices]))
        emit(("video", [state.kept[i] for i in video], total))
        return
    # The container lied about its length: sample what depends on it from what is really there.
    wanted = set(video).union(*[set(indices) for _, _, _, indices in pending])
    kept, _ = _open(path, lambda cap: _grab(cap, wanted, transform, claimed, stop_after=max(wanted)))
    missing = sorted(wanted - set(kept))
    if missing:
        raise ValueError(f"frame {missing[0]} of {total} not decoded on the second pass")
    for k, start, stop, indices in pending:
        emit(("window", k, state.start_seconds(start), state.end_seconds(), [kept[i] for i in indices]))
    emit(("video", [kept[i] for i in video], total))


class _Pass:
    """The first pass: every frame grabbed once; the frames sampled by the whole video (planned with the
    claimed count) and by each window are retrieved; a window is emitted as soon as its last frame has
    been decoded (a full window's sampling does not depend on the video's length)."""

    def __init__(self, cap, fps, seg_num, window_seg_num, claimed, size, step, transform, emit):
        self.cap, self.fps, self.transform, self.emit = cap, fps, transform, emit
        self.size, self.step, self.window_seg_num, self.claimed = size, step, window_seg_num, claimed
        self.video = set(sample_indices(claimed, seg_num, "infer")) if claimed else set()
        self.kept = {}          # index -> frame, for the video sample and the windows not emitted yet
        self.windows = {}       # k -> (start, planned indices) of the windows open at this frame
        self.emitted = set()
        self.stamps = {}        # index -> container timestamp (ms) of window starts
        self.last_stamp = 0.0   # of the last frame decoded
        self.real_stamps = False  # the container gives timestamps (not all zero)
        self.num_frames = self.num_frames_so_far = 0

    def plan(self, k):
        start = k * self.step
        n = self.size if start + self.size <= self.claimed or self.claimed <= start else self.claimed - start
        return start, [start + i for i in sample_indices(n, self.window_seg_num, "infer")]

    def open_windows(self, index):
        if self.size and index % self.step == 0:
            k = index // self.step
            if k not in self.windows and k not in self.emitted:
                self.windows[k] = self.plan(k)

    def wanted(self, index):
        return index in self.video or any(index in planned for _, planned in self.windows.values())

    def run(self):
        """Frames are numbered by ``video_reader.decoded_frames``, as the extractor numbers them, so the
        whole-video sample equals the extractor's."""
        index = -1
        for index, frame in decoded_frames(self.cap, self.wanted, self.claimed, self.open_windows):
            stamp = self.cap.get(cv2.CAP_PROP_POS_MSEC)
            self.last_stamp = stamp if stamp == stamp else 0.0
            self.real_stamps = self.real_stamps or self.last_stamp > 0
            if self.size and index % self.step == 0:
                self.stamps[index] = self.last_stamp
            if frame is not None:
                self.kept[index] = self.transform(frame)
            self.num_frames_so_far = index + 1
            for k, (start, planned) in list(self.windows.items()):
                if index == start + self.size - 1:  # the window is full: its sample is final
                    self.emit(("window", k, self.start_seconds(start), self.end_seconds(),
                               [self.kept[i] for i in planned]))
                    self.emitted.add(k)
                    del self.windows[k]
                    self._forget()
        self.num_frames = index + 1
        return self

    def _forget(self):
        needed = set(self.video).union(*[set(p) for _, p in self.windows.values()])
        for i in [i for i in self.kept if i not in needed]:
            del self.kept[i]

    def start_seconds(self, index):
        """When frame ``index`` (a window's first) starts: its container timestamp, or index / fps where
        the container gives none (every timestamp zero)."""
        seconds = self.stamps.get(index, 0.0) / 1000.0 if self.real_stamps else index / self.fps
        return round(seconds, 3)

    def end_seconds(self):
        """When the last frame decoded so far ends: its start + 1 / fps."""
        seconds = self.last_stamp / 1000.0 if self.real_stamps else (self.num_frames_so_far - 1) / self.fps
        return round(seconds + 1.0 / self.fps, 3)


def _resize_crop(short_size, target_size, frame):
    return centre_crop(resize_frame(frame, short_size), target_size)


def stream_worker(jobs, decode, out):
    """A decode process (no Paddle here): for each ``(index, path)`` of ``jobs``, put ``(index, message)``
    on the queue ``out`` for each window and the whole video (see ``decode_windows``), then
    ``(index, ("end",))``; a video that cannot be decoded sends ``("failed", reason)`` instead.

    decode: ``(seg_num, short_size, target_size, seconds, stride, window_seg_num)``; frames are resized
    and centre-cropped as the extractor's.
    """
    init_decode_worker()
    seg_num, short_size, target_size, seconds, stride, window_seg_num = decode
    transform = functools.partial(_resize_crop, short_size, target_size)
    for index, path in jobs:
        try:
            decode_windows(path, seg_num, transform, lambda m: out.put((index, m)), seconds, stride,
                           window_seg_num)
        except Exception as e:  # cv2.error, MemoryError, ...: this video's problem; go on with the next
            out.put((index, ("failed", failure_reason(e))))
        out.put((index, ("end",)))
