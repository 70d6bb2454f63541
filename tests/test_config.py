"""load_config: the shipped configs, configs of the original toolkit, typed -o overrides, bad files."""
import os

import pytest

from conftest import ROOT
from video_tag.config import load_config
from video_tag.errors import UserError

CONFIGS = [os.path.join(ROOT, "configs", name) for name in ("attention_lstm.yaml", "attention_lstm-single.yaml")]
SINGLE = CONFIGS[1]

# The shape of VideoTag's original configs (Paddle 1.8): Python's None written as a bare word.
ORIGINAL = """\
MODEL:
    name: "AttentionLSTM"
    dataset: "YouTube-8M"
    bone_nework: None
    drop_rate: 0.5
    feature_num: 2
    feature_names: ['rgb']
    feature_dims: [2048]
    embedding_size: 1024
    lstm_size: 512
    num_classes: 3396
    topk: 20

TRAIN:
    epoch: 10
    learning_rate: 0.000125
    decay_epochs: [5]
    decay_gamma: 0.1
    weight_decay: 0.0008
    num_samples: 5000
    pretrain_base: None
    batch_size: 128
    use_gpu: True
    num_gpus: 1
    filelist: "data/dataset/attention_lstm/train.list"

VALID:
    batch_size: 128
    filelist: "data/dataset/attention_lstm/val.list"

TEST:
    batch_size: 128
    filelist: "data/dataset/attention_lstm/test.list"

INFER:
    batch_size: 1
    filelist: "data/dataset/attention_lstm/infer.list"
"""


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_configs_load_with_their_types(path):
    cfg = load_config(path)
    assert set(cfg) == {"MODEL", "TRAIN", "VALID", "TEST", "INFER"}
    train, model = cfg["TRAIN"], cfg["MODEL"]
    assert type(train["learning_rate"]) is float and 0 < train["learning_rate"] < 0.01
    assert type(train["batch_size"]) is int and train["batch_size"] in (128, 1024)
    assert type(train["weight_decay"]) is float and train["weight_decay"] == pytest.approx(8e-4)
    assert train["decay_epochs"] == [5] and type(train["decay_epochs"][0]) is int
    assert model["bone_nework"] is None and train["pretrain_base"] is None
    assert type(model["num_classes"]) is int and model["num_classes"] == 3396
    assert model["feature_dims"] == [2048]
    assert type(train["use_gpu"]) is bool
    assert all(isinstance(cfg[s]["filelist"], str) for s in ("TRAIN", "VALID", "TEST", "INFER"))


def test_single_card_learning_rate_is_the_original_one():
    assert load_config(SINGLE)["TRAIN"]["learning_rate"] == 1.25e-4
    assert load_config(CONFIGS[0])["TRAIN"]["learning_rate"] == 1e-3


def test_original_toolkit_config_with_None_values(tmp_path):
    path = tmp_path / "attention_lstm.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    cfg = load_config(str(path))
    assert cfg["MODEL"]["bone_nework"] is None and cfg["TRAIN"]["pretrain_base"] is None
    assert cfg["TRAIN"]["num_samples"] == 5000 and cfg["TRAIN"]["use_gpu"] is True
    assert cfg["TRAIN"]["learning_rate"] == 0.000125
    # keys this toolkit added are filled with defaults
    assert cfg["MODEL"]["fc_sizes"] == [8192, 4096] and cfg["TRAIN"]["num_workers"] >= 1
    # an override still works on a key whose value was None
    cfg = load_config(str(path), ["TRAIN.pretrain_base=weights/attention_lstm"])
    assert cfg["TRAIN"]["pretrain_base"] == "weights/attention_lstm"


def test_exponent_without_dot_in_file_is_a_float(tmp_path):
    # PyYAML (YAML 1.1) reads "1e-4" as a string
    path = tmp_path / "c.yaml"
    path.write_text("TRAIN:\n    learning_rate: 1e-4\n    weight_decay: 8E-4\n", encoding="utf-8")
    cfg = load_config(str(path))
    assert cfg["TRAIN"]["learning_rate"] == 1e-4 and type(cfg["TRAIN"]["learning_rate"]) is float
    assert cfg["TRAIN"]["weight_decay"] == 8e-4


