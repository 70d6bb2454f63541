"""Evaluation metrics as small numpy accumulators: ``update()`` per batch, ``compute()`` at the end.

``MultiLabelMetrics`` gives the YouTube-8M figures VideoTag prints for the AttentionLSTM (Hit@1, PERR,
GAP@20); ``TopkAccuracy`` gives top-1 / top-5 accuracy for TSN. Both keep per-video arrays, never
per-batch averages, so ``compute()`` returns global figures over every video seen. In multi-process
evaluation each rank accumulates its own videos, the ``state()`` dicts are gathered (e.g. with
``paddle.distributed.all_gather_object``) and ``merge()``-d into one accumulator on rank 0, which then
calls ``compute()`` once. The result does not depend on the order of ranks or batches.
``PerClassAP`` gives each class's average precision over all videos (``eval.py --per_class``): exact
(scikit-learn's) while every score fits a memory budget, beyond it from score histograms whose size does
not grow with the number of videos.

Ties are broken deterministically: within a video, equal scores rank by class index (lower first, as
``numpy.argmax`` does); across videos, see the GAP note in ``MultiLabelMetrics``.
"""
import math

import numpy as np


def _rank_of_each_class(scores):
    """Column order of ``scores [B, C]`` by descending score, ties by lower class index. Returns [B, C]."""
    return np.argsort(-scores, axis=1, kind="stable")


def _check_losses(losses, batch):
    if losses is None:
        return None
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if losses.shape != (batch,):
        raise ValueError(f"losses must have shape [{batch}], got {losses.shape}")
    return losses


def _mean(values, empty):
    """Mean with an exactly rounded sum (math.fsum), so merging parts in any order gives the same float."""
    return math.fsum(values) / len(values) if len(values) else empty


