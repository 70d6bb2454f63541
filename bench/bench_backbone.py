"""Frames/s of the ResNet101 feature backbone (224x224 -> pooled 2048-d): dygraph vs InferenceEngine.

Random weights and random input (speed does not depend on them). Each setting: warm-up batches, then
``--batches`` timed batches; start-up = export (jit.save) + predictor creation. Frames per CPU-second
(all threads of this process) helps read figures taken while other jobs share the cores. ``--gil`` also measures
how far a pure-Python thread gets while the predictor runs (GIL released or not).

    python bench/bench_backbone.py                                   # dygraph, fp32, bf16 at batch 8
    python bench/bench_backbone.py --modes fp32 bf16 --batch 4 8 16 --threads 1 2
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np
import paddle

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag.inference import InferenceEngine, export_layer  # noqa: E402


class PooledResNet101(paddle.nn.Layer):
    """x [N, 3, 224, 224] -> features [N, 2048]."""

    def __init__(self):
        super().__init__()
        self.net = paddle.vision.models.resnet101(pretrained=False, num_classes=-1)

    def forward(self, x):
        return paddle.flatten(self.net(x), 1)


def busy_cpu_s():
    """CPU seconds spent so far by the whole machine (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def frames_per_s(run, x, warmup, batches):
    """(frames per wall second, frames per CPU second of this process, cores used by other processes)."""
    for _ in range(warmup):
        run(x)
    wall, cpu, busy = time.perf_counter(), time.process_time(), busy_cpu_s()
    for _ in range(batches):
        run(x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frames = batches * len(x)
    return frames / wall, frames / cpu, max(0.0, busy_cpu_s() - busy - cpu) / wall


def python_progress(seconds, during=None):
    """Iterations of a pure-Python loop in a thread over ``seconds`` (while ``during()`` runs, if given)."""
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    start = time.perf_counter()
    runs = 0
    while time.perf_counter() - start < seconds:
        if during is None:
            time.sleep(0.01)
        else:
            during()
            runs += 1
    stop.set()
    t.join()
    return count[0] / (time.perf_counter() - start), runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["dygraph", "fp32", "bf16"],
                        choices=["dygraph", "fp32", "bf16"])
    parser.add_argument("--batch", nargs="+", type=int, default=[8])
    parser.add_argument("--threads", nargs="+", type=int, default=[None], help="engine cpu_threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--gil", action="store_true", help="measure GIL release during predictor.run()")
    args = parser.parse_args()

    paddle.seed(0)
    layer = PooledResNet101()
    layer.eval()
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_layer(layer, (None, 3, 224, 224), os.path.join(tmp, "m"))
        print(f"export (jit.save) alone: {time.perf_counter() - start:.1f} s", flush=True)

    for batch in args.batch:
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        if "dygraph" in args.modes:
            with paddle.no_grad():
                fps, per_cpu, others = frames_per_s(lambda a: layer(paddle.to_tensor(a)).numpy(), x, 1,
                                                    max(2, args.batches // 3))
            print(f"dygraph fp32  batch {batch:2d}:           {fps:6.1f} frames/s ({per_cpu:5.1f} per CPU-s, "
                  f"other processes {others:.1f} cores)", flush=True)
        for precision in [m for m in args.modes if m != "dygraph"]:
            for threads in args.threads:
                start = time.perf_counter()
                engine = InferenceEngine(layer, precision=precision, cpu_threads=threads, batch_size=batch)
                startup = time.perf_counter() - start
                first = time.perf_counter()
                engine.run(x)
                first = time.perf_counter() - first
                fps, per_cpu, others = frames_per_s(engine.run, x, args.warmup, args.batches)
                print(f"engine {precision}   batch {batch:2d} threads {engine.cpu_threads}: {fps:6.1f} frames/s "
                      f"({per_cpu:5.1f} per CPU-s, other processes {others:.1f} cores)"
                      f"  (start-up {startup:.1f} s, first batch {first:.2f} s)", flush=True)
                if args.gil:
                    idle, _ = python_progress(2.0)
                    busy, runs = python_progress(2.0, lambda run=engine.run: run(x))
                    print(f"  python thread: {idle / 1e6:.2f} M it/s idle, {busy / 1e6:.2f} M it/s during "
                          f"{runs} predictor runs ({100 * busy / idle:.0f}%)", flush=True)
                del engine


if __name__ == "__main__":
    main()
