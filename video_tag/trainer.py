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

The loop as timm keeps it: ``Run`` holds what stays fixed (model, optimizer, data, settings), ``RunState``
where an epoch is (step, sums; its random states are set by ``begin_epoch``); ``train_one_epoch``,
``end_epoch`` (checks, metrics.csv, checkpoint), ``validate_epoch`` and ``CheckpointSaver`` (rank 0's
writes) do the work, and ``train`` strings them together.
"""
import json
import logging
import os
import pickle
import re
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import paddle
from tqdm import tqdm

from . import distributed as dist
from . import amp, curves, extend, files, weights
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
    extend.check(cfg, model_name, pretrain)
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
                   if (_RUN_FILES.fullmatch(n) or n == f"{model_name}{weights.SUFFIX}")
                   and not _no_record(os.path.join(save_dir, n)))
    resumable = [os.path.join(save_dir, m.group(1)) for m in map(_RESUMABLE.fullmatch, found) if m]
    if resumable:
        last = max(resumable, key=lambda prefix: os.path.getmtime(prefix + ".pdopt"))
        raise UserError(f"{save_dir} holds another run's checkpoints ({found[0]}, ...): continue it with "
                        f"--resume {last}, replace it with --overwrite, or pick another --save_dir")
    if found:
        raise UserError(f"{save_dir} holds the records of another run ({found[0]}, ...) but no checkpoint to "
                        f"continue it from: replace them with --overwrite, or pick another --save_dir")


_RESUMABLE = re.compile(r"(\w+_(?:epoch|step)\d+)\.pdopt")


def _no_record(path):
    """Whether ``path`` is a metrics.csv or valid_metrics.jsonl left by a run stopped before its first
    record (a header line at most): a re-run of the same command may replace it."""
    if os.path.basename(path) not in ("metrics.csv", "valid_metrics.jsonl") or not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read().count(b"\n") <= (1 if path.endswith(".csv") else 0)


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


@dataclass
class Run:
    """What stays fixed while a run trains: the model, its optimizer and data, the settings, the outputs.
    ``saver`` and ``history`` (metrics.csv) on rank 0 only; ``shape``: steps_per_epoch, num_samples and
    total_batch, which a step checkpoint must share."""
    model_name: str
    cfg: dict
    spec: object
    model: object
    net: object
    optimizer: object
    schedule: object
    precision: amp.Precision
    scaler: object
    reader: object
    sampler: EpochSampler
    seed: int
    shape: dict
    saver: "CheckpointSaver" = None
    history: object = None
    distiller: object = None  # extend.Distiller of a run that extends a model's tags (TRAIN.extend_from)

    @property
    def epoch_samples(self):
        """Samples an epoch trains, over all processes."""
        return self.shape["steps_per_epoch"] * self.sampler.batch_size * self.sampler.world


@dataclass
class RunState:
    """Where a run is in its current epoch, and what this process has summed in it so far."""
    epoch: int
    step: int                 # the first step this process runs in the epoch (> 0: resumed mid-epoch)
    first_lr: float           # the learning rate at the epoch's start (metrics.csv)
    loss_sum: object          # float64 tensor []: per-video losses summed on the device (no sync per step)
    replaced: int = 0         # unreadable samples met, each replaced by another (a resume's: on rank 0)
    ran: int = 0              # steps run in this call
    started: float = field(default_factory=time.time)  # moved back by the seconds before a resume
    paused: float = 0.0       # seconds spent writing step checkpoints
    unchecked: list = field(default_factory=list)      # (step, loss, batch indices) not checked for NaN yet


def train(model_name, cfg, save_dir, epochs=None, pretrain=None, resume=None, valid_interval=1,
          fix_random_seed=False, use_gpu=False, overwrite=False, visualdl=False):
    """Train ``model_name`` as configured by ``cfg`` (see config.py). Returns the last validation metrics.

    A fresh run (no ``resume``) refuses a ``save_dir`` that holds another run's checkpoints unless
    ``overwrite``, which removes them first. ``resume``: an epoch or a step checkpoint; the run goes on
    from the batch after it, with the seed, sample order and random states it was saved with, and ends
    with the weights of an unbroken run. ``visualdl``: also log the per-epoch figures to VisualDL.
    """
    check_start(model_name, save_dir, pretrain, resume, overwrite)
    extend.check(cfg, model_name, pretrain)  # the label files of a run that extends a model's tags
    dist.init(use_gpu)
    reuse_freed_memory()
    epochs = int(cfg["TRAIN"]["epoch"] if epochs is None else epochs)
    run, saved, valid_reader = _build_run(model_name, cfg, pretrain, resume, fix_random_seed)
    start_epoch, start_step = 0, 0
    if saved:
        start_epoch, start_step = _load_checkpoint(run.model, run.optimizer, saved, run.shape, run.scaler)
        log.info("resumed from %s: continuing at epoch %d%s of %d", resume, start_epoch,
                 f" step {start_step}/{run.shape['steps_per_epoch']}" if start_step else "", epochs)
    if run.sampler.world > 1:
        run.net = paddle.DataParallel(run.model)
    if dist.is_main():
        _open_outputs(run, save_dir, start_epoch - 1 if resume else None, overwrite, visualdl,
                      saved.get("elapsed_seconds") if start_step else None)
    last_metrics = None

    def due(epoch):
        return valid_reader is not None and valid_interval > 0 and ((epoch + 1) % valid_interval == 0
                                                                    or epoch == epochs - 1)

    # A run killed between an epoch's checkpoint and its validation: validate that epoch now (rank 0
    # knows). A step checkpoint is written after the validation of the epoch before it.
    if resume and not start_step and due(start_epoch - 1) and \
            dist.gather(start_epoch - 1 not in (run.saver.recorded if run.saver else ()))[0]:
        log.info("epoch %d was not validated before the run stopped: validating it now", start_epoch - 1)
        last_metrics = validate_epoch(run, valid_reader, start_epoch - 1)
        if run.history:
            run.history.end_epoch(start_epoch - 1)
    log.info("training %s on %d sample(s), %d process(es), batch %d per process, %d step(s) per epoch, "
             "epochs %d..%d", model_name, len(run.reader), run.sampler.world, run.sampler.batch_size,
             run.shape["steps_per_epoch"], start_epoch, epochs - 1)
    for epoch in range(start_epoch, epochs):
        state = begin_epoch(run, epoch, saved if epoch == start_epoch and start_step else None, resume)
        train_one_epoch(run, state)
        end_epoch(run, state)
        if due(epoch):
            last_metrics = validate_epoch(run, valid_reader, epoch)
        if run.history:
            run.history.end_epoch(epoch)
        dist.barrier()
    if dist.is_main():
        run.saver.save_final()
        run.history.close()
    return last_metrics


def _build_run(model_name, cfg, pretrain, resume, fix_random_seed):
    """The model, optimizer, readers and sampler of a run, with every check that may refuse it (nothing
    written yet). Returns ``(Run, the resumed checkpoint's .pdopt or None, validation reader or None)``."""
    world, rank = dist.world_size(), dist.rank()
    train_cfg = cfg["TRAIN"]
    total_batch = int(train_cfg["batch_size"])
    if int(train_cfg.get("num_gpus") or world) != world:
        log.warning("TRAIN.num_gpus=%s but %d process(es) are running: using %d, with TRAIN.batch_size=%d "
                    "in total", train_cfg["num_gpus"], world, world, total_batch)
    if total_batch % world:
        log.warning("TRAIN.batch_size=%d is not divisible by %d processes: each takes %d", total_batch,
                    world, total_batch // world)
    spec = MODELS[model_name]
    reader = spec.reader(train_cfg["filelist"], "train", cfg)
    if len(reader) < total_batch:
        raise UserError(f"{train_cfg['filelist']} has {len(reader)} samples, fewer than "
                        f"TRAIN.batch_size={total_batch}: pass --batch_size={len(reader)} or less (README, Small data)")
    valid_reader = _valid_reader(model_name, cfg)
    saved = _read_checkpoint(resume) if resume else None
    seed = _run_seed(train_cfg, fix_random_seed, saved)
    sampler = EpochSampler(len(reader), max(1, total_batch // world), world, rank, seed)
    shape = {"steps_per_epoch": len(sampler), "num_samples": len(reader), "total_batch": total_batch}
    paddle.seed(seed)  # the same initial weights on every rank
    model = build_model(model_name, cfg)
    distiller = extend.setup(model, cfg, model_name, pretrain)  # None unless TRAIN.extend_from
    if pretrain:
        weights.load_pretrain(model, pretrain)
    optimizer, schedule = spec.optimizer(model.parameters(), train_cfg, len(sampler), len(reader))
    precision = amp.for_training(bool(train_cfg.get("amp")))
    run = Run(model_name, cfg, spec, model, model, optimizer, schedule, precision, amp.loss_scaler(precision),
              reader, sampler, seed, shape, distiller=distiller)
    return run, saved, valid_reader


def _open_outputs(run, save_dir, resumed_epoch, overwrite, visualdl, elapsed_before):
    """Rank 0, once nothing can refuse the run: --overwrite's removal, save_dir, the validation records
    kept up to ``resumed_epoch`` (None: a fresh run), the checkpoint saver and metrics.csv."""
    if overwrite and resumed_epoch is None:
        _clear_run_files(run.model_name, save_dir)
    os.makedirs(save_dir, exist_ok=True)
    best, recorded = _restart_history(save_dir, run.spec.metrics(run.cfg).main, resumed_epoch)
    run.saver = CheckpointSaver(run, save_dir, best, recorded)
    run.history = curves.History(save_dir, list(run.spec.metrics(run.cfg).compute()), resumed_epoch,
                                 title=f"{run.model_name}: {os.path.abspath(save_dir)}", visualdl=visualdl,
                                 elapsed_before=elapsed_before)


def begin_epoch(run, epoch, carried=None, resume=None):
    """Seed (or, resumed mid-epoch from ``carried``, restore) the random states of ``epoch`` and return
    its ``RunState``, with the sums of the interrupted epoch when resumed."""
    world, rank = run.sampler.world, run.sampler.rank
    if carried and len(carried["rng"]) == world:
        set_rng_state(carried["rng"][rank])
    else:
        if carried:
            log.warning("%s was saved by %d process(es), %d are running: the batches continue as "
                        "saved, but dropout draws anew (not the weights of an unbroken run)",
                        resume, len(carried["rng"]), world)
        seed_epoch(run.seed, epoch, rank, (carried or {}).get("step") or None)
    run.net.train()
    state = RunState(epoch, int(carried["step"]) if carried else 0, run.schedule.get_lr(),
                     paddle.zeros([], "float64"))
    if carried:
        state.first_lr, state.started = carried["first_lr"], state.started - carried["train_seconds"]
        sums = carried["loss_sums"]
        state.loss_sum += sums[rank] if len(sums) == world else (sum(sums) if rank == 0 else 0.0)
        state.replaced = sum(carried.get("replaced") or [0]) if rank == 0 else 0
    return state


def train_one_epoch(run, state):
    """Train the steps of ``state.epoch`` from ``state.step`` on; step checkpoints by the way (rank 0)."""
    train_cfg, steps_per_epoch = run.cfg["TRAIN"], run.shape["steps_per_epoch"]
    log_interval = max(1, int(train_cfg["log_interval"]))
    save_interval = int(train_cfg.get("save_interval_steps") or 0)

    def replace(entry, reason):
        state.replaced += 1
        log.warning("skipping %s (list line %d): %s; another sample takes its place", entry.path, entry.line,
                    reason)
        _check_replaced(run, state, state.replaced)  # more than all processes together may replace

    with tqdm(total=steps_per_epoch, initial=state.step, desc=f"epoch {state.epoch}", disable=not dist.is_main(),
              dynamic_ncols=True) as progress:
        batches = iterate_batches(run.reader, run.sampler.batches(state.epoch, state.step),
                                  int(train_cfg["num_workers"]), on_error=replace, refill=True)
        for step, batch in enumerate(batches, state.step):
            state.ran += 1
            check_finite_inputs(batch, run.reader, state.epoch, step)
            inputs = to_tensors(batch)
            with amp.autocast(run.precision):
                logits = run.net(*inputs)
            logits = logits.astype("float32") if logits.dtype in amp.LOW_PRECISION else logits
            labels = paddle.to_tensor(batch["labels"])
            if run.distiller is None:
                loss, per_video = run.spec.loss(logits, labels, run.sampler.world)
            else:  # the old tags' targets from the frozen starting model, on this process's batch
                loss, per_video = run.distiller.loss(logits, labels, inputs, run.sampler.world)
            # Checked at each log line and before each checkpoint, not here: fetching it would wait
            # for the device every step. The weights may turn NaN in between; they are never saved.
            state.unchecked.append((step, loss.detach(), batch["index"]))
            state.loss_sum += per_video.detach().astype("float64").sum()  # a tensor: no device sync per step
            lr = run.schedule.get_lr()
            _update(run, loss)
            progress.update(1)
            if step % log_interval == 0:
                check_losses(run, state)
                if dist.is_main():
                    _log_step(run, state.epoch, step, lr, logits, per_video, batch["labels"])
            done = state.epoch * steps_per_epoch + step + 1
            if save_interval and done % save_interval == 0 and step + 1 < steps_per_epoch:
                _save_step(run, state, step, done)


def _update(run, loss):
    """One optimizer step (and the lr schedule's) from ``loss``."""
    if run.scaler:
        # float16: a step whose gradients overflow is skipped and the scale lowered.
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    run.optimizer.clear_grad()
    run.schedule.step()


def _log_step(run, epoch, step, lr, logits, per_video, labels):
    figures = run.spec.metrics(run.cfg)
    figures.update(run.spec.probabilities(logits).numpy(), labels)
    text = " ".join(f"{k}={v:.5f}" for k, v in figures.compute().items() if isinstance(v, float))
    log.info("epoch %d step %d/%d lr=%.3g loss=%.5f %s", epoch, step, run.shape["steps_per_epoch"], lr,
             float(per_video.mean()), text)


def _save_step(run, state, step, done):
    """Step checkpoint ``done`` (rank 0) after ``step`` of the epoch, with every process's random state,
    loss sum and count of replaced samples: a resume continues them."""
    pause = time.time()
    check_losses(run, state)
    ranks = dist.gather({"rng": rng_state(), "loss_sum": float(state.loss_sum), "replaced": state.replaced})
    _check_replaced(run, state, sum(r["replaced"] for r in ranks))
    if dist.is_main():
        run.saver.save_step(done, {
            "epoch": state.epoch, "step": step + 1, "rng": [r["rng"] for r in ranks],
            "loss_sums": [r["loss_sum"] for r in ranks], "replaced": [r["replaced"] for r in ranks],
            "train_seconds": pause - state.started - state.paused, "first_lr": float(state.first_lr),
            "elapsed_seconds": run.history.elapsed()})
    state.paused += time.time() - pause


def end_epoch(run, state):
    """Check the epoch's losses and data, then (rank 0) its row of metrics.csv and its checkpoint."""
    train_seconds = time.time() - state.started - state.paused
    check_losses(run, state)
    # Every process trains steps_per_epoch full batches (an unreadable sample is replaced, not dropped)
    # unless it runs out of readable samples: then the epoch ends short, and so does the run.
    ranks = dist.gather({"loss_sum": float(state.loss_sum), "steps": state.ran, "replaced": state.replaced})
    train_cfg, samples = run.cfg["TRAIN"], run.epoch_samples
    check_epoch_data(state.epoch, min(r["steps"] for r in ranks), run.shape["steps_per_epoch"] - state.step,
                     sum(r["replaced"] for r in ranks), samples, float(train_cfg.get("max_bad_fraction", 0.1)),
                     train_cfg["filelist"])
    if dist.is_main():
        # The row goes in before the checkpoint: a run killed in between resumes from the epoch
        # before, and drops the row.
        run.history.add(state.epoch, train_loss=sum(r["loss_sum"] for r in ranks) / samples,
                        learning_rate=float(state.first_lr), samples_per_s=samples / train_seconds,
                        train_seconds=train_seconds)
        run.saver.save_epoch(state.epoch)


def validate_epoch(run, valid_reader, epoch):
    """Validate after ``epoch`` (every process), then on rank 0 log, keep the best weights, and record the
    figures (valid_metrics.jsonl, metrics.csv). Returns the metrics."""
    metrics = validate(run.model_name, run.model, valid_reader, run.cfg)
    if dist.is_main():
        log.info("validation after epoch %d: %s", epoch,
                 " ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
        run.saver.save_best(metrics[run.spec.metrics(run.cfg).main])
        _append_jsonl(os.path.join(run.saver.save_dir, "valid_metrics.jsonl"), {"epoch": epoch, **metrics})
        run.history.add(epoch, **{f"valid_{k}": v for k, v in metrics.items()})
    return metrics


class CheckpointSaver:
    """Rank 0's checkpoints in ``save_dir`` (see the module docstring): the epoch and step checkpoints,
    pruned to the last ``TRAIN.keep_checkpoints``, the best weights by the model's main validation figure
    (``best``: the best so far, ``recorded``: the epochs validated so far), the final weights."""

    def __init__(self, run, save_dir, best=None, recorded=()):
        self.run, self.save_dir, self.best, self.recorded = run, save_dir, best, set(recorded)
        self.keep = int(run.cfg["TRAIN"].get("keep_checkpoints") or 0)

    def _prefix(self, tag):
        return os.path.join(self.save_dir, f"{self.run.model_name}_{tag}")

    def _record(self, extra):
        return {**extra, "seed": self.run.seed, **self.run.shape, **_scaler_state(self.run.scaler)}

    def save_step(self, done, extra):
        prefix = self._prefix(f"step{done}")
        _save_checkpoint(self.run.model, self.run.optimizer, prefix, self._record(extra))
        log.info("saved %s.pdparams", prefix)
        if self.keep:
            _prune_steps(self.save_dir, self.run.model_name, done, self.keep)

    def save_epoch(self, epoch):
        prefix = self._prefix(f"epoch{epoch}")
        _save_checkpoint(self.run.model, self.run.optimizer, prefix, self._record({"epoch": epoch}))
        log.info("saved %s.pdparams", prefix)
        if self.keep:
            _prune_checkpoints(self.save_dir, self.run.model_name, epoch, self.keep)
            _prune_steps(self.save_dir, self.run.model_name, (epoch + 1) * self.run.shape["steps_per_epoch"],
                         0)  # superseded

    def save_best(self, score):
        if self.best is None or score > self.best:
            self.best = score
            weights.write_state(weights.model_state(self.run.model), self._prefix("best") + weights.SUFFIX)
            log.info("new best %s=%.5f: saved %s_best.pdparams", self.run.spec.metrics(self.run.cfg).main, score,
                     self.run.model_name)

    def save_final(self):
        final = os.path.join(self.save_dir, f"{self.run.model_name}{weights.SUFFIX}")
        weights.write_state(weights.model_state(self.run.model), final)
        log.info("saved final weights %s", final)


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


def _check_replaced(run, state, replaced):
    """Stop as soon as ``replaced`` unreadable samples exceed what the whole epoch may replace."""
    max_bad = float(run.cfg["TRAIN"].get("max_bad_fraction", 0.1))
    if replaced > max_bad * run.epoch_samples:
        raise RunError(_too_many_bad(state.epoch, replaced, run.epoch_samples, max_bad, run.cfg["TRAIN"]["filelist"]))


def _too_many_bad(epoch, replaced, samples, max_bad, filelist):
    return (f"training stopped: epoch {epoch} met {replaced} unreadable sample(s) of its {samples}, more than "
            f"TRAIN.max_bad_fraction={max_bad:g} allows (each is named in a 'skipping' warning of the log): fix "
            f"or remove them from {filelist}, or raise TRAIN.max_bad_fraction")


def check_losses(run, state):
    """Raise ``RunError`` at the first NaN or Inf among the losses of ``state.unchecked`` (``(step, loss [],
    batch indices)``, emptied), naming its step and the files of its batch: one device sync for them all."""
    if not state.unchecked:
        return
    values = paddle.stack([loss for _, loss, _ in state.unchecked]).numpy()
    steps = [(step, indices) for step, _, indices in state.unchecked]
    state.unchecked.clear()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step, indices = steps[bad[0]]
        hint = "train without --amp?" if run.precision.dtype == "float16" else "lower TRAIN.learning_rate?"
        raise RunError(f"training stopped: the loss is {values[bad[0]]} at epoch {state.epoch} step {step} "
                       f"({hint}); the batch: {_files(run.reader, indices)}")


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
