"""Decode videos into frame folders for TSN's ``frames`` format, in parallel and resumably.

Input: a TSN video list (``path/to/x.mp4 7``; infer lists without labels are fine). Output, under
``out_dir``::

    <stem>_<hash>/img_00001.jpg, ...   every decoded frame, RGB saved as JPEG (folder named as the
                                       extractor's features: ``lists.output_stem``), numbered as every
                                       reader numbers them: a frame the decoder cannot deliver is
                                       skipped (``video_reader.decoded_frames``)
    frames.list                        <out_dir>/<stem>_<hash> <num_frames> <label>, in list order
    failed.list                        path<TAB>reason for every video that could not be decoded (both
                                       fields as ``files.text_path`` writes them, as in every list)

A folder is written under a temporary name of its own video and process (``.tmp-<hash of the real
path>-<host>-<pid>``: short whatever the video's name, and runs sharing ``out_dir`` never touch each
other's) and renamed when complete, with a record of what it holds (``RECORD``: the video's path, size
and mtime, the number of frames). Re-running skips a folder only when its record matches the video and
the frames are all there; anything else (frames missing, another or a changed video, a folder without
record) is decoded again. Temporary folders of killed runs on this host are removed at start. The
folder's name carries a hash of the video's real path, so two videos sharing a stem never share a
folder, in one list or across runs; spellings of one video (``a.mp4``, ``./a.mp4``, a symlink) are
decoded once, into the folder of the first. A per-video error (unreadable, a name the filesystem
refuses, a full disk) fails that video, not the run.
"""
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import cv2
from tqdm import tqdm

from .errors import UserError, failure_reason
from .files import write_text
from .names import shown, text_path
from .readers.lists import output_stem, read_lines, split_labels
from .readers.video_reader import decoded_frames, with_video

log = logging.getLogger(__name__)


RECORD = ".complete.json"
# a temporary folder: ``.tmp-<16 hex>-<host>-<pid>`` (and ``<name>.tmp-<host>-<pid>`` of older versions)
_TEMPORARY = re.compile(r"\.tmp-(?:[0-9a-f]{16}-)?(?P<host>.+)-(?P<pid>\d+)(\.old)?$")


def temporary_folder(video, out_dir):
    """Where this process decodes ``video`` before renaming the folder into place: named by a hash of the
    video's real path, so that two spellings of one video never share it, and short whatever the name."""
    key = hashlib.sha256(os.fsencode(os.path.realpath(video))).hexdigest()[:16]
    return os.path.join(out_dir, f".tmp-{key}-{socket.gethostname()}-{os.getpid()}")


