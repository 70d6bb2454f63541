"""Decode videos into frame folders for TSN's ``frames`` format, in parallel and resumably.

Input: a TSN video list (``path/to/x.mp4 7``; infer lists without labels are fine). Output, under
``out_dir``::

    <stem>/img_00001.jpg, img_00002.jpg, ...   every decoded frame, RGB saved as JPEG
    frames.list                                 <out_dir>/<stem> <num_frames> <label>, in list order
    failed.list                                 path<TAB>reason for every video that could not be decoded

A folder is written under a temporary name and renamed when complete, so an interrupted run leaves no
half-written folder; re-running skips the folders that exist. Videos sharing a stem get a suffix
derived from their path, as in the extractor.
"""
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import cv2
from tqdm import tqdm

from .errors import UserError
from .readers.lists import read_lines, split_labels, unique_stems
from .readers.video_reader import open_capture
from .files import write_text

log = logging.getLogger(__name__)


def decode_to_folder(video, folder, jpeg_quality=95):
    """Write every frame of ``video`` as ``folder/img_%05d.jpg``. Returns the number of frames."""
    tmp = folder + ".tmp"
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        cap.release()
    os.replace(tmp, folder)
    return count


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
    stems = unique_stems([p for p, _ in entries])
    counts, failed = {}, []

    def work(path):
        folder = os.path.join(out_dir, stems[path])
        if os.path.isdir(folder):
            return len([n for n in os.listdir(folder) if n.startswith("img_") and n.endswith(".jpg")])
        if not os.path.isfile(path):
            raise ValueError("file not found")
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
