"""``predict.py``: the top-K tags of every video of a list, with their names.

Writes to ``save_dir`` (both replaced on each run)::

    predictions.jsonl  one UTF-8 JSON object per video, in list order:
                       {"video": "<path as listed>", "tags": [{"class_id": 3110, "class_name": "训练",
                        "probability": 0.977...}, ...]}   (descending probability, unrounded)
    failed.list        path<TAB>reason for every file that could not be read
"""
import json
import logging
import os

import numpy as np
from tqdm import tqdm

from . import distributed as dist
from . import weights
from .cpu import reuse_freed_memory
from .evaluate import failure_recorder, run_model, write_failed_list
from .models import build_model
from .readers import READERS
from .readers.lists import read_label_file

log = logging.getLogger(__name__)


def top_tags(probabilities, names, k):
    """The ``k`` best classes of one video: probabilities [C] -> [{"class_id", "class_name", "probability"}]."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class_id": int(c), "class_name": names[c], "probability": float(probabilities[c])}
            for c in order]


def predict(model_name, cfg, weights_path, filelist, label_file, save_dir, topk=None, use_gpu=False,
            batch_size=None):
    """Predict every video of ``filelist``; print and save the top-``topk`` tags. Returns the exit code."""
    dist.init(use_gpu)
    reuse_freed_memory()
    num_classes = int(cfg["MODEL"]["num_classes"])
    names = read_label_file(label_file, num_classes)
    topk = int(topk or cfg["MODEL"]["topk"])
    reader = READERS[model_name](filelist, "infer", cfg, check_files=False)
    model = build_model(model_name, cfg)
    weights.load_weights(model, weights_path)
    failed = []
    os.makedirs(save_dir, exist_ok=True)
    out_path = os.path.join(save_dir, "predictions.jsonl")
    batch_size = int(batch_size or cfg["INFER"]["batch_size"])
    log.info("predicting %d video(s) of %s with %s", len(reader), filelist, weights_path)

    def write(f):
        with tqdm(total=len(reader), desc="predict", unit="video", dynamic_ncols=True) as progress:
            for batch, probabilities, _ in run_model(model_name, model, reader, list(range(len(reader))),
                                                     batch_size, int(cfg["INFER"]["num_workers"]),
                                                     on_error=failure_recorder(failed), with_loss=False):
                for index, row in zip(batch["index"], probabilities):
                    video = reader.entries[index].path
                    tags = top_tags(row, names, topk)
                    progress.write(f"{video}\n" + "".join(
                        f"  {t['class_id']:>5}  {t['class_name']}  {t['probability']:.6f}\n" for t in tags),
                        end="")
                    line = json.dumps({"video": video, "tags": tags}, ensure_ascii=False) + "\n"
                    f.write(line.encode("utf-8"))
                progress.update(len(probabilities))

    weights.atomic_write(out_path, write)
    write_failed_list(save_dir, failed)
    log.info("wrote %s", out_path)
    return 1 if failed else 0
