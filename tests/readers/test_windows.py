"""Windows by time (readers/windows.py): each window holds the frames whose timestamps fall in it, whatever
the frame rate or the frame count the container claims, and is sampled from its own frames as the
extractor samples a whole video; the whole video is sampled as the extractor samples it."""
import fractions
import weakref

import cv2
import numpy as np
import pytest

from timed_video import frame_image, frame_number, write_timed_video
from video_tag.readers import video_reader as vr
from video_tag.readers import windows
from video_tag.readers.video_reader import decode_sampled, sample_indices
from video_tag.readers.windows import FrameClock, decode_windows

# 25 frames/s for 1 s, 5 frames/s for 1 s, 50 frames/s for 0.5 s, nothing for 1.5 s, 25 frames/s for 1 s
VFR_STAMPS = (list(range(0, 1000, 40)) + list(range(1000, 2000, 200)) + list(range(2000, 2500, 20)) + [4000]
              + list(range(4040, 5000, 40)))  # ms; 80 frames; the video ends at 5.0 s


def windows_of(path, seconds, stride=None, seg_num=4, window_seg_num=3):
    """``[(k, start, end, [frame numbers])]`` in k order, and the whole video's ``(frame numbers, count)``;
    checks that each window comes once and the video last."""
    messages = []
    decode_windows(path, seg_num, frame_number, messages.append, seconds, stride, window_seg_num)
    assert messages[-1][0] == "video" and all(m[0] == "window" for m in messages[:-1])
    found = sorted(m[1:] for m in messages[:-1])
    assert [w[0] for w in found] == list(range(len(found)))
    return found, (messages[-1][1], messages[-1][2])


def extractor_sample(path, seg_num=4):
    frames, _, count = decode_sampled(path, seg_num, "infer", transform=frame_number)
    return frames, count


# Each window by hand: [t0 + k * stride, + seconds) on the timestamps above; the window's frames sampled
# as sample_indices(count, 3, "infer") picks them; a window with no frame of its own (3-4 s: the gap)
# holds the frame on screen, 54 (at 2.48 s); the last window, the first holding the last frame (4.96 s),
# ends with the video (4.96 s + 40 ms).
VFR_WINDOWS = [(0, 0.0, 1.0, [3, 11, 19]),     # frames 0-24
               (1, 1.0, 2.0, [25, 26, 27]),    # 25-29
               (2, 2.0, 3.0, [33, 41, 49]),    # 30-54
               (3, 3.0, 4.0, [54, 54, 54]),    # none: the frame on screen
               (4, 4.0, 5.0, [58, 66, 74])]    # 55-79
VFR_OVERLAPPING = [(0, 0.0, 1.0, [3, 11, 19]),   # 0-24
                   (1, 0.5, 1.5, [15, 20, 25]),  # 13-27
                   (2, 1.0, 2.0, [25, 26, 27]),  # 25-29
                   (3, 1.5, 2.5, [32, 41, 50]),  # 28-54
                   (4, 2.0, 3.0, [33, 41, 49]),  # 30-54
                   (5, 2.5, 3.5, [54, 54, 54]),  # none
                   (6, 3.0, 4.0, [54, 54, 54]),  # none
                   (7, 3.5, 4.5, [56, 60, 64]),  # 55-67
                   (8, 4.0, 5.0, [58, 66, 74])]  # 55-79; it holds the last frame: no window from 4.5 s
VFR_VIDEO = ([9, 29, 49, 69], 80)


@pytest.fixture(scope="module")
def vfr_videos(tmp_path_factory):
    pytest.importorskip("av")
    folder = tmp_path_factory.mktemp("vfr")
    return {"mp4": write_timed_video(folder / "vfr.mp4", VFR_STAMPS, options={"bframes": "2"}),
            "mkv": write_timed_video(folder / "vfr.mkv", VFR_STAMPS, options={"bframes": "2"})}


def test_windows_follow_the_timestamps_of_a_variable_frame_rate_video(vfr_videos):
    path = vfr_videos["mp4"]
    assert extractor_sample(path) == VFR_VIDEO  # the whole video: the extractor's sample
    assert windows_of(path, 1.0) == (VFR_WINDOWS, VFR_VIDEO)
    assert windows_of(path, 1.0, 0.5) == (VFR_OVERLAPPING, VFR_VIDEO)


def test_a_container_that_over_reports_its_frame_count(vfr_videos):
    path = vfr_videos["mkv"]
    cap = cv2.VideoCapture(path)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) > 100  # Matroska: duration x nominal rate, not the 80 frames
    cap.release()
    assert extractor_sample(path) == VFR_VIDEO
    assert windows_of(path, 1.0) == (VFR_WINDOWS, VFR_VIDEO)
    assert windows_of(path, 1.0, 0.5) == (VFR_OVERLAPPING, VFR_VIDEO)


