"""train.py end to end on a tiny AttentionLSTM: outputs, pretrain, resume, and 2-process data parallel.

train.py runs in this process (conftest.run_main) unless the test is about what only a process shows:
quiet output, SIGKILL and Ctrl-C, paddle.distributed.launch."""
import csv
import importlib.util
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, assert_quiet, run_main, run_script
from video_tag import weights

ARGS = ["--model_name=AttentionLSTM", "--use_gpu=False"]
pytestmark = pytest.mark.usefixtures("no_curves_png")  # in this process; processes draw it


def train(capfd, cfg, save_dir, *extra):
    """train.py in this process; returns its output."""
    result = run_main("train.py", *ARGS, f"--config={cfg}", f"--save_dir={save_dir}", *extra, capfd=capfd)
    assert result.returncode == 0, result.stdout
    return result.stdout


def installed(module):
    return importlib.util.find_spec(module) is not None


def read_metrics_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_of_a_run(tiny_config, tmp_path):
    result = run_script("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch", "3",
                        "--visualdl", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stdout
    out = result.stdout
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


def test_learns_the_signal(tiny_config, tmp_path, capfd):
    train(capfd, tiny_config, tmp_path / "ck", "--epoch", "12", "-o", "TRAIN.decay_epochs=[100]", "--fix_random_seed=True")
    labels = tmp_path / "tags.txt"
    labels.write_text("cat\n海边, \"sea\"\ndog\nrain\nsnow\n", encoding="utf-8")
    result = run_main("eval.py", *ARGS, f"--config={tiny_config}", f"--weights={tmp_path}/ck/AttentionLSTM",
                      f"--save_dir={tmp_path}/ev", "--per_class", f"--label_file={labels}", capfd=capfd)
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


def test_pretrain_with_other_num_classes(tiny_config, tmp_path, capfd):
    train(capfd, tiny_config, tmp_path / "a", "--epoch", "1", "-o", "MODEL.num_classes=7")
    # Rewrite as fluid.save would have (protocol 2), to start from a "release" file of another size.
    state = weights.read_state(str(tmp_path / "a" / "AttentionLSTM"))
    with open(tmp_path / "release.pdparams", "wb") as f:
        pickle.dump(state, f, protocol=2)
    out = train(capfd, tiny_config, tmp_path / "b", "--epoch", "1", f"--pretrain={tmp_path}/release")
    assert "skipped output.w_0, output.b_0" in out
    tuned = weights.read_state(str(tmp_path / "b" / "AttentionLSTM_epoch0"))
    assert tuned["output.w_0"].shape == (8, 5)


def train_and_die(checkpoint, cfg, save_dir, *extra, processes=1):
    """train.py killed by SIGKILL right after writing ``checkpoint`` (tests/die_after_checkpoint.py)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(processes),
              "--log_dir", str(save_dir) + "_log"] if processes > 1 else [sys.executable]
    # A session of its own: a killed launcher's workers are ended with it.
    proc = subprocess.Popen(launch + [os.path.join(ROOT, "tests", "die_after_checkpoint.py"), checkpoint, *ARGS,
                                      f"--config={cfg}", f"--save_dir={save_dir}", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None or processes > 1:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    assert not os.path.exists(os.path.join(save_dir, "AttentionLSTM.pdparams")), out
    assert os.path.isfile(os.path.join(save_dir, checkpoint + ".pdopt")), out
    return out


def run_seed(checkpoint):
    return weights.read_pickle(str(checkpoint) + ".pdopt")["seed"]


def assert_same_run(resumed_dir, full_dir):
    """Final weights within 1e-6, and the records of every epoch as the unbroken run's."""
    full = weights.read_state(str(full_dir / "AttentionLSTM"))
    resumed = weights.read_state(str(resumed_dir / "AttentionLSTM"))
    for name in full:
        np.testing.assert_allclose(resumed[name], full[name], rtol=0, atol=1e-6, err_msg=name)
    lines = []
    for d in (full_dir, resumed_dir):
        with open(d / "valid_metrics.jsonl", encoding="utf-8") as f:
            lines.append([json.loads(line) for line in f])
    assert [r["epoch"] for r in lines[1]] == [r["epoch"] for r in lines[0]] == [0, 1]
    for a, b in zip(*lines):
        assert b == {k: pytest.approx(v, abs=1e-6) for k, v in a.items()}
    full_rows, resumed_rows = read_metrics_csv(full_dir / "metrics.csv"), read_metrics_csv(resumed_dir / "metrics.csv")
    assert [r["epoch"] for r in resumed_rows] == ["0", "1"]
    for a, b in zip(full_rows, resumed_rows):
        for key in ("train_loss", "learning_rate", "valid_gap", "valid_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), abs=1e-6), (a["epoch"], key)
    assert not [n for n in os.listdir(resumed_dir) if ".tmp" in n]


def step_checkpoints(save_dir):
    return sorted(int(m.group(1)) for m in map(re.compile(r"AttentionLSTM_step(\d+)\.pdopt").fullmatch,
                                               os.listdir(save_dir)) if m)


def test_killed_mid_epoch_resumes_to_the_weights_of_an_unbroken_run(tiny_config, tmp_path, capfd):
    # No --fix_random_seed: the killed run draws its seed, and dropout (0.5) draws from it at every step.
    # Batch 2: 12 steps per epoch, a step checkpoint after each step, killed after step 17 (epoch 1,
    # step 5 of 12), before it could prune.
    opts = ["--epoch", "2", "-o", "TRAIN.batch_size=2", "-o", "TRAIN.save_interval_steps=1",
            "-o", "TRAIN.keep_checkpoints=2"]
    part = tmp_path / "part"
    train_and_die("AttentionLSTM_step17", tiny_config, part, *opts)
    # The step checkpoints of epoch 0 went with epoch 0's checkpoint; of epoch 1, the last 2 stay (+ 17).
    assert step_checkpoints(part) == [15, 16, 17]
    assert os.path.isfile(part / "AttentionLSTM_epoch0.pdopt")
    shutil.copytree(part, tmp_path / "from_epoch")
    seed = run_seed(part / "AttentionLSTM_step17")
    # Another batch size: the position in the epoch means nothing any more.
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={part}", *opts,
                      "-o", "TRAIN.batch_size=4", f"--resume={part}/AttentionLSTM_step17", capfd=capfd)
    assert result.returncode == 2 and "AttentionLSTM_step17.pdparams mid-epoch" in result.stdout, result.stdout
    assert "resume from an epoch checkpoint instead" in result.stdout and "Traceback" not in result.stdout

    out = train(capfd, tiny_config, part, *opts, f"--resume={part}/AttentionLSTM_step17")
    assert "continuing at epoch 1 step 5/12 of 2" in out
    assert step_checkpoints(part) == []  # superseded by epoch 1's checkpoint
    # The unbroken run, with the seed the killed run drew.
    train(capfd, tiny_config, tmp_path / "full", "--epoch", "2", "-o", "TRAIN.batch_size=2", "-o", f"TRAIN.seed={seed}")
    assert_same_run(part, tmp_path / "full")

    # The same run resumed from its epoch checkpoint instead (the stale step checkpoints are overwritten).
    out = train(capfd, tiny_config, tmp_path / "from_epoch", *opts,
                f"--resume={tmp_path}/from_epoch/AttentionLSTM_epoch0")
    assert "continuing at epoch 1 of 2" in out
    assert_same_run(tmp_path / "from_epoch", tmp_path / "full")


def test_a_fresh_run_does_not_replace_another_runs_checkpoints(tiny_config, tmp_path, capfd):
    train(capfd, tiny_config, tmp_path / "ck", "--epoch", "2")
    before = (tmp_path / "ck" / "valid_metrics.jsonl").read_bytes()
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch", "1",
                      capfd=capfd)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "ck") in errors[0]
    assert "--resume" in errors[0] and "--overwrite" in errors[0]
    assert (tmp_path / "ck" / "valid_metrics.jsonl").read_bytes() == before
    train(capfd, tiny_config, tmp_path / "ck", "--epoch", "1", "--overwrite")
    assert not (tmp_path / "ck" / "AttentionLSTM_epoch1.pdparams").exists()  # the old run's, removed
    with open(tmp_path / "ck" / "valid_metrics.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [0]
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "ck" / "metrics.csv")] == ["0"]

    # A save_dir with only the records of another run (its checkpoints deleted) is refused too.
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "metrics.csv").write_text("epoch,train_loss\n0,1.5\n", encoding="utf-8")
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'records'}", capfd=capfd)
    assert result.returncode == 2 and "metrics.csv" in result.stdout, result.stdout

    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'new'}",
                      f"--pretrain={tmp_path}/ck/AttentionLSTM", f"--resume={tmp_path}/ck/AttentionLSTM_epoch0",
                      capfd=capfd)
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
    if processes == 1:
        return harness_here(config, out_dir)
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


