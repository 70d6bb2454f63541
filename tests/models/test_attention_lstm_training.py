"""Training steps of the full-size AttentionLSTM against an independent float64 reference.

The reference is written here from GUIDE section 1, not from video_tag: the model as a per-video loop
of float64 Paddle ops differentiated by autograd (no fused kernel), the loss summed over classes and
batch, and fluid's centered RMSProp with L2 decay (biases of rgb_fc, fc1, fc2, output exempt) in numpy.
Ours runs as train.py does: the model, its ``ModelSpec``'s loss and optimizer, in float32.
"""
import numpy as np
import paddle
import pytest

from video_tag import weights
from video_tag.models import MODELS
from video_tag.models.attention_lstm import AttentionLSTM

from test_peephole_lstm import ref_lstm, ref_tanh  # the same float64 LSTM reference

FEATURE, EMBED, HIDDEN, FC, CLASSES = 2048, 1024, 512, (8192, 4096), 3396
LR, WEIGHT_DECAY, RHO, EPSILON = 1.25e-4, 8e-4, 0.95, 1e-6
NO_DECAY = {"rgb_fc.b_0", "fc1.b_0", "fc2.b_0", "output.b_0"}


def release_like_weights(rng):
    """Release-format parameters (fluid names, fc [in, out]) at scales that keep activations O(1)."""
    def r(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return {
        "rgb_fc.w_0": r(FEATURE, EMBED, fan_in=FEATURE), "rgb_fc.b_0": r(EMBED, fan_in=10),
        "rgb_fc_forward.w_0": r(EMBED, 4 * HIDDEN, fan_in=EMBED / 2),
        "rgb_lstm_forward.w_0": r(HIDDEN, 4 * HIDDEN, fan_in=HIDDEN / 4),
        "rgb_lstm_forward.b_0": r(1, 7 * HIDDEN, fan_in=4),
        "rgb_fc_backward.w_0": r(EMBED, 4 * HIDDEN, fan_in=EMBED / 2),
        "rgb_lstm_backward.w_0": r(HIDDEN, 4 * HIDDEN, fan_in=HIDDEN / 4),
        "rgb_lstm_backward.b_0": r(1, 7 * HIDDEN, fan_in=4),
        "rgb_weight.w_0": r(2 * HIDDEN, 1, fan_in=2 * HIDDEN / 16),
        "fc1.w_0": r(2 * HIDDEN, FC[0], fan_in=2 * HIDDEN), "fc1.b_0": r(FC[0], fan_in=100),
        "fc2.w_0": r(FC[0], FC[1], fan_in=FC[0] / 4), "fc2.b_0": r(FC[1], fan_in=100),
        "output.w_0": r(FC[1], CLASSES, fan_in=FC[1] / 4), "output.b_0": r(CLASSES, fan_in=1) - 3,
    }


def reference_loss(p, features, lengths, labels):
    """The summed sigmoid cross-entropy of the batch (float64 tensors ``p``), the LSTM one video at a time."""
    pooled = []
    for video, n in enumerate(lengths):
        e = ref_tanh(paddle.matmul(features[video, :n], p["rgb_fc.w_0"]) + p["rgb_fc.b_0"])
        h_f = ref_lstm(paddle.matmul(e, p["rgb_fc_forward.w_0"]), p["rgb_lstm_forward.w_0"],
                       p["rgb_lstm_forward.b_0"], reverse=False)
        h_b = ref_lstm(paddle.matmul(e, p["rgb_fc_backward.w_0"]), p["rgb_lstm_backward.w_0"],
                       p["rgb_lstm_backward.b_0"], reverse=True)
        z = paddle.concat([h_f, h_b], axis=1)                     # [n, 2D]; dropout 0
        s = paddle.matmul(z, p["rgb_weight.w_0"])                 # [n, 1]
        a = paddle.exp(s - s.max())
        pooled.append(((a / a.sum()) * z).sum(0, keepdim=True))   # attention over the video's n steps
    v = paddle.concat(pooled)                                     # [B, 2D]
    h1 = paddle.maximum(paddle.matmul(v, p["fc1.w_0"]) + p["fc1.b_0"], paddle.zeros([1], "float64"))
    h2 = ref_tanh(paddle.matmul(h1, p["fc2.w_0"]) + p["fc2.b_0"])
    logit = paddle.matmul(h2, p["output.w_0"]) + p["output.b_0"]
    y = paddle.to_tensor(labels, "float64")
    # the stable sigmoid cross-entropy: log(1 + exp(-|l|)) + max(l, 0) - l * y
    return (paddle.log(1 + paddle.exp(-logit.abs())) + paddle.maximum(logit, 0 * logit) - logit * y).sum()


class ReferenceRMSProp:
    """fluid's centered RMSProp, momentum 0, with the L2 decay added to the gradient. In place, since 57M
    float64 parameters make every temporary expensive."""

    def __init__(self, params):
        self.ms = {k: np.zeros_like(v) for k, v in params.items()}
        self.mg = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        """Update ``params`` in place; return the updates {name: new - old}."""
        for k, p in params.items():
            g, ms, mg = grads[k], self.ms[k], self.mg[k]
            if k not in NO_DECAY:
                g += WEIGHT_DECAY * p
            ms *= RHO
            ms += (1 - RHO) * g * g          # ms = rho ms + (1 - rho) g^2
            mg *= RHO
            mg += (1 - RHO) * g              # mg = rho mg + (1 - rho) g
            denominator = ms - mg * mg
            denominator += EPSILON
            np.sqrt(denominator, out=denominator)
            g *= -LR
            g /= denominator                 # the update: -lr g / sqrt(ms - mg^2 + eps)
            p += g
        return grads


def reference_step(params, optimizer, features, lengths, labels):
    """One float64 training step on ``params`` (in place); returns the updates."""
    p = {k: paddle.to_tensor(v, stop_gradient=False) for k, v in params.items()}
    reference_loss(p, paddle.to_tensor(features, "float64"), lengths, labels).backward()
    return optimizer.step(params, {k: t.grad.numpy() for k, t in p.items()})


def our_step(model, optimizer, features, lengths, labels):
    """One training step as train.py runs it; returns the updates."""
    before = weights.model_state(model)
    loss, _ = MODELS["AttentionLSTM"].loss(model(paddle.to_tensor(features), lengths), paddle.to_tensor(labels))
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return {k: v - before[k] for k, v in weights.model_state(model).items()}


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    release = release_like_weights(rng)
    lengths = [7, 3, 5]
    features = rng.standard_normal((len(lengths), max(lengths), FEATURE)).astype(np.float32)
    features[1, 3:] = 50.0  # padding: must not matter
    labels = np.zeros((len(lengths), CLASSES), np.float32)
    for video in range(len(lengths)):
        labels[video, rng.choice(CLASSES, size=video + 1, replace=False)] = 1
    return release, features, lengths, labels


def test_two_training_steps_match_float64_reference(setup):
    release, features, lengths, labels = setup
    model = AttentionLSTM(num_classes=CLASSES, drop_rate=0.0)
    for name, param in weights.fluid_params(model).items():
        param.set_value(release[name])
    model.train()
    train_cfg = {"learning_rate": LR, "decay_epochs": [5], "decay_gamma": 0.1, "weight_decay": WEIGHT_DECAY}
    optimizer, _ = MODELS["AttentionLSTM"].optimizer(model.parameters(), train_cfg, 100)

    ref = {k: v.astype(np.float64) for k, v in release.items()}
    ref_optimizer = ReferenceRMSProp(ref)
    for step in (1, 2):  # step 2 compares each trajectory's update from its own step-1 weights
        expected = reference_step(ref, ref_optimizer, features, lengths, labels)
        got = our_step(model, optimizer, features, lengths, labels)
        off = {k: float((np.abs(got[k] - expected[k]) > 0.01 * LR).mean()) for k in expected}
        assert max(off.values()) <= 0.001, f"step {step}: fraction of elements off by > 1% of lr: {off}"
        if step == 1:  # the LSTM really trains: every gate block of the recurrent weights moves
            for direction in ("forward", "backward"):
                moved = np.abs(got[f"rgb_lstm_{direction}.w_0"])
                for block in range(4):
                    assert np.median(moved[:, block * HIDDEN:(block + 1) * HIDDEN]) > LR, (direction, block)
