"""TSN fine-tuning end to end: train from scratch on generated videos of 3 visually distinct classes,
then eval.py and predict.py on held-out videos. The scripts run in this process (conftest.run_main);
README's TSN commands run as processes in tests/test_readme.py."""
import json
import os

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, run_main

COLOURS = [(40, 40, 220), (40, 200, 40), (220, 60, 40)]  # BGR: red, green, blue scenes


def write_video(path, label, rng, frames=16, w=96, h=72):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    base = np.array(COLOURS[label], np.float32)
    for _ in range(frames):
        img = base + rng.normal(0, 40, (h, w, 3))
        x, y = rng.integers(0, w - 20), rng.integers(0, h - 20)
        img[y:y + 20, x:x + 20] = rng.integers(0, 256, 3)  # a distractor square of any colour
        writer.write(np.clip(img, 0, 255).astype(np.uint8))
    writer.release()
    return str(path)


def make_list(directory, name, per_class, rng):
    os.makedirs(directory / name, exist_ok=True)
    lines = [f"{write_video(directory / name / f'{name} {label}-{i}.avi', label, rng)} {label}"
             for label in range(3) for i in range(per_class)]
    path = directory / f"{name}.list"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.usefixtures("no_curves_png")
def test_train_eval_predict_tsn_from_scratch(tmp_path, capfd):
    rng = np.random.default_rng(0)
    lists = {name: make_list(tmp_path, name, n, rng) for name, n in (("train", 16), ("val", 4), ("test", 5))}
    with open(os.path.join(ROOT, "configs", "tsn-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_layers=50, num_classes=3, topk=2)
    # A small lr and enough steps: from scratch with batches of 6, the batch-norm running statistics used
    # at evaluation lag far behind the training batches until the weights settle (lr decays at 1/3, 2/3).
    # 48 steps (fewer did not reach 0.8 on the test videos), in 6 epochs of 8: each epoch costs a 200 MB
    # checkpoint (~1.2 s) on top of its steps.
    cfg["TRAIN"].update(epoch=6, batch_size=6, learning_rate=0.002, filelist=lists["train"], num_workers=2,
                        log_interval=4, keep_checkpoints=2)  # 200 MB per epoch checkpoint: keep two
    for section, name in (("VALID", "val"), ("TEST", "test"), ("INFER", "test")):
        cfg[section].update(filelist=lists[name], batch_size=6, num_workers=2)
    for section in ("TRAIN", "VALID", "TEST", "INFER"):  # 2 frames of 32x32 a video: the colour is enough
        cfg[section].update(seg_num=2, short_size=40, target_size=32)
    config = tmp_path / "tsn.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    common = ["--model_name=TSN", f"--config={config}", "--use_gpu=False"]

    result = run_main("train.py", *common, f"--save_dir={tmp_path}/ck", "--fix_random_seed=True",
                      "--valid_interval=2", capfd=capfd)
    assert result.returncode == 0, result.stdout
    assert sorted(n for n in os.listdir(tmp_path / "ck") if n.endswith(".pdparams")) == \
        sorted(["TSN.pdparams", "TSN_best.pdparams"] + [f"TSN_epoch{k}.pdparams" for k in (4, 5)])

    result = run_main("eval.py", *common, f"--weights={tmp_path}/ck/TSN", f"--save_dir={tmp_path}/ev",
                      "--per_class", capfd=capfd)
    assert result.returncode == 0, result.stdout
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics) == {"top1_acc", "top5_acc", "loss", "num_videos"}
    assert metrics["num_videos"] == 15 and metrics["top1_acc"] >= 0.8, metrics
    assert "TOP1_ACC" in result.stdout
    # No label file here: names empty; each colour's 5 videos are its positives, ranked by softmax score.
    rows = (tmp_path / "ev" / "per_class.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "class_id,class_name,positives,ap" and len(rows) == 4
    fields = [row.split(",") for row in rows[1:]]
    assert sorted(f[0] for f in fields) == ["0", "1", "2"] and all(f[1:3] == ["", "5"] for f in fields)
    aps = [float(f[3]) for f in fields]
    assert aps == sorted(aps) and aps[0] >= 0.5, aps

    labels = tmp_path / "colours.txt"
    labels.write_text("红\ngreen\nblue\n", encoding="utf-8")
    result = run_main("predict.py", *common, f"--weights={tmp_path}/ck/TSN", f"--label_file={labels}",
                      f"--save_dir={tmp_path}/pr", capfd=capfd)
    assert result.returncode == 0, result.stdout
    rows = [json.loads(line) for line in (tmp_path / "pr" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 15 and all(len(r["tags"]) == 2 for r in rows)
    assert sum(abs(sum(t["probability"] for t in r["tags"])) <= 1.0 + 1e-6 for r in rows) == 15


def tsn_config(tmp_path, train_list, *overrides):
    """A ResNet50 TSN config of 2 frames of 32x32 per video, 3 classes, ``train_list`` to train on."""
    with open(os.path.join(ROOT, "configs", "tsn-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_layers=50, num_classes=3, topk=2)
    cfg["TRAIN"].update(filelist=train_list, num_workers=2, log_interval=1)
    for section in ("TRAIN", "VALID", "TEST", "INFER"):
        cfg[section].update(seg_num=2, short_size=40, target_size=32)
    path = tmp_path / "tsn.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    from video_tag.config import load_config
    return load_config(str(path), list(overrides))


def test_a_training_sample_draws_the_same_whatever_was_loaded_before(tmp_path):
    # A run resumed mid-epoch has a fresh reader; the unbroken run's loaded the epoch's earlier samples,
    # among them a replacement of an unreadable video (an index twice in the epoch). Their draws (frames,
    # crop, flip) for the samples after the checkpoint must be the same.
    from video_tag.readers import VideoReader
    path = make_list(tmp_path, "train", 1, np.random.default_rng(0))  # 3 videos
    cfg = tsn_config(tmp_path, path)
    unbroken = VideoReader(path, "train", cfg)
    np.random.seed(3)  # the epoch's state, which a resume puts back
    for index in (0, 1, 1):
        unbroken.load(index)
    after = [unbroken.load(index)["frames"] for index in (1, 2)]
    resumed = VideoReader(path, "train", cfg)
    np.random.seed(3)
    assert all(np.array_equal(frames, resumed.load(index)["frames"]) for frames, index in zip(after, (1, 2)))


@pytest.mark.usefixtures("no_curves_png")
def test_mid_epoch_resume_is_exact_when_an_index_repeats(tmp_path):
    # 6 videos, one unreadable: its place is taken by the next one of the list, which so comes twice in
    # the epoch, in step 0 and in step 2, after the step checkpoint of step 1. Resumed from that
    # checkpoint, the run ends with the weights of the unbroken one.
    import shutil
    from video_tag import trainer, weights
    from video_tag.sampler import EpochSampler
    rng = np.random.default_rng(1)
    path = make_list(tmp_path, "train", 2, rng)
    # A seed whose step 0 (order[0:2]) has a video whose successor comes in step 2 (order[4:6]), after the
    # loader's prefetch of steps 0 and 1: step 0 loads the successor first, as the bad video's replacement.
    seed, bad = next((seed, int(i)) for seed in range(100) for order in [EpochSampler(6, 2, seed=seed).order(0)]
                     for i in order[:2] if list(order).index((i + 1) % 6) >= 4)
    with open(path, encoding="utf-8") as f:
        video = f.read().splitlines()[bad].rsplit(" ", 1)[0]
    with open(video, "wb") as f:
        f.write(b"not a video")
    cfg = tsn_config(tmp_path, path, "TRAIN.batch_size=2", f"TRAIN.seed={seed}", "TRAIN.save_interval_steps=2",
                     "TRAIN.keep_checkpoints=0", "TRAIN.max_bad_fraction=0.5", "TRAIN.learning_rate=0.01")
    full, part = tmp_path / "full", tmp_path / "part"
    trainer.train("TSN", cfg, str(full), epochs=1, valid_interval=0)
    os.makedirs(part)
    for name in ("TSN_step2.pdparams", "TSN_step2.pdopt", "metrics.csv", "valid_metrics.jsonl"):
        shutil.copy(full / name, part / name)
    trainer.train("TSN", cfg, str(part), epochs=1, valid_interval=0, resume=str(part / "TSN_step2"))
    a, b = (weights.read_state(str(d / "TSN")) for d in (full, part))
    assert all(np.array_equal(a[k], b[k]) for k in a)
