"""YAML configs with the original VideoTag sections and keys, plus ``-o SECTION.key=value`` overrides.

A config is a plain dict of dicts::

    {"MODEL": {"name": "AttentionLSTM", "num_classes": 3396, ...},
     "TRAIN": {"batch_size": 128, "learning_rate": 0.000125, ...}, "VALID": {...}, "TEST": {...},
     "INFER": {...}}

Keys missing from a user's file are filled from ``DEFAULTS`` (so configs written for the original
toolkit still load); an override must name a key that exists after that merge.
"""
import logging
import math
import os
import re

import yaml

from .errors import UserError
from .feature_files import DTYPES as FEATURE_DTYPES

log = logging.getLogger(__name__)

SECTIONS = ("MODEL", "TRAIN", "VALID", "TEST", "INFER")

# Keys this toolkit adds to the original configs, with values that keep the original behaviour (but
# keep_checkpoints: the original kept every 1.2 GB epoch checkpoint).
DEFAULTS = {
    "MODEL": {"topk": 20, "fc_sizes": [8192, 4096], "max_frames": 4096},
    "TRAIN": {"num_workers": 2, "log_interval": 10, "num_gpus": 1, "use_gpu": True, "keep_checkpoints": 3,
              "save_interval_steps": 0, "seed": None, "amp": False, "pretrain_base": None, "num_samples": None,
              "decay_epochs": [], "decay_gamma": 0.1, "max_bad_fraction": 0.1,
              # extend.py: fine-tune a model to its tags plus new ones (None: not extending)
              "extend_from": None, "extend_from_labels": None, "extend_to_labels": None, "distill_weight": 1.0},
    "VALID": {"batch_size": 128, "filelist": None, "num_workers": 2},
    "TEST": {"batch_size": 128, "filelist": None, "num_workers": 2},
    "INFER": {"batch_size": 1, "filelist": None, "num_workers": 2, "feature_dtype": "float32", "shard_size": 0},
}


SHIPPED = ("attention_lstm.yaml", "attention_lstm-single.yaml", "tsn.yaml", "tsn-single.yaml")


def shipped_config_dirs():
    """Where the configs shipped with videotag are: ``video_tag/configs`` of an installed wheel
    (setup.py's package data), then ``configs/`` of the project root (a clone, ``pip install -e``)."""
    package = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs")]


