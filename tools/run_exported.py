r"""Reference deployment: tag videos with the two exported models in Paddle Inference, no videotag model code.

    python export_model.py --model_name=TSN --config=./configs/tsn.yaml --weights=./weights/tsn \
        --features --save_dir=./data/export
    python export_model.py --model_name=AttentionLSTM --config=./configs/attention_lstm.yaml \
        --weights=./weights/attention_lstm --save_dir=./data/export
    python tools/run_exported.py my_video.mp4 --model_dir ./data/export

Per video: the extractor's frames (INFER.seg_num of the TSN config, one per segment, resized and centre-
cropped, normalised: [1, S, 3, 224, 224]) -> tsn_features -> features [1, S, 2048] -> attention_lstm
(with lengths [S]) -> logits -> sigmoid -> the top-k tags. Prints one JSON line per video in the form of
videotag.py's predictions.jsonl (same tags, probabilities within 1e-5). A video that cannot be decoded is
named on stderr and the exit code is 1.
"""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from video_tag import cli  # noqa: E402

cli.setup_process()  # first: quiet output and CPU environment, before Paddle or OpenCV is imported
import numpy as np  # noqa: E402


def predictor(model_dir, name, onednn):
    """A Paddle Inference predictor of ``<model_dir>/<name>.json`` + ``.pdiparams`` on the CPU."""
    from video_tag.inference import predictor_config
    import paddle.inference as paddle_infer
    files = [os.path.join(model_dir, name + suffix) for suffix in (".json", ".pdiparams")]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise cli.UserError(f"exported model not found: {missing[0]} (export_model.py writes it; "
                            f"TSN's feature model with --features)")
    return paddle_infer.create_predictor(predictor_config(*files, onednn=onednn))


def run(predictor, *arrays):
    """The first output of ``predictor`` on ``arrays``, given in the order of its inputs."""
    for name, array in zip(predictor.get_input_names(), arrays):
        handle = predictor.get_input_handle(name)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def main():
    from video_tag.config import load_config
    from video_tag.predict import top_tags
    from video_tag.readers.lists import read_label_file
    from video_tag.readers.video_reader import crop_normalize, decode_cropped

    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--model_dir", default="./data/export", help="holds tsn_features.* and attention_lstm.*")
    p.add_argument("--label_file", default="./label_3396.txt", help="class names, one per line")
    p.add_argument("--tsn_config", default="configs/tsn.yaml", help="TSN config: INFER.seg_num and the frame sizes")
    p.add_argument("-t", "--tsn_override", action="append", default=[], metavar="SECTION.key=value",
                   help="override a value of the TSN config (repeatable)")
    p.add_argument("--topk", type=int, default=20, help="tags per video")
    cli.add_verbose_flag(p)
    args = p.parse_args()
    infer = load_config(args.tsn_config, args.tsn_override)["INFER"]
    seg_num, short, target = int(infer["seg_num"]), int(infer["short_size"]), int(infer["target_size"])
    tsn = predictor(args.model_dir, "tsn_features", onednn=True)
    lstm = predictor(args.model_dir, "attention_lstm", onednn=False)  # its step loop is ~7x slower in oneDNN
    names, failed = None, 0
    for video in args.videos:
        try:
            frames = crop_normalize(decode_cropped(video, seg_num, short, target), "infer", target)  # [S, 3, t, t]
        except ValueError as e:
            logging.getLogger("run_exported").error("cannot read %s: %s", video, e)
            failed += 1
            continue
        features = run(tsn, frames[None])                                                     # [1, S, 2048]
        logits = run(lstm, features, np.array([features.shape[1]], np.int64))                 # [1, C]
        probabilities = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
        names = names or read_label_file(cli.release_file(args.label_file), len(probabilities))
        print(json.dumps({"video": video, "tags": top_tags(probabilities, names, args.topk)}, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    cli.main(main)
