"""Thresholds per tag: the threshold of best F1 (or the lowest reaching a target precision) on scores whose
answer is known, checked against a brute-force reference; the default for classes with too few positives;
thresholds.csv written, read back, and refused for another label set, values outside [0, 1] or a bad line."""
import math

import numpy as np
import pytest

from video_tag.errors import UserError
from video_tag.metrics import PerClassAP
from video_tag.thresholds import (combine, from_per_class_ap, from_scores, keep_tags, read_thresholds,
                                  write_thresholds)

# class 0: separable (best F1 at the lowest positive, 0.6); class 1: best F1 at 0.7 (5 of 6 positives, no
# negative: F1 0.909; at 0.6: 0.769; at 0.2: 0.706); precision >= 0.7 is reached down to 0.6 (5/7), not at 0.5
POSITIVES = {0: [0.95, 0.9, 0.8, 0.7, 0.6], 1: [0.9, 0.85, 0.8, 0.75, 0.7, 0.2]}
NEGATIVES = {0: [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], 1: [0.65, 0.6, 0.5, 0.4, 0.3, 0.1]}


def known_scores():
    """scores, truth [N, 3] float32/bool: classes 0 and 1 above; class 2 with 2 positives (too few)."""
    columns, truths = [], []
    for c in (0, 1):
        columns.append(POSITIVES[c] + NEGATIVES[c])
        truths.append([True] * len(POSITIVES[c]) + [False] * len(NEGATIVES[c]))
    n = max(len(x) for x in columns)
    scores = np.zeros((n, 3), np.float32)
    truth = np.zeros((n, 3), bool)
    for c in (0, 1):
        scores[:len(columns[c]), c], truth[:len(columns[c]), c] = columns[c], truths[c]
    scores[:, 2] = np.linspace(0.9, 0.1, n)
    truth[[0, 5], 2] = True
    return scores, truth


def test_best_f1_and_target_precision_on_known_scores():
    scores, truth = known_scores()
    rows = from_scores(scores, truth)
    assert rows[0] == (pytest.approx(0.6), 1.0, 1.0, 5, "best_f1")
    assert rows[1] == (pytest.approx(0.7), 1.0, pytest.approx(5 / 6), 6, "best_f1")
    # 2 positives < 5: the default 0.5, marked, with its precision and recall on the list (0.9 .. 0.5: the
    # first 6 of 12 evenly spaced scores, both positives among them)
    assert rows[2] == (0.5, pytest.approx(2 / 6), 1.0, 2, "default_few_positives")
    rows = from_scores(scores, truth, target_precision=0.7)
    assert rows[0] == (pytest.approx(0.4), 5 / 7, 1.0, 5, "target_precision")  # the lowest: 0.3 gives 5/8
    assert rows[1] == (pytest.approx(0.6), pytest.approx(5 / 7), pytest.approx(5 / 6), 6, "target_precision")
    # a precision no threshold reaches: the default, marked
    assert from_scores(scores, truth, target_precision=1.0)[1][::4] == (pytest.approx(0.7), "target_precision")
    top_negative = np.array([[0.9], [0.8], [0.7], [0.6], [0.55], [0.52], [0.3]], np.float32)
    top_truth = np.array([[False], [True], [True], [True], [True], [True], [False]])
    assert from_scores(top_negative, top_truth, target_precision=0.9) == [
        (0.5, 5 / 6, 1.0, 5, "default_target_not_reached")]
    assert from_scores(scores, truth, min_positives=2, default=0.3)[2][4] == "best_f1"
    # equal F1 (0.5) at 0.9 (1 of 3 positives, alone) and at 0.5 (2 of 3 among 5): the higher threshold
    tie = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.1], np.float32)[:, None]
    assert from_scores(tie, np.isin(np.arange(11), [0, 4, 10])[:, None], min_positives=1)[0][:3] == (
        pytest.approx(0.9), 1.0, 1 / 3)
    assert from_scores(scores, truth, min_positives=7, default=0.3)[1][0] == 0.3


def brute_force(score, true, target=None):
    """Every score as a threshold, precision/recall/F1 by counting: (threshold, precision, recall)."""
    best = None
    for t in sorted(set(score.tolist()), reverse=True):
        kept = score >= t
        tp = int((kept & true).sum())
        p, r = tp / kept.sum(), tp / true.sum()
        f1 = 2 * p * r / (p + r) if tp else 0.0
        if target is None and (best is None or f1 > best[0] + 1e-12):
            best = (f1, t, p, r)
        if target is not None and tp and p >= target:
            best = (None, t, p, r)  # the lowest such threshold wins
    return best and best[1:]


