"""video_tag/commands: the console scripts of ``pip install`` (setup.py's entry points) run from any folder,
with the shipped configs and the release files of $VIDEOTAG_HOME, and the root scripts are thin wrappers
of the same ``main``."""
import json
import os
import runpy
import subprocess
import sys

import pytest

from conftest import FEATURE_DIM, NUM_CLASSES, ROOT, run_main
from video_tag.config import load_config
from video_tag.models import build_model
from video_tag.weights import model_state, write_state

TINY = [f"MODEL.feature_dims=[{FEATURE_DIM}]", "MODEL.embedding_size=8", "MODEL.lstm_size=4",
        f"MODEL.num_classes={NUM_CLASSES}", "MODEL.fc_sizes=[16,8]"]


def console_script(module, function, args, cwd, home):
    """Run ``module.function`` as its installed console script does, in ``cwd``, with $VIDEOTAG_HOME."""
    code = f"import sys; from {module} import {function}; sys.argv[0] = 'videotag-x'; sys.exit({function}())"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "VIDEOTAG_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, encoding="utf-8", timeout=300)


@pytest.fixture
def home(tmp_path):
    """$VIDEOTAG_HOME with a tiny AttentionLSTM as weights/attention_lstm.pdparams and a label_3396.txt."""
    home = tmp_path / "home"
    cfg = load_config(os.path.join(ROOT, "configs", "attention_lstm.yaml"), TINY)
    os.makedirs(home / "weights")
    write_state(model_state(build_model("AttentionLSTM", cfg)), str(home / "weights" / "attention_lstm.pdparams"))
    (home / "label_3396.txt").write_text("".join(f"home class {i}\n" for i in range(3396)), encoding="utf-8")
    return home


def test_export_from_another_folder_finds_the_config_and_the_release_weights(home, tmp_path):
    """videotag-export with no --config and the README's --weights=./weights/attention_lstm, in a folder
    holding neither: the shipped configs/attention_lstm.yaml and $VIDEOTAG_HOME's weights."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = console_script("video_tag.commands.export", "run",
                          ["--model_name=AttentionLSTM", "--weights=./weights/attention_lstm", "--save_dir=out",
                           "--onnx=no", *(a for o in TINY for a in ("-o", o))], work, home)
    assert done.returncode == 0, done.stdout
    assert sorted(os.listdir(work / "out")) == ["attention_lstm.json", "attention_lstm.pdiparams"]
    assert "config configs/attention_lstm.yaml is not in this folder: using " in done.stdout  # one line says so


def test_predict_console_script_reads_the_release_labels_of_home(home, tmp_path, tiny_config):
    """videotag-predict outside the project: weights and the default ./label_3396.txt from $VIDEOTAG_HOME;
    the names in predictions.jsonl are that file's."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = console_script("video_tag.commands.predict", "run",
                          ["--model_name=AttentionLSTM", f"--config={tiny_config}", "--weights=./weights/attention_lstm",
                           "--save_dir=out"], work, home)
    assert done.returncode == 0, done.stdout
    with open(work / "out" / "predictions.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 10 and all(t["class_name"] == f"home class {t['class_id']}" for line in lines for t in line["tags"])


@pytest.mark.parametrize("script, module", [("videotag.py", "tag"), ("tsn_extractor.py", "extract"),
                                            ("train.py", "train"), ("eval.py", "evaluate"), ("predict.py", "predict"),
                                            ("export_model.py", "export"), ("tools/video2frames.py", "frames"),
                                            ("tools/make_lists.py", "make_lists"), ("serve.py", "serve")])
def test_root_scripts_run_the_package_main(script, module):
    import importlib
    names = runpy.run_path(os.path.join(ROOT, script), run_name="not_main")
    assert names["main"] is importlib.import_module(f"video_tag.commands.{module}").main


def test_setup_declares_every_console_script():
    """setup.py's entry points name functions that exist; docs/reference.md names every console script
    in its section, which README links."""
    import importlib
    import re
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        entries = re.findall(r'"(videotag[\w-]*) = ([\w.]+):(\w+)"', f.read())
    assert len(entries) == 9
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "docs/reference.md#console-scripts" in f.read()
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as f:
        section = f.read().split("## Console scripts", 1)[1].split("\n## ", 1)[0]
    for name, module, function in entries:
        assert callable(getattr(importlib.import_module(module), function)), (name, module, function)
        assert f"`{name}`" in section, name


def can_build_wheels():
    """None when ``pip wheel --no-build-isolation`` can build videotag here, else why not: setuptools
    builds wheels itself from 70.1 on (setup.py's ``test`` extra asks for it); older ones need a ``wheel``
    package older than 0.46."""
    import setuptools
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1):
        return None
    return f"building a wheel needs setuptools>=70.1 (the test extra of setup.py), not {setuptools.__version__}"