class MultiLabelMetrics:
    """Hit@1, PERR and GAP@top_k over multi-label predictions (YouTube-8M definitions).

    Per video this keeps O(top_k) numbers: its top-k scores with their is-true flags, its number of true
    labels, its hit@1 and PERR, and its loss if given. ``compute()`` returns plain Python numbers::

        {"hit_at_one": float, "perr": float, "gap": float,
         "loss": float or None,   # mean per-video loss over the videos whose update() passed losses;
                                  # None when no update() passed any
         "num_videos": int}

    Definitions (B videos per batch, C classes):

    - Hit@1: fraction of videos whose top-scored class is a true label.
    - PERR: per video with k true labels, the fraction of its top-k classes that are true *and* score
      > 0; a video without true labels counts 0. Mean over videos.
    - GAP: pool the top-k (score, is_true) pairs of every video and sort them by score, descending;
      ``sum over true items at 1-based position i of (true items up to i) / i``, divided by the total
      number of true labels of all videos (including those outside any top-k). 0 if there are none.
      This is YouTube-8M's ``ap_at_n(n=None, total_num_positives=...)`` over ``top_k_by_class``, except
      for ties: YouTube-8M shuffles randomly, here among equal scores false items come first (the
      pessimistic choice), so the figure is reproducible and independent of the order videos arrive in.
    """

    main = "gap"  # the figure that picks the best checkpoint

    def __init__(self, num_classes, top_k=20):
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self._parts = []  # one state dict per update() / merge()

    def update(self, probabilities, labels, losses=None):
        """Add a batch.

        probabilities: [B, C] float scores (sigmoid outputs). labels: [B, C] multi-hot, nonzero = true.
        losses: [B] per-video loss (sigmoid cross-entropy summed over classes), or None.
        """
        scores = np.asarray(probabilities, dtype=np.float64)
        truth = np.asarray(labels) != 0
        if scores.ndim != 2 or scores.shape[1] != self.num_classes or truth.shape != scores.shape:
            raise ValueError(f"expected probabilities and labels of shape [B, {self.num_classes}], "
                             f"got {scores.shape} and {truth.shape}")
        batch = scores.shape[0]
        losses = _check_losses(losses, batch)

        order = _rank_of_each_class(scores)
        sorted_scores = np.take_along_axis(scores, order, axis=1)
        sorted_truth = np.take_along_axis(truth, order, axis=1)
        num_true = truth.sum(axis=1)
        # PERR: true and positive-scored hits among the first num_true ranked classes.
        hits_so_far = np.cumsum(sorted_truth & (sorted_scores > 0), axis=1)
        at_k = hits_so_far[np.arange(batch), np.maximum(num_true - 1, 0)]
        perr = np.where(num_true > 0, at_k / np.maximum(num_true, 1), 0.0)
        self._parts.append({
            "top_scores": sorted_scores[:, :self.top_k],  # [B, top_k]
            "top_true": sorted_truth[:, :self.top_k],     # [B, top_k] bool
            "num_true": num_true.astype(np.int64),        # [B]
            "hit": sorted_truth[:, 0].astype(np.float64),  # [B]
            "perr": perr,                                  # [B]
            "losses": np.zeros(0) if losses is None else losses,  # [B] or [0]
        })

    def state(self):
        """Everything seen so far as a dict of numpy arrays (small: O(videos * top_k)), for gathering."""
        if not self._parts:
            k = self.top_k
            return {"top_scores": np.zeros((0, k)), "top_true": np.zeros((0, k), bool),
                    "num_true": np.zeros(0, np.int64), "hit": np.zeros(0), "perr": np.zeros(0),
                    "losses": np.zeros(0)}
        state = {key: np.concatenate([p[key] for p in self._parts]) for key in self._parts[0]}
        self._parts = [state]
        return state

    def merge(self, other):
        """Add the videos of another accumulator or of its ``state()`` dict (e.g. gathered from a rank)."""
        state = other.state() if isinstance(other, MultiLabelMetrics) else other
        if state["top_scores"].shape[1] != self.top_k:
            raise ValueError(f"cannot merge top_k={state['top_scores'].shape[1]} into top_k={self.top_k}")
        self._parts.append({key: np.asarray(value) for key, value in state.items()})

    def compute(self):
        """Global figures over every video seen (see the class docstring for keys and definitions)."""
        s = self.state()
        n = len(s["hit"])
        return {
            "hit_at_one": _mean(s["hit"], 0.0),
            "perr": _mean(s["perr"], 0.0),
            "gap": gap(s["top_scores"], s["top_true"], int(s["num_true"].sum())),
            "loss": _mean(s["losses"], None),
            "num_videos": n,
        }


