"""Learning-rate schedules against values written out by hand from the original formulas (GUIDE section 1):
TSN ``step = int(total_videos / batch_size + 1)``, float boundaries ``[epoch / 3 * step, epoch * 2 / 3 *
step]``; AttentionLSTM float boundaries ``decay_epoch * steps_per_epoch``; a step runs at the rate of the
first boundary it is still below (fluid's ``piecewise_decay``)."""
import paddle
import pytest

from video_tag.optimizers import attention_lstm_optimizer, tsn_optimizer


def rates(schedule, steps):
    out = []
    for _ in range(steps):
        out.append(schedule.get_lr())
        schedule.step()
    return out


def tsn_schedule(num_videos, batch_size, epoch, lr=1.0, decay=0.1):
    layer = paddle.nn.Linear(2, 2)
    cfg = {"learning_rate": lr, "learning_rate_decay": decay, "epoch": epoch, "batch_size": batch_size,
           "momentum": 0.9, "l2_weight_decay": 1e-4}
    # steps_per_epoch (the sampler's, drop_last) deliberately differs from the original's count
    return tsn_optimizer(layer.parameters(), cfg, num_videos // batch_size, num_videos)[1]


@pytest.mark.parametrize("num_videos, batch_size, epoch, expected", [
    # step = int(100 / 32 + 1) = 4; boundaries [60.0, 120.0]
    (100, 32, 45, [(0, 1.0), (59, 1.0), (60, 0.1), (119, 0.1), (120, 0.01), (500, 0.01)]),
    # step = int(96 / 32 + 1) = 4 (not 3: the original adds 1 even when the batch divides the list)
    (96, 32, 3, [(0, 1.0), (3, 1.0), (4, 0.1), (7, 0.1), (8, 0.01)]),
    # step = int(10 / 8 + 1) = 2; boundaries [2/3, 4/3]: step 0 at the full rate, not a decayed one
    (10, 8, 1, [(0, 1.0), (1, 0.1), (2, 0.01)]),
    # step = int(50 / 8 + 1) = 7; epoch 4: boundaries [9.333, 18.667] (int() would give 9 and 18)
    (50, 8, 4, [(9, 1.0), (10, 0.1), (18, 0.1), (19, 0.01)]),
])
def test_tsn_boundaries_as_the_original(num_videos, batch_size, epoch, expected):
    got = rates(tsn_schedule(num_videos, batch_size, epoch), max(s for s, _ in expected) + 1)
    for step, rate in expected:
        assert got[step] == pytest.approx(rate), (step, got)


def lstm_schedule(decay_epochs, steps_per_epoch, lr=1.0, gamma=0.1):
    layer = paddle.nn.Linear(2, 2)
    cfg = {"learning_rate": lr, "decay_epochs": decay_epochs, "decay_gamma": gamma, "weight_decay": 8e-4}
    return attention_lstm_optimizer(layer.parameters(), cfg, steps_per_epoch)[1]


@pytest.mark.parametrize("decay_epochs, steps_per_epoch, expected", [
    ([5], 10, [(49, 1.0), (50, 0.1)]),
    # fractional epochs: boundary 25.0 and 7.5 * 10 = 75.0; truncating 2.5 -> 2 would decay at 20
    ([2.5, 7.5], 10, [(20, 1.0), (24, 1.0), (25, 0.1), (74, 0.1), (75, 0.01)]),
    # boundary 0.35 * 3 = 1.05: step 1 still at the full rate, step 2 decayed (int() -> 1 decays step 1)
    ([0.35], 3, [(0, 1.0), (1, 1.0), (2, 0.1)]),
    # a boundary below one step: step 0 at the full rate (int() -> 0 would start decayed)
    ([0.2], 3, [(0, 1.0), (1, 0.1)]),
    ([], 10, [(0, 1.0), (99, 1.0)]),
])
def test_attention_lstm_fractional_decay_epochs(decay_epochs, steps_per_epoch, expected):
    got = rates(lstm_schedule(decay_epochs, steps_per_epoch), max(s for s, _ in expected) + 1)
    for step, rate in expected:
        assert got[step] == pytest.approx(rate), (step, got)
