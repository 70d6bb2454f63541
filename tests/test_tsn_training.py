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
