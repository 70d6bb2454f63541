"""The AttentionLSTM's input pipeline: samples/s the reader delivers from disk against samples/s training
consumes, for float32, float16 and uint8 feature files.

Files: ``--files`` per dtype of [300, 2048] features (non-negative, like TSN's post-ReLU averages),
written by ``video_tag.feature_files`` as the extractor writes them. Delivered: batches of 32 in the
sampler's order out of ``iterate_batches`` (what train.py, eval.py and predict.py consume), timed over a
whole pass, from a cold page cache (each file dropped with ``posix_fadvise(DONTNEED)`` before the pass)
and warm. Loaders compared, each with ``--workers`` workers:
  processes          the default: worker processes, batches in the stored dtype through shared memory
  processes, float32 the same, dequantised / cast to float32 in the workers (4x / 2x the bytes to pass)
  threads            the loader before this change: threads of the main process
  paddle DataLoader  paddle.io.DataLoader(num_workers, use_shared_memory=True), same load and collate
to_tensors: samples/s of ``readers.to_tensors`` (the main process, on the device: float32 tensors from
a compact batch). Training: full-size AttentionLSTM, forward + backward + centered RMSProp step at batch
32, T 300, inputs through ``to_tensors``, with every core (median of ``--train_steps`` steps).

With ``--shard_size N`` the same files are also packed into shards of N (as ``tsn_extractor.py
--shard_size`` writes them) and every loader also reads the list of their members ("[shards]").

    python bench/bench_input.py [--files 2048] [--workers 2] [--train_steps 3] [--skip_train] [--shard_size N]
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag import feature_files, shards  # noqa: E402
from video_tag.cpu import default_cpu_threads, reuse_freed_memory, set_math_threads  # noqa: E402
from video_tag.readers import iterate_batches, to_tensors  # noqa: E402
from video_tag.readers.feature_reader import FeatureReader, features_of  # noqa: E402

T, FEATURE, CLASSES, BATCH = 300, 2048, 3396, 32
CFG = {"MODEL": {"num_classes": CLASSES, "feature_dims": [FEATURE]}}


class ThreadReader(FeatureReader):
    in_processes = False  # iterate_batches loads it on threads


class Float32Batches(FeatureReader):
    """Collates to float32 in the workers (dequantised / cast there)."""

    def collate(self, samples, empty=np.empty):
        return super().collate([{**s, "features": features_of(s), "scale": None} for s in samples], empty)


def write_files(directory, dtype, count, rng, shard_size=0):
    """``count`` feature files in ``directory``: ``{"files": list path}``, and with ``shard_size`` the same
    files also packed into shards of that many (``shards.ShardWriter``, as ``--shard_size`` writes them):
    ``"shards"``, a list naming their members."""
    os.makedirs(directory)
    lines, members = [], []
    packed = os.path.join(directory, "shards")
    os.makedirs(packed)
    writer = shards.ShardWriter(packed, shard_size, lambda shard, names: members.extend(
        os.path.join(shard, n) for n in names)) if shard_size else None
    for i in range(count):
        x = np.maximum(rng.standard_normal((T, FEATURE), np.float32) * rng.uniform(0.2, 2, FEATURE), 0)
        path = os.path.join(directory, f"{i}{feature_files.suffix(dtype)}")
        with open(path, "wb") as f:
            feature_files.write(f, x, dtype)
        lines.append(f"{path} {i % CLASSES}\n")
        if writer:
            with open(path, "rb") as f:
                writer.add(os.path.basename(path), f.read(), f"{i}.json", "{}")
    if writer:
        writer.close()
    lists = {"files": directory + ".list"}
    with open(lists["files"], "w", encoding="utf-8") as f:
        f.writelines(lines)
    if writer:
        lists["shards"] = directory + ".shards.list"
        with open(lists["shards"], "w", encoding="utf-8") as f:
            f.writelines(f"{m} {i % CLASSES}\n" for i, m in enumerate(members))
    os.sync()
    return lists


def drop_cache(reader):
    """Drop the files (or shards) from the page cache (works without root for clean pages of files we can
    open)."""
    for path in {shards.locate(entry.path)[0] for entry in reader.entries}:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def paddle_loader(reader, batches, workers):
    import paddle

    class Dataset(paddle.io.Dataset):
        def __len__(self):
            return len(reader)

        def __getitem__(self, index):
            return reader.load(index)

    return paddle.io.DataLoader(Dataset(), batch_sampler=batches, num_workers=workers, collate_fn=reader.collate,
                                use_shared_memory=True)


def cpu_seconds():
    """CPU time (user + system) of this process, and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def delivered(make, list_path, workers, cold):
    """One pass over the list with the loader ``make(list_path, batches, workers)``: samples/s, seconds to
    the first batch, and CPU microseconds per sample in this (the training) process and in workers."""
    reader = FeatureReader(list_path, "train", CFG)
    batches = [list(range(i, i + BATCH)) for i in range(0, len(reader) - BATCH + 1, BATCH)]
    if cold:
        drop_cache(reader)
    count, first, cpu, start = 0, None, cpu_seconds(), time.perf_counter()
    for batch in make(list_path, batches, workers):
        count += len(batch["index"])
        first = first or time.perf_counter() - start
    seconds = time.perf_counter() - start
    main, children = (1e6 * (b - a) / count for a, b in zip(cpu, cpu_seconds()))
    return count / seconds, first, main, children


