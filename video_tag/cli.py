"""What the entry scripts share: flags in the original scripts' forms, config loading, exit codes."""
import argparse
import logging
import os
import signal
import sys
import traceback

from tqdm import tqdm

from . import quiet
from .config import load_config, warn_ignored
from .errors import RunError, UserError

DEFAULT_CONFIGS = {"AttentionLSTM": "configs/attention_lstm.yaml", "TSN": "configs/tsn.yaml"}


def setup_process():
    """What every entry script calls first, before anything imports Paddle or OpenCV (which read these
    settings when they load): third-party chatter kept off the console (``quiet.setup``) and the CPU
    environment (``mkl_fast_path_on_amd``). Child processes inherit both. Library modules set nothing
    at import."""
    mkl_fast_path_on_amd()  # first: quiet.setup may import Paddle (to drop its OMP_NUM_THREADS advice)
    quiet.setup()


def mkl_fast_path_on_amd(cpuinfo="/proc/cpuinfo"):
    """Paddle's bundled MKL picks a slow generic code path on AMD CPUs; MKL_DEBUG_CPU_TYPE=5 selects its
    AVX2 kernels (about 2x the dygraph matmul speed, same fp32 results: bench/README.md). It must be set
    before MKL loads, i.e. before ``import paddle``; a user's setting wins."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ:
        return
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        return
    if amd:
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"


def str2bool(text):
    """``--use_gpu=False`` / ``True`` / ``0`` / ``1`` / ``yes`` / ``no``."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (its example commands stay copyable) and shows each flag's
    default once: added only where the help text does not already say it and there is a value to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def add_verbose_flag(p):
    """``--verbose``; read from ``sys.argv`` by ``video_tag.quiet`` before parsing (it must act before
    Paddle is imported), declared here so that argparse accepts it and ``--help`` shows it."""
    p.add_argument("--verbose", action="store_true",
                   help="also show Paddle's, oneDNN's and FFmpeg's own messages, and debug logs")


def add_model_flags(p, precisions=None):
    """The flags of the two models that ``videotag.py`` and ``serve.py`` share: weights, label file, configs
    and their overrides, precision, frame batch, device. ``precisions``: the choices of ``--precision``
    (None: the caller checks it, e.g. before Paddle may be imported)."""
    p.add_argument("--tsn_weights", default="./weights/tsn.pdparams", help="weights of this stage")
    p.add_argument("--lstm_weights", default="./weights/attention_lstm.pdparams", help="weights of this stage")
    p.add_argument("--label_file", default="./label_3396.txt", help="class names, one per line")
    p.add_argument("--config", default="configs/attention_lstm.yaml", help="AttentionLSTM config")
    p.add_argument("--tsn_config", default="configs/tsn.yaml", help="TSN config")
    p.add_argument("-o", "--override", action="append", default=[], metavar="SECTION.key=value",
                   help="override a value of the AttentionLSTM config (repeatable)")
    p.add_argument("-t", "--tsn_override", action="append", default=[], metavar="SECTION.key=value",
                   help="override a value of the TSN config, e.g. -t INFER.seg_num=100 (repeatable)")
    p.add_argument("--precision", choices=precisions, default="fp32", help="TSN precision: fp32, bf16 or fp16 (GPU)")
    p.add_argument("--frame_batch", type=int, default=8, help="frames per TSN batch")
    p.add_argument("--use_gpu", type=str2bool, default=True, help="run on GPU if Paddle has CUDA")


RELEASE = ("get the VideoTag release with ./run fetch (or python tools/fetch_release.py): it puts "
           "tsn.pdparams and attention_lstm.pdparams in ./weights and label_3396.txt in the project root; "
           "or pass --tsn_weights / --lstm_weights / --label_file")


def load_model_flags(args):
    """What ``add_model_flags`` names, checked and read: ``(AttentionLSTM config, TSN config)`` with their
    overrides; a missing weight file or a bad config is a UserError naming it (before Paddle is needed)."""
    from .models import model_arguments
    from . import weights
    for path in (args.tsn_weights, args.lstm_weights):
        try:
            weights.resolve(path)
        except UserError:
            raise UserError(f"weight file not found: {path} ({RELEASE})") from None
    lstm_cfg = load_config(args.config, args.override)
    model_arguments("AttentionLSTM", lstm_cfg["MODEL"], f"config {args.config}")
    return lstm_cfg, load_config(args.tsn_config, args.tsn_override)


