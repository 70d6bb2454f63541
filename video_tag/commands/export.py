r"""Export a trained model for deployment: a Paddle Inference model and, with paddle2onnx, an ONNX model.

    python export_model.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./weights/attention_lstm --save_dir=./data/export
    python export_model.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn \
        --features --save_dir=./data/export          # the feature model the AttentionLSTM reads
"""
from video_tag import cli

ONNX = {"auto": None, "yes": True, "no": False}


def main():
    from video_tag.export import export_model

    p = cli.parser(__doc__, run_flags=False)
    p.add_argument("--weights", required=True, help="weights to export (.pdparams suffix optional)")
    p.add_argument("--save_dir", default="./data/export",
                   help="where <name>.json, <name>.pdiparams and <name>.onnx go (name: attention_lstm or tsn)")
    p.add_argument("--onnx", choices=sorted(ONNX), default="auto",
                   help="also write an ONNX model (auto: when paddle2onnx is installed)")
    p.add_argument("--features", action="store_true",
                   help="TSN: export the feature model tsn_features (frames -> per-frame features [B, S, 2048], "
                        "the extractor's, the AttentionLSTM's input) instead of the classifier")
    args = p.parse_args()
    cfg = cli.load(args, None)
    for path in export_model(args.model_name, cfg, args.weights, args.save_dir, onnx=ONNX[args.onnx],
                             features=args.features):
        print(path)
    return 0


def run():
    """``videotag-export``: as ``python export_model.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
