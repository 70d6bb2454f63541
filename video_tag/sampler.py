"""The training order and the random state of a run, as pure functions of the run's seed, so that a
resumed run takes the batches and draws the numbers an unbroken run would.

Every random stream of a training run derives from one integer, the run's seed (``TRAIN.seed``; 0 with
``--fix_random_seed``; otherwise drawn at random and recorded in every checkpoint):

* the initial weights: ``paddle.seed(seed)`` before the model is built (the same on every process);
* the sample order of epoch e: a permutation drawn from ``numpy.random.default_rng([seed, e])``;
* at the start of epoch e, Paddle's generators (dropout) from ``derive(seed, PADDLE, e, rank)``, numpy's
  and Python's global generators from ``derive(seed, NUMPY, e)`` and ``derive(seed, PYTHON, e)``.

A step checkpoint (mid-epoch) records each process's generator states as they are after its last step
(``rng_state``), and a resumed run puts them back (``set_rng_state``).
"""
import random

import numpy as np
import paddle

PADDLE, NUMPY, PYTHON, RESEED = 1, 2, 3, 4  # the purposes in derive(seed, purpose, ...)


def draw_seed():
    """A fresh run seed from the operating system's entropy, in [0, 2**31)."""
    return random.SystemRandom().randrange(2 ** 31)


def derive(seed, *keys):
    """A 32-bit seed that is a pure function of ``(seed, *keys)`` (non-negative integers)."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def seed_epoch(seed, epoch, rank, step=None):
    """Seed Paddle's, numpy's and Python's global generators for ``epoch`` of process ``rank``.

    ``step``: a resume that cannot restore the saved states (another number of processes) reseeds from
    the step too, so that it still does not repeat the draws of the epoch's first steps.
    """
    extra = () if step is None else (RESEED, step)
    paddle.seed(derive(seed, PADDLE, epoch, rank, *extra))
    np.random.seed(derive(seed, NUMPY, epoch, *extra))
    random.seed(derive(seed, PYTHON, epoch, *extra))


def rng_state():
    """This process's generator states as plain values (ints, lists, tuples, a numpy array): Paddle's CPU
    generator, every CUDA generator (a CUDA build), numpy's and Python's global generators."""
    state = {"paddle": [s.__getstate__() for s in paddle.get_rng_state("cpu")],
             "numpy": np.random.get_state(), "python": random.getstate()}
    if paddle.is_compiled_with_cuda():
        state["paddle_cuda"] = [s.__getstate__() for s in paddle.get_cuda_rng_state()]
    return state


def set_rng_state(state):
    """Put back the generator states of ``rng_state()``."""
    paddle.set_rng_state(_generator_states(state["paddle"]), "cpu")
    if paddle.is_compiled_with_cuda() and state.get("paddle_cuda") is not None:
        paddle.set_cuda_rng_state(_generator_states(state["paddle_cuda"]))
    np.random.set_state(tuple(state["numpy"]))
    random.setstate(_tuples(state["python"]))


def _generator_states(plain):
    kind = paddle.base.core.GeneratorState
    states = []
    for values in plain:
        state = kind.__new__(kind)
        state.__setstate__(tuple(values))
        states.append(state)
    return states


def _tuples(value):
    """Python's random state is nested tuples; keep them tuples whatever the container came back as."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class EpochSampler:
    """Batches of sample indices for process ``rank`` of ``world``, ``batch_size`` each.

    Epoch e visits the samples in the order ``order(e)``; step s takes, in process r, the positions
    ``[(s * world + r) * batch_size, (s * world + r + 1) * batch_size)`` of it, so the global batch of
    step s is the same for any number of processes with the same total batch (``batch_size * world``).
    ``len()``: ``num_samples // (batch_size * world)`` steps per epoch, the full global batches (the last
    incomplete one is dropped): with the same total batch, the same count for any number of processes,
    so an epoch or step checkpoint resumes exactly under another. (``paddle.io.DistributedBatchSampler``
    counts ``ceil(num_samples / world) // batch_size``, which grows with the processes: it pads each one's
    share by repeating samples.) No index repeats within an epoch.
    """

    def __init__(self, num_samples, batch_size, world=1, rank=0, seed=0):
        self.num_samples, self.batch_size, self.world, self.rank = num_samples, batch_size, world, rank
        self.seed = seed

    def __len__(self):
        return self.num_samples // (self.batch_size * self.world)

    def order(self, epoch):
        """The permutation of ``range(num_samples)`` of ``epoch``: int64 [num_samples]."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def batches(self, epoch, start=0):
        """This process's batches of ``epoch`` from step ``start`` on: a list of index lists."""
        order = self.order(epoch)
        out = []
        for step in range(start, len(self)):
            first = (step * self.world + self.rank) * self.batch_size
            out.append([int(i) for i in order[first:first + self.batch_size]])
        return out
