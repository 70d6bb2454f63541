r"""Evaluate weights over every video of a list and write metrics.json (and per_class.csv, thresholds.csv).

    python eval.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./data/checkpoints/AttentionLSTM_epoch9.pdparams --per_class
    python eval.py --model_name=AttentionLSTM --weights=./weights/attention_lstm --calibrate \
        --filelist=./data/dataset/attention_lstm/val.list --target_precision=0.8
"""
import logging
import os

from video_tag import cli
from video_tag.errors import UserError

DEFAULT_LABEL_FILE = "./label_3396.txt"
SAVE_DIRS = {"AttentionLSTM": "./data/evaluate_results/attention_lstm", "TSN": "./data/evaluate_results/tsn"}


def main():
    from video_tag.evaluate import evaluate
    from video_tag.thresholds import MIN_POSITIVES, is_probability

    p = cli.parser(__doc__)
    p.add_argument("--weights", required=True, help="weights to evaluate (.pdparams suffix optional)")
    p.add_argument("--save_dir", help="where metrics.json goes (default: ./data/evaluate_results/<model>)")
    p.add_argument("--per_class", action="store_true",
                   help="also write per_class.csv: each class's average precision over all videos, worst first")
    p.add_argument("--per_class_memory_mb", type=float, default=512, metavar="MB",
                   help="per_class.csv holds each class's exact average precision (scikit-learn's) while every "
                        "score fits this much memory (4 bytes per class and video, plus 1 for its label); "
                        "beyond it, the AP from score bins (logit steps of 1/64), with a log line saying so")
    p.add_argument("--label_file", help=f"class names for per_class.csv (default: {DEFAULT_LABEL_FILE} if it "
                                        f"exists; without one the names are left empty) and thresholds.csv "
                                        f"(--calibrate: required, default {DEFAULT_LABEL_FILE})")
    p.add_argument("--engine", choices=["dygraph", "inference"], default="dygraph",
                   help="run the AttentionLSTM in dygraph, or exported, in Paddle Inference (see bench/README.md)")
    p.add_argument("--calibrate", action="store_true",
                   help="also write thresholds.csv: per class, the threshold with the best F1 on this list (or "
                        "the lowest reaching --target_precision), for predict.py / videotag.py --thresholds")
    p.add_argument("--target_precision", type=float, metavar="P",
                   help="with --calibrate: per class, the lowest threshold whose precision is at least P "
                        "instead of the best F1")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="with --calibrate: the threshold of the classes with too few positives (or that never "
                        "reach --target_precision), marked in thresholds.csv's source column")
    p.add_argument("--min_positives", type=int, default=MIN_POSITIVES,
                   help="with --calibrate: classes with fewer positives in the list get --threshold")
    args = p.parse_args()
    for name in ("threshold", "target_precision"):
        value = getattr(args, name)
        if value is not None and not is_probability(value):
            raise UserError(f"--{name} must be a number in [0, 1], got {value}")
    if args.min_positives < 1:
        raise UserError(f"--min_positives must be at least 1, got {args.min_positives}")
    if args.target_precision is not None and not args.calibrate:
        raise UserError("--target_precision needs --calibrate")
    cfg = cli.load(args, "TEST")
    label_file = args.label_file
    if args.calibrate and label_file is None:
        label_file = DEFAULT_LABEL_FILE  # thresholds.csv names its classes: predict.py checks them
    if args.per_class and label_file is None:
        if os.path.isfile(cli.release_file(DEFAULT_LABEL_FILE)):
            label_file = cli.release_file(DEFAULT_LABEL_FILE)
        else:
            logging.getLogger(__name__).info("no %s: per_class.csv names no classes (pass --label_file)",
                                             DEFAULT_LABEL_FILE)
    return evaluate(args.model_name, cfg, args.weights, cfg["TEST"]["filelist"],
                    args.save_dir or SAVE_DIRS[args.model_name], args.use_gpu,
                    per_class=args.per_class, label_file=label_file, engine=args.engine,
                    per_class_memory_mb=args.per_class_memory_mb,
                    calibrate=dict(target_precision=args.target_precision, min_positives=args.min_positives,
                                   default=args.threshold) if args.calibrate else None)


def run():
    """``videotag-eval``: as ``python eval.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
