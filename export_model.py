r"""Export a trained model for deployment: a Paddle Inference model and, with paddle2onnx, an ONNX model.

    python export_model.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./weights/attention_lstm --save_dir=./data/export

Its main is video_tag.commands.export.main, also the console script videotag-export.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.export import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
