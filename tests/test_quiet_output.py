"""Entry scripts print what the user needs: --help shows each default once, no third-party chatter unless
--verbose. The runs of the scripts on real inputs are checked where they are tested (assert_quiet in
test_extractor, test_trainer, test_predict)."""
import os
import re

import pytest

from conftest import NOISE, assert_quiet, noise_in, run_script

SCRIPTS = ["train.py", "eval.py", "predict.py", "tsn_extractor.py", "tools/video2frames.py", "export_model.py"]


def option_entries(help_text):
    """The text of each option in ``--help`` output, wrapped lines joined."""
    options = help_text.split("\noptions:\n", 1)[1]
    return [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", options)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once(script):
    # OMP_NUM_THREADS > 1 is what makes `import paddle` print its advice
    result = run_script(script, "--help", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stdout
    assert_quiet(result.stdout)
    entries = option_entries(result.stdout)
    assert any(entry.startswith("--verbose") for entry in entries), result.stdout
    assert any("(default: " in entry for entry in entries), result.stdout  # defaults are still shown
    for entry in entries:
        assert entry.count("(default") <= 1 and "(default: None)" not in entry, entry
        assert "(default: False)" not in entry and "(default: [])" not in entry, entry
    # the example commands of the description keep their lines (a backslash ends the first one)
    assert re.search(r"\\\n +--", result.stdout.split("\noptions:\n")[0]), result.stdout


def test_verbose_brings_the_chatter_back():
    result = run_script("train.py", "--help", "--verbose", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0
    assert "OMP advice" in noise_in(result.stdout), result.stdout


def test_noise_patterns_match_what_paddle_and_ffmpeg_print():
    # Samples of the lines as Paddle 3.3 and FFmpeg print them: the patterns above must catch them.
    samples = {
        "ccache warning": "extension_utils.py:712: UserWarning: No ccache found. Please be aware",
        "OMP advice": "PLEASE USE OMP_NUM_THREADS WISELY.",
        "glog line": "W1129 15:08:13.051577 24166 eager_utils.cc:3584] Paddle static graph(PIR) not support",
        "oneDNN print": "ReduceMeanCheckIfOneDNNSupport",
        "FFmpeg line": "frames: 0%| | 0/1 [00:00<?, ?video/s][mov,mp4,m4a @ 0x7f6ff4001dc0] moov atom not found",
        "Paddle log format": "[2026-11-29 15:11:35,642] [    INFO] trainer.py:154 - training",
    }
    assert set(samples) == set(NOISE)
    for name, line in samples.items():
        assert noise_in(line) == [name], name
    assert noise_in("15:08:18 WARNING cannot read /v/broken.mp4: cannot open video") == []


def test_verbose_process_started_by_a_quiet_one_gets_the_chatter_back(monkeypatch):
    # A --verbose script started from a quiet process (a test, a demo driver) inherits its environment.
    from video_tag import quiet
    monkeypatch.delenv("GLOG_minloglevel", raising=False)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "24")  # the user's own: kept either way
    monkeypatch.delenv("VIDEOTAG_QUIET_ENV", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    quiet.setup(verbose=False)
    assert os.environ["GLOG_minloglevel"] == "2" and os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "24"
    quiet.setup(verbose=True)  # what a --verbose process started with this environment does
    assert "GLOG_minloglevel" not in os.environ and os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "24"
