r"""Tag videos in one command: TSN features and AttentionLSTM tags in one pass, with the release weights.

    python videotag.py my_video.mp4                      # or a folder of videos, or a list file
    python videotag.py long_video.mp4 --segment_seconds 30 --topk 5
    python videotag.py videos/ --shots --segment_seconds 30 --report   # timelines, shots, report.html
"""
import argparse

from video_tag import cli


def main():
    from video_tag.inference import PRECISIONS
    from video_tag.tagger import tag
    from video_tag.timeline import SHOT_FRAMES, TimelineOptions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("source", metavar="VIDEO_OR_DIR_OR_LIST", help="a video, a folder (recursive) or a list file")
    p.add_argument("--save_dir", default="./data/videotag_results",
                   help="where predictions.jsonl, segments.jsonl, shots.jsonl, timelines/, failed.list go")
    p.add_argument("--topk", type=int, help="tags per video, segment or shot (default: MODEL.topk, 20)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="keep only tags of at least this probability")
    p.add_argument("--thresholds", metavar="CSV",
                   help="thresholds.csv of eval.py --calibrate: keep a tag only at or above its own threshold "
                        "(and --threshold)")
    p.add_argument("--segment_seconds", type=float, help="also tag each window of this many seconds")
    p.add_argument("--segment_stride_seconds", type=float, help="start a window every R seconds (default: S)")
    p.add_argument("--segment_seg_num", type=int, help="frames sampled per window and per shot (default: INFER.seg_num)")
    p.add_argument("--shots", action="store_true", help="detect shot changes and tag each shot (shots.jsonl)")
    p.add_argument("--shot_frames", choices=SHOT_FRAMES, default="own",
                   help="with --shots, what each shot is tagged from: own (its own frames, sampled with seg_num "
                        "as a whole video; exact) or shared (the frames of the video's and the windows' samples "
                        "inside it: no extra frames through TSN but one for a shot holding none; fast)")
    p.add_argument("--min_confidence", type=float, default=0.5, help="tag ranges: shots or segments at least this probable")
    p.add_argument("--include", action="append", default=[], metavar="CLASSES",
                   help="list only these classes (ids or names, comma-separated; repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="CLASSES",
                   help="never list these classes (ids or names, comma-separated; repeatable)")
    p.add_argument("--report", action="store_true", help="also write report.html with a thumbnail per shot")
    p.add_argument("--save_features", metavar="DIR", help="also save each video's TSN features, as the extractor")
    p.add_argument("--feature_dtype", help="with --save_features, " + cli.FEATURE_DTYPE_HELP)
    p.add_argument("--shard_size", type=int, metavar="N", help="with --save_features, " + cli.SHARD_SIZE_HELP)
    cli.add_model_flags(p, PRECISIONS)
    p.add_argument("--num_workers", type=int, default=2, help="videos decoded in parallel")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming a killed run")
    cli.add_verbose_flag(p)
    args = p.parse_args()
    args.label_file = cli.release_file(args.label_file)  # ./label_3396.txt, else where ./run fetch put it
    for name in ("topk", "frame_batch", "segment_seg_num"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise cli.UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise cli.UserError(f"--num_workers must be at least 0, got {args.num_workers}")
    for name in ("segment_seconds", "segment_stride_seconds"):
        value = getattr(args, name)
        if value is not None and not 0 < value < float("inf"):
            raise cli.UserError(f"--{name} must be a number of seconds > 0, got {value}")
    lstm_cfg, tsn_cfg = cli.load_model_flags(args)
    cli.set_feature_dtype(tsn_cfg, args.feature_dtype)
    cli.set_shard_size(tsn_cfg, args.shard_size)
    threshold = args.threshold
    if args.thresholds:  # a list of one threshold per class, checked against the label file before any work
        from video_tag.readers.lists import read_label_file
        from video_tag.thresholds import combine, read_thresholds
        names = read_label_file(args.label_file, int(lstm_cfg["MODEL"]["num_classes"]))
        threshold = combine(args.threshold, read_thresholds(args.thresholds, names))
    return tag(args.source, args.save_dir, tsn_cfg, lstm_cfg, args.tsn_weights, args.lstm_weights,
               args.label_file, args.topk, threshold, args.save_features, args.segment_seconds,
               args.segment_stride_seconds, args.segment_seg_num, args.precision, args.use_gpu,
               args.frame_batch, args.num_workers, args.overwrite,
               TimelineOptions(args.shots, args.min_confidence, args.include, args.exclude, args.report,
                               args.shot_frames))


def run():
    """``videotag``: as ``python videotag.py``."""
    cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
    cli.main(main)


if __name__ == "__main__":
    run()
