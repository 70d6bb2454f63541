"""The offline demo (``./run demo``): generated videos of six classes, from videos to tags with the real
scripts: extract TSN features, fine-tune the AttentionLSTM (with validation), evaluate, tag held-out
videos in one step, and say where everything is.

    python -m video_tag.demo [--out data/demo] [--per_class 10] [--seg_num 16]

With the release files in place (``weights/tsn.pdparams``, ``weights/attention_lstm.pdparams``,
``label_3396.txt``) it starts from them; otherwise the TSN backbone is random (its features still tell
these synthetic classes apart, but real videos need the release weights) and the AttentionLSTM starts
from scratch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["red ball rolling", "blue square falling", "green stripes panning", "checkerboard zooming",
           "grey noise", "yellow ring pulsing"]
SIZE, FPS, SECONDS = (160, 120), 10, 3.0


def draw(cls, t, rng, params):
    """Frame ``t`` (0..1 through the clip) of class ``cls``: BGR uint8 [120, 160, 3]."""
    w, h = SIZE
    frame = np.full((h, w, 3), params["background"], np.uint8)
    if cls == 0:
        cv2.circle(frame, (int(10 + t * (w - 20) * params["speed"]) % w, params["y"]), 14, (40, 40, 230), -1)
    elif cls == 1:
        y = int(t * (h - 20) * params["speed"]) % h
        cv2.rectangle(frame, (params["x"], y), (params["x"] + 24, y + 24), (230, 60, 30), -1)
    elif cls == 2:
        shift = int(t * 40 * params["speed"])
        for x in range(-40, w + 40, 16):
            cv2.rectangle(frame, (x + shift % 16, 0), (x + shift % 16 + 7, h), (40, 200, 40), -1)
    elif cls == 3:
        cell = max(4, int(8 + 12 * t * params["speed"]))
        yy, xx = np.mgrid[0:h, 0:w]
        frame[((yy // cell + xx // cell) % 2) == 0] = 255
    elif cls == 4:
        frame[:] = rng.integers(60, 200, (h, w, 1), dtype=np.uint8)
    else:
        radius = int(15 + 20 * abs(np.sin(t * np.pi * 2 * params["speed"])))
        cv2.circle(frame, (w // 2, h // 2), radius, (30, 220, 230), 5)
    noise = rng.integers(-12, 13, frame.shape)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_videos(out, per_class, rng):
    """Write ``per_class`` clips of each class; returns ``[(path, class id)]``."""
    folder = os.path.join(out, "videos")
    os.makedirs(folder, exist_ok=True)
    videos = []
    for cls in range(len(CLASSES)):
        for i in range(per_class):
            path = os.path.join(folder, f"{CLASSES[cls].replace(' ', '_')}_{i:02d}.avi")
            videos.append((path, cls))
            if os.path.isfile(path):
                continue
            params = {"background": int(rng.integers(0, 60)), "speed": float(rng.uniform(0.6, 1.4)),
                      "x": int(rng.integers(10, SIZE[0] - 40)), "y": int(rng.integers(20, SIZE[1] - 20))}
            writer = cv2.VideoWriter(path + ".tmp.avi", cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
            count = int(SECONDS * FPS)
            for k in range(count):
                writer.write(draw(cls, k / count, rng, params))
            writer.release()
            os.replace(path + ".tmp.avi", path)
    return videos


def random_backbone(path, videos, num_layers=101, short_size=256, target_size=224):
    """Random ResNet TSN weights whose batch-norm statistics are measured on frames of ``videos`` (without
    that, activations grow layer after layer to ~1e6 and the features saturate the AttentionLSTM);
    written to ``path`` in the release format."""
    import paddle
    from video_tag import weights
    from video_tag.models.tsn import TSN
    from video_tag.readers.video_reader import crop_normalize, decode_cropped
    paddle.seed(0)
    model = TSN(num_classes=400, num_layers=num_layers)
    sample = videos[::len(videos) // 16 or 1]
    frames = np.concatenate([decode_cropped(v, 2, short_size, target_size) for v in sample])
    x = paddle.to_tensor(crop_normalize(list(frames), "infer", target_size)[None])  # [1, N, 3, target, target]
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._momentum = 0.0  # the running statistics become this batch's
    model.train()
    with paddle.no_grad():
        model.features(x)
    weights.write_state(weights.model_state(model), path)


# What each exit code of the scripts means (video_tag.cli.main).
EXIT_MEANINGS = {1: "done, but some inputs failed", 2: "refused before starting", 3: "stopped by an error",
                 4: "internal error", 130: "interrupted"}


def run(step, *args):
    """Run one of the project's scripts, showing its output. Any exit code but 0 stops the demo, with a
    line naming the step and its code: the demo exits with that code, or 3 where the code says less (1:
    the step's inputs are the demo's own, one failing is an error; a process killed by a signal)."""
    from video_tag import cpu
    print(f"\n=== {step}: python {' '.join(args)}", flush=True)
    # cpu.child_env: the demo imported Paddle, whose OMP_NUM_THREADS=1 would keep each script on one core
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=cpu.child_env())
    code = result.returncode
    if code != 0:
        meaning = EXIT_MEANINGS.get(code, f"killed by signal {-code}" if code < 0 else "unknown exit code")
        print(f"demo stopped: step {step} failed (exit {code}: {meaning})", file=sys.stderr, flush=True)
        sys.exit(code if code in (2, 3, 4, 130) else 3)


def write_list(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def main():
    from video_tag import cli
    cli.setup_process()  # an entry point: quiet output and the CPU environment, before Paddle is imported
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "data", "demo"), help="where everything goes")
    p.add_argument("--per_class", type=int, default=10, help="clips per class (60%% train, 20%% val, 20%% test)")
    p.add_argument("--seg_num", type=int, default=16, help="frames sampled per video (the release uses 300)")
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    if args.per_class < 5:
        p.error(f"--per_class must be at least 5 (one test clip per class), got {args.per_class}")
    start = time.time()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    release = {name: os.path.join(ROOT, path) for name, path in (
        ("tsn", "weights/tsn.pdparams"), ("lstm", "weights/attention_lstm.pdparams"), ("labels", "label_3396.txt"))}
    have_release = all(os.path.isfile(path) for path in release.values())
    print(f"videotag demo: {len(CLASSES)} classes of generated clips, in {out}")
    if have_release:
        print("using the release weights: weights/tsn.pdparams, weights/attention_lstm.pdparams")
        tsn_weights = release["tsn"]
    else:
        print("NOTE: the release weights are not in weights/: the TSN backbone is RANDOM and the "
              "AttentionLSTM starts from scratch.\n      That is enough to tell these synthetic classes "
              "apart, not for real videos: get the release (weights/tsn.pdparams,\n      "
              "weights/attention_lstm.pdparams, label_3396.txt) with ./run fetch, then run the demo again.")
        tsn_weights = os.path.join(out, "random_tsn.pdparams")

    rng = np.random.default_rng(0)
    videos = make_videos(out, args.per_class, rng)
    if not have_release and not os.path.isfile(tsn_weights):
        random_backbone(tsn_weights, [path for path, _ in videos])
    splits = {"train": [], "val": [], "test": []}
    for path, cls in videos:
        i = int(os.path.splitext(path)[0].rsplit("_", 1)[1])
        n = args.per_class
        splits["train" if i < n * 0.6 else "val" if i < n * 0.8 else "test"].append((path, cls))
    labels = write_list(os.path.join(out, "labels.txt"), CLASSES)
    for name, items in splits.items():
        write_list(os.path.join(out, f"{name}_videos.list"), [f"{p} {c}" for p, c in items])
    all_videos = write_list(os.path.join(out, "videos.list"), [p for p, _ in videos])

    seg = f"INFER.seg_num={args.seg_num}"
    features = os.path.join(out, "features")
    run("1. extract TSN features", "tsn_extractor.py", "--model_name=TSN", "--config=configs/tsn.yaml",
        f"--weights={tsn_weights}", f"--filelist={all_videos}", f"--save_dir={features}", "-o", seg,
        "--use_gpu=False")
    manifest = dict(line.rstrip("\n").split("\t") for line in open(os.path.join(features, "manifest.tsv"),
                                                                    encoding="utf-8"))
    for name in ("train", "val", "test"):
        write_list(os.path.join(out, f"{name}.list"),
                   [f"{manifest[p]} {c}" for p, c in splits[name] if p in manifest])

    n = len(CLASSES)
    checkpoints = os.path.join(out, "checkpoints")
    train = ["train.py", "--model_name=AttentionLSTM", "--config=configs/attention_lstm-single.yaml",
             "-o", f"MODEL.num_classes={n}", "-o", f"VALID.filelist={out}/val.list", f"--filelist={out}/train.list",
             f"--save_dir={checkpoints}", f"--epoch={args.epochs}", "--batch_size=4",
             "-o", f"TRAIN.decay_epochs=[{args.epochs * 3 // 4}]", "-o", "TRAIN.keep_checkpoints=1",
             "--valid_interval=5",
             "--fix_random_seed=True", "--use_gpu=False", "--overwrite"]
    if have_release:
        train.append(f"--pretrain={release['lstm']}")
    run("2. fine-tune the AttentionLSTM", *train)
    final = os.path.join(checkpoints, "AttentionLSTM")
    run("3. evaluate on the test clips", "eval.py", "--model_name=AttentionLSTM",
        "--config=configs/attention_lstm-single.yaml", "-o", f"MODEL.num_classes={n}", f"--weights={final}",
        f"--filelist={out}/test.list", f"--save_dir={out}/eval", "--use_gpu=False")
    test_videos = write_list(os.path.join(out, "test_videos_only.list"), [p for p, _ in splits["test"]])
    run("4. tag the test videos in one step", "videotag.py", test_videos, f"--tsn_weights={tsn_weights}",
        f"--lstm_weights={final}", f"--label_file={labels}", "--config=configs/attention_lstm-single.yaml",
        "-o", f"MODEL.num_classes={n}", "-t", seg, "--topk=3", f"--save_dir={out}/tags", "--use_gpu=False",
        "--overwrite")

    metrics = json.load(open(os.path.join(out, "eval", "metrics.json"), encoding="utf-8"))
    truth = dict(splits["test"])
    print("\n=== what the tagger says about a few test clips (truth -> top tags)")
    with open(os.path.join(out, "tags", "predictions.jsonl"), encoding="utf-8") as f:
        for line in list(f)[::2]:
            record = json.loads(line)
            tags = ", ".join(f"{t['class_name']} {t['probability']:.2f}" for t in record["tags"])
            print(f"  {os.path.basename(record['video']):32s} {CLASSES[truth[record['video']]]:22s} -> {tags}")
    print(f"\n=== done in {time.time() - start:.0f} s. Test clips: GAP {metrics['gap']:.3f}, "
          f"Hit@1 {metrics['hit_at_one']:.3f} ({metrics['num_videos']} videos)")
    print(f"  videos and lists       {out}/videos, {out}/*.list")
    print(f"  TSN features           {features} (features.list, manifest.tsv)")
    print(f"  checkpoints            {checkpoints} (training curves: curves.png, metrics per epoch)")
    print(f"  evaluation             {out}/eval/metrics.json")
    print(f"  tags of the test clips {out}/tags/predictions.jsonl")


if __name__ == "__main__":
    main()
