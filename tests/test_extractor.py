"""tsn_extractor.py end to end: outputs, names, failures, resume, and features equal to a reference
pipeline (every frame decoded as the original did, GUIDE sampling, PIL resize, crop, dygraph TSN)."""
import os

import cv2
import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from conftest import ROOT, run_script
from video_tag import weights
from video_tag.models.tsn import TSN

SEG, SHORT, TARGET = 5, 40, 32


def write_video(path, count, w, h, seed):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for _ in range(count):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0))
    writer.release()
    return str(path)


def reference_features(model, video):
    """The original pipeline: decode all frames, sample, PIL resize to the 4:3 box, centre crop, normalise."""
    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    n = len(frames)
    avg = n // SEG
    idx = [(avg - 1) // 2 + i * avg if avg >= 1 else i % n for i in range(SEG)]
    out = []
    for i in idx:
        img = Image.fromarray(frames[i])
        w, h = img.size
        if not ((w <= h and w == SHORT) or (h <= w and h == SHORT)):
            img = img.resize((int(SHORT * 4 / 3), SHORT) if w >= h else (SHORT, int(SHORT * 4 / 3)), Image.BILINEAR)
        a = np.asarray(img, np.float32)
        y, x = int(round((a.shape[0] - TARGET) / 2)), int(round((a.shape[1] - TARGET) / 2))
        a = a[y:y + TARGET, x:x + TARGET] / 255.0
        out.append(((a - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1))
    with paddle.no_grad():
        return model.features(paddle.to_tensor(np.stack(out)[None].astype(np.float32))).numpy()[0]


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    videos = [write_video(tmp_path / "a" / "clip 1.avi", 23, 96, 72, 0),
              write_video(tmp_path / "b" / "clip 1.avi", 3, 72, 96, 1),       # portrait, fewer frames than SEG
              write_video(tmp_path / "a" / "海边.avi", 12, 64, 64, 2)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    listing = tmp_path / "videos.list"
    listing.write_text("\n".join([videos[0], videos[1], str(broken), videos[2], videos[0]]) + "\n", encoding="utf-8")
    model = TSN(num_classes=4, num_layers=50)
    model.eval()
    weights.write_state(weights.model_state(model), str(tmp_path / "tsn.pdparams"))
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_layers=50, num_classes=4)
    cfg["INFER"].update(seg_num=SEG, short_size=SHORT, target_size=TARGET)
    (tmp_path / "tsn.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    args = ["--model_name=TSN", f"--config={tmp_path}/tsn.yaml", f"--weights={tmp_path}/tsn",
            f"--filelist={listing}", f"--save_dir={tmp_path}/out", "--use_gpu=False", "--frame_batch=4"]
    return tmp_path, videos, broken, model, args


def test_extract_outputs_and_resume(setup):
    tmp_path, videos, broken, model, args = setup
    result = run_script("tsn_extractor.py", *args)
    assert result.returncode == 1, result.stdout  # one video failed
    out = tmp_path / "out"
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert len(listed) == 3 and listed[2] == str(out / "海边.npy")
    assert os.path.basename(listed[0]).startswith("clip 1_") and listed[0] != listed[1]
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
    result = run_script("tsn_extractor.py", *args)
    assert result.returncode == 0, result.stdout
    assert [os.path.getmtime(f) for f in listed[:2]] == stamps[:2]
    assert np.load(listed[2]).shape == (SEG, 2048)
    assert (out / "features.list").read_text(encoding="utf-8").splitlines() == listed
    assert (out / "failed.list").read_text(encoding="utf-8") == ""
    assert not [n for n in os.listdir(out) if ".tmp" in n]

    result = run_script("tsn_extractor.py", *args, "--overwrite")
    assert result.returncode == 0 and os.path.getmtime(listed[0]) != stamps[0]


def test_bad_weights_and_list(setup):
    tmp_path, videos, broken, model, args = setup
    result = run_script("tsn_extractor.py", *[a for a in args if not a.startswith("--weights")],
                        f"--weights={tmp_path}/missing")
    assert result.returncode == 2 and "error: weight file not found" in result.stdout
    assert "Traceback" not in result.stdout
    result = run_script("tsn_extractor.py", *[a for a in args if not a.startswith("--filelist")],
                        f"--filelist={tmp_path}/nope.list")
    assert result.returncode == 2 and "nope.list" in result.stdout and "Traceback" not in result.stdout


def test_two_processes_share_the_list(setup):
    import subprocess
    import sys
    tmp_path, videos, broken, model, args = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp_path / "log"), os.path.join(ROOT, "tsn_extractor.py"), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    logs = "".join((tmp_path / "log" / f"workerlog.{r}").read_text(encoding="utf-8") for r in (0, 1))
    assert result.returncode != 0, logs  # the broken video makes the run fail, after the others are done
    out = tmp_path / "out"
    listed = (out / "features.list").read_text(encoding="utf-8").splitlines()
    assert len(listed) == 3
    assert (out / "failed.list").read_text(encoding="utf-8").startswith(f"{broken}\t")
    for video, feature in zip(videos, listed):
        ref = reference_features(model, video)
        assert np.abs(np.load(feature) - ref).max() <= 1e-4 * np.abs(ref).max()


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
