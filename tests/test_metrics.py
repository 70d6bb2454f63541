import numpy as np
import pytest

from video_tag.metrics import MultiLabelMetrics, PerClassAP, TopkAccuracy, batch_metrics, gap, worst_first

# Four videos, four classes; worked with top_k=2.
#   A: top-2 = c0 (0.9, T), c1 (0.65, F); 2 true labels (c2 at 0.1 falls outside the top-2)
#   B: top-2 = c1 (0.7, T), c2 (0.6, F); 1 true label
#   C: top-2 = c3 (0.95, F), c0 (0.5, F); no true labels
#   D: top-2 = c3 (0.6, T), c0 (0.0, T); 2 true labels, c0 scores 0 so PERR does not count it
SCORES = np.array([
    [0.9, 0.65, 0.1, 0.0],   # A
    [0.2, 0.7, 0.6, 0.3],    # B
    [0.5, 0.4, 0.3, 0.95],   # C
    [0.0, 0.0, 0.0, 0.6],    # D
], dtype=np.float32)
LABELS = np.array([
    [1, 0, 1, 0],
    [0, 1, 0, 0],
    [0, 0, 0, 0],
    [1, 0, 0, 1],
])
LOSSES = np.array([1.0, 2.0, 3.0, 6.0])
# Hit@1: A yes, B yes, C no, D yes -> 3/4.
# PERR:  A 1/2 (top-2: T, F), B 1/1, C 0 (no labels), D 1/2 (c0 is true but scores 0) -> 2/4 = 0.5.
# GAP@2: pooled and sorted, the tie at 0.6 puts B's false item before D's true one:
#   0.95 F, 0.9 T, 0.7 T, 0.65 F, 0.6 F, 0.6 T, 0.5 F, 0.0 T   -> true at positions 2, 3, 6, 8
#   (1/2 + 2/3 + 3/6 + 4/8) / 5 true labels = (13/6) / 5 = 13/30
EXPECTED = {"hit_at_one": 0.75, "perr": 0.5, "gap": 13 / 30, "loss": 3.0, "num_videos": 4}


def check(result, expected):
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
        assert type(result[key]) is type(value), key


def test_hand_worked_example():
    m = MultiLabelMetrics(num_classes=4, top_k=2)
    m.update(SCORES, LABELS, LOSSES)
    check(m.compute(), EXPECTED)


def test_several_updates_and_merges_equal_one_update():
    m = MultiLabelMetrics(4, top_k=2)
    m.update(SCORES[:1], LABELS[:1], LOSSES[:1])
    m.update(SCORES[1:3], LABELS[1:3], LOSSES[1:3])
    m.compute()  # computing in between changes nothing
    other = MultiLabelMetrics(4, top_k=2)
    other.update(SCORES[3:], LABELS[3:], LOSSES[3:])
    m.merge(other.state())
    check(m.compute(), EXPECTED)


def test_gap_does_not_depend_on_video_order():
    for order in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        m = MultiLabelMetrics(4, top_k=2)
        m.update(SCORES[order], LABELS[order], LOSSES[order])
        check(m.compute(), EXPECTED)
    # Random data with many ties, split across "ranks" and merged in different orders.
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(40, 10)) / 4
    labels = rng.random((40, 10)) < 0.3
    ranks = []
    for part in np.array_split(np.arange(40), 4):
        r = MultiLabelMetrics(10, top_k=3)
        r.update(scores[part], labels[part])
        ranks.append(r.state())
    results = []
    for perm in ([0, 1, 2, 3], [3, 1, 0, 2]):
        m = MultiLabelMetrics(10, top_k=3)
        for i in perm:
            m.merge(ranks[i])
        results.append(m.compute())
    assert results[0] == results[1]


def test_no_losses_gives_none():
    m = MultiLabelMetrics(4, top_k=2)
    m.update(SCORES, LABELS)
    assert m.compute()["loss"] is None
    assert batch_metrics(SCORES, LABELS, top_k=2) == {k: v for k, v in m.compute().items() if k != "loss"}


