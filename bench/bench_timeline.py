"""Time and peak memory of ``videotag.py --shots --segment_seconds 30`` (shots of their own frames, and of
shared frames: ``--shot_frames shared``) against ``videotag.py`` alone and ``videotag.py --segment_seconds
30``, on one generated video (issue 16: time <= 1.15x, peak <= 2.5 GB).

    python bench/bench_timeline.py [--minutes 10] [--size 640x360] [--shot_seconds 10] [--seg_num 300] [--repeat 1]
                                   [--skip_own_shots] [--shots_alone]

A first run on a 2-second clip builds the exported backbone (cached) and is not timed. The video (``--minutes`` long, 25 frames/s, MPEG-4 Part 2 via ``cv2.VideoWriter``): shots of textured
scenes panning at their own speed with a moving disc, ``--shot_seconds`` long on average (uniform over
0.5x..1.5x), hard cuts and every fourth transition a 15-frame dissolve; cached in the temporary folder.
Weights are random, in the release format, of the real shapes (ResNet101 TSN, AttentionLSTM of 3396
classes): speed does not depend on their values. Each command runs as a user's would (a child started
with the environment as it was before ``import paddle``); its wall time from start to exit and its peak
RSS summed over its processes (polled every 0.1 s), ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the
largest single process) and its CPU time (user + system of its processes: on a machine others load, the
wall time of the decode workers, which run at the lowest priority, suffers first) are printed, with the number of frames each run sends through TSN (the
distinct frames of its samples: a frame in several is computed once) to explain the times.
"""
import argparse
import json
import os
import resource
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench_extract import run_extractor  # noqa: E402  (run a script, time it, poll its summed RSS)

FPS, DISSOLVE = 25, 15