def parser(description, run_flags=True):
    """An ArgumentParser with the flags every script has.

    run_flags: also the flags of scripts that run a model over a list (``--use_gpu``, ``--batch_size``,
    ``--filelist``, ``--log_interval``); ``export_model.py`` has none of them.
    """
    from .models import MODELS  # here, not above: decode workers import the entry script without Paddle
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--model_name", required=True, choices=sorted(MODELS), help="model to run")
    p.add_argument("--config", help="YAML config (default: configs/<model>.yaml)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="SECTION.key=value",
                   help="override a config value, e.g. -o MODEL.num_classes=12 (repeatable)")
    if run_flags:
        p.add_argument("--use_gpu", type=str2bool, default=True,
                       help="run on GPU (falls back to CPU, with a warning, on a CPU build of Paddle)")
        p.add_argument("--batch_size", type=int, help="batch size (training: total over all devices)")
        p.add_argument("--filelist", help="list file (default: the config's filelist of this stage)")
        p.add_argument("--log_interval", type=int, help="log every N batches")
    add_verbose_flag(p)
    return p


# Flags that take a count, in whichever script defines them: the least value that makes sense.
FLAG_MINIMUM = {"batch_size": 1, "topk": 1, "epoch": 1, "frame_batch": 1, "num_workers": 0,
                "log_interval": 1, "valid_interval": 0, "per_class_memory_mb": 0}


def check_flags(args):
    """Refuse ``--batch_size 0``, ``--topk -1``, ``--learning_rate nan`` and the like in one line."""
    for name, least in FLAG_MINIMUM.items():
        value = getattr(args, name, None)
        if value is not None and not least <= value < float("inf"):  # also NaN, for the float flags
            raise UserError(f"--{name} must be at least {least}, got {value}")
    rate = getattr(args, "learning_rate", None)
    if rate is not None and not 0 < rate < float("inf"):
        raise UserError(f"--learning_rate must be a number > 0, got {rate}")


FEATURE_DTYPE_HELP = ("how the features are stored: float32 (the release format, .npy), float16 (.npy, half "
                      "the bytes) or uint8 (.npz with q, scale, offset: a quarter; features = q * scale + "
                      "offset) (default: INFER.feature_dtype of the TSN config, float32)")


def set_feature_dtype(cfg, dtype):
    """``--feature_dtype``: set ``INFER.feature_dtype`` of the TSN config ``cfg`` (None: keep the config's)."""
    from .feature_files import DTYPES
    if dtype is None:
        return
    if dtype not in DTYPES:
        raise UserError(f"--feature_dtype must be {', '.join(DTYPES[:-1])} or {DTYPES[-1]}, got {dtype!r}")
    cfg["INFER"]["feature_dtype"] = dtype


SHARD_SIZE_HELP = ("store the features as uncompressed tar shards of N videos each, with an index, instead of "
                   "one file per video; lists then name members, e.g. DIR/shard-000000.tar/clip_1f3a9c2e.npy "
                   "(default: INFER.shard_size of the TSN config, 0: one file per video)")


def set_shard_size(cfg, size):
    """``--shard_size``: set ``INFER.shard_size`` of the TSN config ``cfg`` (None: keep the config's)."""
    if size is None:
        return
    if size < 0:
        raise UserError(f"--shard_size must be 0 (one file per video) or a number of videos per shard, got {size}")
    cfg["INFER"]["shard_size"] = size


def release_file(path):
    """``path``, or the release file it names where ``video_tag.release`` finds it (``--label_file``'s
    default ``./label_3396.txt`` outside the project root); None stays None."""
    from .release import find
    return path if path is None else find(path)


