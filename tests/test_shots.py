"""video_tag/shots.py: cuts found on generated H.264 videos (textured scenes, moving objects, pans, noise;
tests/shot_videos.py), the shots' frame numbers and times, bounded state, and PySceneDetect's cuts on the
same videos where ``scenedetect`` is installed."""
import numpy as np
import pytest

from shot_videos import (FPS, Scene, cut_video, matched, dissolve_video, encode_decode, fade_video, pan_video, ramp_video,
                         shot_frames, static_video, whip_video)
from video_tag.shots import ShotDetector

SEEDS = (1, 2)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """name -> (decoded [(RGB frame, seconds)], true cut frames), encoded once for the module."""
    folder = tmp_path_factory.mktemp("shots")
    made = {}
    for name, generate in (("cuts", cut_video), ("dissolves", dissolve_video), ("static", static_video),
                           ("pan", pan_video), ("whip", whip_video), ("ramp", ramp_video), ("fade", fade_video),
                           ("fade_hold", lambda seed: fade_video(seed, hold=10))):
        for seed in SEEDS:
            frames, cuts = generate(seed)
            made[name, seed] = encode_decode(frames, folder / f"{name}{seed}.mp4"), cuts
    return made


def detect(decoded, **kwargs):
    detector = ShotDetector(**kwargs)
    for frame, time in decoded:
        detector.add(frame, time)
    return detector.finish()


def precision_recall(found, truth, tolerance):
    """Each true cut matches at most one found cut within ``tolerance`` (same unit)."""
    hits = matched(found, truth, tolerance)
    return hits / max(1, len(found)), hits / max(1, len(truth))


def test_hard_cuts_within_one_frame(videos):
    found, truth = [], []
    for seed in SEEDS:
        decoded, cuts = videos["cuts", seed]
        found += [start + 10000 * seed for start, *_ in detect(decoded)[1:]]
        truth += [c + 10000 * seed for c in cuts]
    precision, recall = precision_recall(found, truth, 1)
    assert precision >= 0.95 and recall >= 0.95, (found, truth)


def test_dissolves_cut_within_half_a_second_of_their_middle(videos):
    found, truth = [], []
    for seed in SEEDS:
        decoded, cuts = videos["dissolves", seed]
        found += [start_time + 1000 * seed for _, _, start_time, _ in detect(decoded)[1:]]
        truth += [decoded[c][1] + 1000 * seed for c in cuts]
    precision, recall = precision_recall(found, truth, 0.5)
    assert precision >= 0.95 and recall >= 0.95, (found, truth)


@pytest.mark.parametrize("name", ["fade", "fade_hold"])
def test_a_fade_out_and_in_is_one_cut_in_the_black(videos, name):
    """Through black directly or after 10 black frames: one cut, within 0.5 s of the black's middle."""
    for seed in SEEDS:
        decoded, (middle,) = videos[name, seed]
        shots = detect(decoded)
        assert len(shots) == 2 and abs(shots[1][2] - decoded[middle][1]) <= 0.5, (shots, middle)


@pytest.mark.parametrize("name", ["static", "pan", "whip", "ramp"])
def test_no_cut_in_one_shot(videos, name):
    """A static camera with fast objects, a slow pan, a fast camera move between two still views (a
    change as large and as short as a dissolve, but no mix: linearity), a steady rise of light (a mix,
    but without end: contrast)."""
    for seed in SEEDS:
        decoded, _ = videos[name, seed]
        shots = detect(decoded)
        assert [s[:2] for s in shots] == [(0, len(decoded))], shots


def clean_video(lengths, transitions, t0=2.0, step=0.04):
    """Frames fed directly (no codec), with times ``t0 + i * step``: ``(frames, times, cuts)``."""
    frames, cuts = shot_frames([(Scene(50 + k), n) for k, n in enumerate(lengths)], transitions)
    frames = [np.clip(f, 0, 255).astype(np.uint8) for f in frames]
    return frames, [t0 + i * step for i in range(len(frames))], cuts


