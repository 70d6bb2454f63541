"""Compact features: bytes per video, cosine to float32, and the GAP after fine-tuning the AttentionLSTM on
float32, float16 and uint8 features of the same synthetic task from the same seeds (paired).

The task: generated clips (160x120, 12 frames), each showing one of 12 moving patterns (balls, stripes,
checkerboards, rings, ...; ``PATTERNS``), the label; nuisances: a random tint and brightness per clip,
random pattern sizes, speeds and phases, and uniform per-pixel noise of +-``NOISE``. Features are
real extractor output: ``video_tag.extractor.extract`` with a random ResNet50 backbone whose batch-norm
statistics are measured on the clips (``video_tag.demo.random_backbone``), ``INFER.seg_num`` 8, short
side 128, crop 112 (a quarter of the release's pixels, so that it runs on 2 cores). The float32 features
are stored as float16 and uint8 by ``feature_files.write``, the extractor's own writer. Fine-tuning: a
release-format full-size pretrain (random weights, its 3396-class classifier skipped, as in
bench_finetune.py) whose embedding is matched to these features (``write_pretrain``: standardised per
dimension, as a pretrain trained on them would be), configs/attention_lstm-single.yaml with 12 classes,
centered RMSProp as shipped, ``--lr`` 5e-5 for ``--epochs`` 8 (x0.1 after 3/4), batch 32; validation
GAP on the validation clips stored the same way. Each storage is trained once per seed of ``--seeds``
(``TRAIN.seed``: the new classifier's initial weights, the sample order, dropout), the same seeds for
every storage, so that the differences to float32 are paired. With the release's lr 1.25e-4 and an
embedding scaled by one RMS the same task reached GAP 0.33 in 12 epochs (a linear probe: 0.92): the
features are not centred (post-ReLU averages: their mean vector's norm is 41, a clip's deviation from
it 21), so the common mean dominated every embedding; and a larger lr does not help: centered RMSProp's
first steps are large for the 8192x4096 MLP (lr 3e-4: 0.29 after 10 epochs; 1e-3: chance, 0.08).
Optional control runs (``--runs 'float32 x (1 + 1e-6 N), #1'``): float32 features times (1 + 1e-6 N(0, 1)),
a change of the inputs that loses nothing; their paired differences show what a lossless change does
to one run's GAP. The float32-trained model of each seed is also validated on the validation features
stored each way: what storage alone changes, with nothing else moving.

    python bench/bench_feature_dtype.py [--train 480] [--valid 240] [--epochs 8] [--lr 5e-5] [--seeds 0 1 2]
        [--runs float32 float16 uint8 ...] [--embedding standardised|rms] [--skip_train] [--work DIR]
"""
import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np
import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_finetune import release_like  # noqa: E402
from video_tag import feature_files  # noqa: E402
from video_tag.cli import setup_logging  # noqa: E402
from video_tag.config import load_config  # noqa: E402
from video_tag.demo import random_backbone  # noqa: E402

PATTERNS = ("red ball", "blue square", "green vertical stripes", "yellow horizontal stripes", "checkerboard",
            "grey noise", "yellow ring", "magenta triangle", "cyan diagonal stripes", "white concentric rings",
            "orange dots", "colour sweep")
CLASSES = len(PATTERNS)
SIZE, FRAMES, SEG, SHORT, TARGET = (160, 120), 12, 8, 128, 112
MAX_LABELS = 1  # patterns per clip (more: side by side)
NOISE = 60  # per-pixel noise amplitude (uniform, +-); the other nuisances: tint, brightness, position, speed
# fine-tuning runs: stored dtype, relative noise on the float32 features
RUNS = {"float32": ("float32", None), "float16": ("float16", None), "uint8": ("uint8", None),
        "float32 x (1 + 1e-6 N), #1": ("float32", 1), "float32 x (1 + 1e-6 N), #2": ("float32", 2)}


