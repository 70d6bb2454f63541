"""tsn_extractor.py end to end: outputs, names, failures, resume, and features equal to a reference
pipeline (every frame decoded as the original did, GUIDE sampling, PIL resize, crop) followed by the
independent functional ResNet of tests/models/test_tsn.py on release-format weights."""
import os
import shutil

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, assert_quiet, noise_in, run_main, run_script
from models.test_tsn import ref_features
from test_extractor_backbone import reference_frames, write_release
from video_tag.readers.lists import read_list

SEG, SHORT, TARGET = 5, 40, 32


def write_video(path, count, w, h, seed):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for _ in range(count):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0))
    writer.release()
    return str(path)


def reference_features(params, video):
    """The original pipeline (test_extractor_backbone.reference_frames: every frame decoded, GUIDE
    sampling, PIL resize to the 4:3 box, centre crop, normalise), then the functional ResNet50."""
    return ref_features(params, 50, reference_frames(video, SEG, SHORT, TARGET))


@pytest.fixture
def setup(tmp_path, tsn50_release):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    videos = [write_video(tmp_path / "a" / "clip 1.avi", 23, 96, 72, 0),
              write_video(tmp_path / "b" / "clip 1.avi", 3, 72, 96, 1),       # portrait, fewer frames than SEG
              write_video(tmp_path / "a" / "海边.avi", 12, 64, 64, 2)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    listing = tmp_path / "videos.list"
    listing.write_text("\n".join([videos[0], videos[1], str(broken), videos[2], videos[0]]) + "\n", encoding="utf-8")
    shutil.copy(tsn50_release[0], tmp_path / "tsn.pdparams")  # write_release(..., 50, 0), made once
    model = tsn50_release[1]
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_layers=50, num_classes=4)
    cfg["INFER"].update(seg_num=SEG, short_size=SHORT, target_size=TARGET)
    (tmp_path / "tsn.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    args = ["--model_name=TSN", f"--config={tmp_path}/tsn.yaml", f"--weights={tmp_path}/tsn",
            f"--filelist={listing}", f"--save_dir={tmp_path}/out", "--use_gpu=False", "--frame_batch=4"]
    return tmp_path, videos, broken, model, args


