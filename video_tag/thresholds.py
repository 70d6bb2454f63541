"""Thresholds per tag: chosen by ``eval.py --calibrate`` on a labelled list, applied by ``predict.py`` and
``videotag.py --thresholds``.

``thresholds.csv`` (one row per class, in class id order, after a header)::

    class_id,class_name,threshold,precision,recall,positives,source
    0,训练,0.4172,0.9,0.75,12,best_f1
    1,舞蹈,0.5,,,3,default_few_positives

A tag is kept where its probability is at or above its own threshold. ``precision`` and ``recall`` are
those of "probability >= threshold" on the evaluated list (empty where undefined: no video above the
threshold, or no positive). ``source`` says how the threshold was chosen:

- ``best_f1``: the threshold with the highest F1 (ties: the highest such threshold);
- ``target_precision``: with ``--target_precision P``, the lowest threshold whose precision is >= P
  (the most recall at that precision);
- ``default_few_positives``: the class has fewer than ``min_positives`` positives in the list: the global
  default (``--threshold``), as a threshold from so few videos would be noise;
- ``default_target_not_reached``: no threshold reaches ``--target_precision``: the global default.

The candidate thresholds are the class's own scores on the list (exact), or, when ``eval.py`` kept score
bins instead of every score (``--per_class_memory_mb``), the lower edges of the bins.
"""
import csv
import io
import math
import os

import numpy as np

from . import files
from .errors import UserError
from .readers.lists import read_lines

HEADER = ["class_id", "class_name", "threshold", "precision", "recall", "positives", "source"]
MIN_POSITIVES = 5