def test_video_without_positives():
    # Alone it has hit 0, PERR 0 and there are no positives at all -> GAP 0.
    check(batch_metrics(SCORES[2:3], LABELS[2:3], top_k=2),
          {"hit_at_one": 0.0, "perr": 0.0, "gap": 0.0, "num_videos": 1})


def test_more_than_20_positives_count_in_gap_denominator():
    # 30 classes, all true, scores 1.0 > 0.99 > ... > 0.71: the top-20 are all true, each at precision 1,
    # so GAP = 20 / 30 true labels; PERR takes the top-30 = all true and > 0 -> 1.
    scores = np.linspace(1.0, 0.71, 30)[None, :]
    labels = np.ones((1, 30))
    check(batch_metrics(scores, labels),
          {"hit_at_one": 1.0, "perr": 1.0, "gap": 2 / 3, "num_videos": 1})


def test_hit_at_one_ties_go_to_lower_class_index():
    scores = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    labels = np.array([[0, 1, 0], [1, 0, 0]])
    # Both videos pick class 0 (as numpy.argmax does): the first misses, the second hits.
    assert batch_metrics(scores, labels)["hit_at_one"] == 0.5


def test_gap_function_ties_false_first():
    # (0.5, T) and (0.5, F) tie: F first, so T sits at position 2 -> AP = 1/2 over 1 true label.
    assert gap([[0.5], [0.5]], [[True], [False]], 1) == 0.5
    assert gap([[0.5]], [[False]], 0) == 0.0


def youtube8m_reference(predictions, actuals, top_k):
    """Straight transcription of YouTube-8M eval_util / average_precision_calculator (no ties in data)."""
    pooled, total_positives, hits, perrs = [], 0, [], []
    for scores, truth in zip(predictions, actuals):
        total_positives += int(sum(truth))
        ranked = sorted(range(len(scores)), key=lambda c: scores[c], reverse=True)
        for c in ranked[:top_k]:
            pooled.append((scores[c], truth[c]))
        hits.append(truth[ranked[0]])
        k = int(sum(truth))
        perrs.append(sum(truth[c] for c in ranked[:k] if scores[c] > 0) / k if k else 0.0)
    pooled.sort(key=lambda item: item[0], reverse=True)
    ap, positives = 0.0, 0
    for i, (_, is_true) in enumerate(pooled):
        if is_true:
            positives += 1
            ap += positives / (i + 1) / total_positives
    return {"hit_at_one": np.mean(hits), "perr": np.mean(perrs), "gap": ap if total_positives else 0.0}


@pytest.mark.parametrize("num_classes,top_k,density", [(30, 20, 0.3), (50, 5, 0.1), (8, 20, 0.5)])
def test_against_youtube8m_reference(num_classes, top_k, density):
    rng = np.random.default_rng(num_classes)
    scores = rng.random((64, num_classes)) - 0.2  # some scores <= 0, which PERR ignores
    labels = (rng.random((64, num_classes)) < density).astype(int)
    labels[:3] = 0  # some videos without positives
    m = MultiLabelMetrics(num_classes, top_k)
    for part in np.array_split(np.arange(64), 5):
        m.update(scores[part], labels[part])
    result = m.compute()
    for key, value in youtube8m_reference(scores, labels, top_k).items():
        assert result[key] == pytest.approx(value, rel=1e-12), key


def test_shape_errors():
    m = MultiLabelMetrics(4)
    with pytest.raises(ValueError):
        m.update(SCORES[:, :3], LABELS[:, :3])
    with pytest.raises(ValueError):
        m.update(SCORES, LABELS, LOSSES[:2])


