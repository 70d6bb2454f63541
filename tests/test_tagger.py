"""videotag.py: videos in, tags out; equal to tsn_extractor.py followed by predict.py; tags per segment."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, run_main
from video_tag import weights
from video_tag.config import load_config
from video_tag.models import build_model
from video_tag.readers.lists import output_stem

SEG, SHORT, TARGET, FPS = 5, 40, 32, 10
COLOURS = {"red": (0, 0, 255), "blue": (255, 0, 0), "green": (0, 255, 0)}


def write_video(path, colours, seconds_each, size=(64, 48)):
    """An MJPG .avi at FPS frames/s: ``seconds_each`` of each colour in turn, plain frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    for colour in colours:
        for _ in range(int(seconds_each * FPS)):
            frame = np.empty((size[1], size[0], 3), np.uint8)
            frame[:] = COLOURS[colour]
            writer.write(frame)
    writer.release()
    return str(path)


@pytest.fixture
def setup(tmp_path, tsn50_release):
    shutil.copy(tsn50_release[0], tmp_path / "tsn.pdparams")  # release_weights(50, 4, rng 0), made once
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        tsn = yaml.safe_load(f)
    tsn["MODEL"].update(num_layers=50, num_classes=4)
    tsn["INFER"].update(seg_num=SEG, short_size=SHORT, target_size=TARGET)
    (tmp_path / "tsn.yaml").write_text(yaml.safe_dump(tsn), encoding="utf-8")
    with open(os.path.join(ROOT, "configs", "attention_lstm.yaml"), encoding="utf-8") as f:
        lstm = yaml.safe_load(f)
    lstm["MODEL"].update(embedding_size=8, lstm_size=4, num_classes=6, fc_sizes=[16, 8], topk=6)
    lstm["INFER"].update(batch_size=1, num_workers=1)
    (tmp_path / "lstm.yaml").write_text(yaml.safe_dump(lstm), encoding="utf-8")
    model = build_model("AttentionLSTM", load_config(str(tmp_path / "lstm.yaml")))
    weights.write_state(weights.model_state(model), str(tmp_path / "lstm.pdparams"))
    (tmp_path / "labels.txt").write_text("".join(f"标签 {i}\n" for i in range(6)), encoding="utf-8")
    (tmp_path / "v").mkdir()
    return tmp_path


def run_tag(tmp_path, source, save_dir, **kw):
    from video_tag.tagger import tag
    return tag(str(source), str(save_dir), load_config(str(tmp_path / "tsn.yaml")),
               load_config(str(tmp_path / "lstm.yaml")), str(tmp_path / "tsn.pdparams"),
               str(tmp_path / "lstm.pdparams"), str(tmp_path / "labels.txt"), num_workers=1, frame_batch=4, **kw)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_equals_extractor_then_predict(setup, capfd):
    tmp = setup
    videos = [write_video(tmp / "v" / "b 视频.avi", ["blue", "red"], 1.2),
              write_video(tmp / "v" / "a.avi", ["green"], 0.3)]
    (tmp / "v" / "sub").mkdir()
    videos.append(write_video(tmp / "v" / "sub" / "c.avi", ["red", "green", "blue"], 0.7))
    (tmp / "v" / "broken.mp4").write_bytes(b"\x00" * 64)
    assert run_tag(tmp, tmp / "v", tmp / "out", save_features=str(tmp / "feat")) == 1
    lines = read_jsonl(tmp / "out" / "predictions.jsonl")
    # a folder: its videos, recursively, in sorted order; the broken one listed as failed
    assert [r["video"] for r in lines] == sorted(videos)
    assert (tmp / "out" / "failed.list").read_text(encoding="utf-8").startswith(str(tmp / "v" / "broken.mp4"))

    common = ["--use_gpu=False"]
    listing = tmp / "videos.list"
    listing.write_text("\n".join(sorted(videos)) + "\n", encoding="utf-8")
    result = run_main("tsn_extractor.py", "--model_name=TSN", *common, f"--config={tmp}/tsn.yaml",
                      f"--weights={tmp}/tsn.pdparams", f"--filelist={listing}", f"--save_dir={tmp}/ext",
                      "--frame_batch=3", capfd=capfd)
    assert result.returncode == 0, result.stdout
    result = run_main("predict.py", "--model_name=AttentionLSTM", *common, f"--config={tmp}/lstm.yaml",
                      f"--weights={tmp}/lstm.pdparams", f"--filelist={tmp}/ext/features.list",
                      f"--label_file={tmp}/labels.txt", f"--save_dir={tmp}/pred", capfd=capfd)
    assert result.returncode == 0, result.stdout
    reference = read_jsonl(tmp / "pred" / "predictions.jsonl")
    assert len(reference) == len(lines) == 3
    for ours, ref in zip(lines, reference):
        assert [t["class_id"] for t in ours["tags"]] == [t["class_id"] for t in ref["tags"]]
        np.testing.assert_allclose([t["probability"] for t in ours["tags"]],
                                   [t["probability"] for t in ref["tags"]], atol=1e-5)
    # --save_features wrote the extractor's files (same names, features within float rounding)
    manifest = dict(line.split("\t") for line in (tmp / "feat" / "manifest.tsv").read_text(encoding="utf-8").splitlines())
    extracted = dict(line.split("\t") for line in (tmp / "ext" / "manifest.tsv").read_text(encoding="utf-8").splitlines())
    for video in videos:
        assert os.path.basename(manifest[video]) == os.path.basename(extracted[video])
        np.testing.assert_allclose(np.load(manifest[video]), np.load(extracted[video]), rtol=1e-4, atol=1e-4)


