r"""Extract TSN features ([INFER.seg_num, 2048] per video; float32, float16 or uint8) for every video of a list.

    python tsn_extractor.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn.pdparams \
        --filelist=./data/TsnExtractor.list --save_dir=./data/tsn_features
"""
from video_tag import cli


def main():
    # Imported here: the decode worker processes import the entry script and need no Paddle.
    from video_tag.extractor import extract
    from video_tag.inference import PRECISIONS

    p = cli.parser(__doc__)
    p.add_argument("--weights", required=True, help="TSN weights (.pdparams suffix optional)")
    p.add_argument("--save_dir", default="./data/tsn_features", help="where the features go")
    p.add_argument("--overwrite", action="store_true", help="extract again videos whose features exist")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16: CPUs with native bf16 or GPUs; fp16: GPUs (features differ slightly from fp32)")
    p.add_argument("--feature_dtype", help=cli.FEATURE_DTYPE_HELP)
    p.add_argument("--shard_size", type=int, metavar="N", help=cli.SHARD_SIZE_HELP)
    p.add_argument("--frame_batch", type=int, default=8, help="frames per network batch")
    p.add_argument("--num_workers", type=int, help="videos decoded in parallel (default: INFER.num_workers)")
    p.add_argument("--train_list", metavar="OUT",
                   help="the list is labelled ('video label [label ...]' per line): write the AttentionLSTM "
                        "training list of the features, same labels, failed videos left out, to OUT")
    args = p.parse_args()
    if args.model_name != "TSN":
        raise cli.UserError(f"tsn_extractor.py runs the TSN model, not {args.model_name}: use --model_name=TSN")
    cfg = cli.load(args, "INFER")
    cli.set_feature_dtype(cfg, args.feature_dtype)
    cli.set_shard_size(cfg, args.shard_size)
    return extract(cfg, args.weights, cfg["INFER"]["filelist"], args.save_dir, overwrite=args.overwrite,
                   use_gpu=args.use_gpu, precision=args.precision, batch_size=args.frame_batch,
                   num_workers=args.num_workers or int(cfg["INFER"]["num_workers"]),
                   train_list=args.train_list)


def run():
    """``videotag-extract``: as ``python tsn_extractor.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
