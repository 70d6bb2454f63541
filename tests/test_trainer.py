"""train.py end to end on a tiny AttentionLSTM: outputs, pretrain, resume, and 2-process data parallel."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import yaml

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


def harness(config, out_dir, processes):
    """Train with tests/dist_harness.py in ``processes`` processes; returns rank 0's (weights, metrics)."""
    os.makedirs(out_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(processes),
              "--log_dir", str(out_dir / "log")] if processes > 1 else [sys.executable]
    result = subprocess.run(launch + [os.path.join(ROOT, "tests", "dist_harness.py"), config,
                                      str(out_dir / "ck"), str(out_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    logs = "".join(open(out_dir / "log" / f"workerlog.{r}", encoding="utf-8").read()
                   for r in range(processes)) if processes > 1 else ""
    assert result.returncode == 0, result.stdout + logs
    return dict(np.load(out_dir / "rank0.npz")), json.load(open(out_dir / "valid0.json"))


def test_two_processes_data_parallel(tiny_config, tmp_path):
    # Dropout off: its masks are seeded per rank, so they differ between 1 and 2 processes.
    with open(tiny_config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"]["drop_rate"] = 0.0
    config = str(tmp_path / "no_dropout.yaml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, allow_unicode=True)

    final, valid = harness(config, tmp_path / "two", 2)
    rank1 = np.load(tmp_path / "two" / "rank1.npz")
    for name in final:
        np.testing.assert_array_equal(rank1[name], final[name], err_msg=name)
    assert valid["world"] == 2 and valid == json.load(open(tmp_path / "two" / "valid1.json"))
    with open(tmp_path / "two" / "log" / "workerlog.1", encoding="utf-8") as f:
        assert "saved" not in f.read()  # rank 0 alone saves

    # Same seed and total batch in one process: the same batches, the same gradients, the same weights
    # (they differ by ~2e-7 here). RMSProp cancels most of the loss scale, but not against the L2 decay
    # and epsilon: without the loss's factor nranks the weights differ by ~0.07.
    single, single_valid = harness(config, tmp_path / "one", 1)
    assert single_valid["world"] == 1
    for name in single:
        assert np.abs(final[name] - single[name]).max() <= 1e-5, name
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert valid[key] == pytest.approx(single_valid[key], abs=1e-5), key

    # The gathered validation equals a single-process evaluation of the saved final weights.
    result = run_script("eval.py", *ARGS, f"--config={config}", f"--weights={tmp_path}/two/ck/AttentionLSTM",
                        f"--save_dir={tmp_path}/ev", "-o", "TEST.batch_size=3",
                        "--filelist", str(tmp_path / "val.list"))
    assert result.returncode == 0, result.stdout
    evaluated = json.load(open(tmp_path / "ev" / "metrics.json"))
    assert evaluated["num_videos"] == valid["num_videos"] == 10
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert evaluated[key] == pytest.approx(valid[key], abs=1e-6), key


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