def write_frames_video(path, colours, size=(64, 48)):
    """An MJPG .avi at FPS frames/s, frame i plain ``colours[i]`` (BGR)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    for colour in colours:
        frame = np.empty((size[1], size[0], 3), np.uint8)
        frame[:] = colour
        writer.write(frame)
    writer.release()
    return str(path)


def test_segment_tags_follow_the_content(setup):
    tmp = setup
    rng = np.random.default_rng(0)
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(60)]
    video = write_frames_video(tmp / "v" / "changes.avi", palette)  # 6 s, every frame a colour of its own
    short = write_video(tmp / "v" / "red.avi", ["red"], 2.0)
    assert run_tag(tmp, video, tmp / "seg", segment_seconds=1.5, topk=6) == 0
    segments = read_jsonl(tmp / "seg" / "segments.jsonl")
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 1.5), (1.5, 3.0), (3.0, 4.5), (4.5, 6.0)]
    assert read_jsonl(tmp / "seg" / "predictions.jsonl")[0]["video"] == video
    # Window k (frames 15k .. 15k + 14) is sampled as the extractor samples a 15-frame video: its frames
    # 1, 4, 7, 10, 13. Each reference video holds just those 5 frames (a 5-frame video: all are sampled).
    (tmp / "ref").mkdir()
    refs = [write_frames_video(tmp / "ref" / f"w{k}.avi", [palette[15 * k + p] for p in (1, 4, 7, 10, 13)])
            for k in range(4)]
    refs.append(write_frames_video(tmp / "ref" / "late.avi", [palette[p] for p in (2, 5, 8, 11, 14)]))
    listing = tmp / "refs.list"
    listing.write_text("".join(f"{r}\n" for r in refs), encoding="utf-8")
    assert run_tag(tmp, listing, tmp / "refs") == 0
    *expected, late = [{t["class_id"]: t["probability"] for t in r["tags"]}
                       for r in read_jsonl(tmp / "refs" / "predictions.jsonl")]
    # a sample one frame late is told apart by the 1e-4 check below (the gap varies with the random model: 2.5e-4 seen)
    assert max(abs(expected[0][c] - late[c]) for c in late) > 1e-4
    for segment, reference in zip(segments, expected):
        got = {t["class_id"]: t["probability"] for t in segment["tags"]}
        assert max(abs(got[c] - reference[c]) for c in reference) < 1e-4, segment

    # overlapping windows: every 1 s, 2 s long; the last one ends with the video
    assert run_tag(tmp, video, tmp / "overlap", segment_seconds=2, segment_stride=1, overwrite=True) == 0
    spans = [(s["start"], s["end"]) for s in read_jsonl(tmp / "overlap" / "segments.jsonl")]
    assert spans == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (4.0, 6.0)]
    # a video shorter than one window: one segment covering it
    assert run_tag(tmp, short, tmp / "short", segment_seconds=10) == 0
    assert [(s["start"], s["end"]) for s in read_jsonl(tmp / "short" / "segments.jsonl")] == [(0.0, 2.0)]


def test_find_videos(tmp_path):
    from video_tag.errors import UserError
    from video_tag.tagger import find_videos
    (tmp_path / "d" / "z").mkdir(parents=True)
    for name in ("d/b.MP4", "d/a.avi", "d/z/c.mkv", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    assert find_videos(str(tmp_path / "d")) == [str(tmp_path / n) for n in ("d/a.avi", "d/b.MP4", "d/z/c.mkv")]
    listing = tmp_path / "videos.txt"
    listing.write_text("x/海边 日落.mp4\nb.mp4\n\nx/海边 日落.mp4\n", encoding="utf-8")
    assert find_videos(str(listing)) == ["x/海边 日落.mp4", "b.mp4"]
    assert find_videos(str(tmp_path / "d" / "a.avi")) == [str(tmp_path / "d" / "a.avi")]
    with pytest.raises(UserError, match="not found"):
        find_videos(str(tmp_path / "nope.mp4"))


def test_a_crashing_decoder_fails_only_its_video(monkeypatch):
    from fussy_decoder import fussy_stream  # no Paddle: the spawned workers import it
    from video_tag import tagger
    monkeypatch.setattr(tagger, "stream_levels", fussy_stream)
    jobs = list(enumerate(["a", "crash1", "bb", "zero", "ccc", "crash2", "dddd"]))
    with tagger._Streams(jobs, None, num_workers=2) as streams:
        results = {path: [m if m[0] == "failed" else m[0] for m in messages] for _, path, messages in streams}
    # a crashing video fails; its first window comes at most once (a retry does not repeat what was
    # delivered; what the worker held unsent when it died is lost with it)
    for name in ("crash1", "crash2"):
        assert results.pop(name) in (["window", ("failed", "the decoder crashed on this video")],
                                     [("failed", "the decoder crashed on this video")])
    assert results == {"a": ["window", "window", "video"], "bb": ["window", "window", "video"],
                       "zero": ["window", ("failed", "ZeroDivisionError: integer division or modulo by zero")],
                       "ccc": ["window", "window", "video"], "dddd": ["window", "window", "video"]}


def test_a_killed_run_resumes_after_the_videos_it_finished(setup, monkeypatch):
    from video_tag.streaming import PartialJsonl
    tmp = setup
    videos = [write_video(tmp / "v" / f"{c}.avi", [c], 1.0) for c in ("red", "green", "blue")]
    assert run_tag(tmp, tmp / "v", tmp / "full", segment_seconds=0.5) == 0
    full = {name: (tmp / "full" / name).read_bytes() for name in ("predictions.jsonl", "segments.jsonl")}

    real_append, calls = PartialJsonl.append, []

    def append_then_die(self, key, record):
        calls.append(key)
        if len(calls) == 5:  # the second video's first window: its whole-video line was never written
            raise KeyboardInterrupt
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, tmp / "v", tmp / "cut", segment_seconds=0.5)
    assert not (tmp / "cut" / "predictions.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(PartialJsonl, "append", lambda self, key, record: (calls.append(key),
                                                                          real_append(self, key, record)))
    assert run_tag(tmp, tmp / "v", tmp / "cut", segment_seconds=0.5) == 0
    assert sorted({key[0] for key in calls}) == [1, 2]  # the first video was not tagged again
    for name, data in full.items():
        assert (tmp / "cut" / name).read_bytes() == data, name
    assert sorted(videos) == [json.loads(line)["video"] for line in full["predictions.jsonl"].decode().splitlines()]


def test_two_processes_split_the_videos(setup):
    import subprocess
    import sys
    tmp = setup
    for c in ("red", "green", "blue"):
        write_video(tmp / "v" / f"{c}.avi", [c], 0.6)
    (tmp / "v" / "broken.mp4").write_bytes(b"\x00" * 64)
    args = [str(tmp / "v"), f"--tsn_weights={tmp}/tsn.pdparams", f"--tsn_config={tmp}/tsn.yaml",
            f"--lstm_weights={tmp}/lstm.pdparams", f"--config={tmp}/lstm.yaml", f"--label_file={tmp}/labels.txt",
            "--use_gpu=False", "--num_workers=1", "--segment_seconds=0.3"]
    assert run_tag(tmp, tmp / "v", tmp / "one", segment_seconds=0.3) == 1
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp / "log"), os.path.join(ROOT, "videotag.py"), *args,
                             f"--save_dir={tmp}/two"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300)
    logs = [(tmp / "log" / f"workerlog.{r}").read_text(encoding="utf-8") for r in (0, 1)]
    assert result.returncode == 1, result.stdout + "".join(logs)  # rank 0 carries the exit code
    for name in ("predictions.jsonl", "segments.jsonl"):
        one, two = read_jsonl(tmp / "one" / name), read_jsonl(tmp / "two" / name)
        assert [(r["video"], r.get("start")) for r in two] == [(r["video"], r.get("start")) for r in one]
        for a, b in zip(one, two):
            assert [t["class_id"] for t in a["tags"]] == [t["class_id"] for t in b["tags"]]
            np.testing.assert_allclose([t["probability"] for t in b["tags"]],
                                       [t["probability"] for t in a["tags"]], atol=1e-6)
    assert (tmp / "two" / "failed.list").read_text() == (tmp / "one" / "failed.list").read_text() != ""
    assert not [n for n in os.listdir(tmp / "two") if "partial" in n]
    # sorted: blue, broken, green, red -> rank 1 decodes broken.mp4 (and red), rank 0 never opens it
    assert "cannot read" in logs[1] and "broken.mp4" in logs[1] and "cannot read" not in logs[0]


def test_save_features_in_the_chosen_dtype(setup, capfd):
    from video_tag.tagger import tag
    tmp = setup
    video = write_video(tmp / "v" / "a.avi", ["green", "red"], 0.8)
    saved = {}
    for dtype in ("float32", "uint8"):
        tsn = load_config(str(tmp / "tsn.yaml"), [f"INFER.feature_dtype={dtype}"])
        assert tag(video, str(tmp / f"out_{dtype}"), tsn, load_config(str(tmp / "lstm.yaml")),
                   str(tmp / "tsn.pdparams"), str(tmp / "lstm.pdparams"), str(tmp / "labels.txt"),
                   save_features=str(tmp / dtype), num_workers=1, frame_batch=4) == 0
        saved[dtype] = (tmp / dtype / "features.list").read_text(encoding="utf-8").splitlines()
        assert len(saved[dtype]) == 1
        with open(saved[dtype][0][:-4] + ".json", encoding="utf-8") as f:
            assert json.load(f)["feature_dtype"] == dtype
    assert saved["uint8"][0].endswith(".npz")
    reference = np.load(saved["float32"][0])
    with np.load(saved["uint8"][0]) as d:
        got = d["q"] * d["scale"] + d["offset"]
    step = (reference.max(0) - reference.min(0)) / 255
    assert (np.abs(got - reference) <= step / 2 + 1e-5 * np.abs(reference).max()).all()

    result = run_main("videotag.py", video, f"--tsn_weights={tmp}/tsn.pdparams", f"--tsn_config={tmp}/tsn.yaml",
                      f"--lstm_weights={tmp}/lstm.pdparams", f"--config={tmp}/lstm.yaml",
                      f"--label_file={tmp}/labels.txt", "--use_gpu=False", f"--save_features={tmp}/f",
                      "--feature_dtype=float64", capfd=capfd)
    assert result.returncode == 2
    assert result.stdout.strip() == "error: --feature_dtype must be float32, float16 or uint8, got 'float64'"


def test_save_features_in_shards_and_features_lost_with_a_killed_shard_are_made_again(setup, caplog, monkeypatch):
    from video_tag import cli, shards
    from video_tag.errors import UserError
    tmp = setup
    for i, colours in enumerate((["green", "red"], ["blue"], ["red", "blue", "green"])):
        write_video(tmp / "v" / f"{i}.avi", colours, 0.4)
    plain, sharded = tmp / "plain", tmp / "sharded"
    assert run_tag(tmp, tmp / "v", tmp / "out_plain", save_features=str(plain)) == 0
    tsn = load_config(str(tmp / "tsn.yaml"))
    cli.set_shard_size(tsn, 2)
    tag = lambda: __import__("video_tag.tagger").tagger.tag(
        str(tmp / "v"), str(tmp / "out_sharded"), tsn, load_config(str(tmp / "lstm.yaml")),
        str(tmp / "tsn.pdparams"), str(tmp / "lstm.pdparams"), str(tmp / "labels.txt"),
        save_features=str(sharded), num_workers=1, frame_batch=4)

    # Killed while the second shard was being written: its video was tagged, its features are lost.
    real_finish, real_close = shards.ShardWriter.finish, shards.ShardWriter.close

    def killed_at_the_second_shard(self):
        if self.part.endswith("shard-000001.tar.part"):
            self.file.close()  # what a killed process leaves: the .part, unlocked (a minute ago)
            os.utime(self.part, (os.path.getmtime(self.part) - 60,) * 2)
            raise KeyboardInterrupt
        real_finish(self)

    monkeypatch.setattr(shards.ShardWriter, "finish", killed_at_the_second_shard)
    monkeypatch.setattr(shards.ShardWriter, "close", lambda self, interrupted=False: None if interrupted else self.finish())
    with pytest.raises(KeyboardInterrupt):
        tag()
    assert sorted(n for n in os.listdir(sharded) if n.startswith("shard")) == [
        "shard-000000.index.tsv", "shard-000000.tar", "shard-000001.tar.part"]
    monkeypatch.setattr(shards.ShardWriter, "finish", real_finish)
    monkeypatch.setattr(shards.ShardWriter, "close", real_close)
    caplog.set_level("INFO")
    assert tag() == 0
    assert "1 to tag, 2 done before" in caplog.text and "removed" in caplog.text
    members = (sharded / "features.list").read_text(encoding="utf-8").splitlines()
    assert [os.path.basename(os.path.dirname(m)) for m in members] == ["shard-000000.tar"] * 2 + ["shard-000001.tar"]
    files = (plain / "features.list").read_text(encoding="utf-8").splitlines()
    assert [os.path.basename(m) for m in members] == [os.path.basename(f) for f in files]
    for member, file in zip(members, files):  # the same features as one file per video, byte for byte
        assert shards.read_member(member) == open(file, "rb").read()
    assert ((tmp / "out_sharded" / "predictions.jsonl").read_text(encoding="utf-8")
            == (tmp / "out_plain" / "predictions.jsonl").read_text(encoding="utf-8"))
    with pytest.raises(UserError, match="--shard_size must be 0"):
        cli.set_shard_size(tsn, -1)


def kill_at_append(monkeypatch, number):
    """Make the ``number``-th line a run writes kill it (KeyboardInterrupt), as SIGKILL would leave it;
    returns the restore function, which then records the keys written in ``calls``."""
    from video_tag.streaming import PartialJsonl
    real_append, calls = PartialJsonl.append, []

    def append_then_die(self, key, record):
        calls.append(key)
        if len(calls) == number:
            raise KeyboardInterrupt
        real_append(self, key, record)

    def counting():
        calls.clear()
        monkeypatch.setattr(PartialJsonl, "append", lambda self, key, record: (calls.append(key),
                                                                              real_append(self, key, record)))
        return calls

    monkeypatch.setattr(PartialJsonl, "append", append_then_die)
    return counting


def replace_file(path, write):
    """Replace ``path`` with new content (``write(temporary path)``) by a rename, as a user's copy would."""
    tmp = path + ".new.avi"
    write(tmp)
    os.replace(tmp, path)


