r"""Decode the videos of a TSN list into img_00001.jpg frame folders and write the matching frames list.

    python tools/video2frames.py --filelist data/dataset/tsn/train.list --out_dir data/frames/train
    # then train in frames mode:
    python train.py --model_name=TSN --config=./configs/tsn-single.yaml -o MODEL.format=frames \
        --filelist data/frames/train/frames.list

Its main is video_tag.commands.frames.main, also the console script videotag-frames.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from video_tag import cli  # noqa: E402

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.frames import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