def test_topk_accuracy():
    scores = np.array([
        [0.1, 0.5, 0.2, 0.05, 0.1, 0.05],    # label 1: the top class -> rank 0
        [0.1, 0.5, 0.2, 0.05, 0.1, 0.05],    # label 0: after 0.5, 0.2; ties c4 but comes first -> rank 2
        [0.3, 0.25, 0.2, 0.15, 0.1, 0.0],    # label 5: last -> rank 5
        [1 / 6] * 6,                         # label 3: all tied, c0..c2 come first -> rank 3
    ])
    labels = np.array([1, 0, 5, 3])
    acc = TopkAccuracy()
    acc.update(scores[:2], labels[:2], [0.5, 1.5])
    acc.update(scores[2:], labels[2:], [2.5, 3.5])
    # top-1: rank 0 only -> 1/4; top-5: ranks 0, 2, 3 -> 3/4; loss (0.5+1.5+2.5+3.5)/4 = 2
    check(acc.compute(), {"top1_acc": 0.25, "top5_acc": 0.75, "loss": 2.0, "num_videos": 4})

    merged = TopkAccuracy()
    merged.merge(acc.state())
    assert merged.compute() == acc.compute()


def test_topk_accuracy_few_classes_and_no_losses():
    acc = TopkAccuracy(topk=(1, 5))
    acc.update(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), np.array([0, 0]))
    # 3 classes < 5: top-5 counts all; top-1: only the second video -> 1/2
    check(acc.compute(), {"top1_acc": 0.5, "top5_acc": 1.0, "loss": None, "num_videos": 2})
    with pytest.raises(ValueError):
        acc.update(np.zeros((1, 3)), np.array([3]))


# Per-class AP of SCORES / LABELS, each class's column ranked over the four videos A-D:
#   c0: A .9 T, C .5 F, B .2 F, D 0 T   -> (1/1 + 2/4) / 2 = 3/4
#   c1: B .7 T, ...                      -> 1
#   c2: B .6 F, C .3 F, A .1 T, D 0 F    -> (1/3) / 1 = 1/3
#   c3: C .95 F, D .6 T, ...             -> (1/2) / 1 = 1/2
PER_CLASS_AP = [3 / 4, 1.0, 1 / 3, 1 / 2]


def test_per_class_ap_hand_worked_example():
    m = PerClassAP(4)
    m.update(SCORES, LABELS)
    result = m.compute()
    np.testing.assert_allclose(result["ap"], PER_CLASS_AP, rtol=0, atol=1e-12)
    assert result["positives"].tolist() == [2, 1, 1, 1]
    assert worst_first(**result).tolist() == [2, 3, 0, 1]


def test_per_class_ap_ties_rank_negatives_first_and_classes_without_positives_come_last():
    m = PerClassAP(3)
    # c0: a positive and a negative with one score, then a positive below: (1/2 + 2/3) / 2.
    # c1: no positives. c2: the only video ranked first is a positive: 1.
    m.update([[0.8, 0.5, 0.9], [0.8, 0.5, 0.1], [0.3, 0.5, 0.2]], [[1, 0, 1], [0, 0, 0], [1, 0, 0]])
    result = m.compute()
    assert result["ap"][0] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)
    assert np.isnan(result["ap"][1]) and result["ap"][2] == 1.0
    assert result["positives"].tolist() == [2, 0, 1]
    assert worst_first(**result).tolist() == [0, 2, 1]


def test_per_class_ap_ranks_nan_scores_lowest():
    m = PerClassAP(1)
    m.update([[np.nan], [0.1], [0.0]], [[1], [0], [0]])  # NaN shares the lowest bin with 0.0, after it
    assert m.compute()["ap"].tolist() == [1 / 3]