def test_a_video_replaced_after_a_killed_run_is_tagged_again(setup, monkeypatch):
    tmp = setup
    videos = sorted(write_video(tmp / "v" / f"{c}.avi", [c], 1.0) for c in ("red", "green", "blue"))
    counting = kill_at_append(monkeypatch, 7)  # blue and green written (2 windows and the video each)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, tmp / "v", tmp / "cut", segment_seconds=0.5)
    replace_file(videos[0], lambda p: write_video(p, ["red", "green"], 0.8))  # blue.avi: other content
    calls = counting()
    assert run_tag(tmp, tmp / "v", tmp / "cut", segment_seconds=0.5) == 0
    assert sorted({key[0] for key in calls}) == [0, 2]  # the replaced video again, green kept
    assert run_tag(tmp, tmp / "v", tmp / "fresh", segment_seconds=0.5) == 0
    for name in ("predictions.jsonl", "segments.jsonl"):
        assert (tmp / "cut" / name).read_bytes() == (tmp / "fresh" / name).read_bytes(), name


def test_a_video_replaced_while_it_is_decoded_fails_and_is_tagged_again(setup, monkeypatch):
    """What a video is recorded as (its size and mtime) is taken before it is decoded: one replaced while it
    is decoded is never recorded under its new state; it fails (loudly) and the next run tags it."""
    from video_tag import tagger
    tmp = setup
    videos = sorted(write_video(tmp / "v" / f"{c}.avi", [c], 0.6) for c in ("red", "blue"))
    real_tag_video, replaced = tagger.tag_messages, []

    def replaced_while_decoding(*args):
        if not replaced:  # the first video is being decoded: a user copies another over it
            replace_file(videos[0], lambda p: write_video(p, ["green", "red"], 1.0))
            replaced.append(os.stat(videos[0]))
        return real_tag_video(*args)

    monkeypatch.setattr(tagger, "tag_messages", replaced_while_decoding)
    assert run_tag(tmp, tmp / "v", tmp / "out", save_features=str(tmp / "feat")) == 1
    assert (tmp / "out" / "failed.list").read_text(encoding="utf-8") == f"{videos[0]}\t{tagger.CHANGED}\n"
    assert [r["video"] for r in read_jsonl(tmp / "out" / "predictions.jsonl")] == [videos[1]]
    assert (tmp / "feat" / "features.list").read_text(encoding="utf-8").count("\n") == 1
    monkeypatch.setattr(tagger, "tag_messages", real_tag_video)
    assert run_tag(tmp, tmp / "v", tmp / "out", save_features=str(tmp / "feat")) == 0
    manifest = (tmp / "feat" / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    feature = dict(line.split("\t") for line in manifest)[videos[0]]
    with open(os.path.splitext(feature)[0] + ".json", encoding="utf-8") as f:
        record = json.load(f)
    assert (record["size"], record["mtime_ns"]) == (replaced[0].st_size, replaced[0].st_mtime_ns)
    assert run_tag(tmp, tmp / "v", tmp / "fresh") == 0
    assert (tmp / "out" / "predictions.jsonl").read_bytes() == (tmp / "fresh" / "predictions.jsonl").read_bytes()


def test_the_resume_header_holds_a_digest_of_the_list(setup, monkeypatch):
    tmp = setup
    video = write_video(tmp / "v" / "red.avi", ["red"], 0.4)
    listing = tmp / "long.list"
    listing.write_text(video + "\n" + "".join(f"{tmp}/missing/{i:06d} 很长的名字.mp4\n" for i in range(20000)),
                       encoding="utf-8")
    kill_at_append(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, listing, tmp / "out")
    (partial,) = [n for n in os.listdir(tmp / "out") if n.startswith("predictions.jsonl.partial.")]
    with open(tmp / "out" / partial, "rb") as f:
        assert len(f.readline()) < 4096  # 20,001 paths: about 1 MB if they were written out


def test_the_same_list_from_another_folder_is_another_list(setup, monkeypatch):
    """A list of relative paths names other videos from another working directory: even when those have the
    very size and mtime of the first ones, nothing of the first run is reused."""
    tmp = setup
    for folder, colour in (("one", "red"), ("two", "blue")):
        (tmp / folder).mkdir()
        for name in ("a.avi", "b.avi"):
            write_video(tmp / folder / name, [colour], 0.6)
    for name in ("a.avi", "b.avi"):  # the same size and mtime: only the folder tells them apart
        one, two = tmp / "one" / name, tmp / "two" / name
        assert one.stat().st_size == two.stat().st_size
        os.utime(two, ns=(one.stat().st_atime_ns, one.stat().st_mtime_ns))
    listing = tmp / "rel.list"
    listing.write_text("a.avi\nb.avi\n", encoding="utf-8")
    monkeypatch.chdir(tmp / "one")
    counting = kill_at_append(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, listing, tmp / "out")
    monkeypatch.chdir(tmp / "two")
    calls = counting()
    assert run_tag(tmp, listing, tmp / "out") == 0
    assert calls == [[0], [1]]


def test_names_that_are_not_utf8_or_hold_a_tab_or_a_newline(setup):
    """A folder unpacked from a zip made on Windows (GBK names), and names with a TAB or a newline: the videos
    are tagged, the broken one is listed; every output stays valid UTF-8 with one record per line."""
    from video_tag.names import shown, text_path
    tmp = setup
    folder = os.fsencode(tmp / "v")
    gbk = os.fsdecode(folder + b"/" + "海边视频".encode("gbk") + b".avi")
    os.rename(write_video(tmp / "v" / "x.avi", ["red", "blue"], 0.6), gbk)
    tab = write_video(tmp / "v" / "a\tb.avi", ["green"], 0.6)
    broken = os.fsdecode(folder + b"/bad\n" + "名".encode("gbk") + b".mp4")
    with open(broken, "wb") as f:
        f.write(b"\x00" * 64)
    with pytest.raises(UnicodeEncodeError):
        gbk.encode("utf-8")  # what the OS gives: undecodable bytes as surrogates
    assert run_tag(tmp, tmp / "v", tmp / "out", segment_seconds=0.3) == 1
    lines = (tmp / "out" / "predictions.jsonl").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and [json.loads(line)["video"] for line in lines[:-1]] == [shown(tab), shown(gbk)]
    assert shown(gbk) == str(tmp / "v") + "/" + "海边视频".encode("gbk").decode("utf-8", "backslashreplace") + ".avi"
    segments = (tmp / "out" / "segments.jsonl").read_bytes().decode("utf-8").splitlines()
    assert list(dict.fromkeys(json.loads(line)["video"] for line in segments)) == [shown(tab), shown(gbk)]
    failed = (tmp / "out" / "failed.list").read_bytes().decode("utf-8")
    assert failed.count("\n") == 1 and failed.endswith("\n")
    path, reason = failed[:-1].split("\t")
    assert path == text_path(broken) and reason
    assert path == str(tmp / "v") + "/bad\\n" + "名".encode("gbk").decode("utf-8", "backslashreplace") + ".mp4"


def test_threshold_keeps_the_tags_at_or_above_it():
    import paddle
    from video_tag import tagger
    logits = paddle.to_tensor([[2.0, -2.0, 0.0, 1.0]])  # probabilities 0.88, 0.12, 0.5, 0.73
    model = lambda features, lengths: logits  # noqa: E731
    levels = lambda k, threshold: tagger.Levels(list("abcd"), k, threshold, None, 0.5)  # noqa: E731
    top = lambda k, threshold: [t["class_name"] for t in  # noqa: E731
                                levels(k, threshold).tags(tagger._probabilities(model, np.zeros((3, 8), np.float32)))]
    assert top(3, 0.0) == ["a", "d", "c"]
    assert top(3, 0.5) == ["a", "d", "c"]
    assert top(4, 0.6) == ["a", "d"]


def test_the_record_says_what_its_shots_were_tagged_from():
    from video_tag import tagger
    tagged = tagger.Tagged(np.array([0.9, 0.1]), None, [], [], {}, {"duration": 1.0})
    record = lambda *shot_frames: tagger.Levels(list("ab"), 2, 0.0, None, 0.5, *shot_frames).record("v.mp4", tagged)  # noqa: E731
    assert "shot_frames" not in record() and record("shared")["shot_frames"] == "shared"


def test_save_features_keeps_a_name_that_is_not_utf8(setup):
    """features.list, manifest.tsv and the provenance records are UTF-8 text that names the video: a video
    whose name is not UTF-8 is tagged and its features stored, the name written with its undecodable bytes
    as \\xNN (names.text_path), as predictions.jsonl shows it."""
    from video_tag.names import shown, text_path
    tmp = setup
    gbk = os.fsdecode(os.fsencode(tmp / "v") + b"/" + "海边视频".encode("gbk") + b".avi")
    os.rename(write_video(tmp / "v" / "x.avi", ["red", "blue"], 0.6), gbk)
    ok = write_video(tmp / "v" / "ok.avi", ["green"], 0.6)
    assert run_tag(tmp, tmp / "v", tmp / "out", save_features=str(tmp / "feat")) == 0
    assert [r["video"] for r in read_jsonl(tmp / "out" / "predictions.jsonl")] == [ok, shown(gbk)]
    assert not (tmp / "out" / "failed.list").read_text(encoding="utf-8")
    manifest = [line.split("\t") for line in (tmp / "feat" / "manifest.tsv").read_text(encoding="utf-8").splitlines()]
    assert [v for v, _ in manifest] == [ok, text_path(gbk)] and text_path(gbk) == shown(gbk)
    assert all(os.path.isfile(f) for _, f in manifest)
    assert (tmp / "feat" / "features.list").read_text(encoding="utf-8").splitlines() == [f for _, f in manifest]


def test_a_precision_this_machine_lacks_is_refused_before_any_output(setup):
    """fp16 is GPU only: refused (UserError: exit 2) before save_dir or the features folder is made."""
    from video_tag.errors import UserError
    tmp = setup
    video = write_video(tmp / "v" / "a.avi", ["red"], 0.3)
    with pytest.raises(UserError, match="fp16"):
        run_tag(tmp, video, tmp / "out", precision="fp16", use_gpu=False, save_features=str(tmp / "feat"))
    assert not (tmp / "out").exists() and not (tmp / "feat").exists()


@pytest.mark.parametrize("shard_size", [0, 2])
def test_save_features_two_spellings_of_one_video_and_a_name_held_by_another(setup, shard_size, monkeypatch):
    """Two spellings of one video are both tagged, their features stored once (in shards this used to die
    with a KeyError: exit 4); a video whose name is already another video's in the features folder fails
    loudly, the other's features untouched (it used to be tagged and overwrite them)."""
    import types
    from video_tag import cli, tagger
    from video_tag.readers import lists
    tmp = setup
    video = write_video(tmp / "v" / "a.avi", ["red", "blue"], 0.4)
    link = f"{tmp}/v/./a.avi"  # another spelling of the same file: the same name
    (tmp / "v.list").write_text(f"{video}\n{link}\n", encoding="utf-8")
    (tmp / "w").mkdir()
    other = write_video(tmp / "w" / "a.avi", ["green"], 0.4)
    tsn = load_config(str(tmp / "tsn.yaml"))
    cli.set_shard_size(tsn, shard_size)
    same = types.SimpleNamespace(sha1=lambda data: types.SimpleNamespace(hexdigest=lambda: "0" * 40))
    monkeypatch.setattr(lists, "hashlib", same)  # v/a.avi and w/a.avi: one name

    def tag(source, out):
        return tagger.tag(str(source), str(out), tsn, load_config(str(tmp / "lstm.yaml")), str(tmp / "tsn.pdparams"),
                          str(tmp / "lstm.pdparams"), str(tmp / "labels.txt"), save_features=str(tmp / "feat"),
                          num_workers=1, frame_batch=4)

    assert tag(tmp / "v.list", tmp / "out") == 0
    assert [r["video"] for r in read_jsonl(tmp / "out" / "predictions.jsonl")] == [video, link]
    manifest = [line.split("\t") for line in (tmp / "feat" / "manifest.tsv").read_text(encoding="utf-8").splitlines()]
    assert [v for v, _ in manifest] == [video]  # one row per feature file, as the extractor lists them
    feature = np.load(manifest[0][1]) if shard_size == 0 else None
    assert tag(tmp / "w", tmp / "out2") == 1
    failed = (tmp / "out2" / "failed.list").read_text(encoding="utf-8")
    assert failed.startswith(other + "\t") and f"already that of {video}" in failed
    assert not (tmp / "out2" / "predictions.jsonl").read_text(encoding="utf-8")
    after = [line.split("\t") for line in (tmp / "feat" / "manifest.tsv").read_text(encoding="utf-8").splitlines()]
    assert after == manifest
    if feature is not None:
        np.testing.assert_array_equal(np.load(manifest[0][1]), feature)


SHOT_LENGTHS = (30, 12, 7, 21)  # frames per shot at 25 frames/s: hard cuts at 30, 42, 49


def write_shot_video(path, lengths=SHOT_LENGTHS, seed=0):
    """An H.264 video (160x96, 25 frames/s) of textured scenes with moving objects, hard cuts between."""
    from shot_videos import Scene, encode_decode, shot_frames
    frames, cuts = shot_frames([(Scene(seed + k), n) for k, n in enumerate(lengths)], ["cut"] * (len(lengths) - 1))
    encode_decode(frames, path)
    return str(path), cuts


def write_lossless(path, frames):
    """RGB frames into an FFV1 .avi (lossless: OpenCV decodes them back bit for bit), 25 frames/s."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def validate_timeline(path):
    import jsonschema
    with open(os.path.join(ROOT, "video_tag", "timeline.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    with open(path, encoding="utf-8") as f:
        timeline = json.load(f)
    jsonschema.validate(timeline, schema)
    return timeline


def probabilities(tags):
    return {t["class_id"]: t["probability"] for t in tags}


def count_network_frames(monkeypatch):
    """Count the frames that go through the TSN engine of the next runs: returns a one-item list."""
    from video_tag import extractor
    real, count = extractor.build_engine, [0]

    def build(*args, **kwargs):
        engine = real(*args, **kwargs)
        run = engine.run
        engine.run = lambda x: (count.__setitem__(0, count[0] + len(np.unique(x.reshape(len(x), -1), axis=0))),
                                run(x))[1]  # distinct crops: a last batch is filled up with copies
        return engine

    monkeypatch.setattr(extractor, "build_engine", build)
    return count


def test_each_shot_is_tagged_as_a_video_of_its_own_frames(setup, monkeypatch):
    from video_tag.readers.video_reader import decoded_frames, sample_indices, with_video
    from video_tag.timeline import TimelineOptions
    tmp = setup
    video, cuts = write_shot_video(tmp / "v" / "cuts.mp4")
    computed = count_network_frames(monkeypatch)
    assert run_tag(tmp, video, tmp / "out", segment_seconds=1.0, timeline=TimelineOptions(shots=True)) == 0
    shots = read_jsonl(tmp / "out" / "shots.jsonl")
    # a frame in several samples (the video's, a window's, a shot's) went through the network once
    samples = [(0, 70), (0, 25), (25, 50), (50, 70)] + [(s["start_frame"], s["end_frame"]) for s in shots]
    assert computed == [len({a + p for a, b in samples for p in sample_indices(b - a, SEG, "infer")})]
    assert [(s["start_frame"], s["end_frame"]) for s in shots] == list(zip([0] + cuts, cuts + [sum(SHOT_LENGTHS)]))
    assert [(s["shot"], s["start"], s["end"]) for s in shots] == [
        (k, a / 25, b / 25) for k, (a, b) in enumerate(zip([0] + cuts, cuts + [sum(SHOT_LENGTHS)]))]
    assert {s["video"] for s in shots} == {video}
    # each shot's frames, decoded here, written losslessly as a video of their own, tagged as a whole video
    decoded = with_video(video, lambda cap: [f for _, f in decoded_frames(cap, lambda i: True)])
    (tmp / "ref").mkdir()
    refs = [write_lossless(tmp / "ref" / f"shot{s['shot']}.avi", decoded[s["start_frame"]:s["end_frame"]])
            for s in shots]
    late = write_lossless(tmp / "ref" / "late.avi", decoded[1:cuts[0] + 1])  # the first shot, one frame late
    (tmp / "refs.list").write_text("".join(f"{r}\n" for r in refs + [late]), encoding="utf-8")
    assert run_tag(tmp, tmp / "refs.list", tmp / "refs") == 0
    *expected, shifted = [probabilities(r["tags"]) for r in read_jsonl(tmp / "refs" / "predictions.jsonl")]
    # a sample one frame off is told apart by the 1e-5 check below (the gap varies with the random model and
    # Paddle's threads: 4e-5 to 1e-3 seen)
    assert max(abs(expected[0][c] - shifted[c]) for c in shifted) > 1e-5
    for shot, reference in zip(shots, expected):
        got = probabilities(shot["tags"])
        assert got.keys() == reference.keys() and max(abs(got[c] - reference[c]) for c in got) < 1e-5, shot
    # the timeline holds every level as the JSONL files have them, valid against the schema
    from video_tag.readers.lists import output_stem
    timeline = validate_timeline(tmp / "out" / "timelines" / f"{output_stem(video)}.json")
    segments = read_jsonl(tmp / "out" / "segments.jsonl")
    assert timeline["video"] == video and timeline["name"] == output_stem(video) and timeline["shot_frames"] == "own"
    assert timeline["metadata"] == {"duration": sum(SHOT_LENGTHS) / 25, "fps": 25.0, "frames": sum(SHOT_LENGTHS),
                                    "width": 160, "height": 96, "codec": "h264"}
    assert timeline["tags"] == read_jsonl(tmp / "out" / "predictions.jsonl")[0]["tags"]
    assert timeline["shots"] == [{k: v for k, v in s.items() if k != "video"} for s in shots]
    assert timeline["segments"] == [{"segment": k, "start": s["start"], "end": s["end"], "tags": s["tags"]}
                                    for k, s in enumerate(segments)]
    assert len(segments) == 3 and segments[-1]["end"] == 2.8
    expected = expected_ranges(shots, "shot", 0.5) + expected_ranges(segments, "segment", 0.5)
    assert timeline["ranges"] == sorted(expected, key=lambda r: (r["start"], r["class_id"], r["level"]))
    assert {r["level"] for r in timeline["ranges"]} == {"shot", "segment"}
    assert any(r["end"] - r["start"] > shots[0]["end"] for r in timeline["ranges"] if r["level"] == "shot")


SHARED_LENGTHS = (25, 9, 14, 22)  # cuts at 25, 34, 48: with 2-second windows the shot 25..33 holds no sampled frame


def shared_samples(shots, total, window):
    """What ``--shot_frames shared`` tags each shot from, worked out here: the union of the video's sample
    and the windows' (``window`` frames each), the part inside each shot, ``sample_indices`` over it
    where it holds more than SEG, the shot's first frame where it holds none. Returns (union, samples)."""
    from video_tag.readers.video_reader import sample_indices
    spans = [(0, total)] + [(a, min(total, a + window)) for a in range(0, total, window)]
    union = sorted({a + p for a, b in spans for p in sample_indices(b - a, SEG, "infer")})
    samples = []
    for a, b in shots:
        inside = [i for i in union if a <= i < b]
        if len(inside) > SEG:
            inside = [inside[p] for p in sample_indices(len(inside), SEG, "infer")]
        samples.append(inside or [a])
    return union, samples


def test_shared_shots_are_tagged_from_the_frames_the_video_and_windows_sample(setup, tsn50_release, monkeypatch):
    import paddle
    from models.test_tsn import ref_features
    from test_extractor_backbone import reference_frames
    from video_tag.models import MODELS
    from video_tag.readers.video_reader import decoded_frames, sample_indices, with_video
    from video_tag.timeline import TimelineOptions
    tmp = setup
    video, cuts = write_shot_video(tmp / "v" / "cuts.mp4", lengths=SHARED_LENGTHS, seed=3)
    total = sum(SHARED_LENGTHS)
    # an own-frames run first, into the same folder: its lines must not be taken for the shared run's
    assert run_tag(tmp, video, tmp / "out", segment_seconds=2.0, timeline=TimelineOptions(shots=True)) == 0
    own = [probabilities(s["tags"]) for s in read_jsonl(tmp / "out" / "shots.jsonl")]
    computed = count_network_frames(monkeypatch)
    options = TimelineOptions(shots=True, shot_frames="shared")
    assert run_tag(tmp, video, tmp / "out", segment_seconds=2.0, timeline=options) == 0
    shots = read_jsonl(tmp / "out" / "shots.jsonl")
    bounds = [(s["start_frame"], s["end_frame"]) for s in shots]
    assert bounds == list(zip([0] + cuts, cuts + [total])) and cuts == [25, 34, 48]
    union, samples = shared_samples(bounds, total, 50)
    extra = [s for s in samples if s[0] not in union]
    assert samples[0][-1] == 24 and samples[2][0] == 34 and extra == [[25]] and len(samples[3]) == SEG
    # no frame beyond the union's and the first frame of the shot that holds none, each once. The last window
    # (frames 50..69, where the video ends) is sampled on a second pass, and so is the shot that takes frames
    # of it (48..69, with the video's 48 and 62, which the video's sample then takes from that pass too)
    assert max(samples[3]) >= 50 and not set(samples[3]) & set(sample_indices(50, SEG, "infer"))  # window 0's
    assert computed == [len(union) + len(extra)]
    # the reference: the frames decoded here, the original's resize and crop, the functional ResNet50, the
    # AttentionLSTM over as many features as the shot has
    decoded = with_video(video, lambda cap: [f for _, f in decoded_frames(cap, lambda i: True)])
    model = build_model("AttentionLSTM", load_config(str(tmp / "lstm.yaml")))
    weights.load_weights(model, str(tmp / "lstm.pdparams"))
    model.eval()
    (tmp / "ref").mkdir()
    gaps = []
    for k, (shot, sample) in enumerate(zip(shots, samples)):
        clip = write_lossless(tmp / "ref" / f"shot{k}.avi", [decoded[i] for i in sample])
        features = ref_features(tsn50_release[1], 50, reference_frames(clip, len(sample), SHORT, TARGET))
        with paddle.no_grad():
            logits = model(paddle.to_tensor(features[None]), paddle.to_tensor(np.array([len(sample)], np.int64)))
        reference = MODELS["AttentionLSTM"].probabilities(logits).numpy()[0]
        got = probabilities(shot["tags"])
        assert sorted(got) == list(range(6)), shot
        assert max(abs(got[c] - reference[c]) for c in got) < 1e-5, (shot, sample)
        gaps.append(max(abs(got[c] - own[k][c]) for c in got))
    assert max(gaps) > 1e-5, gaps  # not the own-frames tags (per shot the gap varies with the random model)
    timeline = validate_timeline(tmp / "out" / "timelines" / f"{output_stem(video)}.json")
    assert timeline["shots"] == [{k: v for k, v in s.items() if k != "video"} for s in shots]
    assert timeline["shot_frames"] == "shared"  # the timeline says what its shots were tagged from


def test_a_run_of_own_shot_frames_killed_is_not_resumed_as_shared(setup, monkeypatch):
    from video_tag.timeline import TimelineOptions
    tmp = setup
    for seed, name in enumerate(("a", "b")):
        write_shot_video(tmp / "v" / f"{name}.mp4", lengths=(12, 9), seed=seed)
    shared = TimelineOptions(shots=True, shot_frames="shared")
    assert run_tag(tmp, tmp / "v", tmp / "full", timeline=shared) == 0
    counting = kill_at_append(monkeypatch, 4)  # own frames: a's 2 shots and its video line, b's first shot
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, tmp / "v", tmp / "cut", timeline=TimelineOptions(shots=True))
    calls = counting()
    assert run_tag(tmp, tmp / "v", tmp / "cut", timeline=shared) == 0
    assert sorted({key[0] for key in calls}) == [0, 1]  # a tagged again: its lines were of own frames
    for name in ("predictions.jsonl", "shots.jsonl"):
        assert (tmp / "cut" / name).read_bytes() == (tmp / "full" / name).read_bytes(), name


