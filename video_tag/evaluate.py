"""Running a model over a list: validation during training and ``eval.py``.

``eval.py`` writes to ``save_dir``::

    metrics.json   {"hit_at_one": ..., "perr": ..., "gap": ..., "loss": ..., "num_videos": N}
                   (AttentionLSTM; TSN: top1_acc, top5_acc, loss, num_videos), unrounded fractions
    failed.list    path<TAB>reason for every file that could not be read (rewritten each run)
"""
import json
import logging
import os

import paddle
from tqdm import tqdm

from . import distributed as dist
from . import weights
from .cpu import reuse_freed_memory
from .losses import LOSSES, PROBABILITIES
from .metrics import METRICS
from .models import build_model
from .readers import READERS, iterate_batches

log = logging.getLogger(__name__)

DISPLAY_NAMES = {"hit_at_one": "Hit@1", "perr": "PERR", "gap": "GAP", "top1_acc": "TOP1_ACC",
                 "top5_acc": "TOP5_ACC", "loss": "loss", "num_videos": "videos"}


def run_model(model_name, model, reader, indices, batch_size, num_workers=2, on_error=None,
              with_loss=True):
    """Inference over ``reader`` samples ``indices`` (in order; no partial batch dropped).

    Yields ``(batch, probabilities [B, C] ndarray, per-video losses [B] ndarray or None)``; unreadable
    samples are left out and reported through ``on_error(entry, reason)``.
    """
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            for batch in iterate_batches(reader, batches, num_workers, on_error):
                logits = model(*[paddle.to_tensor(x) for x in batch["inputs"]])
                losses = None
                if with_loss:
                    losses = LOSSES[model_name](logits, paddle.to_tensor(batch["labels"]))[1].numpy()
                yield batch, PROBABILITIES[model_name](logits).numpy(), losses
    finally:
        model.train(was_training)


def validate(model_name, model, reader, cfg, section="VALID"):
    """Metrics over every sample of ``reader``, each process taking every world_size-th sample.

    The per-video records of all processes are gathered and the metrics computed once from them, so
    the figures equal a single-process evaluation. Returns the metrics dict on every rank.
    """
    world, rank = dist.world_size(), dist.rank()
    batch_size = max(1, int(cfg[section]["batch_size"]) // world)
    metrics = METRICS[model_name](cfg)
    indices = list(range(len(reader)))[rank::world]
    for batch, probabilities, losses in run_model(model_name, model, reader, indices, batch_size,
                                                  int(cfg[section]["num_workers"])):
        metrics.update(probabilities, batch["labels"], losses)
    total = METRICS[model_name](cfg)
    for state in dist.gather(metrics.state()):
        total.merge(state)
    return total.compute()


def evaluate(model_name, cfg, weights_path, filelist, save_dir, use_gpu=False, batch_size=None):
    """``eval.py``: metrics of ``weights_path`` over every video of ``filelist``. Returns the exit code.

    Under ``paddle.distributed.launch`` each process reads every world_size-th video of the list (each
    file read once); the per-video records are gathered and rank 0 alone computes the metrics, prints and
    writes them.
    """
    dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    reader = READERS[model_name](filelist, "test", cfg, check_files=False)
    model = build_model(model_name, cfg)
    weights.load_weights(model, weights_path)
    failed = []
    batch_size = int(batch_size or cfg["TEST"]["batch_size"])
    log.info("evaluating %s on %d video(s) of %s", weights_path, len(reader), filelist)
    metrics = METRICS[model_name](cfg)
    mine = list(range(len(reader)))[rank::world]
    with tqdm(total=len(mine), desc="eval", unit="video", dynamic_ncols=True,
              disable=not dist.is_main()) as progress:
        for batch, probabilities, losses in run_model(model_name, model, reader, mine, batch_size,
                                                      int(cfg["TEST"]["num_workers"]),
                                                      on_error=failure_recorder(failed)):
            metrics.update(probabilities, batch["labels"], losses)
            progress.update(len(probabilities))
    total = METRICS[model_name](cfg)
    for state in dist.gather(metrics.state()):
        total.merge(state)
    failed = sorted(sum(dist.gather(failed), []))
    if dist.is_main():
        result = total.compute()
        os.makedirs(save_dir, exist_ok=True)
        weights.write_text(os.path.join(save_dir, "metrics.json"), json.dumps(result, indent=2) + "\n")
        write_failed_list(save_dir, failed)
        for key, value in result.items():
            print(f"{DISPLAY_NAMES.get(key, key)}: {value}")
        log.info("wrote %s", os.path.join(save_dir, "metrics.json"))
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def failure_recorder(failed):
    """An ``on_error`` callback that logs the file and appends ``(list line, path, reason)`` to ``failed``."""
    def record(entry, reason):
        log.warning("cannot read %s (list line %d): %s", entry.path, entry.line, reason)
        failed.append((entry.line, entry.path, reason))
    return record


def write_failed_list(save_dir, failed):
    """``<save_dir>/failed.list``: ``path<TAB>reason`` per line for ``failed`` ``(line, path, reason)``,
    in list order (empty when nothing failed)."""
    weights.write_text(os.path.join(save_dir, "failed.list"),
                       "".join(f"{p}\t{r}\n" for _, p, r in sorted(failed)))
    if failed:
        log.warning("%d file(s) could not be read: see %s", len(failed), os.path.join(save_dir, "failed.list"))
