r"""Train a VideoTag model (AttentionLSTM on features; TSN on videos) on one device or many.

    python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml \
        --pretrain=./weights/attention_lstm --save_dir=./data/checkpoints
    python -m paddle.distributed.launch --nproc_per_node 8 train.py --model_name=AttentionLSTM ...

Your tags next to VideoTag's 3396 (the old tags kept by distillation; video_tag/extend.py):

    python train.py --model_name=AttentionLSTM --config=./configs/attention_lstm-single.yaml \
        -o TRAIN.extend_from=./weights/attention_lstm -o TRAIN.extend_from_labels=./label_3396.txt \
        -o TRAIN.extend_to_labels=./my_labels.txt -o MODEL.num_classes=3401

Its main is video_tag.commands.train.main, also the console script videotag-train.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.train import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