def test_shared_shot_frames_without_shots_are_refused(setup, capfd):
    tmp = setup
    video = write_video(tmp / "v" / "red.avi", ["red"], 0.5)
    result = run_main("videotag.py", video, *videotag_args(tmp), "--shot_frames=shared", f"--save_dir={tmp}/out",
                      capfd=capfd)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert errors == ["error: --shot_frames shared needs --shots"], result.stdout
    assert "Traceback" not in result.stdout and not (tmp / "out").exists()


def expected_ranges(items, level, min_confidence):
    """Tag ranges written out: per class, runs of consecutive items (all classes listed) at or above."""
    found = []
    for c in range(6):
        run = []
        for item in items + [None]:
            p = None if item is None else probabilities(item["tags"])[c]
            if p is not None and p >= min_confidence:
                run.append((item, p))
            elif run:
                found.append({"class_id": c, "class_name": f"标签 {c}", "start": run[0][0]["start"],
                              "end": run[-1][0]["end"], "confidence": max(p for _, p in run), "level": level})
                run = []
    return found


def videotag_args(tmp):
    return [f"--tsn_weights={tmp}/tsn.pdparams", f"--tsn_config={tmp}/tsn.yaml", f"--lstm_weights={tmp}/lstm.pdparams",
            f"--config={tmp}/lstm.yaml", f"--label_file={tmp}/labels.txt", "--use_gpu=False", "--num_workers=1",
            "--frame_batch=4"]