@pytest.mark.parametrize("override, section, key, expected, kind", [
    ("TRAIN.learning_rate=1", "TRAIN", "learning_rate", 1.0, float),
    ("TRAIN.learning_rate=1e-4", "TRAIN", "learning_rate", 1e-4, float),
    ("TRAIN.learning_rate=2.5E-3", "TRAIN", "learning_rate", 2.5e-3, float),
    ("TRAIN.learning_rate=0.01", "TRAIN", "learning_rate", 0.01, float),
    ("MODEL.num_classes=12", "MODEL", "num_classes", 12, int),
    ("TRAIN.batch_size=1e2", "TRAIN", "batch_size", 100, int),
    ("TRAIN.filelist=my/train.list", "TRAIN", "filelist", "my/train.list", str),
    ("TRAIN.filelist=my dir/训练.list", "TRAIN", "filelist", "my dir/训练.list", str),
    ("TRAIN.filelist=123", "TRAIN", "filelist", "123", str),
    ("TRAIN.filelist=yes", "TRAIN", "filelist", "yes", str),      # YAML 1.1 would read True
    ("TRAIN.filelist=0123", "TRAIN", "filelist", "0123", str),    # YAML 1.1 would read octal 83
    ("MODEL.dataset=2.10", "MODEL", "dataset", "2.10", str),      # not 2.1
    ("TRAIN.decay_epochs=[3, 6]", "TRAIN", "decay_epochs", [3, 6], list),
    ("TRAIN.decay_epochs=7", "TRAIN", "decay_epochs", [7], list),
    ("TRAIN.decay_epochs=[]", "TRAIN", "decay_epochs", [], list),
    ("MODEL.feature_dims=[16]", "MODEL", "feature_dims", [16], list),
    ("TRAIN.use_gpu=False", "TRAIN", "use_gpu", False, bool),
    ("TRAIN.pretrain_base=None", "TRAIN", "pretrain_base", None, type(None)),
    (" TRAIN.epoch = 3 ", "TRAIN", "epoch", 3, int),
])
def test_override_takes_the_type_of_the_key(override, section, key, expected, kind):
    cfg = load_config(SINGLE, [override])
    assert cfg[section][key] == expected
    assert type(cfg[section][key]) is kind
    if kind is list:
        assert all(type(v) is type(e) for v, e in zip(cfg[section][key], expected))


def test_overrides_apply_in_order_and_leave_the_rest():
    cfg = load_config(SINGLE, ["MODEL.num_classes=12", "MODEL.num_classes=7", "TRAIN.epoch=2"])
    assert cfg["MODEL"]["num_classes"] == 7 and cfg["TRAIN"]["epoch"] == 2
    assert cfg["TRAIN"]["batch_size"] == 128 and cfg["TEST"]["batch_size"] == 128


@pytest.mark.parametrize("override, words", [
    ("TRAIN.no_such_key=3", ["TRAIN.no_such_key"]),
    ("NOSECTION.batch_size=3", ["NOSECTION.batch_size"]),
    ("train.batch_size=3", ["train.batch_size"]),
])
def test_unknown_key_is_named(override, words):
    with pytest.raises(UserError, match="unknown") as e:
        load_config(SINGLE, [override])
    assert all(w in str(e.value) for w in words)


@pytest.mark.parametrize("override", [
    "TRAIN.batch_size", "TRAIN=3", "batch_size=3", "=3", "", "TRAIN.learning_rate=",
])
def test_malformed_override(override):
    with pytest.raises(UserError):
        load_config(SINGLE, [override])


@pytest.mark.parametrize("override", [
    "TRAIN.learning_rate=fast", "MODEL.num_classes=1.5", "MODEL.num_classes=twelve", "MODEL.num_classes=True",
    "TRAIN.use_gpu=maybe", "TRAIN.decay_epochs=[a, b]", "TRAIN.decay_epochs=3,6",
])
def test_value_of_the_wrong_type_names_the_key(override):
    with pytest.raises(UserError) as e:
        load_config(SINGLE, [override])
    assert override.split("=")[0] in str(e.value)


def test_missing_config_names_the_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert path in str(e.value)


@pytest.mark.parametrize("content", [
    b"MODEL: [\n",                              # invalid YAML
    b"MODEL:\n  name: x\n   bad: indent\n",     # invalid YAML
    b"MODEL:\n  name: \"\xff\xfe\"\n",          # invalid UTF-8
    b"- a\n- b\n",                              # not a mapping
    b"MODEL: 3\n",                              # section not a mapping
    b"MODLE:\n  num_classes: 3\n",              # unknown section
])
def test_bad_config_file_names_the_file(tmp_path, content):
    path = tmp_path / "bad config.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        load_config(str(path))
    assert str(path) in str(e.value)


