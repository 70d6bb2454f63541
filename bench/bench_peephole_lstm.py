"""The candidate fixes for the fused peephole LSTM kernel's float32 CPU backward, measured: the LSTM alone
(both directions, batch 32, T 300, hidden 512), forward + backward seconds and the largest gradient error
against the same computation in float64.

* fused (wrong): ``_C_ops.lstm`` in float32 at hidden 512, the bug (kept as the speed yardstick);
* fused, hidden 513: the kernel with one inert padding unit per gate block (zero weights, zero bias: it
  never leaves zero), which takes the kernel's scalar path, whose backward is right; sliced away after;
* fused, float64: the recurrence in float64, cast back;
* videotag (OwnLSTM): the recurrence in Paddle ops with a hand-written backward (what training uses).

Each variant runs both directions one after the other (no threads), so the figures compare the
implementations, not the threading. Figures: bench/README.md.

    python bench/bench_peephole_lstm.py [--repeats 3] [--threads N]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag.cpu import set_math_threads  # noqa: E402
from video_tag.models.peephole_lstm import OwnLSTM, fused_lstm  # noqa: E402

BATCH, STEPS, HIDDEN = 32, 300, 512


def fused(x_f, x_b, w_f, b_f, w_b, b_b, offsets):
    return (fused_lstm(x_f, offsets, w_f, b_f, False, False), fused_lstm(x_b, offsets, w_b, b_b, True, False))


def padded(x_f, x_b, w_f, b_f, w_b, b_b, offsets, extra=1):
    """The fused kernel at hidden D + extra, the extra units inert (zero inputs, weights and biases)."""
    n, d = x_f.shape[0], HIDDEN
    wide = d + extra

    def one(x, w, b, reverse):
        x = F.pad(x.reshape([n, 4, d]), [0, extra], data_format="NCL").reshape([n, 4 * wide])
        w = F.pad(w.reshape([d, 4, d]), [0, extra], data_format="NCL").reshape([d, 4 * wide])
        w = paddle.concat([w, paddle.zeros([extra, 4 * wide], w.dtype)])
        b = F.pad(b.reshape([1, 7, d]), [0, extra], data_format="NCL").reshape([1, 7 * wide])
        return fused_lstm(x, offsets, w, b, reverse, False)[:, :d]
    return one(x_f, w_f, b_f, False), one(x_b, w_b, b_b, True)


def float64(x_f, x_b, w_f, b_f, w_b, b_b, offsets):
    h_f, h_b = fused(*[t.astype("float64") for t in (x_f, x_b, w_f, b_f, w_b, b_b)], offsets)
    return h_f.astype("float32"), h_b.astype("float32")


def own(x_f, x_b, w_f, b_f, w_b, b_b, offsets):
    return OwnLSTM.apply(x_f, x_b, w_f, b_f, w_b, b_b, offsets, False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="math-library threads (0: Paddle's default, 1)")
    args = parser.parse_args()
    if args.threads:
        set_math_threads(args.threads)
    rng = np.random.default_rng(0)
    n, d = BATCH * STEPS, HIDDEN
    arrays = [rng.uniform(-1, 1, (n, 4 * d)), rng.uniform(-1, 1, (n, 4 * d)),
              rng.uniform(-0.05, 0.05, (d, 4 * d)), rng.uniform(-0.5, 0.5, (1, 7 * d)),
              rng.uniform(-0.05, 0.05, (d, 4 * d)), rng.uniform(-0.5, 0.5, (1, 7 * d))]
    out = [paddle.to_tensor(rng.standard_normal((n, d)), "float32") for _ in range(2)]
    offsets = list(range(0, n + 1, STEPS))

    def run(fn, dtype="float32"):
        inputs = [paddle.to_tensor(a, dtype, stop_gradient=False) for a in arrays]
        start = time.perf_counter()
        h_f, h_b = fn(*inputs, offsets)
        middle = time.perf_counter()
        ((h_f * out[0].astype(dtype)).sum() + (h_b * out[1].astype(dtype)).sum()).backward()
        end = time.perf_counter()
        return middle - start, end - middle, [t.grad.numpy().astype("float64") for t in inputs]

    _, _, expected = run(fused, "float64")
    print(f"paddle {paddle.__version__}, {os.cpu_count()} CPUs, math threads {args.threads or 1}; both "
          f"directions, batch {BATCH}, T {STEPS}, hidden {HIDDEN}; median of {args.repeats}")
    print(f"{'variant':24s} {'forward s':>10s} {'backward s':>11s} {'total s':>8s}  max gradient error (relative)")
    for name, fn in (("fused (wrong)", fused), ("fused, hidden 513", padded), ("fused, float64", float64),
                     ("videotag (OwnLSTM)", own)):
        times = []
        for _ in range(args.repeats + 1):  # the first run warms up
            forward, backward, grads = run(fn)
            times.append((forward, backward))
        forward, backward = (statistics.median(t[i] for t in times[1:]) for i in range(2))
        error = max(np.abs(g - e).max() / np.abs(e).max() for g, e in zip(grads, expected))
        print(f"{name:24s} {forward:10.3f} {backward:11.3f} {forward + backward:8.3f}  {error:.1e}", flush=True)


if __name__ == "__main__":
    main()