def draw(cls, t, h, w, p):
    """Pattern ``cls`` at time ``t`` (0..1) in an [h, w] region with random parameters ``p``: BGR float."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    region = np.zeros((h, w, 3), np.float32)
    shift = p["phase"] + t * p["speed"]
    r = p["size"] * min(h, w)
    cx, cy = (0.5 + 0.35 * np.sin(2 * np.pi * shift)) * w, (0.5 + 0.25 * np.cos(2 * np.pi * shift)) * h
    inside = (xx - cx) ** 2 + (yy - cy) ** 2
    if cls == 0:
        region[inside < r * r] = (40, 40, 230)
    elif cls == 1:
        region[(np.abs(xx - cx) < r) & (np.abs(yy - (shift * h) % h) < r)] = (230, 60, 30)
    elif cls == 2:
        region[((xx + shift * 40) // 8) % 2 == 0] = (40, 200, 40)
    elif cls == 3:
        region[((yy + shift * 40) // 8) % 2 == 0] = (30, 220, 230)
    elif cls == 4:
        cell = 6 + 10 * p["size"]
        region[((yy // cell + xx // cell) % 2) == 0] = 255
    elif cls == 5:
        region[:] = p["rng"].integers(60, 200, (h, w, 1))
    elif cls == 6:
        ring = r * (0.6 + 0.4 * abs(np.sin(np.pi * 2 * shift)))
        region[np.abs(np.sqrt(inside) - ring) < 3] = (30, 220, 230)
    elif cls == 7:
        region[(yy - cy > -r) & (np.abs(xx - cx) < (yy - cy + r) / 2)] = (220, 40, 220)
    elif cls == 8:
        region[((xx + yy + shift * 40) // 8) % 2 == 0] = (230, 230, 40)
    elif cls == 9:
        region[(np.sqrt(inside) // 6) % 2 == 0] = 255
    elif cls == 10:
        region[((xx + shift * 20) % 12 < 5) & (yy % 12 < 5)] = (30, 140, 250)
    else:
        region[:] = (255 * ((xx / w + shift) % 1))[:, :, None] * np.array([0.2, 0.6, 1.0])
    return region


def write_clip(path, labels, rng):
    """A clip of ``labels`` (one: the whole frame; two: the left and right halves), plus nuisances."""
    w, h = SIZE
    tint, gain = rng.integers(-40, 41, 3), rng.uniform(0.6, 1.0)
    params = [{"phase": rng.random(), "speed": rng.uniform(0.3, 1.5), "size": rng.uniform(0.15, 0.35),
               "rng": rng} for _ in labels]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    for k in range(FRAMES):
        frame = np.empty((h, w, 3), np.float32)
        for i, (c, p) in enumerate(zip(labels, params)):
            x0, x1 = i * w // len(labels), (i + 1) * w // len(labels)
            frame[:, x0:x1] = draw(c, k / FRAMES, h, x1 - x0, p)
        frame = frame * gain + tint + rng.uniform(-NOISE, NOISE, frame.shape)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()


def make_clips(directory, count, rng):
    """``count`` clips of 1 to ``MAX_LABELS`` distinct classes: ``[(path, labels)]``."""
    os.makedirs(directory)
    clips = []
    for i in range(count):
        labels = [int(c) for c in rng.choice(CLASSES, int(rng.integers(1, MAX_LABELS + 1)), replace=False)]
        path = os.path.join(directory, f"clip{i:04d}.avi")
        write_clip(path, labels, rng)
        clips.append((path, sorted(labels)))
    return clips


def extract(tmp, clips, weights_path):
    """float32 features of every clip with the real extractor: ``{video: feature path}``."""
    from video_tag.extractor import extract as run_extractor
    cfg = load_config(os.path.join(ROOT, "configs", "tsn.yaml"),
                      ["MODEL.num_layers=50", f"INFER.seg_num={SEG}", f"INFER.short_size={SHORT}",
                       f"INFER.target_size={TARGET}"])
    listing = os.path.join(tmp, "videos.list")
    with open(listing, "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p, _ in clips)
    start = time.perf_counter()
    run_extractor(cfg, weights_path, listing, os.path.join(tmp, "float32"), num_workers=1)
    seconds = time.perf_counter() - start
    with open(os.path.join(tmp, "float32", "manifest.tsv"), encoding="utf-8") as f:
        manifest = dict(line.rstrip("\n").split("\t") for line in f)
    print(f"extracted {len(manifest)} clips x {SEG} frames in {seconds:.0f} s "
          f"({len(manifest) * SEG / seconds:.1f} frames/s)", flush=True)
    return manifest


def write_lists(tmp, clips, manifest, split, dtype, perturb=None):
    """Store the split's features as ``dtype`` (with ``perturb``, a seed: times (1 + 1e-6 N(0, 1)));
    returns the list path."""
    directory = os.path.join(tmp, f"{dtype}{f'_perturbed{perturb}' if perturb else ''}_{split}")
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(perturb)
    lines = []
    for video, labels in clips:
        x = np.load(manifest[video])
        if perturb:
            x = (x * (1 + 1e-6 * rng.standard_normal(x.shape))).astype(np.float32)
        path = os.path.join(directory, os.path.basename(manifest[video])[:-4] + feature_files.suffix(dtype))
        with open(path, "wb") as f:
            feature_files.write(f, x, dtype)
        lines.append(f"{path} {' '.join(map(str, labels))}\n")
    list_path = directory + ".list"
    with open(list_path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return list_path


def cosines(features):
    """Per-frame cosine to float32 of each storage (and of uint8 quantisers with other ranges)."""
    everything = np.concatenate(features)
    global_max = float(everything.max())
    global_p999 = float(np.quantile(everything, 0.999))

    def fixed(x, hi):  # YouTube-8M style: one fixed range for every video and dimension
        q = np.rint(np.clip(x, 0, hi) / hi * 255)
        return (q * (hi / 255)).astype(np.float32)

    def per_video(x):  # one range per video
        lo, hi = x.min(), x.max()
        return (np.rint((x - lo) / (hi - lo) * 255) * ((hi - lo) / 255) + lo).astype(np.float32)

    def stored(x, dtype):  # written and read back by feature_files, as the extractor and the reader do
        path = os.path.join(tempfile.gettempdir(), f"cos_{os.getpid()}{feature_files.suffix(dtype)}")
        with open(path, "wb") as f:
            feature_files.write(f, x, dtype)
        data, scale, offset = feature_files.read(path)
        os.remove(path)
        return data.astype(np.float32) if scale is None else feature_files.dequantize(data, scale, offset)

    variants = {
        "float16": lambda x: stored(x, "float16"),
        "uint8, per video and dimension (shipped)": lambda x: stored(x, "uint8"),
        "uint8, one range per video": per_video,
        f"uint8, fixed [0, {global_max:.2f}] (max of this set)": lambda x: fixed(x, global_max),
        f"uint8, fixed [0, {global_p999:.2f}] (99.9th percentile)": lambda x: fixed(x, global_p999),
    }
    results = {}
    for name, fn in variants.items():
        cos = []
        for x in features:
            a, b = x.astype(np.float64), fn(x).astype(np.float64)
            cos.append((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300))
        cos = np.concatenate(cos).astype(np.float64)
        results[name] = (float(cos.min()), float(cos.mean()))
    return results


def bytes_per_video(features):
    """File size of each dtype at the release's T = 300 (the clip's frames repeated)."""
    x = np.tile(features, (300 // len(features) + 1, 1))[:300]
    sizes = {}
    for dtype in feature_files.DTYPES:
        path = os.path.join(tempfile.gettempdir(), f"size_{os.getpid()}{feature_files.suffix(dtype)}")
        with open(path, "wb") as f:
            feature_files.write(f, x, dtype)
        sizes[dtype] = os.path.getsize(path)
        os.remove(path)
    return sizes


def fine_tune(tmp, name, train_list, valid_list, args, seed, pretrain, also_valid=None):
    """Fine-tune on ``train_list`` with run seed ``seed`` (``TRAIN.seed``: initial weights of the new
    classifier, sample order, dropout): the validation GAP per epoch on ``valid_list``, and the final
    model's GAP on each list of ``also_valid`` ({name: list})."""
    from video_tag.evaluate import validate
    from video_tag.models import MODELS, build_model
    from video_tag.trainer import train
    from video_tag.weights import load_weights
    with open(os.path.join(ROOT, "configs", "attention_lstm-single.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["MODEL"]["num_classes"] = CLASSES
    cfg["TRAIN"].update(epoch=args.epochs, filelist=train_list, log_interval=1000, batch_size=32, seed=seed,
                        decay_epochs=[args.epochs * 3 // 4], learning_rate=args.lr, keep_checkpoints=1)
    cfg["VALID"].update(filelist=valid_list, batch_size=64)
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    cfg = load_config(path)
    save_dir = os.path.join(tmp, f"run_{name}")
    start = time.perf_counter()
    train("AttentionLSTM", cfg, save_dir, pretrain=pretrain, overwrite=True)
    with open(os.path.join(save_dir, "valid_metrics.jsonl"), encoding="utf-8") as f:
        gaps = [json.loads(line)["gap"] for line in f]
    print(f"{name:32s} validation GAP per epoch: {' '.join(f'{g:.4f}' for g in gaps)} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    others = {}
    if also_valid:
        model = build_model("AttentionLSTM", cfg)
        load_weights(model, os.path.join(save_dir, "AttentionLSTM"))
        for other, path in also_valid.items():
            reader = MODELS["AttentionLSTM"].reader(path, "valid", cfg, check_files=False)
            others[other] = validate("AttentionLSTM", model, reader, cfg)["gap"]
    shutil.rmtree(save_dir)  # 1.2 GB of weights and optimizer state per checkpoint
    return gaps, others


def write_pretrain(path, train_features, embedding):
    """A release-format full-size pretrain with random weights (``release_like``) whose embedding
    ``rgb_fc`` is matched to these features, as the release's is to its own (a pretrain trained on
    features like these would have learnt as much): ``standardised``: ``tanh(((x - mean) / std) W)``,
    mean and std per dimension over the training frames (folded into ``rgb_fc.w_0`` and ``rgb_fc.b_0``);
    ``rms``: ``tanh(x W / rms)``, one scale for all dimensions (the bench before 2026-11-29)."""
    release = release_like(np.random.default_rng(0))
    frames = np.concatenate(train_features).astype(np.float64)
    if embedding == "rms":
        release["rgb_fc.w_0"] /= float(np.sqrt(np.mean(frames ** 2)))
    else:
        mean, std = frames.mean(0), frames.std(0) + 1e-6
        w = release["rgb_fc.w_0"] / std[:, None]
        release["rgb_fc.w_0"] = w.astype(np.float32)
        release["rgb_fc.b_0"] = (-(mean @ w)).astype(np.float32)
    with open(path + ".pdparams", "wb") as f:
        pickle.dump(release, f, protocol=2)
    return path


T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}  # Student t, 97.5%


def summary(results, seeds):
    """Per-seed final GAPs, paired differences to float32 (same seed), their mean and standard deviation."""
    names = [n for n in RUNS if all((n, s) in results for s in seeds)]
    print("\nfinal validation GAP per seed (each run trained and validated on its own storage):")
    print(f"  {'run':28s} " + " ".join(f"seed {s:<3d}" for s in seeds) + "   mean     sd")
    for name in names:
        g = np.array([results[name, s] for s in seeds])
        print(f"  {name:28s} " + " ".join(f"{x:.4f}  " for x in g) + f" {g.mean():.4f}  {g.std(ddof=1) if len(g) > 1 else 0:.4f}")
    if "float32" not in names:
        return
    print("\npaired difference to float32 of the same seed:")
    print(f"  {'run':28s} " + " ".join(f"seed {s:<4d}" for s in seeds) + "   mean      sd  "
          "  95% interval of the mean (t)")
    for name in names[1:]:
        d = np.array([results[name, s] - results["float32", s] for s in seeds])
        sd = d.std(ddof=1) if len(d) > 1 else 0.0
        half = T95.get(len(d) - 1, 2.0) * sd / np.sqrt(len(d))
        print(f"  {name:28s} " + " ".join(f"{x:+.4f}  " for x in d) +
              f" {d.mean():+.4f}  {sd:.4f}  [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]")


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--train", type=int, default=480, help="training clips")
    parser.add_argument("--valid", type=int, default=240, help="validation clips")
    parser.add_argument("--epochs", type=int, default=8, help="lr x0.1 after 3/4 of them")
    parser.add_argument("--lr", type=float, default=5e-5, help="TRAIN.learning_rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="TRAIN.seed of the runs; each storage is trained with each seed (paired)")
    parser.add_argument("--embedding", choices=("standardised", "rms"), default="standardised",
                        help="how the pretrain's embedding is matched to these features (see write_pretrain)")
    parser.add_argument("--skip_train", action="store_true", help="bytes and cosines only")
    parser.add_argument("--from_scratch", action="store_true", help="no pretrain: the model's own initialisation")
    parser.add_argument("--runs", nargs="+", default=list(RUNS)[:3], choices=list(RUNS),
                        help="which runs, each with every seed (the controls are not run by default)")
    parser.add_argument("--work", help="keep clips and features in this folder and reuse them (default: a "
                                       "temporary folder)")
    args = parser.parse_args()
    setup_logging()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        tmp = args.work or tmp
        os.makedirs(tmp, exist_ok=True)
        clips = os.path.join(tmp, "clips.json")
        if os.path.isfile(clips):
            with open(clips, encoding="utf-8") as f:
                train_clips, valid_clips = json.load(f)
        else:
            train_clips = make_clips(os.path.join(tmp, "train_clips"), args.train, rng)
            valid_clips = make_clips(os.path.join(tmp, "valid_clips"), args.valid, rng)
            with open(clips, "w", encoding="utf-8") as f:
                json.dump([train_clips, valid_clips], f)
        backbone = os.path.join(tmp, "resnet50.pdparams")
        if not os.path.isfile(backbone):
            random_backbone(backbone, [p for p, _ in train_clips], num_layers=50, short_size=SHORT,
                            target_size=TARGET)
        manifest = extract(tmp, train_clips + valid_clips, backbone)
        features = [np.load(manifest[p]) for p, _ in train_clips + valid_clips]
        values = np.concatenate(features)
        print(f"features: min {values.min():.3f}, mean {values.mean():.3f}, max {values.max():.3f}, "
              f"{(values == 0).mean():.1%} exact zeros", flush=True)

        sizes = bytes_per_video(features[0])
        print("\nbytes per video at T=300: " + ", ".join(f"{d} {n:,d}" for d, n in sizes.items()))
        print(f"\nper-frame cosine to float32 over {len(values)} frames: min, mean (1 - cosine: max, mean)")
        for name, (low, mean) in cosines(features).items():
            print(f"  {name:52s} {low:.7f}  {mean:.7f}  ({1 - low:.1e}, {1 - mean:.1e})")
        if args.skip_train:
            return

        pretrain = None if args.from_scratch else write_pretrain(
            os.path.join(tmp, f"release_{args.embedding}"), features[:len(train_clips)], args.embedding)
        print(f"\nfine-tuning: {len(train_clips)} training / {len(valid_clips)} validation clips, {CLASSES} "
              f"classes, {args.epochs} epochs, lr {args.lr:g} (x0.1 after {args.epochs * 3 // 4}), seeds "
              f"{args.seeds}, embedding {'none (from scratch)' if args.from_scratch else args.embedding}",
              flush=True)
        valid_lists = {d: write_lists(tmp, valid_clips, manifest, "valid", d) for d in feature_files.DTYPES}
        lists = {}
        for name in args.runs:
            dtype, perturb = RUNS[name]
            lists[name] = (write_lists(tmp, train_clips, manifest, "train", dtype, perturb),
                           write_lists(tmp, valid_clips, manifest, "valid", dtype, perturb))
        results = {}
        for seed in args.seeds:  # seed by seed: an interrupted run still has complete pairs
            for name in args.runs:
                dtype, perturb = RUNS[name]
                label = f"{dtype}{f'_perturbed{perturb}' if perturb else ''}_seed{seed}"
                gaps, others = fine_tune(tmp, label, *lists[name], args, seed, pretrain,
                                         valid_lists if name == "float32" else None)
                results[name, seed] = gaps[-1]
                if others:
                    print("  the float32-trained model on the validation features stored as: " + ", ".join(
                        f"{d} {g:.5f} ({g - others['float32']:+.5f})" for d, g in others.items()), flush=True)
            summary(results, [s for s in args.seeds if all((n, s) in results for n in args.runs)])


if __name__ == "__main__":
    main()