def scene(rng, w, h):
    """A textured background twice as wide as the frame, its pan speed, a disc's colour."""
    world = np.zeros((h, 2 * w, 3), np.float32)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25)):
        grid = rng.normal(0, 1, (max(2, cells * h // (2 * w)), cells, 3)).astype(np.float32)
        world += weight * cv2.resize(grid, (2 * w, h), interpolation=cv2.INTER_CUBIC)
    world = np.clip(rng.uniform(60, 190, 3) + 40 * world, 0, 255).astype(np.uint8)
    return world, rng.uniform(0.5, 3.0), tuple(int(c) for c in rng.integers(0, 256, 3))


def render(shot, t, w, h):
    world, speed, colour = shot
    x = int(speed * t) % w
    frame = np.ascontiguousarray(world[:, x:x + w])
    cv2.circle(frame, (int(w / 2 + w / 3 * np.sin(t / 15)), int(h / 2 + h / 4 * np.cos(t / 11))), h // 8, colour, -1)
    return frame


def write_video(path, minutes, w, h, shot_seconds, seed=0):
    """Returns the number of shots written (the true cuts are not needed here: bench_shots.py measures them)."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * FPS)
    lengths = []
    while sum(lengths) < total:
        lengths.append(int(rng.uniform(0.5, 1.5) * shot_seconds * FPS))
    lengths[-1] -= sum(lengths) - total
    tmp = path + ".tmp.mp4"
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    previous = None
    for k, length in enumerate(lengths):
        shot = scene(rng, w, h)
        for t in range(length):
            frame = render(shot, t, w, h)
            if previous is not None and k % 4 == 3 and t < DISSOLVE:  # a dissolve from the previous shot
                a = (t + 1) / (DISSOLVE + 1)
                frame = cv2.addWeighted(render(previous[0], previous[1] + t, w, h), 1 - a, frame, a, 0)
            writer.write(frame)
        previous = (shot, length)
    writer.release()
    os.replace(tmp, path)
    return len(lengths)


def tsn_frames(save_dir, seg_num, total, shared=False):
    """Frames a run sends through TSN: ``(video, windows, shots, distinct, number of shots)``: the
    distinct frames of each level's samples, and of all of them together (a frame in several samples is
    computed once). 30-second windows of FPS frames/s; ``total``: the video's frames. ``shared``
    (``--shot_frames shared``): a shot's frames are those of the video's and the windows' samples inside
    it, or its first frame where it holds none (``readers.shot_clips``)."""
    from video_tag.readers.video_reader import sample_indices

    def lines(name):
        path = os.path.join(save_dir, name)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def frames(spans):
        return {a + p for a, b in spans for p in sample_indices(b - a, seg_num, "infer")}

    windows = [(k * 30 * FPS, min(total, (k + 1) * 30 * FPS)) for k in range(len(lines("segments.jsonl")))]
    shots = [(s["start_frame"], s["end_frame"]) for s in lines("shots.jsonl")]
    levels = [frames([(0, total)]), frames(windows), frames(shots)]
    if shared:
        union = levels[0] | levels[1]
        levels[2] = set().union(*[{i for i in union if a <= i < b} or {a} for a, b in shots])
    return tuple(len(level) for level in levels) + (len(set().union(*levels)), len(shots))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--shot_seconds", type=float, default=10.0, help="mean shot length")
    p.add_argument("--seg_num", type=int, default=300, help="INFER.seg_num: frames sampled per video, window, shot")
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="rounds of the four runs; the best time of each counts")
    p.add_argument("--skip_own_shots", action="store_true", help="leave out --shots of own frames (the slowest)")
    p.add_argument("--shots_alone", action="store_true",
                   help="also --shots --shot_frames shared without windows (its shots share the video's frames)")
    args = p.parse_args()
    import yaml
    from video_tag import weights
    from video_tag.config import load_config
    from video_tag.models import build_model
    from video_tag.models.tsn import TSN

    w, h = (int(v) for v in args.size.split("x"))
    cache = os.path.join(tempfile.gettempdir(), "bench_timeline")
    os.makedirs(cache, exist_ok=True)
    video = os.path.join(cache, f"video_{args.minutes:g}min_{w}x{h}_{args.shot_seconds:g}s.mp4")
    if not os.path.exists(video):
        print(f"writing {video} ...", flush=True)
        write_video(video, args.minutes, w, h, args.shot_seconds)
    warm = os.path.join(cache, f"warmup_{w}x{h}.mp4")
    if not os.path.exists(warm):
        write_video(warm, 2 / 60, w, h, 1.0)
    work = tempfile.mkdtemp(prefix="bench_timeline_")
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["INFER"]["seg_num"] = args.seg_num
    tsn_config = os.path.join(work, "tsn.yaml")
    with open(tsn_config, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    tsn = os.path.join(work, "tsn.pdparams")
    weights.write_state(weights.model_state(TSN(num_classes=cfg["MODEL"]["num_classes"], num_layers=101)), tsn)
    lstm = os.path.join(work, "attention_lstm.pdparams")
    lstm_cfg = load_config(os.path.join(ROOT, "configs", "attention_lstm.yaml"))
    classes = int(lstm_cfg["MODEL"]["num_classes"])
    weights.write_state(weights.model_state(build_model("AttentionLSTM", lstm_cfg)), lstm)
    labels = os.path.join(work, "labels.txt")
    with open(labels, "w", encoding="utf-8") as f:
        f.write("".join(f"tag {i}\n" for i in range(classes)))
    total = int(cv2.VideoCapture(video).get(cv2.CAP_PROP_FRAME_COUNT))
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at the start; video "
          f"{args.minutes:g} min {w}x{h} at {FPS} frames/s; seg_num {args.seg_num}; {classes} classes", flush=True)
    common = [video, f"--tsn_weights={tsn}", f"--tsn_config={tsn_config}", f"--lstm_weights={lstm}",
              f"--label_file={labels}", "--use_gpu=False", f"--num_workers={args.num_workers}"]
    # a first run builds and caches the exported backbone (cache.py): not timed
    run_extractor(common[1:] + [warm, f"--save_dir={os.path.join(work, 'warmup')}"], script="videotag.py")
    runs = (("videotag.py", []), ("--segment_seconds 30", ["--segment_seconds=30"]),
            ("--shots --segment_seconds 30", ["--shots", "--segment_seconds=30"]),
            ("--shots --shot_frames shared --segment_seconds 30", ["--shots", "--shot_frames=shared",
                                                                  "--segment_seconds=30"]))
    if args.skip_own_shots:
        runs = runs[:2] + runs[3:]
    if args.shots_alone:
        runs += (("--shots --shot_frames shared", ["--shots", "--shot_frames=shared"]),)
    times = {name: [] for name, _ in runs}
    cpus = {name: [] for name, _ in runs}
    for round_ in range(args.repeat):  # the runs in turn, round after round: a load that drifts hits them alike
        for number, (name, flags) in enumerate(runs):
            save_dir = os.path.join(work, f"out{round_}_{number}")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds, rss, _ = run_extractor(common + flags + [f"--save_dir={save_dir}"], script="videotag.py")
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            largest = usage.ru_maxrss * 1024
            cpus[name].append(usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime)
            video_frames, window_frames, shot_frames, distinct, shots = tsn_frames(
                save_dir, args.seg_num, total, "--shot_frames=shared" in flags)
            times[name].append(seconds)
            print(f"{name:50s}: {seconds:7.1f} s (CPU {cpus[name][-1]:.1f} s), peak RSS {rss / 2 ** 20:6.0f} MiB summed over its processes "
                  f"(largest process so far {largest / 2 ** 20:.0f} MiB); distinct frames sampled: video "
                  f"{video_frames}, windows {window_frames}, shots {shot_frames} ({shots} shots), through TSN "
                  f"{distinct}; load average {os.getloadavg()[0]:.1f}", flush=True)
    best = {name: min(t) for name, t in times.items()}
    cpu = {name: min(t) for name, t in cpus.items()}
    for name in list(best)[1:]:
        print(f"{name:50s}: best of {args.repeat}: {best[name]:.1f} s, {best[name] / best['videotag.py']:5.2f}x "
              f"videotag.py alone ({best['videotag.py']:.1f} s), "
              f"{best[name] / best['--segment_seconds 30']:5.2f}x --segment_seconds 30 (target <= 1.15x); "
              f"CPU {cpu[name]:.1f} s, {cpu[name] / cpu['videotag.py']:5.2f}x, "
              f"{cpu[name] / cpu['--segment_seconds 30']:5.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end; work files in {work}")


if __name__ == "__main__":
    main()