def test_shots_frame_numbers_times_and_streamed_cuts():
    frames, times, cuts = clean_video([40, 45, 60, 50], ["cut", "dissolve", "cut"])
    assert cuts == [40, 85 + 7, 145]
    detector = ShotDetector()
    streamed = []
    for i, (frame, time) in enumerate(zip(frames, times)):
        for cut in detector.add(frame, time):
            assert cut >= i - detector.delay  # final at most `delay` frames late
            streamed.append(cut)
    shots = detector.finish()
    bounds = [0, 40, 92, 145, len(frames)]
    assert [s[:2] for s in shots] == list(zip(bounds, bounds[1:]))
    assert streamed == [40, 92, 145]
    assert [s[2] for s in shots] == [times[b] for b in bounds[:-1]]
    assert [s[3] for s in shots[:-1]] == [times[b] for b in bounds[1:-1]]
    assert shots[-1][3] == pytest.approx(times[-1] + 0.04)  # the last frame lasts as long as the gap before it
    assert detector.finish(end_time=9.5)[-1][3] == 9.5


def test_a_dissolve_near_the_end_is_kept():
    """Its cut is final only 4 h frames later (a fade pair may follow): finish() must still keep it."""
    frames, times, cuts = clean_video([40, 35], ["dissolve"])
    assert [s[:2] for s in detect(list(zip(frames, times)))] == [(0, cuts[0]), (cuts[0], 75)]


def test_a_cut_at_the_first_and_last_frames():
    frames, times, _ = clean_video([1, 40, 1], ["cut", "cut"])
    shots = detect(list(zip(frames, times)), min_shot=1)
    assert [s[:2] for s in shots] == [(0, 1), (1, 41), (41, 42)]


def test_one_frame_no_frame_and_a_flash():
    frame = np.full((36, 64, 3), 90, np.uint8)
    assert detect([]) == []
    assert detect([(frame, 3.0)]) == [(0, 1, 3.0, 3.0)]
    for flash in (1, 2):  # white frames: a flash, not two shots
        frames, times, _ = clean_video([80], [])
        frames[40:40 + flash] = [np.full_like(frames[40], 255)] * flash
        assert [s[:2] for s in detect(list(zip(frames, times)))] == [(0, 80)], flash


def test_a_shot_of_a_few_frames_is_merged_into_the_next():
    frames, times, _ = clean_video([40, 4, 40], ["cut", "cut"])
    assert [s[:2] for s in detect(list(zip(frames, times)))] == [(0, 40), (40, 84)]
    assert [s[:2] for s in detect(list(zip(frames, times)), min_shot=4)] == [(0, 40), (40, 44), (44, 84)]


def test_state_stays_bounded_on_a_long_shot():
    scene = Scene(7, pan=(0.3, 0.0), length=600)
    detector = ShotDetector()
    for i in range(600):
        detector.add(np.clip(scene.frame(i), 0, 255).astype(np.uint8), i / FPS)
        assert len(detector.thumbs) <= 6 * detector.h + 1 and len(detector.times) <= 12 * detector.h + 2
    assert [s[:2] for s in detector.finish()] == [(0, 600)]


def scenedetect_cuts(decoded):
    """PySceneDetect's ContentDetector (defaults) fed the same frames one by one."""
    import cv2
    from scenedetect import ContentDetector, FrameTimecode
    detector, cuts = ContentDetector(), []
    for i, (frame, _) in enumerate(decoded):
        cuts += detector.process_frame(FrameTimecode(i, fps=float(FPS)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return [c.frame_num for c in cuts]


def test_cuts_agree_with_pyscenedetect(videos):
    """Hard cuts: the same frames within 1; dissolves and fades: every cut PySceneDetect finds (no
    dissolve: its detectors compare adjacent frames only), ours finds within 0.5 s; one-shot videos:
    neither cuts."""
    pytest.importorskip("scenedetect")
    for (name, seed), (decoded, _) in sorted(videos.items()):
        ours = [s[0] for s in detect(decoded)[1:]]
        theirs = scenedetect_cuts(decoded)
        if name == "cuts":
            assert precision_recall(ours, theirs, 1) == (1.0, 1.0), (name, seed, ours, theirs)
        elif name in ("dissolves", "fade", "fade_hold"):
            assert all(any(abs(o - t) <= 0.5 * FPS for o in ours) for t in theirs), (name, seed, ours, theirs)
        else:
            assert ours == theirs == [], (name, seed, ours, theirs)
