"""Which CPU thread setting runs the full-size AttentionLSTM fastest: one math thread with the two LSTM
directions on two threads, or every core for the math library with the directions one after the other
(videotag's default since issue 9), or every core with the directions on two threads as well.

All settings run in one process, switched before each timed call and taken in turn call by call, so
that the machine's drift (and other work on it) hits them alike; the median is reported.
Training: forward + backward + centered RMSProp step, batch 32, T = 300, random features and labels
(as bench_attention_lstm.py). Inference: ``model.eval()`` under ``paddle.no_grad()`` at batch 1 and 64.

    python bench/bench_threads.py [--steps 5] [--cores N] [--skip_train] [--infer_batches 1 64] [--infer_repeats 10 2]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag import cpu  # noqa: E402
from video_tag.models import attention_lstm, peephole_lstm  # noqa: E402
from video_tag.models.attention_lstm import AttentionLSTM  # noqa: E402
from bench_attention_lstm import CLASSES, FEATURE, T, make_train_step  # noqa: E402


def settings(cores):
    """{label: (math threads, run the directions on two threads, one math thread while they run)}."""
    return {"1 thread, directions parallel": (1, True, False),
            f"{cores} threads, directions in turn": (cores, False, False),
            f"{cores} threads, directions parallel": (cores, True, False),
            f"{cores} threads, directions parallel on 1 each": (cores, True, True)}


_run_both = peephole_lstm.run_both


def run_both_on_one_thread(first, second, parallel):
    """``peephole_lstm.run_both`` with the math library on one thread while two directions run."""
    if not parallel:
        return _run_both(first, second, parallel)
    threads = cpu.math_threads()
    cpu.set_math_threads(1)
    try:
        return _run_both(first, second, parallel)
    finally:
        cpu.set_math_threads(threads)


def apply(model, threads, parallel, single):
    cpu.set_math_threads(threads)
    model.parallel_directions = parallel
    # The model runs the directions on two threads only with one math thread: lift that for the third
    # setting by making it see one.
    attention_lstm.math_threads = (lambda: 1) if parallel else cpu.math_threads
    peephole_lstm.run_both = run_both_on_one_thread if single else _run_both


def alternate(model, fn, choices, repeats, warmup):
    """Median seconds of ``fn()`` under each setting of ``choices``, the settings taking turns."""
    times = {label: [] for label in choices}
    for i in range(warmup + repeats):
        for label, setting in choices.items():
            apply(model, *setting)
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(ts) for label, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    parser.add_argument("--infer_batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--infer_repeats", type=int, nargs="+", default=[10, 2],
                        help="timed calls per setting, for each of --infer_batches")
    parser.add_argument("--skip_train", action="store_true")
    parser.add_argument("--cores", type=int, default=0, help="threads of the multi-thread settings "
                                                           "(default: videotag's default, every core)")
    args = parser.parse_args()
    cpu.reuse_freed_memory()
    cores = args.cores or cpu.default_cpu_threads()
    choices = settings(cores)
    print(f"paddle {paddle.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, T {T}", flush=True)
    paddle.seed(0)
    rng = np.random.default_rng(0)
    model = AttentionLSTM(num_classes=CLASSES)
    features = paddle.to_tensor(rng.standard_normal((max(64, *args.infer_batches), T, FEATURE)).astype("float32"))
    labels = paddle.to_tensor((rng.random((32, CLASSES)) < 0.002).astype("float32"))
    step = make_train_step(model)
    rows = {label: [] for label in choices}
    heads = [] if args.skip_train else ["train b=32"]
    if not args.skip_train:
        seconds = alternate(model, lambda: step(features[:32], [T] * 32, labels), choices, args.steps, 1)
        for label in choices:
            rows[label].append(32 / seconds[label])
    model.eval()
    with paddle.no_grad():
        for batch, repeats in zip(args.infer_batches, args.infer_repeats):
            heads.append(f"infer b={batch}")
            seconds = alternate(model, lambda: model(features[:batch], [T] * batch), choices, repeats, 1)
            for label in choices:
                rows[label].append(batch / seconds[label])
    print(f"{'samples/s':<44s} " + " ".join(f"{h:>10s}" for h in heads))
    for label, row in rows.items():
        print(f"{label:<44s} " + " ".join(f"{v:10.2f}" for v in row), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