def all_tag_lists(save_dir):
    """Every tags list (and range) of every output of ``save_dir``: ``[(where, [class ids])]``."""
    found = [(name, [t["class_id"] for t in r["tags"]]) for name in ("predictions.jsonl", "segments.jsonl", "shots.jsonl")
             for r in read_jsonl(os.path.join(save_dir, name))]
    for name in os.listdir(os.path.join(save_dir, "timelines")):
        timeline = validate_timeline(os.path.join(save_dir, "timelines", name))
        found += [("timeline", [t["class_id"] for t in timeline["tags"]])]
        found += [("timeline", [t["class_id"] for t in row["tags"]]) for row in timeline["shots"] + timeline["segments"]]
        found += [("ranges", [r["class_id"] for r in timeline["ranges"]])]
    return found


def test_include_and_exclude_filter_every_level(setup, capfd):
    tmp = setup
    video, _ = write_shot_video(tmp / "v" / "cuts.mp4")
    result = run_main("videotag.py", video, *videotag_args(tmp), "--shots", "--segment_seconds=1", "--min_confidence=0",
                      f"--save_dir={tmp}/out", "--include=标签 1,4", "--include", "标签 5", "--include=0",
                      "--exclude=0", "--topk=2", capfd=capfd)
    assert result.returncode == 0, result.stdout
    lists = all_tag_lists(tmp / "out")
    assert len(lists) == 1 + 3 + 4 + 1 + 7 + 1  # video, segments, shots; in the timeline: video, both, ranges
    assert all(len(ids) == 2 and set(ids) <= {1, 4, 5} for where, ids in lists if where != "ranges"), lists
    # min_confidence 0: per level, one range per class over the whole video
    assert sorted(ids for where, ids in lists if where == "ranges") == [[1, 1, 4, 4, 5, 5]]