def test_config_with_bom_and_crlf(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfMODEL:\r\n    num_classes: 12\r\n")
    assert load_config(str(path))["MODEL"]["num_classes"] == 12


# --- absurd values, typos in MODEL, keys this toolkit ignores ------------------------------------------

TSN_SINGLE = os.path.join(ROOT, "configs", "tsn-single.yaml")


@pytest.mark.parametrize("config, override", [
    (TSN_SINGLE, "INFER.seg_num=0"), (TSN_SINGLE, "TRAIN.seg_num=-3"), (TSN_SINGLE, "TEST.target_size=0"),
    (TSN_SINGLE, "MODEL.num_layers=34"), (TSN_SINGLE, "TRAIN.momentum=-0.9"),
    (SINGLE, "MODEL.num_classes=0"), (SINGLE, "TRAIN.batch_size=0"), (SINGLE, "VALID.batch_size=-8"),
    (SINGLE, "TRAIN.epoch=0"), (SINGLE, "MODEL.topk=0"), (SINGLE, "TEST.num_workers=-1"),
    (SINGLE, "TRAIN.learning_rate=-1e-3"), (SINGLE, "TRAIN.learning_rate=.nan"), (SINGLE, "MODEL.drop_rate=1"),
    (SINGLE, "MODEL.feature_dims=[0]"), (SINGLE, "MODEL.fc_sizes=[]"), (SINGLE, "TRAIN.decay_epochs=[-1]"),
    (SINGLE, "TRAIN.log_interval=0"), (TSN_SINGLE, "INFER.feature_dtype=int8"),
    (TSN_SINGLE, "INFER.feature_dtype=[1]"), (SINGLE, "MODEL.max_frames=0"), (SINGLE, "MODEL.max_frames=-5"),
    (TSN_SINGLE, "INFER.shard_size=-1"), (SINGLE, "INFER.shard_size=-4"),
])
def test_absurd_value_is_refused_naming_the_key(config, override):
    with pytest.raises(UserError) as e:
        load_config(config, [override])
    message = str(e.value)
    assert override.split("=")[0] in message and "must be" in message and "\n" not in message, message


@pytest.mark.parametrize("content, words", [
    (b"TRAIN: [1, 2]\n", ["TRAIN", "mapping"]),                          # a section that is a list
    (b"MODEL:\n  - num_classes\n  - 3\n", ["MODEL", "mapping"]),
    (b"TRAIN:\n  batch_size: [8]\n", ["TRAIN.batch_size", "integer"]),  # a list where a count belongs
    (b"TRAIN:\n  batch_size: yes\n", ["TRAIN.batch_size", "integer"]),  # YAML 1.1 reads a bool
    (b"INFER:\n  batch_size: null\n", ["INFER.batch_size"]),
    (b"TRAIN:\n  learning_rate: .inf\n", ["TRAIN.learning_rate"]),
    (b"INFER:\n  feature_dtype: int4\n", ["INFER.feature_dtype", "float32, float16 or uint8", "'int4'"]),
])
def test_absurd_config_file_names_file_and_key(tmp_path, content, words):
    path = tmp_path / "odd config.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        load_config(str(path))
    assert str(path) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_feature_dtype_defaults_to_float32_and_takes_the_three_dtypes(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("MODEL:\n  name: TSN\n", encoding="utf-8")  # a config from before the key
    assert load_config(str(path))["INFER"]["feature_dtype"] == "float32"
    for dtype in ("float32", "float16", "uint8"):
        assert load_config(TSN_SINGLE, [f"INFER.feature_dtype={dtype}"])["INFER"]["feature_dtype"] == dtype


def test_sizes_left_null_mean_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("TEST:\n    seg_num: null\n    short_size: null\n", encoding="utf-8")
    assert load_config(str(path))["TEST"]["seg_num"] is None


def test_unknown_model_key_is_refused_and_known_ones_pass(tmp_path):
    from video_tag.models import build_model, model_arguments
    for config in CONFIGS + [TSN_SINGLE]:   # every shipped config passes
        name = "TSN" if "tsn" in config else "AttentionLSTM"
        model_arguments(name, load_config(config)["MODEL"])
    path = tmp_path / "original.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")   # the original's informative keys (feature_num, ...) pass
    assert set(model_arguments("AttentionLSTM", load_config(str(path))["MODEL"])) == {
        "num_classes", "feature_dims", "embedding_size", "lstm_size", "drop_rate", "fc_sizes"}
    path.write_text(ORIGINAL.replace("lstm_size: 512", "lstm_sise: 512"), encoding="utf-8")
    cfg = load_config(str(path))
    with pytest.raises(UserError, match=r"unknown key MODEL\.lstm_sise for AttentionLSTM"):
        model_arguments("AttentionLSTM", cfg["MODEL"], f"config {path}")
    with pytest.raises(UserError, match=r"MODEL\.lstm_sise"):   # build_model checks too
        build_model("AttentionLSTM", cfg)
    cfg = load_config(TSN_SINGLE)
    cfg["MODEL"]["numlayers"] = 50
    with pytest.raises(UserError, match=r"MODEL\.numlayers for TSN"):
        build_model("TSN", cfg)


def test_ignored_keys_warn_when_set_to_another_value(tmp_path, caplog):
    from video_tag.config import warn_ignored
    for config in CONFIGS + [TSN_SINGLE]:   # the shipped configs keep the original values: no warning
        with caplog.at_level("WARNING"):
            warn_ignored(load_config(config), config)
    assert caplog.records == []
    path = tmp_path / "original.yaml"
    path.write_text(ORIGINAL.replace("use_gpu: True", "use_gpu: False"), encoding="utf-8")
    overrides = ["MODEL.seg_num=5", "MODEL.seglen=2", "MODEL.image_mean=[0.5, 0.5, 0.5]"]
    with caplog.at_level("WARNING"):
        warn_ignored(load_config(str(path)), str(path))
        warn_ignored(load_config(TSN_SINGLE, overrides + ["TRAIN.total_videos=224684"]), TSN_SINGLE)
    text = caplog.text
    for key in ("TRAIN.num_samples=5000", "TRAIN.use_gpu=False", "MODEL.seg_num=5", "MODEL.seglen=2",
                "MODEL.image_mean=[0.5, 0.5, 0.5]", "TRAIN.total_videos=224684"):
        assert key in text, text
    assert "image_std" not in text


def test_max_frames_defaults_to_4096_and_takes_a_count(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("MODEL:\n  name: AttentionLSTM\n", encoding="utf-8")  # a config from before the key
    assert load_config(str(path))["MODEL"]["max_frames"] == 4096
    assert load_config(SINGLE, ["MODEL.max_frames=100000"])["MODEL"]["max_frames"] == 100000


def test_shard_size_defaults_to_0_and_is_checked_like_every_key(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("MODEL:\n  name: TSN\n", encoding="utf-8")  # a config from before the key
    assert load_config(str(path))["INFER"]["shard_size"] == 0
    assert load_config(str(path), ["INFER.shard_size=4"])["INFER"]["shard_size"] == 4
    path.write_text("INFER:\n  shard_size: -2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"INFER.shard_size must be 0 \(one file per video\) or a number"):
        load_config(str(path))


# Shipped configs from any folder (README: the commands work outside the project root).

@pytest.mark.parametrize("given", ["configs/attention_lstm-single.yaml", "./configs/attention_lstm-single.yaml",
                                   "attention_lstm-single.yaml"])
def test_a_shipped_config_is_found_from_another_folder(given, tmp_path, monkeypatch, caplog):
    from video_tag.config import find_config
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="video_tag.config"):
        found = find_config(given)
    assert os.path.samefile(found, SINGLE)
    assert "shipped with videotag" in caplog.text
    assert load_config(given)["TRAIN"]["batch_size"] == 128


def test_shipped_config_dirs_include_the_installed_package_data():
    from video_tag import config
    package = os.path.dirname(os.path.abspath(config.__file__))
    assert config.shipped_config_dirs() == [os.path.join(package, "configs"), os.path.join(ROOT, "configs")]
    assert sorted(n for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(".yaml")) == sorted(config.SHIPPED)


def test_a_config_in_the_current_folder_wins(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    with open(SINGLE, encoding="utf-8") as f:
        (tmp_path / "configs" / "attention_lstm-single.yaml").write_text(
            f.read().replace("batch_size: 128", "batch_size: 7", 1), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config("configs/attention_lstm-single.yaml")["TRAIN"]["batch_size"] == 7


@pytest.mark.parametrize("given", ["configs/mine.yaml", "other/attention_lstm.yaml", "attention_lstm"])
def test_other_missing_configs_are_refused(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"cannot read config {given}: No such file"):
        load_config(given)
