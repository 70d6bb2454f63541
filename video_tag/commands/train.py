r"""Train a VideoTag model (AttentionLSTM on features; TSN on videos) on one device or many.

    python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml \
        --pretrain=./weights/attention_lstm --save_dir=./data/checkpoints
    python -m paddle.distributed.launch --nproc_per_node 8 train.py --model_name=AttentionLSTM ...

Your tags next to VideoTag's 3396 (the old tags kept by distillation; video_tag/extend.py):

    python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml \
        -o TRAIN.extend_from=./weights/attention_lstm -o TRAIN.extend_from_labels=./label_3396.txt \
        -o TRAIN.extend_to_labels=./my_labels.txt -o MODEL.num_classes=3401
"""
from video_tag import cli


def main():
    from video_tag import distributed, trainer

    p = cli.parser(__doc__)
    p.add_argument("--pretrain", help="weights to start from (.pdparams suffix optional); "
                                      "parameters of another shape, e.g. the classifier, are skipped (to add tags to a model "
                                      "instead: TRAIN.extend_from)")
    p.add_argument("--save_dir", default="./data/checkpoints", help="where checkpoints go")
    p.add_argument("--epoch", type=int, help="total number of epochs (default: TRAIN.epoch)")
    p.add_argument("--learning_rate", type=float, help="initial learning rate (default: TRAIN.learning_rate)")
    p.add_argument("--resume", help="continue from a saved <Model>_epoch{k} or <Model>_step{n} checkpoint "
                                    "(.pdparams, suffix optional), from the batch after it")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a save_dir that holds another run's checkpoints (they are removed)")
    p.add_argument("--valid_interval", type=int, default=1, help="validate every N epochs (0: never)")
    p.add_argument("--fix_random_seed", type=cli.str2bool, default=False,
                   help="seed 0 instead of one drawn at random (TRAIN.seed, when set, wins)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (TRAIN.amp): bfloat16 or float16 autocast on GPUs that have it; "
                        "float32 elsewhere, with a warning")
    p.add_argument("--visualdl", action="store_true",
                   help="also log the per-epoch figures to VisualDL, in <save_dir>/visualdl (needs visualdl)")
    args = p.parse_args()
    cfg = cli.load(args, "TRAIN")
    if args.epoch is not None:
        cfg["TRAIN"]["epoch"] = args.epoch
    if args.learning_rate is not None:
        cfg["TRAIN"]["learning_rate"] = args.learning_rate
    if args.amp:
        cfg["TRAIN"]["amp"] = True
    run_args = (args.model_name, cfg, args.save_dir, None, args.pretrain, args.resume,
                args.valid_interval, args.fix_random_seed, args.use_gpu, args.overwrite, args.visualdl)
    if distributed.will_spawn(args.use_gpu):
        trainer.check_inputs(args.model_name, cfg, args.save_dir, args.pretrain, args.resume, args.overwrite)
    distributed.run(trainer.train_worker, run_args, args.use_gpu)
    return 0


def run():
    """``videotag-train``: as ``python train.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
