"""Training steps of TSN against an independent float64 reference, and the TSN learning-rate schedule.

The reference is written here from GUIDE section 1, not from video_tag: a ResNet50 walked by the
release's parameter names with functional float64 ops (batch norm written out: batch statistics in
training, running averages with momentum 0.9), the softmax cross-entropy averaged over the batch, and
fluid's Momentum with L2 decay on every parameter in numpy. Ours runs as train.py does: the model,
``LOSSES`` and ``OPTIMIZERS``, in float32.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from video_tag import weights
from video_tag.losses import LOSSES
from video_tag.models.tsn import TSN
from video_tag.optimizers import OPTIMIZERS

from test_tsn import ref_block_names, release_weights

CLASSES, SEGMENTS, SIZE = 5, 2, 32
LR, GAMMA, MOMENTUM, L2, BN_MOMENTUM, BN_EPSILON = 0.02, 0.5, 0.9, 0.05, 0.9, 1e-5
RUNNING = ("_mean", "_variance")   # batch-norm statistics: updated by the forward pass, not the optimizer


def reference_loss(p, frames, labels, stats):
    """Mean softmax cross-entropy of a batch, frames [B, S, 3, H, W]; float64 tensors ``p`` by fluid name.

    Batch norm normalises with the batch's statistics (biased variance); ``stats`` receives each
    layer's updated running mean and variance (momentum 0.9, from the biased batch variance)."""
    def conv_bn(x, conv, bn, stride, relu):
        w = p[conv + "_weights"]
        y = F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2)
        mean = y.mean(axis=[0, 2, 3], keepdim=True)
        var = ((y - mean) ** 2).mean(axis=[0, 2, 3], keepdim=True)
        for name, batch in (("_mean", mean), ("_variance", var)):
            stats[bn + name] = BN_MOMENTUM * p[bn + name].numpy() + (1 - BN_MOMENTUM) * batch.numpy().reshape(-1)
        y = (y - mean) / paddle.sqrt(var + BN_EPSILON) * p[bn + "_scale"].reshape([1, -1, 1, 1]) \
            + p[bn + "_offset"].reshape([1, -1, 1, 1])
        return F.relu(y) if relu else y

    batch, segments = frames.shape[:2]
    x = conv_bn(frames.reshape([batch * segments, 3, SIZE, SIZE]), "conv1", "bn_conv1", 2, True)
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, i, name in ref_block_names(50):
        stride = 2 if i == 0 and stage > 2 else 1
        bn = "bn" + name[3:]
        y = conv_bn(x, name + "_branch2a", bn + "_branch2a", 1, True)
        y = conv_bn(y, name + "_branch2b", bn + "_branch2b", stride, True)
        y = conv_bn(y, name + "_branch2c", bn + "_branch2c", 1, False)
        short = conv_bn(x, name + "_branch1", bn + "_branch1", stride, False) if i == 0 else x
        x = F.relu(short + y)
    features = x.mean(axis=[2, 3]).reshape([batch, segments, -1]).mean(axis=1)    # [B, 2048]
    logits = paddle.matmul(features, p["fc_0.w_0"]) + p["fc_0.b_0"]
    top = logits.max(axis=1, keepdim=True)
    log_norm = paddle.log(paddle.exp(logits - top).sum(axis=1, keepdim=True)) + top
    picked = (logits * F.one_hot(paddle.to_tensor(labels), CLASSES).astype("float64")).sum(axis=1, keepdim=True)
    return (log_norm - picked).mean()


def reference_step(params, velocity, frames, labels, lr):
    """One float64 step of Momentum with L2 decay on ``params`` (in place). Returns the updates."""
    p = {k: paddle.to_tensor(v, stop_gradient=k.endswith(RUNNING)) for k, v in params.items()}
    stats = {}
    reference_loss(p, paddle.to_tensor(frames, "float64"), labels, stats).backward()
    updates = {}
    for name, value in params.items():
        if name.endswith(RUNNING):
            updates[name] = stats[name] - value
        else:
            velocity[name] = MOMENTUM * velocity[name] + p[name].grad.numpy() + L2 * value
            updates[name] = -lr * velocity[name]
        value += updates[name]
    return updates


def our_step(model, optimizer, schedule, frames, labels):
    """One training step as train.py runs it; returns the updates."""
    before = weights.model_state(model)
    loss, _ = LOSSES["TSN"](model(paddle.to_tensor(frames)), paddle.to_tensor(labels))
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    schedule.step()
    return {k: v - before[k] for k, v in weights.model_state(model).items()}


