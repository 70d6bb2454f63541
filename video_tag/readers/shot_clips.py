"""Shots of a video and the sample of each, from the frames of the one decoding pass of ``windows.py``.

Every decoded frame goes to a ``shots.ShotDetector`` with its time (``windows.FrameClock``); each shot
is sampled as the extractor samples a whole video: ``sample_indices(shot's frame count, seg_num,
"infer")`` over the shot's own frames. A shot's frame count is known only once its closing cut is
final, at most ``detector.delay`` frames later (or at the end of the video), so the sampled frames must
be in hand by then without holding the shot: a shot of fewer than ``2 * seg_num`` frames samples only
among its first ``seg_num`` frames, so those are kept (transformed, e.g. 224 x 224 crops), and every
frame of the last ``delay + 1``, whose shot is not known yet. A shot sampled from them is emitted when
its cut becomes final; a longer one (or one whose cut came later than ``delay``) is left to the second
pass of ``windows.decode_windows`` (``redo``). With ``thumbnails``, each shot also gets a small JPEG of
the frame nearest its middle, chosen among decimated candidates (at most ``CANDIDATES`` per shot, plus
the last ``delay + 1`` frames).

Memory: ``seg_num + delay + 1`` transformed frames (about 54 MB at seg_num 300 and 224 x 224) and,
with thumbnails, ``CANDIDATES + delay + 1`` frames of ``THUMB_WIDTH`` pixels wide; nothing grows with
the video's length but the list of shots (4 numbers each).

``shared`` (``videotag.py --shot_frames shared``): a shot is sampled from the frames the run sends through
TSN anyway, those of the video's sample (as planned on the container's frame count: where that count is
wrong, these frames go through TSN for the shots alone) and of the windows' samples, that lie inside the
shot (their union, distinct, in time order); more
than ``seg_num`` of them: ``sample_indices(len(them), seg_num)`` picks among them; none (a shot shorter
than the gaps between them): its first frame (transformed then: the first pass transforms only the frames
sampled, ``windows.decode_windows``). Such a shot is emitted once its cut is final and every
window holding one of its frames is closed (the windows' messages come first), as ``("shared_shot", k,
start_frame, end_frame, frames, indices)``: ``frames[i]`` is the transformed frame ``indices[i]`` where
no window's message carried it before (a frame of the video's sample, a shot's first frame), else None.
A shot whose frames include those of a window sampled on the second pass (the last window, where the
video ends inside it; a frame rate that changes) is sampled on that pass too (``redo``, with its frame
indices), as a ``("shot", k, frames)``: its frames also in the samples of windows emitted on the first
pass go through TSN twice. Held: the video's sampled frames inside the shots not emitted yet, the last ``delay + 1`` decoded
frames (RGB: 40 MB at 640 x 360, 360 MB at 1920 x 1080), and the indices of the windows' sampled frames
from the first shot not emitted on.
"""
import collections

import cv2

from ..shots import ShotDetector
from .video_reader import sample_indices

CANDIDATES = 32    # thumbnail candidates kept per shot beyond the frames whose shot is not known yet
THUMB_WIDTH = 192  # pixels; the height keeps the frame's aspect
THUMB_QUALITY = 80


def detector_for(fps):
    """A ``ShotDetector`` for a video of ``fps`` frames/s. Its parameters in frames are tuned for 24 to 30
    frames/s; outside 20..40 frames/s the gradual half span and the shortest shot scale with the rate
    (a dissolve lasts about as many seconds at any rate)."""
    scale = 1.0 if 20 <= fps <= 40 else fps / 25
    return ShotDetector(half_span=max(2, round(8 * scale)), min_shot=max(2, round(5 * scale)))