@pytest.mark.parametrize("flags, message", [
    (["--min_confidence=1.5"], "--min_confidence must be between 0 and 1, got 1.5"),
    (["--min_confidence=-0.1"], "--min_confidence must be between 0 and 1, got -0.1"),
    (["--include=标签 1,cat"], "--include: no class named or numbered 'cat' in the label file"),
    (["--exclude=6"], "--exclude: no class named or numbered '6'"),
    (["--report", "--save_dir=/proc/videotag_report"], "cannot write the report into /proc/videotag_report"),
])
def test_bad_timeline_flags_are_refused_before_any_work(setup, capfd, flags, message):
    tmp = setup
    video = write_video(tmp / "v" / "red.avi", ["red"], 0.5)
    save_dir = [f"--save_dir={tmp}/out"] if not any(f.startswith("--save_dir") for f in flags) else []
    result = run_main("videotag.py", video, *videotag_args(tmp), "--shots", *save_dir, *flags, capfd=capfd)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stdout
    assert "Traceback" not in result.stdout and not (tmp / "out").exists()


def test_a_video_without_frames_fails_and_one_frame_is_one_shot(setup):
    from video_tag.timeline import TimelineOptions
    tmp = setup
    one, _ = write_shot_video(tmp / "v" / "one.mp4", lengths=(1,))
    (tmp / "v" / "empty.mp4").write_bytes(b"")
    header_only = write_video(tmp / "v" / "none.avi", [], 0)  # a container, no frame
    options = TimelineOptions(shots=True, report=False)
    assert run_tag(tmp, tmp / "v", tmp / "out", segment_seconds=1.0, timeline=options) == 1
    failed = dict(line.split("\t") for line in (tmp / "out" / "failed.list").read_text(encoding="utf-8").splitlines())
    assert sorted(failed) == sorted([str(tmp / "v" / "empty.mp4"), header_only])
    shots = read_jsonl(tmp / "out" / "shots.jsonl")
    assert [(s["video"], s["start_frame"], s["end_frame"], s["start"], s["end"]) for s in shots] == [(one, 0, 1, 0.0, 0.04)]
    assert os.listdir(tmp / "out" / "timelines") == [f"{output_stem(one)}.json"]


