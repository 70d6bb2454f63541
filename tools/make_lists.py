r"""Labelled video lists for fine-tuning, split into train/val/test, from a folder per class or a CSV.

    python tools/make_lists.py --folders my_dataset/ --out_dir data --labels_out my_labels.txt

Its main is video_tag.commands.make_lists.main, also the console script videotag-make-lists.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from video_tag import cli  # noqa: E402

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.make_lists import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
