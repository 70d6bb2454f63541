"""video_tag/commands: the console scripts of ``pip install`` (setup.py's entry points) run from any folder,
with the shipped configs and the release files of $VIDEOTAG_HOME, and the root scripts are thin wrappers
of the same ``main``."""
import json
import os
import runpy
import subprocess
import sys

import pytest

from conftest import FEATURE_DIM, NUM_CLASSES, ROOT
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
    """videotag-predict (commands/scripts.py runs predict.py) outside the project: weights and the default
    ./label_3396.txt from $VIDEOTAG_HOME; the names in predictions.jsonl are that file's."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = console_script("video_tag.commands.scripts", "predict",
                          ["--model_name=AttentionLSTM", f"--config={tiny_config}", "--weights=./weights/attention_lstm",
                           "--save_dir=out"], work, home)
    assert done.returncode == 0, done.stdout
    with open(work / "out" / "predictions.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 10 and all(t["class_name"] == f"home class {t['class_id']}" for line in lines for t in line["tags"])


def test_a_console_script_without_the_project_files_says_how_to_install(tmp_path, monkeypatch, capsys):
    from video_tag.commands import scripts
    monkeypatch.setattr(scripts, "project_root", lambda: str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["videotag-train", "--help"])
    with pytest.raises(SystemExit) as e:
        scripts.train()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: videotag-train runs train.py of the videotag project") and "pip install -e" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("script, module", [("tsn_extractor.py", "extract"), ("export_model.py", "export"),
                                            ("tools/video2frames.py", "frames"), ("tools/make_lists.py", "make_lists")])
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
    assert len(entries) == 8
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "docs/reference.md#console-scripts" in f.read()
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as f:
        section = f.read().split("## Console scripts", 1)[1].split("\n## ", 1)[0]
    for name, module, function in entries:
        assert callable(getattr(importlib.import_module(module), function)), (name, module, function)
        assert f"`{name}`" in section, name