def harness_here(config, out_dir):
    """What tests/dist_harness.py does in one process, in this one: (final weights, validation metrics)."""
    from video_tag import trainer
    from video_tag.config import load_config
    captured, build = {}, trainer.build_model

    def build_and_keep(name, cfg):
        captured["model"] = build(name, cfg)
        return captured["model"]

    trainer.build_model = build_and_keep
    try:
        metrics = trainer.train("AttentionLSTM", load_config(config), str(out_dir / "ck"), fix_random_seed=True,
                                use_gpu=False)
    finally:
        trainer.build_model = build
    return {k: v.numpy() for k, v in captured["model"].state_dict().items()}, {"world": 1, **metrics}


def test_two_processes_data_parallel(tiny_config, tmp_path, capfd):
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
    result = run_main("eval.py", *ARGS, f"--config={config}", f"--weights={tmp_path}/two/ck/AttentionLSTM",
                      f"--save_dir={tmp_path}/ev", "-o", "TEST.batch_size=3", "--filelist", str(tmp_path / "val.list"),
                      capfd=capfd)
    assert result.returncode == 0, result.stdout
    evaluated = json.load(open(tmp_path / "ev" / "metrics.json"))
    assert evaluated["num_videos"] == valid["num_videos"] == 10
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert evaluated[key] == pytest.approx(valid[key], abs=1e-6), key


