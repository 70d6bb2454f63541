r"""Tag videos in one command: TSN features and AttentionLSTM tags in one pass, with the release weights.

    python videotag.py my_video.mp4                      # or a folder of videos, or a list file
    python videotag.py long_video.mp4 --segment_seconds 30 --topk 5
    python videotag.py videos/ --shots --segment_seconds 30 --report   # timelines, shots, report.html

Its main is video_tag.commands.tag.main, also the console script videotag.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.tag import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