def gap(top_scores, top_true, total_true):
    """Global average precision of pooled top-k predictions.

    top_scores: [N, k] scores of each video's top-k classes; top_true: [N, k] whether each is a true label;
    total_true: number of true labels over all N videos (also those outside the top-k). Among equal
    scores, false items sort before true ones. Returns a float, 0.0 when total_true is 0.
    """
    if total_true <= 0:
        return 0.0
    scores = np.asarray(top_scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(top_true, dtype=bool).reshape(-1)
    order = np.lexsort((truth, -scores))  # primary: score descending; then false before true
    truth = truth[order]
    positions = np.flatnonzero(truth) + 1  # 1-based positions of the true items
    return float(np.sum(np.arange(1, len(positions) + 1) / positions) / total_true)


def batch_metrics(probabilities, labels, top_k=20):
    """Hit@1, PERR and GAP of one batch alone (for log lines; never average these over batches).

    probabilities, labels: [B, C] as in ``MultiLabelMetrics.update``.
    Returns ``{"hit_at_one", "perr", "gap", "num_videos"}``.
    """
    metrics = MultiLabelMetrics(np.shape(probabilities)[1], top_k)
    metrics.update(probabilities, labels)
    result = metrics.compute()
    del result["loss"]
    return result


class TopkAccuracy:
    """Top-k accuracy for single-label classification (TSN).

    A video counts as correct at k if its label is among its k highest-scored classes, equal scores
    ranked by class index (lower first); with fewer than k classes every video is correct.
    ``compute()`` returns ``{"top1_acc": float, "top5_acc": float, ..., "loss": float or None,
    "num_videos": int}`` (one ``top{k}_acc`` per entry of ``topk``; loss as in ``MultiLabelMetrics``).
    """

    main = "top1_acc"

    def __init__(self, topk=(1, 5)):
        self.topk = tuple(int(k) for k in topk)
        self._ranks = []   # per batch: [B] 0-based rank of the true label
        self._losses = []  # per batch: [B] or [0]

    def update(self, probabilities, labels, losses=None):
        """Add a batch. probabilities: [B, C] scores; labels: [B] int class ids; losses: [B] or None."""
        scores = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if scores.ndim != 2 or labels.shape != (scores.shape[0],):
            raise ValueError(f"expected probabilities [B, C] and labels [B], "
                             f"got {scores.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
            raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got {labels.min()}..{labels.max()}")
        losses = _check_losses(losses, len(labels))
        mine = scores[np.arange(len(labels)), labels][:, None]
        before = np.arange(scores.shape[1])[None, :] < labels[:, None]
        self._ranks.append(np.sum((scores > mine) | ((scores == mine) & before), axis=1))
        self._losses.append(np.zeros(0) if losses is None else losses)

    def state(self):
        """``{"ranks": [N] int, "losses": [N] or [0] float}``, for gathering across processes."""
        state = {"ranks": np.concatenate(self._ranks or [np.zeros(0, np.int64)]),
                 "losses": np.concatenate(self._losses or [np.zeros(0)])}
        self._ranks, self._losses = [state["ranks"]], [state["losses"]]
        return state

    def merge(self, other):
        """Add the videos of another accumulator or of its ``state()`` dict."""
        state = other.state() if isinstance(other, TopkAccuracy) else other
        self._ranks.append(np.asarray(state["ranks"]))
        self._losses.append(np.asarray(state["losses"]))

    def compute(self):
        s = self.state()
        n = len(s["ranks"])
        result = {f"top{k}_acc": _mean(s["ranks"] < k, 0.0) for k in self.topk}
        result["loss"] = _mean(s["losses"], None)
        result["num_videos"] = n
        return result



class PerClassAP:
    """Average precision of each class over all videos, for ``eval.py --per_class``: which tags fail.

    For class c, the videos are ranked by their score for c (highest first); its positives are the
    videos that have c among their labels. With P positives, ``AP_c = (1/P) * sum over positives of the
    precision at the score threshold that first admits them``. A class without positives has no AP
    (NaN; per_class.csv leaves it empty, and the mean AP leaves it out: scikit-learn gives such a class
    0 with a warning). TSN: the same over its softmax probabilities, the videos of a class being its
    positives.

    Exact while the scores fit ``memory_mb``: every score is kept ([N, C], as given, float32 or float64,
    plus the labels, C * 5 bytes per video for float32) and the AP is scikit-learn's
    ``average_precision_score`` (videos of equal score form one threshold: each of their positives gets
    the precision of the whole group; NaN scores rank lowest). Past the budget (``exact`` turns False)
    the kept scores are dropped and the AP comes from score bins, whose memory does not grow with the
    number of videos (every score of 1M videos x 3396 classes would be 13 GB in float32): the bins are
    ``bins`` equal steps of the logit ``log(p / (1 - p))`` over [-logit_range, logit_range] (beyond it:
    the end bins; NaN: the lowest bin), by default steps of 1/64, so two probabilities share a bin only
    when their odds differ by less than 1.6%. Videos ranked by bin, the negatives of a bin before its
    positives (the pessimistic order, as for GAP), the AP above is exact on scores in different bins.
    Two count arrays [C, bins] int32 cost 56 MB for 3396 classes, whatever the number of videos;
    ``state()`` holds their nonzero entries only (and the kept scores), for gathering across processes.
    """

    def __init__(self, num_classes, bins=2048, logit_range=16.0, memory_mb=512):
        self.num_classes, self.bins, self.logit_range = int(num_classes), int(bins), float(logit_range)
        self.memory_bytes = int(float(memory_mb) * 2 ** 20)
        self._all = np.zeros((self.num_classes, self.bins), np.int32)       # videos per (class, bin)
        self._positive = np.zeros((self.num_classes, self.bins), np.int32)  # positives per (class, bin)
        self._scores, self._truth = [], []  # [B, C] scores and bool labels per part, while ``exact``
        self._kept_bytes = 0
        self.exact = True

    def bin_of(self, probabilities):
        """Bin index [B, C] int64 of probabilities [B, C] (see the class docstring)."""
        p = np.asarray(probabilities, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logit = np.log(p) - np.log1p(-p)
        logit = np.clip(np.nan_to_num(logit, nan=-np.inf), -self.logit_range, self.logit_range)
        index = np.floor((logit + self.logit_range) * (self.bins / (2 * self.logit_range)))
        return np.minimum(index.astype(np.int64), self.bins - 1)

    def num_videos(self):
        """Videos seen (merged ones included)."""
        return int(self._all[0].sum()) if self.num_classes else 0

    def update(self, probabilities, labels, losses=None):
        """Add a batch. probabilities: [B, C] scores in [0, 1]; labels: [B, C] multi-hot (nonzero = true)
        or [B] class ids. ``losses`` is ignored (accepted for the same call as the other metrics)."""
        probabilities = np.asarray(probabilities)
        labels = np.asarray(labels)
        if labels.ndim == 1 and probabilities.ndim == 2:
            labels = np.eye(probabilities.shape[1], dtype=bool)[labels.astype(np.int64)]
        if probabilities.ndim != 2 or probabilities.shape[1] != self.num_classes or labels.shape != probabilities.shape:
            raise ValueError(f"expected probabilities and labels of shape [B, {self.num_classes}] (or labels "
                             f"[B]), got {probabilities.shape} and {labels.shape}")
        flat = self.bin_of(probabilities) + np.arange(self.num_classes) * self.bins  # [B, C] into [C * bins]
        # np.add.at is fast only when the added value has the array's dtype.
        np.add.at(self._all.reshape(-1), flat.reshape(-1), np.int32(1))
        np.add.at(self._positive.reshape(-1), flat[labels != 0], np.int32(1))
        if self.exact:
            self._keep(probabilities.astype(np.float32 if probabilities.dtype == np.float32 else np.float64),
                       labels != 0)

    def _keep(self, scores, truth):
        """Keep ``scores`` and ``truth`` [B, C] for the exact AP while they fit the budget."""
        if not self.exact:
            return
        self._kept_bytes += scores.nbytes + truth.nbytes
        if self._kept_bytes > self.memory_bytes:
            self.exact, self._scores, self._truth = False, [], []
            return
        self._scores.append(scores)
        self._truth.append(truth)

    def state(self):
        """``{"all_index", "all_count", "positive_index", "positive_count"}``: the nonzero entries of
        the two count arrays (flat indices into [C * bins], int64), for gathering across processes;
        while ``exact``, also ``"scores"`` [N, C] and ``"truth"`` [N, C] bool."""
        state = {}
        for name, counts in (("all", self._all), ("positive", self._positive)):
            index = np.flatnonzero(counts)
            state[f"{name}_index"], state[f"{name}_count"] = index, counts.reshape(-1)[index].astype(np.int64)
        if self.exact:
            scores, truth = self._kept()
            self._scores, self._truth = [scores], [truth]
            state["scores"], state["truth"] = scores, truth
        return state

    def _kept(self):
        if not self._scores:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, self.num_classes), bool)
        dtype = np.result_type(*self._scores)
        return np.concatenate(self._scores).astype(dtype, copy=False), np.concatenate(self._truth)

    def merge(self, other):
        """Add the videos of another accumulator or of its ``state()`` dict. The result is exact while
        both are and their scores together fit this one's budget."""
        state = other.state() if isinstance(other, PerClassAP) else other
        for name, counts in (("all", self._all), ("positive", self._positive)):
            np.add.at(counts.reshape(-1), np.asarray(state[f"{name}_index"], np.int64),
                      np.asarray(state[f"{name}_count"]).astype(np.int32))
        if "scores" not in state:
            self.exact, self._scores, self._truth = False, [], []
        else:
            self._keep(np.asarray(state["scores"]), np.asarray(state["truth"], bool))

    def compute(self):
        """``{"ap": [C] float64, NaN for a class without positives, "positives": [C] int64}``; exact
        (scikit-learn's AP) while ``self.exact``, else from the score bins."""
        totals = self._positive.sum(axis=1).astype(np.int64)
        if self.exact:
            return {"ap": exact_average_precision(*self._kept()), "positives": totals}
        positive = self._positive[:, ::-1].astype(np.int64)  # bins from the highest score down
        everything = self._all[:, ::-1].astype(np.int64)
        positives_before = np.cumsum(positive, axis=1) - positive     # in higher bins
        ranked_before = np.cumsum(everything, axis=1) - positive      # higher bins + this bin's negatives
        rows, cols = np.nonzero(positive)
        count = positive[rows, cols]
        # The j-th positive (j = 1..count) of bin (row, col) is at rank ranked_before + j with
        # positives_before + j positives up to it.
        owner = np.repeat(np.arange(len(count)), count)
        j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count) + 1
        precision = (positives_before[rows, cols][owner] + j) / (ranked_before[rows, cols][owner] + j)
        sums = np.bincount(rows[owner], weights=precision, minlength=self.num_classes)
        ap = np.where(totals > 0, sums / np.maximum(totals, 1), np.nan)
        return {"ap": ap, "positives": totals}


