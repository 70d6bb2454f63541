r"""Evaluate weights over every video of a list and write metrics.json.

    python eval.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./data/checkpoints/AttentionLSTM_epoch9.pdparams
"""
from video_tag import cli
from video_tag.evaluate import evaluate

SAVE_DIRS = {"AttentionLSTM": "./data/evaluate_results/attention_lstm", "TSN": "./data/evaluate_results/tsn"}


def main():
    p = cli.parser(__doc__)
    p.add_argument("--weights", required=True, help="weights to evaluate (.pdparams suffix optional)")
    p.add_argument("--save_dir", help="where metrics.json goes (default: ./data/evaluate_results/<model>)")
    args = p.parse_args()
    cfg = cli.load(args, "TEST")
    return evaluate(args.model_name, cfg, args.weights, cfg["TEST"]["filelist"],
                    args.save_dir or SAVE_DIRS[args.model_name], args.use_gpu)


if __name__ == "__main__":
    cli.main(main)