def small_frame(frame):
    """RGB uint8 [H, W, 3] -> [h, THUMB_WIDTH, 3] (aspect kept), a thumbnail candidate."""
    h, w = frame.shape[:2]
    size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))) if w > THUMB_WIDTH else (w, h)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class ShotClips:
    """Shots of one video, fed every decoded frame once, in order: ``add(index, time, frame, small)``
    (``frame`` RGB uint8, ``small`` its transform, ``time`` in seconds), then ``finish(end_time)``.

    Emits ``("shot", k, [seg_num transformed frames])`` when shot k's sample is in hand,
    ``("thumbnail", k, jpeg bytes)`` with ``thumbnails``, and at ``finish`` ``("shots", [(start_frame,
    end_frame, start, end)])`` (end exclusive; seconds rounded to ms). ``redo``: ``(("shot", k), first
    frame, frame count)`` of the shots whose sample was not in hand (shared: ``(("shot", k), first frame,
    [frame indices])``).
    """

    def __init__(self, seg_num, fps, emit, thumbnails=False, shared=None):
        self.detector = detector_for(fps)
        self.seg_num, self.emit, self.thumbnails = seg_num, emit, thumbnails
        self.shared, self.transform = shared is not None, shared  # shared: the transform of a first frame
        self.kept = {}        # index -> transformed frame (shared: (RGB frame, transformed or None), the last
        #                       delay + 1 frames)
        self.video = set()    # shared: the indices of the video's sample (``share``)
        self.union = {}       # shared: index -> its transformed frame, or None where a window's message sent it
        self.later = set()    # shared: indices of the samples of windows left to the second pass
        self.waiting = collections.deque()  # shared: (k, start_frame, end_frame, its first frame), cut final
        self.first = None     # shared: the first frame of the shot under way, (RGB, transformed or None)
        self.candidates = {}  # index -> small RGB frame, thumbnail candidates
        self.step = 1         # candidates of the shot under way older than delay: one frame in step
        self.start, self.k = 0, 0  # the shot under way: its first frame (a final cut), its number
        self.redo = []

    def share(self, video):
        """Shared mode: ``video``, the indices of the video's sample (a set)."""
        self.video = video

    def sampled(self, indices, later=False):
        """Shared mode: a window's message carrying the frames ``indices`` has been emitted (``later``: the
        window is left to the second pass)."""
        low = self.waiting[0][1] if self.waiting else self.start
        for i in indices:
            if i >= low and later:
                self.later.add(i)
            elif i >= low:
                self.union[i] = None

    def add(self, index, time, frame, small, ready=None):
        """``ready``: the first frame an open window holds (``index + 1`` without one): a shot ending at or
        before it has every window's sample of its frames in ``sampled``."""
        self.kept[index] = (frame, small) if self.shared else small
        if self.shared and index in self.video:
            self.union[index] = small
        if self.shared and index == 0:
            self.first = self.kept[0]
        if self.thumbnails:
            self.candidates[index] = small_frame(frame)
        for cut in self.detector.add(frame, time):
            self._close(cut)
        old = index - self.detector.delay - 1  # its shot is known: every cut up to here is final
        if self.shared or old - self.start >= self.seg_num:
            self.kept.pop(old, None)
        if self.shared:
            self._release(index + 1 if ready is None else ready)
        if self.thumbnails and (old - self.start) % self.step:
            self.candidates.pop(old, None)
            older = [i for i in self.candidates if i <= old]
            if len(older) > CANDIDATES:
                self.step *= 2
                for i in older:
                    if (i - self.start) % self.step:
                        del self.candidates[i]

    def _close(self, cut):
        """The shot under way ends before frame ``cut``."""
        count = cut - self.start
        if self.shared:
            self.waiting.append((self.k, self.start, cut, self.first))
            self.first = self.kept.get(cut)  # a cut is final at most delay frames late: in hand
        else:
            positions = [self.start + p for p in sample_indices(count, self.seg_num, "infer")]
            if all(p in self.kept for p in positions):
                self.emit(("shot", self.k, [self.kept[p] for p in positions]))
            else:
                self.redo.append((("shot", self.k), self.start, count))
        if self.thumbnails:
            middle = self.start + count // 2
            near = min((i for i in self.candidates if i < cut), key=lambda i: abs(i - middle), default=None)
            if near is not None:
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(self.candidates[near], cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
                if ok:
                    self.emit(("thumbnail", self.k, jpeg.tobytes()))
        for held in (self.candidates,) if self.shared else (self.kept, self.candidates):
            for i in [i for i in held if i < cut]:
                del held[i]
        self.start, self.k, self.step = cut, self.k + 1, 1

    def _release(self, ready):
        """Shared mode: emit the shots waiting that end at or before frame ``ready``."""
        while self.waiting and self.waiting[0][2] <= ready:
            k, start, end, first = self.waiting.popleft()
            indices = sorted(i for i in self.union.keys() | self.later if start <= i < end)
            if len(indices) > self.seg_num:
                indices = [indices[p] for p in sample_indices(len(indices), self.seg_num, "infer")]
            if any(i in self.later for i in indices):
                self.redo.append((("shot", k), indices[0], indices))
            elif indices:
                self.emit(("shared_shot", k, start, end, [self.union[i] for i in indices], indices))
            else:  # made now if the first pass did not: one frame for the shot, not every frame of the video
                frame, small = first
                self.emit(("shared_shot", k, start, end, [small if small is not None else self.transform(frame)],
                           [start]))
            for i in [i for i in self.union if i < end]:
                del self.union[i]
            self.later = {i for i in self.later if i >= end}

    def finish(self, end_time):
        """The end of the video (``end_time``: the end of its last frame, seconds)."""
        shots = self.detector.finish(end_time)
        for _, end_frame, _, _ in shots[self.k:]:
            self._close(end_frame)
        self._release(float("inf"))  # every window is closed (``windows._FirstPass.finish``)
        self.kept, self.candidates, self.union, self.later, self.first = {}, {}, {}, set(), None
        self.emit(("shots", [(a, b, round(start, 3), round(end, 3)) for a, b, start, end in shots]))
