"""Speed of AttentionLSTM (fused fluid peephole LSTM) against the same model on stock ``nn.LSTM``.

Training: forward + backward + centered RMSProp step, batch 32, T = 300, full-size model, random
features [32, 300, 2048] and random multi-hot labels, loss = sigmoid cross-entropy summed over classes
and batch. The two models alternate step by step (less drift between them); the median step is reported.
Inference: ``model.eval()`` under ``paddle.no_grad()`` at batch 1 and 64, alternating the same way.
Figures and the settings that matter on AMD CPUs (MKL_DEBUG_CPU_TYPE, threads): bench/README.md.

    python bench/bench_attention_lstm.py [--steps 5] [--warmup 1] [--threads N]    # N: default every core
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag.cpu import reuse_freed_memory, set_math_threads, use_default_threads  # noqa: E402
from video_tag.models.attention_lstm import AttentionLSTM  # noqa: E402

T, FEATURE, CLASSES = 300, 2048, 3396


class ReferenceLSTMModel(nn.Layer):
    """The speed reference: AttentionLSTM with the LSTM swapped for stock ``nn.LSTM`` (bidirect, no peepholes).

    ``forward(features [B, T, F], lengths)`` -> logits [B, C]; all lengths are taken as T.
    """

    def __init__(self, num_classes=CLASSES, feature_dim=FEATURE, embedding_size=1024, lstm_size=512,
                 drop_rate=0.5, fc_sizes=(8192, 4096)):
        super().__init__()
        self.drop_rate = drop_rate
        self.rgb_fc = nn.Linear(feature_dim, embedding_size)
        self.lstm = nn.LSTM(embedding_size, lstm_size, direction="bidirect")
        self.rgb_weight = nn.Linear(2 * lstm_size, 1, bias_attr=False)
        self.fc1 = nn.Linear(2 * lstm_size, fc_sizes[0])
        self.fc2 = nn.Linear(fc_sizes[0], fc_sizes[1])
        self.output = nn.Linear(fc_sizes[1], num_classes)

    def forward(self, features, lengths=None):
        x = paddle.tanh(self.rgb_fc(features))                                 # [B, T, E]
        z, _ = self.lstm(x)                                                    # [B, T, 2D]
        z = F.dropout(z, p=self.drop_rate, training=self.training, mode="downscale_in_infer")
        attention = F.softmax(self.rgb_weight(z).squeeze(-1), axis=1)          # [B, T]
        pooled = paddle.bmm(attention.unsqueeze(1), z).squeeze(1)              # [B, 2D]
        hidden = F.relu(self.fc1(pooled))
        hidden = paddle.tanh(self.fc2(hidden))
        return self.output(hidden)                                             # [B, C]


def make_train_step(model):
    """A closure running one training step of ``model`` on (features, lengths, labels)."""
    opt = paddle.optimizer.RMSProp(learning_rate=1.25e-4, centered=True, parameters=model.parameters(),
                                   weight_decay=paddle.regularizer.L2Decay(8e-4))

    def step(features, lengths, labels):
        logits = model(features, lengths)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        loss.backward()
        opt.step()
        opt.clear_grad()
        return float(loss)
    return step


def alternate(fns, args, repeats, warmup):
    """Run each of ``fns`` ({name: callable}) on ``args`` in turn, ``warmup + repeats`` rounds.

    Returns {name: median seconds of the timed rounds}.
    """
    times = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(*args)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(label, batch, seconds):
    ours, ref = batch / seconds["ours"], batch / seconds["nn.LSTM"]
    print(f"{label}  ours={ours:.2f}  nn.LSTM={ref:.2f}  ratio={ours / ref:.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0,
                        help="math threads (0: videotag's default, as train.py: OMP_NUM_THREADS if set, else "
                             "every core)")
    args = parser.parse_args()
    reuse_freed_memory()  # as train.py does
    if args.threads:
        set_math_threads(args.threads)
        threads = f"{args.threads} (--threads)"
    else:
        threads = "{} ({})".format(*use_default_threads())

    env = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    print(f"paddle {paddle.__version__}, {os.cpu_count()} CPUs, math threads {threads}, "
          f"env {env} (OMP_NUM_THREADS as after import paddle), batch 32, T {T}, {args.steps} timed steps")
    paddle.seed(0)
    rng = np.random.default_rng(0)
    models = {"ours": AttentionLSTM(num_classes=CLASSES), "nn.LSTM": ReferenceLSTMModel()}

    features = paddle.to_tensor(rng.standard_normal((64, T, FEATURE)).astype("float32"))
    labels = paddle.to_tensor((rng.random((32, CLASSES)) < 0.002).astype("float32"))
    steps = {name: make_train_step(m) for name, m in models.items()}
    seconds = alternate(steps, (features[:32], [T] * 32, labels), args.steps, args.warmup)
    report("train samples/s          ", 32, seconds)

    for m in models.values():
        m.eval()
    with paddle.no_grad():
        for batch, repeats in ((1, 10), (64, 2)):
            seconds = alternate(models, (features[:batch], [T] * batch), repeats, warmup=1)
            report(f"infer samples/s batch={batch:<3d}", batch, seconds)


if __name__ == "__main__":
    main()
