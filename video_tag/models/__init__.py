"""The models, by the ``--model_name`` that selects them: a ``ModelSpec`` each (layer, reader, loss,
probabilities, optimizer, metrics, the other MODEL keys it knows), defined at the end of the model's
own file. Adding a model is one file plus one line here.
"""
import inspect

from ..config import DEFAULTS
from ..errors import UserError
from . import attention_lstm, tsn
from .attention_lstm import AttentionLSTM  # noqa: F401 (the layers, importable from here)
from .spec import ModelSpec  # noqa: F401
from .tsn import TSN  # noqa: F401

MODELS = {"AttentionLSTM": attention_lstm.SPEC, "TSN": tsn.SPEC}


def model_arguments(model_name, model_cfg, where="config"):
    """The constructor arguments of the layer of ``MODELS[model_name]`` found in ``model_cfg`` (MODEL).

    A key that is neither an argument nor one of the spec's ``other_keys`` (nor one of config.DEFAULTS,
    which every model's section gets) is a typo: a UserError naming it and ``where``, not a silent ignore.
    """
    spec = MODELS[model_name]
    accepted = set(inspect.signature(spec.layer.__init__).parameters) - {"self"}
    known = accepted | set(spec.other_keys) | set(DEFAULTS["MODEL"])
    unknown = sorted(set(model_cfg) - known)
    if unknown:
        raise UserError(f"{where}: unknown key MODEL.{unknown[0]} for {model_name} "
                        f"(known: {', '.join(sorted(known))})")
    return {key: value for key, value in model_cfg.items() if key in accepted}


def build_model(model_name, cfg):
    """Build the layer of ``MODELS[model_name]`` from the ``MODEL`` section of a config."""
    return MODELS[model_name].layer(**model_arguments(model_name, cfg["MODEL"]))
