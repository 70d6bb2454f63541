"""Running a model over a list: validation during training and ``eval.py``.

``eval.py`` writes to ``save_dir``::

    metrics.json   {"hit_at_one": ..., "perr": ..., "gap": ..., "loss": ..., "num_videos": N}
                   (AttentionLSTM; TSN: top1_acc, top5_acc, loss, num_videos), unrounded fractions
    failed.list    path<TAB>reason for every file that could not be read (rewritten each run)
    per_class.csv  with ``--per_class``: class_id,class_name,positives,ap per class, worst AP first, the
                   classes without positives (ap empty) last; see ``metrics.PerClassAP``
    thresholds.csv with ``--calibrate``: a threshold per class (``thresholds`` module)
"""
import csv
import io
import json
import logging
import os

import paddle
from tqdm import tqdm

from . import distributed as dist
from . import files, thresholds, weights
from .cpu import default_cpu_threads, reuse_freed_memory
from .errors import UserError
from .metrics import PerClassAP, worst_first
from .models import MODELS, build_model
from .names import text_path
from .readers import iterate_batches, to_tensors
from .readers.lists import read_label_file

log = logging.getLogger(__name__)

DISPLAY_NAMES = {"hit_at_one": "Hit@1", "perr": "PERR", "gap": "GAP", "top1_acc": "TOP1_ACC",
                 "top5_acc": "TOP5_ACC", "loss": "loss", "num_videos": "videos"}


def run_model(model_name, model, reader, indices, batch_size, num_workers=2, on_error=None,
              with_loss=True, runner=None):
    """Inference over ``reader`` samples ``indices`` (in order; no partial batch dropped).

    Yields ``(batch, probabilities [B, C] ndarray, per-video losses [B] ndarray or None)``; unreadable
    samples are left out and reported through ``on_error(entry, reason)``. ``runner``: compute the logits
    with it (``export.InferenceRunner`` of ``model``) instead of the dygraph model.
    """
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            for batch in iterate_batches(reader, batches, num_workers, on_error):
                inputs = to_tensors(batch)  # float32 whatever the features' storage type
                if runner is None:
                    logits = model(*inputs)
                else:
                    logits = paddle.to_tensor(runner(*[x.numpy() for x in inputs]))
                losses = None
                if with_loss:
                    losses = MODELS[model_name].loss(logits, paddle.to_tensor(batch["labels"]))[1].numpy()
                yield batch, MODELS[model_name].probabilities(logits).numpy(), losses
    finally:
        model.train(was_training)


