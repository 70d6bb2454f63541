"""eval.py --per_class: exact per-class AP while the scores fit --per_class_memory_mb, binned beyond it,
with one log line saying so (the figures themselves: tests/test_metrics.py, against scikit-learn)."""
import csv
import json

import numpy as np

from conftest import run_main
from video_tag import weights
from video_tag.config import load_config
from video_tag.models import build_model


def per_class_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return {int(r["class_id"]): r for r in csv.DictReader(f)}


def test_per_class_is_binned_past_the_memory_budget_with_one_line(tiny_config, tmp_path, capfd):
    w = str(tmp_path / "w" / "AttentionLSTM.pdparams")
    weights.write_state(weights.model_state(build_model("AttentionLSTM", load_config(tiny_config))), w)
    common = ["--model_name=AttentionLSTM", "--use_gpu=False", f"--config={tiny_config}", f"--weights={w}",
              "--per_class"]
    exact = run_main("eval.py", *common, f"--save_dir={tmp_path}/exact", capfd=capfd)
    binned = run_main("eval.py", *common, f"--save_dir={tmp_path}/binned", "--per_class_memory_mb=0", capfd=capfd)
    assert exact.returncode == 0 and binned.returncode == 0, exact.stdout + binned.stdout
    assert "score bins" not in exact.stdout
    notes = [line for line in binned.stdout.splitlines() if "score bins" in line]
    assert len(notes) == 1 and "10 videos x 5 classes" in notes[0] and "--per_class_memory_mb 0" in notes[0], notes
    one, other = per_class_rows(tmp_path / "exact" / "per_class.csv"), per_class_rows(tmp_path / "binned" / "per_class.csv")
    assert sorted(one) == sorted(other) == list(range(5))
    assert [one[c]["positives"] for c in one] == [other[c]["positives"] for c in one]


class FakeRanks:
    """video_tag.distributed as rank ``rank`` of 2 sees it, in this process: gather_to_main records what
    it is given and returns ``delivered`` (what rank 0 would receive); an all-gather is an error."""

    def __init__(self, monkeypatch, rank, delivered=None):
        from video_tag import distributed
        self.sent, self.delivered = [], delivered
        monkeypatch.setattr(distributed, "init", lambda use_gpu: False)
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        monkeypatch.setattr(distributed, "is_main", lambda: rank == 0)
        monkeypatch.setattr(distributed, "barrier", lambda: None)
        monkeypatch.setattr(distributed, "gather", self.all_gather)
        monkeypatch.setattr(distributed, "gather_to_main", self.gather_to_main)
        monkeypatch.setattr(distributed, "broadcast_from_main", lambda obj: "rank 0's metrics" if rank else obj)

    def all_gather(self, obj):
        raise AssertionError("the metric states went to every rank")

    def gather_to_main(self, obj):
        self.sent.append(obj)
        return None if self.delivered is None else self.delivered(obj)


def tiny_weights(tiny_config, tmp_path):
    w = str(tmp_path / "w" / "AttentionLSTM.pdparams")
    weights.write_state(weights.model_state(build_model("AttentionLSTM", load_config(tiny_config))), w)
    return w


def test_eval_sends_the_metric_states_to_rank_0_alone(tiny_config, tmp_path, monkeypatch):
    from video_tag.evaluate import evaluate
    cfg, w = load_config(tiny_config), tiny_weights(tiny_config, tmp_path)
    other = FakeRanks(monkeypatch, rank=1)
    assert evaluate("AttentionLSTM", cfg, w, cfg["TEST"]["filelist"], str(tmp_path / "r1"), per_class=True) == 0
    assert not (tmp_path / "r1").exists()  # rank 1 writes nothing
    (state, class_state, failed), = other.sent
    assert len(state["hit"]) == 5 and "all_index" in class_state and failed == []  # its half of 10 videos
    # rank 0 merges what reaches it: here its own half twice
    main = FakeRanks(monkeypatch, rank=0, delivered=lambda obj: [obj, obj])
    assert evaluate("AttentionLSTM", cfg, w, cfg["TEST"]["filelist"], str(tmp_path / "r0"), per_class=True) == 0
    with open(tmp_path / "r0" / "metrics.json", encoding="utf-8") as f:
        assert json.load(f)["num_videos"] == 10
    assert len(main.sent) == 1 and per_class_rows(tmp_path / "r0" / "per_class.csv")


def test_validation_sends_the_metric_states_to_rank_0_alone(tiny_config, tmp_path, monkeypatch):
    from video_tag.evaluate import validate
    from video_tag.models import MODELS
    cfg = load_config(tiny_config)
    model = build_model("AttentionLSTM", cfg)
    reader = MODELS["AttentionLSTM"].reader(cfg["VALID"]["filelist"], "valid", cfg)
    other = FakeRanks(monkeypatch, rank=1)
    assert validate("AttentionLSTM", model, reader, cfg) == "rank 0's metrics"
    assert len(other.sent) == 1 and len(other.sent[0]["hit"]) == 5
    FakeRanks(monkeypatch, rank=0, delivered=lambda obj: [obj, obj])
    assert validate("AttentionLSTM", model, reader, cfg)["num_videos"] == 10


def test_calibrate_writes_the_thresholds_of_the_evaluated_scores(tiny_config, tmp_path, capfd):
    from video_tag.evaluate import run_model
    from video_tag.models import MODELS
    from video_tag.thresholds import from_scores, read_thresholds
    cfg, w = load_config(tiny_config), tiny_weights(tiny_config, tmp_path)
    names = [f"tag {c}" for c in range(5)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    common = ["--model_name=AttentionLSTM", "--use_gpu=False", f"--config={tiny_config}", f"--weights={w}"]
    result = run_main("eval.py", *common, f"--save_dir={tmp_path}/e", "--calibrate", "--min_positives=3",
                      "--threshold=0.25", f"--label_file={tmp_path}/labels.txt", capfd=capfd)
    assert result.returncode == 0, result.stdout
    assert not (tmp_path / "e" / "per_class.csv").exists()
    reader = MODELS["AttentionLSTM"].reader(cfg["TEST"]["filelist"], "test", cfg)
    model = build_model("AttentionLSTM", cfg)
    weights.load_weights(model, w)
    scores, truth = [], []
    for batch, probabilities, _ in run_model("AttentionLSTM", model, reader, list(range(len(reader))), 4):
        scores.append(probabilities)
        truth.append(batch["labels"])
    expected = from_scores(np.concatenate(scores), np.concatenate(truth) != 0, min_positives=3, default=0.25)
    rows = per_class_rows(tmp_path / "e" / "thresholds.csv")
    assert [(float(rows[c]["threshold"]), rows[c]["source"], int(rows[c]["positives"])) for c in range(5)] == [
        (row[0], row[4], row[3]) for row in expected]
    assert {row[4] for row in expected} == {"best_f1", "default_few_positives"}  # both kinds in the test
    assert read_thresholds(str(tmp_path / "e" / "thresholds.csv"), names) == [row[0] for row in expected]
    assert "4 class(es) calibrated, 1 with the default threshold 0.25" in result.stdout

    for bad, message in ((["--calibrate", "--target_precision=1.5"], "--target_precision must be a number in [0, 1]"),
                         (["--target_precision=0.9"], "--target_precision needs --calibrate"),
                         (["--calibrate", f"--label_file={tmp_path}/none.txt"], "label file not found")):
        result = run_main("eval.py", *common, f"--save_dir={tmp_path}/bad", *bad, capfd=capfd)
        assert result.returncode == 2 and message in result.stdout, result.stdout
        assert not (tmp_path / "bad").exists()
