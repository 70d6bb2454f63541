"""``predict.py``: the top-K tags of every video of a list, with their names, streamed and resumable.

Writes to ``save_dir``::

    predictions.jsonl  one UTF-8 JSON object per readable video, in list order:
                       {"video": "<path as listed>", "tags": [{"class_id": 3110, "class_name": "训练",
                        "probability": 0.977...}, ...]}   (descending probability, unrounded)
    failed.list        path<TAB>reason for every file that could not be read

While it runs, each process appends its predictions, one flushed line per video, to a file of its own,
``predictions.jsonl.partial.<rank>.<time>.<pid>`` (its first line records the inputs: list, weights, label file, topk,
config, version). ``predictions.jsonl`` appears only at the end, complete, in list order. A run that
finds partial files of the same inputs (a killed run) continues after the videos they hold; with other
inputs, or ``overwrite``, it starts over.
"""
import glob
import hashlib
import json
import logging
import os
import time

import numpy as np
from tqdm import tqdm

from . import __version__
from . import distributed as dist
from . import weights
from .cpu import reuse_freed_memory
from .errors import RunError
from .evaluate import failure_recorder, run_model, write_failed_list
from .models import build_model
from .readers import READERS
from .readers.lists import read_label_file

log = logging.getLogger(__name__)

PARTIAL = "predictions.jsonl.partial"


def top_tags(probabilities, names, k):
    """The ``k`` best classes of one video: probabilities [C] -> [{"class_id", "class_name", "probability"}]."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class_id": int(c), "class_name": names[c], "probability": float(probabilities[c])}
            for c in order]


def predict(model_name, cfg, weights_path, filelist, label_file, save_dir, topk=None, use_gpu=False,
            batch_size=None, overwrite=False):
    """Predict every video of ``filelist``; print and save the top-``topk`` tags. Returns the exit code.

    Under ``paddle.distributed.launch`` each process takes every world_size-th video of the list; rank 0
    writes the outputs once all are done, and alone prints tags and progress.
    """
    dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    num_classes = int(cfg["MODEL"]["num_classes"])
    names = read_label_file(label_file, num_classes)
    topk = int(topk or cfg["MODEL"]["topk"])
    reader = READERS[model_name](filelist, "infer", cfg, check_files=False)
    model = build_model(model_name, cfg)
    weights.load_weights(model, weights_path)
    os.makedirs(save_dir, exist_ok=True)
    out_path = os.path.join(save_dir, "predictions.jsonl")
    batch_size = int(batch_size or cfg["INFER"]["batch_size"])
    inputs = _inputs(model_name, cfg, weights_path, filelist, label_file, topk)

    if overwrite and dist.is_main():
        _remove_partials(save_dir)
    done = {} if overwrite else _done_lines(save_dir, inputs, reader)
    dist.barrier()  # every rank has looked at the old partial files before any new one appears
    mine = list(range(len(reader)))[rank::world]
    # The batches are fixed slices of this process's share, as in an unbroken run, so that a resumed run
    # gives bit-identical probabilities; a batch with any video not done yet (or unreadable) runs again.
    chunks = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    todo = [i for chunk in chunks if any(i not in done for i in chunk) for i in chunk]
    if done:
        log.info("resuming: %d of %d video(s) already predicted in %s", len(done), len(reader), save_dir)
    log.info("predicting %d video(s) of %s with %s", sum(i not in done for i in mine), filelist, weights_path)
    failed = []
    own = os.path.join(save_dir, f"{PARTIAL}.{rank}.{time.time_ns()}.{os.getpid()}")
    with _new_partial(own, inputs) as f, tqdm(total=len(mine), initial=sum(i in done for i in mine), desc="predict",
                                     unit="video", dynamic_ncols=True, disable=not dist.is_main()) as progress:
        for batch, probabilities, _ in run_model(model_name, model, reader, todo, batch_size,
                                                 int(cfg["INFER"]["num_workers"]),
                                                 on_error=failure_recorder(failed), with_loss=False):
            for index, row in zip(batch["index"], probabilities):
                if index in done:
                    continue
                video = reader.entries[index].path
                tags = top_tags(row, names, topk)
                if dist.is_main():
                    progress.write(f"{video}\n" + "".join(
                        f"  {t['class_id']:>5}  {t['class_name']}  {t['probability']:.6f}\n" for t in tags),
                        end="")
                line = json.dumps({"index": int(index), "video": video, "tags": tags}, ensure_ascii=False)
                _append(f, own, (line + "\n").encode("utf-8"))
            progress.update(sum(int(i) not in done for i in batch["index"]))

    dist.barrier()
    failed = sorted(sum(dist.gather(failed), []))
    if dist.is_main():
        lines = _done_lines(save_dir, inputs, reader)
        weights.atomic_write(out_path, lambda f: _write_in_order(f, lines))
        write_failed_list(save_dir, failed)
        _remove_partials(save_dir)
        log.info("wrote %s: %d video(s)", out_path, len(lines))
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def _inputs(model_name, cfg, weights_path, filelist, label_file, topk):
    """What the predictions depend on: a resumed run continues only where all of it is unchanged."""
    settings = {k: v for k, v in cfg["INFER"].items() if k not in ("batch_size", "num_workers", "filelist")}
    return {"model_name": model_name, "filelist": os.path.abspath(filelist), "list_sha256": _sha256(filelist),
            "weights_sha256": _sha256(weights.resolve(weights_path)), "label_sha256": _sha256(label_file),
            "topk": topk, "model": cfg["MODEL"], "infer": settings, "videotag": __version__}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _done_lines(save_dir, inputs, reader):
    """``{list index: (partial file, offset, length)}`` of the complete prediction lines that the partial
    files in ``save_dir`` hold for these ``inputs`` (a torn last line, or a file of other inputs, is ignored)."""
    done = {}
    header = _header(inputs)
    for path in sorted(glob.glob(os.path.join(glob.escape(save_dir), PARTIAL + ".*"))):
        with open(path, "rb") as f:
            if f.readline() != header:
                log.info("%s was written for other inputs: not reused", path)
                continue
            offset = f.tell()
            for line in f:
                if line.endswith(b"\n"):
                    try:
                        record = json.loads(line)
                        index = int(record["index"])
                        if reader.entries[index].path == record["video"]:
                            done[index] = (path, offset, len(line))
                    except (ValueError, KeyError, IndexError, TypeError):
                        pass
                offset += len(line)
    return done


def _header(inputs):
    return json.dumps({"inputs": inputs}, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"


def _new_partial(path, inputs):
    """This run's partial file for this process, opened for appending, its header written."""
    try:
        f = open(path, "xb")
        f.write(_header(inputs))
        f.flush()
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
    return f


def _remove_partials(save_dir):
    for path in glob.glob(os.path.join(glob.escape(save_dir), PARTIAL + ".*")):
        os.remove(path)


def _read_lines(locations):
    """The bytes of each ``(file, offset, length)`` line, in the order given."""
    files = {}
    try:
        for path, offset, length in locations:
            f = files.get(path) or files.setdefault(path, open(path, "rb"))
            f.seek(offset)
            yield f.read(length)
    finally:
        for f in files.values():
            f.close()


def _write_in_order(f, lines):
    """predictions.jsonl: the partial lines in list order, without their ``index`` field."""
    for line in _read_lines(lines[i] for i in sorted(lines)):
        record = json.loads(line)
        del record["index"]
        f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


def _append(f, path, data):
    """Append one line and flush it to the OS, so a killed process leaves at most a torn last line."""
    try:
        f.write(data)
        f.flush()
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