def test_thresholds_equal_a_brute_force_search_on_random_scores():
    rng = np.random.default_rng(3)
    truth = rng.random((300, 8)) < np.linspace(0.05, 0.5, 8)
    scores = np.clip(rng.normal(0.35, 0.2, truth.shape) + 0.3 * truth, 0, 1).astype(np.float32)
    scores[:40, 0] = scores[0, 0]  # a group of equal scores
    for target in (None, 0.6):
        for c, row in enumerate(from_scores(scores, truth, target_precision=target, min_positives=1)):
            expected = brute_force(scores[:, c], truth[:, c], target)
            assert row[:3] == pytest.approx(expected, abs=1e-12), (c, target)
            assert row[0] == float(scores[:, c][np.argmin(np.abs(scores[:, c] - row[0]))])  # one of the scores


def test_binned_scores_give_thresholds_that_keep_the_same_videos():
    scores, truth = known_scores()
    # class 3: every video positive, one scored 0: the best threshold keeps them all
    scores = np.concatenate([scores, np.linspace(0, 0.9, len(scores), dtype=np.float32)[:, None]], axis=1)
    truth = np.concatenate([truth, np.ones((len(truth), 1), bool)], axis=1)
    exact, binned = PerClassAP(4), PerClassAP(4, memory_mb=0)
    for acc in (exact, binned):
        acc.update(scores, truth)
    assert not binned.exact
    for one, other, c in zip(from_per_class_ap(exact), from_per_class_ap(binned), range(4)):
        assert (scores[:, c] >= one[0]).tolist() == (scores[:, c] >= other[0]).tolist()
        assert one[1:] == pytest.approx(other[1:])


def test_thresholds_csv_round_trip_and_bad_files(tmp_path):
    scores, truth = known_scores()
    names = ["猫", "dog, big", "car"]
    path = tmp_path / "thresholds.csv"
    rows = from_scores(scores, truth)
    write_thresholds(str(path), rows, names)
    assert read_thresholds(str(path), names) == [row[0] for row in rows]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "class_id,class_name,threshold,precision,recall,positives,source"
    assert lines[2].startswith('1,"dog, big",0.69999998') and lines[2].endswith(",6,best_f1")
    assert lines[3].startswith("2,car,0.5,") and lines[3].endswith(",1.0,2,default_few_positives")

    def refused(text, other_names=names):
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(UserError) as e:
            read_thresholds(str(bad), other_names)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
        return str(e.value)

    header = lines[0] + "\n"
    good = "\n".join(lines[1:]) + "\n"
    assert "another label set" in refused(header + good, names + ["extra"])
    assert "another label set" in refused(header + good, ["猫", "dog", "car"])
    assert "another label set" in refused(header + "\n".join(lines[1:3]) + "\n")
    assert refused(header + good.replace(lines[1].split(",")[2], "1.5", 1)).endswith(":2: threshold 1.5 is outside [0, 1]")
    assert ":4: threshold -0.1 is outside" in refused(header + "\n".join(lines[1:3] + ["2,car,-0.1,,,2,x"]) + "\n")
    assert ":4: threshold nan is outside" in refused(header + "\n".join(lines[1:3] + ["2,car,nan"]) + "\n")
    assert ":4: threshold 'high' is not a number" in refused(header + "\n".join(lines[1:3] + ["2,car,high"]) + "\n")
    assert ":4: expected class_id" in refused(header + "\n".join(lines[1:3] + ["2;car;0.5"]) + "\n")
    assert ":3: class id '2' where 1" in refused(header + "\n".join([lines[1], lines[3], lines[2]]) + "\n")
    assert "not a thresholds file" in refused(good)
    with pytest.raises(UserError, match="thresholds file not found"):
        read_thresholds(str(tmp_path / "missing.csv"), names)
    # CRLF endings and a BOM, as a spreadsheet saves it, read the same
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + path.read_text(encoding="utf-8").replace("\n", "\r\n").encode())
    assert read_thresholds(str(tmp_path / "excel.csv"), names) == [row[0] for row in rows]


def test_keep_tags_per_class_and_combined_with_the_global_threshold():
    tags = [{"class_id": 0, "probability": 0.9}, {"class_id": 2, "probability": 0.4},
            {"class_id": 1, "probability": 0.3}]
    assert [t["class_id"] for t in keep_tags(tags, 0.35)] == [0, 2]
    assert [t["class_id"] for t in keep_tags(tags, [0.95, 0.3, 0.4])] == [2, 1]  # at its threshold: kept
    assert combine(0.35, [0.95, 0.3, 0.4]) == [0.95, 0.35, 0.4]
    assert combine(0.2, None) == 0.2
    assert not math.isnan(combine(0.0, [0.5])[0])