def choose(thresholds, positive, total, target_precision=None, min_positives=MIN_POSITIVES, default=0.5):
    """The threshold of one class from its candidates.

    thresholds: [K] candidate thresholds in descending order; positive, total: [K] the class's positives
    and all videos whose score is at that candidate (i.e. at or above it and below the one before).
    Returns ``(threshold, precision or None, recall or None, positives, source)`` (sources: module docstring).
    """
    thresholds = np.asarray(thresholds, np.float64)
    true_above = np.cumsum(np.asarray(positive, np.int64))   # [K] positives with score >= thresholds[k]
    kept = np.cumsum(np.asarray(total, np.int64))            # [K] videos with score >= thresholds[k]
    positives = int(true_above[-1]) if len(true_above) else 0
    precision = true_above / np.maximum(kept, 1)
    recall = true_above / max(positives, 1)
    pick, source = None, "default_few_positives"
    if positives >= max(min_positives, 1):
        if target_precision is None:
            f1 = np.where(true_above > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
            pick, source = int(np.argmax(f1)), "best_f1"  # argmax: the first, i.e. the highest threshold
        else:
            reaching = np.flatnonzero((precision >= target_precision) & (true_above > 0))
            pick, source = (int(reaching[-1]), "target_precision") if len(reaching) else (None, "default_target_not_reached")
    if pick is not None:
        return float(thresholds[pick]), float(precision[pick]), float(recall[pick]), positives, source
    at = np.flatnonzero(thresholds >= default)  # figures of the default threshold on the same list
    n_kept, n_true = (int(kept[at[-1]]), int(true_above[at[-1]])) if len(at) else (0, 0)
    return (float(default), n_true / n_kept if n_kept else None, n_true / positives if positives else None,
            positives, source)


def from_scores(scores, truth, **options):
    """``choose`` for every class from every score: scores, truth [N, C]. Returns a list of C tuples."""
    scores, truth = np.asarray(scores), np.asarray(truth, bool)
    rows = []
    for c in range(scores.shape[1]):
        values, inverse = np.unique(np.nan_to_num(scores[:, c], nan=-np.inf), return_inverse=True)
        inverse = inverse.reshape(-1)
        total = np.bincount(inverse, minlength=len(values))[::-1]
        positive = np.bincount(inverse, weights=truth[:, c], minlength=len(values))[::-1]
        rows.append(choose(np.maximum(values[::-1], 0.0), positive, total, **options))
    return rows


def from_per_class_ap(accumulator, **options):
    """``choose`` for every class from a ``metrics.PerClassAP`` (what ``eval.py`` collects): its scores
    while it kept them all, else its score bins (candidates: each bin's lower edge, as a probability)."""
    state = accumulator.state()
    if "scores" in state:
        return from_scores(state["scores"], state["truth"], **options)
    c, bins, r = accumulator.num_classes, accumulator.bins, accumulator.logit_range
    counts = {}
    for name in ("all", "positive"):
        flat = np.zeros(c * bins, np.int64)
        flat[np.asarray(state[f"{name}_index"], np.int64)] = state[f"{name}_count"]
        counts[name] = flat.reshape(c, bins)[:, ::-1]  # highest bin first
    logit = -r + np.arange(bins) * (2 * r / bins)
    # lowered by a hair: a score binned by rounding into bin b must not fall below b's threshold
    edges = np.maximum(1 / (1 + np.exp(-logit)) - 1e-9, 0.0)
    edges[0] = 0.0  # the lowest bin also holds everything below -logit_range
    return [choose(edges[::-1], counts["positive"][k], counts["all"][k], **options) for k in range(c)]


def write_thresholds(path, rows, names):
    """``thresholds.csv`` (module docstring) from ``choose``'s tuples, one per class, and the class names."""
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(HEADER)
    for c, (threshold, precision, recall, positives, source) in enumerate(rows):
        out.writerow([c, names[c], repr(threshold), "" if precision is None else repr(precision),
                      "" if recall is None else repr(recall), positives, source])
    files.write_text(path, text.getvalue())


def read_thresholds(path, names):
    """The thresholds [C] (a list of floats) of ``thresholds.csv`` made for the classes ``names``.

    Refused (``UserError`` naming the file, and the line): a file for another label set (other class
    count or names), a threshold outside [0, 1], a malformed line.
    """
    if not os.path.isfile(path):
        raise UserError(f"thresholds file not found: {path} (eval.py --calibrate writes thresholds.csv)")
    lines = list(read_lines(path))  # UserError on an unreadable file or a line not UTF-8
    if not lines or next(csv.reader([lines[0][1]]))[:3] != HEADER[:3]:
        raise UserError(f"{path}: not a thresholds file: its first line must be the header "
                        f"{','.join(HEADER)} (eval.py --calibrate writes it)")
    if len(lines) - 1 != len(names):
        raise UserError(f"thresholds file {path} has {len(lines) - 1} classes, the label file {len(names)}: "
                        f"it was made for another label set (run eval.py --calibrate again)")
    thresholds = []
    for c, (number, text) in enumerate(lines[1:]):
        fields = next(csv.reader([text]), [])
        if len(fields) < 3:
            raise UserError(f"{path}:{number}: expected class_id,class_name,threshold,..., got {text.strip()!r}")
        if fields[0].strip() != str(c):
            raise UserError(f"{path}:{number}: class id {fields[0].strip()!r} where {c} was expected "
                            f"(one row per class, in class id order)")
        if fields[1].strip() != names[c]:
            raise UserError(f"{path}:{number}: class {c} is {fields[1].strip()!r} here, {names[c]!r} in the label "
                            f"file: it was made for another label set (run eval.py --calibrate again)")
        try:
            value = float(fields[2])
        except ValueError:
            raise UserError(f"{path}:{number}: threshold {fields[2]!r} is not a number") from None
        if not 0.0 <= value <= 1.0:  # also NaN
            raise UserError(f"{path}:{number}: threshold {fields[2]} is outside [0, 1]")
        thresholds.append(value)
    return thresholds


def keep_tags(tags, threshold):
    """The tags (``predict.top_tags`` dicts) at or above ``threshold``: one probability for every class
    (a number), or one per class (a sequence indexed by class id)."""
    if isinstance(threshold, (int, float)):
        return [t for t in tags if t["probability"] >= threshold]
    return [t for t in tags if t["probability"] >= threshold[t["class_id"]]]


def combine(threshold, per_class):
    """``--threshold`` and ``--thresholds`` together: per class the higher of the two (a tag passes both);
    ``per_class`` None: the global threshold alone."""
    if per_class is None:
        return threshold
    return [max(float(threshold), t) for t in per_class]


def is_probability(value):
    """A finite number in [0, 1] (for the flags ``--threshold`` and ``--target_precision``)."""
    return isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0