@pytest.mark.parametrize("claimed", [40, 0])  # under-reports (windows straddle the claimed end), none
def test_a_container_that_under_reports_its_frame_count(vfr_videos, monkeypatch, claimed):
    monkeypatch.setattr(windows, "container_frame_count", lambda cap: claimed)
    monkeypatch.setattr(vr, "container_frame_count", lambda cap: claimed)
    path = vfr_videos["mp4"]
    assert extractor_sample(path) == VFR_VIDEO
    assert windows_of(path, 1.0) == (VFR_WINDOWS, VFR_VIDEO)
    assert windows_of(path, 1.0, 0.5) == (VFR_OVERLAPPING, VFR_VIDEO)


def test_b_frame_timestamps_out_of_order(tmp_path):
    pytest.importorskip("av")
    path = write_timed_video(tmp_path / "b.avi", [40 * i for i in range(15)], codec="mpeg4", max_b_frames=2,
                             time_base=fractions.Fraction(1, 25))
    cap = cv2.VideoCapture(path)
    stamps = []
    while cap.grab():
        stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    # what OpenCV reports for MPEG-4 with B-frames in AVI: one frame late, and the last frame without one
    assert stamps == [40.0 * (i + 1) for i in range(14)] + [0.0]
    video = extractor_sample(path)
    # times 0.04 .. 0.56, the last frame one frame after its predecessor (0.6): the video ends at 0.64 s
    assert windows_of(path, 0.2) == ([(0, 0.04, 0.24, [0, 1, 2]), (1, 0.24, 0.44, [5, 6, 7]),
                                      (2, 0.44, 0.64, [10, 11, 12])], video)


def test_frame_clock_orders_times():
    clock = FrameClock(25)
    times = []
    for ms in [0.0, 40.0, 0.0, 120.0, 100.0, 160.0, float("nan")]:
        times.append(clock.time(ms))
        clock.tick(times[-1])
    # no timestamp (0, NaN): one frame after the last; backwards: at the last frame's time
    assert times == [0, 40000, 80000, 120000, 120000, 160000, 200000]
    clock = FrameClock(10)
    times = []
    for _ in range(4):
        times.append(clock.time(0.0))
        clock.tick(times[-1])
    assert times == [0, 100000, 200000, 300000]  # a container without timestamps: index / fps


class ScriptedCapture:
    """A capture delivering ``frame_image(i)`` with timestamp ``stamps[i]`` (ms) and claiming ``claimed``
    frames at ``fps``; ``counts`` tallies grabs and retrieves over every capture made."""

    def __init__(self, stamps, claimed, fps, counts):
        self.stamps, self.claimed, self.fps, self.counts, self.grabs = stamps, claimed, fps, counts, 0

    def isOpened(self):
        return True

    def get(self, prop):
        if prop == cv2.CAP_PROP_POS_MSEC:
            return float(self.stamps[self.grabs - 1]) if 0 < self.grabs <= len(self.stamps) else 0.0
        return float(self.fps if prop == cv2.CAP_PROP_FPS else self.claimed)

    def grab(self):
        self.grabs += 1
        self.counts["grab"] += 1
        return self.grabs <= len(self.stamps)

    def retrieve(self):
        self.counts["retrieve"] += 1
        return True, frame_image(self.grabs - 1)[:, :, ::-1].copy()

    def release(self):
        pass


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    """``make(stamps, claimed=None, fps=25)``: the path of a video that ``ScriptedCapture`` plays, and the
    counts of its grabs and retrieves."""
    path = tmp_path / "scripted.mp4"
    path.write_bytes(b"")

    def make(stamps, claimed=None, fps=25.0):
        counts = {"grab": 0, "retrieve": 0}
        claimed = len(stamps) if claimed is None else claimed
        monkeypatch.setattr(vr, "open_capture", lambda p: ScriptedCapture(stamps, claimed, fps, counts))
        return str(path), counts
    return make


def reference_windows(stamps, seconds, stride, window_seg_num, fps=25.0):
    """The rule, written out over the whole list of timestamps (ms): times made non-decreasing (a missing
    one, 0, one frame after its predecessor), window k spans [t0 + k * stride, + seconds), holds the frames
    whose times fall in it (none: the last frame before it), the last is the first holding the last frame
    (or the last to start before it), and ends with the video (the last frame + the gap before it)."""
    times = []
    for ms in stamps:
        us = round(ms * 1000)
        times.append(us if not times else times[-1] + round(1e6 / fps) if us <= 0 else max(us, times[-1]))
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    end = times[-1] + (gaps[-1] if gaps else round(1e6 / fps))
    size, step = round(seconds * 1e6), round(stride * 1e6)
    found, k = [], 0
    while True:
        start = times[0] + k * step
        members = [i for i, t in enumerate(times) if start <= t < start + size]
        members = members or [max(i for i, t in enumerate(times) if t < start)]
        found.append((k, round(start / 1e6, 3), round(min(start + size, end) / 1e6, 3),
                      [members[p] for p in sample_indices(len(members), window_seg_num, "infer")]))
        if start + size > times[-1] or times[0] + (k + 1) * step > times[-1]:
            return found
        k += 1


