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


@pytest.mark.parametrize("num_samples, total_batch, world", [(24, 8, 2), (25, 6, 3), (9, 4, 2), (7, 4, 2),
                                                              (100, 12, 4), (11, 4, 2), (13, 6, 2)])
def test_one_process_and_several_take_the_same_batches(num_samples, total_batch, world):
    # The index streams of world processes, step by step side by side, are one process's with the same
    # total batch: the same steps per epoch, the same global batches, no index twice in an epoch.
    one = EpochSampler(num_samples, total_batch, 1, 0, seed=5)
    several = [EpochSampler(num_samples, total_batch // world, world, r, seed=5) for r in range(world)]
    assert len(one) == num_samples // total_batch and all(len(s) == len(one) for s in several)
    alone, per_rank = one.batches(2), [s.batches(2) for s in several]
    assert len(alone) == len(one)
    for step, batch in enumerate(alone):
        assert [i for r in range(world) for i in per_rank[r][step]] == batch, step
    seen = [i for batch in alone for i in batch]
    assert len(set(seen)) == len(seen) and list(seen) == list(one.order(2)[:len(seen)])
    assert several[1].batches(2, start=1) == per_rank[1][1:]  # a resume at step 1 takes what comes next


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
