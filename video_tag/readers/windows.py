"""Sampling a video as a whole and, optionally, window by window by time and shot by shot (``shot_clips.py``:
every decoded frame goes to the shot detector), in one sequential decoding pass (two where the container or
the frame rate surprises the first, or a shot is too long for its sample to be kept in hand).

Time: each frame's container timestamp (``CAP_PROP_POS_MSEC`` after its grab), made non-decreasing
(``FrameClock``): the decoder delivers frames in display order, so a timestamp that goes backwards is
taken as mislabelled (B-frame streams labelled in decoding order) and the frame put at its
predecessor's time, and a frame without one (OpenCV reports 0: the last frame of an AVI B-frame stream,
or every frame of a container without timestamps) one nominal frame duration (1 / ``CAP_PROP_FPS``, 25
frames/s if it gives none) after its predecessor. A container without timestamps thus gets index / fps,
and every window is a contiguous run of decoded frames.

Windows: window k spans ``[t0 + k * stride, t0 + k * stride + seconds)`` (``t0``: the first frame's time)
and holds the frames whose times fall in it, whatever the frame rate and whatever frame count or fps the
container claims. The last window is the first that holds the last frame (with a stride longer than the
window: the last to start before it); it ends with the video (the last frame's time plus the gap before
it), so a video shorter than one window gives one window covering it. A window with no frame of its own
(a gap in a variable-frame-rate stream longer than the window) holds the frame on screen during it, the
last one before it. ``start``/``end`` are these times, in seconds (rounded to ms); ``end`` is ``start +
seconds`` except for the last window.

Sampling: each window as the extractor samples a whole video (``sample_indices`` over the window's
frames, infer mode), and the whole video exactly as the extractor (``decode_sampled``'s numbering). A
window is final only once a frame at or after its end, or the end of the stream, has been seen; its
frame count is unknown until then, so the first pass retrieves the frames the window's predicted count
would sample (predicted from the gap before its first frame; for counts within one of it, and every
frame below ``window_seg_num`` where that covers any count under ``2 * window_seg_num``). A window whose
real sample was retrieved is emitted at once; the others (a frame rate that changed inside the window, a
gap) and the whole video, where the container lied about its frame count, are sampled in a second pass
that stops at the last frame they need. Constant-frame-rate videos with a truthful header: one pass.

Memory: the sampled frames of the windows open at the current frame plus the whole video's; a first
pass also keeps two integers per window it could not sample (for the second); never the whole video.
"""
import collections
import functools
import math
import weakref

import cv2

from .shot_clips import ShotClips
from .video_reader import (centre_crop, container_frame_count, decoded_frames, resize_frame, sample_indices,
                           with_video)

DEFAULT_FPS = 25.0  # when the container gives none
US = 1000000        # times in integer microseconds: a frame on a window's edge is placed without float doubt
MAX_WINDOWS = 100000  # a timestamp that jumps hours ahead fails its video instead of filling memory


