"""Every shell command of README.md and of the pages in docs/ runs, in order (README first, then
``DOCS``), in a folder laid out as the commands expect, as a new user would run them from a fresh clone.

The folder is a copy of the files a clone has (``clone_files``: what git tracks, as the working tree has
it, and the untracked files git does not ignore), the commands import its video_tag, and it holds generated
videos, lists and release-format weights of small models in the places README documents (where
``./run fetch`` puts the release files); each command runs as written, with ``-o``
(``-t`` for videotag.py's TSN) options appended that shrink the models and frame sizes. Commands that need
GPUs, several machines, the network or an installation are listed in ``NOT_RUN`` with the reason; a
command that is neither run nor listed fails the test. The other tests check what a reader follows
without running it: every flag a command or README's text names exists in that script's ``--help``,
every link to docs/ and its anchor exists, README's length. (docs/deploy.md's Python snippets run in
tests/test_export.py.)
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import run_main

from video_tag.config import load_config
from video_tag.models import build_model
from video_tag.weights import model_state, write_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = re.compile(r"^(\./run|python|pip|tar|CUDA_VISIBLE_DEVICES=\S+ python)\b")

# What a command starts with -> why it is not run here.
DOCS = ["extraction.md", "training.md", "deploy.md", "reference.md", "troubleshooting.md", "performance.md",
        "internals.md"]  # the pages of docs/ whose commands run after README's, in this order
NOT_RUN = {
    "./run demo": "the demo itself (README states its measured figures; ./run demo runs it)",
    "./run test": "runs this suite (.ci/run calls it on a clean clone)",
    "./run fetch": "downloads the release; generated release-format files stand in its documented places",
    "pip install": "installation: ./run installs the same packages from setup.py on a clean clone",
    "python -m pip install": "installation of Paddle's GPU build from Paddle's index (no GPU here)",
    "python bench/": "a benchmark: minutes each, run by hand; docs/performance.md has its figures",
    "CUDA_VISIBLE_DEVICES=": "needs GPUs; the CPU launch of train.py below runs instead",
    "python -m paddle.distributed.launch --gpus": "needs GPUs; train.py runs under the launcher on CPU below, "
                                                  "the extractor in tests/test_extractor.py",
    "python -m paddle.distributed.launch --nnodes": "needs two machines",
    "python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml -o TRAIN.extend_from":
        "needs a label file of the 3396 release names then new ones; tests/test_extend.py runs train.py so",
}

SMALL_LSTM = ["MODEL.embedding_size=8", "MODEL.lstm_size=4", "MODEL.fc_sizes=[16,8]", "TRAIN.batch_size=4",
              "VALID.batch_size=4", "TEST.batch_size=4", "TRAIN.num_workers=1"]
SMALL_TSN = ["MODEL.num_layers=50", "TRAIN.epoch=1", "TRAIN.batch_size=2", "VALID.batch_size=2",
             "TEST.batch_size=2", "INFER.seg_num=4", "TRAIN.seg_num=2", "VALID.seg_num=2", "TEST.seg_num=2"] + [
    f"{s}.{k}={v}" for s in ("TRAIN", "VALID", "TEST", "INFER") for k, v in (("short_size", 40), ("target_size", 32))]


def readme_commands(pages=None):
    """The shell commands of the code blocks (4-space indented or fenced, not ```python) of README.md, then
    of ``DOCS`` (or of ``pages``, paths from the project root), in order, continuation lines joined and
    trailing comments dropped."""
    pages = pages or ["README.md"] + [os.path.join("docs", name) for name in DOCS]
    commands = []
    for page in pages:
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            commands += page_commands(f.read())
    return commands


def page_commands(text):
    """The shell commands of one Markdown page's code blocks (see ``readme_commands``)."""
    text = re.sub(r"```python\n.*?```", "", text, flags=re.S)
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
    if "run_exported.py" in command:  # the frames of the small TSN the export was made with
        return command + "".join(f" -t {o}" for o in SMALL_TSN)
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


def clone_files(root=ROOT):
    """The paths (relative to ``root``) a fresh clone of it has, as the working tree has them now: the
    files git tracks (deleted ones left out) and the untracked ones it does not ignore (a new file counts
    before its commit). Skips without git, or when ``root`` is not the top of a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: README's commands run in a copy of the files git tracks")
    top = subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(root):
        pytest.skip(f"{root} is not a git checkout ({top.stdout.strip()}): README's commands run in a copy of "
                    f"the files git tracks")
    listed = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            stdout=subprocess.PIPE, text=True, encoding="utf-8", check=True).stdout
    return sorted({name for name in listed.split("\0") if name and os.path.lexists(os.path.join(root, name))})


def test_clone_files(tmp_path):
    """Tracked files as they are now, untracked ones git does not ignore; not ignored or deleted ones."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       stdout=subprocess.DEVNULL)
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    with pytest.raises(pytest.skip.Exception, match="is not a git checkout"):
        clone_files(str(tmp_path))
    git("init", "-q")
    for name in ("kept.py", "changed.py", "deleted.py", ".gitignore", "sub/dir/tracked.txt"):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text("*.log\n" if name == ".gitignore" else name, encoding="utf-8")
    git("add", ".")
    git("commit", "-q", "-m", "files")
    (tmp_path / "changed.py").write_text("changed", encoding="utf-8")
    (tmp_path / "deleted.py").unlink()
    (tmp_path / "new file.py").write_text("new", encoding="utf-8")
    (tmp_path / "run.log").write_text("ignored", encoding="utf-8")
    assert clone_files(str(tmp_path)) == [".gitignore", "changed.py", "kept.py", "new file.py", "sub/dir/tracked.txt"]
    with pytest.raises(pytest.skip.Exception, match="is not a git checkout"):  # a folder inside a checkout
        clone_files(str(tmp_path / "sub"))


def workspace(root):
    """A fresh clone, as files (``clone_files``, copied: the working tree's versions, uncommitted changes
    included; copies, not links, so that no command can write into the checkout), plus every file README's
    commands name in its documented place: generated release-format weights and labels where ``./run fetch``
    puts them, videos and lists. ``python`` on the PATH of ``root/bin`` is this interpreter."""
    for name in clone_files():
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(root, name), follow_symlinks=False)
    os.makedirs(os.path.join(root, "bin"))
    with open(os.path.join(root, "bin", "python"), "w", encoding="utf-8") as f:  # `python` is this interpreter
        f.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    os.chmod(os.path.join(root, "bin", "python"), 0o755)
    release_weights("AttentionLSTM", "attention_lstm.yaml", SMALL_LSTM, os.path.join(root, "weights", "attention_lstm.pdparams"), 0)
    release_weights("TSN", "tsn.yaml", SMALL_TSN, os.path.join(root, "weights", "tsn.pdparams"), 1)
    write_lines(os.path.join(root, "label_3396.txt"), [f"标签 {i}" for i in range(3396)])
    write_lines(os.path.join(root, "my_tsn_labels.txt"), [f"tsn class {i}" for i in range(400)])

    rng = np.random.default_rng(2)
    video = lambda name, seconds=2.0: write_video(os.path.join(root, name), seconds, 4, rng)  # noqa: E731
    video("my_video.mp4")
    video("my_videos/b.mp4")
    video("my_videos/a/海边 日落.mp4")
    video("long_video.mp4", seconds=70)
    # README's fine-tune: a folder per class, 12 classes of 4 videos: tools/make_lists.py splits them into
    # 24 training videos (its --batch_size=16), 12 validation, 12 test.
    for k in range(12):
        for i in range(4):
            video(f"my_dataset/class {k:02d}/clip {i}.mp4", seconds=1.0)
    clips = [video(f"data/mp4/clip {i}.mp4") for i in range(8)]
    write_lines(os.path.join(root, "data", "TsnExtractor.list"), clips[:3])
    write_lines(os.path.join(root, "data", "dataset", "tsn", "train.list"), [f"{c} {i % 4}" for i, c in enumerate(clips[:8])])
    for name in ("val", "test", "infer"):
        write_lines(os.path.join(root, "data", "dataset", "tsn", f"{name}.list"), [f"{c} {i % 4}" for i, c in enumerate(clips[:4])])


def test_readme_commands_run(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 15 and commands[:2] == ["./run demo", "./run test"], commands
    root = str(tmp_path)
    workspace(root)
    # The clone's video_tag, as `pip install -e .` of README's install gives it (not this checkout's).
    env = {**os.environ, "PATH": os.path.join(root, "bin") + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    where = subprocess.run(["python", "-c", "import video_tag; print(video_tag.__file__)"], cwd=os.path.join(root, "data"),
                           env=env, stdout=subprocess.PIPE, text=True, check=True).stdout  # from data/: by PYTHONPATH
    assert where == os.path.join(root, "video_tag", "__init__.py") + "\n", where
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
    assert sorted(features) == sorted(manifest.values()) and len(features) == len(videos) == 24
    train = read_rows(os.path.join(root, "data", "dataset", "attention_lstm", "train.list"), " ")
    assert len(train) == len(videos)
    for video, line in zip(videos, train):
        path = " ".join(video[:-1])  # "my_dataset/class 03/clip 0.mp4 3": the class's id
        assert line[-1:] == video[-1:] and " ".join(line[:-1]) == manifest[path]
        assert video[-1] == str(int(path.split("/")[1].split()[1]))  # class NN: id NN (names sorted)
        feature = np.load(os.path.join(root, manifest[path]))
        assert feature.shape == (4, 2048) and feature.dtype == np.float32  # INFER.seg_num=4 here
        with open(os.path.join(root, os.path.splitext(manifest[path])[0] + ".json"), encoding="utf-8") as f:
            record = json.load(f)
        assert record["video"] == path and record["size"] == os.path.getsize(os.path.join(root, path))
        assert {"real_path", "mtime_ns", "weights_sha256", "precision", "seg_num", "short_size", "target_size",
                "videotag"} <= set(record)


def promised_lists(root):
    """``make_lists.py --folders my_dataset/``: my_labels.txt names the 12 class folders in sorted order;
    each class has 2 training, 1 validation and 1 test video (80/10/10, at least one each)."""
    assert label_names(root, "my_labels.txt") == [f"class {k:02d}" for k in range(12)]
    for name, per_class in (("train", 2), ("val", 1), ("test", 1)):
        rows = read_rows(os.path.join(root, "data", f"{name}_videos.list"), " ")
        assert sorted(int(row[-1]) for row in rows) == sorted(list(range(12)) * per_class), name


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
    """``predict.py`` (AttentionLSTM, 12 classes of one's own): one line per video of the test list the
    extractor wrote, in list order, its path as listed, every one of the 12 classes (topk 20) named from
    my_labels.txt."""
    listed = read_rows(os.path.join(root, "data", "dataset", "attention_lstm", "test.list"), " ")
    lines = read_jsonl(os.path.join(root, "data", "predict_results", "attention_lstm", "predictions.jsonl"))
    assert len(lines) == 12 and [line["video"] for line in lines] == [" ".join(row[:-1]) for row in listed]
    for line in lines:
        assert set(line) == {"video", "tags"} and len(line["tags"]) == 12
        check_tags(line["tags"], 20, names=label_names(root, "my_labels.txt"))


def promised_best_checkpoint(root):
    """README's fine-tune: a validation list, so ``_best`` is written, with the final weights and epochs."""
    out = os.path.join(root, "data", "checkpoints")
    for name in ("AttentionLSTM_best.pdparams", "AttentionLSTM.pdparams", "AttentionLSTM_epoch9.pdparams", "metrics.csv"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.csv"), encoding="utf-8") as f:
        rows = f.read().splitlines()
    assert len(rows) == 11 and rows[1].split(",")[-1] == "12"  # 10 epochs, each validated on the 12 videos


def promised_own_tags(root):
    """``videotag.py my_videos/`` with the fine-tuned model: its 12 classes, named from my_labels.txt."""
    lines = read_jsonl(os.path.join(root, "data", "my_tags", "predictions.jsonl"))
    assert len(lines) == 2
    for line in lines:
        assert len(line["tags"]) == 12
        check_tags(line["tags"], 20, names=label_names(root, "my_labels.txt"))


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
    "python tools/make_lists.py --folders my_dataset/": promised_lists,
    "python videotag.py my_videos/ --topk 5": promised_tags_of_a_folder,
    "python videotag.py long_video.mp4 --segment_seconds": promised_segments,
    "python tsn_extractor.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn.pdparams "
    "--filelist=./data/train_videos.list": promised_training_list,
    "python tools/video2frames.py": promised_frames,
    "python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml "
    "--pretrain=./weights/attention_lstm --save_dir=./data/checkpoints": promised_best_checkpoint,
    "python predict.py --model_name=AttentionLSTM": promised_predictions,
    "python videotag.py my_videos/ --lstm_weights": promised_own_tags,
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


# What a reader follows without running it.

SCRIPTS = {"videotag.py", "tsn_extractor.py", "train.py", "eval.py", "predict.py", "export_model.py",
           "tools/video2frames.py", "tools/make_lists.py", "tools/run_exported.py", "tools/fetch_release.py",
           "serve.py"}


def script_flags(script, capfd):
    """The flags ``script --help`` lists (``--name`` and ``-x`` forms)."""
    done = run_main(script, "--help", capfd=capfd)
    assert done.returncode == 0, done.stdout
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9_]*)", done.stdout))


def command_flags(command):
    """(script, flags) of a documented command of ours, or None: the flags after the script's name (a
    launcher's own flags come before it), ``--name=value`` as ``--name``."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        if word in SCRIPTS:
            return word, {w.split("=", 1)[0] for w in words[i + 1:] if re.match(r"--?[a-z]", w)}
    return None


@pytest.fixture(scope="module")
def flags_of():
    return {}


def test_documented_commands_use_existing_flags(capfd, flags_of):
    """Every command of README and docs/ that runs one of our scripts (also those not run here: GPU and
    cluster forms) names only flags that script's --help lists."""
    checked = 0
    for command in readme_commands():
        found = command_flags(command)
        if found is None:
            continue
        script, flags = found
        if script not in flags_of:
            flags_of[script] = script_flags(script, capfd)
        unknown = flags - flags_of[script]
        assert not unknown, f"{command}: {script} has no {sorted(unknown)}"
        checked += 1
    assert checked >= 20


def test_readme_text_names_existing_flags(capfd, flags_of):
    """Every ``--flag`` README's text names (in code spans and commands) is a flag of one of our scripts,
    except pip's, Paddle's launcher's and pytest's own."""
    for script in SCRIPTS - set(flags_of):
        flags_of[script] = script_flags(script, capfd)
    known = set().union(*flags_of.values()) | {"--gpus", "--nnodes", "--master", "--nproc_per_node",
                                               "--dist"}  # pytest-xdist's, in the test command
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_]*)", f.read()))
    assert not named - known, sorted(named - known)


def test_command_flags():
    assert command_flags("python -m paddle.distributed.launch --gpus 0,1 train.py --model_name=TSN -o A.b=1") == (
        "train.py", {"--model_name", "-o"})
    assert command_flags("tar -tf x.tar") is None


def heading_anchors(text):
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_heading_anchors():
    assert heading_anchors("## Mixed precision (`--amp`)\n### The LSTM's gradients\n") == {
        "mixed-precision---amp", "the-lstms-gradients"}


def test_links_between_pages_exist():
    """Every relative link of README.md, CHANGELOG.md, bench/README.md and docs/*.md names a file of the
    repository, and its #anchor a heading of that page."""
    pages = ["README.md", "CHANGELOG.md", "bench/README.md"] + [os.path.join("docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
                                                                 if n.endswith(".md")]
    assert set(DOCS) <= set(os.listdir(os.path.join(ROOT, "docs")))
    links = 0
    for page in pages:
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
            assert os.path.exists(file), f"{page}: link to {target}: no {file}"
            if anchor:
                with open(file, encoding="utf-8") as f:
                    assert anchor in heading_anchors(f.read()), f"{page}: link to {target}: no such heading"
            links += 1
    assert links >= 30


def test_readme_length():
    """A newcomer's README: about 200-250 lines; the rest lives in docs/."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert 150 <= len(lines) <= 260, len(lines)
    text = "\n".join(lines)
    for page in ["docs/" + n for n in DOCS] + ["CHANGELOG.md", "LICENSE", "NOTICE"]:
        assert f"]({page})" in text, f"README does not link {page}"
