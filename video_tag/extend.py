"""Your tags next to VideoTag's: fine-tune the AttentionLSTM to its old tags plus new ones, without
forgetting the old (Learning without Forgetting, Li & Hoiem 2016).

Set in the TRAIN section of the config (or with ``-o``)::

    extend_from: ./weights/attention_lstm       # the model whose tags this run extends (the release)
    extend_from_labels: ./label_3396.txt        # its label file: one name per output
    extend_to_labels: ./my_labels.txt           # this run's: those names, in order, then the new ones
    distill_weight: 1.0                         # weight of the old tags' distillation targets

and ``MODEL.num_classes`` to the line count of ``extend_to_labels``. The run starts from ``extend_from``:
every parameter, and the old tags' rows of the last layer (``output.w_0[:, :N]``, ``output.b_0[:N]``);
the new rows keep the model's initial values. (``--pretrain`` is refused with it.) A copy of the starting
model, frozen (eval mode, no gradient), runs on every training batch: where a video has no label among
the N old tags, its targets for them are that copy's probabilities, weighted by ``distill_weight``; its
targets for the new tags, and all targets of a video with an old label, are its labels (weight 1)::

    loss = sum over videos b and classes c of  w[b, c] * BCE(logit[b, c], target[b, c])

The loss in metrics.csv and the training log is this mixed loss.
"""
import copy
import logging

import numpy as np
import paddle

from . import weights
from .errors import UserError
from .losses import weighted_sigmoid_cross_entropy_sum
from .models import MODELS, build_model
from .readers.lists import read_lines

log = logging.getLogger(__name__)

HEAD = ("output.w_0", "output.b_0")  # the last layer: [in, C] and [C]


def label_names(path, what):
    """The names of a label file (line index = class id; trailing blank lines are not classes)."""
    try:
        names = [text.strip() for _, text in read_lines(path, keep_blank=True)]
    except UserError:
        raise UserError(f"{what} {path}: not found or unreadable") from None
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UserError(f"{what} {path} is empty")
    return names


def check_labels(old_path, new_path, num_classes):
    """The number of old tags, once the two label files are checked: ``new_path`` holds ``num_classes``
    names, the first ones those of ``old_path`` in order, the others new, distinct and not empty."""
    old = label_names(old_path, "TRAIN.extend_from_labels")
    new = label_names(new_path, "TRAIN.extend_to_labels")
    if len(new) != num_classes:
        raise UserError(f"TRAIN.extend_to_labels {new_path} has {len(new)} names, MODEL.num_classes is "
                        f"{num_classes}: set MODEL.num_classes={len(new)}")
    if len(new) <= len(old):
        raise UserError(f"TRAIN.extend_to_labels {new_path} has {len(new)} names, no more than the "
                        f"{len(old)} of {old_path}: it must list those, then the new tags")
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            raise UserError(f"{new_path}:{i + 1}: {b!r} where {old_path}:{i + 1} has {a!r}: the label file of "
                            f"the extended model starts with the {len(old)} names of {old_path}, in order")
    seen = {name: i for i, name in enumerate(old)}
    for i in range(len(old), len(new)):
        if not new[i]:
            raise UserError(f"{new_path}:{i + 1}: a new tag without a name")
        if new[i] in seen:
            raise UserError(f"{new_path}:{i + 1}: new tag {new[i]!r} duplicates tag {seen[new[i]]} "
                            f"({new_path}:{seen[new[i]] + 1})")
        seen[new[i]] = i
    return len(old)


def start_weights(path, num_old):
    """The starting model's weights ``{name: array}``, checked to have ``num_old`` outputs."""
    state = weights.read_state(path)
    file = weights.resolve(path)
    if HEAD[0] not in state or HEAD[1] not in state:
        raise UserError(f"TRAIN.extend_from {file} has no {HEAD[0]} / {HEAD[1]}: not AttentionLSTM weights")
    outputs = state[HEAD[0]].shape[-1]
    if outputs != num_old or state[HEAD[1]].shape != (num_old,):
        raise UserError(f"TRAIN.extend_from {file} has {outputs} outputs, TRAIN.extend_from_labels names "
                        f"{num_old} tags: they must be the weights and labels of one model")
    return state


def load_extended(model, state, num_old):
    """Load ``state`` (the starting model's weights) into ``model`` (of more classes): every parameter,
    and of the last layer the first ``num_old`` columns / entries; the new ones stay as initialised."""
    params = weights.fluid_params(model)
    for name, param in params.items():
        if name not in state:
            raise UserError(f"TRAIN.extend_from has no parameter {name}: not weights of this model")
        array = state[name].astype(np.float32)
        if name in HEAD:
            head = param.numpy()
            head[..., :num_old] = array
            array = head
        if tuple(array.shape) != tuple(param.shape):
            raise UserError(f"TRAIN.extend_from: {name} has shape {list(state[name].shape)}, the model expects "
                            f"{list(param.shape)} (the model sizes of the config must be the starting model's)")
        param.set_value(array)


