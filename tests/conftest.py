"""Shared fixtures: a tiny AttentionLSTM config and generated feature files with labels."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Exported backbones (video_tag/cache.py) go to a folder of this test session, shared by its scripts.
_CACHE = tempfile.TemporaryDirectory(prefix="videotag_test_cache_")
os.environ["VIDEOTAG_CACHE_DIR"] = _CACHE.name
# Release files are looked up in $VIDEOTAG_HOME too (video_tag/release.py): an empty one, not the user's.
_HOME = tempfile.TemporaryDirectory(prefix="videotag_test_home_")
os.environ["VIDEOTAG_HOME"] = _HOME.name
FEATURE_DIM, NUM_CLASSES = 16, 5


def run_script(script, *args, cwd=None, env=None):
    """Run an entry script of the project; returns the CompletedProcess (text, merged output)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                          timeout=300)


def run_main(script, *args, capfd):
    """Run an entry script in this process, as ``python script args`` would (``__main__``, its
    ``cli.main``), without a new process's ~1.3 s of ``import paddle``; returns a CompletedProcess: the
    exit code, and what was written to stdout then stderr (file descriptors: C++ prints too).

    For what a script does with its flags and inputs. What only a process shows stays with run_script:
    quiet output (set up when a process starts), --verbose, signals, launchers."""
    import logging
    import runpy
    import signal
    root, ours = logging.getLogger(), logging.getLogger("video_tag")
    saved = sys.argv, root.handlers[:], root.level, ours.level, signal.getsignal(signal.SIGINT)
    capfd.readouterr()
    sys.argv = [os.path.join(ROOT, script), *map(str, args)]
    code = "no exit"  # cli.main always ends with sys.exit
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code
    finally:  # cli.main's logging handler and Ctrl-C handler stay with that run
        sys.argv = saved[0]
        root.handlers[:] = saved[1]
        root.setLevel(saved[2])
        ours.setLevel(saved[3])
        signal.signal(signal.SIGINT, saved[4])
    out, err = capfd.readouterr()
    assert isinstance(code, int), (code, out + err)
    return subprocess.CompletedProcess([script, *args], code, out + err)


# Third-party chatter the entry scripts keep off the console unless --verbose (video_tag/quiet.py).
NOISE = {
    "ccache warning": re.compile(r"No ccache found"),
    "OMP advice": re.compile(r"OMP_NUM_THREADS WISELY"),
    "glog line": re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \w+\.\w+:\d+\]", re.M),
    "oneDNN print": re.compile(r"OneDNNSupport"),
    "FFmpeg line": re.compile(r"\[[\w,]+ @ 0x[0-9a-f]+\]"),  # also right after a progress bar
    "Paddle log format": re.compile(r"\] \[ *INFO\]"),
}
LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S")


def noise_in(output):
    """Names of the NOISE patterns found in ``output``."""
    pieces = "\n".join(re.split(r"[\r\n]", output))  # progress bars redraw with \r
    return [name for name, pattern in NOISE.items() if pattern.search(pieces)]


def assert_quiet(output):
    """No third-party chatter, and every log line in the one format of cli.setup_logging."""
    assert noise_in(output) == [], output
    pieces = [p.strip() for p in re.split(r"[\r\n]", output)]
    odd = [p for p in pieces if re.search(r"\b(INFO|WARNING)\b", p) and not LOG_RECORD.match(p)]
    assert odd == [], output


def write_features(directory, count, rng, lengths=(6, 9), labels_per_video=(1, 3), signal=True):
    """``count`` feature files [T, FEATURE_DIM] whose content reveals their labels; returns list lines."""
    os.makedirs(directory, exist_ok=True)
    lines = []
    for i in range(count):
        labels = sorted(rng.choice(NUM_CLASSES, rng.integers(*labels_per_video, endpoint=True), replace=False))
        steps = int(rng.integers(lengths[0], lengths[1] + 1))
        x = rng.standard_normal((steps, FEATURE_DIM)).astype(np.float32) * 0.3
        if signal:
            x[:, labels] += 2.0
        path = os.path.join(directory, f"video {i} 视频.npy")  # spaces and non-ASCII in names
        np.save(path, x)
        lines.append(path + " " + " ".join(str(l) for l in labels))
    return lines


@pytest.fixture(scope="session")
def tsn50_release(tmp_path_factory):
    """(path, params): a release-format ResNet50 TSN weight file (4 classes, models.test_tsn.release_weights
    of seed 0, pickle protocol 2), made once per session (~1 s): tests copy it, they never write to it."""
    import pickle
    from models.test_tsn import release_weights
    params = release_weights(50, 4, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("tsn50") / "tsn.pdparams"
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=2)
    return str(path), params


@pytest.fixture
def no_curves_png(monkeypatch):
    """Training in this process draws no curves.png: matplotlib takes ~0.35 s a drawing, most of a tiny
    epoch. Training processes still draw it (test_trainer.test_outputs_of_a_run checks it), and
    tests/test_curves.py checks the drawing itself."""
    from video_tag import curves
    monkeypatch.setattr(curves, "render", lambda path, rows, title="": None)


@pytest.fixture
def tiny_config(tmp_path):
    """A config of a small AttentionLSTM with train/val/test/infer lists of generated features."""
    rng = np.random.default_rng(0)
    lists = {}
    for name, count in (("train", 24), ("val", 10), ("test", 10)):
        lines = write_features(str(tmp_path / "features" / name), count, rng)
        lists[name] = str(tmp_path / f"{name}.list")
        with open(lists[name], "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    with open(lists["test"], encoding="utf-8") as f:
        infer = [line.rsplit(" ", 1)[0] for line in f]
    lists["infer"] = str(tmp_path / "infer.list")
    with open(lists["infer"], "w", encoding="utf-8") as f:
        f.write("\n".join(infer) + "\n")
    with open(os.path.join(ROOT, "configs", "attention_lstm-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(feature_dims=[FEATURE_DIM], embedding_size=8, lstm_size=4, num_classes=NUM_CLASSES,
                        fc_sizes=[16, 8], topk=3)
    cfg["TRAIN"].update(epoch=2, batch_size=8, learning_rate=0.01, decay_epochs=[1], num_workers=1,
                        filelist=lists["train"], log_interval=1)
    for section, name in (("VALID", "val"), ("TEST", "test"), ("INFER", "infer")):
        cfg[section].update(filelist=lists[name], batch_size=4, num_workers=1)
    path = str(tmp_path / "tiny.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, allow_unicode=True)
    return path
