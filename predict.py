r"""Predict the top-K tags of every video of a list; print them and save predictions.jsonl.

    python predict.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./weights/attention_lstm --label_file=./label_3396.txt

Its main is video_tag.commands.predict.main, also the console script videotag-predict.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.predict import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
