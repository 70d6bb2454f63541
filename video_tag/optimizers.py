"""The optimizers and learning-rate schedules, from the TRAIN section (each model's ``ModelSpec`` names its own)."""
import paddle


def piecewise_decay(train_cfg, steps_per_epoch):
    """lr x ``decay_gamma`` at each of ``decay_epochs``, counted in steps of the real training set."""
    lr = float(train_cfg["learning_rate"])
    gamma = float(train_cfg["decay_gamma"])
    epochs = sorted(train_cfg["decay_epochs"] or [])
    if not epochs:
        return paddle.optimizer.lr.PiecewiseDecay([10 ** 15], [lr, lr])
    return paddle.optimizer.lr.PiecewiseDecay([int(e * steps_per_epoch) for e in epochs],
                                              [lr * gamma ** i for i in range(len(epochs) + 1)])


def attention_lstm_optimizer(parameters, train_cfg, steps_per_epoch):
    """Centered RMSProp (rho 0.95, epsilon 1e-6: fluid's defaults) with L2 decay ``weight_decay``.

    The biases of rgb_fc, fc1, fc2 and output carry their own zero decay (see the model).
    Returns ``(optimizer, lr_scheduler)``.
    """
    schedule = piecewise_decay(train_cfg, steps_per_epoch)
    optimizer = paddle.optimizer.RMSProp(
        learning_rate=schedule, rho=0.95, epsilon=1e-6, momentum=0.0, centered=True,
        parameters=parameters, weight_decay=paddle.regularizer.L2Decay(float(train_cfg["weight_decay"])))
    return optimizer, schedule


def tsn_optimizer(parameters, train_cfg, steps_per_epoch):
    """Momentum with L2 decay ``l2_weight_decay``; lr x ``learning_rate_decay`` at epoch/3 and 2*epoch/3.

    Returns ``(optimizer, lr_scheduler)``.
    """
    lr = float(train_cfg["learning_rate"])
    gamma = float(train_cfg.get("learning_rate_decay", 0.1))
    epochs = float(train_cfg["epoch"])
    boundaries = [int(epochs / 3 * steps_per_epoch), int(epochs * 2 / 3 * steps_per_epoch)]
    schedule = paddle.optimizer.lr.PiecewiseDecay(boundaries, [lr, lr * gamma, lr * gamma ** 2])
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule, momentum=float(train_cfg.get("momentum", 0.9)), parameters=parameters,
        weight_decay=paddle.regularizer.L2Decay(float(train_cfg.get("l2_weight_decay", 1e-4))))
    return optimizer, schedule

