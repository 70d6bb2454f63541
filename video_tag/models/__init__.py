"""The models, by the ``--model_name`` that selects them."""
from .attention_lstm import AttentionLSTM
from .tsn import TSN

MODELS = {"AttentionLSTM": AttentionLSTM, "TSN": TSN}


def build_model(model_name, cfg):
    """Build ``MODELS[model_name]`` from the ``MODEL`` section of a config."""
    return MODELS[model_name](**cfg["MODEL"])
