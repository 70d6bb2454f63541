"""The extractor's network against the independent TSN reference of tests/models/test_tsn.py: functional
conv / batch-norm ops on the named arrays of a release-format weight file (not our model code).

Random release-format weights (not our model's own initialisation), so a wrong layer order, stride,
ReLU or weight name in the backbone changes the features.
"""
import glob
import os
import pickle
import shutil

import cv2
import numpy as np
import yaml
from PIL import Image

from conftest import ROOT, run_main
from models.test_tsn import ref_features, release_weights

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def rel_err(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def write_release(path, layers, seed):
    """A release-format ``tsn.pdparams`` (protocol-2 pickle of ``{fluid name: array}``); returns the dict."""
    params = release_weights(layers, 4, np.random.default_rng(seed))
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=2)
    return params


def config(tmp_path, layers, seg_num, short_size, target_size):
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_layers=layers, num_classes=4)
    cfg["INFER"].update(seg_num=seg_num, short_size=short_size, target_size=target_size)
    path = tmp_path / "tsn.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def reference_frames(video, seg_num, short_size, target_size):
    """GUIDE section 1's pipeline, written out: decode every frame, centre frame of each segment, PIL
    bilinear resize to the 4:3 box, centre crop, normalise -> float32 [seg_num, 3, t, t]."""
    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    n = len(frames)
    avg = n // seg_num
    out = []
    for i in [(avg - 1) // 2 + i * avg if avg >= 1 else i % n for i in range(seg_num)]:
        img = Image.fromarray(frames[i])
        w, h = img.size
        if min(w, h) != short_size:
            box = (int(short_size * 4 / 3), short_size) if w >= h else (short_size, int(short_size * 4 / 3))
            img = img.resize(box, Image.BILINEAR)
        a = np.asarray(img, np.float64) / 255.0
        y, x = int(round((a.shape[0] - target_size) / 2)), int(round((a.shape[1] - target_size) / 2))
        a = a[y:y + target_size, x:x + target_size]
        out.append(((a - MEAN) / STD).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def test_extracted_features_match_functional_reference(tmp_path, capfd, tsn50_release):
    # tsn_extractor.py end to end with release-format weights: loading by fluid name (without the
    # classifier), decoding, normalisation and the network in Paddle Inference (batches of 3 and 1),
    # against the reference pipeline + network. ResNet50 for speed: tests/models/test_tsn.py checks the
    # model's ResNet101 naming against the same reference. In this process (conftest.run_main):
    # tests/test_extractor.py runs the script as a process.
    shutil.copy(tsn50_release[0], tmp_path / "tsn.pdparams")  # write_release(..., 50, seed=0), made once
    params = tsn50_release[1]
    seg_num, short_size, target_size = 4, 40, 32
    cfg_path = config(tmp_path, 50, seg_num, short_size, target_size)
    rng = np.random.default_rng(8)
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 72))
    for _ in range(13):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), (5, 5), 0))
    writer.release()
    (tmp_path / "videos.list").write_text(video + "\n", encoding="utf-8")
    result = run_main("tsn_extractor.py", "--model_name=TSN", f"--config={cfg_path}",
                      f"--weights={tmp_path}/tsn", f"--filelist={tmp_path}/videos.list",
                      f"--save_dir={tmp_path}/out", "--use_gpu=False", "--frame_batch=3", capfd=capfd)
    assert result.returncode == 0, result.stdout
    saved = glob.glob(str(tmp_path / "out" / "**" / "*.npy"), recursive=True)
    assert len(saved) == 1, saved
    got = np.load(saved[0])
    assert got.dtype == np.float32 and got.shape == (seg_num, 2048)
    ref = ref_features(params, 50, reference_frames(video, seg_num, short_size, target_size))
    assert rel_err(got, ref) <= 1e-4
