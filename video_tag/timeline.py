"""A video's levels in one record: ``videotag.py``'s timeline file, tag ranges and the class filter.

``<save_dir>/timelines/<name>.json`` (``<name>``: ``lists.output_stem`` of the video), one per video,
validated by ``timeline.schema.json`` (shipped beside this module)::

    {"video": "clips/beach.mp4", "name": "beach_3f0c...",
     "metadata": {"duration": 12.48, "fps": 25.0, "frames": 312, "width": 640, "height": 360, "codec": "avc1"},
     "tags": [{"class_id": 7, "class_name": "海滩", "probability": 0.93}, ...],
     "shots": [{"shot": 0, "start": 0.0, "end": 4.2, "start_frame": 0, "end_frame": 105, "tags": [...],
                "thumbnail": "thumbs/beach_3f0c.../shot_0000.jpg"}, ...],
     "segments": [{"segment": 0, "start": 0.0, "end": 30.0, "tags": [...]}, ...],
     "ranges": [{"class_id": 7, "class_name": "海滩", "start": 0.0, "end": 8.4, "confidence": 0.91,
                 "level": "shot"}, ...]}

Times in seconds, end exclusive; frames 0-based as decoded, end exclusive. A tag range: for one class,
a run of consecutive shots (segments) whose probability of that class is at least ``min_confidence``,
from the first one's start to the last one's end, with the run's highest probability as its
``confidence`` (the cloud services' segment aggregation); probabilities of every allowed class count,
not only the listed top tags. Ranges sorted by (start, class_id, level).
"""
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from . import files
from .errors import UserError
from .thresholds import keep_tags

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timeline.schema.json")


@dataclass
class TimelineOptions:
    """What ``videotag.py`` writes beyond predictions.jsonl and segments.jsonl: ``shots`` (shots.jsonl and
    a tagged shot level), ``report`` (thumbnails and report.html); timelines are written with either, or
    with windows. ``include`` / ``exclude``: class ids or names (a list of str or int; items may be comma
    lists) that every level keeps (drops); ``min_confidence``: the tag ranges' threshold, in [0, 1];
    ``shot_frames``: what a shot is tagged from, ``"own"`` (its own frames, sampled as a whole video's) or
    ``"shared"`` (the frames of the video's and the windows' samples inside it: ``readers.shot_clips``)."""
    shots: bool = False
    min_confidence: float = 0.5
    include: tuple = ()
    exclude: tuple = ()
    report: bool = False
    shot_frames: str = "own"


SHOT_FRAMES = ("own", "shared")


def check_options(options, save_dir):
    """Refuse (``UserError``) options that cannot work, before any work: ``min_confidence`` outside
    [0, 1], ``report`` into a folder that cannot be written, ``shot_frames`` other than own without shots."""
    if not 0.0 <= options.min_confidence <= 1.0:
        raise UserError(f"--min_confidence must be between 0 and 1, got {options.min_confidence}")
    if options.shot_frames not in SHOT_FRAMES:
        raise UserError(f"--shot_frames must be one of {', '.join(SHOT_FRAMES)}, got {options.shot_frames!r}")
    if options.shot_frames != "own" and not options.shots:
        raise UserError(f"--shot_frames {options.shot_frames} needs --shots")
    if options.report:
        check_writable(save_dir)


def check_writable(folder):
    """``UserError`` unless ``folder`` (or, where it does not exist yet, the nearest folder above it) lets
    this process create a file: tried for real (permissions, a read-only file system, ACLs)."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UserError(f"cannot write the report into {folder}: {probe} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UserError(f"cannot write the report into {folder}: {probe} is not writable ({e.strerror or e})") \
            from None


def split_items(values):
    """Flag values (repeatable, each possibly a comma list) -> their items, stripped, in order."""
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


def allowed_classes(names, include=(), exclude=()):
    """The class ids every level may list: those of ``include`` (all when empty) less those of ``exclude``,
    sorted; None when neither is given. An item is a class name as the label file spells it, or a class
    id; an unknown one raises ``UserError``. A name holding a comma is matched whole before the value is
    split."""
    if not include and not exclude:
        return None
    by_name = {name: i for i, name in reversed(list(enumerate(names)))}

    def ids(values, flag):
        found = []
        for value in values:
            items = [str(value).strip()] if str(value).strip() in by_name else split_items([value])
            for item in items:
                if item in by_name:
                    found.append(by_name[item])
                elif item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
                    found.append(int(item))
                else:
                    raise UserError(f"{flag}: no class named or numbered {item!r} in the label file "
                                    f"(names as the label file spells them, or ids 0..{len(names) - 1})")
        return set(found)

    kept = ids(include, "--include") if include else set(range(len(names)))
    return np.array(sorted(kept - ids(exclude, "--exclude")), np.int64)


def top_tags(probabilities, names, k, threshold=0.0, allowed=None):
    """The ``k`` most probable of the ``allowed`` classes (all when None) with probability >= ``threshold``
    (one for every class, or one per class: ``thresholds.keep_tags``): ``[{"class_id", "class_name",
    "probability"}]``, descending (ties: lower id first), as predict.py's."""
    ids = np.arange(len(probabilities)) if allowed is None else allowed
    order = ids[np.argsort(-probabilities[ids], kind="stable")][:k]
    return keep_tags([{"class_id": int(c), "class_name": names[c], "probability": float(probabilities[c])}
                      for c in order], threshold)


def tag_ranges(levels, names, min_confidence, level, allowed=None):
    """Tag ranges of one level: ``levels`` is ``[(start, end, probabilities [C])]`` in time order (shots,
    or segments); for each allowed class, each run of consecutive items with probability >=
    ``min_confidence`` -> ``{"class_id", "class_name", "start", "end", "confidence", "level"}``."""
    if not levels:
        return []
    table = np.stack([p for _, _, p in levels])  # [items, C]
    ids = np.arange(table.shape[1]) if allowed is None else allowed
    ranges = []
    for c in ids[(table[:, ids] >= min_confidence).any(axis=0)]:
        above = table[:, c] >= min_confidence
        i = 0
        while i < len(levels):
            if not above[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(levels) and above[j + 1]:
                j += 1
            ranges.append({"class_id": int(c), "class_name": names[c], "start": levels[i][0],
                           "end": levels[j][1], "confidence": float(table[i:j + 1, c].max()), "level": level})
            i = j + 1
    return ranges


def sort_ranges(ranges):
    return sorted(ranges, key=lambda r: (r["start"], r["class_id"], r["level"]))


def write_timeline(path, timeline):
    """Write ``timeline`` (a dict) to ``path`` atomically, UTF-8 JSON."""
    files.write_text(path, json.dumps(timeline, ensure_ascii=False, indent=1) + "\n")


def read_timeline(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
