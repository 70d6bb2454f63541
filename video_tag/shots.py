"""Shot changes detected while a video decodes: fed each decoded frame once, in decoding order, with
bounded state; hard cuts and gradual transitions (dissolves, fades), a gradual one cut at its middle.

Why our own detector and not PySceneDetect (``scenedetect`` 0.7.2, checked): its ``scenedetect-headless``
wheel (same code) declares ``opencv-python-headless``, it imports only ``cv2`` and numpy at run time, and
its detectors can be fed frames one by one (``detector.process_frame(FrameTimecode, frame)``), so it
could run here. But its detectors compare each frame with the previous one only (ContentDetector,
AdaptiveDetector, HistogramDetector, HashDetector; ThresholdDetector finds fades to black only): a
15-frame dissolve changes each frame by a fifteenth of a cut and goes unseen (ContentDetector and
AdaptiveDetector find none of the generated dissolves of tests/shot_videos.py), and ContentDetector's
HSV conversion of the full frame costs about as much as decoding it (bench/bench_shots.py). This
module works on a 32x18 thumbnail (two ``cv2.resize``, a few vector operations: ~0.03 ms a 640x360
frame) and finds dissolves and fades by their linearity. tests/test_shots.py checks that its hard cuts
are PySceneDetect's on the same generated videos (where ``scenedetect`` is installed).

The algorithm, on ``T_i``: frame i shrunk to ``THUMB`` (means of 16 pixels: noise and small motions
fade), float32, and ``d(a, b)``: the mean absolute difference of two thumbnails (grey levels, 0..255).

- Hard cut before frame i: ``c_i = d(T_i, T_{i-1})`` is at least ``cut_min`` and at least ``cut_ratio``
  times each of ``c_{i-2}, c_{i-1}, c_{i+1}, c_{i+2}`` (fast motion changes every frame, a cut one; a
  flash of one or two frames changes two frames and is no cut).
- Gradual transition (dissolve, fade) centred on frame m, with half span ``h`` and ``A = T_{m-h}``,
  ``B = T_{m+h}``: (1) ``E = d(A, B) >= gradual_min``; (2) linear: the frames at m - h/2, m, m + h/2
  are the mixes of A and B in proportion to time, each within ``linearity * E`` (a dissolve mixes
  linearly: 0 at its middle, ``|alpha - 1/2| * E`` elsewhere; a cut between the ends gives ``E / 2``;
  a pan or a moving object neither); (3) local: ``E >= contrast`` times the change over ``2 h`` frames
  on the quieter side, ``min(d(T_{m-3h}, A), d(B, T_{m+3h}))`` (motion inside a shot changes both
  sides as much); (4) bounded: on both sides, the frame ``2 h`` further is at least ``bounded * E`` away
  from where the change would have brought it had it gone on (``2A - B``, ``2B - A``): a rise of light
  goes on, a dissolve stops. The frames m where all hold form a run; the cut is its most linear frame.
  A fade out and a fade in (two such runs less than ``4 h`` frames apart) with a uniform frame half way
  (thumbnail standard deviation under ``blank_std``: black, white) are one cut, at that frame.
- A cut less than ``min_shot`` frames after the previous one is dropped (a shot of a few frames is a
  glitch more often than a shot; a hard cut never falls inside a gradual run: it breaks linearity).

Parameters are in frames, tuned for 24 to 30 frames/s on generated videos (bench/bench_shots.py
``--seeds``); they are keyword arguments of ``ShotDetector``. Limits: with ``h = 8``, dissolves of 10 to
20 frames are found (measured: 25 frames, some twice; 30 and more, mostly missed): a longer one needs
``half_span`` about half its length (and all parameters in frames scale with the frame rate). A gradual
transition needs ``3 * h`` frames on either side (one within ~1 s of the video's start or end is
missed) and ``2 h`` frames before or after it without another transition.

Memory: the last ``6 * h + 1`` thumbnails (7 KB each), the times of the last ~``9 * h`` frames; a cut
is final at most ``delay = 7 * h + 1`` frames after it (``3 * h + 1`` for a hard cut not after a
gradual one): ``add`` returns the cuts that became final, in order.
"""
import collections

import cv2
import numpy as np

THUMB = (32, 18)  # width, height of the thumbnail every frame is shrunk to
GRID = 4          # each thumbnail pixel: the mean of GRID x GRID pixels picked on a regular grid


