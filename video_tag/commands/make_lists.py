r"""Labelled video lists for fine-tuning, split into train/val/test, from a folder per class or a CSV.

    python tools/make_lists.py --folders my_dataset/ --out_dir data --labels_out my_labels.txt
    python tools/make_lists.py --csv clips.csv --label_file label_3396.txt --out_dir data

Writes <out_dir>/train_videos.list, val_videos.list and test_videos.list ('path id [id ...]' per line,
the extractor's --train_list input), stratified by each video's first label and seeded; without
--label_file also the class names, one per line (line i: class id i), to --labels_out.
"""
import argparse
import logging
import os

from video_tag import cli


def main():
    from video_tag import files
    from video_tag.make_lists import SPLITS, from_csv, from_folders, list_text, read_names, split

    log = logging.getLogger("video_tag.make_lists")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--folders", metavar="DIR", help="a folder holding one folder of videos per class")
    source.add_argument("--csv", metavar="FILE", help="a CSV file: path,label[,label...] per row")
    p.add_argument("--label_file", help="class names, one per line (e.g. label_3396.txt): labels are its names "
                                        "or ids (default: the classes are the folder or CSV names, sorted)")
    p.add_argument("--out_dir", default="data", help="where train_videos.list, val_videos.list, test_videos.list go")
    p.add_argument("--labels_out", help="where the class names go without --label_file (default: <out_dir>/labels.txt)")
    p.add_argument("--split", nargs=3, type=float, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of each class's videos")
    p.add_argument("--seed", type=int, default=0, help="the split's seed: the same seed gives the same lists")
    p.add_argument("--overwrite", action="store_true", help="replace lists that exist")
    cli.add_verbose_flag(p)
    args = p.parse_args()
    names = read_names(args.label_file) if args.label_file else None
    videos, names = from_folders(args.folders, names) if args.folders else from_csv(args.csv, names)
    if not videos:
        raise cli.UserError(f"no videos found in {args.folders or args.csv}")
    lists = split(videos, args.split, args.seed)
    outputs = {name: os.path.join(args.out_dir, f"{name}_videos.list") for name in SPLITS if lists[name]}
    labels_out = None if args.label_file else (args.labels_out or os.path.join(args.out_dir, "labels.txt"))
    existing = [path for path in [*outputs.values(), labels_out] if path and os.path.exists(path)]
    if existing and not args.overwrite:
        raise cli.UserError(f"{existing[0]} exists: pass --overwrite to replace it")
    for name, path in outputs.items():
        text = list_text(lists[name])
        files.atomic_write(path, lambda f, text=text: f.write(text.encode("utf-8")))
    if labels_out:
        text = "".join(f"{name}\n" for name in names)
        files.atomic_write(labels_out, lambda f: f.write(text.encode("utf-8")))
    for name in SPLITS:
        if not lists[name] and name in ("val", "test"):
            log.warning("no %s videos (too few per class for --split %s): no %s_videos.list", name,
                        " ".join(str(f) for f in args.split), name)
    counts = ", ".join(f"{path} ({len(lists[name])} videos)" for name, path in outputs.items())
    print(f"wrote {counts}; {len(names)} classes" + (f" in {labels_out}" if labels_out else f" of {args.label_file}"))
    return 0


def run():
    """``videotag-make-lists``: as ``python tools/make_lists.py``."""
    cli.setup_process()
    cli.main(main)


if __name__ == "__main__":
    run()
