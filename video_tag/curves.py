"""Training you can see: one record per epoch in ``metrics.csv``, drawn into ``curves.png`` after each
epoch, and logged to VisualDL with ``train.py --visualdl``. Rank 0 alone writes them.

``<save_dir>/metrics.csv``, one row per epoch (UTF-8, comma-separated, a header line; empty = none)::

    epoch            0-based, as in <Model>_epoch{k}.pdparams
    train_loss       mean per-video training loss over the epoch, all processes (dropout on)
    learning_rate    the learning rate of the epoch's first step
    samples_per_s    training samples per second over the epoch's training steps, all processes
    train_seconds    wall time of the epoch's training steps
    elapsed_seconds  wall time from the start of the run to this row's last write (a resumed run adds
                     to the figure of the epoch it resumed from; the time it was stopped is not counted)
    valid_<figure>   the validation after the epoch: valid_hit_at_one, valid_perr, valid_gap,
                     valid_loss, valid_num_videos (TSN: valid_top1_acc, valid_top5_acc, valid_loss,
                     valid_num_videos); empty in epochs without validation

``curves.png``: loss (training and validation), the validation figures, the learning rate and the
speed, against the epoch. matplotlib is optional: without it, one line says so and no PNG is drawn.
VisualDL (optional too) gets the same figures as scalars ``train/...`` and ``valid/...`` by epoch in
``<save_dir>/visualdl`` (``visualdl --logdir <save_dir>/visualdl``).
"""
import csv
import importlib.util
import io
import logging
import numbers
import os
import time

from . import files

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ["epoch", "train_loss", "learning_rate", "samples_per_s", "train_seconds", "elapsed_seconds"]
CSV_NAME, PNG_NAME, VISUALDL_DIR = "metrics.csv", "curves.png", "visualdl"
_NOT_VALIDATION = ("valid_loss", "valid_num_videos")  # plotted elsewhere / not a fraction


class History:
    """The per-epoch records of a run: ``add()`` fields of an epoch (metrics.csv is rewritten whole,
    atomically), ``end_epoch()`` draws curves.png and logs to VisualDL.

    save_dir: the run's directory. valid_keys: the keys of the model's validation metrics, in order.
    resumed_epoch: for a resumed run, the epoch it resumed from (later rows are dropped: they are
    trained again); None for a fresh run (no rows kept). title: the figure's title.
    visualdl: log to VisualDL if it is installed (one warning line if not). elapsed_before: the run's
    elapsed seconds when it stopped (a run resumed mid-epoch); default: the last kept row's.
    """

    def __init__(self, save_dir, valid_keys, resumed_epoch=None, title="", visualdl=False, elapsed_before=None):
        self.path = os.path.join(save_dir, CSV_NAME)
        self.png = os.path.join(save_dir, PNG_NAME)
        self.title = title
        self.columns = TRAIN_COLUMNS + [f"valid_{k}" for k in valid_keys]
        self.rows = {}  # epoch -> {column: number or None}
        if resumed_epoch is not None:
            self.rows = {e: r for e, r in read_csv(self.path).items() if e <= resumed_epoch}
        elapsed = [r["elapsed_seconds"] for r in self.rows.values() if r.get("elapsed_seconds") is not None]
        self._elapsed_before = max(elapsed, default=0.0) if elapsed_before is None else float(elapsed_before)
        self._start = time.time()
        self._write()
        self.can_plot = importlib.util.find_spec("matplotlib") is not None
        if not self.can_plot:
            log.info("matplotlib is not installed: no %s (pip install matplotlib)", PNG_NAME)
        self._writer = None
        if visualdl:
            try:
                from visualdl import LogWriter
            except ImportError:
                log.warning("--visualdl: VisualDL is not installed (pip install visualdl): not logging to it")
            else:
                self._writer = LogWriter(logdir=os.path.join(save_dir, VISUALDL_DIR))

    def add(self, epoch, **fields):
        """Set ``fields`` (columns of metrics.csv) in the row of ``epoch`` and rewrite metrics.csv."""
        unknown = set(fields) - set(self.columns)
        if unknown:
            raise ValueError(f"not a column of {CSV_NAME}: {sorted(unknown)}")
        row = self.rows.setdefault(int(epoch), {})
        row.update(fields)
        row["elapsed_seconds"] = self.elapsed()
        self._write()

    def elapsed(self):
        """Wall time of the run so far, seconds (resumed runs: without the time it was stopped)."""
        return self._elapsed_before + time.time() - self._start

    def end_epoch(self, epoch):
        """Draw curves.png from every row, and log the row of ``epoch`` to VisualDL."""
        if self.can_plot:
            render(self.png, self.rows, self.title)
        if self._writer is not None:
            for column, value in self.rows.get(epoch, {}).items():
                if value is not None and column not in ("epoch", "elapsed_seconds"):
                    self._writer.add_scalar(tag=_visualdl_tag(column), step=int(epoch), value=float(value))
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()

    def _write(self):
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        out.writerow(self.columns)
        for epoch in sorted(self.rows):
            row = {**self.rows[epoch], "epoch": epoch}
            out.writerow([_text(row.get(c)) for c in self.columns])
        files.write_text(self.path, text.getvalue())


def read_csv(path):
    """``{epoch: {column: int, float or None}}`` from a metrics.csv; {} if there is none. Rows whose
    epoch does not parse (e.g. torn) are dropped."""
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, encoding="utf-8", newline="") as f:
        for record in csv.DictReader(f):
            values = {k: _number(v) for k, v in record.items() if k}
            epoch = values.get("epoch")
            if isinstance(epoch, int):
                rows[epoch] = values
    return rows


def _number(text):
    """An int, a float (NaN included: a diverged loss) or None for an empty or unreadable cell."""
    for kind in (int, float):
        try:
            return kind((text or "").strip())
        except ValueError:
            pass
    return None


def _text(value):
    """A cell of metrics.csv: every digit of a float, '' for None."""
    if value is None:
        return ""
    return str(int(value)) if isinstance(value, numbers.Integral) else repr(float(value))


def _visualdl_tag(column):
    """``valid_gap`` -> ``valid/gap``, ``train_loss`` -> ``train/loss``, ``learning_rate`` -> ``train/learning_rate``."""
    for prefix in ("valid", "train"):
        if column.startswith(prefix + "_"):
            return f"{prefix}/{column[len(prefix) + 1:]}"
    return f"train/{column}"


def figure(rows, title=""):
    """A matplotlib Figure of ``rows`` (``{epoch: {column: value}}``): four panels against the epoch,
    loss (train, valid), validation figures, learning rate (log scale), samples/s. Missing values are
    left out of each line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 7), dpi=100)
    FigureCanvasAgg(fig)
    panels = fig.subplots(2, 2)
    columns = sorted({c for r in rows.values() for c in r})
    validation = [c for c in columns if c.startswith("valid_") and c not in _NOT_VALIDATION]
    groups = [("loss", ["train_loss", "valid_loss"]), ("validation", validation),
              ("learning rate", ["learning_rate"]), ("samples/s (training)", ["samples_per_s"])]
    for ax, (name, group) in zip(panels.flat, groups):
        for column in group:
            points = [(e, rows[e][column]) for e in sorted(rows) if rows[e].get(column) is not None]
            if points:
                ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=column)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if any(line.get_ydata().min() > 0 for line in panels[1, 0].lines):
        panels[1, 0].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def render(path, rows, title=""):
    """Write ``figure(rows, title)`` to ``path`` as PNG, atomically."""
    fig = figure(rows, title)
    files.atomic_write(path, lambda f: fig.savefig(f, format="png"))