def test_a_killed_run_with_shots_resumes(setup, monkeypatch):
    from video_tag.timeline import TimelineOptions
    tmp = setup
    for seed, name in enumerate(("a", "b")):
        write_shot_video(tmp / "v" / f"{name}.mp4", lengths=(12, 9), seed=seed)
    options = TimelineOptions(shots=True)
    assert run_tag(tmp, tmp / "v", tmp / "full", timeline=options) == 0
    names = ("predictions.jsonl", "shots.jsonl")
    full = {name: (tmp / "full" / name).read_bytes() for name in names}
    assert len(read_jsonl(tmp / "full" / "shots.jsonl")) == 4
    counting = kill_at_append(monkeypatch, 4)  # a's 2 shots and its video line, b's first shot
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, tmp / "v", tmp / "cut", timeline=options)
    assert not (tmp / "cut" / "shots.jsonl").exists()
    assert len(os.listdir(tmp / "cut" / "timelines")) == 2  # b's was written before its lines
    calls = counting()
    assert run_tag(tmp, tmp / "v", tmp / "cut", timeline=options) == 0
    assert sorted({key[0] for key in calls}) == [1]
    for name, data in full.items():
        assert (tmp / "cut" / name).read_bytes() == data, name
    for name in os.listdir(tmp / "full" / "timelines"):
        assert (tmp / "cut" / "timelines" / name).read_bytes() == (tmp / "full" / "timelines" / name).read_bytes()
    # killed without --shots, resumed with it: the video done before has no shots, it is tagged again
    counting = kill_at_append(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp, tmp / "v", tmp / "again")
    calls = counting()
    assert run_tag(tmp, tmp / "v", tmp / "again", timeline=options) == 0
    assert sorted({key[0] for key in calls}) == [0, 1]
    assert (tmp / "again" / "shots.jsonl").read_bytes() == full["shots.jsonl"]