def validate(model_name, model, reader, cfg, section="VALID"):
    """Metrics over every sample of ``reader``, each process taking every world_size-th sample.

    The per-video records of all processes are gathered to rank 0, which computes the metrics once from
    them, so the figures equal a single-process evaluation; the metrics dict (small) is returned on
    every rank.
    """
    world, rank = dist.world_size(), dist.rank()
    batch_size = max(1, int(cfg[section]["batch_size"]) // world)
    metrics = MODELS[model_name].metrics(cfg)
    indices = list(range(len(reader)))[rank::world]
    for batch, probabilities, losses in run_model(model_name, model, reader, indices, batch_size,
                                                  int(cfg[section]["num_workers"])):
        metrics.update(probabilities, batch["labels"], losses)
    gathered = dist.gather_to_main(metrics.state())  # rank 0 alone merges the states: no copy on each rank
    result = None
    if dist.is_main():
        total = MODELS[model_name].metrics(cfg)
        for state in gathered:
            total.merge(state)
        result = total.compute()
    return dist.broadcast_from_main(result)


def evaluate(model_name, cfg, weights_path, filelist, save_dir, use_gpu=False, batch_size=None,
             per_class=False, label_file=None, engine="dygraph", per_class_memory_mb=512, calibrate=None):
    """``eval.py``: metrics of ``weights_path`` over every video of ``filelist``. Returns the exit code.

    Under ``paddle.distributed.launch`` each process reads every world_size-th video of the list (each
    file read once); the per-video records are gathered and rank 0 alone computes the metrics, prints and
    writes them. ``per_class`` also writes per_class.csv, with class names from ``label_file`` (None:
    names left empty): each class's exact AP while every score fits ``per_class_memory_mb`` (all the
    processes together), else the binned AP, with a log line saying so (``metrics.PerClassAP``).
    ``engine``: "dygraph", or "inference" (Paddle Inference, see ``build_runner``). ``calibrate``: also
    write thresholds.csv, with these keyword arguments of ``thresholds.choose`` (target_precision,
    min_positives, default), from the same scores (exact or binned as per_class.csv).
    """
    check_engine(model_name, engine)
    dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    num_classes = int(cfg["MODEL"]["num_classes"])
    names = read_label_file(label_file, num_classes) if label_file else [""] * num_classes  # checked up front
    reader = MODELS[model_name].reader(filelist, "test", cfg, check_files=False)
    model = build_model(model_name, cfg)
    weights.load_weights(model, weights_path)
    runner = build_runner(model_name, model, cfg, use_gpu, engine)
    failed = []
    batch_size = int(batch_size or cfg["TEST"]["batch_size"])
    log.info("evaluating %s on %d video(s) of %s", weights_path, len(reader), filelist)
    metrics = MODELS[model_name].metrics(cfg)
    # Each process keeps its share of the budget: rank 0 receives them all.
    collect = per_class or calibrate is not None
    class_ap = PerClassAP(num_classes, memory_mb=per_class_memory_mb / world) if collect else None
    mine = list(range(len(reader)))[rank::world]
    with tqdm(total=len(mine), desc="eval", unit="video", dynamic_ncols=True,
              disable=not dist.is_main()) as progress:
        for batch, probabilities, losses in run_model(model_name, model, reader, mine, batch_size,
                                                      int(cfg["TEST"]["num_workers"]),
                                                      on_error=failure_recorder(failed), runner=runner):
            metrics.update(probabilities, batch["labels"], losses)
            if class_ap:
                class_ap.update(probabilities, batch["labels"])
            progress.update(len(probabilities))
    # Rank 0 alone needs the states (O(videos) each): they travel to it alone.
    gathered = dist.gather_to_main((metrics.state(), class_ap.state() if class_ap else None, failed))
    if dist.is_main():
        total = MODELS[model_name].metrics(cfg)
        for state, _, _ in gathered:
            total.merge(state)
        failed = sorted(sum((rank_failed for _, _, rank_failed in gathered), []))
        result = total.compute()
        os.makedirs(save_dir, exist_ok=True)
        files.write_text(os.path.join(save_dir, "metrics.json"), json.dumps(result, indent=2) + "\n")
        write_failed_list(save_dir, failed)
        for key, value in result.items():
            print(f"{DISPLAY_NAMES.get(key, key)}: {value}")
        log.info("wrote %s", os.path.join(save_dir, "metrics.json"))
        if class_ap:
            total_ap = PerClassAP(num_classes, memory_mb=per_class_memory_mb)
            for _, state, _ in gathered:
                total_ap.merge(state)
            if not total_ap.exact:
                log.info("per-class AP from score bins (logit steps of 1/64, ties ranked pessimistically), not "
                         "exact: the scores of %d videos x %d classes need more than --per_class_memory_mb %g",
                         total_ap.num_videos(), num_classes, per_class_memory_mb)
            if per_class:
                write_per_class(os.path.join(save_dir, "per_class.csv"), total_ap.compute(), names)
            if calibrate is not None:
                write_calibration(os.path.join(save_dir, "thresholds.csv"), total_ap, names, calibrate)
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


def write_per_class(path, per_class, names):
    """``per_class.csv`` from ``PerClassAP.compute()`` and the class names, worst AP first; logs the
    worst few and the mean AP over the classes with positives."""
    ap, positives = per_class["ap"], per_class["positives"]
    order = worst_first(ap, positives)
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(["class_id", "class_name", "positives", "ap"])
    for c in order:
        out.writerow([int(c), names[c], int(positives[c]), "" if positives[c] == 0 else repr(float(ap[c]))])
    files.write_text(path, text.getvalue())
    scored = [int(c) for c in order if positives[c] > 0]
    if scored:
        log.info("per-class AP: mean %.5f over %d class(es) with positives; worst: %s", float(ap[scored].mean()),
                 len(scored), ", ".join(f"{' '.join(filter(None, (str(c), names[c])))} ({ap[c]:.3f})"
                                        for c in scored[:5]))
    log.info("wrote %s", path)


def write_calibration(path, class_ap, names, options):
    """``thresholds.csv`` from the scores of a ``PerClassAP``; logs how many classes kept the default."""
    rows = thresholds.from_per_class_ap(class_ap, **options)
    thresholds.write_thresholds(path, rows, names)
    fallback = sum(row[4].startswith("default") for row in rows)
    log.info("wrote %s: %d class(es) calibrated, %d with the default threshold %g (marked in its source "
             "column)", path, len(rows) - fallback, fallback, options.get("default", 0.5))


ENGINES = ("dygraph", "inference")


def check_engine(model_name, engine):
    """Refuse an unknown engine, or ``inference`` for another model than the AttentionLSTM."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "inference" and model_name != "AttentionLSTM":
        raise UserError(f"--engine inference runs the AttentionLSTM only, not {model_name}")


def build_runner(model_name, model, cfg, use_gpu, engine):
    """None for the dygraph engine; for "inference", ``model`` exported and loaded in Paddle Inference
    (``export.InferenceRunner``) on this process's device, with this process's share of the cores."""
    if engine == "dygraph":
        return None
    from .export import InferenceRunner
    gpu = use_gpu and paddle.is_compiled_with_cuda()
    runner = InferenceRunner(model_name, model, cfg, use_gpu=gpu,
                             device_id=paddle.distributed.ParallelEnv().device_id if gpu else 0,
                             cpu_threads=default_cpu_threads())
    log.info("engine: Paddle Inference (the model exported to a temporary directory, checked against dygraph)")
    return runner


def failure_recorder(failed):
    """An ``on_error`` callback that logs the file and appends ``(list line, path, reason)`` to ``failed``."""
    def record(entry, reason):
        log.warning("cannot read %s (list line %d): %s", entry.path, entry.line, reason)
        failed.append((entry.line, entry.path, reason))
    return record


def write_failed_list(save_dir, failed):
    """``<save_dir>/failed.list``: ``path<TAB>reason`` per line for ``failed`` ``(line, path, reason)``,
    in list order (empty when nothing failed); both fields in ``names.text_path`` form, as every list."""
    files.write_text(os.path.join(save_dir, "failed.list"),
                     "".join(f"{text_path(p)}\t{text_path(r)}\n" for _, p, r in sorted(failed)))
    if failed:
        log.warning("%d file(s) could not be read: see %s", len(failed), os.path.join(save_dir, "failed.list"))