def exact_average_precision(scores, truth):
    """Textbook AP of one class: videos by descending score, mean precision at each positive."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(truth, bool)[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks)) if len(ranks) else float("nan")


def test_per_class_ap_is_exact_when_scores_are_apart_by_more_than_a_bin():
    # Logits 0.05 apart (bins are 1/64 wide), in [-6, 6]: no two videos share a bin.
    rng = np.random.default_rng(3)
    num_videos, num_classes = 200, 6
    logits = np.stack([rng.permutation(np.linspace(-6, 6, num_videos, endpoint=False) + 0.003)
                       for _ in range(num_classes)], axis=1)
    scores = (1 / (1 + np.exp(-logits))).astype(np.float32)
    labels = rng.random((num_videos, num_classes)) < 0.2
    labels[:, 0] |= logits[:, 0] > 2  # one well-predicted class, one reversed, the others random
    labels[:, 1] |= logits[:, 1] < -2
    m = PerClassAP(num_classes)
    for start in range(0, num_videos, 32):
        m.update(scores[start:start + 32], labels[start:start + 32])
    expected = [exact_average_precision(scores[:, c], labels[:, c]) for c in range(num_classes)]
    np.testing.assert_allclose(m.compute()["ap"], expected, rtol=0, atol=1e-12)
    ap = m.compute()["ap"]
    assert ap[0] > 0.8 > 0.4 > ap[1]  # the fixture spans good and bad classes


def binned_reference(scores, truth, bins=2048, logit_range=16.0):
    """AP from the documented binning, ranked by sorting: the bin of p is
    floor((clip(logit(p), -16, 16) + 16) * 64), the top bin holding logit 16; negatives first in a bin."""
    out = []
    for p, t in zip(np.asarray(scores, np.float64).T, np.asarray(truth, bool).T):
        with np.errstate(divide="ignore"):
            logit = np.clip(np.log(p / (1 - p)), -logit_range, logit_range)
        b = np.minimum(np.floor((logit + logit_range) * bins / (2 * logit_range)), bins - 1)
        hits = t[np.lexsort((t, -b))]
        ranks = np.flatnonzero(hits) + 1
        out.append(np.mean(np.arange(1, len(ranks) + 1) / ranks) if len(ranks) else np.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_ap_against_a_sorting_reference_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    num_videos, num_classes = 300, 7
    # Logits 0, 0.012, 0.020: 0.5 and 0.503 share a bin (1024), 0.505 is in the next one.
    scores = rng.choice([0.0, 0.01, 0.2, 0.5, 0.503, 0.505, 0.9, 1.0], size=(num_videos, num_classes))
    labels = rng.random((num_videos, num_classes)) < np.linspace(0.0, 0.5, num_classes)  # class 0: none
    parts = [PerClassAP(num_classes, memory_mb=0) for _ in range(3)]  # binned: no score kept
    for i, part in enumerate(parts):
        part.update(scores[i::3], labels[i::3])
    total = PerClassAP(num_classes)
    for part in parts[::-1]:
        total.merge(part.state())
    result = total.compute()
    assert not total.exact and "scores" not in parts[0].state()
    np.testing.assert_allclose(result["ap"], binned_reference(scores, labels), rtol=0, atol=1e-12)
    assert np.isnan(result["ap"][0]) and result["positives"].tolist() == labels.sum(axis=0).tolist()


def test_per_class_ap_of_class_ids_equals_one_hot():
    scores = np.array([[0.55, 0.1, 0.35], [0.3, 0.3, 0.4], [0.6, 0.1, 0.3], [0.1, 0.8, 0.1]])
    ids, one_hot = PerClassAP(3), PerClassAP(3)
    ids.update(scores, np.array([0, 2, 2, 1]))
    one_hot.update(scores, np.eye(3)[[0, 2, 2, 1]])
    np.testing.assert_array_equal(ids.compute()["ap"], one_hot.compute()["ap"])
    # c0: v2 .6 F, v0 .55 T -> 1/2; c1: v3 first -> 1; c2: v1 .4 T, v0 .35 F, v2 .3 T -> (1 + 2/3) / 2
    np.testing.assert_allclose(ids.compute()["ap"], [1 / 2, 1.0, (1 + 2 / 3) / 2], rtol=0, atol=1e-12)


def test_per_class_ap_state_holds_only_the_used_bins():
    m = PerClassAP(3396)
    m.update(np.full((4, 3396), 0.5, np.float32), np.eye(3396)[:4])
    state = m.state()
    assert len(state["all_index"]) == 3396 and len(state["positive_index"]) == 4
    with pytest.raises(ValueError, match=r"\[B, 3396\]"):
        m.update(np.zeros((2, 5)), np.zeros((2, 5)))


def sklearn_ap(scores, labels):
    """scikit-learn's average_precision_score per class; NaN for a class without positives."""
    from sklearn.metrics import average_precision_score
    return np.array([average_precision_score(labels[:, c], scores[:, c]) if labels[:, c].any() else np.nan
                     for c in range(labels.shape[1])])


