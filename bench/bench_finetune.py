"""Fine-tuning the AttentionLSTM from a release-format pretrain to 12 classes: validation GAP per epoch and
how far each LSTM gate block moved, with videotag's LSTM backward and with Paddle's fused kernel as is
(``--compare lstm``), or training samples/s and GAP in float32 and with ``--amp`` (``--compare amp``).

The task: synthetic TSN-like features [T, 2048] per video, N(0, 1) noise plus, on a random 30% of the
frames, ``--signal`` x the video's class pattern (a fixed random N(0, 1) vector per class). 12 classes,
``--per_class`` training and 8 validation videos each. The pretrain is a release-format pickle (full
size, 3396 classes, random weights at 1/sqrt(fan_in) scale): its classifier is skipped, as for a user
fine-tuning the release. The config is configs/attention_lstm-single.yaml as shipped (batch 128, lr
1.25e-4, centered RMSProp, L2 8e-4) with ``num_classes: 12`` and 3 epochs. Same data, same seed for
both runs. samples/s: metrics.csv's, the mean over the epochs (training steps only).

    python bench/bench_finetune.py [--compare lstm|amp] [--use_gpu] [--frames 100] [--per_class 32]
                                   [--signal 0.3] [--epochs 3]
"""
import argparse
import csv
import json
import os
import pickle
import sys
import tempfile
import time

import numpy as np
import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from video_tag import weights  # noqa: E402
from video_tag.cli import setup_logging  # noqa: E402
from video_tag.models import peephole_lstm  # noqa: E402
from video_tag.trainer import train  # noqa: E402

CLASSES, HIDDEN = 12, 512


def release_like(rng):
    """A release-format parameter dict (fluid names and shapes) with random weights."""
    def r(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    params = {"rgb_fc.w_0": r(2048, 1024), "rgb_fc.b_0": zeros(1024), "rgb_weight.w_0": r(1024, 1),
              "fc1.w_0": r(1024, 8192), "fc1.b_0": zeros(8192), "fc2.w_0": r(8192, 4096),
              "fc2.b_0": zeros(4096), "output.w_0": r(4096, 3396), "output.b_0": zeros(3396)}
    for direction in ("forward", "backward"):
        params.update({f"rgb_fc_{direction}.w_0": r(1024, 4 * HIDDEN),
                       f"rgb_lstm_{direction}.w_0": r(HIDDEN, 4 * HIDDEN),
                       f"rgb_lstm_{direction}.b_0": zeros(1, 7 * HIDDEN)})
    return params


def write_videos(directory, count, frames, signal, patterns, rng):
    os.makedirs(directory)
    lines = []
    for i in range(count):
        label = i % CLASSES
        x = rng.standard_normal((frames, 2048)).astype(np.float32)
        shown = rng.random(frames) < 0.3
        x[shown] += signal * patterns[label]
        path = os.path.join(directory, f"{i}.npy")
        np.save(path, x)
        lines.append(f"{path} {label}\n")
    list_path = directory + ".list"
    with open(list_path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return list_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--per_class", type=int, default=32)
    parser.add_argument("--signal", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--compare", choices=("lstm", "amp"), default="lstm",
                        help="lstm: videotag's LSTM backward against the fused kernel's; amp: float32 against --amp")
    parser.add_argument("--use_gpu", action="store_true")
    args = parser.parse_args()
    setup_logging()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        release = release_like(rng)
        with open(os.path.join(tmp, "release.pdparams"), "wb") as f:
            pickle.dump(release, f, protocol=2)
        patterns = rng.standard_normal((CLASSES, 2048)).astype(np.float32)
        train_list = write_videos(os.path.join(tmp, "train"), CLASSES * args.per_class, args.frames,
                                  args.signal, patterns, rng)
        valid_list = write_videos(os.path.join(tmp, "valid"), CLASSES * 8, args.frames, args.signal,
                                  patterns, rng)
        with open(os.path.join(ROOT, "configs", "attention_lstm-single.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        cfg["MODEL"]["num_classes"] = CLASSES
        cfg["TRAIN"].update(epoch=args.epochs, filelist=train_list, log_interval=1000)
        cfg["VALID"]["filelist"] = valid_list

        real_probe = peephole_lstm.fused_backward_ok
        results = {}
        if args.compare == "lstm":
            runs = [("videotag", real_probe, False), ("fused kernel as is", lambda place, dtype: True, False)]
        else:
            runs = [("float32", real_probe, False), ("--amp", real_probe, True)]
        for name, probe, use_amp in runs:
            peephole_lstm.fused_backward_ok = probe
            cfg["TRAIN"]["amp"] = use_amp
            save_dir = os.path.join(tmp, name.replace(" ", "_").replace("-", ""))
            start = time.perf_counter()
            train("AttentionLSTM", cfg, save_dir, pretrain=os.path.join(tmp, "release"), fix_random_seed=True,
                  use_gpu=args.use_gpu)
            seconds = time.perf_counter() - start
            with open(os.path.join(save_dir, "valid_metrics.jsonl"), encoding="utf-8") as f:
                gaps = [json.loads(line)["gap"] for line in f]
            with open(os.path.join(save_dir, "metrics.csv"), encoding="utf-8", newline="") as f:
                speed = float(np.mean([float(r["samples_per_s"]) for r in csv.DictReader(f)]))
            tuned = weights.read_state(os.path.join(save_dir, "AttentionLSTM"))
            moved = {d: [float(np.median(np.abs(tuned[f"rgb_lstm_{d}.w_0"] - release[f"rgb_lstm_{d}.w_0"])
                                         [:, b * HIDDEN:(b + 1) * HIDDEN])) for b in range(4)]
                     for d in ("forward", "backward")}
            results[name] = gaps, moved, seconds, speed, tuned
        peephole_lstm.fused_backward_ok = real_probe

    print(f"\n{CLASSES} classes, {CLASSES * args.per_class} training / {CLASSES * 8} validation videos of "
          f"{args.frames} frames, signal {args.signal}, lr {cfg['TRAIN']['learning_rate']}, batch "
          f"{cfg['TRAIN']['batch_size']}, {args.epochs} epochs")
    for name, (gaps, moved, seconds, speed, _) in results.items():
        print(f"{name:20s} validation GAP per epoch: {' '.join(f'{g:.4f}' for g in gaps)}  ({seconds:.0f} s, "
              f"training {speed:.2f} samples/s)")
        if args.compare == "lstm":
            for direction, blocks in moved.items():
                print(f"{'':20s} rgb_lstm_{direction}.w_0 median |change| per gate block [candidate, input, "
                      f"forget, output]: {' '.join(f'{m:.2e}' for m in blocks)}")
    if args.compare == "amp":
        (_, _, _, base, a), (_, _, _, mixed, b) = results.values()
        print(f"--amp / float32 samples/s: {mixed / base:.3f}; largest weight difference "
              f"{max(float(np.abs(a[k] - b[k]).max()) for k in a):.3g}")


if __name__ == "__main__":
    main()
