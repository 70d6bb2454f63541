"""eval.py --per_class: exact per-class AP while the scores fit --per_class_memory_mb, binned beyond it,
with one log line saying so (the figures themselves: tests/test_metrics.py, against scikit-learn)."""
import csv

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
