r"""Predict the top-K tags of every video of a list; print them and save predictions.jsonl.

    python predict.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./weights/attention_lstm --label_file=./label_3396.txt
"""
from video_tag import cli

SAVE_DIRS = {"AttentionLSTM": "./data/predict_results/attention_lstm", "TSN": "./data/predict_results/tsn"}


def main():
    from video_tag.predict import predict

    p = cli.parser(__doc__)
    p.add_argument("--weights", required=True, help="weights to predict with (.pdparams suffix optional)")
    p.add_argument("--label_file", default="./label_3396.txt", help="class names, one per line")
    p.add_argument("--save_dir", help="where predictions.jsonl goes (default: ./data/predict_results/<model>)")
    p.add_argument("--topk", "--infer_topk", dest="topk", type=int, help="tags per video (default: MODEL.topk)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over instead of continuing after the videos a killed run predicted")
    p.add_argument("--engine", choices=["dygraph", "inference"], default="dygraph",
                   help="run the AttentionLSTM in dygraph, or exported, in Paddle Inference (see bench/README.md)")
    p.add_argument("--thresholds", metavar="CSV",
                   help="thresholds.csv of eval.py --calibrate: keep a tag only at or above its own threshold "
                        "(after --topk)")
    args = p.parse_args()
    cfg = cli.load(args, "INFER")
    return predict(args.model_name, cfg, args.weights, cfg["INFER"]["filelist"], args.label_file,
                   args.save_dir or SAVE_DIRS[args.model_name], args.topk, args.use_gpu,
                   overwrite=args.overwrite, engine=args.engine, thresholds=args.thresholds)


def run():
    """``videotag-predict``: as ``python predict.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
