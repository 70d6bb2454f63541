"""The training loop, shared by every model: data parallel, resumable, rank 0 alone logs and saves.

Outputs in ``save_dir`` (k counts epochs from 0)::

    <Model>_epoch{k}.pdparams   weights after epoch k (release format: fluid names)
    <Model>_epoch{k}.pdopt      optimizer + schedule state and the epoch, for --resume
    <Model>_best.pdparams       best validation figure so far (GAP, top-1) when validation runs
    <Model>.pdparams            the final weights
    valid_metrics.jsonl         one line of validation metrics per validation
    metrics.csv                 one row per epoch: training loss, learning rate, speed, validation
    curves.png                  metrics.csv drawn (needs matplotlib)
    visualdl/                   with ``visualdl``: the same figures for VisualDL
"""
import json
import logging
import os
import pickle
import random
import re
import shutil
import time

import numpy as np
import paddle
from tqdm import tqdm

from . import distributed as dist
from . import curves, files, weights
from .cli import setup_logging
from .cpu import reuse_freed_memory
from .errors import RunError, UserError
from .evaluate import validate
from .models import MODELS, build_model
from .readers import iterate_batches, to_tensors

log = logging.getLogger(__name__)


def train_worker(*args):
    """``train`` in a process of its own (``paddle.distributed.spawn`` re-imports this module)."""
    setup_logging()
    train(*args)


def check_inputs(model_name, cfg, save_dir, pretrain=None, resume=None, overwrite=False):
    """The up-front checks of ``train`` (lists, files, labels, weights, save_dir), for a parent about to spawn."""
    check_start(model_name, save_dir, pretrain, resume, overwrite)
    MODELS[model_name].reader(cfg["TRAIN"]["filelist"], "train", cfg)
    for path in (pretrain, resume):
        if path:
            weights.resolve(path)


# What a training run writes into save_dir (see the module docstring).
_RUN_FILES = re.compile(r"(\w+_epoch\d+\.(pdparams|pdopt)|\w+_best\.pdparams|valid_metrics\.jsonl|"
                        r"metrics\.csv|curves\.png|visualdl)$")


def check_start(model_name, save_dir, pretrain=None, resume=None, overwrite=False):
    """Refuse to start a fresh run over another run's checkpoints (unless ``overwrite``), and
    ``pretrain`` with ``resume``."""
    if pretrain and resume:
        raise UserError("--pretrain and --resume exclude each other: --resume continues a run of this "
                        "toolkit (weights and optimizer state), --pretrain starts a new one from weights")
    if resume or overwrite or not os.path.isdir(save_dir):
        return
    found = sorted(n for n in os.listdir(save_dir)
                   if _RUN_FILES.fullmatch(n) or n == f"{model_name}{weights.SUFFIX}")
    if found:
        raise UserError(f"{save_dir} holds another run's checkpoints ({found[0]}, ...): continue it with "
                        f"--resume {os.path.join(save_dir, found[0].split('.')[0])}, replace it with "
                        f"--overwrite, or pick another --save_dir")


