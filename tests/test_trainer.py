"""train.py end to end on a tiny AttentionLSTM: outputs, pretrain, resume, and 2-process data parallel."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_script
from video_tag import weights

ARGS = ["--model_name=AttentionLSTM", "--use_gpu=False"]


def train(cfg, save_dir, *extra):
    result = run_script("train.py", *ARGS, f"--config={cfg}", f"--save_dir={save_dir}", *extra)
    assert result.returncode == 0, result.stdout
    return result.stdout


def test_outputs_of_a_run(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "ck", "--epoch", "3")
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == sorted(["AttentionLSTM.pdparams", "AttentionLSTM_best.pdparams", "valid_metrics.jsonl"]
                           + [f"AttentionLSTM_epoch{k}.{ext}" for k in range(3) for ext in ("pdparams", "pdopt")])
    state = weights.read_state(str(tmp_path / "ck" / "AttentionLSTM"))
    assert state["output.w_0"].shape == (8, 5) and "rgb_lstm_backward.b_0" in state
    with open(tmp_path / "ck" / "valid_metrics.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert [r["epoch"] for r in lines] == [0, 1, 2] and all(r["num_videos"] == 10 for r in lines)
    assert "hit_at_one=" in out and "gap=" in out and "perr=" in out


def test_learns_the_signal(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "ck", "--epoch", "8", "-o", "TRAIN.decay_epochs=[100]")
    result = run_script("eval.py", *ARGS, f"--config={tiny_config}", f"--weights={tmp_path}/ck/AttentionLSTM",
                        f"--save_dir={tmp_path}/ev")
    assert result.returncode == 0, result.stdout
    with open(tmp_path / "ev" / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["num_videos"] == 10 and metrics["gap"] > 0.8 and metrics["hit_at_one"] >= 0.8


def test_pretrain_with_other_num_classes(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "a", "--epoch", "1", "-o", "MODEL.num_classes=7")
    # Rewrite as fluid.save would have (protocol 2), to start from a "release" file of another size.
    state = weights.read_state(str(tmp_path / "a" / "AttentionLSTM"))
    with open(tmp_path / "release.pdparams", "wb") as f:
        pickle.dump(state, f, protocol=2)
    out = train(tiny_config, tmp_path / "b", "--epoch", "1", f"--pretrain={tmp_path}/release")
    assert "skipped output.w_0, output.b_0" in out
    tuned = weights.read_state(str(tmp_path / "b" / "AttentionLSTM_epoch0"))
    assert tuned["output.w_0"].shape == (8, 5)


def test_resume_equals_an_unbroken_run(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "full", "--epoch", "3", "--fix_random_seed=True")
    train(tiny_config, tmp_path / "part", "--epoch", "1", "--fix_random_seed=True")
    out = train(tiny_config, tmp_path / "part", "--epoch", "3", "--fix_random_seed=True",
                f"--resume={tmp_path}/part/AttentionLSTM_epoch0.pdparams")
    assert "continuing at epoch 1" in out
    full = weights.read_state(str(tmp_path / "full" / "AttentionLSTM"))
    resumed = weights.read_state(str(tmp_path / "part" / "AttentionLSTM"))
    for name in full:
        np.testing.assert_allclose(resumed[name], full[name], rtol=0, atol=1e-6, err_msg=name)
    with open(tmp_path / "part" / "valid_metrics.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [0, 1, 2]


def test_two_processes_data_parallel(tiny_config, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
         "--log_dir", str(tmp_path / "log"), os.path.join(ROOT, "tests", "dist_harness.py"),
         tiny_config, str(tmp_path / "ck"), str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    logs = "".join(open(tmp_path / "log" / f"workerlog.{r}", encoding="utf-8").read() for r in (0, 1))
    assert result.returncode == 0, result.stdout + logs
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    for name in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
    valid = [json.load(open(tmp_path / f"valid{r}.json")) for r in (0, 1)]
    assert valid[0]["world"] == 2 and valid[0] == valid[1]
    with open(tmp_path / "log" / "workerlog.1", encoding="utf-8") as f:
        assert "saved" not in f.read()  # rank 0 alone saves

    # The gathered validation equals a single-process evaluation of the saved final weights.
    result = run_script("eval.py", *ARGS, f"--config={tiny_config}", f"--weights={tmp_path}/ck/AttentionLSTM",
                        f"--save_dir={tmp_path}/ev", "-o", "TEST.batch_size=3",
                        "--filelist", str(tmp_path / "val.list"))
    assert result.returncode == 0, result.stdout
    single = json.load(open(tmp_path / "ev" / "metrics.json"))
    assert single["num_videos"] == valid[0]["num_videos"] == 10
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert single[key] == pytest.approx(valid[0][key], abs=1e-6), key


def test_unreadable_file_mid_run_is_skipped_with_a_warning(tiny_config, tmp_path):
    with open(tmp_path / "train.list", encoding="utf-8") as f:
        first = f.readline().rsplit(" ", 1)[0]
    while not first.endswith(".npy"):
        first = first.rsplit(" ", 1)[0]
    with open(first, "wb") as f:
        f.write(b"not an npy file")  # exists, so the up-front check passes; unreadable when loaded
    out = train(tiny_config, tmp_path / "ck", "--epoch", "1")
    assert f"skipping {first}" in out
    assert os.path.isfile(tmp_path / "ck" / "AttentionLSTM.pdparams")