def write_jpeg(path, rgb, quality):
    """``rgb`` [H, W, 3] uint8 as a JPEG file (encoded by OpenCV, written by Python: any file name)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode a frame as JPEG")
    with open(path, "wb") as f:
        f.write(data)


def decode_to_folder(video, folder, jpeg_quality=95):
    """Write every frame of ``video`` as ``folder/img_%05d.jpg`` and the ``RECORD``. Returns the number
    of frames. An existing ``folder`` (short, or of another video) is replaced only once the new one is
    complete."""
    tmp = temporary_folder(video, os.path.dirname(folder))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    identity = _identity(video)  # what the folder is recorded as made from: the video before decoding

    def write_frames(cap):
        count = 0
        for index, frame in decoded_frames(cap, lambda index: True, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))):
            count = index + 1
            write_jpeg(os.path.join(tmp, f"img_{count:05d}.jpg"), frame, jpeg_quality)
        return count

    try:
        count = with_video(video, write_frames)
        if count == 0:
            raise ValueError("no frames decoded")
        with open(os.path.join(tmp, RECORD), "w", encoding="utf-8") as f:
            json.dump({**identity, "num_frames": count}, f, ensure_ascii=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(folder):  # a directory cannot be renamed over a non-empty one: move it aside first
        os.replace(folder, tmp + ".old")
        shutil.rmtree(tmp + ".old", ignore_errors=True)
    os.replace(tmp, folder)
    return count


def _identity(video):
    st = os.stat(video)
    return {"video": video, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def complete_count(folder, video):
    """``(num_frames, None)`` when ``folder`` holds a complete decode of ``video`` as it is now, else
    ``(None, why not)``: no record, another or a changed video, frames missing."""
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None, "no record of a complete decode (an older run's folder)"
    if not isinstance(record, dict) or {k: record.get(k) for k in ("video", "size", "mtime_ns")} != _identity(video):
        return None, "decoded from another video, or the video changed since"
    count = record.get("num_frames")
    names = {n for n in os.listdir(folder) if n.startswith("img_")}
    if not isinstance(count, int) or names != {f"img_{i:05d}.jpg" for i in range(1, count + 1)}:
        return None, f"{len(names)} frame file(s) where {count} were written"
    return count, None


def remove_stale_temporaries(out_dir):
    """Remove the temporary folders that runs killed on this host left in ``out_dir`` (their process is
    gone); those of live runs, and of other hosts sharing the folder, are left alone."""
    host = socket.gethostname()
    for name in os.listdir(out_dir):
        match = _TEMPORARY.search(name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def video_to_frames(list_path, out_dir, num_workers=4):
    """Decode every video of ``list_path`` into ``out_dir``. Returns the exit code (1 if any failed)."""
    entries = []
    for number, text in read_lines(list_path):
        path, labels = split_labels(text)
        if len(labels) > 1:
            raise UserError(f"{list_path}:{number}: expected 'path label' with one label, got {text.strip()!r}")
        entries.append((path, labels))
    if not entries:
        raise UserError(f"list file {list_path} has no entries")
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temporaries(out_dir)
    origins, jobs, failed = plan_folders([p for p, _ in entries], out_dir)
    counts = {}

    def work(path, folder):
        if not os.path.isfile(path):
            raise ValueError("file not found")
        if os.path.isdir(folder):
            count, why = complete_count(folder, path)
            if count:
                return count
            log.info("decoding %s again into %s: %s", shown(path), shown(folder), why)
        return decode_to_folder(path, folder)

    with ThreadPoolExecutor(max(1, num_workers)) as pool, \
            tqdm(total=len(jobs), desc="frames", unit="video", dynamic_ncols=True) as progress:
        for path, future in [(p, pool.submit(work, p, folder)) for p, folder in jobs.items()]:
            try:
                counts[path] = future.result()
            except Exception as e:  # OSError, cv2.error, ...: this video's problem; go on with the next
                failed[path] = failure_reason(e)
                log.warning("cannot decode %s: %s", shown(path), failed[path])
            progress.update(1)

    lines = [" ".join([jobs[origins[p]], str(counts[origins[p]])] + [str(l) for l in labels]) + "\n"
             for p, labels in entries if origins[p] in counts]
    write_text(os.path.join(out_dir, "frames.list"), "".join(lines))
    write_text(os.path.join(out_dir, "failed.list"), "".join(
        f"{text_path(p)}\t{text_path(failed[origins[p]])}\n" for p in origins if origins[p] in failed))
    log.info("%d video(s) decoded into %s, %d failed; list: %s", len(counts), out_dir, len(failed),
             os.path.join(out_dir, "frames.list"))
    return 1 if failed else 0


def plan_folders(paths, out_dir):
    """One decode per video, however it is spelled, and never two videos in one folder.

    Returns ``(origins, jobs, refused)``: ``origins`` maps each of ``paths`` (in order, once) to the first
    spelling listed of its real path (``a.mp4``, ``./a.mp4`` and a symlink to it are one video);
    ``jobs`` maps those first spellings to their folder (``output_stem``); ``refused`` maps a first
    spelling whose folder is already another video's (a collision of names) to the reason."""
    origins, first, jobs, refused, owner = {}, {}, {}, {}, {}
    for path in paths:
        if path in origins:
            continue
        real = os.path.realpath(path)
        origins[path] = first.setdefault(real, path)
        if origins[path] != path:
            continue
        folder = os.path.join(out_dir, output_stem(path))
        if folder in owner:
            refused[path] = f"its frames folder {shown(folder)} is already that of {shown(owner[folder])}"
        else:
            owner[folder], jobs[path] = path, folder
    return origins, jobs, refused
