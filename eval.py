r"""Evaluate weights over every video of a list and write metrics.json (and per_class.csv).

    python eval.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./data/checkpoints/AttentionLSTM_epoch9.pdparams --per_class
"""
import logging
import os

from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.evaluate import evaluate  # noqa: E402

DEFAULT_LABEL_FILE = "./label_3396.txt"
SAVE_DIRS = {"AttentionLSTM": "./data/evaluate_results/attention_lstm", "TSN": "./data/evaluate_results/tsn"}


def main():
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
                                        f"exists; without one the names are left empty)")
    p.add_argument("--engine", choices=["dygraph", "inference"], default="dygraph",
                   help="run the AttentionLSTM in dygraph, or exported, in Paddle Inference (see bench/README.md)")
    args = p.parse_args()
    cfg = cli.load(args, "TEST")
    label_file = args.label_file
    if args.per_class and label_file is None:
        if os.path.isfile(cli.release_file(DEFAULT_LABEL_FILE)):
            label_file = cli.release_file(DEFAULT_LABEL_FILE)
        else:
            logging.getLogger(__name__).info("no %s: per_class.csv names no classes (pass --label_file)",
                                             DEFAULT_LABEL_FILE)
    return evaluate(args.model_name, cfg, args.weights, cfg["TEST"]["filelist"],
                    args.save_dir or SAVE_DIRS[args.model_name], args.use_gpu,
                    per_class=args.per_class, label_file=label_file, engine=args.engine,
                    per_class_memory_mb=args.per_class_memory_mb)


if __name__ == "__main__":
    cli.main(main)