def run_steps(dtype, release, frames, labels, steps):
    """``steps`` training steps of our TSN in ``dtype``, as train.py runs them; returns each step's updates."""
    paddle.set_default_dtype(dtype)
    try:
        model = TSN(num_classes=CLASSES, num_layers=50)
    finally:
        paddle.set_default_dtype("float32")
    for name, param in weights.fluid_params(model).items():
        param.set_value(release[name].astype(dtype))
    model.train()
    # epoch 3 with 1 step per epoch: boundaries at steps 1.0 and 2.0, so step 2 runs at lr x gamma.
    train_cfg = {"learning_rate": LR, "learning_rate_decay": GAMMA, "l2_weight_decay": L2,
                 "momentum": MOMENTUM, "epoch": 3}
    optimizer, schedule = OPTIMIZERS["TSN"](model.parameters(), train_cfg, 1)
    return [our_step(model, optimizer, schedule, frames.astype(dtype), labels) for _ in range(steps)]


def relative_errors(got, expected):
    return {k: float(np.linalg.norm(got[k] - expected[k]) / np.linalg.norm(expected[k])) for k in expected}


def test_two_training_steps_match_float64_reference():
    rng = np.random.default_rng(0)
    release = release_weights(50, CLASSES, rng)
    frames = rng.standard_normal((3, SEGMENTS, 3, SIZE, SIZE)).astype(np.float32)
    labels = np.array([4, 0, 2], np.int64)
    ref = {k: v.astype(np.float64) for k, v in release.items()}
    velocity = {k: np.zeros_like(v) for k, v in ref.items()}
    expected = [reference_step(ref, velocity, frames, labels, lr) for lr in (LR, LR * GAMMA)]

    # Our code in float64: the same computation, so the same updates (up to batch norm's momentum,
    # kept as float32 0.9 by Paddle: ~2.4e-7 relative).
    for step, (got, want) in enumerate(zip(run_steps("float64", release, frames, labels, 2), expected), 1):
        errors = relative_errors(got, want)
        worst = max(errors, key=errors.get)
        assert errors[worst] <= 1e-5, f"step {step}: {worst} update off by {errors[worst]:.2g} (relative)"
    # In float32, as train.py runs, the first step. Batch norm over a few similar frames of a random
    # ResNet is ill-conditioned (float32 rounding alone moves these updates by up to ~4%), so this bound
    # only catches gross float32-only faults, e.g. a kernel that zeroes some gradients.
    errors = relative_errors(run_steps("float32", release, frames, labels, 1)[0], expected[0])
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 0.15, f"float32: {worst} update off by {errors[worst]:.2g} (relative)"


def applied_learning_rates(train_cfg, steps_per_epoch, steps):
    """The learning rate the TSN optimizer applies at each step (gradient 1, no decay, no momentum)."""
    param = paddle.create_parameter([1], "float32", default_initializer=paddle.nn.initializer.Constant(0.0))
    optimizer, schedule = OPTIMIZERS["TSN"]([param], {**train_cfg, "l2_weight_decay": 0.0, "momentum": 0.0},
                                            steps_per_epoch)
    rates = []
    for _ in range(steps):
        param.set_value(np.zeros(1, np.float32))   # from 0 each time: the update is exactly -lr in float32
        param.sum().backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        rates.append(-float(param.numpy()[0]))
    return np.array(rates)


def test_learning_rate_schedule_as_the_original():
    # The original: boundaries [epoch / 3 * step, epoch * 2 / 3 * step] as floats, with step the steps of
    # an epoch (it counts int(videos / batch + 1); the trainer passes it, here it is given); fluid's
    # piecewise_decay gives values[i] while the step counter (from 0) is below boundary i. Fractional
    # boundaries are not truncated (4 epochs of 5 steps: decay at steps 7 and 14, not 6 and 13), and
    # training never starts at a decayed rate (1 epoch of 1 step: boundaries 1/3 and 2/3, not 0 and 0).
    lr, gamma = 0.01, 0.1
    for epoch, steps_per_epoch in ((4, 5), (1, 1), (2, 4), (45, 7)):
        boundaries = [epoch / 3 * steps_per_epoch, epoch * 2 / 3 * steps_per_epoch]
        total = epoch * steps_per_epoch
        expected = [lr * gamma ** sum(s >= b for b in boundaries) for s in range(total)]
        cfg = {"learning_rate": lr, "learning_rate_decay": gamma, "epoch": epoch}
        got = applied_learning_rates(cfg, steps_per_epoch, total)
        np.testing.assert_allclose(got, expected, rtol=1e-3, err_msg=f"epoch {epoch}, {steps_per_epoch} step(s)")