def launch_train(cfg, save_dir, *extra):
    """train.py in 2 processes (gloo on CPU); returns rank 0's log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    log_dir = str(save_dir) + "_log"
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", log_dir, os.path.join(ROOT, "train.py"), *ARGS, f"--config={cfg}",
                             f"--save_dir={save_dir}", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300)
    with open(os.path.join(log_dir, "workerlog.0"), encoding="utf-8") as f:
        out = f.read()
    assert result.returncode == 0, result.stdout + out
    return out


def test_killed_mid_epoch_resumes_in_two_processes(tiny_config, tmp_path, capfd):
    # Total batch 4, 2 per process: 6 steps per epoch; killed after step 8 (epoch 1, step 2). Each process
    # draws its own dropout masks: the checkpoint carries both processes' random states.
    opts = ["--epoch", "2", "-o", "TRAIN.batch_size=4"]
    part = tmp_path / "part"
    train_and_die("AttentionLSTM_step8", tiny_config, part, *opts, "-o", "TRAIN.save_interval_steps=4",
                  processes=2)
    assert len(weights.read_pickle(str(part / "AttentionLSTM_step8.pdopt"))["rng"]) == 2
    seed = run_seed(part / "AttentionLSTM_step8")
    shutil.copytree(part, tmp_path / "one")
    out = launch_train(tiny_config, part, *opts, f"--resume={part}/AttentionLSTM_step8")
    assert "continuing at epoch 1 step 2/6 of 2" in out
    launch_train(tiny_config, tmp_path / "full", *opts, "-o", f"TRAIN.seed={seed}")
    assert_same_run(part, tmp_path / "full")

    # In one process (the same total batch): the same batches, dropout drawn anew, and a warning.
    out = train(capfd, tiny_config, tmp_path / "one", *opts, f"--resume={tmp_path}/one/AttentionLSTM_step8")
    assert "was saved by 2 process(es), 1 are running" in out and "step 2/6" in out
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "one" / "metrics.csv")] == ["0", "1"]


def test_unreadable_file_mid_run_is_skipped_with_a_warning(tiny_config, tmp_path, capfd):
    with open(tmp_path / "train.list", encoding="utf-8") as f:
        first = f.readline().rsplit(" ", 1)[0]
    while not first.endswith(".npy"):
        first = first.rsplit(" ", 1)[0]
    with open(first, "wb") as f:
        f.write(b"not an npy file")  # exists, so the up-front check passes; unreadable when loaded
    out = train(capfd, tiny_config, tmp_path / "ck", "--epoch", "1")
    assert f"skipping {first}" in out
    assert os.path.isfile(tmp_path / "ck" / "AttentionLSTM.pdparams")


def test_keep_checkpoints_prunes_old_epochs(tiny_config, tmp_path, capfd):
    train(capfd, tiny_config, tmp_path / "ck", "--epoch", "4", "-o", "TRAIN.keep_checkpoints=2")
    names = sorted(n for n in os.listdir(tmp_path / "ck") if "_epoch" in n)
    assert names == [f"AttentionLSTM_epoch{k}.{ext}" for k in (2, 3) for ext in ("pdopt", "pdparams")]


def train_files(list_path):
    """The feature files of an AttentionLSTM list, in list order."""
    with open(list_path, encoding="utf-8") as f:
        return [line.split(".npy ")[0] + ".npy" for line in f if line.strip()]


def checkpoints(save_dir):
    return sorted(n for n in os.listdir(save_dir) if n.endswith((".pdparams", ".pdopt"))) \
        if os.path.isdir(save_dir) else []


@pytest.mark.parametrize("max_bad, words", [(0.1, "epoch 0 met 3 unreadable sample(s) of its 24"),
                                             (1.0, "epoch 0 ran 0 of 3 step(s): no readable sample was left (24 "
                                                   "unreadable")])
def test_every_sample_unreadable_stops_with_exit_3_and_no_checkpoint(tiny_config, tmp_path, capfd, max_bad, words):
    # Before: each batch came out empty, so 0 steps per epoch, then checkpoints of the initial weights, exit 0.
    # The default fraction stops at the 3rd unreadable sample; with any fraction, an epoch short of steps stops.
    shutil.copytree(tmp_path / "features", tmp_path / "kept")
    for path in train_files(tmp_path / "train.list"):
        with open(path, "wb") as f:
            f.write(b"not an npy file")
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch=2",
                      "-o", f"TRAIN.max_bad_fraction={max_bad}", capfd=capfd)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert result.returncode == 3 and len(errors) == 1 and "Traceback" not in result.stdout, result.stdout
    assert words in errors[0], errors[0]
    assert str(tmp_path / "train.list") in errors[0]
    assert checkpoints(tmp_path / "ck") == []
    # The files fixed, the same command runs: the stopped run left no record that asks for --overwrite.
    shutil.rmtree(tmp_path / "features")
    shutil.copytree(tmp_path / "kept", tmp_path / "features")
    train(capfd, tiny_config, tmp_path / "ck", "--epoch=2", "-o", f"TRAIN.max_bad_fraction={max_bad}")
    assert "AttentionLSTM.pdparams" in checkpoints(tmp_path / "ck")


@pytest.mark.parametrize("bad, stops", [(2, False), (3, True)])
def test_more_unreadable_samples_than_max_bad_fraction_stop_the_run(tiny_config, tmp_path, capfd, bad, stops):
    # 24 samples an epoch, TRAIN.max_bad_fraction 0.1 (the default): 2 may be replaced, 3 may not.
    for path in train_files(tmp_path / "train.list")[:3 * bad:3]:
        with open(path, "wb") as f:
            f.write(b"not an npy file")
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch=1",
                      "--valid_interval=0", capfd=capfd)
    assert result.stdout.count("another sample takes its place") == bad, result.stdout
    if not stops:
        assert result.returncode == 0, result.stdout
        assert checkpoints(tmp_path / "ck") == ["AttentionLSTM.pdparams", "AttentionLSTM_epoch0.pdopt",
                                                "AttentionLSTM_epoch0.pdparams"]
        return
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert result.returncode == 3 and len(errors) == 1 and "Traceback" not in result.stdout, result.stdout
    assert "epoch 0 met 3 unreadable sample(s) of its 24" in errors[0], errors[0]
    assert "TRAIN.max_bad_fraction=0.1" in errors[0]
    assert checkpoints(tmp_path / "ck") == []
    # The fraction is a config key: a larger one lets the same data train.
    result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={tmp_path / 'ck'}", "--epoch=1",
                      "--valid_interval=0", "-o", "TRAIN.max_bad_fraction=0.2", capfd=capfd)
    assert result.returncode == 0 and "AttentionLSTM.pdparams" in checkpoints(tmp_path / "ck"), result.stdout


@pytest.mark.parametrize("value", ["-0.1", "1.5", ".nan"])
def test_max_bad_fraction_is_checked_like_every_key(tiny_config, value):
    from video_tag.config import load_config
    from video_tag.errors import UserError
    assert load_config(tiny_config)["TRAIN"]["max_bad_fraction"] == 0.1  # the default, for older configs too
    with pytest.raises(UserError, match=r"TRAIN\.max_bad_fraction must be a number in \[0, 1\]"):
        load_config(tiny_config, [f"TRAIN.max_bad_fraction={value}"])


def count_host_fetches(monkeypatch, module):
    """A list that gets the name of every Tensor-to-host fetch (``.numpy()``, ``float()``, ``bool()``, ...)
    made by code of ``module`` itself; each waits for the device."""
    import paddle
    calls = []
    for name in ("numpy", "item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(paddle.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            if sys._getframe(1).f_code.co_filename == module.__file__:
                calls.append(_name)
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(paddle.Tensor, name, counted)
    return calls


def test_the_loss_guard_waits_for_the_device_per_log_line_not_per_step(tiny_config, tmp_path, monkeypatch):
    from video_tag import trainer
    from video_tag.config import load_config
    calls = count_host_fetches(monkeypatch, trainer)
    counts = []
    for batch in (2, 8):  # 12 and 3 steps per epoch, one log line each (step 0)
        calls.clear()
        cfg = load_config(tiny_config, [f"TRAIN.batch_size={batch}", "TRAIN.log_interval=100"])
        trainer.train("AttentionLSTM", cfg, str(tmp_path / str(batch)), epochs=2, valid_interval=0)
        counts.append(len(calls))
    assert counts[0] == counts[1] and counts[0] > 0, (counts, calls)


@pytest.mark.parametrize("save_interval, kept", [(3, ["AttentionLSTM_step3.pdopt", "AttentionLSTM_step3.pdparams"]),
                                                 (0, [])])
def test_a_nan_loss_stops_the_run_before_the_next_checkpoint(tiny_config, tmp_path, monkeypatch, save_interval,
                                                             kept):
    import dataclasses
    from video_tag import trainer
    from video_tag.config import load_config
    from video_tag.errors import RunError
    from video_tag.models import MODELS
    spec = MODELS["AttentionLSTM"]
    calls = []

    def loss(logits, labels, world):
        value, per_video = spec.loss(logits, labels, world)
        calls.append(1)
        return (value * float("nan"), per_video) if len(calls) == 5 else (value, per_video)

    monkeypatch.setitem(MODELS, "AttentionLSTM", dataclasses.replace(spec, loss=loss))
    # Batch 2: 12 steps per epoch, a log line every 100 steps (step 0). Step 4's NaN is found before the
    # checkpoint after step 5 (which would hold NaN weights) is written, or before the epoch's.
    cfg = load_config(tiny_config, ["TRAIN.batch_size=2", "TRAIN.log_interval=100",
                                    f"TRAIN.save_interval_steps={save_interval}", "TRAIN.keep_checkpoints=0"])
    with pytest.raises(RunError, match=r"the loss is nan at epoch 0 step 4 \(lower TRAIN.learning_rate\?\); "
                                       r"the batch: .*list line.*list line") as e:
        trainer.train("AttentionLSTM", cfg, str(tmp_path / "ck"), epochs=1, valid_interval=0)
    assert e.value.args[0].count("(list line") == 2
    assert checkpoints(tmp_path / "ck") == kept
    for name in kept[1:]:
        assert all(np.isfinite(v).all() for v in weights.read_state(str(tmp_path / "ck" / name)).values())


def refusal(name, tmp_path):
    """(train.py arguments refused for reason ``name``, a word of the error), given a finished run in ck."""
    if name == "batch larger than the list":
        return ["-o", "TRAIN.batch_size=25"], "fewer than TRAIN.batch_size=25: pass --batch_size=24 or less"
    if name == "pretrain of no matching parameter":
        weights.write_state({"unrelated.w_0": np.zeros(3, np.float32)}, str(tmp_path / "other.pdparams"))
        return [f"--pretrain={tmp_path / 'other'}"], "no parameter matching"
    if name == "mid-epoch resume with another batch":
        return ["-o", "TRAIN.batch_size=4", f"--resume={tmp_path / 'ck' / 'AttentionLSTM_step3'}"], "mid-epoch"
    if name == "resume without its optimizer state":
        shutil.copy(tmp_path / "ck" / "AttentionLSTM_epoch0.pdparams", tmp_path / "lone.pdparams")
        return [f"--resume={tmp_path / 'lone'}"], "optimizer state"
    if name == "malformed validation list":  # the last: the others read this list first
        (tmp_path / "val.list").write_text("a.npy 1\nno labels here\n", encoding="utf-8")
        return [], "val.list:2"
    raise AssertionError(name)


REFUSALS = ["batch larger than the list", "pretrain of no matching parameter", "mid-epoch resume with another batch",
            "resume without its optimizer state", "malformed validation list"]


def test_refusals_come_before_any_side_effect(tiny_config, tmp_path, capfd):
    # A refused run (exit 2) leaves no save_dir: no checkpoint, no metrics.csv, no valid_metrics.jsonl.
    train(capfd, tiny_config, tmp_path / "ck", "--epoch=1", "--valid_interval=0", "-o", "TRAIN.batch_size=2",
          "-o", "TRAIN.save_interval_steps=3", "-o", "TRAIN.keep_checkpoints=0")
    for k, name in enumerate(REFUSALS):
        save_dir = tmp_path / f"refused{k}"
        args, words = refusal(name, tmp_path)
        result = run_main("train.py", *ARGS, f"--config={tiny_config}", f"--save_dir={save_dir}", "--epoch=2",
                          *args, capfd=capfd)
        errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stdout, (name, result.stdout)
        assert words in errors[0], (name, errors[0])
        assert not save_dir.exists(), (name, os.listdir(save_dir))


_CTRL_C_IN_FORK = []  # armed: the next fork() of this process gets a SIGINT while it forks


def _ctrl_c_while_forking():
    if _CTRL_C_IN_FORK and os.getpid() == _CTRL_C_IN_FORK[0]:
        _CTRL_C_IN_FORK.clear()
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_the_fork_of_a_loader_worker_stops_training(tiny_config, tmp_path):
    # A Ctrl-C that landed while the loader forked its workers ran its handler inside logging's at-fork
    # hook, which printed the KeyboardInterrupt and dropped it: training went on (test_ctrl_c_... timed out
    # when its SIGINT met the fork of the validation's workers).
    from video_tag import trainer
    from video_tag.config import load_config
    if not hasattr(test_ctrl_c_during_the_fork_of_a_loader_worker_stops_training, "hooked"):
        os.register_at_fork(before=_ctrl_c_while_forking)  # once per session: hooks stay
        test_ctrl_c_during_the_fork_of_a_loader_worker_stops_training.hooked = True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    earlier = set(multiprocessing.active_children())  # another test's worker may still be ending (xdist)
    _CTRL_C_IN_FORK.append(os.getpid())
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.train("AttentionLSTM", load_config(tiny_config), str(tmp_path / "ck"), epochs=1)
    finally:
        _CTRL_C_IN_FORK.clear()
    assert checkpoints(tmp_path / "ck") == []
    assert not set(multiprocessing.active_children()) - earlier  # the worker forked before the interrupt is gone
