"""TSN inputs: videos (any container OpenCV opens) or frame folders, sampled and preprocessed exactly as
the original VideoTag extractor (GUIDE section 1), without ever holding a whole video in memory.

TSN lists (``TRAIN/VALID/TEST/INFER.filelist``) carry exactly one label per line, the trailing integer
field, so paths may contain spaces; infer lists may leave the label out. ``MODEL.format: video``::

    data/videos/cooking class.mp4 7
    data/videos/abc.avi 0

``MODEL.format: frames``: a folder of ``img_00001.jpg``, ``img_00002.jpg``, ... (1-based), its number
of frames, then the label::

    data/frames/cooking class 250 7

Per video: ``seg_num`` segments, one frame each (the centre frame; a random one in train mode), resized
with PIL bilinear to a 4:3 box, cropped to ``target_size`` (centre; train: random crop and random
horizontal flip of the whole group), normalised with the ImageNet mean/std, CHW.
"""
import functools
import hashlib
import os
import signal
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..errors import UserError, failure_reason
from .lists import Entry, is_int, read_lines

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
SECTIONS = {"train": "TRAIN", "valid": "VALID", "test": "TEST", "infer": "INFER"}
DEFAULT_SEG_NUM = {"train": 3, "valid": 3, "test": 7, "infer": 300}
FRAME_NAME = "img_{:05d}.jpg"  # frame k (0-based) of a frames folder is FRAME_NAME.format(k + 1)


@dataclass
class TsnEntry(Entry):
    """A TSN list line: ``path``, ``labels`` (one id, or none in infer lists), ``line``, and for frames
    lists ``num_frames``."""
    num_frames: int = 0


