"""The AttentionLSTM's inference engines: dygraph (``predict.py``'s default) against the exported model in
Paddle Inference (``--engine inference``), with and without oneDNN, at batch 1 and 64.

Full-size model (random weights, 3396 classes), random features [B, 300, 2048], every video 300 steps
long. The engines take turns call by call (the machine's drift hits them alike); the median call is
reported as samples/s, with the ratio to dygraph. Also the time to build the Paddle Inference engine
(export to a temporary directory, check against dygraph, predictor creation), paid once per command.
Threads: videotag's default for both (every core; OMP_NUM_THREADS if set).

    python bench/bench_engine.py [--repeats 5] [--batches 1 64] [--use_gpu]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from video_tag import cpu  # noqa: E402
from video_tag.config import load_config  # noqa: E402
from video_tag.export import InferenceRunner  # noqa: E402
from video_tag.models import build_model  # noqa: E402

T = 300


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per engine and batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--use_gpu", action="store_true", help="run both engines on the GPU (oneDNN: CPU only)")
    parser.add_argument("--skip_onednn", action="store_true", help="leave out Paddle Inference with oneDNN")
    args = parser.parse_args()
    if args.use_gpu and not paddle.is_compiled_with_cuda():
        raise SystemExit("--use_gpu: this Paddle has no CUDA")
    paddle.set_device("gpu" if args.use_gpu else "cpu")
    cpu.reuse_freed_memory()
    threads, why = cpu.use_default_threads()
    cfg = load_config(os.path.join(ROOT, "configs", "attention_lstm.yaml"))
    paddle.seed(0)
    model = build_model("AttentionLSTM", cfg)
    model.eval()
    engines = {"dygraph": None}
    variants = [("Paddle Inference", False)] if args.use_gpu else [("Paddle Inference, no oneDNN", False)]
    if not args.use_gpu and not args.skip_onednn:
        variants.append(("Paddle Inference, oneDNN", True))
    for label, onednn in variants:
        start = time.perf_counter()
        engines[label] = InferenceRunner("AttentionLSTM", model, cfg, use_gpu=args.use_gpu, onednn=onednn)
        print(f"{label}: engine built in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"paddle {paddle.__version__}, {'GPU' if args.use_gpu else 'CPU'}, {threads} math thread(s) ({why}), "
          f"T {T}, load {os.getloadavg()[0]:.2f}", flush=True)

    rng = np.random.default_rng(0)
    features = rng.standard_normal((max(args.batches), T, cfg["MODEL"]["feature_dims"][0])).astype(np.float32)
    for batch in args.batches:
        x, lengths = features[:batch], np.full(batch, T, np.int64)

        def dygraph():
            with paddle.no_grad():
                return model(paddle.to_tensor(x), paddle.to_tensor(lengths)).numpy()

        calls = {label: (dygraph if runner is None else (lambda r=runner: r(x, lengths)))
                 for label, runner in engines.items()}
        reference = dygraph()
        times = {label: [] for label in calls}
        for i in range(1 + args.repeats):  # the first round warms up
            for label, call in calls.items():
                start = time.perf_counter()
                logits = call()
                if i:
                    times[label].append(time.perf_counter() - start)
                elif label != "dygraph":
                    error = float(np.abs(logits - reference).max())
                    print(f"batch {batch:3d}: {label}: max |logits - dygraph's| {error:.1e}", flush=True)
        base = batch / statistics.median(times["dygraph"])
        for label, ts in times.items():
            rate = batch / statistics.median(ts)
            print(f"batch {batch:3d}  {label:<30s} {rate:8.2f} samples/s  ratio to dygraph {rate / base:.3f}",
                  flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