def _clear_run_files(model_name, save_dir):
    """``--overwrite``: remove the checkpoints of an earlier run, so none is mistaken for this run's."""
    if not os.path.isdir(save_dir):
        return
    for name in sorted(os.listdir(save_dir)):
        if _RUN_FILES.fullmatch(name) or name == f"{model_name}{weights.SUFFIX}":
            path = os.path.join(save_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            log.info("--overwrite: removed %s", os.path.join(save_dir, name))


def train(model_name, cfg, save_dir, epochs=None, pretrain=None, resume=None, valid_interval=1,
          fix_random_seed=False, use_gpu=False, overwrite=False, visualdl=False):
    """Train ``model_name`` as configured by ``cfg`` (see config.py). Returns the last validation metrics.

    A fresh run (no ``resume``) refuses a ``save_dir`` that holds another run's checkpoints unless
    ``overwrite``, which removes them first. ``visualdl``: also log the per-epoch figures to VisualDL.
    """
    check_start(model_name, save_dir, pretrain, resume, overwrite)
    dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    train_cfg = cfg["TRAIN"]
    epochs = int(train_cfg["epoch"] if epochs is None else epochs)

    total_batch = int(train_cfg["batch_size"])
    if int(train_cfg.get("num_gpus") or world) != world:
        log.warning("TRAIN.num_gpus=%s but %d process(es) are running: using %d, with TRAIN.batch_size=%d "
                    "in total", train_cfg["num_gpus"], world, world, total_batch)
    if total_batch % world:
        log.warning("TRAIN.batch_size=%d is not divisible by %d processes: each takes %d", total_batch,
                    world, total_batch // world)
    batch_size = max(1, total_batch // world)

    spec = MODELS[model_name]
    reader = spec.reader(train_cfg["filelist"], "train", cfg)
    if len(reader) < total_batch:
        raise UserError(f"{train_cfg['filelist']} has {len(reader)} samples, fewer than "
                        f"TRAIN.batch_size={total_batch}")
    valid_reader = _valid_reader(model_name, cfg)
    sampler = paddle.io.DistributedBatchSampler(reader, batch_size, shuffle=True, drop_last=True)
    steps_per_epoch = len(sampler)

    if fix_random_seed:
        paddle.seed(0)  # the same initial weights on every rank and every run
    model = build_model(model_name, cfg)
    if pretrain:
        weights.load_pretrain(model, pretrain)
    optimizer, schedule = spec.optimizer(model.parameters(), train_cfg, steps_per_epoch, len(reader))
    start_epoch = 0
    if resume:
        start_epoch = _load_checkpoint(model, optimizer, resume) + 1
        log.info("resumed from %s: continuing at epoch %d of %d", resume, start_epoch, epochs)
    net = paddle.DataParallel(model) if world > 1 else model
    main_figure = spec.metrics(cfg).main
    log_interval = max(1, int(train_cfg["log_interval"]))
    best, last_metrics, recorded, history = None, None, set(), None
    if dist.is_main():
        if overwrite and not resume:
            _clear_run_files(model_name, save_dir)
        os.makedirs(save_dir, exist_ok=True)
        best, recorded = _restart_history(save_dir, main_figure, start_epoch - 1 if resume else None)
        history = curves.History(save_dir, list(spec.metrics(cfg).compute()), start_epoch - 1 if resume else None,
                                 title=f"{model_name}: {os.path.abspath(save_dir)}", visualdl=visualdl)

    def due(epoch):
        return valid_reader is not None and valid_interval > 0 and ((epoch + 1) % valid_interval == 0
                                                                    or epoch == epochs - 1)

    def validate_epoch(epoch):
        nonlocal best, last_metrics
        last_metrics = validate(model_name, model, valid_reader, cfg)
        if dist.is_main():
            log.info("validation after epoch %d: %s", epoch,
                     " ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in last_metrics.items()))
            score = last_metrics[main_figure]
            if best is None or score > best:
                best = score
                weights.write_state(weights.model_state(model),
                                    os.path.join(save_dir, f"{model_name}_best.pdparams"))
                log.info("new best %s=%.5f: saved %s_best.pdparams", main_figure, score, model_name)
            _append_jsonl(os.path.join(save_dir, "valid_metrics.jsonl"), {"epoch": epoch, **last_metrics})
            history.add(epoch, **{f"valid_{k}": v for k, v in last_metrics.items()})

    # A run killed between an epoch's checkpoint and its validation: validate that epoch now (rank 0 knows).
    if resume and due(start_epoch - 1) and dist.gather(start_epoch - 1 not in recorded)[0]:
        log.info("epoch %d was not validated before the run stopped: validating it now", start_epoch - 1)
        validate_epoch(start_epoch - 1)
        if history:
            history.end_epoch(start_epoch - 1)
    log.info("training %s on %d sample(s), %d process(es), batch %d per process, %d step(s) per epoch, "
             "epochs %d..%d", model_name, len(reader), world, batch_size, steps_per_epoch, start_epoch,
             epochs - 1)

    for epoch in range(start_epoch, epochs):
        if fix_random_seed:
            # Seeded per epoch (and rank), so a resumed run draws the same dropout masks as an unbroken one.
            paddle.seed(1000 * epoch + rank)
            np.random.seed(epoch)
            random.seed(epoch)
        net.train()
        sampler.set_epoch(epoch)
        epoch_start, first_lr, loss_sum = time.time(), schedule.get_lr(), paddle.zeros([], "float64")
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}", disable=not dist.is_main(),
                  dynamic_ncols=True) as progress:
            batches = iterate_batches(reader, sampler, int(train_cfg["num_workers"]), refill=True)
            for step, batch in enumerate(batches):
                check_finite_inputs(batch, reader, epoch, step)
                logits = net(*to_tensors(batch))
                labels = paddle.to_tensor(batch["labels"])
                loss, per_video = spec.loss(logits, labels, world)
                if not bool(paddle.isfinite(loss)):  # before the update: the weights stay finite
                    raise RunError(f"training stopped: the loss is {float(loss)} at epoch {epoch} step {step} "
                                   f"(lower TRAIN.learning_rate?); the batch: {_files(reader, batch['index'])}")
                loss_sum += per_video.detach().astype("float64").sum()  # a tensor: no device sync per step
                lr = schedule.get_lr()
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
                schedule.step()
                progress.update(1)
                if step % log_interval == 0 and dist.is_main():
                    figures = spec.metrics(cfg)
                    figures.update(spec.probabilities(logits).numpy(), batch["labels"])
                    text = " ".join(f"{k}={v:.5f}" for k, v in figures.compute().items() if isinstance(v, float))
                    log.info("epoch %d step %d/%d lr=%.3g loss=%.5f %s", epoch, step, steps_per_epoch, lr,
                             float(per_video.mean()), text)

        train_seconds = time.time() - epoch_start
        # Every process trains steps_per_epoch full batches (an unreadable sample is replaced, not dropped).
        losses = dist.gather(float(loss_sum))
        samples = steps_per_epoch * batch_size * world
        if dist.is_main():
            # The row goes in before the checkpoint: a run killed in between resumes from the epoch
            # before, and drops the row.
            history.add(epoch, train_loss=sum(losses) / samples, learning_rate=float(first_lr),
                        samples_per_s=samples / train_seconds, train_seconds=train_seconds)
            prefix = os.path.join(save_dir, f"{model_name}_epoch{epoch}")
            _save_checkpoint(model, optimizer, epoch, prefix)
            log.info("saved %s.pdparams", prefix)
            _prune_checkpoints(save_dir, model_name, epoch, int(train_cfg.get("keep_checkpoints") or 0))
        if due(epoch):
            validate_epoch(epoch)
        if history:
            history.end_epoch(epoch)
        dist.barrier()

    if dist.is_main():
        final = os.path.join(save_dir, f"{model_name}.pdparams")
        weights.write_state(weights.model_state(model), final)
        log.info("saved final weights %s", final)
        history.close()
    return last_metrics


def check_finite_inputs(batch, reader, epoch, step):
    """Raise ``RunError`` naming the files whose rows of ``batch["inputs"]`` hold NaN or Inf (a float64
    sum per input is finite exactly when every value is: float32 values cannot overflow it)."""
    for x in batch["inputs"]:
        if x.dtype.kind == "f" and not np.isfinite(x.sum(dtype=np.float64)):
            rows = [i for i in range(len(x)) if not np.isfinite(x[i]).all()]
            raise RunError(f"training stopped: NaN or Inf in the inputs at epoch {epoch} step {step}, from "
                           f"{_files(reader, batch['index'][rows])}")


def _files(reader, indices):
    return ", ".join(f"{reader.entries[i].path} (list line {reader.entries[i].line})" for i in indices)


def _valid_reader(model_name, cfg):
    path = cfg["VALID"].get("filelist")
    if not path or not os.path.isfile(path):
        log.warning("validation list %s not found: training without validation", path)
        return None
    return MODELS[model_name].reader(path, "valid", cfg, check_files=False)


def _prune_checkpoints(save_dir, model_name, epoch, keep):
    """``TRAIN.keep_checkpoints`` > 0: remove the epoch checkpoints older than the last ``keep`` (a
    full-size AttentionLSTM's weights and optimizer state take 1.2 GB per epoch); 0 keeps them all."""
    if keep <= 0:
        return
    for old in range(epoch - keep, -1, -1):
        prefix = os.path.join(save_dir, f"{model_name}_epoch{old}")
        if not os.path.exists(prefix + ".pdparams") and not os.path.exists(prefix + ".pdopt"):
            break
        for suffix in (".pdparams", ".pdopt"):
            if os.path.exists(prefix + suffix):
                os.remove(prefix + suffix)


def _save_checkpoint(model, optimizer, epoch, prefix):
    """``prefix.pdparams`` (fluid names) and ``prefix.pdopt`` (optimizer state keyed by fluid names)."""
    weights.write_state(weights.model_state(model), prefix + ".pdparams")
    renames = _accumulator_renames(model)
    state = {"epoch": epoch, "optimizer": {}, "lr_scheduler": None}
    for key, value in optimizer.state_dict().items():
        if key == "LR_Scheduler":
            state["lr_scheduler"] = {k: v for k, v in value.items()}
        elif isinstance(value, paddle.Tensor):
            state["optimizer"][_rename(key, renames)] = value.numpy()
    files.atomic_write(prefix + ".pdopt", lambda f: pickle.dump(state, f, protocol=2))


def _load_checkpoint(model, optimizer, path):
    """Load ``path`` (.pdparams, suffix optional) and the .pdopt beside it. Returns the saved epoch."""
    file = weights.resolve(path)
    weights.load_weights(model, file)
    opt_file = file[:-len(weights.SUFFIX)] + ".pdopt" if file.endswith(weights.SUFFIX) else file + ".pdopt"
    if not os.path.isfile(opt_file):
        raise UserError(f"cannot resume from {file}: optimizer state {opt_file} is missing")
    state = weights.read_pickle(opt_file)
    if not isinstance(state, dict) or not {"epoch", "optimizer", "lr_scheduler"} <= set(state):
        raise UserError(f"{opt_file} is not an optimizer state written by this toolkit")
    back = {fluid: name for name, fluid in _accumulator_renames(model).items()}
    restored = {_rename(k, back): paddle.to_tensor(v) for k, v in state["optimizer"].items()}
    if state["lr_scheduler"] is not None:
        restored["LR_Scheduler"] = state["lr_scheduler"]
    optimizer.set_state_dict(restored)
    return int(state["epoch"])


def _accumulator_renames(model):
    """``{parameter.name: fluid name}``: optimizer accumulators are named after the runtime names."""
    by_key = dict(model.state_dict())
    return {by_key[key].name: fluid for key, fluid in model.fluid_names().items()}


def _rename(key, renames):
    for old, new in renames.items():
        if key.startswith(old + "_"):
            return new + key[len(old):]
    return key


def _restart_history(save_dir, key, resumed_epoch):
    """Keep the validation lines of epochs up to ``resumed_epoch`` (none for a fresh run).

    Returns ``(best figure among them or None, set of their epochs)``.
    """
    path = os.path.join(save_dir, "valid_metrics.jsonl")
    records = []
    if resumed_epoch is not None and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            records = [_json_or_none(line) for line in f if line.strip()]
        records = [r for r in records if isinstance(r, dict)]  # a line torn by a killed run is dropped
        records = [r for r in records if r.get("epoch", 1 << 30) <= resumed_epoch]
    files.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    scores = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return (max(scores) if scores else None), {r.get("epoch") for r in records}


def _json_or_none(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def _append_jsonl(path, record):
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