def test_extract_outputs_and_resume(setup, capfd):
    tmp_path, videos, broken, model, args = setup
    result = run_script("tsn_extractor.py", *args, env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 1, result.stdout  # one video failed
    assert_quiet(result.stdout)  # also with a video FFmpeg cannot read
    out = tmp_path / "out"
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert [os.path.dirname(f) for f in listed] == [str(out)] * 3
    assert [os.path.basename(f)[:-len("_0123456789abcdef.npy")] for f in listed] == ["clip 1", "clip 1", "海边"]
    assert len(set(listed)) == 3
    manifest = [line.split("\t") for line in (out / "manifest.tsv").read_text(encoding="utf-8").splitlines()]
    assert manifest == [[videos[0], listed[0]], [videos[1], listed[1]], [videos[2], listed[2]]]
    failed = (out / "failed.list").read_text(encoding="utf-8").splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{broken}\t")
    assert "Traceback" not in result.stdout

    for video, feature in zip(videos, listed):
        got = np.load(feature)
        assert got.dtype == np.float32 and got.shape == (SEG, 2048)
        ref = reference_features(model, video)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()

    # Resume: nothing is extracted again; a truncated file (a killed run) is redone.
    stamps = [os.path.getmtime(f) for f in listed]
    with open(listed[2], "r+b") as f:
        f.truncate(200)
    broken.unlink()
    (tmp_path / "videos.list").write_text("\n".join(videos) + "\n", encoding="utf-8")
    result = run_script("tsn_extractor.py", *args, "--verbose")
    assert result.returncode == 0, result.stdout
    # Paddle 3.3 prints both when it builds and first runs the predictor; if a Paddle update drops them,
    # take them out of conftest.NOISE.
    assert {"glog line", "oneDNN print"} <= set(noise_in(result.stdout)), result.stdout
    assert [os.path.getmtime(f) for f in listed[:2]] == stamps[:2]
    assert np.load(listed[2]).shape == (SEG, 2048)
    assert (out / "features.list").read_text(encoding="utf-8").splitlines() == listed
    # failed.list keeps the broken video: its last extraction failed (it is no longer in this list)
    assert (out / "failed.list").read_text(encoding="utf-8").startswith(f"{broken}\t")
    assert not [n for n in os.listdir(out) if ".tmp" in n]

    # -o INFER.filelist is honoured when --filelist is not given (flags > -o > config file)
    one = tmp_path / "one.list"
    one.write_text(videos[0] + "\n", encoding="utf-8")
    result = run_main("tsn_extractor.py", *[a for a in args if not a.startswith("--filelist")],
                      "-o", f"INFER.filelist={one}", "--overwrite", capfd=capfd)
    assert result.returncode == 0 and os.path.getmtime(listed[0]) != stamps[0]
    assert os.path.getmtime(listed[1]) == stamps[1]  # not in that list


def test_bad_weights_and_list(setup, capfd):
    tmp_path, videos, broken, model, args = setup
    result = run_main("tsn_extractor.py", *[a for a in args if not a.startswith("--weights")],
                      f"--weights={tmp_path}/missing", capfd=capfd)
    assert result.returncode == 2 and "error: weight file not found" in result.stdout
    assert "Traceback" not in result.stdout
    result = run_main("tsn_extractor.py", *[a for a in args if not a.startswith("--filelist")],
                      f"--filelist={tmp_path}/nope.list", capfd=capfd)
    assert result.returncode == 2 and "nope.list" in result.stdout and "Traceback" not in result.stdout
    result = run_main("tsn_extractor.py", *args, "--feature_dtype=int8", capfd=capfd)
    assert result.returncode == 2, result.stdout
    assert result.stdout.strip() == "error: --feature_dtype must be float32, float16 or uint8, got 'int8'"
    result = run_main("tsn_extractor.py", *args, "-o", "INFER.feature_dtype=bfloat16", capfd=capfd)
    assert result.returncode == 2, result.stdout
    assert result.stdout.strip() == (f"error: config {tmp_path}/tsn.yaml: INFER.feature_dtype must be float32, "
                                     f"float16 or uint8, got 'bfloat16'")


def test_training_list_from_a_labelled_video_list(setup, capfd):
    tmp_path, videos, broken, model, args = setup
    labelled = tmp_path / "labelled videos.list"
    lines = [f"{videos[0]} 3", f"{videos[2]} 0 2", f"{broken} 1", f"{videos[1]} 1 2", f"{videos[0]} 4"]
    labelled.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "lists" / "训练 train.list"
    args = [a for a in args if not a.startswith("--filelist")]
    result = run_main("tsn_extractor.py", *args, f"--filelist={labelled}", f"--train_list={out}", capfd=capfd)
    assert result.returncode == 1, result.stdout  # the broken video failed
    assert f"cannot read {broken}" in result.stdout and "1 left out" in result.stdout
    feature = dict(line.split("\t") for line in (tmp_path / "out" / "manifest.tsv").read_text(
        encoding="utf-8").splitlines())
    assert sorted(feature) == sorted(videos)
    expected = [(feature[videos[0]], [3]), (feature[videos[2]], [0, 2]), (feature[videos[1]], [1, 2]),
                (feature[videos[0]], [4])]
    assert [(e.path, e.labels) for e in read_list(str(out), num_classes=5)] == expected
    assert out.read_text(encoding="utf-8").splitlines()[1] == f"{feature[videos[2]]} 0 2"

    # refused before anything starts: a line without labels, or the list itself as the output
    labelled.write_text(f"{videos[0]} 3\n{videos[1]}\n", encoding="utf-8")
    result = run_main("tsn_extractor.py", *args, f"--filelist={labelled}", f"--train_list={out}", capfd=capfd)
    assert result.returncode == 2 and f"{labelled}:2: expected 'path label [label ...]'" in result.stdout
    result = run_main("tsn_extractor.py", *args, f"--filelist={labelled}", f"--train_list={labelled}", capfd=capfd)
    assert result.returncode == 2 and "must be a new file" in result.stdout, result.stdout


def test_two_processes_share_the_list_and_write_shards_side_by_side(setup):
    import subprocess
    import sys
    from video_tag import feature_files
    tmp_path, videos, broken, model, args = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp_path / "log"), os.path.join(ROOT, "tsn_extractor.py"), *args, "--shard_size=2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    logs = "".join((tmp_path / "log" / f"workerlog.{r}").read_text(encoding="utf-8") for r in (0, 1))
    assert result.returncode != 0, logs  # the broken video makes the run fail, after the others are done
    out = tmp_path / "out"
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    # rank 0: the first video (the broken one failed), rank 1: the other two, each in shards of its own
    assert [os.path.basename(os.path.dirname(f)) for f in listed] in (
        ["shard-000000.tar", "shard-000001.tar", "shard-000001.tar"],
        ["shard-000001.tar", "shard-000000.tar", "shard-000000.tar"])
    assert (out / "failed.list").read_text(encoding="utf-8").startswith(f"{broken}\t")
    for video, feature in zip(videos, listed):
        ref = reference_features(model, video)
        assert np.abs(feature_files.read(feature)[0] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_decode_queue_blames_only_the_videos_that_crash():
    from fussy_decoder import fussy_decode  # a module without Paddle: the workers import it
    from video_tag.extractor import _DecodeQueue
    videos = ["slow1", "crash1", "a", "bb", "zero", "slow22", "crash2", "ccc"]
    with _DecodeQueue(videos, (fussy_decode,), num_workers=2) as decoded:
        results = list(decoded)
    assert [path for path, _, _ in results] == videos
    failed = {path: reason for path, _, reason in results if reason}
    assert failed == {"crash1": "the decoder crashed on this video", "zero": "ZeroDivisionError: integer "
                      "division or modulo by zero", "crash2": "the decoder crashed on this video"}
    for path, frames, reason in results:
        if reason is None:
            assert frames[0, 0] == len(path), path


def extract_in_process(tmp_path, listing, save_dir, weights_file, **infer):
    """``extract`` in this process (no script start-up): the setup's config with ``infer`` overrides."""
    from video_tag.config import load_config
    from video_tag.extractor import extract
    cfg = load_config(str(tmp_path / "tsn.yaml"))
    cfg["INFER"].update(infer)
    return extract(cfg, str(weights_file), str(listing), str(save_dir), batch_size=4, num_workers=1)


def rows(path):
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_provenance_decides_what_resume_skips(setup, caplog):
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "one.list"
    listing.write_text(videos[2] + "\n", encoding="utf-8")
    out = tmp_path / "prov"
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams") == 0
    feature = rows(out / "manifest.tsv")[0][1]
    first = np.load(feature)
    stamp = os.stat(feature).st_mtime_ns

    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams") == 0
    assert os.stat(feature).st_mtime_ns == stamp  # same inputs: skipped

    # Other weights under the same file name: extracted again, with the new weights' features.
    other = write_release(tmp_path / "tsn.pdparams", 50, 1)
    caplog.clear()
    caplog.set_level("INFO")
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams") == 0
    assert "another weights_sha256" in caplog.text
    ref = reference_features(other, videos[2])
    assert np.abs(np.load(feature) - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.abs(np.load(feature) - first).max() > 1e-3

    # Another crop size: extracted again (the shape alone would not tell).
    stamp = os.stat(feature).st_mtime_ns
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams", short_size=48) == 0
    assert os.stat(feature).st_mtime_ns != stamp
    # The video itself changed (size and mtime): extracted again.
    stamp = os.stat(feature).st_mtime_ns
    write_video(videos[2], 14, 64, 64, 7)
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams", short_size=48) == 0
    assert os.stat(feature).st_mtime_ns != stamp
    # A feature file whose record is missing (killed between the two: the features rewritten, not the
    # record) is not trusted.
    os.remove(feature[:-4] + ".json")
    np.save(feature, np.load(feature))
    stamp = os.stat(feature).st_mtime_ns
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams", short_size=48) == 0
    assert os.stat(feature).st_mtime_ns != stamp and os.path.isfile(feature[:-4] + ".json")


def test_feature_dtype_is_stored_and_a_change_redoes_the_features(setup, caplog):
    import json
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "one.list"
    listing.write_text(videos[2] + "\n", encoding="utf-8")
    out, weights_file = tmp_path / "dtypes", tmp_path / "tsn.pdparams"
    ref = reference_features(model, videos[2])
    assert extract_in_process(tmp_path, listing, out, weights_file, feature_dtype="uint8") == 0
    feature = rows(out / "manifest.tsv")[0][1]
    assert feature.endswith(".npz") and (out / "features.list").read_text(encoding="utf-8") == feature + "\n"
    with np.load(feature) as d:  # as a user without this toolkit reads it
        got = d["q"] * d["scale"] + d["offset"]
    step = (ref.max(0) - ref.min(0)) / 255  # 256 levels over each dimension's range in this video
    assert (np.abs(got - ref) <= step / 2 + 1e-4 * np.abs(ref).max()).all()
    with open(feature[:-4] + ".json", encoding="utf-8") as f:
        assert json.load(f)["feature_dtype"] == "uint8"
    stamp = os.stat(feature).st_mtime_ns
    assert extract_in_process(tmp_path, listing, out, weights_file, feature_dtype="uint8") == 0
    assert os.stat(feature).st_mtime_ns == stamp  # same dtype: skipped

    # float16: extracted again; the .npy replaces the .npz (one feature file per video)
    caplog.set_level("INFO")
    assert extract_in_process(tmp_path, listing, out, weights_file, feature_dtype="float16") == 0
    assert "another feature_dtype" in caplog.text
    half = rows(out / "manifest.tsv")[0][1]
    assert half == feature[:-4] + ".npy" and not os.path.exists(feature)
    assert np.load(half).dtype == np.float16
    np.testing.assert_allclose(np.load(half), ref, rtol=2e-3, atol=1e-4 * np.abs(ref).max())
    # float32 after float16: the same file name, told apart by the provenance record and the header
    stamp = os.stat(half).st_mtime_ns
    assert extract_in_process(tmp_path, listing, out, weights_file) == 0
    assert os.stat(half).st_mtime_ns != stamp and np.load(half).dtype == np.float32
    # a record written before feature_dtype existed describes float32 features: not redone
    with open(half[:-4] + ".json", encoding="utf-8") as f:
        record = json.load(f)
    del record["feature_dtype"]
    with open(half[:-4] + ".json", "w", encoding="utf-8") as f:
        json.dump(record, f)
    stamp = os.stat(half).st_mtime_ns
    assert extract_in_process(tmp_path, listing, out, weights_file) == 0
    assert os.stat(half).st_mtime_ns == stamp


def test_same_stem_in_two_runs_and_lists_of_both(setup):
    tmp_path, videos, broken, model, args = setup
    out = tmp_path / "shared"
    first, second = tmp_path / "first.list", tmp_path / "second.list"
    first.write_text(f"{videos[0]}\n{broken}\n", encoding="utf-8")
    second.write_text(videos[1] + "\n", encoding="utf-8")  # b/clip 1.avi: the same stem as a/clip 1.avi
    assert extract_in_process(tmp_path, first, out, tmp_path / "tsn.pdparams") == 1
    assert extract_in_process(tmp_path, second, out, tmp_path / "tsn.pdparams") == 0
    manifest = rows(out / "manifest.tsv")
    assert [v for v, _ in manifest] == [videos[0], videos[1]]
    assert manifest[0][1] != manifest[1][1]
    assert (out / "features.list").read_text(encoding="utf-8").splitlines() == [f for _, f in manifest]
    assert [v for v, _ in rows(out / "failed.list")] == [str(broken)]
    for video, feature in manifest:  # each video's own features, not the other's
        ref = reference_features(model, video)
        assert np.abs(np.load(feature) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_concurrent_extractors_keep_each_others_list_entries(tmp_path):
    import multiprocessing
    from concurrent_lists import write_lists_many_times
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=write_lists_many_times, args=(str(tmp_path), tag, 25)) for tag in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    listed = (tmp_path / "features.list").read_text(encoding="utf-8").splitlines()
    from video_tag.readers.lists import output_stem
    assert sorted(listed) == sorted(str(tmp_path / output_stem(f"{t}{i}.mp4")) + ".npy" for t in "ab" for i in range(25))


def test_rank_0_that_cannot_see_other_ranks_features_refuses_to_list(setup, monkeypatch):
    from video_tag import distributed
    from video_tag.errors import RunError
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "one.list"
    listing.write_text(videos[2] + "\n", encoding="utf-8")
    real_gather = distributed.gather_to_main
    # What rank 1 of another node would report: a video it extracted into its own (unshared) save_dir.
    monkeypatch.setattr(distributed, "gather_to_main", lambda obj: real_gather(obj) + [(1, [], [videos[0]], {})])
    with pytest.raises(RunError, match="rank 0 cannot see the features rank 1 wrote"):
        extract_in_process(tmp_path, listing, tmp_path / "out", tmp_path / "tsn.pdparams")
    assert not (tmp_path / "out" / "features.list").exists()


def test_disk_full_names_the_file_and_a_rerun_completes(setup, monkeypatch):
    import errno
    from video_tag.errors import RunError
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "two.list"
    listing.write_text(f"{videos[0]}\n{videos[2]}\n", encoding="utf-8")
    real_fsync = os.fsync

    def full_for_海边(fd):  # the disk fills up while the second video's features are written
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("海边"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_海边)
    with pytest.raises(RunError, match=r"cannot write .*海边_[0-9a-f]{16}\.npy: No space left on device"):
        extract_in_process(tmp_path, listing, tmp_path / "out", tmp_path / "tsn.pdparams")
    names = sorted(os.listdir(tmp_path / "out"))
    assert not [n for n in names if n.startswith("海边") or ".tmp" in n], names
    assert len(rows(tmp_path / "out" / "manifest.tsv")) == 1  # the complete one is listed
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert extract_in_process(tmp_path, listing, tmp_path / "out", tmp_path / "tsn.pdparams") == 0
    assert len(rows(tmp_path / "out" / "manifest.tsv")) == 2


def test_ctrl_c_stops_extraction_with_130(setup):
    import shutil
    import signal
    import subprocess
    import sys
    import time
    tmp_path, videos, broken, model, args = setup
    copies = []
    for i in range(40):
        copies.append(str(tmp_path / "a" / f"copy {i}.avi"))
        shutil.copy(videos[0], copies[-1])
    listing = tmp_path / "many.list"
    listing.write_text("\n".join(copies) + "\n", encoding="utf-8")
    out = tmp_path / "many"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tsn_extractor.py"),
                             *[a for a in args if not a.startswith(("--filelist", "--save_dir"))],
                             f"--filelist={listing}", f"--save_dir={out}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (out.exists() and any(n.endswith(".json") for n in os.listdir(out))) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the main process and its decode workers
    start = time.time()
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - start < 10, output
    assert "interrupted" in output.splitlines() and "Traceback" not in output, output
    names = os.listdir(out)
    assert not [n for n in names if ".tmp" in n]
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert 1 <= len(listed) < 40  # what was complete is listed; a rerun does the rest
    for feature in listed:
        assert np.load(feature).shape == (SEG, 2048)


def test_shards_hold_the_features_resume_and_change_layout(setup, caplog):
    import io
    import tarfile
    from video_tag.readers.feature_reader import FeatureReader, features_of
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "labelled.list"
    listing.write_text(f"{videos[0]} 1\n{broken} 0\n{videos[1]} 2\n{videos[2]} 3\n", encoding="utf-8")
    out, weights_file = tmp_path / "sharded", tmp_path / "tsn.pdparams"
    (out / "shard-000007.tar.part").parent.mkdir()
    (out / "shard-000007.tar.part").write_bytes(b"\0" * 1024)  # left by a killed run a minute ago
    os.utime(out / "shard-000007.tar.part", (os.path.getmtime(out / "shard-000007.tar.part") - 60,) * 2)
    caplog.set_level("INFO")
    from video_tag.config import load_config
    from video_tag.extractor import extract
    cfg = load_config(str(tmp_path / "tsn.yaml"))
    cfg["INFER"]["shard_size"] = 2
    assert extract(cfg, str(weights_file), str(listing), str(out), batch_size=4, num_workers=1,
                   train_list=str(tmp_path / "train.list")) == 1  # the broken video failed
    assert "removed" in caplog.text and "shard-000007.tar.part" in caplog.text
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    shard0, shard1 = str(out / "shard-000000.tar"), str(out / "shard-000001.tar")
    assert [os.path.dirname(f) for f in listed] == [shard0, shard0, shard1]
    assert [v for v, _ in rows(out / "manifest.tsv")] == videos
    assert [v for v, _ in rows(out / "failed.list")] == [str(broken)]
    assert sorted(os.listdir(out)) == [".videotag-records.tsv", ".videotag.lock", "failed.list", "features.list", "manifest.tsv",
                                       "shard-000000.index.tsv", "shard-000000.tar", "shard-000001.index.tsv",
                                       "shard-000001.tar"]
    for video, member in zip(videos, listed):  # the extracted features, as plain tar members
        with tarfile.open(os.path.dirname(member)) as tar:
            got = np.load(io.BytesIO(tar.extractfile(os.path.basename(member)).read()))
        ref = reference_features(model, video)
        assert got.shape == (SEG, 2048) and np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    reader = FeatureReader(str(tmp_path / "train.list"), "train", {"MODEL": {"num_classes": 4, "feature_dims": [2048]}})
    assert [e.path for e in reader.entries] == listed and [e.labels for e in reader.entries] == [[1], [2], [3]]
    with tarfile.open(shard1) as tar:
        np.testing.assert_array_equal(features_of(reader.load(2)),
                                      np.load(io.BytesIO(tar.extractfile(os.path.basename(listed[2])).read())))

    # Resume: nothing is extracted again, the shards stay as they are.
    listing = tmp_path / "plain.list"
    listing.write_text(f"{videos[0]}\n{broken}\n{videos[1]}\n{videos[2]}\n", encoding="utf-8")
    stamps = [os.stat(s).st_mtime_ns for s in (shard0, shard1)]
    caplog.clear()
    assert extract(cfg, str(weights_file), str(listing), str(out), batch_size=4, num_workers=1) == 1
    assert "1 to extract, 3 already done" in caplog.text  # the broken video is tried again
    assert [os.stat(s).st_mtime_ns for s in (shard0, shard1)] == stamps

    # Another dtype: extracted again into a new shard; the old members leave their shards' indexes (an
    # emptied shard goes), and a list naming them fails loudly instead of reading stale features.
    cfg["INFER"].update(feature_dtype="uint8", shard_size=3)
    caplog.clear()
    assert extract(cfg, str(weights_file), str(listing), str(out), batch_size=4, num_workers=1) == 1
    assert "3 with another feature_dtype" in caplog.text
    now = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert [os.path.dirname(f) for f in now] == [str(out / "shard-000002.tar")] * 3
    assert all(f.endswith(".npz") for f in now)
    assert not os.path.exists(shard0) and not os.path.exists(shard1)
    with pytest.raises(ValueError, match="not found"):
        reader.load(0)

    # One file per video again: extracted again as plain files, the shard goes.
    cfg["INFER"]["shard_size"] = 0
    caplog.clear()
    assert extract(cfg, str(weights_file), str(listing), str(out), batch_size=4, num_workers=1) == 1
    assert "3 with another layout" in caplog.text
    plain = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert [os.path.dirname(f) for f in plain] == [str(out)] * 3 and all(os.path.isfile(f) for f in plain)
    assert not [n for n in os.listdir(out) if n.startswith("shard-")]


def test_a_name_shared_by_two_videos_fails_one_loudly_never_drops_it(setup, monkeypatch):
    import types
    from video_tag.readers import lists
    tmp_path, videos, broken, model, args = setup
    same = types.SimpleNamespace(sha1=lambda data: types.SimpleNamespace(hexdigest=lambda: "0" * 40))
    monkeypatch.setattr(lists, "hashlib", same)  # a/clip 1.avi and b/clip 1.avi: one name
    listing, out = tmp_path / "two.list", tmp_path / "collide"
    listing.write_text(f"{videos[0]}\n{videos[1]}\n", encoding="utf-8")
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams") == 1
    manifest, failed = rows(out / "manifest.tsv"), rows(out / "failed.list")
    assert [v for v, _ in manifest] == [videos[0]]
    assert [v for v, _ in failed] == [videos[1]] and f"already that of {videos[0]}" in failed[0][1]
    ref = reference_features(model, videos[0])
    assert np.abs(np.load(manifest[0][1]) - ref).max() <= 1e-4 * np.abs(ref).max()
    # Another run with the other video alone: the name is held (its record says by whom), still refused.
    stamp = os.stat(manifest[0][1]).st_mtime_ns
    listing.write_text(f"{videos[1]}\n", encoding="utf-8")
    assert extract_in_process(tmp_path, listing, out, tmp_path / "tsn.pdparams") == 1
    assert rows(out / "manifest.tsv") == manifest and [v for v, _ in rows(out / "failed.list")] == [videos[1]]
    assert os.stat(manifest[0][1]).st_mtime_ns == stamp


def test_a_write_error_of_one_video_fails_that_video_not_the_run(setup, monkeypatch):
    import builtins
    import errno
    from video_tag import files
    tmp_path, videos, broken, model, args = setup
    listing = tmp_path / "two.list"
    listing.write_text(f"{videos[2]}\n{videos[0]}\n", encoding="utf-8")

    def refuse_海边(path, *args, **kwargs):  # as a file system that refuses this name (EILSEQ)
        if os.path.basename(str(path)).startswith("海边"):
            raise OSError(errno.EILSEQ, os.strerror(errno.EILSEQ), path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", refuse_海边, raising=False)
    assert extract_in_process(tmp_path, listing, tmp_path / "out", tmp_path / "tsn.pdparams") == 1
    failed = rows(tmp_path / "out" / "failed.list")
    assert [v for v, _ in failed] == [videos[2]] and "Invalid or incomplete multibyte" in failed[0][1]
    assert [v for v, _ in rows(tmp_path / "out" / "manifest.tsv")] == [videos[0]]