@pytest.mark.parametrize("seed", range(12))
def test_random_timestamps_against_the_rule_written_out(scripted, seed):
    rng = np.random.default_rng(seed)
    gaps = rng.choice([10, 33, 40, 100, 700, 2500], size=int(rng.integers(1, 150)), p=[.2, .3, .3, .1, .07, .03])
    stamps = list(np.cumsum(gaps) - gaps[0] + int(rng.integers(0, 3)) * 40)
    if seed % 3 == 1:  # B-frame-like disorder and missing timestamps
        for i in rng.integers(1, len(stamps), size=len(stamps) // 5):
            stamps[i] = 0 if rng.random() < 0.3 else max(0, stamps[i] - int(rng.integers(1, 200)))
    seconds = float(rng.choice([0.3, 1.0, 2.5]))
    stride = float(rng.choice([seconds, seconds / 2, seconds * 1.5]))
    claimed = [len(stamps), len(stamps) // 2, len(stamps) * 3, 0][seed % 4]
    path, _ = scripted(stamps, claimed)
    video = sample_indices(len(stamps), 5, "infer")
    assert windows_of(path, seconds, stride, 5, 4) == (reference_windows(stamps, seconds, stride, 4),
                                                       (video, len(stamps)))


def test_constant_frame_rate_takes_one_pass(scripted):
    path, counts = scripted([40 * i for i in range(250)])  # 10 s at 25 frames/s, truthful header
    found, video = windows_of(path, 2.0, 1.0, 7, 5)
    assert [w[1:3] for w in found] == [(float(k), k + 2.0) for k in range(9)]
    assert found[1][3] == [29, 39, 49, 59, 69]  # 1-3 s: frames 25-74
    assert counts["grab"] == 251  # one pass
    # the video's sample and, per window, the samples of its predicted count and one more or less
    assert counts["retrieve"] <= len(set(video[0])) + 9 * 5 * 3


@pytest.mark.parametrize("seconds, stride, spans", [
    (0.99, 0.99, [(0.0, 0.99), (0.99, 1.98)]),            # nothing for the last frame's 40 ms alone
    (1.0, 0.98, [(0.0, 1.0), (0.98, 1.98)]),              # nor a window starting on the last frame
    (0.5, 0.5, [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)])])
def test_the_last_window_is_the_first_holding_the_last_frame(scripted, seconds, stride, spans):
    path, counts = scripted([40 * i for i in range(50)])  # the last frame at 1.96 s, the video ends at 2.0 s
    found, _ = windows_of(path, seconds, stride)
    assert [w[1:3] for w in found] == spans
    assert counts["grab"] == 51  # no second pass for a window past the last frame


def test_a_container_without_timestamps_is_timed_by_index_over_fps(scripted):
    path, _ = scripted([0] * 30, fps=10.0)
    found, _ = windows_of(path, 1.0)
    assert [w[1:] for w in found] == [(0.0, 1.0, [1, 4, 7]), (1.0, 2.0, [11, 14, 17]), (2.0, 3.0, [21, 24, 27])]


def test_a_timestamp_hours_ahead_fails_the_video_instead_of_filling_memory(scripted):
    path, _ = scripted([0, 40, 80, 3.6e9])  # a thousand hours: 3.6 million windows of 1 s
    with pytest.raises(ValueError, match="timestamps reach 3600000 s: more than 100000 windows"):
        windows_of(path, 1.0)


class Tracked:
    """A transformed frame whose instances alive are counted."""
    alive = weakref.WeakSet()

    def __init__(self, frame):
        self.number = frame_number(frame)
        Tracked.alive.add(self)


def test_memory_holds_only_the_sampled_frames_of_the_open_windows(scripted):
    stamps = [40 * i for i in range(1500)] + [60000 + 100 * i for i in range(600)]  # 60 s at 25, then 10 fps
    path, _ = scripted(stamps, claimed=1000)  # under-reported: the whole video is sampled on a second pass
    most = []

    def emit(message):
        most.append(len(Tracked.alive))
    decode_windows(path, 4, Tracked, emit, 4.0, 2.0, 3)
    assert len(most) == 59 + 1  # windows from 0, 2, ... 116 s (the first to reach 120 s), the video
    # the video's 4 and, per open window (two at a time), at most the positions of three frame counts
    assert max(most) <= 4 + 2 * 3 * 3 + 3
