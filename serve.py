r"""Serve VideoTag over HTTP: jobs kept in SQLite, the models loaded once per worker, a web page at /.

    python serve.py                                    # http://127.0.0.1:8000, data in ./data/service
    python serve.py --allow_dir /srv/videos --port 9000
    curl -F video=@clip.mp4 -F topk=5 http://127.0.0.1:8000/v1/jobs

Its main is video_tag.commands.serve.main, also the console script videotag-serve.
"""
from video_tag import cli

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
from video_tag.commands.serve import main  # noqa: E402

if __name__ == "__main__":
    cli.main(main)
