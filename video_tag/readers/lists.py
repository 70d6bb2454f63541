"""List files: one sample per line, validated up front with ``file:line`` in every error.

Feature lists of the AttentionLSTM (labels are the trailing integer fields, so paths may contain
spaces; infer lists may carry no labels)::

    data/features/cooking video.npy 3 17 204
    data/features/训练.npy 3110

Lines may end in CRLF, the file may start with a UTF-8 BOM, blank lines are skipped.
"""
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field

from ..errors import UserError


@dataclass
class Entry:
    """One list line: ``path`` exactly as listed, its ``labels`` (class ids) and 1-based ``line``."""
    path: str
    labels: list = field(default_factory=list)
    line: int = 0


def read_lines(list_path, keep_blank=False):
    """Yield ``(line_number, text)`` for the non-blank (or all) lines of a UTF-8 list file."""
    for number, text in enumerate(_lines(list_path), 1):
        if keep_blank or text.strip():
            yield number, text


def read_texts(list_path):
    """The non-blank lines of a UTF-8 list file, in order: ``read_lines`` without line numbers, in C loops
    (a list of millions of videos)."""
    return list(filter(str.strip, _lines(list_path)))


def _lines(list_path):
    """Every line of a UTF-8 list file (BOM and line-end CRs removed); ``UserError`` naming the file, and the
    line when one is not UTF-8."""
    try:
        with open(list_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"cannot read list file {list_path}: {e.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:  # a newline is never inside a UTF-8 sequence: the line holding e.start
        number = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{list_path}:{number}: line is not valid UTF-8") from None
    lines = text.split("\n")
    return [line.rstrip("\r") for line in lines] if "\r" in text else lines


def split_labels(text):
    """``"a b.npy 3 17" -> ("a b.npy", [3, 17])``: the trailing integer fields are the labels."""
    rest, labels = text.rstrip(), []
    while True:
        parts = rest.rsplit(None, 1)
        if len(parts) < 2 or not is_int(parts[1]):
            return rest, labels
        rest = parts[0]
        labels.insert(0, int(parts[1]))


def is_int(token):
    """Whether a list field is a label id (an optional minus, then ASCII digits)."""
    return re.fullmatch(r"-?[0-9]+", token) is not None  # not str.isdigit: "²" and "--3" are no ints


def read_list(list_path, num_classes=None, need_labels=True, check_files=True, exists=os.path.isfile):
    """Parse and validate a list file. Returns a list of ``Entry`` in file order.

    need_labels: every line must carry at least one label id in ``[0, num_classes)``; when False,
    labels are ignored (inference lists). check_files: every listed file must exist (``exists(path)``).
    """
    entries = []
    for number, text in read_lines(list_path):
        where = f"{list_path}:{number}"
        if need_labels:
            path, labels = split_labels(text)
            if not labels:
                raise UserError(f"{where}: expected 'path label [label ...]', got {text.strip()!r}")
            bad = [l for l in labels if l < 0 or (num_classes is not None and l >= num_classes)]
            if bad:
                raise UserError(f"{where}: label id {bad[0]} out of range [0, {num_classes}) "
                                f"(MODEL.num_classes={num_classes})")
        else:
            path, labels = split_labels(text)[0], []
        if not path.strip():
            raise UserError(f"{where}: no file path on this line")
        if check_files and not exists(path):
            raise UserError(f"{where}: file not found: {path}")
        entries.append(Entry(path, labels, number))
    if not entries:
        raise UserError(f"list file {list_path} has no entries")
    return entries


RELEASE_LABELS_HINT = ("the release label file label_3396.txt (PaddleVideo, applications/VideoTag) comes "
                       "with ./run fetch (or python tools/fetch_release.py), into the project root; or pass "
                       "--label_file")


def read_label_file(path, num_classes):
    """Class names of a UTF-8 label file (line index = class id). Returns ``num_classes`` names."""
    if os.path.isdir(path):
        raise UserError(f"label file {path} is a directory: pass the file, e.g. {os.path.join(path, 'label_3396.txt')}")
    if not os.path.isfile(path):
        raise UserError(f"label file not found: {path} ({RELEASE_LABELS_HINT})")
    names = [text.strip() for _, text in _all_lines(path)]
    if len(names) < num_classes:
        raise UserError(f"label file {path} has {len(names)} lines, fewer than MODEL.num_classes="
                        f"{num_classes} ({RELEASE_LABELS_HINT})")
    return names[:num_classes]


def _all_lines(path):
    """Every line, blank ones included (a label file's line index is the class id)."""
    lines = list(read_lines(path, keep_blank=True))
    while lines and not lines[-1][1].strip():
        lines.pop()  # a trailing newline is not a class
    return lines


STEM_BYTES = 180  # of a file stem before its hash: a name, its suffix and a temporary ".tmp<pid>" fit in 255 bytes
HASH_DIGITS = 16  # 64 bits: among 10 million videos, a shared name is about as likely as 1 in 370,000


def output_stem(path, digest=None):
    """``<stem>_<16 hex digits of sha1(real path)>``: the name of what a run writes for the input ``path``
    (features, a frames folder). The same input always maps to the same name; different inputs (e.g.
    ``a/clip.mp4`` and ``b/clip.mp4``, in one list or across runs) share one only if 64 bits of their
    hashes do, which the feature store checks (``feature_store``).

    The stem is the file name without its extension, made safe for every list and file system: bytes that
    are not UTF-8 (a name from ``os.listdir`` of a folder made on Windows in GBK) and control characters
    (TAB, newline) become ``_``, and a stem longer than ``STEM_BYTES`` bytes in UTF-8 is cut on a character
    boundary, so that ``<stem>_<hash>.json.tmp<pid>`` stays below the 255 bytes of a name on every common file
    system. ``digest``: the hex sha1 of the real path when the caller has it (``path_digest``)."""
    name = path[path.rfind(os.sep) + 1:]  # os.path.basename
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 and name[0] != "." else os.path.splitext(name)[0]  # splitext, fast
    if not stem.isprintable():  # every character _UNSAFE_IN_STEM matches is unprintable
        stem = _UNSAFE_IN_STEM.sub("_", stem)
    if len(stem) * 4 > STEM_BYTES and len(stem.encode("utf-8")) > STEM_BYTES:
        stem = stem.encode("utf-8")[:STEM_BYTES].decode("utf-8", "ignore")
    return f"{stem}_{(digest or path_digest(os.path.realpath(path)))[:HASH_DIGITS]}"


_UNSAFE_IN_STEM = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


def path_digest(real_path):
    """The hex sha1 of a real path's bytes (as the file system holds them, also when they are not UTF-8)."""
    return hashlib.sha1(real_path.encode(FS_ENCODING, FS_ERRORS)).hexdigest()  # os.fsencode, without its call


FS_ENCODING, FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
