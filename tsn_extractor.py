r"""Extract TSN features ([INFER.seg_num, 2048] per video; float32, float16 or uint8) for every video of a list.

    python tsn_extractor.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn.pdparams \
        --filelist=./data/TsnExtractor.list --save_dir=./data/tsn_features

Its main is video_tag.commands.extract.main, also the console script videotag-extract.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.extract import main  # noqa: E402  (imports no Paddle: decode workers import this script)

if __name__ == "__main__":
    cli.main(main)