def sample_indices(num_frames, seg_num, mode, rng=None):
    """The frame index of each of ``seg_num`` segments of a ``num_frames``-frame video (seglen 1).

    ``avg = num_frames // seg_num``; segment i takes ``(avg - 1) // 2 + i * avg`` (train: a uniform
    random frame of ``[i * avg, (i + 1) * avg)``) when avg >= 1, else ``i % num_frames``. As in the
    original, a video with seg_num <= num_frames < 2 * seg_num uses its first seg_num frames.
    ``sample_indices(10, 3, "test") -> [1, 4, 7]``; ``sample_indices(2, 3, "test") -> [0, 1, 0]``.
    """
    if num_frames < 1:
        raise ValueError("no frames decoded")
    avg = num_frames // seg_num
    if avg < 1:
        return [i % num_frames for i in range(seg_num)]
    if mode == "train":
        rng = np.random.default_rng() if rng is None else rng
        return [int(rng.integers(avg)) + i * avg for i in range(seg_num)]
    return [(avg - 1) // 2 + i * avg for i in range(seg_num)]


def container_frame_count(cap):
    """The frame count the container claims (may be wrong, or 0): only a hint for the first pass."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if count == count and 0 < count < 2 ** 31 else 0  # NaN, negative, absurd -> 0


def decode_sampled(path, seg_num, mode, rng=None, transform=None):
    """Decode only the sampled frames of a video, sampling from the frames the decoder really delivers.

    One sequential pass: indices are picked from the container's frame count, every frame is
    ``grab()``-ed and only the sampled ones are ``retrieve()``-d and kept (RGB uint8 [H, W, 3], passed
    through ``transform`` if given, e.g. ``resize_frame``). If the decoder delivers another number of
    frames than the container claims, the indices are picked again from the real count and a second pass
    (stopping at the last sampled frame) retrieves them. A frame the decoder cannot deliver mid-stream is
    skipped and reading goes on (see ``_grab``). Memory: at most ``seg_num`` frames.

    Returns ``(frames, indices, num_frames)``: ``seg_num`` frames (a frame sampled twice appears twice),
    their 0-based indices, and the number of frames decoded. Raises ``ValueError`` with the reason.
    """
    def first_pass(cap):
        claimed = container_frame_count(cap)
        indices = sample_indices(claimed, seg_num, mode, rng) if claimed else []  # 0: only count
        return (claimed, indices) + _grab(cap, set(indices), transform, claimed)

    claimed, indices, kept, num_frames = with_video(path, first_pass)
    if num_frames == 0:
        raise ValueError("no frames decoded")
    if num_frames != claimed:  # the container lied: sample from what is really there
        indices = sample_indices(num_frames, seg_num, mode, rng)
        kept, _ = with_video(path, lambda cap: _grab(cap, set(indices), transform, claimed,
                                                     stop_after=max(indices)))
        missing = sorted(set(indices) - set(kept))
        if missing:
            raise ValueError(f"frame {missing[0]} of {num_frames} not decoded on the second pass")
    return [kept[i] for i in indices], indices, num_frames


def open_capture(path):
    """A ``cv2.VideoCapture`` decoding on one thread: OpenCV's FFmpeg backend otherwise starts a decoding
    thread per core in every capture, which oversubscribes the cores that the network and the other
    decoders use (parallelism comes from decoding several videos at once)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8: OpenCV's binding crashes the process on it
        if not os.path.isdir("/proc/self/fd"):
            raise ValueError("the file name is not UTF-8, which OpenCV cannot open: rename the file") from None
        fd = os.open(path, os.O_RDONLY)
        try:  # FFmpeg opens the file anew through this name, so it is closed right after
            return open_capture(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    if hasattr(cv2, "CAP_PROP_N_THREADS"):
        return cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    return cv2.VideoCapture(path)


def with_video(path, then):
    """``then(cap)`` on the opened video, released afterwards."""
    if not os.path.isfile(path):
        raise ValueError("file not found")
    cap = open_capture(path)
    try:
        if not cap.isOpened():
            raise ValueError("cannot open video (not a video file, or a codec OpenCV lacks)")
        return then(cap)
    finally:
        cap.release()


# The end of a stream and a frame the decoder cannot deliver look alike: ``grab()`` fails. The original
# made ``CAP_PROP_FRAME_COUNT`` read attempts and skipped the failed ones; so a failed grab is skipped
# (the frame does not count) and reading goes on, and it stops at the first failure once the container's
# frame count has been attempted, or after MAX_FAILED_GRABS failures in a row: the only bound for a
# container that claims no count or too many frames (a real AVI claims 444 and holds 68), and cheap
# (a grab past the end returns at once).
MAX_FAILED_GRABS = 50


def decoded_frames(cap, wanted, claimed=0):
    """Yield ``(index, frame)`` for the frames of ``cap`` in decoding order: ``frame`` RGB [H, W, 3] uint8
    where ``wanted(index)``, else None (only grabbed, not converted).

    Frames are numbered as decoded: a frame whose grab (or, when wanted, retrieve) fails is skipped and
    the next decoded frame takes its number, as in the original. Decoding stops after ``claimed`` (the
    container's count) attempts, or ``MAX_FAILED_GRABS`` failures in a row. ``wanted(index)`` is asked
    once after each successful grab, so it may read the grabbed frame's ``CAP_PROP_POS_MSEC`` (the
    windows of ``windows.py`` do); it is asked again under the same index when the frame's retrieve fails.
    """
    index, attempts, failures = 0, 0, 0
    while True:
        attempts += 1
        ok = cap.grab()
        frame = None
        if ok and wanted(index):
            ok, frame = cap.retrieve()
            ok = ok and frame is not None
        if not ok:
            failures += 1
            if (claimed and attempts >= claimed) or failures >= MAX_FAILED_GRABS:
                return
            continue
        failures = 0
        yield index, None if frame is None else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1


def _grab(cap, wanted, transform, claimed=0, stop_after=None):
    """The frames ``wanted`` (a set of indices, numbered as ``decoded_frames`` numbers them), up to the
    decoded frame ``stop_after``. Returns ``({index: frame}, number of frames decoded)``."""
    kept, count = {}, 0
    for index, frame in decoded_frames(cap, wanted.__contains__, claimed):
        count = index + 1
        if frame is not None:
            kept[index] = transform(frame) if transform else frame
        if index == stop_after:
            break
    return kept, count


def load_frames_dir(folder, num_frames, seg_num, mode, rng=None, transform=None):
    """The sampled frames of a frames folder (``img_00001.jpg`` = frame 0), read with OpenCV as RGB.

    Sampling as ``sample_indices(num_frames, ...)`` (frames beyond the folder's end are not looked up:
    where the original would open ``img_{i+1}`` for ``num_frames < seg_num``, this wraps around like the
    video path). Returns ``(frames, indices)``; a missing or unreadable frame raises ``ValueError``.
    """
    indices = sample_indices(num_frames, seg_num, mode, rng)
    kept = {}
    for index in sorted(set(indices)):
        name = FRAME_NAME.format(index + 1)
        try:
            data = np.fromfile(os.path.join(folder, name), np.uint8)  # any path, unlike cv2.imread
        except OSError:
            raise ValueError(f"frame file {name} not found") from None
        # no EXIF rotation: the original read frames with PIL, which ignores it
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
        if frame is None:
            raise ValueError(f"frame file {name} is not a readable image")
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        kept[index] = transform(frame) if transform else frame
    return [kept[i] for i in indices], indices


def resize_frame(frame, short_size=256):
    """PIL-bilinear resize of one RGB uint8 [H, W, 3] frame to the original's fixed 4:3 box.

    Landscape or square -> ``[short_size, int(short_size * 4 / 3), 3]`` (256 -> 341 wide), portrait ->
    ``[int(short_size * 4 / 3), short_size, 3]``; the aspect ratio is not kept. A frame whose short side
    already equals ``short_size`` (``w <= h and w == short_size`` or ``h <= w and h == short_size``) is
    returned unchanged, whatever its long side: 340x256 and 256x300 (w x h) stay as they are.
    """
    h, w = frame.shape[:2]
    if (w <= h and w == short_size) or (h <= w and h == short_size):
        return frame
    long_size = int(short_size * 4.0 / 3.0)
    size = (short_size, long_size) if w < h else (long_size, short_size)  # PIL's (w, h)
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def centre_crop(frame, target_size=224):
    """The infer-mode crop of one resized uint8 frame (the offsets of ``crop_normalize``): [t, t, 3]."""
    y = int(round((frame.shape[0] - target_size) / 2))
    x = int(round((frame.shape[1] - target_size) / 2))
    if y < 0 or x < 0:
        raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} is smaller than the crop size {target_size}")
    return np.ascontiguousarray(frame[y:y + target_size, x:x + target_size])


def decode_cropped(path, seg_num, short_size=256, target_size=224):
    """The extractor's decode step: the infer-mode frames of a video, resized and centre-cropped as they
    are decoded. Returns uint8 [seg_num, t, t, 3]; raises ``ValueError`` with the reason."""
    frames, _, _ = decode_sampled(path, seg_num, "infer",
                                  transform=lambda f: centre_crop(resize_frame(f, short_size), target_size))
    return np.stack(frames)


def init_decode_worker():
    """Set up a process that decodes videos beside a network running on the same cores.

    One thread (OpenCV's own pool off), and the lowest CPU priority: oneDNN's parallel regions wait for
    their slowest thread, so a decoder taking half of one core at equal priority halves the network's
    speed while it runs (measured: 12.6 -> 6.4 frames/s with one busy decoder on 2 cores; 11.7 at
    nice 19). At low priority the decoders take the cycles the network leaves: when the network waits
    for frames, its threads sleep and the decoders get the cores. Lives here, not in the extractor, so
    that a worker never imports Paddle. Ctrl-C is left to the main process, which stops the workers
    (instead of every worker printing its own traceback).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    try:
        os.nice(19)
    except (AttributeError, OSError):  # not Unix, or not permitted
        pass


def crop_normalize(frames, mode, target_size=224, rng=None):
    """Crop and normalise resized RGB uint8 frames ([H, W, 3] each) into a float32
    ``[len(frames), 3, target_size, target_size]`` array: ``(x / 255 - mean) / std``.

    Centre crop at ``int(round((H - target) / 2))`` (Python 3 rounding), likewise for W, per frame;
    train mode: one random crop offset (fitting the smallest frame) and, with probability 1/2, a
    horizontal flip for the whole group.
    """
    h, w = min(f.shape[0] for f in frames), min(f.shape[1] for f in frames)
    if h < target_size or w < target_size:
        raise ValueError(f"frame of {w}x{h} is smaller than the crop size {target_size}")
    if mode == "train":
        rng = np.random.default_rng() if rng is None else rng
        y, x = int(rng.integers(h - target_size + 1)), int(rng.integers(w - target_size + 1))
        flip = rng.random() < 0.5
    out = np.empty((len(frames), 3, target_size, target_size), np.float32)
    for k, frame in enumerate(frames):
        if mode != "train":  # a video may change its frame size midway: each frame its own centre
            y = int(round((frame.shape[0] - target_size) / 2))
            x, flip = int(round((frame.shape[1] - target_size) / 2)), False
        crop = frame[y:y + target_size, x:x + target_size]
        out[k] = (crop[:, ::-1] if flip else crop).transpose(2, 0, 1)
    out /= np.float32(255)  # in place, in float32: bit-identical to the original's operations
    out -= MEAN
    out /= STD
    return out


def preprocess(frames, mode, short_size=256, target_size=224, rng=None):
    """RGB uint8 frames [H, W, 3] -> float32 ``[len(frames), 3, target_size, target_size]``: ``resize_frame``
    then ``crop_normalize``. E.g. 7 frames of 320x240 -> 341x256 -> centre 224 -> [7, 3, 224, 224].
    """
    return crop_normalize([resize_frame(f, short_size) for f in frames], mode, target_size, rng)


class VideoReader:
    """The videos (or frame folders) of a TSN list. ``load(i)`` returns a sample dict or raises
    ``ValueError`` with the reason.

    mode: "train" / "valid" / "test" need one label id per line; "infer" takes lines with or without one.
    cfg: ``MODEL.format`` ("video", default, or "frames"), ``MODEL.num_classes``, and in the mode's
    section (TRAIN/VALID/TEST/INFER) ``seg_num`` (default 3/3/7/300), ``short_size`` (256) and
    ``target_size`` (224).
    check_files: missing videos/folders are an error up front (training); else reported per sample.
    Train mode draws each sample's crop, flip and frames from its own generator, seeded from numpy's
    global state and the sample index, so runs seeded with ``np.random.seed`` repeat on any thread count,
    and a sample's draws do not depend on the loads before it (a resumed epoch draws as an unbroken one).
    """

    def __init__(self, list_path, mode, cfg, check_files=True):
        if mode not in SECTIONS:
            raise ValueError(f"mode must be one of {sorted(SECTIONS)}, got {mode!r}")
        model = cfg.get("MODEL") or {}
        section = cfg.get(SECTIONS[mode]) or {}
        self.mode = mode
        self.format = model.get("format") or "video"
        if self.format == "mp4":  # the original configs' name
            self.format = "video"
        if self.format not in ("video", "frames"):
            raise UserError(f"MODEL.format must be 'video' or 'frames', got {self.format!r}")
        self.num_classes = model.get("num_classes")
        self.seg_num = int(section.get("seg_num") or DEFAULT_SEG_NUM[mode])
        self.short_size = int(section.get("short_size") or 256)
        self.target_size = int(section.get("target_size") or 224)
        if self.seg_num < 1:
            raise UserError(f"{SECTIONS[mode]}.seg_num must be at least 1, got {self.seg_num}")
        if self.short_size < self.target_size:
            raise UserError(f"{SECTIONS[mode]}.short_size={self.short_size} is smaller than "
                            f"target_size={self.target_size}")
        self.entries = read_tsn_list(list_path, self.format, self.num_classes, need_labels=mode != "infer",
                                     check_files=check_files)

    def __len__(self):
        return len(self.entries)

    def load(self, index):
        """Sample ``index``: {"frames": float32 [seg_num, 3, target, target], "label": int (-1: none),
        "index": int}. Raises ``ValueError`` with the reason, also for a decoder's own exceptions
        (``cv2.error``, ``MemoryError``, a PIL error, ...): an odd video fails alone."""
        try:
            return self._load(index)
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(failure_reason(e)) from None

    def _load(self, index):
        entry = self.entries[index]
        rng = self._rng(index) if self.mode == "train" else None
        resize = functools.partial(resize_frame, short_size=self.short_size)  # resized as decoded
        if self.format == "video":
            frames = decode_sampled(entry.path, self.seg_num, self.mode, rng, resize)[0]
        else:
            if not os.path.isdir(entry.path):
                raise ValueError("frames folder not found")
            frames = load_frames_dir(entry.path, entry.num_frames, self.seg_num, self.mode, rng, resize)[0]
        return {"frames": crop_normalize(frames, self.mode, self.target_size, rng),
                "label": entry.labels[0] if entry.labels else -1, "index": index}

    def collate(self, samples):
        """{"inputs": [frames [B, seg_num, 3, target, target] float32], "labels": [B] int64 (-1: none),
        "index": [B] int64}."""
        return {"inputs": [np.stack([s["frames"] for s in samples])],
                "labels": np.array([s["label"] for s in samples], np.int64),
                "index": np.array([s["index"] for s in samples], np.int64)}

    def _rng(self, index):
        # Keyed on numpy's global state (read, not advanced: no race between loader threads) and the index
        # only, not on the loads before: a sample loaded twice in an epoch (an unreadable one's
        # replacement) draws the same, whatever order the loader threads ran in, and so does a run resumed
        # mid-epoch with a fresh reader. The trainer reseeds numpy's generator every epoch (sampler.py):
        # each epoch draws anew.
        _, keys, pos = np.random.get_state()[:3]
        key = hashlib.blake2b(keys.tobytes() + int(pos).to_bytes(4, "little"), digest_size=8).digest()
        return np.random.default_rng([int.from_bytes(key, "little"), index])


def read_tsn_list(list_path, fmt="video", num_classes=None, need_labels=True, check_files=True):
    """Parse and validate a TSN list (formats in the module docstring). Returns a list of ``TsnEntry``
    in file order. Errors name ``file:line``.

    need_labels: every line ends in one label id in ``[0, num_classes)``. When False (infer lists) a
    label is optional and ignored: the last integer field is taken for one unless the line without it
    names an existing video (frames folder): ``clip 7`` is the file ``clip 7`` if it exists, else ``clip``.
    """
    exists = os.path.isdir if fmt == "frames" else os.path.isfile
    fields = ["path", "num_frames"] if fmt == "frames" else ["path"]
    want = " ".join(fields + ["label"] if need_labels else fields + ["[label]"])
    entries = []
    for number, text in read_lines(list_path):
        where, text = f"{list_path}:{number}", text.rstrip()
        path, ints = _split_ints(text, len(fields))  # path [num_frames] label
        if not need_labels:
            short_path, short_ints = _split_ints(text, len(fields) - 1)  # path [num_frames]
            if path is None or (short_path is not None and exists(short_path)):
                path, ints = short_path, short_ints + [None]
        if path is None or not path.strip():
            raise UserError(f"{where}: expected '{want}', got {text.strip()!r}")
        label = ints[-1] if need_labels else None
        if label is not None and (label < 0 or (num_classes is not None and label >= int(num_classes))):
            raise UserError(f"{where}: label id {label} out of range [0, {num_classes}) "
                            f"(MODEL.num_classes={num_classes})")
        entry = TsnEntry(path, [] if label is None else [label], number)
        if fmt == "frames":
            entry.num_frames = ints[0]
            if entry.num_frames < 1:
                raise UserError(f"{where}: number of frames must be positive, got {entry.num_frames}")
        if check_files and not exists(path):
            hint = f" (a TSN list line is '{want}', exactly one label)" if _split_ints(path, 1)[0] else ""
            raise UserError(f"{where}: {'frames folder' if fmt == 'frames' else 'video file'} not found: "
                            f"{path}{hint}")
        entries.append(entry)
    if not entries:
        raise UserError(f"list file {list_path} has no entries")
    return entries


def _split_ints(text, count):
    """``("a b.mp4 12 3", 2) -> ("a b.mp4", [12, 3])``; ``(None, [])`` when one of the last ``count``
    fields is no integer or nothing is left before them."""
    parts = text.rsplit(None, count) if count else [text]
    if len(parts) != count + 1 or not all(is_int(p) for p in parts[1:]):
        return None, []
    return parts[0], [int(p) for p in parts[1:]]
