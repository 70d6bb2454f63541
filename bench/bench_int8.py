"""Int8 post-training quantisation of the TSN backbone on CPU (oneDNN): speed against fp32 and bf16,
per-frame feature cosine to fp32, and the top-20 tags of an AttentionLSTM on int8 against fp32 features.

    python bench/bench_int8.py [--algo hist] [--calib_per_class 4] [--eval_per_class 2] [--threads N]
                               [--weights tsn.pdparams] [--rounds 3] [--batches 4] [--batch 8]

What it does, all in one run:
  1. writes generated videos (``video_tag.demo.make_videos``, six synthetic classes, 160x120, 30 frames):
     a calibration set (``calib_per_class`` x 6 videos x 12 frames, default 288 frames) and a separate
     evaluation set (``eval_per_class`` x 6 videos x 16 frames, default 192 frames), decoded and
     preprocessed as the extractor does (``decode_cropped`` + ``crop_normalize``);
  2. the backbone: ResNet101 with random weights whose batch-norm statistics are measured on frames of
     the calibration videos (``video_tag.demo.random_backbone``), or ``--weights`` (release format);
  3. fp32 and bf16: the extractor's engine (``InferenceEngine``: PIR export, oneDNN predictor);
  4. int8: Paddle 3.3.1 has no int8 path for PIR programs (see bench/README.md), so a child process
     with ``FLAGS_enable_pir_api=0`` exports the same weights as a legacy ``.pdmodel``, runs
     ``paddle.static.quantization.PostTrainingQuantization`` on the calibration frames (conv2d,
     channel-wise weights, ``--algo`` for activations, quantize_linear/dequantize_linear ops), and the
     quantised model runs in the legacy (non-PIR) analysis predictor with ``enable_onednn_int8()``;
  5. speed: model-only frames/s at ``--batch`` on the evaluation frames, the three predictors taking
     turns for ``--rounds`` rounds of ``--batches`` batches (same process, same threads); the median
     of each and the ratios of the medians;
  6. accuracy: per-frame cosine of int8 (and bf16) features to fp32 on the evaluation frames (min, mean)
     and, per evaluation video (16 frames), the overlap of the top-20 tags of an AttentionLSTM (release
     size, 3396 classes, random weights, seed 0) on int8 against fp32 features.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHAPE = (None, 3, 224, 224)


def decoded_frames(folder, per_class, seg_num, seed):
    """Generated videos written to ``folder`` and decoded as the extractor does: (paths, float32
    [videos, seg_num, 3, 224, 224])."""
    from video_tag.demo import make_videos
    from video_tag.readers.video_reader import crop_normalize, decode_cropped
    paths = [p for p, _ in make_videos(folder, per_class, np.random.default_rng(seed))]
    frames = np.stack([crop_normalize(list(decode_cropped(p, seg_num)), "infer", 224) for p in paths])
    return paths, frames


def quantize_child(args):
    """Runs in a child process with FLAGS_enable_pir_api=0: legacy export of the backbone, then PTQ.

    Reads ``<work>/backbone.pdparams`` (release format) and ``<work>/calib.npy``; writes
    ``<work>/int8_<algo>/model.pdmodel`` + ``model.pdiparams``.
    """
    import paddle
    from paddle.static.quantization import PostTrainingQuantization
    from video_tag import weights
    from video_tag.models.tsn import TSN
    if paddle.framework.in_pir_mode() or paddle.base.framework.get_flags("FLAGS_enable_pir_api")[
            "FLAGS_enable_pir_api"]:
        sys.exit("quantize child: FLAGS_enable_pir_api=0 did not take effect")
    work = args.work
    model = TSN(num_classes=400, num_layers=101)
    weights.load_weights(model, os.path.join(work, "backbone.pdparams"), skip=("fc_0.",))
    model.backbone.eval()
    paddle.jit.save(model.backbone, os.path.join(work, "fp32", "model"),
                    input_spec=[paddle.static.InputSpec(list(SHAPE), "float32", "x")])
    calib = np.load(os.path.join(work, "calib.npy"))

    def loader():
        for i in range(0, len(calib), args.batch):
            yield {"x": calib[i:i + args.batch]}

    paddle.enable_static()
    ptq = PostTrainingQuantization(
        executor=paddle.static.Executor(paddle.CPUPlace()), model_dir=os.path.join(work, "fp32"),
        model_filename="model.pdmodel", params_filename="model.pdiparams", data_loader=loader,
        batch_size=args.batch, batch_nums=-(-len(calib) // args.batch), algo=args.algo[0],
        quantizable_op_type=["conv2d"], weight_quantize_type="channel_wise_abs_max", onnx_format=True)
    start = time.perf_counter()
    ptq.quantize()
    ptq.save_quantized_model(os.path.join(work, "int8_" + args.algo[0]))
    print(f"PTQ ({args.algo[0]}, {len(calib)} frames): {time.perf_counter() - start:.0f} s", flush=True)


def legacy_int8_predictor(prefix, threads):
    """``run(x float32 [N, 3, 224, 224]) -> [N, 2048]`` of a PTQ model in the legacy oneDNN int8 predictor."""
    import paddle.inference as paddle_infer
    from video_tag import quiet
    config = paddle_infer.Config(prefix + ".pdmodel", prefix + ".pdiparams")
    config.disable_glog_info()
    config.switch_ir_optim(True)
    config.enable_new_ir(False)  # PIR: create_predictor fails on the quantised program (bench/README.md)
    config.disable_gpu()
    config.enable_onednn()
    config.set_cpu_math_library_num_threads(threads)
    config.enable_onednn_int8()
    with quiet.native_stdout_muted():  # the int8 passes print their counts to stdout
        predictor = paddle_infer.create_predictor(config)
    x_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    y_handle = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(x):
        outputs = []
        for i in range(0, len(x), 8):
            chunk = np.ascontiguousarray(x[i:i + 8])
            x_handle.reshape(list(chunk.shape))
            x_handle.copy_from_cpu(chunk)
            predictor.run()
            outputs.append(y_handle.copy_to_cpu())
        return np.concatenate(outputs)
    return run


def cosine(a, b):
    """Row-wise cosine of two [N, D] arrays -> [N]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def top_k_overlap(model, features_a, features_b, k=20):
    """Per video, how many of the top-``k`` tags of ``model`` on ``features_a`` [V, T, 2048] are also in its
    top-``k`` on ``features_b``: int array [V]."""
    import paddle
    with paddle.no_grad():
        lengths = [features_a.shape[1]] * len(features_a)
        logits_a = model(paddle.to_tensor(features_a), lengths).numpy()
        logits_b = model(paddle.to_tensor(features_b), lengths).numpy()
    top_a = np.argsort(-logits_a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-logits_b, axis=1, kind="stable")[:, :k]
    return np.array([len(set(a) & set(b)) for a, b in zip(top_a, top_b)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", nargs="+", default=["abs_max"], choices=["abs_max", "avg", "hist", "KL", "mse"],
                        help="PTQ activation calibration (PostTrainingQuantization's algo); one int8 model each")
    parser.add_argument("--calib_per_class", type=int, default=4, help="calibration videos per class (x6, 12 frames)")
    parser.add_argument("--eval_per_class", type=int, default=2, help="evaluation videos per class (x6, 16 frames)")
    parser.add_argument("--weights", help="release-format TSN weights (default: random, BN measured)")
    parser.add_argument("--threads", type=int, default=None, help="oneDNN threads (default: all cores)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per predictor per round")
    parser.add_argument("--quantize_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quantize_child:
        return quantize_child(args)

    import paddle
    from video_tag import weights
    from video_tag.cpu import default_cpu_threads
    from video_tag.demo import random_backbone
    from video_tag.inference import InferenceEngine, cpu_supports_bf16, export_layer
    from video_tag.models.attention_lstm import AttentionLSTM
    from video_tag.models.tsn import TSN
    threads = args.threads or default_cpu_threads()

    with tempfile.TemporaryDirectory(prefix="bench_int8_") as work:
        calib_paths, calib = decoded_frames(os.path.join(work, "calib"), args.calib_per_class, 12, seed=1)
        _, evalset = decoded_frames(os.path.join(work, "eval"), args.eval_per_class, 16, seed=2)
        calib = calib.reshape(-1, 3, 224, 224)
        videos, seg = evalset.shape[:2]
        frames = evalset.reshape(-1, 3, 224, 224)
        np.save(os.path.join(work, "calib.npy"), calib)
        print(f"calibration: {len(calib)} frames of {len(calib_paths)} videos; evaluation: {len(frames)} "
              f"frames of {videos} other videos ({seg} each); {threads} threads; batch {args.batch}", flush=True)

        weight_file = os.path.join(work, "backbone.pdparams")
        if args.weights:
            weights.write_state(weights.read_state(weights.resolve(args.weights)), weight_file)
            print(f"backbone: ResNet101 weights from {args.weights}")
        else:
            random_backbone(weight_file, calib_paths)
            print("backbone: ResNet101, RANDOM weights (seed 0), batch-norm statistics measured on calibration "
                  "frames", flush=True)
        model = TSN(num_classes=400, num_layers=101)
        weights.load_weights(model, weight_file, skip=("fc_0.",))
        export_layer(model.backbone, SHAPE, os.path.join(work, "pir", "backbone"))

        # FLAGS_use_mkldnn: the calibration runs (static-graph executor) on oneDNN kernels.
        env = dict(os.environ, FLAGS_enable_pir_api="0", FLAGS_use_mkldnn="1", FLAGS_use_onednn="1",
                   OMP_NUM_THREADS=str(threads))
        for algo in args.algo:
            child = subprocess.run([sys.executable, os.path.abspath(__file__), "--quantize_child", "--work", work,
                                    "--algo", algo, "--batch", str(args.batch)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if child.returncode != 0:
                sys.exit("quantisation failed:\n" + child.stdout[-4000:])
            print([line for line in child.stdout.splitlines() if line.startswith("PTQ")][-1], flush=True)

        runs = {"fp32": InferenceEngine(None, SHAPE, "fp32", cpu_threads=threads, batch_size=args.batch,
                                        exported=os.path.join(work, "pir")).run}
        if cpu_supports_bf16():
            runs["bf16"] = InferenceEngine(None, SHAPE, "bf16", cpu_threads=threads, batch_size=args.batch,
                                           exported=os.path.join(work, "pir")).run
        else:
            print("bf16: this CPU has no native bf16; left out")
        for algo in args.algo:
            runs["int8 " + algo] = legacy_int8_predictor(os.path.join(work, "int8_" + algo, "model"), threads)

        features = {name: run(frames) for name, run in runs.items()}  # also the warm-up

    batch = frames[:args.batch]
    times = {name: [] for name in runs}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(args.batches):
                run(batch)
            times[name].append(time.perf_counter() - start)
    fps = {name: args.batches * len(batch) / np.median(t) for name, t in times.items()}
    print(f"\nmodel-only frames/s (median of {args.rounds} rounds x {args.batches} batches of {len(batch)}; "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}):")
    for name in runs:
        ratios = ", ".join(f"{fps[name] / fps[other]:.2f}x {other}" for other in runs if other != name)
        print(f"  {name}: {fps[name]:6.1f}   ({ratios})")

    paddle.seed(0)
    tagger = AttentionLSTM()  # release size, random weights
    tagger.eval()
    ref = features["fp32"]
    print("\nagainst fp32 (AttentionLSTM: RANDOM weights, seed 0, 3396 classes):")
    for name in [n for n in runs if n != "fp32"]:
        cos = cosine(features[name], ref)
        overlap = top_k_overlap(tagger, features[name].reshape(videos, seg, -1), ref.reshape(videos, seg, -1))
        print(f"  {name}: per-frame cosine min {cos.min():.5f} mean {cos.mean():.5f}; top-20 overlap "
              f"mean {overlap.mean():.2f}/20, min {overlap.min()}/20 over {videos} videos", flush=True)


if __name__ == "__main__":
    main()
