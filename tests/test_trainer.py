"""train.py end to end on a tiny AttentionLSTM: outputs, pretrain, resume, and 2-process data parallel."""
import csv
import importlib.util
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, assert_quiet, run_script
from video_tag import weights

ARGS = ["--model_name=AttentionLSTM", "--use_gpu=False"]


def train(cfg, save_dir, *extra, env=None):
    result = run_script("train.py", *ARGS, f"--config={cfg}", f"--save_dir={save_dir}", *extra, env=env)
    assert result.returncode == 0, result.stdout
    return result.stdout


def installed(module):
    return importlib.util.find_spec(module) is not None


def read_metrics_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_of_a_run(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "ck", "--epoch", "3", "--visualdl", env={"OMP_NUM_THREADS": "2"})
    assert_quiet(out)
    names = sorted(os.listdir(tmp_path / "ck"))
    optional = (["curves.png"] if installed("matplotlib") else []) + (["visualdl"] if installed("visualdl") else [])
    assert names == sorted(["AttentionLSTM.pdparams", "AttentionLSTM_best.pdparams", "valid_metrics.jsonl",
                            "metrics.csv"] + optional
                           + [f"AttentionLSTM_epoch{k}.{ext}" for k in range(3) for ext in ("pdparams", "pdopt")])
    state = weights.read_state(str(tmp_path / "ck" / "AttentionLSTM"))
    assert state["output.w_0"].shape == (8, 5) and "rgb_lstm_backward.b_0" in state
    with open(tmp_path / "ck" / "valid_metrics.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert [r["epoch"] for r in lines] == [0, 1, 2] and all(r["num_videos"] == 10 for r in lines)
    assert "hit_at_one=" in out and "gap=" in out and "perr=" in out

    # metrics.csv: one row per epoch. With one process and log_interval=1 each step's log line gives its
    # batch's mean loss (5 decimals); the 3 batches are equal in size, so their mean is the epoch's.
    rows = read_metrics_csv(tmp_path / "ck" / "metrics.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "learning_rate", "samples_per_s", "train_seconds",
                             "elapsed_seconds", "valid_hit_at_one", "valid_perr", "valid_gap", "valid_loss",
                             "valid_num_videos"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for r in rows:
        step_losses = [float(x) for x in re.findall(rf"epoch {r['epoch']} step \d+/3 lr=\S+ loss=(\S+)", out)]
        assert len(step_losses) == 3 and float(r["train_loss"]) == pytest.approx(np.mean(step_losses), abs=1e-5)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.01, 0.001, 0.001])  # x0.1 at epoch 1
    assert all(float(r["samples_per_s"]) == pytest.approx(24 / float(r["train_seconds"]), rel=1e-9) for r in rows)
    elapsed = [float(r["elapsed_seconds"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] >= float(rows[0]["train_seconds"]) > 0
    for r, line in zip(rows, lines):
        assert {k: float(r["valid_" + k]) for k in ("hit_at_one", "perr", "gap", "loss")} == \
            {k: pytest.approx(line[k], rel=1e-12) for k in ("hit_at_one", "perr", "gap", "loss")}
        assert r["valid_num_videos"] == "10"

    if installed("matplotlib"):
        image = cv2.imread(str(tmp_path / "ck" / "curves.png"))
        assert image.shape == (700, 1000, 3) and image.std() > 10  # drawn, not blank
    else:
        assert out.count("matplotlib is not installed: no curves.png") == 1
    if installed("visualdl"):
        from visualdl import LogReader
        reader = LogReader(file_path=str(next((tmp_path / "ck" / "visualdl").iterdir())))
        assert [(p.id, p.value) for p in reader.get_data("scalar", "valid/gap")] == \
            [(k, pytest.approx(line["gap"], abs=1e-6)) for k, line in enumerate(lines)]
        assert len(reader.get_data("scalar", "train/loss")) == 3
    else:
        assert out.count("--visualdl: VisualDL is not installed") == 1


def test_learns_the_signal(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "ck", "--epoch", "12", "-o", "TRAIN.decay_epochs=[100]", "--fix_random_seed=True")
    labels = tmp_path / "tags.txt"
    labels.write_text("cat\n海边, \"sea\"\ndog\nrain\nsnow\n", encoding="utf-8")
    result = run_script("eval.py", *ARGS, f"--config={tiny_config}", f"--weights={tmp_path}/ck/AttentionLSTM",
                        f"--save_dir={tmp_path}/ev", "--per_class", f"--label_file={labels}")
    assert result.returncode == 0, result.stdout
    with open(tmp_path / "ev" / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["num_videos"] == 10 and metrics["gap"] > 0.8 and metrics["hit_at_one"] >= 0.8

    # per_class.csv: every class once, worst AP first, positives counted from the list itself.
    with open(tmp_path / "test.list", encoding="utf-8") as f:
        truth = [int(label) for line in f for label in line.split(".npy ")[1].split()]
    with open(tmp_path / "ev" / "per_class.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["class_id", "class_name", "positives", "ap"]
    assert sorted(int(r["class_id"]) for r in rows) == list(range(5))
    for r in rows:
        assert r["class_name"] == ["cat", '海边, "sea"', "dog", "rain", "snow"][int(r["class_id"])]
        assert int(r["positives"]) == truth.count(int(r["class_id"]))
    scored = [float(r["ap"]) for r in rows if int(r["positives"])]
    assert scored == sorted(scored) and 0.5 < scored[0] and scored[-1] <= 1.0
    assert all(r["ap"] == "" for r in rows[len(scored):])
    assert "per-class AP: mean" in result.stdout


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


def test_killed_run_resumes_to_the_weights_of_an_unbroken_run(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "full", "--epoch", "3", "--fix_random_seed=True", "-o", "TRAIN.batch_size=2")
    # SIGKILL as soon as the first epoch's checkpoint is complete (the run is then inside epoch 1).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *ARGS, f"--config={tiny_config}",
                             f"--save_dir={part}", "--epoch", "3", "--fix_random_seed=True",
                             "-o", "TRAIN.batch_size=2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (part / "AttentionLSTM_epoch0.pdopt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert not (part / "AttentionLSTM.pdparams").exists(), "the run ended before it could be killed"
    last = max(int(n[len("AttentionLSTM_epoch"):-len(".pdopt")]) for n in os.listdir(part) if n.endswith(".pdopt"))
    out = train(tiny_config, part, "--epoch", "3", "--fix_random_seed=True", "-o", "TRAIN.batch_size=2",
                f"--resume={part}/AttentionLSTM_epoch{last}.pdparams")
    assert f"continuing at epoch {last + 1}" in out
    full = weights.read_state(str(tmp_path / "full" / "AttentionLSTM"))
    resumed = weights.read_state(str(part / "AttentionLSTM"))
    for name in full:
        np.testing.assert_allclose(resumed[name], full[name], rtol=0, atol=1e-6, err_msg=name)
    with open(part / "valid_metrics.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [0, 1, 2]
    assert not [n for n in os.listdir(part) if ".tmp" in n]
    # The rows of metrics.csv after the resumed epoch were dropped and trained again: each epoch once,
    # with the unbroken run's figures.
    full_rows, resumed_rows = read_metrics_csv(tmp_path / "full" / "metrics.csv"), read_metrics_csv(part / "metrics.csv")
    assert [r["epoch"] for r in resumed_rows] == ["0", "1", "2"]
    for a, b in zip(full_rows, resumed_rows):
        for key in ("train_loss", "learning_rate", "valid_gap", "valid_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), abs=1e-6), (a["epoch"], key)


def test_a_fresh_run_does_not_replace_another_runs_checkpoints(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "ck", "--epoch", "2")
    before = (tmp_path / "ck" / "valid_metrics.jsonl").read_bytes()
    result = run_script("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch", "1")
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "ck") in errors[0]
    assert "--resume" in errors[0] and "--overwrite" in errors[0]
    assert (tmp_path / "ck" / "valid_metrics.jsonl").read_bytes() == before
    train(tiny_config, tmp_path / "ck", "--epoch", "1", "--overwrite")
    assert not (tmp_path / "ck" / "AttentionLSTM_epoch1.pdparams").exists()  # the old run's, removed
    with open(tmp_path / "ck" / "valid_metrics.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [0]
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "ck" / "metrics.csv")] == ["0"]

    # A save_dir with only the records of another run (its checkpoints deleted) is refused too.
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "metrics.csv").write_text("epoch,train_loss\n0,1.5\n", encoding="utf-8")
    result = run_script("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'records'}")
    assert result.returncode == 2 and "metrics.csv" in result.stdout, result.stdout

    result = run_script("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'new'}",
                        f"--pretrain={tmp_path}/ck/AttentionLSTM", f"--resume={tmp_path}/ck/AttentionLSTM_epoch0")
    assert result.returncode == 2 and "error: --pretrain and --resume exclude each other" in result.stdout


def test_ctrl_c_stops_training_with_130(tiny_config, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *ARGS, f"--config={tiny_config}",
                             f"--save_dir={tmp_path / 'ck'}", "--epoch", "100", "-o", "TRAIN.batch_size=2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "ck" / "AttentionLSTM_epoch0.pdopt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    start = time.time()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - start < 20, (proc.returncode, time.time() - start, out[-3000:])
    assert "interrupted" in out.splitlines() and "Traceback" not in out, out[-3000:]
    assert not [n for n in os.listdir(tmp_path / "ck") if ".tmp" in n]


def test_disk_full_while_saving_a_checkpoint(tiny_config, tmp_path, monkeypatch):
    import errno
    from video_tag import trainer
    from video_tag.config import load_config
    from video_tag.errors import RunError
    real_dump = weights.pickle.dump

    def full(obj, f, protocol=None):
        if "epoch1" in f.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_dump(obj, f, protocol=protocol)

    monkeypatch.setattr(weights.pickle, "dump", full)
    cfg = load_config(tiny_config)
    with pytest.raises(RunError, match=r"cannot write .*AttentionLSTM_epoch1\.pdparams: No space left on device"):
        trainer.train("AttentionLSTM", cfg, str(tmp_path / "ck"), epochs=3)
    assert sorted(n for n in os.listdir(tmp_path / "ck") if "epoch1" in n or ".tmp" in n) == []
    monkeypatch.setattr(weights.pickle, "dump", real_dump)
    trainer.train("AttentionLSTM", cfg, str(tmp_path / "ck"), epochs=3,
                  resume=str(tmp_path / "ck" / "AttentionLSTM_epoch0"))
    assert (tmp_path / "ck" / "AttentionLSTM.pdparams").exists()
    # Resumed again from epoch 0 for 2 epochs in all: epoch 2's record belongs to the abandoned run.
    trainer.train("AttentionLSTM", cfg, str(tmp_path / "ck"), epochs=2,
                  resume=str(tmp_path / "ck" / "AttentionLSTM_epoch0"))
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "ck" / "metrics.csv")] == ["0", "1"]


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

    # The training loss of metrics.csv is over the samples of both processes: the one-process figure.
    two_rows = read_metrics_csv(tmp_path / "two" / "ck" / "metrics.csv")
    one_rows = read_metrics_csv(tmp_path / "one" / "ck" / "metrics.csv")
    assert len(two_rows) == len(one_rows) == 2
    for a, b in zip(two_rows, one_rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=1e-5)
        assert float(a["samples_per_s"]) == pytest.approx(24 / float(a["train_seconds"]), rel=1e-9)

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


def test_keep_checkpoints_prunes_old_epochs(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "ck", "--epoch", "4", "-o", "TRAIN.keep_checkpoints=2")
    names = sorted(n for n in os.listdir(tmp_path / "ck") if "_epoch" in n)
    assert names == [f"AttentionLSTM_epoch{k}.{ext}" for k in (2, 3) for ext in ("pdopt", "pdparams")]
