"""The training order and random states of video_tag.sampler."""
import pickle
import random

import numpy as np
import paddle
import pytest

from video_tag import weights
from video_tag.sampler import EpochSampler, rng_state, seed_epoch, set_rng_state


def test_the_order_is_a_pure_function_of_seed_and_epoch():
    a, b = EpochSampler(50, 4, seed=7), EpochSampler(50, 4, seed=7)
    np.random.seed(1)  # numpy's global state plays no part
    first = a.order(3)
    np.random.seed(2)
    assert sorted(first) == list(range(50)) and list(b.order(3)) == list(first)
    assert list(a.order(4)) != list(first) and list(EpochSampler(50, 4, seed=8).order(3)) != list(first)


@pytest.mark.parametrize("num_samples, total_batch, world", [(24, 8, 1), (24, 8, 2), (25, 6, 3), (9, 4, 2),
                                                              (7, 4, 2), (100, 12, 4)])
def test_every_world_size_takes_the_same_global_batches(num_samples, total_batch, world):
    per_process = total_batch // world
    samplers = [EpochSampler(num_samples, per_process, world, r, seed=5) for r in range(world)]
    # The count of Paddle's sampler (drop_last), as train.py had it before.
    paddle_count = len(paddle.io.DistributedBatchSampler(list(range(num_samples)), per_process, num_replicas=world,
                                                         rank=0, shuffle=True, drop_last=True))
    assert len(samplers[0]) == paddle_count
    order = samplers[0].order(2)
    wrapped = np.concatenate([order, order])  # a list barely larger than the batch wraps around
    per_rank = [s.batches(2) for s in samplers]
    for step in range(paddle_count):
        together = [i for r in range(world) for i in per_rank[r][step]]
        assert together == list(wrapped[step * total_batch:(step + 1) * total_batch]), step
        assert all(len(per_rank[r][step]) == per_process for r in range(world))
    assert samplers[1 % world].batches(2, start=1) == per_rank[1 % world][1:]


def draws():
    return paddle.rand([4]).numpy().tolist(), np.random.rand(3).tolist(), random.random()


def test_generator_states_round_trip_through_a_checkpoint_file(tmp_path):
    seed_epoch(11, 2, 0)
    draws()
    state = rng_state()
    expected = draws()
    with open(tmp_path / "state.pdopt", "wb") as f:
        pickle.dump({"rng": [state]}, f, protocol=2)
    seed_epoch(12, 0, 1)
    draws()
    set_rng_state(weights.read_pickle(str(tmp_path / "state.pdopt"))["rng"][0])  # what --resume reads
    assert draws() == expected


def test_epoch_seeds_differ_by_epoch_and_rank_and_repeat():
    seen = []
    for epoch, rank in ((0, 0), (0, 1), (1, 0), (0, 0)):
        seed_epoch(3, epoch, rank)
        seen.append(draws())
    assert seen[0] == seen[3]
    assert seen[0][0] != seen[1][0] and seen[0][1] == seen[1][1]  # dropout per rank; numpy per epoch
    assert seen[0][0] != seen[2][0] and seen[0][1] != seen[2][1] and seen[0][2] != seen[2][2]