def load(args, section):
    """The config of ``args.config`` with ``-o`` overrides, then the explicit flags of ``section``.
    Also points ``args.label_file`` (where the script has it) at the release file it names
    (``release_file``).

    section None: the config and overrides alone (a script that reads no list, e.g. ``export_model.py``).
    """
    from .models import model_arguments
    check_flags(args)
    if getattr(args, "label_file", None) is not None:
        args.label_file = release_file(args.label_file)
    path = args.config or DEFAULT_CONFIGS[args.model_name]
    cfg = load_config(path, args.override)
    model_arguments(args.model_name, cfg["MODEL"], f"config {path}")
    warn_ignored(cfg, path)
    if section is None:
        return cfg
    if args.batch_size is not None:
        cfg[section]["batch_size"] = args.batch_size
    if args.filelist is not None:
        cfg[section]["filelist"] = args.filelist
    if args.log_interval is not None:
        cfg["TRAIN"]["log_interval"] = args.log_interval
    if not cfg[section].get("filelist"):
        raise UserError(f"no list file: set {section}.filelist in {path} or pass --filelist")
    return cfg


class _ProgressAwareHandler(logging.StreamHandler):
    """Writes each record on a line of its own above any progress bar (``tqdm.write``)."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # as logging.StreamHandler does
            self.handleError(record)


def _ours_or_serious(record):
    """INFO and DEBUG records of this project; warnings and errors of every library (Paddle logs INFO
    notes through the root logger, e.g. on the optimizer's weight decay)."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] in ("video_tag", "__main__")


def setup_logging():
    """One log format for every script and process, ``HH:MM:SS LEVEL message`` on stderr, replacing the
    handler ``import paddle`` puts on the root logger. ``--verbose``: debug records of this project and
    other libraries' INFO records too."""
    handler = _ProgressAwareHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    if not quiet.VERBOSE:
        handler.addFilter(_ours_or_serious)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("video_tag").setLevel(logging.DEBUG if quiet.VERBOSE else logging.NOTSET)


# Exit codes of every entry script (README, "Exit codes"); 1 is Python's own code for an uncaught
# exception, which is why an unexpected one is turned into INTERNAL_ERROR instead.
DONE, SOME_INPUTS_FAILED, REFUSED, RUN_ERROR, INTERNAL_ERROR, INTERRUPTED = 0, 1, 2, 3, 4, 130


def main(function):
    """Run ``function()`` (returning an exit code) with logging set up and errors reported in one line.

    Exit codes: 0 done; 1 done, but some inputs failed and were listed (``failed.list``); 2 refused
    before starting (bad flag, config, list, weights); 3 stopped by an error while running (disk full, a
    failed process); 4 internal error: an unexpected exception (a bug, an out-of-memory inside Paddle, a
    failed child process), its traceback on stderr, then one ``error:`` line asking to report it; 130
    interrupted. Outputs are complete files in every case. Under ``paddle.distributed.launch`` each
    rank's log ends with its own ``error:`` line; the launcher exits with the first non-zero code in
    rank order, which can be that of a rank it stopped after another one failed (241: SIGTERM).
    """
    setup_logging()
    os.environ.setdefault("FLAGS_call_stack_level", "0")
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    # Under paddle.distributed.launch each rank logs to its own file: say which rank failed.
    who = f"rank {os.environ.get('PADDLE_TRAINER_ID', '?')} of {world}: " if world > 1 else ""
    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    # Ctrl-C inside a Paddle operator written in Python (the LSTM's backward) comes back from Paddle's C++
    # as another exception: the flag tells it apart.
    signal.signal(signal.SIGINT, on_sigint)
    try:
        code = function()
    except UserError as e:
        print(f"error: {who}{e}", file=sys.stderr)
        code = REFUSED
    except RunError as e:
        print(f"error: {who}{e}", file=sys.stderr)
        code = RUN_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED
    except Exception as e:
        if interrupted:
            print("interrupted", file=sys.stderr)
            sys.exit(INTERRUPTED)
        # Not one of the errors above: a bug, or a failure this toolkit does not know. The traceback is
        # what a bug report needs; the last line says what it is, and the exit code is not 1 ("some
        # inputs failed"), which Python would give.
        traceback.print_exc()
        sys.stderr.flush()
        print(f"error: {who}internal error ({type(e).__name__}: {' '.join(str(e).split())}); please report it "
              f"with the traceback above (exit {INTERNAL_ERROR})", file=sys.stderr)
        code = INTERNAL_ERROR
    sys.exit(code or 0)
