"""Bookkeeping of tsn_extractor.py on a big save_dir: what a run that adds 1,000 new videos to a folder of
1,000,000 done ones costs besides decoding and the network.

    python bench/bench_bookkeeping.py [--videos 1000000] [--new 1000] [--layouts plain,shards]
                                      [--code /work/main] [--work DIR] [--keep]

For each layout (one file per video; shards of 1,000), it builds a save_dir of ``videos`` done videos with
the code's own functions and file formats (names ``lists.output_stem``, records ``video_provenance``,
features ``feature_files.write`` [2, 4] float32, shards ``shards.ShardWriter``; the lists written as the
extractor writes them), the videos being empty files (hard links of one). Then it times
``extractor.extract`` itself, with only the network and the decoding replaced by a stub that hands each
video to ``store.save`` as the network would (features [2, 4]):

  first run:    the list of the done videos (nothing to do): a run on a folder written by the code, e.g.
                by a version without the records index (the new code builds it here);
  big list:     that list plus ``new`` new videos: the extractor's resume decision over the whole list,
                the new videos saved, features.list / manifest.tsv / failed.list written;
  small list:   a list of ``new`` other new videos alone into the same folder: the lists of the folder
                merged with them.

``--code`` runs the same on another checkout (e.g. ``--code /work/main`` for the code before the records
index): its ``video_tag`` is imported instead of this one's. Prints seconds per step: the bookkeeping (the
whole ``extract`` call less the time in ``store.save``, i.e. writing the new videos' files, which a run
does whatever the folder holds) and the saving; and the CPU time of the whole call (user + system, with
its helper processes': on a loaded machine, a steadier figure than the seconds).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=1_000_000)
    p.add_argument("--new", type=int, default=1000)
    p.add_argument("--layouts", default="plain,shards")
    p.add_argument("--code", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   help="root of the videotag checkout to time (default: this one)")
    p.add_argument("--work", default=None, help="folder for the videos and save_dirs (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--profile", action="store_true", help="print where the big list's run spends its time")
    return p.parse_args()


SEG, DIM = 2, 4
SAVING = [0.0]  # seconds in store.save (writing the new videos' files: new work, not bookkeeping)


def make_videos(root, prefix, count):
    """``count`` empty videos in folders of 1,000 (hard links of a few files)."""
    paths = []
    for i in range(count):
        source = os.path.join(root, f"source-{prefix}-{i // 50000}.mp4")  # a file has at most 65,000 links
        if i % 50000 == 0 and not os.path.exists(source):
            open(source, "wb").close()
        folder = os.path.join(root, prefix, f"{i // 1000:05d}")
        if i % 1000 == 0:
            os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"clip {i}.mp4")
        if not os.path.exists(path):
            os.link(source, path)
        paths.append(path)
    return paths


def build(save_dir, videos, settings, shard_size):
    """A save_dir where every video of ``videos`` is done, as the code under test writes it."""
    import io
    import numpy as np
    from video_tag import feature_files, shards
    from video_tag.feature_store import video_provenance
    from video_tag.readers.lists import output_stem
    os.makedirs(save_dir)
    buffer = io.BytesIO()
    feature_files.write(buffer, np.zeros((SEG, DIM), np.float32), "float32")
    data = buffer.getvalue()
    listed = []
    writer = shards.ShardWriter(save_dir, shard_size, lambda shard, names: None) if shard_size else None
    for n, video in enumerate(videos):
        stem = output_stem(video)
        record = json.dumps(video_provenance(video, settings), ensure_ascii=False, indent=1) + "\n"
        if writer is None:
            with open(os.path.join(save_dir, stem + ".npy"), "wb") as f:
                f.write(data)
            with open(os.path.join(save_dir, stem + ".json"), "w", encoding="utf-8") as f:
                f.write(record)
            listed.append(os.path.join(save_dir, stem + ".npy"))
        else:
            writer.add(stem + ".npy", data, stem + ".json", record)
            listed.append(os.path.join(save_dir, f"shard-{n // shard_size:06d}.tar", stem + ".npy"))
    if writer is not None:
        writer.close()
    with open(os.path.join(save_dir, "features.list"), "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in listed)
    with open(os.path.join(save_dir, "manifest.tsv"), "w", encoding="utf-8") as f:
        f.writelines(f"{v}\t{p}\n" for v, p in zip(videos, listed))
    open(os.path.join(save_dir, "failed.list"), "w").close()


def stub_network(extractor):
    """Decoding and the network replaced: each video to extract gets features [SEG, DIM] at once."""
    import numpy as np

    class NoDecoding:
        def __init__(self, videos, decode, num_workers):
            self.videos = videos

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return ((v, None, None) for v in self.videos)

    def run(engine, decoded, total, store, provenance, failed, seg_num, target):
        for path, _, _ in decoded:
            start = time.perf_counter()
            reason = store.save(path, np.zeros((SEG, DIM), np.float32), provenance[path])
            SAVING[0] += time.perf_counter() - start
            if reason is not None:
                failed[path] = reason

    extractor._DecodeQueue = NoDecoding
    extractor._run = run
    extractor.build_engine = lambda *a, **k: None
    extractor.FEATURE_DIM = DIM


def timed(extractor, cfg, weights_file, videos, list_path, save_dir):
    with open(list_path, "w", encoding="utf-8") as f:
        f.writelines(v + "\n" for v in videos)
    SAVING[0] = 0.0
    start, cpu = time.perf_counter(), sum(os.times()[:4])  # with the helper processes' (video_tag/stats.py)
    code = extractor.extract(cfg, weights_file, list_path, save_dir, num_workers=1)
    seconds, cpu = time.perf_counter() - start, sum(os.times()[:4]) - cpu
    with open(os.path.join(save_dir, "manifest.tsv"), encoding="utf-8") as f:
        rows = sum(1 for _ in f)
    return seconds, cpu, SAVING[0], code, rows


def main():
    args = parse()
    sys.path.insert(0, os.path.abspath(args.code))
    import logging
    from video_tag import extractor
    logging.disable(logging.INFO)
    print(f"code: {os.path.dirname(extractor.__file__)}; {args.videos:,} done videos, {args.new:,} new")
    stub_network(extractor)
    work = args.work or tempfile.mkdtemp(prefix="bench_bookkeeping_")
    os.makedirs(work, exist_ok=True)
    weights_file = os.path.join(work, "tsn.pdparams")
    with open(weights_file, "wb") as f:
        f.write(b"weights")
    start = time.perf_counter()
    done = make_videos(work, "done", args.videos)
    new = make_videos(work, "new", 2 * args.new)
    print(f"videos: {time.perf_counter() - start:.1f} s")
    try:
        for layout in args.layouts.split(","):
            shard_size = 1000 if layout == "shards" else 0
            cfg = {"INFER": {"seg_num": SEG, "short_size": 8, "target_size": 8, "feature_dtype": "float32",
                             "shard_size": shard_size}}
            settings = extractor.run_settings(cfg, weights_file, "fp32")
            save_dir = os.path.join(work, f"out-{layout}-{os.getpid()}")
            start = time.perf_counter()
            build(save_dir, done, settings, shard_size)
            print(f"[{layout}] built {args.videos:,} done videos: {time.perf_counter() - start:.1f} s")
            list_path = os.path.join(work, "videos.list")
            for step, videos in (("first run", done), ("big list", done + new[:args.new]),
                                 ("small list", new[args.new:])):
                profile = None
                if args.profile and step == "big list":
                    import cProfile
                    profile = cProfile.Profile()
                    profile.enable()
                seconds, cpu, saving, code, rows = timed(extractor, cfg, weights_file, videos, list_path, save_dir)
                if profile is not None:
                    import pstats
                    profile.disable()
                    pstats.Stats(profile).sort_stats("cumtime").print_stats(40)
                print(f"[{layout}] {step}: {len(videos):,} video(s) in the list: bookkeeping {seconds - saving:.1f} s "
                      f"(+ {saving:.1f} s saving the new videos; the whole call {cpu:.1f} s of CPU; exit {code}; manifest.tsv {rows:,} rows)", flush=True)
            shutil.rmtree(save_dir)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
