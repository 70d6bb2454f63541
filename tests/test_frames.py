"""tools/video2frames.py: frame folders, frames.list, failures and resume."""
import os

import cv2
import numpy as np
import yaml

from conftest import ROOT, assert_quiet, run_script
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
    assert folders[2].endswith("其他")
    assert sorted(os.listdir(folders[1])) == [f"img_{i:05d}.jpg" for i in range(1, 8)]
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
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
