"""The training loop, shared by every model: data parallel, resumable, rank 0 alone logs and saves.

Outputs in ``save_dir`` (k counts epochs from 0, n optimizer steps from the start of the run)::

    <Model>_epoch{k}.pdparams   weights after epoch k (release format: fluid names)
    <Model>_epoch{k}.pdopt      optimizer + schedule state, the epoch and the run's seed, for --resume
    <Model>_step{n}.pdparams    with TRAIN.save_interval_steps: weights after step n, mid-epoch
    <Model>_step{n}.pdopt       its optimizer state, position in the epoch and every process's RNG states
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
import re
import shutil
import time

import numpy as np
import paddle
from tqdm import tqdm

from . import distributed as dist
from . import amp, curves, files, weights
from .cli import setup_logging
from .cpu import reuse_freed_memory
from .errors import RunError, UserError
from .evaluate import validate
from .models import MODELS, build_model
from .readers import iterate_batches, to_tensors
from .sampler import EpochSampler, draw_seed, rng_state, seed_epoch, set_rng_state

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
_RUN_FILES = re.compile(r"(\w+_(epoch|step)\d+\.(pdparams|pdopt)|\w+_best\.pdparams|valid_metrics\.jsonl|"
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
    ``overwrite``, which removes them first. ``resume``: an epoch or a step checkpoint; the run goes on
    from the batch after it, with the seed, sample order and random states it was saved with, and ends
    with the weights of an unbroken run. ``visualdl``: also log the per-epoch figures to VisualDL.
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
    saved = _read_checkpoint(resume) if resume else None
    seed = _run_seed(train_cfg, fix_random_seed, saved)
    sampler = EpochSampler(len(reader), batch_size, world, rank, seed)
    steps_per_epoch = len(sampler)
    shape = {"steps_per_epoch": steps_per_epoch, "num_samples": len(reader), "total_batch": total_batch}

    paddle.seed(seed)  # the same initial weights on every rank
    model = build_model(model_name, cfg)
    if pretrain:
        weights.load_pretrain(model, pretrain)
    optimizer, schedule = spec.optimizer(model.parameters(), train_cfg, steps_per_epoch, len(reader))
    precision = amp.for_training(bool(train_cfg.get("amp")))
    scaler = amp.loss_scaler(precision)
    start_epoch, start_step = 0, 0
    if saved:
        start_epoch, start_step = _load_checkpoint(model, optimizer, saved, shape, scaler)
        log.info("resumed from %s: continuing at epoch %d%s of %d", resume, start_epoch,
                 f" step {start_step}/{steps_per_epoch}" if start_step else "", epochs)
    net = paddle.DataParallel(model) if world > 1 else model
    main_figure = spec.metrics(cfg).main
    log_interval = max(1, int(train_cfg["log_interval"]))
    save_interval = int(train_cfg.get("save_interval_steps") or 0)
    keep = int(train_cfg.get("keep_checkpoints") or 0)
    max_bad = float(train_cfg.get("max_bad_fraction", 0.1))
    epoch_samples = steps_per_epoch * batch_size * world
    best, last_metrics, recorded, history = None, None, set(), None
    if dist.is_main():
        if overwrite and not resume:
            _clear_run_files(model_name, save_dir)
        os.makedirs(save_dir, exist_ok=True)
        best, recorded = _restart_history(save_dir, main_figure, start_epoch - 1 if resume else None)
        history = curves.History(save_dir, list(spec.metrics(cfg).compute()), start_epoch - 1 if resume else None,
                                 title=f"{model_name}: {os.path.abspath(save_dir)}", visualdl=visualdl,
                                 elapsed_before=saved.get("elapsed_seconds") if start_step else None)

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

    # A run killed between an epoch's checkpoint and its validation: validate that epoch now (rank 0
    # knows). A step checkpoint is written after the validation of the epoch before it.
    if resume and not start_step and due(start_epoch - 1) and dist.gather(start_epoch - 1 not in recorded)[0]:
        log.info("epoch %d was not validated before the run stopped: validating it now", start_epoch - 1)
        validate_epoch(start_epoch - 1)
        if history:
            history.end_epoch(start_epoch - 1)
    log.info("training %s on %d sample(s), %d process(es), batch %d per process, %d step(s) per epoch, "
             "epochs %d..%d", model_name, len(reader), world, batch_size, steps_per_epoch, start_epoch,
             epochs - 1)

    for epoch in range(start_epoch, epochs):
        first = start_step if epoch == start_epoch else 0
        # Mid-epoch: the state of the interrupted epoch (random states, partial loss sums, time, lr).
        carried = saved if first else None
        if carried and len(carried["rng"]) == world:
            set_rng_state(carried["rng"][rank])
        else:
            if carried:
                log.warning("%s was saved by %d process(es), %d are running: the batches continue as "
                            "saved, but dropout draws anew (not the weights of an unbroken run)",
                            resume, len(carried["rng"]), world)
            seed_epoch(seed, epoch, rank, first or None)
        net.train()
        epoch_start, paused = time.time(), 0.0
        first_lr, loss_sum = schedule.get_lr(), paddle.zeros([], "float64")
        if carried:
            first_lr, epoch_start = carried["first_lr"], epoch_start - carried["train_seconds"]
            sums = carried["loss_sums"]
            loss_sum += sums[rank] if len(sums) == world else (sum(sums) if rank == 0 else 0.0)
        # This process's unreadable samples of the epoch (each replaced by another), those before a
        # resumed step checkpoint counted on rank 0.
        replaced = sum(carried.get("replaced") or [0]) if carried and rank == 0 else 0

        def replace(entry, reason):
            nonlocal replaced
            replaced += 1
            log.warning("skipping %s (list line %d): %s; another sample takes its place", entry.path, entry.line,
                        reason)
            if replaced > max_bad * epoch_samples:  # more than all processes together may replace
                raise RunError(_too_many_bad(epoch, replaced, epoch_samples, max_bad, train_cfg["filelist"]))
        ran = 0
        hint = "train without --amp?" if precision.dtype == "float16" else "lower TRAIN.learning_rate?"
        unchecked = []  # (step, loss, batch indices) of the steps whose loss was not fetched yet
        with tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch}", disable=not dist.is_main(),
                  dynamic_ncols=True) as progress:
            batches = iterate_batches(reader, sampler.batches(epoch, first), int(train_cfg["num_workers"]),
                                      on_error=replace, refill=True)
            for step, batch in enumerate(batches, first):
                ran += 1
                check_finite_inputs(batch, reader, epoch, step)
                with amp.autocast(precision):
                    logits = net(*to_tensors(batch))
                logits = logits.astype("float32") if logits.dtype in amp.LOW_PRECISION else logits
                labels = paddle.to_tensor(batch["labels"])
                loss, per_video = spec.loss(logits, labels, world)
                # Checked at each log line and before each checkpoint, not here: fetching it would wait
                # for the device every step. The weights may turn NaN in between; they are never saved.
                unchecked.append((step, loss.detach(), batch["index"]))
                loss_sum += per_video.detach().astype("float64").sum()  # a tensor: no device sync per step
                lr = schedule.get_lr()
                if scaler:
                    # float16: a step whose gradients overflow is skipped and the scale lowered.
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                optimizer.clear_grad()
                schedule.step()
                progress.update(1)
                if step % log_interval == 0:
                    check_losses(unchecked, reader, epoch, hint)
                if step % log_interval == 0 and dist.is_main():
                    figures = spec.metrics(cfg)
                    figures.update(spec.probabilities(logits).numpy(), batch["labels"])
                    text = " ".join(f"{k}={v:.5f}" for k, v in figures.compute().items() if isinstance(v, float))
                    log.info("epoch %d step %d/%d lr=%.3g loss=%.5f %s", epoch, step, steps_per_epoch, lr,
                             float(per_video.mean()), text)
                done = epoch * steps_per_epoch + step + 1
                if save_interval and done % save_interval == 0 and step + 1 < steps_per_epoch:
                    pause = time.time()
                    check_losses(unchecked, reader, epoch, hint)
                    # Every process's random state and loss so far: a resume continues them.
                    ranks = dist.gather({"rng": rng_state(), "loss_sum": float(loss_sum), "replaced": replaced})
                    if sum(r["replaced"] for r in ranks) > max_bad * epoch_samples:
                        raise RunError(_too_many_bad(epoch, sum(r["replaced"] for r in ranks), epoch_samples,
                                                     max_bad, train_cfg["filelist"]))
                    if dist.is_main():
                        prefix = os.path.join(save_dir, f"{model_name}_step{done}")
                        _save_checkpoint(model, optimizer, prefix, {
                            "epoch": epoch, "step": step + 1, "seed": seed, **shape, **_scaler_state(scaler),
                            "rng": [r["rng"] for r in ranks], "loss_sums": [r["loss_sum"] for r in ranks],
                            "replaced": [r["replaced"] for r in ranks],
                            "train_seconds": pause - epoch_start - paused, "first_lr": float(first_lr),
                            "elapsed_seconds": history.elapsed()})
                        log.info("saved %s.pdparams", prefix)
                        if keep:
                            _prune_steps(save_dir, model_name, done, keep)
                    paused += time.time() - pause

        train_seconds = time.time() - epoch_start - paused
        check_losses(unchecked, reader, epoch, hint)
        # Every process trains steps_per_epoch full batches (an unreadable sample is replaced, not dropped)
        # unless it runs out of readable samples: then the epoch ends short, and so does the run.
        ranks = dist.gather({"loss_sum": float(loss_sum), "steps": ran, "replaced": replaced})
        check_epoch_data(epoch, min(r["steps"] for r in ranks), steps_per_epoch - first,
                         sum(r["replaced"] for r in ranks), epoch_samples, max_bad, train_cfg["filelist"])
        if dist.is_main():
            # The row goes in before the checkpoint: a run killed in between resumes from the epoch
            # before, and drops the row.
            history.add(epoch, train_loss=sum(r["loss_sum"] for r in ranks) / epoch_samples,
                        learning_rate=float(first_lr), samples_per_s=epoch_samples / train_seconds,
                        train_seconds=train_seconds)
            prefix = os.path.join(save_dir, f"{model_name}_epoch{epoch}")
            _save_checkpoint(model, optimizer, prefix, {"epoch": epoch, "seed": seed, **shape, **_scaler_state(scaler)})
            log.info("saved %s.pdparams", prefix)
            if keep:
                _prune_checkpoints(save_dir, model_name, epoch, keep)
                _prune_steps(save_dir, model_name, (epoch + 1) * steps_per_epoch, 0)  # superseded
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


def _run_seed(train_cfg, fix_random_seed, saved):
    """The run's seed: the resumed checkpoint's; else ``TRAIN.seed``; else 0 with ``fix_random_seed``;
    else drawn at random (rank 0's draw, on every process). Logged, so that any run can be repeated."""
    configured = train_cfg.get("seed")
    if saved is not None and saved.get("seed") is not None:
        if configured is not None and int(configured) != saved["seed"]:
            log.warning("TRAIN.seed=%s is ignored: the resumed run goes on with its own seed %d", configured,
                        saved["seed"])
        return int(saved["seed"])
    if configured is not None:
        seed = int(configured)
    elif fix_random_seed:
        seed = 0
    else:
        seed = dist.gather(draw_seed())[0]
    if saved is not None and "missing" not in saved:
        log.warning("%s records no seed (an older videotag wrote it): the resumed run draws with seed %d, not "
                    "as the run it continues", saved["file"], seed)
    log.info("seed %d (-o TRAIN.seed=%d repeats this run)", seed, seed)
    return seed


def check_epoch_data(epoch, steps, planned, replaced, samples, max_bad, filelist):
    """Raise ``RunError`` when an epoch ran fewer than its ``planned`` steps (every sample left was
    unreadable) or met more unreadable samples (each replaced by another) than ``max_bad`` of its
    ``samples``: weights trained on a few samples over and over, or on none, are not a checkpoint."""
    if steps < planned:
        raise RunError(f"training stopped: epoch {epoch} ran {steps} of {planned} step(s): no readable sample "
                       f"was left ({replaced} unreadable; each is named in a 'skipping' warning of the log): "
                       f"fix or remove them from {filelist}")
    if replaced > max_bad * samples:
        raise RunError(_too_many_bad(epoch, replaced, samples, max_bad, filelist))


def _too_many_bad(epoch, replaced, samples, max_bad, filelist):
    return (f"training stopped: epoch {epoch} met {replaced} unreadable sample(s) of its {samples}, more than "
            f"TRAIN.max_bad_fraction={max_bad:g} allows (each is named in a 'skipping' warning of the log): fix "
            f"or remove them from {filelist}, or raise TRAIN.max_bad_fraction")


def check_losses(unchecked, reader, epoch, hint):
    """Raise ``RunError`` at the first NaN or Inf among the losses of ``unchecked`` (``(step, loss [],
    batch indices)``, emptied), naming its step and the files of its batch: one device sync for them all."""
    if not unchecked:
        return
    values = paddle.stack([loss for _, loss, _ in unchecked]).numpy()
    steps = [(step, indices) for step, _, indices in unchecked]
    unchecked.clear()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step, indices = steps[bad[0]]
        raise RunError(f"training stopped: the loss is {values[bad[0]]} at epoch {epoch} step {step} ({hint}); "
                       f"the batch: {_files(reader, indices)}")


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
        _remove_checkpoint(prefix)


def _prune_steps(save_dir, model_name, upto, leave):
    """Remove the step checkpoints numbered ``upto`` or less but the last ``leave`` of them. Later ones
    (from a run resumed from an earlier checkpoint) stay until this run overwrites them."""
    pattern = re.compile(re.escape(model_name) + r"_step(\d+)\.(pdparams|pdopt)")
    steps = sorted({int(m.group(1)) for m in map(pattern.fullmatch, os.listdir(save_dir)) if m})
    old = [n for n in steps if n <= upto]
    for n in old[:len(old) - leave]:
        _remove_checkpoint(os.path.join(save_dir, f"{model_name}_step{n}"))


def _remove_checkpoint(prefix):
    for suffix in (".pdopt", ".pdparams"):  # the .pdopt first: a half-removed checkpoint is refused
        if os.path.exists(prefix + suffix):
            os.remove(prefix + suffix)


def _save_checkpoint(model, optimizer, prefix, record):
    """``prefix.pdparams`` (fluid names) and ``prefix.pdopt``: ``record`` (epoch, seed, ...; see train)
    plus the optimizer state keyed by fluid names and the schedule's state. The .pdopt is written last:
    a checkpoint without it is incomplete."""
    weights.write_state(weights.model_state(model), prefix + ".pdparams")
    renames = _accumulator_renames(model)
    state = {**record, "optimizer": {}, "lr_scheduler": None}
    for key, value in optimizer.state_dict().items():
        if key == "LR_Scheduler":
            state["lr_scheduler"] = {k: v for k, v in value.items()}
        elif isinstance(value, paddle.Tensor):
            state["optimizer"][_rename(key, renames)] = value.numpy()
    files.atomic_write(prefix + ".pdopt", lambda f: pickle.dump(state, f, protocol=2))


def _read_checkpoint(path):
    """The .pdopt of checkpoint ``path`` (.pdparams, suffix optional) as a dict, with ``file``: the weights.
    A missing .pdopt gives ``{"file", "missing"}``: ``_load_checkpoint`` refuses it after the weights, whose
    error (another model's checkpoint) says more."""
    file = weights.resolve(path)
    opt_file = file[:-len(weights.SUFFIX)] + ".pdopt" if file.endswith(weights.SUFFIX) else file + ".pdopt"
    if not os.path.isfile(opt_file):
        return {"file": file, "missing": opt_file}
    state = weights.read_pickle(opt_file)
    if not isinstance(state, dict) or not {"epoch", "optimizer", "lr_scheduler"} <= set(state):
        raise UserError(f"{opt_file} is not an optimizer state written by this toolkit")
    if state.get("step") and not {"rng", "loss_sums", "train_seconds", "first_lr"} <= set(state):
        raise UserError(f"{opt_file} is a step checkpoint without its training state")
    return {**state, "file": file}


def _scaler_state(scaler):
    """``{"loss_scaler": state}`` of float16's loss scaler (--amp), for the .pdopt; {} without one."""
    return {"loss_scaler": scaler.state_dict()} if scaler else {}


def _load_checkpoint(model, optimizer, saved, shape, scaler=None):
    """Load the weights and optimizer state of ``saved`` (``_read_checkpoint``), and the loss scaler's when
    both have one. ``shape``: this run's steps_per_epoch, num_samples and total_batch; a step checkpoint
    must have been saved with the same. Returns ``(epoch, step)`` to go on from."""
    file = saved["file"]
    step = int(saved.get("step") or 0)
    if step:
        theirs = {k: saved.get(k) for k in shape}
        if theirs != shape:
            raise UserError(f"cannot resume from {file} mid-epoch: it was saved with {theirs['num_samples']} "
                            f"samples, TRAIN.batch_size={theirs['total_batch']} ({theirs['steps_per_epoch']} "
                            f"steps per epoch), this run has {shape['num_samples']}, {shape['total_batch']} "
                            f"({shape['steps_per_epoch']}): resume from an epoch checkpoint instead")
    weights.load_weights(model, file)
    if "missing" in saved:
        raise UserError(f"cannot resume from {file}: optimizer state {saved['missing']} is missing")
    back = {fluid: name for name, fluid in _accumulator_renames(model).items()}
    restored = {_rename(k, back): paddle.to_tensor(v) for k, v in saved["optimizer"].items()}
    if saved["lr_scheduler"] is not None:
        restored["LR_Scheduler"] = saved["lr_scheduler"]
    optimizer.set_state_dict(restored)
    if scaler and saved.get("loss_scaler"):
        scaler.load_state_dict(saved["loss_scaler"])
    epoch = int(saved["epoch"])
    return (epoch, step) if step else (epoch + 1, 0)


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
