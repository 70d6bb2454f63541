"""What defines a model for the scripts: one ``ModelSpec`` per ``--model_name``, defined beside its layer."""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelSpec:
    """Everything train/eval/predict need to know about one model.

    layer:          the ``paddle.nn.Layer`` class, built from the MODEL keys that are its arguments
    reader:         the list reader class, ``reader(list_path, mode, cfg, check_files=True)``: ``len()``,
                    ``load(i)`` (a sample dict, or ``ValueError`` with the reason), ``collate(samples)``
    loss:           ``loss(logits [B, C], labels, nranks=1) -> (loss to minimise, per-video loss [B])``
    probabilities:  ``probabilities(logits [B, C]) -> [B, C]``
    optimizer:      ``optimizer(parameters, cfg["TRAIN"], steps_per_epoch, num_samples)`` -> ``(optimizer,
                    lr schedule)``; num_samples: the training list's length
    metrics:        ``metrics(cfg)``: a fresh accumulator (``update``, ``state``, ``merge``, ``compute``,
                    ``main``: the figure that picks the best checkpoint)
    other_keys:     MODEL keys that are no argument of ``layer`` but are known: read elsewhere (topk by
                    predict, format by the reader), or kept from the original configs for information
                    (any other key is refused as a typo)
    """
    layer: type
    reader: type
    loss: Callable
    probabilities: Callable
    optimizer: Callable
    metrics: Callable
    other_keys: frozenset = frozenset()
