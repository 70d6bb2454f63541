"""``predict.py``: the top-K tags of every video of a list, with their names, streamed and resumable.

Writes to ``save_dir``::

    predictions.jsonl  one UTF-8 JSON object per readable video, in list order:
                       {"video": "<path as listed>", "tags": [{"class_id": 3110, "class_name": "训练",
                        "probability": 0.977...}, ...]}   (descending probability, unrounded)
    failed.list        path<TAB>reason for every file that could not be read

While it runs, each process streams its predictions to partial files (``streaming.PartialJsonl``, whose
first line records the inputs: list, weights, label file, topk, config, version; each line, the size and
mtime of the feature file it was computed from, taken before the file was read); ``predictions.jsonl``
appears only at the end, complete, in list order. A run that finds partial files of the same inputs (a
killed run) continues after the videos they hold, except those whose feature file changed since; with
other inputs, or ``overwrite``, it starts over.
"""
import logging
import os

import numpy as np
from tqdm import tqdm

from . import __version__
from . import distributed as dist
from . import files, shards, weights
from .cpu import reuse_freed_memory
from .evaluate import build_runner, check_engine, failure_recorder, run_model, write_failed_list
from .models import MODELS, build_model
from .readers.lists import read_label_file
from .thresholds import keep_tags, read_thresholds
from .streaming import PartialJsonl, file_identity

log = logging.getLogger(__name__)

def top_tags(probabilities, names, k):
    """The ``k`` best classes of one video: probabilities [C] -> [{"class_id", "class_name", "probability"}]."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class_id": int(c), "class_name": names[c], "probability": float(probabilities[c])}
            for c in order]


def predict(model_name, cfg, weights_path, filelist, label_file, save_dir, topk=None, use_gpu=False,
            batch_size=None, overwrite=False, engine="dygraph", thresholds=None):
    """Predict every video of ``filelist``; print and save the top-``topk`` tags. Returns the exit code.

    Under ``paddle.distributed.launch`` each process takes every world_size-th video of the list; rank 0
    writes the outputs once all are done, and alone prints tags and progress. ``engine``: "dygraph", or
    "inference" (Paddle Inference, see ``evaluate.build_runner``). ``thresholds``: a ``thresholds.csv``
    (``eval.py --calibrate``) for these classes: of the top-``topk`` tags, those at or above their own
    threshold are kept.
    """
    check_engine(model_name, engine)
    dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    num_classes = int(cfg["MODEL"]["num_classes"])
    names = read_label_file(label_file, num_classes)
    per_class = read_thresholds(thresholds, names) if thresholds else None
    topk = int(topk or cfg["MODEL"]["topk"])
    reader = MODELS[model_name].reader(filelist, "infer", cfg, check_files=False)
    model = build_model(model_name, cfg)
    weights.load_weights(model, weights_path)
    os.makedirs(save_dir, exist_ok=True)
    batch_size = int(batch_size or cfg["INFER"]["batch_size"])
    inputs = _inputs(model_name, cfg, weights_path, filelist, label_file, topk)
    if per_class is not None:  # other thresholds give other lines: a resumed run must not mix them
        inputs["thresholds"] = per_class
    if engine != "dygraph":  # its probabilities differ in the last bits: a resumed run must not mix them
        inputs["engine"] = engine

    output = PartialJsonl(save_dir, "predictions.jsonl", inputs)
    if overwrite and dist.is_main():
        output.remove_partials()

    def valid(key, record):
        """A line of an earlier run counts only if its feature file has not changed since (each process
        checks its own videos; rank 0, which writes the output, checks all)."""
        i = key[0]
        return (i < len(reader) and reader.entries[i].path == record["video"]
                and (dist.is_main() or i % world == rank)
                and record["source"] is not None and record["source"] == feature_identity(reader.entries[i].path))

    done = {k[0] for k in output.resume(None if overwrite else valid)}
    dist.barrier()  # every rank has looked at the old partial files before any new one appears
    mine = list(range(len(reader)))[rank::world]
    runner = build_runner(model_name, model, cfg, use_gpu, engine) if any(i not in done for i in mine) else None
    # The batches are fixed slices of this process's share, as in an unbroken run, so that a resumed run
    # gives bit-identical probabilities; a batch with any video not done yet (or unreadable) runs again.
    chunks = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    todo = [i for chunk in chunks if any(i not in done for i in chunk) for i in chunk]
    # what each line is recorded as made from is taken before its file is read
    sources = {i: feature_identity(reader.entries[i].path) for i in todo if i not in done}
    if done:
        log.info("resuming: %d of %d video(s) already predicted in %s", len(done), len(reader), save_dir)
    log.info("predicting %d video(s) of %s with %s", sum(i not in done for i in mine), filelist, weights_path)
    failed = []
    with output.open(rank), tqdm(total=len(mine), initial=sum(i in done for i in mine), desc="predict",
                                 unit="video", dynamic_ncols=True, disable=not dist.is_main()) as progress:
        for batch, probabilities, _ in run_model(model_name, model, reader, todo, batch_size,
                                                 int(cfg["INFER"]["num_workers"]),
                                                 on_error=failure_recorder(failed), with_loss=False,
                                                 runner=runner):
            for index, row in zip(batch["index"], probabilities):
                if index in done:
                    continue
                video = reader.entries[index].path
                tags = top_tags(row, names, topk)
                if per_class is not None:
                    tags = keep_tags(tags, per_class)
                if dist.is_main():
                    progress.write(format_tags(video, tags), end="")
                output.append([int(index)], {"source": sources[int(index)], "video": video, "tags": tags})
            progress.update(sum(int(i) not in done for i in batch["index"]))

    dist.barrier()
    gathered = dist.gather_to_main(failed)  # rank 0 alone writes failed.list: the others keep their own
    failed = sorted(sum(gathered, [])) if gathered is not None else failed
    if dist.is_main():
        count = output.assemble(output.final(lambda key: key[0] in done))
        write_failed_list(save_dir, failed)
        log.info("wrote %s: %d video(s)", output.path, count)
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def feature_identity(path):
    """``[size, mtime_ns, offset, length]`` of the bytes a feature path names (a plain file: its own size
    and mtime, offset 0, length None; a shard member: the shard's, and where the member lies in it), or
    None when they cannot be found: what a prediction from that file is valid for."""
    try:
        where, offset, length = shards.locate(path)
    except (OSError, ValueError):
        return None
    identity = file_identity(where)
    return identity and identity + [offset, length]


def format_tags(video, tags):
    """The printed form of one video's tags: its path, then ``class_id  name  probability`` lines."""
    return f"{video}\n" + "".join(f"  {t['class_id']:>5}  {t['class_name']}  {t['probability']:.6f}\n"
                                  for t in tags)


def _inputs(model_name, cfg, weights_path, filelist, label_file, topk):
    """What the predictions depend on: a resumed run continues only where all of it is unchanged."""
    settings = {k: v for k, v in cfg["INFER"].items() if k not in ("batch_size", "num_workers", "filelist")}
    return {"model_name": model_name, "filelist": os.path.abspath(filelist),
            "list_sha256": files.sha256(filelist), "weights_sha256": files.sha256(weights.resolve(weights_path)),
            "label_sha256": files.sha256(label_file),
            "topk": topk, "model": cfg["MODEL"], "infer": settings, "videotag": __version__}
