"""Shots in the decoding pass (readers/shot_clips.py through windows.decode_windows): every decoded frame
goes to the detector, each shot is sampled from its own frames as the extractor samples a whole video,
from frames in hand or on the second pass; thumbnails near each shot's middle."""
import hashlib

import cv2
import numpy as np
import pytest

from shot_videos import Scene, encode_decode, shot_frames
from video_tag.readers import shot_clips, windows
from video_tag.readers.video_reader import decoded_frames, sample_indices, with_video
from video_tag.readers.windows import decode_windows

LENGTHS = (90, 12, 30, 7, 25)  # frames per shot, at 25 frames/s; cuts at 90, 102, 132, 139


def digest(frame):
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """(path, the digest of every decoded frame in order, the true cut frames)."""
    path = tmp_path_factory.mktemp("clips") / "cuts.mp4"
    frames, cuts = shot_frames([(Scene(10 + k), n) for k, n in enumerate(LENGTHS)], ["cut"] * (len(LENGTHS) - 1))
    encode_decode(frames, path)
    decoded = with_video(str(path), lambda cap: [digest(f) for _, f in decoded_frames(cap, lambda i: True)])
    return str(path), decoded, cuts


def run(path, seg_num, monkeypatch, thumbnails=False, **kw):
    """The messages of ``decode_windows`` with shots (frames as digests) and how many passes it made."""
    passes = []
    real = windows.with_video
    monkeypatch.setattr(windows, "with_video", lambda p, then: (passes.append(p), real(p, then))[1])
    messages = []
    decode_windows(path, 4, digest, messages.append, window_seg_num=seg_num, shots=True, thumbnails=thumbnails,
                   **kw)
    return messages, len(passes)


@pytest.mark.parametrize("seg_num, passes", [(48, 1), (24, 2), (5, 2)])
def test_each_shot_is_sampled_from_its_own_frames(video, monkeypatch, seg_num, passes):
    path, decoded, cuts = video
    messages, made = run(path, seg_num, monkeypatch)
    # seg_num 48: every shot under 96 frames, sampled among its first 48, in hand; seg_num 24: the
    # first shot's sample (frames 1, 4, ..., 70) is not, left to a second pass
    assert made == passes
    assert messages[-1][0] == "video"
    (bounds,) = [m[1] for m in messages if m[0] == "shots"]
    assert [b[0] for b in bounds[1:]] == cuts and bounds[-1][1] == len(decoded) == sum(LENGTHS)
    assert [(b[2], b[3]) for b in bounds] == [(a / 25, b / 25) for a, b in zip([0] + cuts, cuts + [len(decoded)])]
    sampled = {m[1]: m[2] for m in messages if m[0] == "shot"}
    assert sorted(sampled) == list(range(len(LENGTHS)))
    for k, (a, b, _, _) in enumerate(bounds):
        assert sampled[k] == [decoded[a + p] for p in sample_indices(b - a, seg_num, "infer")], k
    # the whole video as before: the extractor's sample, and the metadata
    assert messages[-1][1] == [decoded[i] for i in sample_indices(len(decoded), 4, "infer")]
    assert messages[-1][3] == {"duration": len(decoded) / 25, "fps": 25.0, "frames": len(decoded),
                               "width": 160, "height": 96, "codec": "h264"}


def test_windows_and_shots_together(video, monkeypatch):
    path, decoded, _ = video
    messages, _ = run(path, 6, monkeypatch, seconds=1.0)
    assert sorted(m[1] for m in messages if m[0] == "window") == list(range(7))
    assert sorted(m[1] for m in messages if m[0] == "shot") == list(range(len(LENGTHS)))
    for m in messages:
        if m[0] == "window":  # window k: frames 25k .. 25k + 24 (the last: 150 .. 163)
            first, count = 25 * m[1], min(25, len(decoded) - 25 * m[1])
            assert m[4] == [decoded[first + p] for p in sample_indices(count, 6, "infer")]


