r"""Decode the videos of a TSN list into img_00001.jpg frame folders and write the matching frames list.

    python tools/video2frames.py --filelist data/dataset/tsn/train.list --out_dir data/frames/train
    # then train in frames mode:
    python train.py --model_name=TSN --config=./configs/tsn-single.yaml -o MODEL.format=frames \
        --filelist data/frames/train/frames.list
"""
import argparse

from video_tag import cli


def main():
    from video_tag.frames import video_to_frames

    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--filelist", required=True, help="TSN video list: 'path label' per line")
    p.add_argument("--out_dir", required=True, help="where the frame folders and frames.list go")
    p.add_argument("--num_workers", type=int, default=4, help="videos decoded in parallel")
    cli.add_verbose_flag(p)
    args = p.parse_args()
    return video_to_frames(args.filelist, args.out_dir, args.num_workers)


def run():
    """``videotag-frames``: as ``python tools/video2frames.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
