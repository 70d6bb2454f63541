"""Decode videos into frame folders for TSN's ``frames`` format, in parallel and resumably.

Input: a TSN video list (``path/to/x.mp4 7``; infer lists without labels are fine). Output, under
``out_dir``::

    <stem>/img_00001.jpg, img_00002.jpg, ...   every decoded frame, RGB saved as JPEG
    frames.list                                 <out_dir>/<stem> <num_frames> <label>, in list order
    failed.list                                 path<TAB>reason for every video that could not be decoded

A folder is written under a temporary name of its own process (``<stem>.tmp-<host>-<pid>``: runs sharing
``out_dir`` never touch each other's) and renamed when complete, with a record of what it holds
(``RECORD``: the video's path, size and mtime, the number of frames). Re-running skips a folder only
when its record matches the video and the frames are all there; anything else (frames missing, another
or a changed video, a folder without record) is decoded again. Temporary folders of killed runs on this
host are removed at start. Videos sharing a stem get a suffix derived from their path, as in the
extractor.
"""
import json
import logging
import os
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import cv2
from tqdm import tqdm

from .errors import UserError
from .readers.lists import read_lines, split_labels, unique_stems
from .readers.video_reader import open_capture
from .files import write_text

log = logging.getLogger(__name__)


RECORD = ".complete.json"
_TEMPORARY = re.compile(r"\.tmp-(?P<host>.+)-(?P<pid>\d+)(\.old)?$")


def _owner():
    """``host-pid``: names this process's temporary folders (threads of one run decode distinct folders)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def decode_to_folder(video, folder, jpeg_quality=95):
    """Write every frame of ``video`` as ``folder/img_%05d.jpg`` and the ``RECORD``. Returns the number
    of frames. An existing ``folder`` (short, or of another video) is replaced only once the new one is
    complete."""
    tmp = f"{folder}.tmp-{_owner()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    cap = open_capture(video)
    try:
        if not cap.isOpened():
            raise ValueError("cannot open video")
        count = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            if not cv2.imwrite(os.path.join(tmp, f"img_{count:05d}.jpg"), frame,
                               [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise ValueError(f"cannot write frames to {tmp}")
        if count == 0:
            raise ValueError("no frames decoded")
        with open(os.path.join(tmp, RECORD), "w", encoding="utf-8") as f:
            json.dump({**_identity(video), "num_frames": count}, f, ensure_ascii=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        cap.release()
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
    stems = unique_stems([p for p, _ in entries])
    counts, failed = {}, []

    def work(path):
        folder = os.path.join(out_dir, stems[path])
        if not os.path.isfile(path):
            raise ValueError("file not found")
        if os.path.isdir(folder):
            count, why = complete_count(folder, path)
            if count:
                return count
            log.info("decoding %s again into %s: %s", path, folder, why)
        return decode_to_folder(path, folder)

    unique = list(stems)
    with ThreadPoolExecutor(max(1, num_workers)) as pool, \
            tqdm(total=len(unique), desc="frames", unit="video", dynamic_ncols=True) as progress:
        for path, future in [(p, pool.submit(work, p)) for p in unique]:
            try:
                counts[path] = future.result()
            except (ValueError, OSError) as e:
                log.warning("cannot decode %s: %s", path, e)
                failed.append((path, str(e)))
            progress.update(1)

    lines = []
    for path, labels in entries:
        if path in counts:
            folder = os.path.join(out_dir, stems[path])
            lines.append(" ".join([folder, str(counts[path])] + [str(l) for l in labels]) + "\n")
    write_text(os.path.join(out_dir, "frames.list"), "".join(lines))
    write_text(os.path.join(out_dir, "failed.list"), "".join(f"{p}\t{r}\n" for p, r in failed))
    log.info("%d video(s) decoded into %s, %d failed; list: %s", len(counts), out_dir, len(failed),
             os.path.join(out_dir, "frames.list"))
    return 1 if failed else 0
