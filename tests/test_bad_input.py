"""Bad input at the command line: one ``error:`` line naming the file (and line), a non-zero exit, no traceback.

Weights for eval/predict are built with the package (untrained; only their format and shapes matter here).
The scripts run in this process (conftest.run_main: their cli.main, exit code and output, without a new
process's start-up); test_one_error_line_from_a_process runs a case of each script as its own process.
"""
import json
import os

import numpy as np
import pytest
import yaml

from conftest import FEATURE_DIM, NUM_CLASSES, ROOT, run_main, run_script
from video_tag import weights
from video_tag.config import load_config
from video_tag.models import build_model
from video_tag.readers.lists import split_labels

ARGS = ["--model_name=AttentionLSTM", "--use_gpu=False"]
pytestmark = pytest.mark.usefixtures("no_curves_png")  # in this process; processes draw it


class Setup:
    """Paths of one test: the tiny config, its lists, a weight file, a label file, output dirs."""

    def __init__(self, config, tmp_path, capfd):
        self.config, self.tmp, self.capfd = config, tmp_path, capfd
        with open(config, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        self.lists = {s: cfg[s]["filelist"] for s in ("TRAIN", "VALID", "TEST", "INFER")}
        self.weights = str(tmp_path / "w" / "AttentionLSTM.pdparams")
        make_weights(config, self.weights)
        self.labels = str(tmp_path / "labels.txt")
        with open(self.labels, "w", encoding="utf-8") as f:
            f.write("".join(f"类别 {i}\n" for i in range(NUM_CLASSES)))
        self.out = str(tmp_path / "out")

    def lines(self, section):
        with open(self.lists[section], encoding="utf-8") as f:
            return f.read().splitlines()

    def write_list(self, lines, name="bad list.list"):
        path = str(self.tmp / name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    process = False  # True: the scripts run as processes of their own (run_script)

    def run(self, script, *extra, config=None):
        """``script`` with this setup's arguments and ``extra``."""
        args = [*ARGS, f"--config={config or self.config}"]
        if script == "train.py":
            args += ["--epoch", "1", f"--save_dir={self.out}"]
        else:
            args += [f"--save_dir={self.out}"]
            if not any(a.startswith("--weights") for a in extra):
                args.append(f"--weights={self.weights}")
        if script == "predict.py" and not any(a.startswith("--label_file") for a in extra):
            args.append(f"--label_file={self.labels}")
        if self.process:
            return run_script(script, *args, *extra)
        return run_main(script, *args, *extra, capfd=self.capfd)


def make_weights(config, path, num_classes=None):
    cfg = load_config(config)
    if num_classes is not None:
        cfg["MODEL"]["num_classes"] = num_classes
    weights.write_state(weights.model_state(build_model("AttentionLSTM", cfg)), path)


@pytest.fixture
def setup(tiny_config, tmp_path, capfd):
    return Setup(tiny_config, tmp_path, capfd)


def assert_one_error(result, *names):
    """Non-zero exit, exactly one line starting with ``error:``, naming each of ``names``; no traceback."""
    out = result.stdout
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


# --- cases shared by the three scripts ----------------------------------------------------------
SECTION = {"train.py": "TRAIN", "eval.py": "TEST", "predict.py": "INFER"}


def missing_config(s, script):
    path = str(s.tmp / "no such config.yaml")
    return s.run(script, config=path), [path]


def invalid_config(s, script):
    path = s.tmp / "broken.yaml"
    path.write_text("MODEL: [\n", encoding="utf-8")
    return s.run(script, config=str(path)), [str(path)]


def unknown_key(s, script):
    return s.run(script, "-o", "TRAIN.no_such_key=3"), ["TRAIN.no_such_key"]


def malformed_override(s, script):
    return s.run(script, "-o", "MODEL.num_classes"), ["MODEL.num_classes"]


def missing_list(s, script):
    path = str(s.tmp / "missing.list")
    return s.run(script, f"--filelist={path}"), [path]


def empty_list(s, script):
    path = s.write_list(["", "  "])
    return s.run(script, f"--filelist={path}"), [path]


def malformed_line(s, script):
    lines = s.lines(SECTION[script])
    if script == "predict.py":   # infer lines need no labels: an undecodable line is what breaks them
        path = str(s.tmp / "bad.list")
        with open(path, "wb") as f:
            f.write(("\n".join(lines[:2]) + "\n").encode("utf-8") + b"caf\xe9.npy\n")
        return s.run(script, f"--filelist={path}"), [f"{path}:3:"]
    path = s.write_list(lines[:2] + ["data/only a path.npy"] + lines[2:])
    return s.run(script, f"--filelist={path}"), [f"{path}:3:"]


def label_out_of_range(s, script):
    lines = s.lines(SECTION[script])
    path = s.write_list(lines[:3] + [lines[3].rsplit(" ", 1)[0] + f" {NUM_CLASSES}"] + lines[4:])
    return s.run(script, f"--filelist={path}"), [f"{path}:4:", str(NUM_CLASSES)]


def label_on_the_command_line_override(s, script):
    # the list is fine for 5 classes, not for 2: the check uses the overridden MODEL.num_classes
    path = s.write_list([f"{s.lines(SECTION[script])[0].rsplit(' ', 1)[0]} 4"])
    return s.run(script, f"--filelist={path}", "-o", "MODEL.num_classes=2"), [f"{path}:1:"]


COMMON = [missing_config, unknown_key, missing_list, malformed_line]
# the same code path for every script (config.py, lists.py, cli.py): checked through train.py only
TRAIN_ONLY = [invalid_config, malformed_override, empty_list, label_on_the_command_line_override]


# --- train.py -----------------------------------------------------------------------------------

def train_missing_feature(s, script):
    missing = str(s.tmp / "gone" / "视频 x.npy")
    path = s.write_list(s.lines("TRAIN") + [f"{missing} 1"])
    return s.run(script, f"--filelist={path}"), [f"{path}:25:", missing]


def train_missing_pretrain(s, script):
    path = str(s.tmp / "no such weights")
    return s.run(script, f"--pretrain={path}"), [path]


def train_unreadable_pretrain(s, script):
    path = s.tmp / "junk.pdparams"
    path.write_bytes(b"this is not a weight file")
    return s.run(script, f"--pretrain={s.tmp / 'junk'}"), [str(path)]


def train_resume_other_num_classes(s, script):
    path = str(s.tmp / "other" / "AttentionLSTM_epoch0.pdparams")
    make_weights(s.config, path, num_classes=NUM_CLASSES + 2)
    return s.run(script, f"--resume={path}"), [path, "output"]


def train_fewer_samples_than_batch(s, script):
    path = s.write_list(s.lines("TRAIN")[:5])   # TRAIN.batch_size is 8
    return s.run(script, f"--filelist={path}"), [path, "batch_size"]


TRAIN_CASES = COMMON + TRAIN_ONLY + [label_out_of_range, train_missing_feature,
                        train_missing_pretrain, train_unreadable_pretrain, train_resume_other_num_classes,
                        train_fewer_samples_than_batch]


# --- eval.py and predict.py ---------------------------------------------------------------------

def missing_weights(s, script):
    path = str(s.tmp / "no such dir" / "AttentionLSTM")
    return s.run(script, f"--weights={path}"), [path]


def unreadable_weights(s, script):
    path = s.tmp / "truncated.pdparams"
    with open(s.weights, "rb") as f:
        data = f.read()
    path.write_bytes(data[: len(data) // 2])
    return s.run(script, f"--weights={s.tmp / 'truncated'}"), [str(path)]


def weights_of_other_num_classes(s, script):
    path = str(s.tmp / "other.pdparams")
    make_weights(s.config, path, num_classes=NUM_CLASSES + 2)
    return s.run(script, f"--weights={path}"), [path, "output"]


def missing_label_file(s, script):
    path = str(s.tmp / "label_3396.txt")
    result = s.run(script, f"--label_file={path}")
    assert "PaddleVideo" in result.stdout
    return result, [path]


def short_label_file(s, script):
    path = s.tmp / "short labels.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    return s.run(script, f"--label_file={path}"), [str(path)]


EVAL_CASES = COMMON + [label_out_of_range, missing_weights, unreadable_weights, weights_of_other_num_classes,
                       missing_label_file, short_label_file]
PREDICT_CASES = COMMON + [missing_weights, unreadable_weights, weights_of_other_num_classes,
                          missing_label_file, short_label_file]

ALL = ([("train.py", c) for c in TRAIN_CASES] + [("eval.py", c) for c in EVAL_CASES]
       + [("predict.py", c) for c in PREDICT_CASES])


@pytest.mark.parametrize("script, case", ALL, ids=[f"{s[:-3]}-{c.__name__}" for s, c in ALL])
def test_one_error_line(setup, script, case):
    result, names = case(setup, script)
    assert_one_error(result, *names)
    assert result.returncode == 2
    if script == "train.py":
        assert not os.path.exists(os.path.join(setup.out, "AttentionLSTM.pdparams"))


PROCESS_CASES = [("train.py", malformed_line), ("eval.py", unreadable_weights), ("predict.py", missing_label_file)]


@pytest.mark.parametrize("script, case", PROCESS_CASES, ids=[f"{s[:-3]}-{c.__name__}" for s, c in PROCESS_CASES])
def test_one_error_line_from_a_process(setup, script, case):
    """The exit code and output a shell sees (run_main checks the same in this process, for every case)."""
    setup.process = True
    result, names = case(setup, script)
    assert_one_error(result, *names)
    assert result.returncode == 2


# --- a bad feature file among good ones: the others are processed, failed.list names it --------

def mixed_list(s, section, bad_kind):
    lines = s.lines(section)
    bad = str(s.tmp / "bad features" / f"{bad_kind} 视频.npy")
    os.makedirs(os.path.dirname(bad))
    if bad_kind == "wide":
        np.save(bad, np.ones((4, FEATURE_DIM + 1), np.float32))
    elif bad_kind == "corrupt":
        with open(bad, "wb") as f:
            f.write(b"not numpy")
    label = " 1" if section == "TEST" else ""
    return s.write_list(lines[:3] + [bad + label] + lines[3:]), bad, len(lines)


def read_failed(out):
    with open(os.path.join(out, "failed.list"), encoding="utf-8") as f:
        return [line.split("\t") for line in f.read().splitlines()]


@pytest.mark.parametrize("bad_kind, reason", [("wide", "shape"), ("missing", "not found")])
def test_eval_skips_a_bad_feature_file(setup, bad_kind, reason):
    path, bad, good = mixed_list(setup, "TEST", bad_kind)
    result = setup.run("eval.py", f"--filelist={path}")
    assert result.returncode != 0 and "Traceback" not in result.stdout, result.stdout
    assert bad in result.stdout
    failed = read_failed(setup.out)
    assert len(failed) == 1 and failed[0][0] == bad and reason in failed[0][1], failed
    with open(os.path.join(setup.out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["num_videos"] == good


@pytest.mark.parametrize("bad_kind, reason", [("wide", "shape"), ("corrupt", "npy")])
def test_predict_skips_a_bad_feature_file(setup, bad_kind, reason):
    path, bad, good = mixed_list(setup, "INFER", bad_kind)
    result = setup.run("predict.py", f"--filelist={path}")
    assert result.returncode != 0 and "Traceback" not in result.stdout, result.stdout
    assert bad in result.stdout
    failed = read_failed(setup.out)
    assert len(failed) == 1 and failed[0][0] == bad and reason in failed[0][1], failed
    with open(os.path.join(setup.out, "predictions.jsonl"), encoding="utf-8") as f:
        videos = [json.loads(line)["video"] for line in f]
    assert len(videos) == good and bad not in videos
    assert videos == [split_labels(line)[0] for line in setup.lines("INFER")]   # infer ignores labels


def test_good_input_exits_zero_with_empty_failed_list(setup):
    # the counterpart of the cases above: the same setup without a bad file succeeds
    result = setup.run("predict.py")
    assert result.returncode == 0 and "error:" not in result.stdout, result.stdout
    assert read_failed(setup.out) == []


# --- absurd flags and config values: refused before anything starts ---------------------------------

def edited_config(s, edit, name):
    """A copy of the tiny config changed by ``edit(cfg)``; returns its path."""
    with open(s.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    edit(cfg)
    path = s.tmp / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def odd_model_key(s):
    return edited_config(s, lambda cfg: cfg["MODEL"].update(lstm_sise=cfg["MODEL"].pop("lstm_size")), "typo.yaml")


def list_section(s):
    return edited_config(s, lambda cfg: cfg.update(TEST=[cfg["TEST"]["filelist"], 4]), "list.yaml")


TSN = ["--model_name=TSN", f"--config={os.path.join(ROOT, 'configs', 'tsn.yaml')}", "--weights=w.pdparams"]
ABSURD = [  # (script, arguments (a callable of the Setup: a config path), words the error line names)
    ("train.py", ["--batch_size", "0"], ["--batch_size", "0"]),
    ("train.py", ["--batch_size=-2"], ["--batch_size", "-2"]),
    ("train.py", ["--epoch", "0"], ["--epoch"]),
    ("train.py", ["--learning_rate=nan"], ["--learning_rate"]),
    ("train.py", ["--valid_interval=-1"], ["--valid_interval"]),
    ("train.py", ["-o", "MODEL.num_classes=0"], ["MODEL.num_classes"]),
    ("train.py", ["-o", "TRAIN.batch_size=-1"], ["TRAIN.batch_size"]),
    ("train.py", lambda s: ["--config", odd_model_key(s)], ["MODEL.lstm_sise", "typo.yaml"]),
    ("eval.py", ["--batch_size", "0"], ["--batch_size"]),
    ("eval.py", ["-o", "MODEL.num_classes=0"], ["MODEL.num_classes"]),
    ("eval.py", lambda s: ["--config", list_section(s)], ["list.yaml", "section TEST must be a mapping"]),
    ("eval.py", ["--per_class", "--per_class_memory_mb=-1"], ["--per_class_memory_mb", "-1"]),
    ("eval.py", ["--per_class", "--per_class_memory_mb=nan"], ["--per_class_memory_mb", "nan"]),
    ("predict.py", ["--batch_size=-1"], ["--batch_size"]),
    ("predict.py", ["--topk", "0"], ["--topk"]),
    ("predict.py", ["--topk=-3"], ["--topk"]),
    ("predict.py", ["-o", "MODEL.topk=0"], ["MODEL.topk"]),
    ("predict.py", lambda s: [f"--label_file={s.tmp}"], lambda s: [f"label file {s.tmp} is a directory"]),
    ("tsn_extractor.py", TSN + ["--frame_batch", "0"], ["--frame_batch"]),
    ("tsn_extractor.py", TSN + ["--num_workers=-1"], ["--num_workers"]),
    ("tsn_extractor.py", TSN + ["-o", "INFER.seg_num=0"], ["INFER.seg_num"]),
    ("tsn_extractor.py", TSN + ["--batch_size", "0"], ["--batch_size"]),
]


@pytest.mark.parametrize("script, args, words", ABSURD,
                         ids=[f"{s[:-3]}-{i}" for i, (s, _, _) in enumerate(ABSURD)])
def test_absurd_flag_or_value_one_line_exit_2(setup, script, args, words):
    args = args(setup) if callable(args) else args
    words = words(setup) if callable(words) else words
    if script != "tsn_extractor.py":
        given = [f"--weights={setup.weights}", f"--label_file={setup.labels}"]
        given = given[:{"train.py": 0, "eval.py": 1, "predict.py": 2}[script]]
        args = [*ARGS, f"--config={setup.config}", f"--save_dir={setup.out}", *given, *args]  # the last wins
    result = run_main(script, *args, capfd=setup.capfd)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stdout, result.stdout
    assert all(w in errors[0] for w in words), errors[0]
    assert not os.path.exists(setup.out)  # refused before starting: nothing written


# --- NaN or Inf in training: stop at once, naming the files --------------------------------------------

@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_non_finite_features_stop_training_naming_the_file(setup, value):
    from video_tag.errors import RunError
    from video_tag.trainer import train
    lines = setup.lines("TRAIN")
    bad = split_labels(lines[5])[0]
    x = np.load(bad)
    x[2, 3] = value
    np.save(bad, x)
    with pytest.raises(RunError) as e:
        train("AttentionLSTM", load_config(setup.config), setup.out, epochs=1, valid_interval=0)
    message = str(e.value)
    assert f"{bad} (list line 6)" in message and "NaN or Inf" in message and "\n" not in message, message
    assert message.count("(list line") == 1   # the other files of its batch are not blamed
    assert not os.path.exists(os.path.join(setup.out, "AttentionLSTM_epoch0.pdparams"))


def test_diverging_loss_stops_training_naming_the_batch(setup):
    from video_tag.errors import RunError
    from video_tag.trainer import train
    cfg = load_config(setup.config, ["TRAIN.learning_rate=1e30"])   # finite features, exploding weights
    with pytest.raises(RunError) as e:
        train("AttentionLSTM", cfg, setup.out, epochs=2, valid_interval=0)
    message = str(e.value)
    assert "the loss is" in message and "epoch 0" in message and "\n" not in message, message
    assert message.count("(list line") == 8   # TRAIN.batch_size: every file of the batch


def test_nan_features_through_train_py_one_line_exit_3(setup):
    bad = split_labels(setup.lines("TRAIN")[0])[0]
    x = np.load(bad)
    x[0, 0] = np.nan
    np.save(bad, x)
    result = run_main("train.py", *ARGS, f"--config={setup.config}", f"--save_dir={setup.out}", "--epoch=1",
                      capfd=setup.capfd)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert result.returncode == 3 and len(errors) == 1 and "Traceback" not in result.stdout, result.stdout
    assert f"{bad} (list line 1)" in errors[0] and "NaN or Inf" in errors[0], errors[0]


# --- an unexpected exception (a bug): its traceback and exit 4, never 1 ("some inputs failed") -------

def test_unexpected_exception_exits_4_with_its_traceback(setup, monkeypatch):
    import video_tag.evaluate

    def broken(*args, **kwargs):
        return 1 / 0
    monkeypatch.setattr(video_tag.evaluate, "evaluate", broken)  # eval.py's `from ... import` reads it
    result = setup.run("eval.py")
    lines = result.stdout.splitlines()
    assert result.returncode == 4, result.stdout
    assert "Traceback (most recent call last):" in lines and "ZeroDivisionError: division by zero" in lines
    assert lines[-1].startswith("error: internal error (ZeroDivisionError: division by zero); please report"), lines


def test_unexpected_exception_in_a_process_exits_4():
    """What a shell sees: Python alone would exit 1 after the traceback."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "from video_tag import cli; cli.main(lambda: {}['missing'])"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 4, done.stderr
    assert "Traceback" in done.stderr and "KeyError: 'missing'" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: internal error (KeyError: 'missing')"), done.stderr


# --- a precision this machine cannot run: refused before anything is written ----------------------------

def test_precision_refused_before_any_output(tmp_path, capfd):
    """fp16 is GPU only: tsn_extractor.py says so in one line, exit 2, and leaves no save_dir behind (it used
    to create the folder, its lock and records first, and refuse only when the engine was built)."""
    from conftest import run_main
    (tmp_path / "w.pdparams").write_bytes(b"")  # found; never loaded: the refusal comes first
    (tmp_path / "videos.list").write_text(f"{tmp_path / 'a.mp4'}\n", encoding="utf-8")
    out = tmp_path / "features"
    result = run_main("tsn_extractor.py", "--model_name=TSN", f"--weights={tmp_path / 'w.pdparams'}",
                      f"--filelist={tmp_path / 'videos.list'}", f"--save_dir={out}", "--use_gpu=False",
                      "--precision=fp16", capfd=capfd)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "fp16" in errors[0], result.stdout
    assert not out.exists()