def distillation_targets(labels, teacher_probabilities, num_old, distill_weight):
    """Targets and weights [B, C] of the mixed loss (module docstring), as tensors.

    labels [B, C] multi-hot, teacher_probabilities [B, num_old]. Rows without a label among the first
    ``num_old`` classes take the teacher's probabilities there, with weight ``distill_weight``; every
    other entry keeps its label, with weight 1.
    """
    old = labels[:, :num_old]
    distilled = (old.sum(axis=1, keepdim=True) == 0).astype(labels.dtype)               # [B, 1]: 1 or 0
    targets = distilled * teacher_probabilities.astype(labels.dtype) + (1 - distilled) * old
    w_old = distilled * distill_weight + (1 - distilled) * paddle.ones_like(old)
    new = labels[:, num_old:]
    return paddle.concat([targets, new], axis=1), paddle.concat([w_old, paddle.ones_like(new)], axis=1)


class Distiller:
    """The frozen starting model and the mixed loss of a run that extends its tags.

    ``loss(logits [B, C], labels [B, C], inputs)`` -> (loss to minimise, per-video loss [B]), as a
    ``ModelSpec`` loss; ``inputs``: the batch's model inputs (features, lengths), which the teacher sees too.
    """

    def __init__(self, teacher, num_old, distill_weight):
        self.teacher, self.num_old, self.distill_weight = teacher, int(num_old), float(distill_weight)
        teacher.eval()  # dropout as at inference, never trained
        for p in teacher.parameters():
            p.stop_gradient = True

    def teacher_probabilities(self, inputs):
        """The starting model's probabilities [B, num_old] (float32, no gradient)."""
        with paddle.no_grad():
            return MODELS["AttentionLSTM"].probabilities(self.teacher(*inputs)).astype("float32").detach()

    def loss(self, logits, labels, inputs, nranks=1):
        targets, w = distillation_targets(labels, self.teacher_probabilities(inputs), self.num_old,
                                          self.distill_weight)
        return weighted_sigmoid_cross_entropy_sum(logits, targets, w, nranks)


def check(cfg, model_name, pretrain=None):
    """The up-front checks of an extending run (label files, flags); returns the number of old tags, or
    None when ``TRAIN.extend_from`` is not set."""
    train = cfg["TRAIN"]
    keys = ("extend_from", "extend_from_labels", "extend_to_labels")
    if not train.get("extend_from"):
        others = [k for k in keys[1:] if train.get(k)]
        if others:
            raise UserError(f"TRAIN.{others[0]} is set but TRAIN.extend_from is not: set the weights to extend")
        return None
    missing = [k for k in keys if not train.get(k)]
    if missing:
        raise UserError(f"TRAIN.extend_from needs TRAIN.{missing[0]} too (see README, 'Your tags next to VideoTag's')")
    if model_name != "AttentionLSTM":
        raise UserError(f"TRAIN.extend_from extends the AttentionLSTM's tags, not {model_name}'s")
    if pretrain:
        raise UserError("--pretrain and TRAIN.extend_from exclude each other: the run starts from "
                        "TRAIN.extend_from's weights")
    weights.resolve(train["extend_from"])
    return check_labels(train["extend_from_labels"], train["extend_to_labels"], int(cfg["MODEL"]["num_classes"]))


def setup(model, cfg, model_name, pretrain=None):
    """For an extending run (``TRAIN.extend_from`` set): load the starting weights into ``model`` and
    return its ``Distiller``; otherwise None."""
    num_old = check(cfg, model_name, pretrain)
    if num_old is None:
        return None
    state = start_weights(cfg["TRAIN"]["extend_from"], num_old)
    load_extended(model, state, num_old)
    teacher_cfg = copy.deepcopy(cfg)
    teacher_cfg["MODEL"]["num_classes"] = num_old
    teacher = build_model(model_name, teacher_cfg)
    for name, param in weights.fluid_params(teacher).items():
        param.set_value(state[name].astype(np.float32))
    weight = float(cfg["TRAIN"].get("distill_weight", 1.0))
    log.info("extending %d tags of %s by %d: old rows kept, new rows fresh; distillation weight %g",
             num_old, cfg["TRAIN"]["extend_from"], int(cfg["MODEL"]["num_classes"]) - num_old, weight)
    return Distiller(teacher, num_old, weight)
