"""The models, by the ``--model_name`` that selects them."""
import inspect

from ..config import DEFAULTS
from ..errors import UserError
from .attention_lstm import AttentionLSTM
from .tsn import TSN

MODELS = {"AttentionLSTM": AttentionLSTM, "TSN": TSN}

# MODEL keys that are no constructor argument: read elsewhere (topk by predict, format by the reader),
# kept from the original configs for information, or ignored with a warning (config.IGNORED).
OTHER_MODEL_KEYS = {
    "AttentionLSTM": {"name", "dataset", "bone_nework", "feature_num", "feature_names", "topk"},
    "TSN": {"name", "format", "topk", "seg_num", "seglen", "image_mean", "image_std"},
}


def model_arguments(model_name, model_cfg, where="config"):
    """The constructor arguments of ``MODELS[model_name]`` found in ``model_cfg`` (the MODEL section).

    A key that is neither an argument nor in ``OTHER_MODEL_KEYS`` (nor one of config.DEFAULTS, which
    every model's section gets) is a typo: a UserError naming it and ``where``, not a silent ignore.
    """
    accepted = set(inspect.signature(MODELS[model_name].__init__).parameters) - {"self"}
    known = accepted | OTHER_MODEL_KEYS[model_name] | set(DEFAULTS["MODEL"])
    unknown = sorted(set(model_cfg) - known)
    if unknown:
        raise UserError(f"{where}: unknown key MODEL.{unknown[0]} for {model_name} "
                        f"(known: {', '.join(sorted(known))})")
    return {key: value for key, value in model_cfg.items() if key in accepted}


def build_model(model_name, cfg):
    """Build ``MODELS[model_name]`` from the ``MODEL`` section of a config."""
    return MODELS[model_name](**model_arguments(model_name, cfg["MODEL"]))