TIED_SCORES = [0.0, 0.01, 0.2, 0.5, 0.503, 0.505, 0.9, 1.0]  # 0.5 and 0.503 share a bin


@pytest.mark.parametrize("seed, dtype", [(0, np.float32), (1, np.float64), (2, np.float32)])
def test_per_class_ap_is_scikit_learns_while_the_scores_fit(seed, dtype):
    rng = np.random.default_rng(seed)
    num_videos, num_classes = 300, 7
    scores = rng.choice(TIED_SCORES, size=(num_videos, num_classes)).astype(dtype)  # many ties
    scores[:, 5] = rng.random(num_videos)  # and a class without any
    labels = rng.random((num_videos, num_classes)) < np.linspace(0.0, 0.5, num_classes)  # class 0: none
    parts = [PerClassAP(num_classes) for _ in range(3)]
    for i, part in enumerate(parts):
        for start in range(i * 100, i * 100 + 100, 32):
            part.update(scores[start:min(start + 32, i * 100 + 100)], labels[start:min(start + 32, i * 100 + 100)])
    total = PerClassAP(num_classes)
    for part in parts[::-1]:  # the order of merging does not matter
        total.merge(part.state())
    result = total.compute()
    assert total.exact
    expected = sklearn_ap(scores, labels)
    np.testing.assert_allclose(result["ap"], expected, rtol=0, atol=1e-12)
    assert np.isnan(result["ap"][0]) and result["positives"].tolist() == labels.sum(axis=0).tolist()
    # ties make it differ from the binned, pessimistic figure: the test tells them apart
    assert np.nanmax(np.abs(binned_reference(scores, labels) - expected)) > 1e-3


def test_per_class_ap_of_class_ids_is_scikit_learns():
    rng = np.random.default_rng(4)
    probabilities = rng.dirichlet(np.ones(4), size=50).round(2)  # softmax outputs, with ties
    ids = rng.integers(0, 4, 50)
    m = PerClassAP(4)
    m.update(probabilities, ids)
    np.testing.assert_allclose(m.compute()["ap"], sklearn_ap(probabilities, np.eye(4, dtype=bool)[ids]),
                               rtol=0, atol=1e-12)


def test_per_class_ap_past_the_memory_budget_is_binned():
    rng = np.random.default_rng(5)
    num_videos, num_classes = 120, 5
    scores = rng.choice(TIED_SCORES, size=(num_videos, num_classes)).astype(np.float32)
    labels = rng.random((num_videos, num_classes)) < 0.3
    per_video = num_classes * (4 + 1)  # float32 score and bool label per class
    m = PerClassAP(num_classes, memory_mb=100 * per_video / 2 ** 20)  # room for 100 videos
    m.update(scores[:100], labels[:100])
    assert m.exact  # exactly at the budget
    np.testing.assert_allclose(m.compute()["ap"], sklearn_ap(scores[:100], labels[:100]), rtol=0, atol=1e-12)
    m.update(scores[100:], labels[100:])
    assert not m.exact and "scores" not in m.state() and m.num_videos() == num_videos
    np.testing.assert_allclose(m.compute()["ap"], binned_reference(scores, labels), rtol=0, atol=1e-12)
    # merging: two exact halves whose scores together pass the budget
    halves = [PerClassAP(num_classes, memory_mb=100 * per_video / 2 ** 20) for _ in range(2)]
    halves[0].update(scores[:60], labels[:60])
    halves[1].update(scores[60:], labels[60:])
    assert halves[0].exact and halves[1].exact
    halves[0].merge(halves[1].state())
    assert not halves[0].exact
    np.testing.assert_allclose(halves[0].compute()["ap"], binned_reference(scores, labels), rtol=0, atol=1e-12)
