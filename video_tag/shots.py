"""Shot changes detected while a video decodes: fed each decoded frame once, in decoding order, with
bounded state; hard cuts and gradual transitions (dissolves, fades), a gradual one cut at its middle.

Why our own detector and not PySceneDetect (``scenedetect`` 0.7.2, checked): its ``scenedetect-headless``
wheel declares ``opencv-python-headless`` and its detectors can be fed frames one by one
(``detector.process_frame(FrameTimecode, frame)``), so it could run here. But its detectors compare
each frame with the previous one only (ContentDetector, AdaptiveDetector, HistogramDetector,
HashDetector; ThresholdDetector finds fades to black only): a 15-frame dissolve moves each frame by a
fifteenth of a cut and goes unseen (tests/test_shots.py measures it), and its HSV conversion of the full
frame costs about as much as decoding it. This module runs on a 32x18 thumbnail (one ``cv2.resize``, a
few vector operations per frame) and finds dissolves by their linearity. tests/test_shots.py compares its
cuts with PySceneDetect's ContentDetector on the same generated videos (run where ``scenedetect`` is
installed).

The algorithm, on ``T_i``: frame i shrunk to ``THUMB`` (averages of 16 pixels: noise and small motions fade),
float32, and ``d(a, b)``: the mean absolute difference of two thumbnails (grey levels, 0..255).

- Hard cut before frame i: ``c_i = d(T_i, T_{i-1})`` is at least ``cut_min`` and at least ``cut_ratio``
  times each of ``c_{i-2}, c_{i-1}, c_{i+1}, c_{i+2}`` (fast motion changes every frame, a cut one; a
  flash changes two frames in a row and is no cut).
- Gradual transition with its middle at frame m (half span ``h``): ``E = d(T_{m-h}, T_{m+h})`` is at
  least ``gradual_min``; the middle frame is the mix of the two ends, ``d(T_m, (T_{m-h} + T_{m+h}) / 2)
  <= linearity * E`` (a dissolve mixes linearly: 0 at its middle, ``|alpha - 1/2| * E`` elsewhere; a
  cut between the ends gives ``E / 2``; a pan or a moving object gives neither); and the change is
  local, ``E >= contrast * max(d(T_{m-3h}, T_{m-h}), d(T_{m+h}, T_{m+3h}))`` (a pan changes the frames
  before and after as much). The frames m where all three hold form a run; the cut is the run's middle
  frame (0.5 s of the true middle for 15 to 40-frame dissolves at 25 frames/s). A fade out and in
  through black is two such transitions (A to black, black to B).
- A cut less than ``min_shot`` frames after the previous one is dropped (a shot of a few frames is a
  glitch more often than a shot; a hard cut never falls inside a gradual run: it breaks linearity).

Parameters are in frames, tuned for 24 to 30 frames/s; they are keyword arguments of ``ShotDetector``.
Limits: a gradual transition needs ``3 * h`` frames of one shot on either side (a dissolve less than
about 1 s from another cut or from the video's ends can be missed); a transition longer than ``2 * h``
frames is found by linearity alone, which a steady brightness change also has.

Memory: the last ``6 * h + 1`` thumbnails (7 KB each) and their frame times; cuts are decided ``3 * h +
1`` frames after they happen (``ShotDetector.delay``).
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
    f: frame f starts a shot; final cuts come in increasing order, ``delay`` frames or more late).
    ``finish(end_time=None)``: the shots, ``[(start_frame, end_frame, start_time, end_time)]`` (end
    exclusive; 0-based decoded frame numbers); the last shot ends at ``end_time`` or, without it, at the
    last frame's time plus the gap before it. No frame: ``[]``; one frame or no cut: one shot.
    """

    def __init__(self, cut_min=12.0, cut_ratio=3.0, half_span=8, gradual_min=20.0, linearity=0.3,
                 contrast=1.5, min_shot=5):
        self.cut_min, self.cut_ratio = cut_min, cut_ratio
        self.h, self.gradual_min, self.linearity, self.contrast = half_span, gradual_min, linearity, contrast
        self.min_shot = min_shot
        self.delay = 3 * half_span + 1
        self.thumbs = collections.deque(maxlen=6 * half_span + 1)  # T_{n-len} .. T_{n-1}
        self.diffs = {}        # k -> c_k = d(T_k, T_{k-1}), for the last 5 frames
        self.times = {}        # frame number -> time, for the frames a cut may still start
        self.oldest = 0        # the oldest frame number in times
        self.count = 0         # frames added
        self.gap = None        # the last positive gap between two frames' times
        self.hard = []         # hard cuts found, not final yet
        self.run = None        # [first m, last m] of the gradual run under way
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
        if self.thumbs:
            self.diffs[n] = distance(thumb, self.thumbs[-1])
            self.diffs.pop(n - 5, None)
        self.thumbs.append(thumb)
        self.count = n + 1
        if n - 2 >= 1:
            self._check_hard(n - 2)
        if len(self.thumbs) == self.thumbs.maxlen:
            self._check_gradual(n - 3 * self.h)
        return self._finalise(n - self.delay)

    def _check_hard(self, i):
        """Is there a cut before frame i? (Neighbours beyond the video's ends are left out.)"""
        here = self.diffs[i]
        around = [self.diffs[k] for k in (i - 2, i - 1, i + 1, i + 2) if k in self.diffs]
        if here >= self.cut_min and all(here >= self.cut_ratio * x for x in around):
            self.hard.append(i)

    def _check_gradual(self, m):
        h, t = self.h, self.thumbs
        centre = len(t) // 2  # T_m
        before, middle, after = t[centre - h], t[centre], t[centre + h]
        span = distance(before, after)
        holds = (span >= self.gradual_min
                 and distance(middle, (before + after) / 2) <= self.linearity * span
                 and span >= self.contrast * max(distance(t[0], before), distance(after, t[-1])))
        if holds:
            self.run = [m, m] if self.run is None else [self.run[0], m]
        elif self.run is not None:
            first, last = self.run
            self.gradual.append((first + last + 1) // 2)
            self.run = None

    def _finalise(self, upto):
        """Make the cuts at frames <= upto final; returns those kept."""
        if self.run is not None:
            upto = min(upto, self.run[0] - self.h - 1)
        found = [f for f in self.hard if f <= upto]
        self.hard = [f for f in self.hard if f > upto]
        found += [g for g in self.gradual if g <= upto]
        self.gradual = [g for g in self.gradual if g > upto]
        kept = []
        for f in sorted(found):
            if f - (self.cuts[-1] if self.cuts else 0) >= self.min_shot:
                self.cuts.append(f)
                self.starts[f] = self.times[f]
                kept.append(f)
        while self.oldest < upto - 6 * self.h:  # times no cut can start at any more
            self.times.pop(self.oldest, None)
            self.oldest += 1
        return kept

    def finish(self, end_time=None):
        if self.count == 0:
            return []
        for i in range(max(1, self.count - 2), self.count):  # the last two frames: fewer neighbours after
            self._check_hard(i)
        if self.run is not None:
            self._check_gradual_end()
        self._finalise(self.count)
        last = self.times[self.count - 1]
        end = end_time if end_time is not None else last + (self.gap or 0.0)
        bounds = [0] + self.cuts + [self.count]
        return [(a, b, self.starts[a], self.starts[b] if b < self.count else end)
                for a, b in zip(bounds, bounds[1:])]

    def _check_gradual_end(self):
        first, last = self.run
        self.gradual.append((first + last + 1) // 2)
        self.run = None
