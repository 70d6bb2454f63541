"""tools/video2frames.py: frame folders, frames.list, failures and resume."""
import os
import time

import cv2
import numpy as np
import yaml

from conftest import ROOT, assert_quiet, run_script
from video_tag.frames import RECORD, video_to_frames
from video_tag.readers.lists import output_stem
from video_tag.readers.video_reader import VideoReader


def write_video(path, count, w=96, h=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for i in range(count):
        writer.write(np.full((h, w, 3), (i * 9) % 256, np.uint8))
    writer.release()
    return str(path)


def test_frames_tool(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    videos = [write_video(tmp_path / "a" / "clip 1.avi", 12), write_video(tmp_path / "b" / "clip 1.avi", 7),
              write_video(tmp_path / "a" / "其他.avi", 5)]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)  # FFmpeg prints "moov atom not found" of its own on this one
    with open(tmp_path / "train.list", "w", encoding="utf-8") as f:
        f.write(f"{videos[0]} 2\n{videos[1]} 0\n{bad} 1\n{videos[2]} 1\n")
    out = tmp_path / "frames"
    result = run_script("tools/video2frames.py", "--filelist", str(tmp_path / "train.list"), "--out_dir", str(out))
    assert result.returncode == 1, result.stdout
    assert_quiet(result.stdout)  # FFmpeg's own line about the broken file included
    lines = (out / "frames.list").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    folders = [line.rsplit(" ", 2)[0] for line in lines]
    assert [line.rsplit(" ", 2)[1:] for line in lines] == [["12", "2"], ["7", "0"], ["5", "1"]]
    assert folders[0] != folders[1] and os.path.basename(folders[0]).startswith("clip 1_")
    assert folders[2] == str(out / output_stem(videos[2])) and os.path.basename(folders[2]).startswith("其他_")
    assert sorted(os.listdir(folders[1])) == [RECORD] + [f"img_{i:05d}.jpg" for i in range(1, 8)]
    assert (out / "failed.list").read_text(encoding="utf-8").startswith(f"{bad}\t")

    # The frames list feeds the TSN reader in frames mode.
    with open(os.path.join(ROOT, "configs", "tsn-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(format="frames", num_classes=3)
    cfg["TEST"].update(seg_num=3, short_size=64, target_size=56)
    reader = VideoReader(str(out / "frames.list"), "test", cfg)
    sample = reader.load(0)
    assert sample["frames"].shape == (3, 3, 56, 56) and sample["label"] == 2

    # Resume: existing folders are not decoded again.
    stamp = os.path.getmtime(folders[0])
    os.remove(bad)
    with open(tmp_path / "train.list", "w", encoding="utf-8") as f:
        f.write(f"{videos[0]} 2\n{videos[1]} 0\n{videos[2]} 1\n")
    result = run_script("tools/video2frames.py", "--filelist", str(tmp_path / "train.list"), "--out_dir", str(out))
    assert result.returncode == 0, result.stdout
    assert os.path.getmtime(folders[0]) == stamp
    assert (out / "failed.list").read_text(encoding="utf-8") == ""
    assert not [n for n in os.listdir(out) if ".tmp" in n]


def frame_names(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("img_"))


def test_resume_decodes_again_what_is_not_complete(tmp_path, caplog):
    videos = {name: write_video(tmp_path / f"{name}.avi", count) for name, count in
              (("short", 12), ("old", 9), ("changed", 6), ("intact", 5))}
    list_path = tmp_path / "l.list"
    list_path.write_text("".join(f"{v} {i}\n" for i, v in enumerate(videos.values())), encoding="utf-8")
    frames = tmp_path / "frames"
    out = {name: frames / output_stem(video) for name, video in videos.items()}  # each video's folder
    assert video_to_frames(str(list_path), str(frames), 2) == 0
    stamp = os.path.getmtime(out["intact"] / RECORD)
    os.remove(out["short"] / "img_00012.jpg")       # a frame lost since
    os.remove(out["old"] / RECORD)                  # a folder of an older run: no record of its decode
    write_video(tmp_path / "changed.avi", 8)        # the video changed since

    with caplog.at_level("INFO"):
        assert video_to_frames(str(list_path), str(frames), 2) == 0
    for name, count in (("short", 12), ("old", 9), ("changed", 8), ("intact", 5)):
        assert frame_names(out[name]) == [f"img_{i:05d}.jpg" for i in range(1, count + 1)], name
    assert [line.rsplit(" ", 2)[1] for line in (frames / "frames.list").read_text(encoding="utf-8").splitlines()] \
        == ["12", "9", "8", "5"]
    again = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoding ")]
    assert len(again) == 3, again
    for name, why in (("short", "11 frame file(s) where 12"), ("old", "no record"), ("changed", "changed")):
        assert any(m.startswith(f"decoding {videos[name]} again") and why in m for m in again), (name, again)
    assert os.path.getmtime(out["intact"] / RECORD) == stamp    # a complete folder is not decoded again
    assert not [n for n in os.listdir(frames) if ".tmp" in n]


# The first run, in a process of its own, stops after its third frame until told to go on.
FIRST_RUN = """
import os, sys, time
from video_tag import frames
write = frames.write_jpeg
def write_jpeg(path, *args):
    write(path, *args)
    if path.endswith("img_00003.jpg"):
        open(sys.argv[3] + ".waiting", "w").close()
        deadline = time.time() + 60
        while not os.path.exists(sys.argv[3] + ".go") and time.time() < deadline:
            time.sleep(0.02)
frames.write_jpeg = write_jpeg
sys.exit(frames.video_to_frames(sys.argv[1], sys.argv[2], 1))
"""


def test_two_runs_keep_their_temporary_folders_apart(tmp_path):
    import socket
    import subprocess
    import sys
    video = write_video(tmp_path / "clip.avi", 20)
    list_path = tmp_path / "l.list"
    list_path.write_text(f"{video} 1\n", encoding="utf-8")
    out = tmp_path / "frames"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    name = output_stem(video)
    stale = out / f".tmp-0123456789abcdef-{socket.gethostname()}-{gone.pid}"   # left by a killed run
    older = out / f"{name}.tmp-{socket.gethostname()}-{gone.pid}"   # and by a killed run of an older version
    stale.mkdir()
    older.mkdir()
    flag = str(tmp_path / "flag")
    first = subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(list_path), str(out), flag],
                             env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while not os.path.exists(flag + ".waiting"):
            assert first.poll() is None and time.time() < deadline, first.communicate()[0]
            time.sleep(0.02)
        # a second run while the first is half-way through the same video: it must leave the first's
        # temporary folder alone (and clear the killed run's)
        assert video_to_frames(str(list_path), str(out), 1) == 0
        assert not stale.exists() and not older.exists()
        assert frame_names(out / name) == [f"img_{i:05d}.jpg" for i in range(1, 21)]
    finally:
        open(flag + ".go", "w").close()
        output = first.communicate(timeout=60)[0]
    assert first.returncode == 0, output
    assert frame_names(out / name) == [f"img_{i:05d}.jpg" for i in range(1, 21)]
    assert sorted(os.listdir(out)) == sorted(["failed.list", "frames.list", name])
    assert (out / "failed.list").read_text(encoding="utf-8") == ""


def test_spellings_of_one_video_are_decoded_once(tmp_path, monkeypatch):
    from video_tag import frames
    (tmp_path / "v").mkdir()
    write_video(tmp_path / "v" / "a.avi", 12)
    os.symlink("a.avi", tmp_path / "v" / "link.avi")
    list_path = tmp_path / "l.list"
    list_path.write_text("a.avi 0\n./a.avi 0\nlink.avi 1\n../v/a.avi 2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "v")
    real_decode, decoded = frames.decode_to_folder, []
    monkeypatch.setattr(frames, "decode_to_folder", lambda video, folder: (decoded.append(video),
                                                                           real_decode(video, folder))[1])
    assert video_to_frames(str(list_path), str(tmp_path / "out"), 4) == 0
    assert decoded == ["a.avi"]  # four spellings (one a symlink), one decode, in parallel threads or not
    folder = str(tmp_path / "out" / output_stem("a.avi"))
    assert (tmp_path / "out" / "frames.list").read_text(encoding="utf-8").splitlines() == [
        f"{folder} 12 0", f"{folder} 12 0", f"{folder} 12 1", f"{folder} 12 2"]
    assert frame_names(folder) == [f"img_{i:05d}.jpg" for i in range(1, 13)]


def test_two_videos_never_share_a_folder(tmp_path, monkeypatch):
    from video_tag import frames
    videos = [write_video(tmp_path / "a.avi", 5), write_video(tmp_path / "b.avi", 7)]
    list_path = tmp_path / "l.list"
    list_path.write_text(f"{videos[0]} 0\n{videos[1]} 1\n", encoding="utf-8")
    monkeypatch.setattr(frames, "output_stem", lambda path: "clip_00000000")  # the names collide
    assert video_to_frames(str(list_path), str(tmp_path / "out"), 2) == 1
    folder = tmp_path / "out" / "clip_00000000"
    assert (tmp_path / "out" / "frames.list").read_text(encoding="utf-8") == f"{folder} 5 0\n"
    assert (tmp_path / "out" / "failed.list").read_text(encoding="utf-8") == (
        f"{videos[1]}\tits frames folder {folder} is already that of {videos[0]}\n")
    assert len(frame_names(folder)) == 5


def test_an_undecodable_frame_is_skipped_as_every_reader_does(tmp_path):
    from readers.test_video_reader import corrupt_avi_frame
    video = corrupt_avi_frame(write_video(tmp_path / "v.avi", 30), 12, tmp_path / "broken.avi")
    list_path = tmp_path / "l.list"
    list_path.write_text(f"{video} 0\n", encoding="utf-8")
    assert video_to_frames(str(list_path), str(tmp_path / "out"), 1) == 0
    folder = tmp_path / "out" / output_stem(video)
    assert frame_names(folder) == [f"img_{i:05d}.jpg" for i in range(1, 30)]
    for number, written in ((12, 11), (13, 13), (29, 29)):  # img_00013.jpg is the 14th frame written
        assert abs(cv2.imread(str(folder / f"img_{number:05d}.jpg")).mean() - written * 9 % 256) < 3, number


def test_long_names_tabs_and_newlines_in_names(tmp_path):
    from video_tag.names import text_path
    long = write_video(tmp_path / ("长" * 80 + ".avi"), 4)  # 244 bytes: with a hash and a suffix, over 255
    tab = write_video(tmp_path / "a\tb.avi", 3)
    bad = tmp_path / "bad\tname.mp4"
    bad.write_bytes(b"\x00" * 100)
    list_path = tmp_path / "l.list"
    list_path.write_text(f"{long} 0\n{tab} 1\n{bad} 2\n", encoding="utf-8")
    assert video_to_frames(str(list_path), str(tmp_path / "out"), 2) == 1
    lines = (tmp_path / "out" / "frames.list").read_text(encoding="utf-8").splitlines()
    assert [line.rsplit(" ", 2)[1:] for line in lines] == [["4", "0"], ["3", "1"]]
    (failed,) = (tmp_path / "out" / "failed.list").read_text(encoding="utf-8").splitlines()
    path, reason = failed.split("\t")
    assert path == text_path(str(bad)) == str(tmp_path / "bad\\tname.mp4") and "cannot open" in reason
