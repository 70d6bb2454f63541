"""The models, by the ``--model_name`` that selects them: a ``ModelSpec`` each (layer, reader, loss,
probabilities, optimizer, metrics), defined at the end of the model's own file. Adding a model is one
file plus one line here.
"""
from . import attention_lstm, tsn
from .attention_lstm import AttentionLSTM
from .spec import ModelSpec
from .tsn import TSN

MODELS = {"AttentionLSTM": attention_lstm.SPEC, "TSN": tsn.SPEC}


def build_model(model_name, cfg):
    """Build the layer of ``MODELS[model_name]`` from the ``MODEL`` section of a config."""
    return MODELS[model_name].layer(**cfg["MODEL"])
