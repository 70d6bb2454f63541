r"""Serve VideoTag over HTTP: jobs kept in SQLite, the models loaded once per worker, a web page at /.

    python serve.py                                    # http://127.0.0.1:8000, data in ./data/service
    python serve.py --allow_dir /srv/videos --port 9000
    curl -F video=@clip.mp4 -F topk=5 http://127.0.0.1:8000/v1/jobs
"""
import argparse
import os

from video_tag import cli

MB = 1 << 20


def main():
    from video_tag.service import server

    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --token")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument("--data_dir", default="./data/service", help="the jobs database and the uploads")
    p.add_argument("--allow_dir", action="append", default=[], metavar="DIR",
                   help="a folder whose videos jobs may name by path (repeatable; default: uploads only)")
    p.add_argument("--token", default=os.environ.get("VIDEOTAG_TOKEN"),
                   help="clients must send 'Authorization: Bearer TOKEN' (default: $VIDEOTAG_TOKEN)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, each with the models loaded: one per GPU (GPU i for worker i); "
                        "0 stores jobs without tagging them")
    p.add_argument("--max_upload_mb", type=float, default=2048, help="largest upload")
    p.add_argument("--keep_free_mb", type=float, default=256, help="refuse an upload (507) that would leave less free disk")
    p.add_argument("--sync_max_seconds", type=float, default=60, help="longest video POST /v1/tag takes")
    p.add_argument("--keep_days", type=float, default=0,
                   help="delete jobs (with their uploads) that ended more than this many days ago, at start "
                        "and every hour; queued and running jobs are never deleted (default 0: keep every job)")
    cli.add_model_flags(p)  # --precision checked below, after the token (Paddle not yet imported)
    cli.add_verbose_flag(p)
    args = p.parse_args()
    if not args.token and not server.loopback(args.host):  # first: before the models are looked at
        raise cli.UserError(f"--host {args.host} is reachable from other machines: give a --token (clients then "
                            "send 'Authorization: Bearer <token>'), or bind 127.0.0.1 behind a reverse proxy")
    from video_tag.inference import PRECISIONS
    from video_tag.readers.lists import read_label_file
    from video_tag.service.app import Limits
    if args.precision not in PRECISIONS:
        raise cli.UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {args.precision}")
    if not 0 < args.port < 65536:
        raise cli.UserError(f"--port must be 1..65535, got {args.port}")
    for name in ("workers", "max_upload_mb", "keep_free_mb", "sync_max_seconds", "keep_days"):
        if not 0 <= getattr(args, name) < float("inf"):
            raise cli.UserError(f"--{name} must be at least 0, got {getattr(args, name)}")
    if args.frame_batch < 1:
        raise cli.UserError(f"--frame_batch must be at least 1, got {args.frame_batch}")
    lstm_cfg, tsn_cfg = cli.load_model_flags(args)
    labels = read_label_file(args.label_file, int(lstm_cfg["MODEL"]["num_classes"]))
    models = {"tsn_cfg": tsn_cfg, "lstm_cfg": lstm_cfg, "tsn_weights": args.tsn_weights,
              "lstm_weights": args.lstm_weights, "label_file": args.label_file, "precision": args.precision,
              "use_gpu": args.use_gpu, "frame_batch": args.frame_batch}
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * MB), keep_free_bytes=int(args.keep_free_mb * MB),
                    sync_max_seconds=args.sync_max_seconds)
    return server.run(args.host, args.port, args.data_dir, args.allow_dir, args.token, args.workers, models,
                      labels, limits, args.keep_days)


def run():
    """``videotag-serve``: as ``python serve.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
