"""The training losses (each model's ``ModelSpec`` names its own).

A loss takes logits [B, C], labels (multi-hot [B, C] float32 or class ids [B] int64) and the number of
data-parallel processes; it returns ``(loss to minimise, per-video loss [B])``.
"""
import paddle.nn.functional as F


def sigmoid_cross_entropy_sum(logits, labels, nranks=1):
    """AttentionLSTM: sigmoid cross-entropy summed over classes and over the batch.

    Each process scales its own sum by the number of processes, so that with gradients averaged across
    processes the effective loss is the sum over the global batch, as in the original.
    """
    per_video = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(axis=1)
    return per_video.sum() * nranks, per_video


def weighted_sigmoid_cross_entropy_sum(logits, targets, weights, nranks=1):
    """The AttentionLSTM's loss with soft targets and a weight per entry (``extend``: distillation).

    logits, targets (probabilities in [0, 1]), weights: [B, C]. Returns ``(sum over classes and batch of
    weights * BCE(logits, targets), times nranks; per-video sums [B])``, as ``sigmoid_cross_entropy_sum``.
    """
    per_video = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights).sum(axis=1)
    return per_video.sum() * nranks, per_video


def softmax_cross_entropy_mean(logits, labels, nranks=1):
    """TSN: cross-entropy of the softmax, mean over the batch (labels: class ids [B])."""
    per_video = F.cross_entropy(logits, labels.reshape([-1, 1]), reduction="none").reshape([-1])
    return per_video.mean(), per_video