WHEEL_SCRIPTS = {"videotag": "videotag.py", "videotag-train": "train.py", "videotag-eval": "eval.py",
                 "videotag-predict": "predict.py", "videotag-serve": "serve.py"}


def test_a_wheel_install_runs_the_console_scripts_from_any_folder(tmp_path, capfd, monkeypatch):
    """A wheel (not an editable install) in a fresh venv, run from a folder outside the repository with no
    PYTHONPATH: the scripts whose main lives in video_tag/commands answer --help with the root scripts' help,
    and videotag-eval reads its default config from the installed package. Paddle and the other
    dependencies come from this interpreter's site-packages (a .pth file of the venv)."""
    import shutil
    import site
    reason = can_build_wheels()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: the wheel cannot be built: {reason}")
        pytest.skip(reason)
    source = tmp_path / "source"  # what setup.py reads, copied: the build writes build/ and *.egg-info beside it
    for name in ("setup.py", "README.md"):
        os.makedirs(source, exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), source / name)
    for name in ("video_tag", "configs"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    quiet = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "timeout": 300}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(tmp_path / "dist"), str(source)], **quiet)
    assert done.returncode == 0, done.stdout
    (wheel,) = (tmp_path / "dist").glob("videotag-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    # Plain path lines: the .pth files there are not read, so an editable videotag of this environment stays out.
    with open(os.path.join(purelib, "dependencies.pth"), "w", encoding="utf-8") as f:
        f.write("".join(path + "\n" for path in site.getsitepackages()))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           str(wheel)], **quiet)
    assert done.returncode == 0, done.stdout
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", COLUMNS="100")
    monkeypatch.setenv("COLUMNS", "100")  # the same line width for the root scripts' help below
    where = subprocess.run([str(python), "-c", "import video_tag; print(video_tag.__file__)"], cwd=work, env=env,
                           check=True, stdout=subprocess.PIPE, text=True).stdout
    assert where.startswith(purelib), where  # the wheel's package, not the repository's
    for command, script in WHEEL_SCRIPTS.items():
        done = subprocess.run([str(venv / "bin" / command), "--help"], cwd=work, env=env, **quiet)
        assert done.returncode == 0, done.stdout
        assert done.stdout.startswith(f"usage: {command} [-h]"), done.stdout
        # Past the usage lines (wrapped after the program's name), the root script's help, line for line.
        assert done.stdout.split("\n\n", 1)[1] == run_main(script, "--help", capfd=capfd).stdout.split("\n\n", 1)[1]
    done = subprocess.run([str(venv / "bin" / "videotag-eval"), "--model_name=AttentionLSTM", "--weights=w",
                           "--filelist=missing.list"], cwd=work, env=env, **quiet)
    assert done.returncode == 2, done.stdout
    shipped = os.path.join(purelib, "video_tag", "configs", "attention_lstm.yaml")
    assert f"config configs/attention_lstm.yaml is not in this folder: using {shipped}" in done.stdout, done.stdout
    assert "missing.list" in done.stdout.splitlines()[-1], done.stdout  # then the list, named in one line
