"""The optimizers and learning-rate schedules, from the TRAIN section (each model's ``ModelSpec`` names its own)."""
import paddle


def piecewise_decay(train_cfg, steps_per_epoch):
    """lr x ``decay_gamma`` at each of ``decay_epochs``, counted in steps of the real training set.

    Boundaries are floats, as in the original (``e * iter_per_epoch``): step s runs at the rate of the
    first boundary it is still below, so ``decay_epochs: [2.5]`` with 10 steps per epoch decays from
    step 25 on, and ``[0.05]`` from step 1 (not from step 0).
    """
    lr = float(train_cfg["learning_rate"])
    gamma = float(train_cfg["decay_gamma"])
    epochs = sorted(float(e) for e in train_cfg["decay_epochs"] or [])
    if not epochs:
        return paddle.optimizer.lr.PiecewiseDecay([10 ** 15], [lr, lr])
    return paddle.optimizer.lr.PiecewiseDecay([e * steps_per_epoch for e in epochs],
                                              [lr * gamma ** i for i in range(len(epochs) + 1)])


def attention_lstm_optimizer(parameters, train_cfg, steps_per_epoch, num_samples=None):
    """Centered RMSProp (rho 0.95, epsilon 1e-6: fluid's defaults) with L2 decay ``weight_decay``.

    The biases of rgb_fc, fc1, fc2 and output carry their own zero decay (see the model). The decay
    steps come from ``steps_per_epoch`` (the real training list); ``num_samples`` is not used.
    Returns ``(optimizer, lr_scheduler)``.
    """
    schedule = piecewise_decay(train_cfg, steps_per_epoch)
    optimizer = paddle.optimizer.RMSProp(
        learning_rate=schedule, rho=0.95, epsilon=1e-6, momentum=0.0, centered=True,
        parameters=parameters, weight_decay=paddle.regularizer.L2Decay(float(train_cfg["weight_decay"])))
    return optimizer, schedule


def tsn_optimizer(parameters, train_cfg, steps_per_epoch, num_samples=None):
    """Momentum with L2 decay ``l2_weight_decay``; lr x ``learning_rate_decay`` at epoch/3 and 2*epoch/3.

    As the original computes them: ``step = int(num_samples / TRAIN.batch_size + 1)`` steps per epoch
    (``num_samples``: the videos of the training list, as the trainer passes them; batch_size: the total
    over all processes; without ``num_samples``, ``step = steps_per_epoch``), float boundaries
    ``[epoch / 3 * step, epoch * 2 / 3 * step]``. E.g. 100 videos, batch 32, 45 epochs: step 4,
    boundaries [60.0, 120.0]; 10 videos, batch 8, 1 epoch: step 2, boundaries [0.667, 1.333] (step 0
    runs at the full rate). Returns ``(optimizer, lr_scheduler)``.
    """
    lr = float(train_cfg["learning_rate"])
    gamma = float(train_cfg.get("learning_rate_decay", 0.1))
    epochs = float(train_cfg["epoch"])
    step = steps_per_epoch if num_samples is None else int(num_samples / int(train_cfg["batch_size"]) + 1)
    boundaries = [epochs / 3 * step, epochs * 2 / 3 * step]
    schedule = paddle.optimizer.lr.PiecewiseDecay(boundaries, [lr, lr * gamma, lr * gamma ** 2])
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule, momentum=float(train_cfg.get("momentum", 0.9)), parameters=parameters,
        weight_decay=paddle.regularizer.L2Decay(float(train_cfg.get("l2_weight_decay", 1e-4))))
    return optimizer, schedule

