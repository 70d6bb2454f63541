"""Every shell command of README.md runs, in README order, in a folder laid out as the commands expect.

The folder holds generated videos, feature files, lists and release-format weights of small models; each
command runs as written, with ``-o`` (``-t`` for videotag.py's TSN) options appended that shrink the
models and frame sizes. Commands that need GPUs, several machines or an installation are listed in
``NOT_RUN`` with the reason; a README command that is neither run nor listed fails the test.
(README's Python serving snippets run in tests/test_export.py.)
"""
import json
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from video_tag.config import load_config
from video_tag.models import build_model
from video_tag.weights import model_state, write_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = re.compile(r"^(\./run|python|pip|tar|CUDA_VISIBLE_DEVICES=\S+ python)\b")

# What a command starts with -> why it is not run here.
NOT_RUN = {
    "./run demo": "the demo itself (README states its measured figures; ./run demo runs it)",
    "./run test": "runs this suite (.ci/run calls it on a clean clone)",
    "pip install": "installation: ./run installs the same packages from setup.py on a clean clone",
    "CUDA_VISIBLE_DEVICES=": "needs GPUs; the CPU launch of train.py below runs instead",
    "python -m paddle.distributed.launch --gpus": "needs GPUs; train.py runs under the launcher on CPU below, "
                                                  "the extractor in tests/test_extractor.py",
    "python -m paddle.distributed.launch --nnodes": "needs two machines",
}

SMALL_LSTM = ["MODEL.embedding_size=8", "MODEL.lstm_size=4", "MODEL.fc_sizes=[16,8]", "TRAIN.batch_size=4",
              "VALID.batch_size=4", "TEST.batch_size=4", "TRAIN.num_workers=1"]
SMALL_TSN = ["MODEL.num_layers=50", "TRAIN.epoch=1", "TRAIN.batch_size=2", "VALID.batch_size=2",
             "TEST.batch_size=2", "INFER.seg_num=4", "TRAIN.seg_num=2", "VALID.seg_num=2", "TEST.seg_num=2"] + [
    f"{s}.{k}={v}" for s in ("TRAIN", "VALID", "TEST", "INFER") for k, v in (("short_size", 40), ("target_size", 32))]


