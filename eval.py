r"""Evaluate weights over every video of a list and write metrics.json (and per_class.csv, thresholds.csv).

    python eval.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./data/checkpoints/AttentionLSTM_epoch9.pdparams --per_class
    python eval.py --model_name=AttentionLSTM --weights=./weights/attention_lstm --calibrate \
        --filelist=./data/dataset/attention_lstm/val.list --target_precision=0.8

Its main is video_tag.commands.evaluate.main, also the console script videotag-eval.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.evaluate import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
