"""Speed and memory of tsn_extractor.py against the model alone.

    python bench/bench_extract.py [--videos 8] [--seconds 20] [--fps 30] [--size 640x360] [--precision fp32]
                                  [--skip_long] [--skip_bf16] [--skip_contention] [--skip_videotag]
                                  [--skip_memory] [--use_gpu] [--model_seconds 20]

Prints, in one run:
  1. model-only frames/s: the extractor's backbone (ResNet101, Paddle Inference, same precision and
     batch) on random input;
  2. end-to-end frames/s of the whole ``tsn_extractor.py`` command, from start to exit, over
     ``videos`` x 300 sampled frames of generated videos (default 8 of 600 frames, 640x360), and the
     ratio to (1), which is measured before and after and averaged; also the ratio while extracting
     (the extractor's own frames/s, start-up and exit left out: a list long enough to make them
     negligible);
  3. bf16 (where the CPU has it): model-only frames/s and the per-frame cosine of its features
     against fp32 on real (decoded) frames;
  4. the network's speed (model only) beside one decoder process that decodes without pause, at equal
     priority and set up as the extractor's decode workers are (lowest priority, one thread);
  5. peak RSS summed over the extractor's processes while extracting a 1-minute and a 10-minute video,
     and the same for videotag.py tagging them whole and by 30-second windows.
Weights are random, in the release format (the speed does not depend on their values).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import cv2
import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from video_tag import weights  # noqa: E402
from video_tag.extractor import build_engine  # noqa: E402
from video_tag.cpu import launch_env  # noqa: E402
from video_tag.inference import cpu_supports_bf16  # noqa: E402
from video_tag.models.tsn import TSN  # noqa: E402


def write_video(path, seconds, fps=25, w=640, h=360, seed=0):
    """A ``w`` x ``h`` MPEG-4 video with moving content (every frame differs)."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    background = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    for i in range(int(seconds * fps)):
        frame = np.roll(background, 4 * i, axis=1)
        cv2.circle(frame, ((7 * i) % w, h // 2), 40, (255, 255 - i % 256, i % 256), -1)
        writer.write(frame)
    writer.release()
    return path


def frames_per_second(engine, batch, seconds):
    """frames/s of ``engine`` on random input over ``seconds``."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    frames, start = 0, time.time()
    while time.time() - start < seconds:
        engine.run(x)
        frames += batch
    return frames / (time.time() - start)


def model_only(cfg, weights_path, precision, batch, seconds=20, use_gpu=False):
    """frames/s of the extractor's engine on random input, and the engine."""
    engine = build_engine(cfg, weights_path, precision, use_gpu=use_gpu, batch_size=batch)
    frames_per_second(engine, batch, 1)  # warm-up
    return frames_per_second(engine, batch, seconds), engine


def process_tree_rss(pid):
    """Resident memory (bytes) of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def run_extractor(args, env=None, script="tsn_extractor.py"):
    """Run ``script`` (tsn_extractor.py); returns (seconds from start to exit, peak summed RSS in bytes, output)."""
    if env is None:
        # `import paddle` put OMP_NUM_THREADS=1 into this process's environment; the extractor must start
        # with the environment this bench was started with, as a user's command would.
        env = dict(os.environ)
        if launch_env("OMP_NUM_THREADS") is None:
            env.pop("OMP_NUM_THREADS", None)
    start = time.time()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], process_tree_rss(proc.pid))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    elapsed = time.time() - start
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed ({proc.returncode}):\n{output[-3000:]}")
    return elapsed, peak[0], output


DECODE_LOOP = """
import sys
sys.path.insert(0, sys.argv[1])
from video_tag.readers.video_reader import decode_cropped, init_decode_worker
if sys.argv[3] == "worker":
    init_decode_worker()
while True:
    decode_cropped(sys.argv[2], 300)
"""


def contention(engine_fps, video, seconds=15):
    """Model-only frames/s while one decoder process decodes ``video`` over and over beside it: as an
    ordinary process, and set up as the extractor's decode workers are (``init_decode_worker``)."""
    results = {}
    for label, mode in (("equal priority", "plain"), ("as a decode worker", "worker")):
        decoder = subprocess.Popen([sys.executable, "-c", DECODE_LOOP, ROOT, video, mode])
        try:
            time.sleep(2)
            results[label] = engine_fps(seconds)
        finally:
            decoder.kill()
            decoder.wait()
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=8, help="videos of 300 sampled frames for the end-to-end run")
    p.add_argument("--seconds", type=float, default=20, help="length of each video")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--size", default="640x360", help="video width x height")
    p.add_argument("--skip_bf16", action="store_true", help="skip the bf16 figures")
    p.add_argument("--skip_contention", action="store_true",
                   help="skip the network's speed beside a busy decoder")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="fp16: GPU only")
    p.add_argument("--use_gpu", action="store_true", help="extract on the GPU (model only and end to end)")
    p.add_argument("--model_seconds", type=float, default=20, help="length of each model-only measurement")
    p.add_argument("--skip_memory", action="store_true", help="skip the peak-memory runs on long videos")
    p.add_argument("--batch", type=int, default=8, help="frames per network batch")
    p.add_argument("--skip_long", action="store_true", help="skip the 10-minute memory runs")
    p.add_argument("--skip_videotag", action="store_true",
                   help="skip videotag.py --segment_seconds 30 on the long videos")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench_extract_")
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    config = os.path.join(work, "tsn.yaml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    weights_path = os.path.join(work, "tsn.pdparams")
    weights.write_state(weights.model_state(TSN(num_classes=cfg["MODEL"]["num_classes"], num_layers=101)),
                        weights_path)
    print(f"machine: {os.cpu_count()} CPU(s); OMP_NUM_THREADS={launch_env('OMP_NUM_THREADS') or 'unset'}; "
          f"precision {args.precision}, batch {args.batch}", flush=True)

    width, height = (int(v) for v in args.size.split("x"))
    videos = [write_video(os.path.join(work, f"video{i}.mp4"), args.seconds, args.fps, width, height, seed=i)
              for i in range(args.videos)]
    listing = os.path.join(work, "videos.list")
    with open(listing, "w", encoding="utf-8") as f:
        f.write("\n".join(videos) + "\n")

    # The model-only figure is taken before and after the end-to-end run and averaged: these VMs drift by
    # several % over minutes, and both halves of the ratio should see the same machine.
    before, engine = model_only(cfg, weights_path, args.precision, args.batch, args.model_seconds, args.use_gpu)
    del engine
    print(f"model only        : {before:6.1f} frames/s (ResNet101, Paddle Inference {args.precision} on "
          f"{'GPU' if args.use_gpu else 'CPU'}, "
          f"batch {args.batch}; before the end-to-end run)", flush=True)

    common = ["--model_name=TSN", f"--config={config}", f"--weights={weights_path}", f"--use_gpu={args.use_gpu}",
              f"--precision={args.precision}", f"--frame_batch={args.batch}"]
    frames = 300 * len(videos)
    seconds, rss, output = run_extractor(common + [f"--filelist={listing}", f"--save_dir={work}/features"])
    fps_e2e = frames / seconds
    after, engine = model_only(cfg, weights_path, args.precision, args.batch, args.model_seconds, args.use_gpu)
    del engine
    fps_model = (before + after) / 2
    print(f"model only        : {after:6.1f} frames/s after it; mean {fps_model:.1f}", flush=True)
    steady = re.search(r"extracted (\d+) frame\(s\) in ([\d.]+) s", output)
    print(f"end to end        : {fps_e2e:6.1f} frames/s ({frames} frames of {len(videos)} {args.size} videos of "
          f"{int(args.seconds * args.fps)} frames in "
          f"{seconds:.1f} s, start to exit)", flush=True)
    print(f"ratio             : {fps_e2e / fps_model:6.3f} (target >= 0.85)", flush=True)
    if steady:
        fps_steady = int(steady.group(1)) / float(steady.group(2))
        print(f"while extracting  : {fps_steady:6.1f} frames/s, ratio {fps_steady / fps_model:.3f} (start-up and "
              f"exit left out: {seconds - float(steady.group(2)):.1f} s of the run; target >= 0.9)", flush=True)
    print(f"peak RSS          : {rss / 2 ** 20:6.0f} MiB during that run", flush=True)

    if cpu_supports_bf16() and args.precision == "fp32" and not args.skip_bf16 and not args.use_gpu:
        fps_bf16, engine = model_only(cfg, weights_path, "bf16", args.batch, seconds=10)
        fp32 = np.load(os.path.join(work, "features", "video0.npy"))
        seconds, _, _ = run_extractor(common[:-2] + ["--precision=bf16", f"--frame_batch={args.batch}",
                                                     f"--filelist={listing}", f"--save_dir={work}/bf16"])
        bf16 = np.load(os.path.join(work, "bf16", "video0.npy"))
        cos = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
        print(f"bf16 model only   : {fps_bf16:6.1f} frames/s ({fps_bf16 / fps_model:.2f}x fp32); per-frame "
              f"cosine to fp32 on decoded frames: min {cos.min():.5f}, mean {cos.mean():.5f}", flush=True)
        print(f"bf16 end to end   : {frames / seconds:6.1f} frames/s, ratio {frames / seconds / fps_bf16:.3f} to bf16 "
              f"model only (same videos, start to exit)", flush=True)
    else:
        print("bf16              : not measured (--skip_bf16, --precision=bf16, or no native bf16 on this CPU)")

    if not args.skip_contention:
        alone, engine = model_only(cfg, weights_path, args.precision, args.batch, seconds=15)
        shared = contention(lambda seconds: frames_per_second(engine, args.batch, seconds), videos[0])
        del engine
        print(f"one busy decoder  : model only {alone:.1f} frames/s alone; beside a decoder at "
              + "; ".join(f"{k}: {v:.1f} ({v / alone:.2f}x)" for k, v in shared.items()), flush=True)

    if not args.skip_videotag:  # a full-size AttentionLSTM (random, 10 classes) for videotag.py
        from video_tag.config import load_config
        from video_tag.models import build_model
        lstm = os.path.join(work, "attention_lstm.pdparams")
        lstm_cfg = load_config(os.path.join(ROOT, "configs", "attention_lstm.yaml"), ["MODEL.num_classes=10"])
        weights.write_state(weights.model_state(build_model("AttentionLSTM", lstm_cfg)), lstm)
        labels = os.path.join(work, "labels.txt")
        with open(labels, "w", encoding="utf-8") as f:
            f.write("".join(f"tag {i}\n" for i in range(10)))
    for minutes in ([] if args.skip_memory else [1] if args.skip_long else [1, 10]):
        video = write_video(os.path.join(work, f"long{minutes}.mp4"), 60 * minutes, seed=99)
        one = os.path.join(work, f"long{minutes}.list")
        with open(one, "w", encoding="utf-8") as f:
            f.write(video + "\n")
        seconds, rss, _ = run_extractor(common + [f"--filelist={one}", f"--save_dir={work}/long{minutes}"])
        print(f"{minutes:2d}-minute video  : peak RSS {rss / 2 ** 20:6.0f} MiB summed over the extractor's "
              f"processes ({seconds:.1f} s; target < 2048 MiB)", flush=True)
        if not args.skip_videotag:
            seconds, rss, _ = run_extractor(
                [video, f"--tsn_weights={weights_path}", f"--tsn_config={config}", f"--lstm_weights={lstm}",
                 f"--label_file={labels}", "-o", "MODEL.num_classes=10", "--segment_seconds=30",
                 f"--save_dir={work}/tags{minutes}", "--use_gpu=False"], script="videotag.py")
            print(f"   videotag.py --segment_seconds 30: peak RSS {rss / 2 ** 20:6.0f} MiB summed over its "
                  f"processes ({seconds:.1f} s, {2 * minutes} windows)", flush=True)
        os.remove(video)
    print(f"(work files in {work})")


if __name__ == "__main__":
    main()
