"""Your tags next to VideoTag's, simulated: how much of the old tags a run that adds 5 new tags keeps
(TRAIN.extend_from, distillation) against plain fine-tuning to 205 classes, and how well it learns the new.

The simulation: 205 classes, each a fixed random N(0, 1) pattern in a ``--dim``-wide feature space; a
video of ``--frames`` frames is N(0, 1) noise plus ``--signal`` x the pattern of each class it shows, on a
random half of its frames. A "release" AttentionLSTM (small: embedding 64, LSTM 32, MLP [256, 128]) is
trained by train.py's trainer on ``--release_videos`` videos showing 1-3 of the first 200 classes,
labelled with them. Then 100 videos, each showing one of the 5 new classes (20 each) and 0-2 old ones,
labelled with their new class only (what a user labelling their own tags has), train three ways, with
the same config, epochs and seed (``--distill_weight`` repeated: one extend run per weight):

- extend:  TRAIN.extend_from (old head rows kept, old tags distilled from the starting model);
- keep:    the old head rows kept, new rows fresh, the labels alone as targets (no distillation);
- plain:   ``--pretrain`` with MODEL.num_classes=205: the classifier skipped (train.py without extend).

Reported on ``--test_videos`` held-out videos drawn like both sets (old classes as in the release set, a
new class in a fifth of them): GAP over the 200 old tags (the starting model's, and each method's as a
multiple of it; goal >= 0.97x) and the AP of each new tag (over every held-out video). Wall-clock time
of each training run too (for information: the machine may be shared).

    python bench/bench_extend.py [--release_videos 4000] [--release_epochs 20] [--epochs 40] [--signal 2.5]
                                 [--learning_rate 1e-3] [--distill_weight 1 [--distill_weight 3 ...]] [--work DIR]

Training uses the configs/attention_lstm-single.yaml settings (centered RMSProp, L2 8e-4, dropout 0.5)
with batch 50, lr 1e-2 for the starting model and ``--learning_rate`` for the three runs, no decay.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from video_tag import cli  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # the trainer's progress bars
cli.setup_process()  # before Paddle is imported (as the entry scripts)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import yaml  # noqa: E402

from video_tag import weights  # noqa: E402
from video_tag.evaluate import run_model  # noqa: E402
from video_tag.metrics import MultiLabelMetrics, exact_average_precision  # noqa: E402
from video_tag.models import MODELS, build_model  # noqa: E402
from video_tag.trainer import train  # noqa: E402

OLD, NEW = 200, 5


def write_videos(directory, count, dim, frames, signal, patterns, rng, draw):
    """``count`` feature files; ``draw(rng) -> (classes shown, classes labelled)``. Returns list lines."""
    os.makedirs(directory)
    lines = []
    for i in range(count):
        shown, labelled = draw(rng)
        x = rng.standard_normal((frames, dim)).astype(np.float32)
        for c in shown:
            x[rng.random(frames) < 0.5] += signal * patterns[c]
        path = os.path.join(directory, f"{i}.npy")
        np.save(path, x)
        lines.append(path + " " + " ".join(map(str, labelled)))
    return lines


def write_list(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def old_classes(rng, most=3):
    return sorted(rng.choice(OLD, rng.integers(1, most + 1), replace=False).tolist())


def config(num_classes, args, train_list, learning_rate, seed=0):
    with open(os.path.join(ROOT, "configs", "attention_lstm-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"].update(num_classes=num_classes, feature_dims=[args.dim], embedding_size=64, lstm_size=32,
                        fc_sizes=[256, 128])
    cfg["TRAIN"].update(filelist=train_list, batch_size=args.batch_size, learning_rate=learning_rate,
                        decay_epochs=[], num_workers=0, log_interval=10 ** 6, seed=seed, keep_checkpoints=1)
    cfg["VALID"]["filelist"] = None
    return cfg


def load_cfg(cfg, directory, name):
    """The dict as a config file read back (the DEFAULTS filled in), as train.py sees it."""
    from video_tag.config import load_config
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    return load_config(path)


def probabilities(cfg, weights_path, test_list):
    """Probabilities [N, C] of the model of ``cfg`` and labels [N, 205] of every video of ``test_list``."""
    model = build_model("AttentionLSTM", cfg)
    weights.load_weights(model, weights_path)
    reader = MODELS["AttentionLSTM"].reader(test_list, "test", {**cfg, "MODEL": {**cfg["MODEL"], "num_classes": OLD + NEW}})
    scores, labels = [], []
    for batch, p, _ in run_model("AttentionLSTM", model, reader, list(range(len(reader))), 256, 0, with_loss=False):
        scores.append(p)
        labels.append(batch["labels"])
    return np.concatenate(scores), np.concatenate(labels)


def old_gap(scores, labels):
    metrics = MultiLabelMetrics(OLD)
    metrics.update(scores[:, :OLD], labels[:, :OLD])
    return metrics.compute()["gap"]


def timed_train(cfg, save_dir, epochs, pretrain=None):
    start = time.time()
    train("AttentionLSTM", cfg, save_dir, epochs=epochs, pretrain=pretrain, valid_interval=0, use_gpu=False)
    return os.path.join(save_dir, "AttentionLSTM.pdparams"), time.time() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release_videos", type=int, default=4000)
    p.add_argument("--release_epochs", type=int, default=20)
    p.add_argument("--test_videos", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=40, help="epochs of the 100-video fine-tuning runs")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--signal", type=float, default=2.5)
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--release_lr", type=float, default=1e-2, help="learning rate of the starting model")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="learning rate of the fine-tuning runs")
    p.add_argument("--distill_weight", type=float, action="append",
                   help="TRAIN.distill_weight of the extend run (repeatable: one run each; default 1)")
    p.add_argument("--work", help="folder for the data and the starting model, reused by a later run with the "
                                  "same data and release settings (default: a new temporary folder)")
    args = p.parse_args()
    args.distill_weight = args.distill_weight or [1.0]
    cli.setup_logging()
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((OLD + NEW, args.dim)).astype(np.float32)
    settings = json.dumps({k: getattr(args, k) for k in ("release_videos", "release_epochs", "test_videos", "dim",
                                                           "frames", "signal", "batch_size", "release_lr")})
    tmp = args.work or tempfile.mkdtemp(prefix="bench_extend_")
    if os.path.isfile(os.path.join(tmp, "settings.json")):
        with open(os.path.join(tmp, "settings.json"), encoding="utf-8") as f:
            if f.read() != settings:
                sys.exit(f"{tmp} holds data of other settings: pick another --work")
        return compare(args, tmp)
    os.makedirs(tmp, exist_ok=True)
    data = (args.dim, args.frames, args.signal, patterns)

    def release_draw(r):
        shown = old_classes(r)
        return shown, shown

    def new_draw(r, counter=iter(range(10 ** 9))):
        new = OLD + next(counter) % NEW
        return [new] + old_classes(r, 2)[:r.integers(0, 3)], [new]

    def test_draw(r):
        shown = old_classes(r)
        if r.random() < 0.2:
            shown = shown + [OLD + int(r.integers(NEW))]
        return shown, shown

    tmp_release = os.path.join(tmp, "release_ck")
    release_list = write_list(os.path.join(tmp, "release.list"),
                              write_videos(os.path.join(tmp, "release"), args.release_videos, *data, rng, release_draw))
    new_list = write_list(os.path.join(tmp, "new.list"),
                          write_videos(os.path.join(tmp, "new"), 100, *data, rng, new_draw))
    test_list = write_list(os.path.join(tmp, "test.list"),
                           write_videos(os.path.join(tmp, "test"), args.test_videos, *data, rng, test_draw))
    names = [f"old {c}" for c in range(OLD)]
    old_labels = write_list(os.path.join(tmp, "old_labels.txt"), names)
    new_labels = write_list(os.path.join(tmp, "new_labels.txt"), names + [f"new {c}" for c in range(NEW)])

    release_cfg = load_cfg(config(OLD, args, release_list, args.release_lr), tmp, "release")
    _, seconds = timed_train(release_cfg, tmp_release, args.release_epochs)
    print(f"starting model: {args.release_videos} videos x {args.release_epochs} epochs in {seconds:.0f} s")
    with open(os.path.join(tmp, "settings.json"), "w", encoding="utf-8") as f:
        f.write(settings)
    compare(args, tmp)


def compare(args, tmp):
    """The three fine-tuning runs from the starting model in ``tmp``; prints the table."""
    release = os.path.join(tmp, "release_ck", "AttentionLSTM.pdparams")
    release_cfg = load_cfg(config(OLD, args, os.path.join(tmp, "release.list"), args.release_lr), tmp, "release")
    new_list, test_list = os.path.join(tmp, "new.list"), os.path.join(tmp, "test.list")
    old_labels, new_labels = os.path.join(tmp, "old_labels.txt"), os.path.join(tmp, "new_labels.txt")
    start_scores, start_labels = probabilities(release_cfg, release, test_list)
    start_gap = old_gap(start_scores, start_labels)
    print(f"starting model: GAP over the {OLD} old tags on {args.test_videos} held-out videos: {start_gap:.4f}",
          flush=True)

    runs = {}
    for weight in args.distill_weight:
        extended = config(OLD + NEW, args, new_list, args.learning_rate)
        extended["TRAIN"].update(extend_from=release, extend_from_labels=old_labels, extend_to_labels=new_labels,
                                 distill_weight=weight)
        runs[f"extend w={weight:g}"] = (load_cfg(extended, tmp, "extend"), None)
    # keep: the release with its head widened as extend does it (new rows at the model's initial values)
    keep_cfg = load_cfg(config(OLD + NEW, args, new_list, args.learning_rate), tmp, "keep")
    paddle.seed(0)
    widened = build_model("AttentionLSTM", keep_cfg)
    state, wide = weights.read_state(release), weights.model_state(widened)
    state["output.w_0"] = np.concatenate([state["output.w_0"], wide["output.w_0"][:, OLD:]], axis=1)
    state["output.b_0"] = np.concatenate([state["output.b_0"], wide["output.b_0"][OLD:]])
    weights.write_state(state, os.path.join(tmp, "widened.pdparams"))
    runs["keep"] = (keep_cfg, os.path.join(tmp, "widened.pdparams"))
    runs["plain"] = (load_cfg(config(OLD + NEW, args, new_list, args.learning_rate), tmp, "plain"), release)

    print(f"\n100 videos with only new-tag labels, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.learning_rate:g}")
    print(f"{'method':14} {'old GAP':>8} {'x start':>8}  {'AP new tag 0..4':34} {'mean':>6} {'seconds':>8}")
    for name, (cfg, pretrain) in runs.items():
        save_dir = os.path.join(tmp, "runs", name.replace(" ", "_"))
        shutil.rmtree(save_dir, ignore_errors=True)
        path, seconds = timed_train(cfg, save_dir, args.epochs, pretrain)
        scores, labels = probabilities(cfg, path, test_list)
        gap = old_gap(scores, labels)
        ap = exact_average_precision(scores[:, OLD:], labels[:, OLD:] != 0)
        print(f"{name:14} {gap:8.4f} {gap / start_gap:7.3f}x  {' '.join(f'{a:.3f}' for a in ap):34} "
              f"{np.nanmean(ap):6.3f} {seconds:8.0f}", flush=True)
    print(f"\n(data and checkpoints in {tmp})")


if __name__ == "__main__":
    main()
