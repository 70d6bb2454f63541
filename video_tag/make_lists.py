"""Labelled video lists for fine-tuning, from a folder per class or a CSV, split into train/val/test.

Input, a folder per class (``from_folders``; a class's videos anywhere below its folder)::

    my_dataset/cooking/a.mp4
    my_dataset/cooking/more/b.mp4
    my_dataset/sports/c.mp4

or a CSV (``from_csv``; UTF-8, ``path,label[,label...]``, an optional header ``path,...``)::

    data/mp4/a.mp4,cooking
    data/mp4/c.mp4,sports,cooking

Labels are class names. Without a label file the classes are the folder names or the CSV's names, sorted,
and class id i is the i-th (``labels`` is written for them); with one (``names``: its lines), a label is
one of its names or an id in ``[0, len(names))``. Output (``split``): the labelled video lists the
extractor's ``--train_list`` reads, ``path id [id ...]`` per line::

    my_dataset/cooking/a.mp4 0
"""
import csv
import logging
import os
import random
from dataclasses import dataclass

from .errors import UserError
from .readers.lists import is_int, read_lines

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class Video:
    """One labelled video: ``path`` as it goes into the list, ``labels`` (class ids, first = the class
    it is stratified by), ``where`` (its folder or ``file:line``, for messages)."""
    path: str
    labels: list
    where: str


def from_folders(root, names=None, extensions=None):
    """The videos of ``root/<class>/...`` (recursively, sorted) and the class names. Returns
    ``(videos, names)``: ``names`` given (a label file's lines) maps each folder name to its id; else the
    sorted folder names are the classes."""
    if extensions is None:
        from .tagger import VIDEO_EXTENSIONS as extensions
    if not os.path.isdir(root):
        raise UserError(f"not a folder: {root} (expected {root}/<class name>/<videos>)")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise UserError(f"no class folders in {root} (expected {root}/<class name>/<videos>)")
    if names is None:
        names = classes
    videos = []
    for name in classes:
        folder = os.path.join(root, name)
        label = class_id(name, names, folder)
        found = sorted(os.path.join(dirpath, f) for dirpath, _, files in os.walk(folder)
                       for f in files if f.lower().endswith(tuple(extensions)))
        if not found:
            log.warning("class folder %s holds no videos (%s, ...)", folder, ", ".join(extensions[:3]))
        videos += [Video(check_path(path, folder), [label], folder) for path in found]
    return videos, list(names)


def from_csv(path, names=None):
    """The videos of a CSV file, ``path,label[,label...]`` per row. Returns ``(videos, names)``."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(enumerate(csv.reader(f), 1))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except csv.Error as e:
        raise UserError(f"{path} is not a readable CSV ({e})") from None
    rows = [(n, [field.strip() for field in row]) for n, row in rows if any(field.strip() for field in row)]
    if rows and rows[0][1][0].lower() in ("path", "video"):
        rows = rows[1:]  # a header
    if not rows:
        raise UserError(f"{path} has no rows (expected 'path,label[,label...]')")
    if names is None:
        names = sorted({label for _, row in rows for label in row[1:] if label})
    seen, videos = {}, []
    for number, row in rows:
        where = f"{path}:{number}"
        labels = [label for label in row[1:] if label]
        if not row[0] or not labels:
            raise UserError(f"{where}: expected 'path,label[,label...]', got {','.join(row)!r}")
        if not os.path.isfile(row[0]):
            raise UserError(f"{where}: video not found: {row[0]}")
        if row[0] in seen:
            raise UserError(f"{where}: {row[0]} is listed again (first on line {seen[row[0]]}): give all its "
                            f"labels on one row")
        seen[row[0]] = number
        ids = list(dict.fromkeys(class_id(label, names, where) for label in labels))
        videos.append(Video(check_path(row[0], where), ids, where))
    return videos, list(names)


def read_names(label_file):
    """The class names of a UTF-8 label file, one per line (line i: class id i; trailing blank lines
    dropped)."""
    if not os.path.isfile(label_file):
        raise UserError(f"label file not found: {label_file}")
    names = [text.strip() for _, text in read_lines(label_file, keep_blank=True)]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UserError(f"label file {label_file} has no names")
    return names


def class_id(label, names, where):
    """The id of ``label``: its index in ``names``, or ``label`` itself when it is an id in range."""
    if label in names:
        return names.index(label)
    if is_int(label) and 0 <= int(label) < len(names):
        return int(label)
    raise UserError(f"{where}: label {label!r} is not a class of the label file ({len(names)} names, "
                    f"ids 0-{len(names) - 1})")


def check_path(path, where):
    """``path`` when a list line can hold it: UTF-8 text, no line break, not ending in ' <integer>' (the
    list's labels are its trailing integer fields)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where}: a video name is not UTF-8 ({path!r}): rename it; lists are UTF-8") from None
    if "\n" in path or "\r" in path:
        raise UserError(f"{where}: a video name holds a line break ({path!r}): rename it")
    parts = path.rsplit(None, 1)
    if len(parts) == 2 and is_int(parts[1]) or is_int(path.strip()):
        raise UserError(f"{where}: {path!r} ends in a number after a space, which a list would read as a "
                        f"label: rename it")
    return path


def split(videos, fractions=(0.8, 0.1, 0.1), seed=0):
    """``{"train": [...], "val": [...], "test": [...]}``, stratified by each video's first label.

    Per class, in a random order drawn from ``seed`` and the class alone (so adding videos of one class
    leaves the others' split as it was): ``round(n * fraction)`` videos for val and for test, at least
    one each when the class has 3 or more and the fraction is above 0, and at least one for train; the
    rest to train. Each split keeps the input's order."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0 < sum(fractions) <= 1.0 + 1e-9 or fractions[0] <= 0:
        raise UserError(f"--split needs three fractions train val test, train above 0, summing to 1 at most; "
                        f"got {' '.join(str(f) for f in fractions)}")
    scale = sum(fractions)
    fractions = [f / scale for f in fractions]
    by_class = {}
    for index, video in enumerate(videos):
        by_class.setdefault(video.labels[0], []).append(index)
    chosen = {}
    for label in sorted(by_class):
        members = by_class[label]
        random.Random(f"{seed}/{label}").shuffle(members)
        n = len(members)
        counts = [int(n * f + 0.5) for f in fractions[1:]]
        counts = [max(c, 1) if n >= 3 and f > 0 else c for c, f in zip(counts, fractions[1:])]
        while n - sum(counts) < 1 and sum(counts):  # train keeps at least one
            counts[counts.index(max(counts))] -= 1
        if n < 3 and any(f > 0 for f in fractions[1:]):
            log.warning("class %d has %d video(s): all in train", label, n)
        val, test = members[:counts[0]], members[counts[0]:counts[0] + counts[1]]
        chosen.update({i: "val" for i in val})
        chosen.update({i: "test" for i in test})
    return {name: [v for i, v in enumerate(videos) if chosen.get(i, "train") == name] for name in SPLITS}


def list_text(videos):
    """The labelled list of ``videos``: ``path id [id ...]`` per line."""
    return "".join(f"{v.path} {' '.join(str(l) for l in v.labels)}\n" for v in videos)