@pytest.mark.parametrize("seconds", [1.0, 6.0, None])  # 6 s: shots end and are final long before their window
def test_shared_shots_take_the_frames_the_video_and_the_windows_sample(video, seconds):
    path, decoded, cuts = video
    messages, made = [], []
    decode_windows(path, 4, lambda f: made.append(digest(f)) or made[-1], messages.append, seconds=seconds,
                   window_seg_num=6, shots=True, shared=True)
    # the detector sees every frame, but only the frames sampled are transformed (the costly part)
    assert len(made) < len(decoded) // 2
    (bounds,) = [m[1] for m in messages if m[0] == "shots"]
    assert [b[0] for b in bounds[1:]] == cuts
    # the union, worked out here: the video's sample (4 frames) and each window's (6 of its 25 or 150 frames;
    # the last window, from frame 150 on, is sampled on the second pass: the video ends inside it)
    total, width = len(decoded), round(25 * (seconds or 0))
    windows = [(a, min(total, a + width)) for a in range(0, total, width)] if seconds else []
    union = sorted(set(sample_indices(total, 4, "infer")) |
                   {a + p for a, b in windows for p in sample_indices(b - a, 6, "infer")})
    sent = {}  # frame index -> the position of the first window message that carried it
    for at, m in enumerate(messages):
        if m[0] == "window":
            first = width * m[1]
            for p in sample_indices(min(width, total - first), 6, "infer"):
                sent.setdefault(first + p, at)
    shared = {m[1]: (at, m) for at, m in enumerate(messages) if m[0] == "shared_shot"}
    redone = {m[1]: m[2] for m in messages if m[0] == "shot"}  # second pass: the frames themselves
    assert sorted(list(shared) + list(redone)) == list(range(len(bounds)))
    for k, (a, b, _, _) in enumerate(bounds):
        inside = [i for i in union if a <= i < b]
        if len(inside) > 6:
            inside = [inside[p] for p in sample_indices(len(inside), 6, "infer")]
        inside = inside or [a]
        if k in redone:  # holds a frame of the last window
            assert any(i >= 150 for i in inside) and redone[k] == [decoded[i] for i in inside], k
            continue
        at, m = shared[k]
        assert m[2:4] == (a, b) and m[5] == inside, k
        # a frame a window's message carried before is named only; the others come with the message
        assert m[4] == [None if sent.get(i, at) < at else decoded[i] for i in inside], k
        # every window holding a frame of the shot came first
        assert all(sent[i] < at for i in range(a, b) if i in sent), k
    if seconds:
        assert sorted(redone) == [4]
        assert any(f is None for _, m in shared.values() for f in m[4])
        assert any(f is not None for _, m in shared.values() for f in m[4])
    else:  # without windows: the video's sample alone (shots 1 and 3 hold none of it: their first frame)
        assert not redone and [shared[k][1][5] for k in range(5)] == [[20, 61], [90], [102], [132], [143]]
    assert messages[-1][0] == "video"


def test_thumbnails_near_each_shots_middle(video, monkeypatch, tmp_path):
    path, decoded, _ = video
    monkeypatch.setattr(shot_clips, "CANDIDATES", 4)  # decimated candidates on the 90-frame shot
    messages, _ = run(path, 24, monkeypatch, thumbnails=True)
    (bounds,) = [m[1] for m in messages if m[0] == "shots"]
    thumbs = {m[1]: cv2.imdecode(np.frombuffer(m[2], np.uint8), cv2.IMREAD_COLOR) for m in messages
              if m[0] == "thumbnail"}
    assert sorted(thumbs) == list(range(len(LENGTHS)))
    small = with_video(path, lambda cap: [cv2.cvtColor(shot_clips.small_frame(f), cv2.COLOR_RGB2BGR)
                                          for _, f in decoded_frames(cap, lambda i: True)])
    for k, (a, b, _, _) in enumerate(bounds):
        assert thumbs[k].shape == small[0].shape  # 160 wide: kept as it is
        nearest = int(np.argmin([cv2.norm(thumbs[k], s, cv2.NORM_L1) for s in small]))
        assert a <= nearest < b and abs(nearest - (a + (b - a) // 2)) <= max(1, (b - a) // 8), (k, nearest)


def test_one_frame_is_one_shot(tmp_path, monkeypatch):
    path = tmp_path / "one.mp4"
    encode_decode(shot_frames([(Scene(3), 1)], [])[0], path)
    messages, _ = run(str(path), 3, monkeypatch, thumbnails=True)
    kinds = [m[0] for m in messages]
    assert kinds == ["shot", "thumbnail", "shots", "video"]
    assert messages[2][1] == [(0, 1, 0.0, 0.04)]
    assert len(messages[0][2]) == 3  # the one frame, three times


def test_the_detector_follows_the_frame_rate():
    assert shot_clips.detector_for(25).h == 8 and shot_clips.detector_for(30).h == 8
    slow, fast = shot_clips.detector_for(10), shot_clips.detector_for(60)
    assert (slow.h, slow.min_shot) == (3, 2) and (fast.h, fast.min_shot) == (19, 12)
