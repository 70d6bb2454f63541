"""predict.py streams its predictions and resumes after a kill; multi-process eval/predict equal one process."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import NUM_CLASSES, ROOT
from video_tag import predict as predict_module
from video_tag import weights
from video_tag.config import load_config
from video_tag.errors import RunError
from video_tag.models import build_model
from video_tag.readers.lists import split_labels
from video_tag.streaming import PartialJsonl


@pytest.fixture
def setup(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    model = build_model("AttentionLSTM", cfg)
    weights.write_state(weights.model_state(model), str(tmp_path / "w.pdparams"))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"类别 {i}\n" for i in range(NUM_CLASSES)), encoding="utf-8")
    # 13 videos, one missing in the middle, one listed twice
    lines = open(cfg["INFER"]["filelist"], encoding="utf-8").read().splitlines()
    lines = lines[:4] + [str(tmp_path / "gone.npy")] + lines[4:] + lines[:2]
    listing = tmp_path / "infer.list"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg, str(tmp_path / "w.pdparams"), str(listing), str(labels), lines


def run(setup, save_dir, **kw):
    cfg, weights_path, listing, labels, _ = setup
    return predict_module.predict("AttentionLSTM", cfg, weights_path, listing, labels, str(save_dir), **kw)


def test_killed_run_resumes_to_the_same_output(setup, tmp_path, monkeypatch):
    assert run(setup, tmp_path / "full") == 1  # the missing file
    full = (tmp_path / "full" / "predictions.jsonl").read_bytes()
    videos = [json.loads(line)["video"] for line in full.decode("utf-8").splitlines()]
    assert videos == [split_labels(v)[0] for v in setup[4] if not v.endswith("gone.npy")]
    assert not [n for n in os.listdir(tmp_path / "full") if "partial" in n]

    # A run "killed" after 5 complete lines and half of the 6th (SIGKILL leaves at most a torn last line).
    real_append, count = PartialJsonl.append, [0]

    def append_then_die(self, key, record):
        count[0] += 1
        if count[0] == 6:
            self.file.write(json.dumps({"key": key, **record}).encode("utf-8")[:40])
            self.file.flush()
            raise KeyboardInterrupt
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "cut")
    assert not (tmp_path / "cut" / "predictions.jsonl").exists()
    count[0] = 0
    monkeypatch.setattr(PartialJsonl, "append", lambda self, k, r: (count.__setitem__(0, count[0] + 1),
                                                                    real_append(self, k, r)))
    assert run(setup, tmp_path / "cut") == 1
    assert count[0] == len(videos) - 5  # only the videos after the 5 complete lines were predicted again
    assert (tmp_path / "cut" / "predictions.jsonl").read_bytes() == full
    assert not [n for n in os.listdir(tmp_path / "cut") if "partial" in n]
    assert (tmp_path / "cut" / "failed.list").read_text(encoding="utf-8").startswith(str(tmp_path / "gone.npy"))


def test_a_feature_file_replaced_after_a_killed_run_is_predicted_again(setup, tmp_path, monkeypatch):
    real_append, count = PartialJsonl.append, [0]

    def append_then_die(self, key, record):
        count[0] += 1
        if count[0] == 6:
            raise KeyboardInterrupt
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "cut")
    replaced = split_labels(setup[4][1])[0]  # the second video's features, predicted before the kill
    old = np.load(replaced)
    np.save(replaced, old[::-1] * 2 + 1)  # same shape, other content: other probabilities
    count[0] = 0
    monkeypatch.setattr(PartialJsonl, "append", lambda self, k, r: (count.__setitem__(0, count[0] + 1),
                                                                    real_append(self, k, r)))
    assert run(setup, tmp_path / "cut") == 1
    total = len(setup[4]) - 1  # the missing file has no line
    assert count[0] == total - 5 + 1  # the lines after the kill, and the replaced file's again
    assert run(setup, tmp_path / "fresh") == 1
    fresh = (tmp_path / "fresh" / "predictions.jsonl").read_bytes()
    assert (tmp_path / "cut" / "predictions.jsonl").read_bytes() == fresh


def test_partial_files_of_other_inputs_or_overwrite_start_over(setup, tmp_path, monkeypatch):
    real_append, count = PartialJsonl.append, [0]

    def counting(self, key, record):
        count[0] += 1
        if count[0] == 4:
            raise KeyboardInterrupt
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", counting)
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "out", topk=2)
    count[0] = -100
    assert run(setup, tmp_path / "out", topk=3) == 1  # other topk: nothing reused
    assert count[0] == -100 + 12
    with pytest.raises(KeyboardInterrupt):
        count[0] = 0
        run(setup, tmp_path / "out", topk=3)
    count[0] = -100
    assert run(setup, tmp_path / "out", topk=3, overwrite=True) == 1
    assert count[0] == -100 + 12
    lines = (tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 12 and all(len(json.loads(line)["tags"]) == 3 for line in lines)


def test_disk_full_while_predicting(setup, tmp_path, monkeypatch):
    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    real_append = PartialJsonl.append

    def append_to_full_disk(self, key, record):
        self.file.close()
        self.file = Full()
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", append_to_full_disk)
    with pytest.raises(RunError, match=r"cannot write .*predictions\.jsonl\.partial\.0\.\S+: No space left"):
        run(setup, tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    monkeypatch.setattr(PartialJsonl, "append", real_append)
    assert run(setup, tmp_path / "out") == 1
    assert len((tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()) == 12


def launch(tmp_path, script, *args, env=None):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp_path / "log"), os.path.join(ROOT, script), *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=300)
    logs = [(tmp_path / "log" / f"workerlog.{r}").read_text(encoding="utf-8") for r in (0, 1)]
    return result, logs


def test_two_processes_split_eval_and_predict(setup, tiny_config, tmp_path, capfd):
    from conftest import assert_quiet, run_main, run_script
    cfg, weights_path, listing, labels, lines = setup
    common = ["--model_name=AttentionLSTM", "--use_gpu=False", f"--config={tiny_config}",
              f"--weights={weights_path}"]
    single = run_script("predict.py", *common, f"--filelist={listing}", f"--label_file={labels}",
                        f"--save_dir={tmp_path}/p1", "--topk=5", env={"OMP_NUM_THREADS": "2"})
    assert single.returncode == 1, single.stdout
    assert_quiet(single.stdout)
    result, logs = launch(tmp_path, "predict.py", *common, f"--filelist={listing}", f"--label_file={labels}",
                          f"--save_dir={tmp_path}/p2", "--topk=5")
    assert result.returncode == 1, result.stdout + "".join(logs)  # rank 0 carries the exit code
    for log in logs:
        assert_quiet(log)
    one = [json.loads(line) for line in open(tmp_path / "p1" / "predictions.jsonl", encoding="utf-8")]
    two = [json.loads(line) for line in open(tmp_path / "p2" / "predictions.jsonl", encoding="utf-8")]
    assert [r["video"] for r in two] == [r["video"] for r in one]
    for a, b in zip(one, two):
        assert [t["class_id"] for t in a["tags"]] == [t["class_id"] for t in b["tags"]]
        np.testing.assert_allclose([t["probability"] for t in b["tags"]],
                                   [t["probability"] for t in a["tags"]], atol=1e-6)
    assert (tmp_path / "p2" / "failed.list").read_text() == (tmp_path / "p1" / "failed.list").read_text()
    assert "类别" not in logs[1] and "类别" in logs[0]  # rank 0 alone prints tags
    # each rank read its own half: rank 1 reports only the missing file of its half (list line 5 is rank 0's)
    assert "gone.npy" in logs[0] and "gone.npy" not in logs[1]

    test_list = cfg["TEST"]["filelist"]
    # (in this process: the single predict.py run above and the launched ranks' logs show the quiet output)
    single = run_main("eval.py", *common, f"--filelist={test_list}", f"--save_dir={tmp_path}/e1", "--per_class",
                      capfd=capfd)
    assert single.returncode == 0, single.stdout
    # The launched run also takes the other engine (tests/test_engine.py: same figures within 1e-5).
    result, logs = launch(tmp_path, "eval.py", *common, f"--filelist={test_list}", f"--save_dir={tmp_path}/e2",
                          "--per_class", "--engine=inference")
    assert result.returncode == 0, result.stdout + "".join(logs)
    a = json.load(open(tmp_path / "e1" / "metrics.json"))
    b = json.load(open(tmp_path / "e2" / "metrics.json"))
    assert a["num_videos"] == b["num_videos"] == 10
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert b[key] == pytest.approx(a[key], abs=1e-5), key
    assert "GAP" in logs[0] and "GAP" not in logs[1] and "engine: Paddle Inference" in logs[0]
    for log in logs:
        assert_quiet(log)
    # Per-class AP from the score counts of both processes equals the one-process figures.
    one_rows = (tmp_path / "e1" / "per_class.csv").read_text(encoding="utf-8").splitlines()
    two_rows = (tmp_path / "e2" / "per_class.csv").read_text(encoding="utf-8").splitlines()
    assert len(one_rows) == 1 + cfg["MODEL"]["num_classes"] and two_rows == one_rows


def test_a_failing_rank_ends_the_launch_with_one_line(setup, tiny_config, tmp_path):
    cfg, weights_path, listing, labels, lines = setup
    # Rank 1 finds its disk full when it starts writing; rank 0 would wait for it in a collective.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('PADDLE_TRAINER_ID') == '1':\n"
        "    import errno, video_tag.streaming as s\n"
        "    def full(self, rank):\n"
        "        raise s.RunError(f'cannot write {self.path}.partial.1: ' + os.strerror(errno.ENOSPC))\n"
        "    s.PartialJsonl.open = full\n", encoding="utf-8")
    import time
    start = time.time()
    result, logs = launch(tmp_path, "predict.py", "--model_name=AttentionLSTM", "--use_gpu=False",
                          f"--config={tiny_config}", f"--weights={weights_path}", f"--filelist={listing}",
                          f"--label_file={labels}", f"--save_dir={tmp_path}/out",
                          env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"})
    assert result.returncode != 0 and time.time() - start < 90
    last = [line for line in logs[1].splitlines() if line.startswith("error:")]
    assert last == [f"error: rank 1 of 2: cannot write {tmp_path}/out/predictions.jsonl.partial.1: No space "
                    "left on device"]
    assert not (tmp_path / "out" / "predictions.jsonl").exists()


def test_predict_and_eval_read_shard_members_as_files(setup, tmp_path):
    from video_tag import shards
    from video_tag.evaluate import evaluate
    cfg, weights_path, listing, labels, lines = setup
    plain = [split_labels(l)[0] for l in dict.fromkeys(lines) if not l.endswith("gone.npy")]
    members = {}
    writer = shards.ShardWriter(str(tmp_path), 4, lambda shard, names: members.update(
        {n: os.path.join(shard, n) for n in names}))
    for path in plain:
        with open(path, "rb") as f:
            name = os.path.basename(path)
            writer.add(name, f.read(), name[:-4] + ".json", "{}")
    writer.close()
    in_shards = [members[os.path.basename(p)] for p in plain]

    # eval: a labelled list of members scores as the same list of files
    test_lines = open(cfg["TEST"]["filelist"], encoding="utf-8").read().splitlines()
    labelled = tmp_path / "members_test.list"
    labelled.write_text("".join(f"{members[os.path.basename(split_labels(l)[0])]} "
                                f"{' '.join(map(str, split_labels(l)[1]))}\n" for l in test_lines), encoding="utf-8")
    assert evaluate("AttentionLSTM", cfg, weights_path, cfg["TEST"]["filelist"], str(tmp_path / "e1")) == 0
    assert evaluate("AttentionLSTM", cfg, weights_path, str(labelled), str(tmp_path / "e2")) == 0
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text(encoding="utf-8")) for d in ("e1", "e2")]
    assert metrics[0] == metrics[1] and metrics[0]["num_videos"] == len(test_lines)

    # predict: a list of members, one of them superseded since (taken out of its shard's index)
    shards.drop_members(os.path.dirname(in_shards[5]), [os.path.basename(in_shards[5])])  # superseded
    member_list = tmp_path / "members.list"
    member_list.write_text("\n".join(in_shards) + "\n", encoding="utf-8")
    assert predict_module.predict("AttentionLSTM", cfg, weights_path, listing, labels, str(tmp_path / "p")) == 1
    assert predict_module.predict("AttentionLSTM", cfg, weights_path, str(member_list), labels,
                                  str(tmp_path / "s")) == 1
    read = lambda d: [json.loads(l) for l in (tmp_path / d / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    by_file = {os.path.basename(r["video"]): r["tags"] for r in read("p")}
    got = read("s")
    assert [r["video"] for r in got] == in_shards[:5] + in_shards[6:]
    for r in got:  # the same tags; probabilities to float32 rounding (batches are made up differently)
        want = by_file[os.path.basename(r["video"])]
        assert [t["class_id"] for t in r["tags"]] == [t["class_id"] for t in want]
        np.testing.assert_allclose([t["probability"] for t in r["tags"]], [t["probability"] for t in want], atol=1e-6)
    failed = (tmp_path / "s" / "failed.list").read_text(encoding="utf-8")
    assert failed.startswith(in_shards[5] + "\t") and "not in the index of shard" in failed



def test_thresholds_keep_each_tag_at_or_above_its_own(setup, tiny_config, tmp_path, capfd):
    from conftest import run_main
    from video_tag.thresholds import write_thresholds
    cfg, weights_path, listing, labels, _ = setup
    assert run(setup, tmp_path / "all", topk=NUM_CLASSES) == 1  # the missing file
    everything = [json.loads(line) for line in open(tmp_path / "all" / "predictions.jsonl", encoding="utf-8")]
    probabilities = np.array([t["probability"] for r in everything for t in r["tags"]])
    # per class: a threshold at one of its own probabilities (kept: "at or above"), 0 or 1
    cut = [0.0, 1.0] + [float(np.sort([t["probability"] for r in everything for t in r["tags"]
                                       if t["class_id"] == c])[5]) for c in range(2, NUM_CLASSES)]
    names = [f"类别 {i}" for i in range(NUM_CLASSES)]
    write_thresholds(str(tmp_path / "t.csv"), [(t, None, None, 0, "best_f1") for t in cut], names)
    common = ["--model_name=AttentionLSTM", "--use_gpu=False", f"--config={tiny_config}", f"--weights={weights_path}",
              f"--filelist={listing}", f"--label_file={labels}"]
    result = run_main("predict.py", *common, f"--save_dir={tmp_path}/cut", f"--topk={NUM_CLASSES}",
                      f"--thresholds={tmp_path}/t.csv", capfd=capfd)
    assert result.returncode == 1, result.stdout
    kept = [json.loads(line) for line in open(tmp_path / "cut" / "predictions.jsonl", encoding="utf-8")]
    assert [r["tags"] for r in kept] == [[t for t in r["tags"] if t["probability"] >= cut[t["class_id"]]]
                                         for r in everything]
    assert 0 < sum(len(r["tags"]) for r in kept) < len(probabilities)
    assert all(t["class_id"] != 1 for r in kept for t in r["tags"])
    assert sum(t["class_id"] == 0 for r in kept for t in r["tags"]) == len(everything)
    # with --topk 2, the top 2 first, then the thresholds
    assert run(setup, tmp_path / "top2", topk=2, thresholds=str(tmp_path / "t.csv")) == 1
    top2 = [json.loads(line) for line in open(tmp_path / "top2" / "predictions.jsonl", encoding="utf-8")]
    assert [r["tags"] for r in top2] == [[t for t in r["tags"][:2] if t["probability"] >= cut[t["class_id"]]]
                                         for r in everything]
    # a thresholds file of another label set: one error line, exit 2, before anything is written
    write_thresholds(str(tmp_path / "other.csv"), [(0.5, None, None, 0, "best_f1")] * 3, names[:3])
    result = run_main("predict.py", *common, f"--save_dir={tmp_path}/refused", f"--thresholds={tmp_path}/other.csv",
                      capfd=capfd)
    assert result.returncode == 2
    assert [line for line in result.stdout.splitlines() if "error" in line] == [
        f"error: thresholds file {tmp_path}/other.csv has 3 classes, the label file {NUM_CLASSES}: it was made for another label set (run eval.py --calibrate again)"]
    assert not (tmp_path / "refused").exists()