def thumbnail(frame):
    """RGB (or BGR) uint8 [H, W, 3] -> float32 [18, 32, 3]: the mean of 4 x 4 pixels picked evenly over
    each thumbnail pixel's area (at 640x360: one pixel in 5 x 5). About 20 us a frame; an area average of
    every pixel costs 10x more for noise that 16 pixels already average out."""
    grid = cv2.resize(frame, (THUMB[0] * GRID, THUMB[1] * GRID), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(grid, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def distance(a, b):
    """Mean absolute difference of two thumbnails, in grey levels."""
    return cv2.norm(a, b, cv2.NORM_L1) / a.size


class ShotDetector:
    """Shot changes of one video, fed its decoded frames one at a time (see the module docstring).

    ``add(frame, time)``: frame RGB uint8 [H, W, 3], time in seconds (non-decreasing, e.g.
    ``readers.windows.FrameClock``'s); returns the frame numbers of the cuts that became final (a cut at
    f: frame f starts a shot; final cuts come in increasing order, at most ``delay`` frames late).
    ``finish(end_time=None)``: the shots, ``[(start_frame, end_frame, start_time, end_time)]`` (end
    exclusive; 0-based decoded frame numbers); the last shot ends at ``end_time`` or, without it, at the
    last frame's time plus the gap before it. No frame: ``[]``; one frame or no cut: one shot.
    """

    def __init__(self, cut_min=12.0, cut_ratio=3.0, half_span=8, gradual_min=20.0, linearity=0.3,
                 contrast=2.0, bounded=0.8, blank_std=10.0, min_shot=5):
        self.cut_min, self.cut_ratio = cut_min, cut_ratio
        self.h, self.gradual_min, self.linearity, self.bounded = half_span, gradual_min, linearity, bounded
        self.contrast, self.blank_std, self.min_shot = contrast, blank_std, min_shot
        self.delay = 7 * half_span + 1  # the latest a cut is final: a gradual one waits 4 h for its fade pair
        self.thumbs = collections.deque(maxlen=6 * half_span + 1)  # T_{n-len} .. T_{n-1}
        self.diffs = {}        # k -> c_k = d(T_k, T_{k-1}), for the last 5 frames
        self.times = {}        # frame number -> time, for the frames a cut may still start
        self.blank = set()     # the frame numbers in times whose thumbnail is uniform (black, white)
        self.oldest = 0        # the oldest frame number in times
        self.count = 0         # frames added
        self.gap = None        # the last positive gap between two frames' times
        self.hard = []         # hard cuts found, not final yet
        self.run = None        # [first m, last m, lowest residual, its m] of the gradual run under way
        self.gradual = []      # gradual cuts found (run middles), not final yet
        self.cuts = []         # final cuts
        self.starts = {0: 0.0}  # cut frame -> its time (frame 0's set on its arrival)

    def add(self, frame, time):
        n = self.count
        thumb = thumbnail(frame)
        if n == 0:
            self.starts[0] = time
        elif time > self.times[n - 1]:
            self.gap = time - self.times[n - 1]
        self.times[n] = time
        if max(cv2.meanStdDev(thumb)[1]) < self.blank_std:
            self.blank.add(n)
        if self.thumbs:
            self.diffs[n] = distance(thumb, self.thumbs[-1])
            self.diffs.pop(n - 5, None)
        self.thumbs.append(thumb)
        self.count = n + 1
        if n - 2 >= 1:
            self._check_hard(n - 2)
        if len(self.thumbs) == self.thumbs.maxlen:
            self._check_gradual(n - 3 * self.h)
        return self._finalise(n - 3 * self.h - 1)

    def _check_hard(self, i):
        """Is there a cut before frame i? (Neighbours beyond the video's ends are left out.)"""
        here = self.diffs[i]
        around = [self.diffs[k] for k in (i - 2, i - 1, i + 1, i + 2) if k in self.diffs]
        if here >= self.cut_min and all(here >= self.cut_ratio * x for x in around):
            self.hard.append(i)

    def _check_gradual(self, m):
        h, t = self.h, self.thumbs
        centre = len(t) // 2  # T_m
        before, after = t[centre - h], t[centre + h]
        span = distance(before, after)
        if span < self.gradual_min:
            holds = False
        else:
            q = h // 2
            residual = max(distance(t[centre - q], before + (after - before) * ((h - q) / (2 * h))),
                           distance(t[centre], (before + after) / 2),
                           distance(t[centre + q], before + (after - before) * ((h + q) / (2 * h)))) / span
            holds = (residual <= self.linearity
                     and span >= self.contrast * min(distance(t[0], before), distance(after, t[-1]))
                     and min(distance(t[0], 2 * before - after), distance(t[-1], 2 * after - before))
                     >= self.bounded * span)
        if holds:
            if self.run is None:
                self.run = [m, m, residual, m]
            self.run[1] = m
            if residual < self.run[2]:
                self.run[2:] = [residual, m]
        elif self.run is not None:
            self._end_run()

    def _end_run(self):
        """The run's most linear frame is a gradual cut; a fade out and a fade in with a uniform frame half
        way between them (less than 4 h frames apart) are one cut, at that frame."""
        middle = self.run[3]
        self.run = None
        if self.gradual and middle - self.gradual[-1] <= 4 * self.h:
            half_way = (self.gradual[-1] + middle) // 2
            if half_way in self.blank:
                self.gradual[-1] = half_way
                return
        self.gradual.append(middle)

    def _finalise(self, upto):
        """Make the cuts at frames <= upto final, but a gradual cut only once the 4 h frames after it
        are known (its fade pair); returns those kept."""
        if self.run is not None:
            upto = min(upto, self.run[0] - self.h - 1)
        for g in self.gradual:
            if g + 4 * self.h > upto:
                upto = min(upto, g - 1)
        found = [f for f in self.hard + self.gradual if f <= upto]
        self.hard = [f for f in self.hard if f > upto]
        self.gradual = [g for g in self.gradual if g > upto]
        kept = []
        for f in sorted(found):
            if f - (self.cuts[-1] if self.cuts else 0) >= self.min_shot:
                self.cuts.append(f)
                self.starts[f] = self.times[f]
                kept.append(f)
        while self.oldest < upto - 6 * self.h:  # times no cut can start at any more
            self.times.pop(self.oldest, None)
            self.blank.discard(self.oldest)
            self.oldest += 1
        return kept

    def finish(self, end_time=None):
        if self.count == 0:
            return []
        for i in range(max(1, self.count - 2), self.count):  # the last two frames: fewer neighbours after
            self._check_hard(i)
        if self.run is not None:
            self._end_run()
        self._finalise(self.count + 4 * self.h)
        last = self.times[self.count - 1]
        end = end_time if end_time is not None else last + (self.gap or 0.0)
        bounds = [0] + self.cuts + [self.count]
        return [(a, b, self.starts[a], self.starts[b] if b < self.count else end)
                for a, b in zip(bounds, bounds[1:])]