def nominal_fps(cap):
    """``CAP_PROP_FPS`` when it is a sane number, else ``DEFAULT_FPS``."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if fps == fps and 0 < fps < 1000 else DEFAULT_FPS


class FrameClock:
    """Non-decreasing frame times (integer microseconds) from the container's timestamps (ms).

    ``time(ms)`` gives the time of the next frame without recording it; ``tick(time)`` records it.
    The first frame keeps its timestamp; a later one without a timestamp (0, NaN, inf) comes one frame
    duration (``frame_us``) after its predecessor; one earlier than its predecessor is put at its
    predecessor's time. ``[0, 40, 0, 120, 100] ms -> [0, 40, 80, 120, 120] ms`` at 25 frames/s.
    """

    def __init__(self, fps):
        self.frame_us = max(1, round(US / fps))
        self.last = None

    def time(self, ms):
        stamp = round(ms * 1000) if math.isfinite(ms) else 0
        if self.last is None:
            return stamp
        if stamp <= 0:
            return self.last + self.frame_us
        return max(stamp, self.last)

    def tick(self, time):
        self.last = time


def predicted_positions(span_us, gap_us, seg_num):
    """The positions in a window worth retrieving on the first pass: the window's first frame is
    ``span_us`` before its end and frames come every ``gap_us``; the sample of that count or one more or
    less, and every position below ``seg_num`` where the count is under ``2 * seg_num`` (any count
    there samples only positions below ``seg_num``). A set of ints."""
    count = max(1, -(-span_us // max(1, gap_us)))
    positions = set()
    for n in (count - 1, count, count + 1):
        if n >= 1:
            positions.update(sample_indices(n, seg_num, "infer"))
    if count + 1 < 2 * seg_num:
        positions.update(range(seg_num))
    return positions


class _Window:
    """Window k during the first pass: its times (us), first frame and count so far, and the frames
    (position -> frame) retrieved for it."""

    def __init__(self, k, start, end, first, planned):
        self.k, self.start, self.end, self.first, self.planned = k, start, end, first, planned
        self.count, self.kept = 0, {}


class _FirstPass:
    """Every frame grabbed once, in order; windows opened, filled and closed on the frames' times; a
    closed window whose real sample is at hand is emitted, the others are left for the second pass."""

    def __init__(self, cap, seg_num, window_seg_num, seconds, stride, transform, emit, shots=None, renumber=None):
        self.cap, self.transform, self.emit, self.shots = cap, transform, emit, shots
        # shots of shared frames: transform only the frames sampled (``renumber`` told of each one's index)
        self.lazy, self.renumber = shots is not None and shots.shared, renumber
        self.window_seg_num = window_seg_num
        self.size = round(seconds * US) if seconds else None
        self.step = round(stride * US) if seconds else None
        self.claimed = container_frame_count(cap)
        self.clock = FrameClock(nominal_fps(cap))
        self.video_indices = set(sample_indices(self.claimed, seg_num, "infer")) if self.claimed else set()
        self.video = {}        # index -> frame, for the whole video's sample planned on the claimed count
        self.open = []         # _Window, in k order
        self.next_k = 0        # the first window not opened yet
        self.t0 = None         # the first frame's time
        self.gap = None        # the last positive gap between two frames' times
        self.last_index = -1
        self.redo = []         # (("window", k, start, end), first index, count): what the second pass samples

    def start_of(self, k):
        return self.t0 + k * self.step

    def _starting(self, time):
        """``(t0, k_full, k_end)`` for a frame at ``time``: the windows not opened yet that start at or
        before it are ``next_k <= k < k_end``; those ``< k_full`` end before it (they get no frame)."""
        t0 = time if self.t0 is None else self.t0
        k_end = (time - t0) // self.step + 1
        if k_end > MAX_WINDOWS:
            raise ValueError(f"timestamps reach {time / US:.0f} s: more than {MAX_WINDOWS} windows")
        k_full = max(self.next_k, (time - t0 - self.size) // self.step + 1)
        return t0, min(k_full, k_end), k_end

    def _gap(self, time):
        """The gap before a frame at ``time``, to predict how many frames a window starting there holds."""
        if self.clock.last is not None and time > self.clock.last:
            return time - self.clock.last
        return self.gap or self.clock.frame_us

    def wanted(self, index):
        """Is frame ``index`` (just grabbed) to be retrieved? Changes nothing: a frame whose retrieve fails
        is skipped and the next one asked again under the same index."""
        return self.shots is not None or self.sampled(index)  # the shot detector sees every frame

    def sampled(self, index):
        """Is frame ``index`` (just grabbed) sampled by the video or by a window it falls in?"""
        if index in self.video_indices:
            return True
        if not self.size:
            return False
        time = self.clock.time(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        if any(time < w.end and w.count in w.planned for w in self.open):
            return True
        t0, k_full, k_end = self._starting(time)
        gap = self._gap(time)
        return any(0 in predicted_positions(t0 + k * self.step + self.size - time, gap, self.window_seg_num)
                   for k in range(k_full, k_end))

    def add(self, index, frame):
        """Frame ``index`` decoded (``frame``: RGB, or None where not retrieved)."""
        time = self.clock.time(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        small = None
        if frame is not None and (not self.lazy or self.sampled(index)):
            if self.lazy and self.renumber is not None:
                self.renumber(index)
            small = self.transform(frame)
        if index in self.video_indices:
            self.video[index] = small
        if self.size:
            self._place(index, time, small)
        if self.shots is not None:  # after _place: the windows this frame closed have been emitted
            self.shots.add(index, time / US, frame, small, min((w.first for w in self.open), default=None))
        if self.clock.last is not None and time > self.clock.last:
            self.gap = time - self.clock.last
        self.clock.tick(time)
        self.last_index = index

    def _place(self, index, time, frame):
        t0, k_full, k_end = self._starting(time)
        self.t0 = t0
        for window in [w for w in self.open if time >= w.end]:  # a frame at or after its end: complete
            self.open.remove(window)
            self._close(window, window.end)
        for k in range(self.next_k, k_full):  # no frame of its own: the frame on screen, the last before it
            self.redo.append((window_head(k, self.start_of(k), self.start_of(k) + self.size), self.last_index, 1))
        gap = self._gap(time)
        for k in range(k_full, k_end):
            end = self.start_of(k) + self.size
            self.open.append(_Window(k, self.start_of(k), end, index,
                                     predicted_positions(end - time, gap, self.window_seg_num)))
        self.next_k = max(self.next_k, k_end)
        for window in self.open:
            if window.count in window.planned:
                window.kept[window.count] = frame
            window.count += 1

    def _close(self, window, end):
        positions = sample_indices(window.count, self.window_seg_num, "infer")
        if all(p in window.kept for p in positions):
            self.emit(window_head(window.k, window.start, end) + ([window.kept[p] for p in positions],))
            if self.shots is not None and self.shots.shared:
                self.shots.sampled([window.first + p for p in positions])
        else:
            self.redo.append((window_head(window.k, window.start, end), window.first, window.count))
            if self.shots is not None and self.shots.shared:
                self.shots.sampled([window.first + p for p in positions], later=True)

    def finish(self):
        """The end of the stream: close the open windows up to the first that holds the last frame; the
        last one ends with the video (the last frame's time plus the gap before it)."""
        if self.last_index < 0:
            return
        video_end = self.video_end()
        for window in self.open if self.size else ():
            if window.k == 0 or self.start_of(window.k - 1) + self.size <= self.clock.last:
                self._close(window, min(window.end, video_end))
            # else: the window before it holds the last frame already
        self.open = []
        if self.shots is not None:  # after the windows: a shot of shared frames waits for them
            self.shots.finish(video_end / US)
        if self.lazy and self.renumber is not None:
            self.renumber(self.last_index + 1)  # the second pass's frames after every index

    def video_end(self):
        """The end of the last frame (us): its time plus the gap before it."""
        return self.clock.last + (self.gap or self.clock.frame_us)

    def metadata(self):
        """``{"duration", "fps", "frames", "width", "height", "codec"}``: seconds to the end of the last
        decoded frame, the container's frame rate (``nominal_fps``), the frames decoded, the frame size
        and the codec's FourCC as the container gives them (``None`` where it gives none)."""
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") if fourcc > 0 else ""
        return {"duration": to_seconds(self.video_end()), "fps": round(nominal_fps(self.cap), 3),
                "frames": self.last_index + 1, "width": int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                "height": int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                "codec": codec if codec.isprintable() and codec else None}


def window_head(k, start, end):
    """The message of window k, times in us, but its frames: ``("window", k, start_seconds, end_seconds)``."""
    return ("window", k, to_seconds(start), to_seconds(end))


def to_seconds(us):
    return round(us / US, 3)


def decode_windows(path, seg_num, transform, emit, seconds=None, stride=None, window_seg_num=None, shots=False,
                   thumbnails=False, shared=False, renumber=None):
    """Decode ``path``; call ``emit`` for each window (by time, see the module docstring), for each shot
    (with ``shots``, see ``shot_clips``), then for the whole video.

    emit(("window", k, start_seconds, end_seconds, frames)) once for each window (only with ``seconds``),
    in order of k except that the windows left to the second pass come after the first pass's;
    with ``shots``: emit(("shot", k, frames)) once for each shot (with ``shared``, emit(("shared_shot", k,
    start_frame, end_frame, frames, indices)) instead: ``shot_clips.ShotClips``), emit(("thumbnail", k,
    jpeg bytes)) for each shot with ``thumbnails``, and emit(("shots", [(start_frame, end_frame,
    start_seconds, end_seconds)])) once the first pass is over (after the last windows); emit(("video",
    frames, num_frames, metadata)) last (``_FirstPass.metadata``). ``frames``: lists of ``transform(RGB
    uint8 frame)``, ``window_seg_num`` (default ``seg_num``) per window and per shot, ``seg_num`` for the
    video, as ``sample_indices`` picks them (infer mode) from the window's (shot's, video's) frames.
    Raises ``ValueError``.

    With ``shared`` the first pass transforms only the frames the video's and the windows' samples take
    (and the first frame of a shot that holds none of them); ``renumber(index)`` (``Numbered.renumber``)
    is called before each of those is transformed, and with the frame count at the end of the first pass.
    """
    window_seg_num = window_seg_num or seg_num
    stride = stride or seconds

    def first_pass(cap):
        clips = ShotClips(window_seg_num, nominal_fps(cap), emit, thumbnails, transform if shared else None) \
            if shots else None
        state = _FirstPass(cap, seg_num, window_seg_num, seconds, stride, transform, emit, clips, renumber)
        if shared and clips is not None:
            clips.share(state.video_indices)
        for index, frame in decoded_frames(cap, state.wanted, state.claimed):
            state.add(index, frame)
        state.finish()
        return state, state.metadata() if state.last_index >= 0 else None

    state, metadata = with_video(path, first_pass)
    total = state.last_index + 1
    if total == 0:
        raise ValueError("no frames decoded")
    redo = state.redo + (state.shots.redo if shots else [])
    video = sample_indices(total, seg_num, "infer")
    if total == state.claimed and not redo:  # everything is at hand
        emit(("video", [state.video[i] for i in video], total, metadata))
        return
    # The second pass: the windows and shots whose sample the first could not retrieve, and the whole
    # video where the container lied about its length.
    second = _SecondPass(redo, window_seg_num, video, state.video if total == state.claimed else {},
                         transform, emit)

    def second_pass(cap):
        for index, frame in decoded_frames(cap, second.wanted, state.claimed):
            second.add(index, frame)
            if second.finished():
                return

    with_video(path, second_pass)
    if not second.finished():
        missing = min([i for i in video if i not in second.kept] + [w[1] for w in second.pending] +
                      [min(w[1]) for w in second.active])
        raise ValueError(f"frame {missing} of {total} not decoded on the second pass")
    emit(("video", [second.kept[i] for i in video], total, metadata))


class _SecondPass:
    """The windows and shots the first pass could not sample (``redo``: ``(head, first index, count)``,
    ``head`` the message without its frames, e.g. ``("window", k, start, end)``; ``count``: a frame count,
    sampled by ``sample_indices``, or the list of the frame indices to take) and the whole video's
    sample where ``kept`` lacks it, retrieved in one pass up to the last frame they need. A window (shot)
    is emitted as soon as its last sampled frame is decoded; ``kept`` holds the sampled frames of the
    windows open at the current frame and the video's (index -> frame)."""

    def __init__(self, redo, window_seg_num, video, kept, transform, emit):
        self.window_seg_num, self.transform, self.emit = window_seg_num, transform, emit
        self.pending = collections.deque(sorted(redo, key=lambda w: (w[1], w[0][0], w[0][1])))  # by first frame
        self.active = []  # (head, sample indices, as a set)
        self.video, self.kept = set(video), kept
        self.video_missing = len(self.video.difference(kept))

    def _activate(self, index):
        while self.pending and self.pending[0][1] <= index:
            head, first, count = self.pending.popleft()
            indices = (list(count) if isinstance(count, list)
                       else [first + p for p in sample_indices(count, self.window_seg_num, "infer")])
            self.active.append((head, indices, set(indices)))

    def wanted(self, index):
        self._activate(index)
        return (index in self.video and index not in self.kept) or any(index in w[2] for w in self.active)

    def add(self, index, frame):
        self._activate(index)
        if frame is not None:
            if index in self.video and index not in self.kept:
                self.video_missing -= 1
            self.kept[index] = self.transform(frame)
        complete = [w for w in self.active if max(w[1]) <= index]
        for window in complete:
            self.active.remove(window)
            head, indices, _ = window
            if any(i not in self.kept for i in indices):
                raise ValueError(f"frame {min(i for i in indices if i not in self.kept)} not decoded on the "
                                 f"second pass")
            self.emit(head + ([self.kept[i] for i in indices],))
        if complete:
            for i in [i for i in self.kept if i not in self.video and not any(i in w[2] for w in self.active)]:
                del self.kept[i]

    def finished(self):
        return not self.pending and not self.active and self.video_missing == 0


def _resize_crop(short_size, target_size, frame):
    return centre_crop(resize_frame(frame, short_size), target_size)


def stream_video(path, emit, decode):
    """A decode worker's job (``decode_pool.DecodePool``, no Paddle here): ``emit`` each window of ``path``
    and then the whole video (see ``decode_windows``); an exception fails the video.

    decode: ``(seg_num, short_size, target_size, seconds, stride, window_seg_num)``; frames are resized
    and centre-cropped as the extractor's.
    """
    seg_num, short_size, target_size, seconds, stride, window_seg_num = decode
    transform = functools.partial(_resize_crop, short_size, target_size)
    decode_windows(path, seg_num, transform, emit, seconds, stride, window_seg_num)


def stream_levels(path, emit, decode):
    """The tagger's decode job: as ``stream_video``, with shots, and each message that carries frames
    gets one more element, the frames' numbers (``Numbered``): a frame in several samples (a window's
    and a shot's) has one number, so that the consumer computes its features once.

    decode: ``stream_video``'s and ``(shots, thumbnails, shared)`` (see ``decode_windows``). With shots, a
    frame's number on the first pass is its index (every frame is transformed, in order; with ``shared``
    only those sampled, renumbered): "shared_shot" messages name their frames by index.
    """
    seg_num, short_size, target_size, seconds, stride, window_seg_num, shots, thumbnails, shared = decode
    numbered = Numbered(functools.partial(_resize_crop, short_size, target_size))

    def emit_numbered(message):
        if message[0] == "shared_shot":  # its frames are named by index
            emit(message)
            return
        frames = message[FRAMES_AT[message[0]]] if message[0] in FRAMES_AT else None
        emit(message if frames is None else message + ([numbered.number(f) for f in frames],))

    decode_windows(path, seg_num, numbered, emit_numbered, seconds, stride, window_seg_num, shots, thumbnails,
                   shared, numbered.renumber)


FRAMES_AT = {"window": 4, "shot": 2, "video": 1}  # where each message of decode_windows holds its frames


class Numbered:
    """A transform that numbers what it makes, in order: ``number(out)`` is the number of a frame it made
    (alive). A frame made again (on the second pass) gets a new number. Holds no frame: an entry goes
    when its frame does."""

    def __init__(self, transform):
        self.transform, self.count, self.numbers = transform, 0, {}

    def __call__(self, frame):
        out = self.transform(frame)
        key = id(out)
        self.numbers[key] = (weakref.ref(out, lambda _: self.numbers.pop(key, None)), self.count)
        self.count += 1
        return out

    def renumber(self, number):
        """The next frame made is numbered ``number``, those after it on from there."""
        self.count = number

    def number(self, out):
        ref, number = self.numbers.get(id(out), (None, None))
        if ref is None or ref() is not out:
            raise RuntimeError("a frame this transform did not make")
        return number