def readme_commands():
    """The shell commands of README's code blocks (4-space indented or fenced, not ```python), in
    order, continuation lines joined and trailing comments dropped."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = re.sub(r"```python\n.*?```", "", f.read(), flags=re.S)
    commands, pending = [], None
    for line in text.splitlines():
        code = line[4:] if line.startswith("    ") else line
        if pending is not None:
            pending += " " + code.strip()
        elif COMMAND.match(code):
            pending = code.strip()
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(re.sub(r"\s+#.*$", "", pending))
        pending = None
    return commands


def shrink(command):
    """``command`` with the options that shrink its models appended (and, under the launcher, its epochs:
    no later command reads that run's checkpoints)."""
    if "videotag.py" in command:
        return command + "".join(f" -o {o}" for o in SMALL_LSTM) + "".join(f" -t {o}" for o in SMALL_TSN)
    model = re.search(r"--model_name=(\w+)", command)
    if not model:
        return command
    small = SMALL_LSTM if model.group(1) == "AttentionLSTM" else SMALL_TSN
    if command.startswith("python -m paddle.distributed.launch") and " train.py " in command:
        small = small + ["TRAIN.epoch=2"]
    return command + "".join(f" -o {o}" for o in small)


def write_video(path, seconds, fps, rng, size=(64, 48)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    colour = rng.integers(0, 256, 3)
    for i in range(int(seconds * fps)):
        frame = np.empty((size[1], size[0], 3), np.uint8)
        frame[:] = (colour + 7 * i) % 256
        writer.write(frame)
    writer.release()
    return path


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def release_weights(model_name, config, overrides, path, seed):
    cfg = load_config(os.path.join(ROOT, "configs", config), overrides)
    rng = np.random.default_rng(seed)
    state = {k: rng.uniform(0.5, 1.5, v.shape) if k.endswith("_variance") else rng.uniform(-0.1, 0.1, v.shape)
             for k, v in model_state(build_model(model_name, cfg)).items()}  # batch-norm variances > 0
    state = {k: v.astype(np.float32) for k, v in state.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_state(state, path)


def workspace(root):
    """The project's scripts and configs, and every file README's commands name."""
    for name in ("train.py", "eval.py", "predict.py", "tsn_extractor.py", "videotag.py", "export_model.py",
                 "tools", "configs", "video_tag"):
        os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "bin"))
    with open(os.path.join(root, "bin", "python"), "w", encoding="utf-8") as f:  # `python` is this interpreter
        f.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    os.chmod(os.path.join(root, "bin", "python"), 0o755)
    release_weights("AttentionLSTM", "attention_lstm.yaml", SMALL_LSTM, os.path.join(root, "weights", "attention_lstm.pdparams"), 0)
    release_weights("TSN", "tsn.yaml", SMALL_TSN, os.path.join(root, "weights", "tsn.pdparams"), 1)
    write_lines(os.path.join(root, "label_3396.txt"), [f"标签 {i}" for i in range(3396)])
    write_lines(os.path.join(root, "my_labels.txt"), [f"class {i}" for i in range(400)])

    rng = np.random.default_rng(2)
    video = lambda name, seconds=2.0: write_video(os.path.join(root, name), seconds, 4, rng)  # noqa: E731
    video("my_video.mp4")
    video("my_videos/b.mp4")
    video("my_videos/a/海边 日落.mp4")
    video("long_video.mp4", seconds=70)
    clips = [video(f"data/mp4/clip {i}.mp4") for i in range(8)]
    write_lines(os.path.join(root, "data", "train_videos.list"), [f"{c} {i % 3} {3000 + i}" for i, c in enumerate(clips)])
    write_lines(os.path.join(root, "data", "TsnExtractor.list"), clips[:3])
    write_lines(os.path.join(root, "data", "dataset", "tsn", "train.list"), [f"{c} {i % 4}" for i, c in enumerate(clips)])
    for name in ("val", "test", "infer"):
        write_lines(os.path.join(root, "data", "dataset", "tsn", f"{name}.list"), [f"{c} {i % 4}" for i, c in enumerate(clips[:4])])
    features = []
    for i in range(6):
        path = os.path.join(root, "data", "features", f"v{i}.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, rng.standard_normal((int(rng.integers(3, 6)), 2048)).astype(np.float32))
        features.append(f"{path} {i % 3} 3395")
    for name in ("val", "test", "infer"):
        write_lines(os.path.join(root, "data", "dataset", "attention_lstm", f"{name}.list"), features)


def test_readme_commands_run(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 15 and commands[:2] == ["./run demo", "./run test"], commands
    root = str(tmp_path)
    workspace(root)
    env = {**os.environ, "PATH": os.path.join(root, "bin") + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    ran, checked = 0, set()
    for command in commands:
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            continue
        assert command.startswith(("python ", "tar ")), f"README command neither run nor listed in NOT_RUN: {command}"
        done = subprocess.run(shrink(command), shell=True, cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, encoding="utf-8", timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}"
        ran += 1
        for start, check in PROMISES.items():
            if command.startswith(start):
                check(root)
                checked.add(start)
    assert ran >= 15
    assert checked == set(PROMISES), set(PROMISES) - checked  # README still has every command checked


# What README says each command writes, checked right after the command (later ones overwrite some).

def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def read_rows(path, sep="\t"):
    with open(path, encoding="utf-8") as f:
        return [line.split(sep) for line in f.read().splitlines()]


def check_tags(tags, topk, threshold=0.0, names=None):
    """README: up to ``topk`` tags ``{"class_id", "class_name", "probability"}`` by descending probability."""
    assert len(tags) <= topk
    for tag in tags:
        assert set(tag) == {"class_id", "class_name", "probability"}, tag
        assert threshold <= tag["probability"] <= 1 and (names is None or names[tag["class_id"]] == tag["class_name"])
    assert [t["probability"] for t in tags] == sorted((t["probability"] for t in tags), reverse=True)


def label_names(root, name="label_3396.txt"):
    with open(os.path.join(root, name), encoding="utf-8") as f:
        return f.read().splitlines()


def promised_tags_of_a_folder(root):
    """``videotag.py my_videos/ --topk 5 --threshold 0.3``: one line per video of the folder (recursively,
    in sorted order), keys video and tags; failed.list empty."""
    out = os.path.join(root, "data", "videotag_results")
    lines = read_jsonl(os.path.join(out, "predictions.jsonl"))
    assert [set(line) for line in lines] == [{"video", "tags"}] * 2
    assert [line["video"] for line in lines] == sorted(["my_videos/b.mp4", "my_videos/a/海边 日落.mp4"])
    for line in lines:
        check_tags(line["tags"], 5, 0.3, label_names(root))
    assert open(os.path.join(out, "failed.list"), encoding="utf-8").read() == ""


def promised_segments(root):
    """``--segment_seconds 30 --segment_stride_seconds 10`` on 70 s: windows of 30 s every 10 s, the last
    ending with the video; the whole video's line (20 tags by default) in predictions.jsonl."""
    out = os.path.join(root, "data", "videotag_results")
    (whole,) = read_jsonl(os.path.join(out, "predictions.jsonl"))
    assert whole["video"] == "long_video.mp4" and len(whole["tags"]) == 20
    check_tags(whole["tags"], 20, names=label_names(root))
    segments = read_jsonl(os.path.join(out, "segments.jsonl"))
    assert [set(s) for s in segments] == [{"video", "start", "end", "tags"}] * 5
    spans = [(s["start"], s["end"]) for s in segments]
    assert np.allclose(spans, [(0, 30), (10, 40), (20, 50), (30, 60), (40, 70)], atol=0.25), spans  # 4 fps
    for s in segments:
        assert s["video"] == "long_video.mp4"
        check_tags(s["tags"], 20, names=label_names(root))


def promised_training_list(root):
    """``tsn_extractor.py --train_list``: a feature [INFER.seg_num, 2048] float32 per video with its
    provenance record, features.list, manifest.tsv (video<TAB>feature), and the training list line for
    line with the same labels."""
    out = os.path.join(root, "data", "tsn_features")
    videos = read_rows(os.path.join(root, "data", "train_videos.list"), " ")
    manifest = dict(read_rows(os.path.join(out, "manifest.tsv")))
    features = [row[0] for row in read_rows(os.path.join(out, "features.list"))]
    assert sorted(features) == sorted(manifest.values()) and len(features) == len(videos) == 8
    train = read_rows(os.path.join(root, "data", "dataset", "attention_lstm", "train.list"), " ")
    assert len(train) == len(videos)
    for video, line in zip(videos, train):
        path = " ".join(video[:-2])  # "data/mp4/clip 0.mp4 0 3000": two labels
        assert line[-2:] == video[-2:] and " ".join(line[:-2]) == manifest[path]
        feature = np.load(os.path.join(root, manifest[path]))
        assert feature.shape == (4, 2048) and feature.dtype == np.float32  # INFER.seg_num=4 here
        with open(os.path.join(root, os.path.splitext(manifest[path])[0] + ".json"), encoding="utf-8") as f:
            record = json.load(f)
        assert record["video"] == path and record["size"] == os.path.getsize(os.path.join(root, path))
        assert {"real_path", "mtime_ns", "weights_sha256", "precision", "seg_num", "short_size", "target_size",
                "videotag"} <= set(record)


def promised_frames(root):
    """``video2frames.py``: frames.list ``folder num_frames label`` in list order, each folder holding
    img_00001.jpg ... img_<num_frames>.jpg."""
    out = os.path.join(root, "data", "frames", "train")
    listed = read_rows(os.path.join(root, "data", "dataset", "tsn", "train.list"), " ")
    with open(os.path.join(out, "frames.list"), encoding="utf-8") as f:
        rows = [line.rsplit(" ", 2) for line in f.read().splitlines()]
    assert [row[2] for row in rows] == [video[-1] for video in listed]
    for folder, count, _ in rows:
        assert int(count) == 8  # 2 s at 4 fps
        assert sorted(n for n in os.listdir(os.path.join(root, folder)) if n.startswith("img_")) == [
            f"img_{i:05d}.jpg" for i in range(1, int(count) + 1)]


def promised_predictions(root):
    """``predict.py`` (AttentionLSTM): one line per video of INFER.filelist, in list order, its path as
    listed, 20 tags."""
    listed = read_rows(os.path.join(root, "data", "dataset", "attention_lstm", "infer.list"), " ")
    lines = read_jsonl(os.path.join(root, "data", "predict_results", "attention_lstm", "predictions.jsonl"))
    assert [line["video"] for line in lines] == [row[0] for row in listed]
    for line in lines:
        assert set(line) == {"video", "tags"} and len(line["tags"]) == 20
        check_tags(line["tags"], 20, names=label_names(root))


def promised_shards(root):
    """``--shard_size 1000``: the members of shard-000000.tar in features.list, an index line per member."""
    out = os.path.join(root, "data", "tsn_shards")
    members = [row[0] for row in read_rows(os.path.join(out, "features.list"))]
    shard = os.path.join(out, "shard-000000.tar")
    assert len(members) == 3 and all(os.path.normpath(os.path.join(root, os.path.dirname(m))) == shard for m in members)
    index = read_rows(os.path.join(out, "shard-000000.index.tsv"))
    assert index[0] == ["member", "offset", "size"]
    assert {os.path.basename(m) for m in members} <= {row[0] for row in index[1:]}


def promised_export(root):
    """``export_model.py``: attention_lstm.json + attention_lstm.pdiparams (+ .onnx with paddle2onnx)."""
    out = os.path.join(root, "data", "export")
    for name in ("attention_lstm.json", "attention_lstm.pdiparams"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary folder left


PROMISES = {
    "python videotag.py my_videos/": promised_tags_of_a_folder,
    "python videotag.py long_video.mp4 --segment_seconds": promised_segments,
    "python tsn_extractor.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn.pdparams "
    "--filelist=./data/train_videos.list": promised_training_list,
    "python tools/video2frames.py": promised_frames,
    "python predict.py --model_name=AttentionLSTM": promised_predictions,
    "python tsn_extractor.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn.pdparams "
    "--filelist=./data/TsnExtractor.list --save_dir=./data/tsn_shards": promised_shards,
    "python export_model.py --model_name=AttentionLSTM": promised_export,
}


def test_readme_commands_are_parsed():
    """The parser finds continued commands whole, and NOT_RUN names only commands README has."""
    commands = readme_commands()
    train = [c for c in commands if c.startswith("python train.py --model_name=AttentionLSTM")]
    assert train and all("--save_dir=" in c for c in train), train
    for prefix in NOT_RUN:
        assert any(c.startswith(prefix) for c in commands), f"NOT_RUN lists {prefix!r}, which README no longer has"


@pytest.mark.parametrize("command, expected", [
    ("python eval.py --model_name=TSN --weights=w", "python eval.py --model_name=TSN --weights=w -o MODEL.num_layers=50"),
    ("python tools/video2frames.py --filelist a --out_dir b", "python tools/video2frames.py --filelist a --out_dir b"),
])
def test_shrink(command, expected):
    assert shrink(command).startswith(expected)
    assert shlex.split(shrink(command))


def test_shrink_launched_training_to_two_epochs():
    launched = "python -m paddle.distributed.launch --nproc_per_node 2 train.py --model_name=AttentionLSTM"
    assert shrink(launched).endswith(" -o TRAIN.num_workers=1 -o TRAIN.epoch=2")
    assert "TRAIN.epoch" not in shrink("python train.py --model_name=AttentionLSTM --save_dir=./data/checkpoints")