def exact_average_precision(scores, truth, classes=64):
    """scikit-learn's ``average_precision_score`` of each class: scores, truth [N, C] (truth bool).

    Per class, videos by descending score; a group of equal scores is one threshold whose precision
    (true ones down to the group's end / videos down to it) counts once per positive in the group; the
    sum over positives divided by their number. NaN scores rank lowest. Returns [C] float64, NaN for a
    class without positives. Works on ``classes`` classes at a time (temporaries [classes, N])."""
    scores, truth = np.asarray(scores), np.asarray(truth, bool)
    n, c = scores.shape
    ap = np.full(c, np.nan)
    rank = np.arange(1, n + 1)
    for first in range(0, c, classes):
        # One row per class (contiguous: sorting along rows is several times faster than down columns).
        s = np.nan_to_num(np.ascontiguousarray(scores[:, first:first + classes].T, np.float64), nan=-np.inf)
        t = np.ascontiguousarray(truth[:, first:first + classes].T)
        order = np.argsort(-s, axis=1, kind="stable")
        s, t = np.take_along_axis(s, order, axis=1), np.take_along_axis(t, order, axis=1)
        true_so_far = np.cumsum(t, axis=1)
        ends = np.ones_like(t)
        ends[:, :-1] = s[:, :-1] != s[:, 1:]  # the last video of each group of equal scores
        # The end of each video's group: the first end at or after it.
        end = np.where(ends, np.arange(n), n - 1)
        end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
        precision = np.take_along_axis(true_so_far, end, axis=1) / rank[end]
        positives = t.sum(axis=1)
        sums = np.where(t, precision, 0.0).sum(axis=1)
        ap[first:first + classes] = np.where(positives > 0, sums / np.maximum(positives, 1), np.nan)
    return ap


def worst_first(ap, positives):
    """Class ids ordered for reading failures first: by AP ascending (ties by class id), then the
    classes without positives (AP NaN) by class id. ap, positives: [C]. Returns [C] int64."""
    ap = np.asarray(ap, dtype=np.float64)
    has_ap = ~np.isnan(ap)
    return np.lexsort((np.arange(len(ap)), np.where(has_ap, ap, 0.0), ~has_ap))
