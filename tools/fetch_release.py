r"""Download the VideoTag release (TSN and AttentionLSTM weights, label_3396.txt) into this project, check
it, and put each file where the scripts look for it: weights/tsn.pdparams, weights/attention_lstm.pdparams,
label_3396.txt (``./run fetch`` calls this script).

    python tools/fetch_release.py                      # from the release's own addresses
    python tools/fetch_release.py --samples            # also the sample videos, into data/mp4/
    VIDEOTAG_MIRROR=https://mirror.example.com/videotag python tools/fetch_release.py
    python tools/fetch_release.py --mirror https://mirror.example.com/videotag \
        --dest /path/to/another/checkout --samples

An interrupted run continues where it stopped; files already in place and checked are skipped.
Exit codes: 0 done; 2 refused (an address the server does not have, e.g. HTTP 404; an archive or file
that is not the release: damaged, truncated, unsafe members, wrong parameter names or shapes, a label
file without 3396 lines); 3 the network or the disk failed (run again to continue); 130 interrupted.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from video_tag import cli  # noqa: E402

cli.setup_process()  # first: quiet output and CPU environment, before Paddle is imported


def main():
    from video_tag.fetch import MIRROR_VARIABLE, fetch
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--samples", action="store_true", help="also the sample videos (mp4.tar), into data/mp4/")
    p.add_argument("--mirror", metavar="URL",
                   help=f"base address holding video_tag_tsn.tar, video_tag_lstm.tar, label_3396.txt and mp4.tar "
                        f"under their own names (default: ${MIRROR_VARIABLE}, else the release's addresses)")
    p.add_argument("--dest", default=ROOT, help="project folder to put the files in (default: this project)")
    p.add_argument("--retries", type=int, default=4, help="tries again after a network error")
    p.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS",
                   help="wait before the first try again, doubled at each next one")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds without an answer before a try fails")
    cli.add_verbose_flag(p)
    args = p.parse_args()
    if args.retries < 0:
        raise cli.UserError(f"--retries must be at least 0, got {args.retries}")
    if not 0 <= args.backoff < float("inf"):
        raise cli.UserError(f"--backoff must be a number of seconds >= 0, got {args.backoff}")
    if not 0 < args.timeout < float("inf"):
        raise cli.UserError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    return fetch(args.dest, args.mirror, args.samples, args.retries, args.backoff, args.timeout)


if __name__ == "__main__":
    cli.main(main)