def test_a_frame_sampled_twice_goes_through_the_network_once():
    from video_tag import tagger

    class Engine:  # the mean of each crop, as the network's "feature"; counts the distinct crops run
        batch_size, frames = 3, 0

        def run(self, x):
            assert len(x) == self.batch_size  # one input shape: the last batch filled up
            Engine.frames += len(np.unique(x.reshape(len(x), -1), axis=0))
            return x.mean(axis=(2, 3))

    rng = np.random.default_rng(0)
    distinct = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(4)]
    sample = [distinct[i % 4] for i in range(10)]  # a 4-frame shot sampled with seg_num 10
    features = tagger._features(Engine(), sample, 32)
    assert Engine.frames == 4
    Engine.frames = 0
    copies = [f.copy() for f in sample]  # equal values, distinct frames: each computed
    np.testing.assert_array_equal(features, tagger._features(Engine(), copies, 32))
    assert Engine.frames == 10 and features.shape == (10, 3)
    # by number, with a cache: a frame of an earlier sample (another level's) is not computed again
    cache = tagger.FeatureCache(size=3)
    Engine.frames = 0
    np.testing.assert_array_equal(tagger._features(Engine(), copies, 32, [i % 4 for i in range(10)], cache), features)
    assert Engine.frames == 4 and sorted(cache.features) == [1, 2, 3]  # the last 3 kept
    Engine.frames = 0
    again = tagger._features(Engine(), [distinct[3], distinct[0], distinct[2]], 32, [3, 0, 2], cache)
    np.testing.assert_array_equal(again, features[[3, 0, 2]])
    assert Engine.frames == 1 and list(cache.features) == [3, 2, 0]  # 0 computed again, 1 the oldest dropped


def test_report_shows_every_shot_thumbnail_and_the_tag_names(setup, capfd):
    import html.parser
    from urllib.parse import unquote
    tmp = setup
    video, cuts = write_shot_video(tmp / "v" / "a b#1.mp4")
    (tmp / "v" / "broken.mp4").write_bytes(b"\x00" * 64)
    result = run_main("videotag.py", tmp / "v", *videotag_args(tmp), "--shots", "--report", f"--save_dir={tmp}/out",
                      capfd=capfd)
    assert result.returncode == 1, result.stdout  # broken.mp4 failed; the others are in the report
    name = output_stem(video)
    timeline = validate_timeline(tmp / "out" / "timelines" / f"{name}.json")
    assert [s["thumbnail"] for s in timeline["shots"]] == [f"thumbs/{name}/shot_{k:04d}.jpg" for k in range(4)]
    for shot in timeline["shots"]:
        image = cv2.imread(str(tmp / "out" / shot["thumbnail"]))
        assert image.shape == (96, 160, 3)  # a JPEG of the frame, as large as the video (under 192 wide)
    assert "thumbnail" not in read_jsonl(tmp / "out" / "shots.jsonl")[0]

    class Page(html.parser.HTMLParser):
        images, text = [], []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                Page.images.append(unquote(dict(attrs)["src"]))

        def handle_data(self, data):
            Page.text.append(data)

    Page().feed((tmp / "out" / "report.html").read_text(encoding="utf-8"))
    assert sorted(Page.images) == [s["thumbnail"] for s in timeline["shots"]]
    text = " ".join(Page.text)
    assert all(t["class_name"] in text for t in timeline["tags"]) and "broken" not in text


def test_thresholds_per_tag_keep_each_tag_at_or_above_its_own(tmp_path, capfd):
    import paddle
    from video_tag import tagger
    from video_tag.thresholds import write_thresholds
    logits = paddle.to_tensor([[2.0, -2.0, 0.0, 1.0]])  # probabilities 0.88, 0.12, 0.5, 0.73
    model = lambda features, lengths: logits  # noqa: E731
    levels = tagger.Levels(list("abcd"), 3, [0.9, 0.0, 0.5, 0.7], None, 0.5)
    top = [t["class_name"] for t in levels.tags(tagger._probabilities(model, np.zeros((3, 8), np.float32)))]
    assert top == ["d", "c"]  # a below 0.9; b not in the top 3

    # videotag.py: a thresholds file of another label set is refused before any work, in one line
    for name in ("tsn", "lstm"):
        (tmp_path / f"{name}.pdparams").write_bytes(b"")
    (tmp_path / "labels.txt").write_text("".join(f"tag {c}\n" for c in range(3396)), encoding="utf-8")
    write_thresholds(str(tmp_path / "t.csv"), [(0.5, None, None, 0, "best_f1")] * 3, ["x", "y", "z"])
    video = tmp_path / "a.mp4"
    video.write_bytes(b"\0" * 16)
    result = run_main("videotag.py", video, f"--tsn_weights={tmp_path}/tsn.pdparams",
                      f"--lstm_weights={tmp_path}/lstm.pdparams", f"--label_file={tmp_path}/labels.txt",
                      f"--thresholds={tmp_path}/t.csv", f"--save_dir={tmp_path}/out", "--use_gpu=False", capfd=capfd)
    assert result.returncode == 2
    assert [line for line in result.stdout.splitlines() if "error" in line] == [
        f"error: thresholds file {tmp_path}/t.csv has 3 classes, the label file 3396: it was made for another "
        f"label set (run eval.py --calibrate again)"]
    assert not (tmp_path / "out").exists()


def test_shared_shots_hold_the_features_from_the_first_shot_not_tagged_on(monkeypatch):
    """SharedShots, unit: the features of frames from the first frame of the first shot not tagged yet on
    are held (that frame's own included, also when it comes after the shot before was tagged), none below."""
    from video_tag import tagger

    monkeypatch.setattr(tagger, "_features", lambda engine, frames, target, numbers, cache: np.array(
        [np.full(tagger.FEATURE_DIM, n, np.float32) for n in numbers]).reshape(len(numbers), tagger.FEATURE_DIM))
    monkeypatch.setattr(tagger, "_probabilities", lambda model, features: features[:, 0].tolist())
    engine = type("Engine", (), {"batch_size": 8})()
    probabilities = {}
    shots = tagger.SharedShots(engine, None, 8, None, probabilities)
    for k in range(3):  # shot k: frames 10k..10k+9, sampled at 10k and 10k+5 (sent by the windows)
        shots.add(k, float(k), 10 * k + 10, [None, None], [10 * k, 10 * k + 5])
    shots.features(["f0", "f10"], [0, 10])
    assert probabilities == {} and set(shots.held) == {0, 10}
    shots.features(["f5"], [5])
    assert probabilities == {0: [0.0, 5.0]} and shots.floor == 10 and set(shots.held) == {10}
    shots.features(["f3"], [3])  # a window's frame below the floor
    assert set(shots.held) == {10}
    shots.features(["f15"], [15])
    assert probabilities[1] == [10.0, 15.0] and shots.floor == 20 and not shots.held
    shots.features(["f20"], [20])  # the new floor's own frame, after the shot before was tagged
    shots.features(["f25"], [25])
    shots.finish()
    assert probabilities[2] == [20.0, 25.0] and not shots.held
