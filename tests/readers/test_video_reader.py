"""VideoReader: sampled frame indices and preprocessed tensors against a reference written from the GUIDE
(decode every frame, sample, PIL resize, crop, normalise), lying containers, bounded memory, frames
folders, train-mode randomness, and the reasons it refuses a list line or a video."""
import os
import struct
import tracemalloc

import cv2
import numpy as np
import pytest
from PIL import Image

from video_tag.errors import UserError
from video_tag.readers import iterate_batches
from video_tag.readers import video_reader as vr
from video_tag.readers.video_reader import (VideoReader, crop_normalize, decode_sampled, preprocess,
                                            resize_frame, sample_indices)

C = 5
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape((3, 1, 1))
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape((3, 1, 1))


def frame_content(i, w, h):
    """RGB uint8 [h, w, 3]: a texture that moves and changes colour with the frame index i."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + 37 * i) % 256
    g = (y * 255 // max(h - 1, 1) + 11 * ((x + 5 * i) // 16 % 2)) % 256
    b = ((x // 8 + y // 8 + i) % 2) * 120 + (i * 53) % 120
    return np.stack([r, g, b], -1).astype(np.uint8)


def write_video(path, count, w, h, fourcc="MJPG"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (w, h))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    assert writer.isOpened()
    for i in range(count):
        writer.write(cv2.cvtColor(frame_content(i, w, h), cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def decode_all(path):
    """Every frame the decoder delivers, RGB (what the original kept in memory)."""
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(np.ascontiguousarray(frame[:, :, ::-1]))


def reference(frames, seg_num, short_size=256, target_size=224):
    """GUIDE section 1 (infer/test mode, seglen 1), written like the original: returns (tensor, indices)."""
    n = len(frames)
    avg = n // seg_num
    indices = [((avg - 1) // 2 + i * avg) % n if avg >= 1 else i % n for i in range(seg_num)]
    imgs = []
    for i in indices:
        img = Image.fromarray(frames[i])
        w, h = img.size
        if not ((w <= h and w == short_size) or (h <= w and h == short_size)):
            long_size = int(short_size * 4.0 / 3.0)
            img = img.resize((short_size, long_size) if w < h else (long_size, short_size), Image.BILINEAR)
        w, h = img.size
        x1, y1 = int(round((w - target_size) / 2.)), int(round((h - target_size) / 2.))
        imgs.append(img.crop((x1, y1, x1 + target_size, y1 + target_size)))
    out = np.stack([np.array(img).astype("float32").transpose((2, 0, 1)) / 255 for img in imgs])
    out -= MEAN
    out /= STD
    return out, indices


def assert_close_to_reference(actual, expected):
    """Within 1/255 before normalisation (in practice: bit-identical)."""
    assert actual.shape == expected.shape and actual.dtype == np.float32
    diff = np.abs((actual - expected) * STD).max() if actual.size else 0.0
    assert diff <= 1 / 255 + 1e-6, diff
    np.testing.assert_array_equal(actual, expected)  # exact: same PIL resize, same float32 operations


def cfg(fmt="video", **section):
    return {"MODEL": {"format": fmt, "num_classes": C},
            **{name: dict(section) for name in ("TRAIN", "VALID", "TEST", "INFER")}}


def write_list(tmp_path, lines, name="tsn.list"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------- sampling


def test_sample_indices_centre_and_quirks():
    assert sample_indices(10, 3, "test") == [1, 4, 7]
    assert sample_indices(300, 7, "infer") == [20, 62, 104, 146, 188, 230, 272]
    assert sample_indices(2, 3, "valid") == [0, 1, 0]  # fewer frames than segments: i % n
    assert sample_indices(10, 7, "test") == list(range(7))  # seg_num <= n < 2 * seg_num: first frames
    assert sample_indices(1, 4, "infer") == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="no frames"):
        sample_indices(0, 3, "test")


def test_sample_indices_train_random_inside_each_segment():
    seen = set()
    for seed in range(200):
        idx = sample_indices(30, 3, "train", np.random.default_rng(seed))
        assert [i // 10 for i in idx] == [0, 1, 2]
        seen.update(idx)
    assert seen == set(range(30))  # every frame of every segment is reachable
    assert sample_indices(5, 7, "train", np.random.default_rng(0)) == [0, 1, 2, 3, 4, 0, 1]


# ---------------------------------------------------------------------------- videos vs reference


@pytest.mark.parametrize("w, h, count, seg_num, resized", [
    (320, 240, 30, 7, (256, 341)),    # landscape -> 341x256
    (240, 320, 30, 7, (341, 256)),    # portrait -> 256x341
    (250, 250, 24, 7, (256, 341)),    # square -> 341x256
    (340, 256, 30, 7, (256, 340)),    # short side (height) already 256: left as it is
    (256, 300, 30, 3, (300, 256)),    # short side (width) already 256: left as it is
    (320, 256, 22, 3, (256, 320)),
    (256, 200, 12, 3, (256, 341)),    # width 256 is the long side: resized
    (320, 240, 5, 7, (256, 341)),     # fewer frames than segments
    (320, 240, 10, 7, (256, 341)),    # seg_num <= n < 2 * seg_num: the first seg_num frames
])
def test_video_matches_reference(tmp_path, w, h, count, seg_num, resized):
    path = write_video(tmp_path / "clip.avi", count, w, h)
    frames = decode_all(path)
    assert len(frames) == count
    expected, expected_indices = reference(frames, seg_num)

    sampled, indices, num_frames = decode_sampled(path, seg_num, "test")
    assert num_frames == count and indices == expected_indices
    for frame, index in zip(sampled, indices):
        np.testing.assert_array_equal(frame, frames[index])
    assert resize_frame(sampled[0]).shape[:2] == resized
    assert_close_to_reference(preprocess(sampled, "test"), expected)

    list_path = write_list(tmp_path, [f"{path} 3"])
    sample = VideoReader(list_path, "test", cfg(seg_num=seg_num)).load(0)
    assert sample["label"] == 3 and sample["index"] == 0
    assert_close_to_reference(sample["frames"], expected)


def test_mp4_and_other_sizes_and_modes(tmp_path):
    path = write_video(tmp_path / "a b 视频.mp4", 40, 176, 144, fourcc="mp4v")
    frames = decode_all(path)
    for mode, seg_num in (("valid", 3), ("infer", 8)):
        expected, _ = reference(frames, seg_num, short_size=128, target_size=112)
        reader = VideoReader(write_list(tmp_path, [f"{path} 1"]), mode,
                             cfg(seg_num=seg_num, short_size=128, target_size=112))
        sample = reader.load(0)
        assert sample["frames"].shape == (seg_num, 3, 112, 112)
        assert_close_to_reference(sample["frames"], expected)


def test_frame_size_changing_midway_crops_each_frame_at_its_centre():
    frames = [frame_content(0, 320, 240), frame_content(1, 340, 256), frame_content(2, 256, 400)]
    expected, _ = reference(frames, 3)
    assert_close_to_reference(preprocess(frames, "test"), expected)
    assert preprocess(frames, "train", rng=np.random.default_rng(0)).shape == (3, 3, 224, 224)


def patch_avi_length(path, frames, out_path):
    """Copy of an OpenCV-written AVI whose video stream header (strh dwLength) claims ``frames``."""
    data = bytearray(open(path, "rb").read())
    strh = data.find(b"strh")
    assert strh > 0 and data[strh + 8:strh + 12] == b"vids"
    struct.pack_into("<I", data, strh + 8 + 32, frames)  # fccType fccHandler dwFlags wPriority wLanguage
    avih = data.find(b"avih")                            # dwInitialFrames dwScale dwRate dwStart dwLength
    struct.pack_into("<I", data, avih + 8 + 16, frames)  # avih dwTotalFrames (FFmpeg reads strh)
    open(out_path, "wb").write(data)
    return str(out_path)


class CountingCapture:
    """cv2.VideoCapture that counts retrieve() calls and the frames passed through it."""
    retrieved = 0

    def __init__(self, path, *args):
        self.cap = REAL_CAPTURE(path, *args)

    def retrieve(self):
        CountingCapture.retrieved += 1
        return self.cap.retrieve()

    def __getattr__(self, name):
        return getattr(self.cap, name)


REAL_CAPTURE = cv2.VideoCapture


@pytest.mark.parametrize("claimed", [60, 13, 0])  # over-reports, under-reports, reports nothing
def test_lying_frame_count_samples_the_decoded_frames(tmp_path, monkeypatch, claimed):
    real = write_video(tmp_path / "real.avi", 20, 320, 240)
    path = patch_avi_length(real, claimed, tmp_path / f"lie{claimed}.avi")
    cap = cv2.VideoCapture(path)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == claimed  # OpenCV believes the header
    cap.release()
    frames = decode_all(path)
    assert len(frames) == 20
    expected, expected_indices = reference(frames, 7)
    assert expected_indices == [0, 2, 4, 6, 8, 10, 12]  # the claim alone would give others

    monkeypatch.setattr(vr.cv2, "VideoCapture", CountingCapture)
    CountingCapture.retrieved = 0
    sampled, indices, num_frames = decode_sampled(path, 7, "test")
    assert num_frames == 20 and indices == expected_indices
    assert CountingCapture.retrieved <= 2 * 7  # two passes at most, each keeping the sampled frames
    assert_close_to_reference(preprocess(sampled, "test"), expected)
    sample = VideoReader(write_list(tmp_path, [f"{path} 0"]), "infer", cfg(seg_num=7)).load(0)
    assert_close_to_reference(sample["frames"], expected)


def corrupt_avi_frame(path, index, out_path):
    """Copy of an OpenCV-written MJPG AVI whose frame ``index`` has its JPEG bytes zeroed: the decoder
    cannot deliver it (grab() fails there) and goes on with the next frame."""
    data = bytearray(open(path, "rb").read())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI
    end = data.index(b"\xff\xd9", starts[index]) + 2  # EOI: markers are not escaped, data bytes are
    data[starts[index]:end] = bytes(end - starts[index])
    open(out_path, "wb").write(data)
    return str(out_path)


def decode_like_the_original(path):
    """GUIDE 1.1: ``int(CAP_PROP_FRAME_COUNT)`` read attempts, the failed ones skipped."""
    cap = cv2.VideoCapture(path)
    frames = []
    for _ in range(int(cap.get(cv2.CAP_PROP_FRAME_COUNT))):
        ok, frame = cap.read()
        if ok:
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
    return frames


def test_undecodable_frame_mid_stream_is_skipped_as_the_original_does(tmp_path):
    path = corrupt_avi_frame(write_video(tmp_path / "v.avi", 30, 96, 64), 12, tmp_path / "broken.avi")
    assert len(decode_all(path)) == 12  # reading until the first failure stops at the broken frame
    frames = decode_like_the_original(path)
    assert len(frames) == 29
    expected, expected_indices = reference(frames, 7, short_size=64, target_size=56)
    sampled, indices, num_frames = decode_sampled(path, 7, "test")
    assert num_frames == 29 and indices == expected_indices
    for frame, index in zip(sampled, indices):
        np.testing.assert_array_equal(frame, frames[index])
    sample = VideoReader(write_list(tmp_path, [f"{path} 0"]), "test",
                         cfg(seg_num=7, short_size=64, target_size=56)).load(0)
    assert_close_to_reference(sample["frames"], expected)


class ScriptedCapture:
    """A capture whose grab() follows ``script`` ("o": a frame, "x": a failure), then fails for ever."""

    def __init__(self, script, claimed):
        self.script, self.claimed, self.grabs = script, claimed, 0

    def get(self, prop):
        return float(self.claimed)

    def grab(self):
        self.grabs += 1
        assert self.grabs < 10 ** 4, "reading never stops"
        return self.grabs <= len(self.script) and self.script[self.grabs - 1] == "o"

    def retrieve(self):
        return True, np.full((4, 4, 3), self.grabs, np.uint8)


@pytest.mark.parametrize("script, claimed, decoded, grabs", [
    ("ooooo", 5, 5, 6),                                   # stops at the first failure past the count
    ("ooxoooxo", 8, 6, 9),                                # failures inside the count are skipped
    ("oooooooo", 5, 8, 9),                                # a container claiming too few frames
    ("ooooo", 0, 5, 5 + vr.MAX_FAILED_GRABS),             # no count: a run of failures ends it
    ("ooooo", 10 ** 6, 5, 5 + vr.MAX_FAILED_GRABS),       # a count far too high: likewise
    ("oo" + "x" * (vr.MAX_FAILED_GRABS - 1) + "oo", 0, 4, 2 + vr.MAX_FAILED_GRABS + 1 + vr.MAX_FAILED_GRABS),
], ids=["at-count", "inside-count", "count-too-low", "no-count", "count-too-high", "gap-just-short-of-limit"])
def test_reading_goes_past_failed_grabs_and_stops(script, claimed, decoded, grabs):
    cap = ScriptedCapture(script, claimed)
    kept, count = vr._grab(cap, {0, decoded - 1}, None, vr.container_frame_count(cap))
    assert count == decoded and cap.grabs == grabs
    # frame k is the k-th delivered one: its content is the number of the grab that delivered it
    delivered = [i + 1 for i, c in enumerate(script) if c == "o"]
    assert kept[decoded - 1][0, 0, 0] == delivered[decoded - 1]


def _decode_worker_settings():
    vr.init_decode_worker()
    return os.getpriority(os.PRIO_PROCESS, 0), cv2.getNumThreads()


def test_decoding_takes_one_thread_and_yields_to_the_network(tmp_path):
    path = write_video(tmp_path / "v.avi", 5, 64, 48)
    cap = vr.open_capture(path)
    assert cap.isOpened() and cap.get(cv2.CAP_PROP_N_THREADS) == 1
    cap.release()
    # a decode worker: one OpenCV thread, the lowest priority (here in a process of its own)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        priority, threads = pool.submit(_decode_worker_settings).result()
    assert priority == 19 and threads == 1


def test_memory_stays_bounded_on_a_long_video(tmp_path, monkeypatch):
    w, h, count, seg_num = 96, 64, 1500, 7
    path = write_video(tmp_path / "long.avi", count, w, h)
    monkeypatch.setattr(vr.cv2, "VideoCapture", CountingCapture)
    CountingCapture.retrieved = 0
    tracemalloc.start()  # numpy (and OpenCV's output arrays) report their buffers to tracemalloc
    try:
        sampled, indices, num_frames = decode_sampled(path, seg_num, "test")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert num_frames == count and CountingCapture.retrieved == seg_num
    assert indices == [106 + 214 * i for i in range(seg_num)]
    frame_bytes = w * h * 3
    assert peak < 40 * frame_bytes, (peak, frame_bytes)  # the whole video would be 1500 frames
    for frame, index in zip(sampled, indices):  # each is the written frame it should be, up to codec noise
        error = [np.abs(frame.astype(int) - frame_content(k, w, h)).mean()
                 for k in range(index - 2, index + 3)]
        assert int(np.argmin(error)) == 2, error


# ---------------------------------------------------------------------------- train mode


def test_train_crop_and_flip_cover_the_group(tmp_path):
    h, w = 256, 341
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([y, x % 256, x // 256 * 50 + 10 * k], -1).astype(np.uint8) for k in range(3)]
    flips, offsets = set(), set()
    for seed in range(24):
        out = crop_normalize(frames, "train", 224, np.random.default_rng(seed))
        assert out.shape == (3, 3, 224, 224) and out.dtype == np.float32
        px = np.rint((out * STD + MEAN) * 255).astype(int)  # back to the uint8 values
        y0, cols = px[0, 0, 0, 0], px[0, 1, 0] + 256 * (px[0, 2, 0] // 50)
        flipped = cols[0] > cols[-1]
        x0 = cols[-1] if flipped else cols[0]
        np.testing.assert_array_equal(px[:, 0, :, 0], np.broadcast_to(y0 + np.arange(224), (3, 224)))
        np.testing.assert_array_equal(cols, x0 + (np.arange(224)[::-1] if flipped else np.arange(224)))
        for k in range(3):  # one crop and one flip for the whole group
            np.testing.assert_array_equal(px[k, :2], px[0, :2])
            assert (px[k, 2] % 50 == 10 * k).all()
        assert 0 <= y0 <= h - 224 and 0 <= x0 <= w - 224
        flips.add(bool(flipped))
        offsets.add((int(y0), int(x0)))
    assert flips == {False, True} and len(offsets) > 10


def test_train_reader_is_random_but_reproducible(tmp_path):
    path = write_video(tmp_path / "clip.avi", 30, 320, 240)
    list_path = write_list(tmp_path, [f"{path} {i % C}" for i in range(4)])
    frames = decode_all(path)

    def run(num_workers):
        reader = VideoReader(list_path, "train", cfg(seg_num=3))
        np.random.seed(7)
        batches = iterate_batches(reader, [[0, 1], [2, 3]], num_workers)
        return np.concatenate([b["inputs"][0] for b in batches])

    first = run(1)
    assert first.shape == (4, 3, 3, 224, 224)
    np.testing.assert_array_equal(first, run(2))  # same seed, any number of loader threads
    assert not np.array_equal(first[0], first[1])  # samples of the same video differ
    reader = VideoReader(list_path, "train", cfg(seg_num=3))
    np.random.seed(7)
    again = [reader.load(0)["frames"] for _ in range(2)]
    np.random.seed(8)  # what the trainer does at each epoch's start
    again.append(reader.load(0)["frames"])
    # A reload under the same global state (a replacement of an unreadable sample) draws the same: the
    # draws never depend on the loads before; the next epoch's seed draws anew.
    assert np.array_equal(again[0], again[1]) and not np.array_equal(again[0], again[2])
    # every train sample is a crop of frames of its own segments
    resized = [np.asarray(resize_frame(f)) for f in frames]
    for k, seg in enumerate(first[0]):
        px = np.rint((seg * STD + MEAN) * 255).astype(np.uint8).transpose(1, 2, 0)
        assert any(_contains(resized[i], px) for i in range(10 * k, 10 * k + 10))


def _contains(image, crop):
    """Is ``crop`` (or its mirror image) a window of ``image``?"""
    for candidate in (crop, crop[:, ::-1]):
        rows = np.nonzero((image[:, :, 0] == candidate[0, 0, 0]))[0]
        for y0 in sorted(set(rows)):
            if y0 + 224 > image.shape[0]:
                continue
            for x0 in range(image.shape[1] - 223):
                if np.array_equal(image[y0, x0:x0 + 224], candidate[0]) and \
                        np.array_equal(image[y0:y0 + 224, x0:x0 + 224], candidate):
                    return True
    return False


# ---------------------------------------------------------------------------- frames folders


def write_frames(folder, count, w, h, missing=()):
    folder.mkdir(parents=True)
    frames = []
    for i in range(count):
        frames.append(frame_content(i, w, h))
        if i not in missing:
            cv2.imwrite(str(folder / f"img_{i + 1:05d}.jpg"), cv2.cvtColor(frames[-1], cv2.COLOR_RGB2BGR))
    return frames


@pytest.mark.parametrize("count, seg_num", [(30, 7), (9, 7), (4, 7)])
def test_frames_folder_matches_reference(tmp_path, count, seg_num):
    folder = tmp_path / "frames of clip"
    write_frames(folder, count, 320, 240)
    # the original read frame folders with PIL
    frames = [np.asarray(Image.open(folder / f"img_{i + 1:05d}.jpg").convert("RGB")) for i in range(count)]
    expected, expected_indices = reference(frames, seg_num)
    sampled, indices = vr.load_frames_dir(str(folder), count, seg_num, "test")
    assert indices == expected_indices
    list_path = write_list(tmp_path, [f"{folder} {count} 4"])
    reader = VideoReader(list_path, "test", cfg("frames", seg_num=seg_num))
    sample = reader.load(0)
    assert sample["label"] == 4
    assert_close_to_reference(sample["frames"], expected)


def test_frames_folder_with_a_missing_frame(tmp_path):
    folder = tmp_path / "clip"
    write_frames(folder, 30, 320, 240, missing=(5,))
    reader = VideoReader(write_list(tmp_path, [f"{folder} 30 1"]), "test", cfg("frames", seg_num=7))
    assert sample_indices(30, 7, "test") == [1, 5, 9, 13, 17, 21, 25]
    with pytest.raises(ValueError, match="frame file img_00006.jpg not found"):
        reader.load(0)
    (folder / "img_00002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="img_00002.jpg is not a readable image"):
        reader.load(0)


# ---------------------------------------------------------------------------- bad input


def test_unreadable_videos_raise_value_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    gone = tmp_path / "gone.mp4"
    list_path = write_list(tmp_path, [f"{text} 0", f"{empty} 1", f"{gone} 2"])
    reader = VideoReader(list_path, "test", cfg(seg_num=3), check_files=False)
    for index, reason in ((0, "cannot open video"), (1, "cannot open video"), (2, "file not found")):
        with pytest.raises(ValueError, match=reason):
            reader.load(index)
    errors = []
    batches = list(iterate_batches(reader, [[0, 1, 2]], 1, on_error=lambda e, r: errors.append(e.line)))
    assert batches == [] and errors == [1, 2, 3]


def _raise(error):
    raise error


DECODER_ERRORS = [  # (what the decoder raises, what the report must say)
    (lambda: cv2.cvtColor(np.zeros((0, 0, 3), np.uint8), cv2.COLOR_BGR2RGB), "cv2.error"),
    (lambda: 1 // 0, "ZeroDivisionError"),
    (lambda: _raise(MemoryError()), "MemoryError"),
    (lambda: Image.open(__import__("io").BytesIO(b"odd frame")), "PIL.UnidentifiedImageError"),
]


@pytest.mark.parametrize("fail, name", DECODER_ERRORS, ids=[n for _, n in DECODER_ERRORS])
@pytest.mark.parametrize("refill", [False, True])
def test_a_decoder_error_fails_only_its_video(tmp_path, monkeypatch, caplog, fail, name, refill):
    videos = [write_video(tmp_path / f"v{i}.avi", 6, 64, 48) for i in range(4)]
    real = vr.decode_sampled

    def decode(path, *args):
        return fail() if path == videos[1] else real(path, *args)

    monkeypatch.setattr(vr, "decode_sampled", decode)
    reader = VideoReader(write_list(tmp_path, [f"{v} {i}" for i, v in enumerate(videos)]), "train",
                         cfg(seg_num=2, short_size=56, target_size=48))
    with pytest.raises(ValueError, match=name):
        reader.load(1)
    with caplog.at_level("WARNING"):
        batches = list(iterate_batches(reader, [[0, 1], [2, 3]], 2, refill=refill))
    # the other videos are all there; with refill the failed one is replaced by the next in the list
    assert [b["labels"].tolist() for b in batches] == ([[0, 2], [2, 3]] if refill else [[0], [2, 3]])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and videos[1] in warnings[0] and "line 2" in warnings[0] and name in warnings[0]


def test_interrupt_in_a_decoder_is_not_swallowed(tmp_path, monkeypatch):
    videos = [write_video(tmp_path / f"v{i}.avi", 6, 64, 48) for i in range(2)]
    monkeypatch.setattr(vr, "decode_sampled", lambda *a: _raise(KeyboardInterrupt()))
    reader = VideoReader(write_list(tmp_path, [f"{v} 0" for v in videos]), "test", cfg(seg_num=2))
    with pytest.raises(KeyboardInterrupt):
        list(iterate_batches(reader, [[0, 1]], 2))


def test_collate_and_infer_lists(tmp_path):
    a = str(tmp_path / "clip 7")  # a file whose name ends in an integer
    os.rename(write_video(tmp_path / "clip.avi", 12, 320, 240), a)
    b = write_video(tmp_path / "b.avi", 12, 240, 320)
    list_path = write_list(tmp_path, [a, f"{b} 3", f"{b}"], "infer.list")
    reader = VideoReader(list_path, "infer", cfg(seg_num=4))
    assert [e.path for e in reader.entries] == [a, b, b]
    batch = reader.collate([reader.load(i) for i in range(3)])
    assert batch["inputs"][0].shape == (3, 4, 3, 224, 224) and batch["inputs"][0].dtype == np.float32
    assert batch["labels"].tolist() == [-1, -1, -1] and batch["labels"].dtype == np.int64
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == np.int64


@pytest.mark.parametrize("fmt, line, message", [
    ("video", "{video}", r"tsn.list:2: expected 'path label'"),
    ("video", "{video} 5", r"tsn.list:2: label id 5 out of range \[0, 5\)"),
    ("video", "{video} -1", r"tsn.list:2: label id -1 out of range"),
    ("video", "{video} 1 2", r"tsn.list:2: video file not found: .* 1 \(a TSN list line is 'path label', "
                             r"exactly one label\)"),
    ("video", "{dir}/absent.mp4 1", r"tsn.list:2: video file not found"),
    ("frames", "{dir} 3", r"tsn.list:2: expected 'path num_frames label'"),
    ("frames", "{dir} 0 3", r"tsn.list:2: number of frames must be positive"),
    ("frames", "{dir}/absent 10 3", r"tsn.list:2: frames folder not found"),
])
def test_list_errors_name_file_and_line(tmp_path, fmt, line, message):
    video = write_video(tmp_path / "ok.avi", 3, 64, 48)
    first = f"{video} 0" if fmt == "video" else f"{tmp_path} 3 0"
    list_path = write_list(tmp_path, [first, line.format(video=video, dir=tmp_path)])
    with pytest.raises(UserError, match=message):
        VideoReader(list_path, "train", cfg(fmt))


def test_config_errors(tmp_path):
    list_path = write_list(tmp_path, ["x.mp4 0"])
    with pytest.raises(UserError, match="MODEL.format"):
        VideoReader(list_path, "test", cfg("pkl"), check_files=False)
    with pytest.raises(UserError, match="short_size=200 is smaller than target_size=224"):
        VideoReader(list_path, "test", cfg(short_size=200), check_files=False)
    reader = VideoReader(list_path, "infer", {"MODEL": {"num_classes": C}}, check_files=False)
    assert (reader.format, reader.seg_num, reader.short_size, reader.target_size) == ("video", 300, 256, 224)
    assert [VideoReader(list_path, m, {"MODEL": {}}, check_files=False).seg_num
            for m in ("train", "valid", "test")] == [3, 3, 7]