LOADERS = {
    "processes": lambda path, b, w: iterate_batches(FeatureReader(path, "train", CFG), b, w),
    "processes, float32": lambda path, b, w: iterate_batches(Float32Batches(path, "train", CFG), b, w),
    "threads": lambda path, b, w: iterate_batches(ThreadReader(path, "train", CFG), b, w),
    "paddle DataLoader": lambda path, b, w: paddle_loader(FeatureReader(path, "train", CFG), b, w),
}


def to_tensor_speed(list_path, repeats=5):
    reader = FeatureReader(list_path, "train", CFG)
    batch = reader.collate([reader.load(i) for i in range(BATCH)])
    to_tensors(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        to_tensors(batch)[0].numpy()
    return BATCH * repeats / (time.perf_counter() - start), batch


def train_speed(batch, steps):
    """samples/s of full-size AttentionLSTM training steps on ``batch`` (inputs through to_tensors)."""
    import paddle
    import paddle.nn.functional as F
    from video_tag.models.attention_lstm import AttentionLSTM
    paddle.seed(0)
    model = AttentionLSTM(num_classes=CLASSES)
    opt = paddle.optimizer.RMSProp(learning_rate=1.25e-4, centered=True, parameters=model.parameters(),
                                   weight_decay=paddle.regularizer.L2Decay(8e-4))
    labels = paddle.to_tensor((np.random.default_rng(0).random((BATCH, CLASSES)) < 0.002).astype("float32"))
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(*to_tensors(batch)), labels, reduction="sum")
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def rss_mb():
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2048, help="feature files per dtype")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train_steps", type=int, default=3)
    parser.add_argument("--skip_train", action="store_true")
    parser.add_argument("--loaders", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--dtypes", nargs="+", default=list(feature_files.DTYPES), choices=feature_files.DTYPES)
    parser.add_argument("--passes", type=int, default=1, help="measured passes per loader (the best counts)")
    parser.add_argument("--shard_size", type=int, default=0, help="also measure the same files packed in shards of N")
    args = parser.parse_args()
    reuse_freed_memory()  # as train.py does
    set_math_threads(default_cpu_threads())
    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.files} files of [{T}, {FEATURE}] "
          f"per dtype, batch {BATCH}, {args.workers} workers", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        lists = {}
        for dtype in args.dtypes:
            lists[dtype] = write_files(os.path.join(tmp, dtype), dtype, args.files, rng, args.shard_size)
            size = os.path.getsize(os.path.join(tmp, dtype, "0" + feature_files.suffix(dtype)))
            print(f"{dtype:8s} {size:>9,d} bytes per video", flush=True)
        results, names = {}, []
        for dtype in args.dtypes:
            for name, layout in ((n, l) for n in args.loaders for l in lists[dtype]):
                label = name + (" [shards]" if layout == "shards" else "")
                names += [label] if label not in names else []
                for cold in (True, False):
                    speed, first, main, children = max(delivered(LOADERS[name], lists[dtype][layout], args.workers,
                                                                 cold) for _ in range(args.passes))
                    results[dtype, label, cold] = speed, main, children
                    print(f"{dtype:8s} {label:20s} {'cold' if cold else 'warm'}: {speed:6.0f} samples/s, first batch "
                          f"after {first * 1000:4.0f} ms, CPU us/sample: {main:4.0f} main process, {children:4.0f} "
                          f"workers (load {os.getloadavg()[0]:.2f})", flush=True)
        batches = {}
        for dtype in args.dtypes:
            speed, batches[dtype] = to_tensor_speed(lists[dtype]["files"])
            print(f"{dtype:8s} to_tensors ({batches[dtype]['inputs'][0].dtype} batch -> float32 tensor): "
                  f"{speed:8.0f} samples/s", flush=True)
        if args.skip_train:
            return
        train = train_speed(batches[args.dtypes[-1]], args.train_steps)
        print(f"\ntraining consumes {train:.2f} samples/s (full-size AttentionLSTM, batch {BATCH}, T {T}, "
              f"{default_cpu_threads()} math threads)")
        # Workers fork from the training process: the cost of forking one that holds a full-size model
        speed, first, _, _ = delivered(LOADERS["processes"], lists[args.dtypes[-1]]["files"], args.workers, False)
        print(f"processes, {args.dtypes[-1]}, warm, forked from this process at {rss_mb():,.0f} MB resident: "
              f"{speed:.0f} samples/s, first batch after {first * 1000:.0f} ms")
        print(f"\n{'dtype':8s} {'loader':20s} {'cold':>6s} {'warm':>6s}  ratio to training (cold)  "
              f"main-process CPU us/sample (warm)")
        for dtype in args.dtypes:
            for name in names:
                (cold, _, _), (warm, main, _) = results[dtype, name, True], results[dtype, name, False]
                print(f"{dtype:8s} {name:20s} {cold:6.0f} {warm:6.0f}  {cold / train:8.0f}x {main:26.0f}")


if __name__ == "__main__":
    main()
