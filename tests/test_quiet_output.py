"""Entry scripts print what the user needs: --help shows each default once, no third-party chatter unless
--verbose. The runs of the scripts on real inputs are checked where they are tested (assert_quiet in
test_extractor, test_trainer, test_predict)."""
import os
import re

import pytest

from conftest import NOISE, ROOT, assert_quiet, noise_in, run_script

SCRIPTS = ["train.py", "eval.py", "predict.py", "tsn_extractor.py", "tools/video2frames.py", "export_model.py",
           "tools/fetch_release.py"]


def option_entries(help_text):
    """The text of each option in ``--help`` output, wrapped lines joined."""
    options = help_text.split("\noptions:\n", 1)[1]
    return [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", options)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once(script, tmp_path):
    # OMP_NUM_THREADS > 1 is what makes `import paddle` print its advice
    result = run_recorded(script, tmp_path, OMP_NUM_THREADS="2")
    assert result.returncode == 0, result.stdout
    assert_set_up_before_paddle_or_opencv(tmp_path)
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


# --- the process is set up by the entry scripts, first; library modules change nothing at import ----

SETUP_ENV = ("GLOG_minloglevel", "OPENCV_FFMPEG_LOGLEVEL", "VIDEOTAG_QUIET_ENV", "MKL_DEBUG_CPU_TYPE")
# Records the environment at the first import of Paddle or OpenCV (a meta path finder: it only looks).
RECORDER = """
import json, os, sys
class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name in ("paddle", "cv2") and not os.environ.get("RECORDED"):
            os.environ["RECORDED"] = "1"
            with open(os.environ["RECORD_TO"], "w") as f:
                json.dump({"module": name, **{k: os.environ.get(k) for k in %r}}, f)
        return None
sys.meta_path.insert(0, Recorder())
""" % (SETUP_ENV,)


def bare_env(**extra):
    """This environment without what a process setup puts in it (this test process ran scripts)."""
    env = {k: v for k, v in os.environ.items() if k not in SETUP_ENV + ("RECORDED",)}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def amd():
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        return "AuthenticAMD" in f.read(4096)


def run_recorded(script, tmp_path, **env):
    """``script --help`` as a process of its own, in ``bare_env``, with RECORDER watching."""
    import subprocess
    import sys
    (tmp_path / "sitecustomize.py").write_text(RECORDER, encoding="utf-8")
    env = bare_env(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", RECORD_TO=str(tmp_path / "record.json"), **env)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], env=env, cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def assert_set_up_before_paddle_or_opencv(tmp_path):
    """The script set the process up (cli.setup_process) before Paddle or OpenCV was first imported."""
    import json
    seen = json.loads((tmp_path / "record.json").read_text(encoding="utf-8"))
    assert seen["GLOG_minloglevel"] == "2" and seen["OPENCV_FFMPEG_LOGLEVEL"] == "-8", seen
    assert seen["MKL_DEBUG_CPU_TYPE"] == ("5" if amd() else None), seen


def test_videotag_sets_the_process_up_before_paddle_or_opencv_loads(tmp_path):
    # (the other scripts: test_help_shows_each_default_once)
    result = run_recorded("videotag.py", tmp_path)
    assert result.returncode == 0, result.stdout
    assert_set_up_before_paddle_or_opencv(tmp_path)


def test_importing_the_library_changes_nothing():
    """Every module of video_tag imported (after Paddle, whose own import writes OMP_NUM_THREADS):
    the environment is as it was, and video_tag.cli alone does not import Paddle."""
    import subprocess
    import sys
    code = """
import os, pkgutil, importlib, sys, warnings
start = dict(os.environ)
import video_tag.cli
assert "paddle" not in sys.modules, "video_tag.cli imported Paddle"
assert dict(os.environ) == start, "importing video_tag.cli changed the environment"
import paddle
before, filters = dict(os.environ), list(warnings.filters)
for module in pkgutil.walk_packages(video_tag.__path__, "video_tag."):
    if module.name != "video_tag.demo":  # an entry point (python -m video_tag.demo)
        importlib.import_module(module.name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
assert not changed, changed
assert warnings.filters == filters
print("unchanged")
"""
    done = subprocess.run([sys.executable, "-c", code], env=bare_env(PYTHONPATH=ROOT), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "unchanged", done.stdout + done.stderr


def test_mkl_fast_path_on_amd_only_and_the_users_setting_wins(tmp_path, monkeypatch):
    from video_tag import cli
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n", encoding="ascii")
    cli.mkl_fast_path_on_amd(str(cpuinfo))
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n", encoding="ascii")
    cli.mkl_fast_path_on_amd(str(cpuinfo))
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    cli.mkl_fast_path_on_amd(str(cpuinfo))
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "4"
