"""What the entry scripts share: flags in the original scripts' forms, config loading, exit codes."""
import argparse
import logging
import os
import sys
import traceback

from .config import load_config
from .errors import RunError, UserError

DEFAULT_CONFIGS = {"AttentionLSTM": "configs/attention_lstm.yaml", "TSN": "configs/tsn.yaml"}


def str2bool(text):
    """``--use_gpu=False`` / ``True`` / ``0`` / ``1`` / ``yes`` / ``no``."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parser(description, run_flags=True):
    """An ArgumentParser with the flags every script has.

    run_flags: also the flags of scripts that run a model over a list (``--use_gpu``, ``--batch_size``,
    ``--filelist``, ``--log_interval``); ``export_model.py`` has none of them.
    """
    from .models import MODELS  # here, not above: decode workers import the entry script without Paddle
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_name", required=True, choices=sorted(MODELS), help="model to run")
    p.add_argument("--config", help="YAML config (default: configs/<model>.yaml)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="SECTION.key=value",
                   help="override a config value, e.g. -o MODEL.num_classes=12 (repeatable)")
    if not run_flags:
        return p
    p.add_argument("--use_gpu", type=str2bool, default=True,
                   help="run on GPU (falls back to CPU, with a warning, on a CPU build of Paddle)")
    p.add_argument("--batch_size", type=int, help="batch size (training: total over all devices)")
    p.add_argument("--filelist", help="list file (default: the config's filelist of this stage)")
    p.add_argument("--log_interval", type=int, help="log every N batches")
    return p


def load(args, section):
    """The config of ``args.config`` with ``-o`` overrides, then the explicit flags of ``section``.

    section None: the config and overrides alone (a script that reads no list, e.g. ``export_model.py``).
    """
    path = args.config or DEFAULT_CONFIGS[args.model_name]
    cfg = load_config(path, args.override)
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


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")


def main(function):
    """Run ``function()`` (returning an exit code) with logging set up and errors reported in one line.

    Exit codes: 0 done; 1 done, but some inputs failed and were listed (``failed.list``); 2 refused
    before starting (bad flag, config, list, weights); 3 stopped by an error while running (disk full, a
    failed process); 130 interrupted. Outputs are complete files in every case.
    """
    setup_logging()
    os.environ.setdefault("FLAGS_call_stack_level", "0")
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    # Under paddle.distributed.launch each rank logs to its own file: say which rank failed.
    who = f"rank {os.environ.get('PADDLE_TRAINER_ID', '?')} of {world}: " if world > 1 else ""
    try:
        code = function()
    except UserError as e:
        print(f"error: {who}{e}", file=sys.stderr)
        code = 2
    except RunError as e:
        print(f"error: {who}{e}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as e:
        if world == 1:
            raise
        # The launcher ends the other ranks when this one exits non-zero; leave one line at the end of
        # this rank's log, after the traceback.
        traceback.print_exc()
        print(f"error: {who}failed with {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        code = 3
    sys.exit(code or 0)