def find_config(path):
    """``path`` when it exists; else, when it names a shipped config (``configs/tsn.yaml``,
    ``./configs/attention_lstm-single.yaml``, ``tsn.yaml``), that config where videotag is installed, so
    the scripts' defaults and README's commands work from any folder; else ``path`` unchanged."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    parts = os.path.normpath(path).replace(os.sep, "/").split("/")
    if parts[-1] not in SHIPPED or parts[:-1] not in ([], ["configs"]):
        return path
    for folder in shipped_config_dirs():
        candidate = os.path.join(folder, parts[-1])
        if os.path.isfile(candidate):
            log.info("config %s is not in this folder: using %s, shipped with videotag", path, candidate)
            return candidate
    return path


def load_config(path, overrides=()):
    """Read the YAML file at ``path`` and apply ``overrides`` (strings ``SECTION.key=value``). A ``path``
    that does not exist but names a shipped config reads that one (``find_config``)."""
    path = find_config(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not valid UTF-8") from None
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: expected sections {', '.join(SECTIONS)}")
    cfg = {}
    for section in SECTIONS:
        body = raw.get(section) or {}
        if not isinstance(body, dict):
            raise UserError(f"config {path}: section {section} must be a mapping")
        cfg[section] = {**DEFAULTS.get(section, {}), **{k: _fix_scalar(v) for k, v in body.items()}}
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UserError(f"config {path}: unknown section {unknown[0]} (expected {', '.join(SECTIONS)})")
    for item in overrides:
        apply_override(cfg, item)
    check_values(cfg, path)
    return cfg


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(least):
    return lambda v: type(v) is int and v >= least, f"an integer >= {least}"


def _integers(v):
    return isinstance(v, list) and bool(v) and all(type(x) is int and x >= 1 for x in v)


# What a value must be, for each key that may appear in a section (any section): (test, description).
RULES = {
    "batch_size": _count(1), "num_workers": _count(0), "num_classes": _count(1), "topk": _count(1),
    "max_frames": _count(1),  # T of a feature file (MODEL): more is refused before the file is read
    "shard_size": (lambda v: type(v) is int and v >= 0, "0 (one file per video) or a number of videos per shard"),
    "keep_checkpoints": _count(0), "save_interval_steps": _count(0), "seed": _count(0),
    "amp": (lambda v: isinstance(v, bool), "true or false"),
    "epoch": _count(1), "log_interval": _count(1), "seg_num": _count(1), "short_size": _count(1),
    "target_size": _count(1), "embedding_size": _count(1), "lstm_size": _count(1),
    "feature_dims": (_integers, "a list of integers >= 1"), "fc_sizes": (_integers, "a list of integers >= 1"),
    "num_layers": (lambda v: v in (50, 101, 152) and type(v) is int, "50, 101 or 152"),
    "feature_dtype": (lambda v: v in FEATURE_DTYPES, " or ".join(FEATURE_DTYPES).replace(" or ", ", ", 1)),
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "drop_rate": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "max_bad_fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    **{key: (lambda v: isinstance(v, str) and v.strip() != "", "a file path")
       for key in ("extend_from", "extend_from_labels", "extend_to_labels")},
    "decay_epochs": (lambda v: isinstance(v, list) and all(_number(x) and x >= 0 for x in v),
                     "a list of numbers >= 0"),
    **{key: (lambda v: _number(v) and v >= 0, "a number >= 0")
       for key in ("decay_gamma", "learning_rate_decay", "weight_decay", "l2_weight_decay", "momentum",
                   "distill_weight")},
}
# Keys whose null means "the default" (the TSN reader's sizes; a seed drawn at random; not extending).
NULLABLE = {"seg_num", "short_size", "target_size", "seed", "extend_from", "extend_from_labels", "extend_to_labels"}


def check_values(cfg, path):
    """Refuse absurd values (``batch_size: 0``, ``seg_num: -1``, ``learning_rate: .nan``, a list where a
    number belongs) in one line naming the key, whether they come from the file or from ``-o``."""
    for section in SECTIONS:
        for key, value in cfg[section].items():
            if key not in RULES or (value is None and key in NULLABLE):
                continue
            test, description = RULES[key]
            if not test(value):
                raise UserError(f"config {path}: {section}.{key} must be {description}, got {value!r}")


# Keys of the original configs that this toolkit does not use, with the original's value: a config
# setting one to another value gets a warning (README, "Configs").
IGNORED = {
    ("MODEL", "image_mean"): ([0.485, 0.456, 0.406], "frames are normalised with the ImageNet mean"),
    ("MODEL", "image_std"): ([0.229, 0.224, 0.225], "frames are normalised with the ImageNet std"),
    ("MODEL", "seglen"): (1, "each segment is one frame"),
    ("MODEL", "seg_num"): (3, "each section's seg_num is, by default TRAIN/VALID 3, TEST 7, INFER 300"),
    ("TRAIN", "use_gpu"): (True, "the --use_gpu flag decides"),
    ("TRAIN", "num_samples"): (None, "the decay steps are counted on the training list"),
    ("TRAIN", "total_videos"): (None, "the decay steps are counted on the training list"),
}


def warn_ignored(cfg, path):
    """Log a warning for each key of ``IGNORED`` that ``cfg`` sets to another value than the original's."""
    for (section, key), (original, why) in IGNORED.items():
        value = cfg.get(section, {}).get(key, original)
        if value != original:
            log.warning("config %s: %s.%s=%r is ignored (%s)", path, section, key, value, why)


# YAML 1.2 floats that PyYAML (YAML 1.1) leaves as strings: an exponent without a dot, e.g. 1e-4.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _fix_scalar(value):
    """What PyYAML leaves as strings: Python's ``None`` (the original configs write it) and ``1e-4``."""
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    return None if value == "None" else value


def apply_override(cfg, item):
    """Set ``cfg[SECTION][key]`` from ``"SECTION.key=value"``, typed like the value it replaces."""
    name, sep, text = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise UserError(f"override {item!r}: expected SECTION.key=value, e.g. MODEL.num_classes=12")
    if section not in cfg or key not in cfg[section]:
        raise UserError(f"override {item!r}: unknown config key {name.strip()}")
    old = cfg[section][key]
    try:
        value = _fix_scalar(yaml.safe_load(text)) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if isinstance(old, str) and value is not None:
        value = text.strip() if not isinstance(value, str) else value  # "yes", "0123", "1.10" as written
    cfg[section][key] = _coerce(value, old, name.strip())


def _coerce(value, old, name):
    if old is None or value is None:
        return value
    if isinstance(old, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(old, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)  # "1e-4": PyYAML reads exponents without a dot as strings
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(old, float):
                return float(value)
            if float(value).is_integer():
                return int(value)
    elif isinstance(old, str):
        return value if isinstance(value, str) else str(value)
    elif isinstance(old, list):
        value = value if isinstance(value, list) else [value]
        if old and old[0] is not None:  # elements typed like the ones they replace, e.g. [5] -> ints
            value = [_coerce(v, old[0], name) for v in value]
        return value
    else:
        return value
    raise UserError(f"override {name}={value!r}: expected a value of type {type(old).__name__}")

