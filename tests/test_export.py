"""export_model.py: the exported models, loaded the way a deployment loads them (paddle.inference, and
onnxruntime where installed), give the dygraph model's logits for batches of other sizes and lengths
than any seen while exporting."""
import errno
import os
import re
import shutil

import numpy as np
import paddle
import pytest

from conftest import FEATURE_DIM, NUM_CLASSES, ROOT, assert_quiet, run_main, run_script
from models.test_tsn import release_weights
from video_tag import export
from video_tag.config import load_config
from video_tag.errors import RunError, UserError
from video_tag.models import build_model
from video_tag.weights import load_weights, model_state, write_state

TOLERANCE = 1e-5
TSN_SIZE = 64  # small frames: ResNet50 exports and runs in seconds
HAS_ONNX = all(__import__("importlib").util.find_spec(m) for m in ("paddle2onnx", "onnxruntime"))


def random_release_weights(model, path, seed=0):
    """Every parameter of ``model`` uniform in [-0.5, 0.5], biases and peepholes included."""
    rng = np.random.default_rng(seed)
    write_state({k: rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) for k, v in model_state(model).items()},
                path)


def paddle_inference(directory, name, inputs):
    """The README's serving snippet: the exported files, Paddle Inference, inputs in the model's order."""
    config = paddle.inference.Config(os.path.join(directory, name + ".json"),
                                     os.path.join(directory, name + ".pdiparams"))
    config.disable_glog_info()
    predictor = paddle.inference.create_predictor(config)
    for input_name, array in zip(predictor.get_input_names(), inputs):
        handle = predictor.get_input_handle(input_name)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def onnx_runtime(directory, name, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(directory, name + ".onnx"),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})[0]


def dygraph(model, inputs):
    with paddle.no_grad():
        return model(*[paddle.to_tensor(a) for a in inputs]).numpy()


def padded_batch(lengths, rng, pad):
    """features [B, max(lengths), F] with ``pad`` after each video's length, lengths int64 [B]."""
    x = rng.standard_normal((len(lengths), max(lengths), FEATURE_DIM)).astype(np.float32)
    for b, n in enumerate(lengths):
        x[b, n:] = pad
    return x, np.array(lengths, np.int64)


@pytest.fixture(scope="module")
def lstm_export(tmp_path_factory):
    """(model, cfg, export dir): a small AttentionLSTM (hidden 8: the AVX path of the fused kernel)."""
    tmp = tmp_path_factory.mktemp("lstm_export")
    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "attention_lstm.yaml"),
                      [f"MODEL.feature_dims=[{FEATURE_DIM}]", "MODEL.embedding_size=8", "MODEL.lstm_size=8",
                       f"MODEL.num_classes={NUM_CLASSES}", "MODEL.fc_sizes=[16,8]"])
    model = build_model("AttentionLSTM", cfg)
    random_release_weights(model, str(tmp / "w.pdparams"))
    load_weights(model, str(tmp / "w.pdparams"))
    model.eval()
    files = export.export_model("AttentionLSTM", cfg, str(tmp / "w"), str(tmp / "out"))
    names = sorted(os.path.basename(f) for f in files)
    expected = ["attention_lstm.json", "attention_lstm.pdiparams"] + (["attention_lstm.onnx"] if HAS_ONNX else [])
    assert names == sorted(expected)
    assert sorted(os.listdir(tmp / "out")) == sorted(expected)  # no temporary folder left behind
    return model, cfg, str(tmp / "out")


def test_graph_for_export_is_the_model_on_padded_batches(lstm_export):
    """AttentionLSTMGraph (masked while-loop LSTM) vs the model (packed steps, fused kernel), in dygraph;
    padding (huge values, NaN) must change nothing: each video alone gives its row of the batch."""
    model, _, _ = lstm_export
    graph = export.AttentionLSTMGraph(model)
    rng = np.random.default_rng(1)
    for pad in (1e6, np.nan):
        x, lengths = padded_batch([7, 3, 1, 5], rng, pad)
        got = dygraph(graph, [x, lengths])
        alone = np.concatenate([dygraph(model, [x[b:b + 1, :n], [n]]) for b, n in enumerate(lengths)])
        np.testing.assert_allclose(got, alone, rtol=0, atol=TOLERANCE)
    assert np.abs(alone).max() > 0.1 and np.abs(alone[0] - alone[1]).max() > 1e-3  # not a constant output


@pytest.mark.parametrize("runtime", ["paddle_inference", "onnxruntime"])
def test_exported_attention_lstm_matches_dygraph(lstm_export, runtime):
    if runtime == "onnxruntime" and not HAS_ONNX:
        pytest.skip("paddle2onnx or onnxruntime not installed (pip install paddle2onnx onnxruntime)")
    model, _, directory = lstm_export
    run = paddle_inference if runtime == "paddle_inference" else onnx_runtime
    rng = np.random.default_rng(2)
    # Batch sizes and lengths other than the export's sample (2 videos of 5 steps): B and T vary.
    for lengths in ([9, 4, 1, 6], [3], [2, 2]):
        x, n = padded_batch(lengths, rng, pad=0.0)
        np.testing.assert_allclose(run(directory, "attention_lstm", [x, n]), dygraph(model, [x, n]),
                                   rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def tsn_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tsn_export")
    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "tsn.yaml"),
                      ["MODEL.num_layers=50", "MODEL.num_classes=7", f"INFER.target_size={TSN_SIZE}"])
    write_state(release_weights(50, 7, np.random.default_rng(0)), str(tmp / "tsn.pdparams"))
    model = build_model("TSN", cfg)
    load_weights(model, str(tmp / "tsn.pdparams"))
    model.eval()
    export.export_model("TSN", cfg, str(tmp / "tsn"), str(tmp / "out"))
    return model, str(tmp / "out")


@pytest.mark.parametrize("runtime", ["paddle_inference", "onnxruntime"])
def test_exported_tsn_matches_dygraph(tsn_export, runtime):
    if runtime == "onnxruntime" and not HAS_ONNX:
        pytest.skip("paddle2onnx or onnxruntime not installed (pip install paddle2onnx onnxruntime)")
    model, directory = tsn_export
    run = paddle_inference if runtime == "paddle_inference" else onnx_runtime
    rng = np.random.default_rng(3)
    for batch, segments in ((2, 3), (1, 1)):  # the export's sample was 1 video x 2 segments
        # Each frame its own colour: noise frames alone give nearly equal features after the pooling.
        colour = rng.uniform(-2, 2, (batch, segments, 3, 1, 1))
        frames = (colour + 0.5 * rng.standard_normal((batch, segments, 3, TSN_SIZE, TSN_SIZE))).astype(np.float32)
        expected = dygraph(model, [frames])
        got = run(directory, "tsn", [frames])
        assert got.shape == (batch, 7)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE * max(1.0, np.abs(expected).max()))


def test_failed_check_writes_nothing(lstm_export, tmp_path, monkeypatch):
    model, cfg, _ = lstm_export
    write_state(model_state(model), str(tmp_path / "w.pdparams"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "attention_lstm.json").write_text("an earlier export")
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no output can pass: the check must stop the export
    with pytest.raises(RunError, match="disagrees with the dygraph model"):
        export.export_model("AttentionLSTM", cfg, str(tmp_path / "w"), str(out), onnx=False)
    assert os.listdir(out) == ["attention_lstm.json"]
    assert (out / "attention_lstm.json").read_text() == "an earlier export"


def test_export_without_onnx_removes_a_stale_onnx(lstm_export, tmp_path):
    model, cfg, _ = lstm_export
    write_state(model_state(model), str(tmp_path / "w.pdparams"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "attention_lstm.onnx").write_bytes(b"another model")
    files = export.export_model("AttentionLSTM", cfg, str(tmp_path / "w"), str(out), onnx=False)
    assert sorted(os.listdir(out)) == ["attention_lstm.json", "attention_lstm.pdiparams"]
    assert sorted(files) == sorted(str(out / f) for f in os.listdir(out))


@pytest.mark.parametrize("before", ["an earlier export", "nothing"])
def test_a_failure_while_the_files_go_in_place_leaves_the_earlier_export(lstm_export, tmp_path, monkeypatch,
                                                                         before):
    """The files of one export appear together or not at all: a move that fails half-way (here the
    second) puts back the earlier export (or leaves none), never a model file beside other weights."""
    model, cfg, _ = lstm_export
    write_state(model_state(model), str(tmp_path / "w.pdparams"))
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"attention_lstm.json": b"earlier model", "attention_lstm.pdiparams": b"earlier weights",
               "attention_lstm.onnx": b"earlier onnx"} if before == "an earlier export" else {}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    real_replace, moves = os.replace, []

    def replace(src, dst):
        if os.path.dirname(str(dst)) == str(out):
            moves.append(os.path.basename(str(dst)))
            if len(moves) == 2:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(RunError, match="cannot write the exported model in .*: Input/output error"):
        export.export_model("AttentionLSTM", cfg, str(tmp_path / "w"), str(out), onnx=False)
    monkeypatch.setattr(os, "replace", real_replace)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == earlier


def test_without_paddle2onnx(lstm_export, tmp_path, monkeypatch):
    """auto: the Paddle model alone; --onnx=yes: refused before anything is done."""
    model, cfg, _ = lstm_export
    write_state(model_state(model), str(tmp_path / "w.pdparams"))
    find_spec = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec",
                        lambda name, *a: None if name == "paddle2onnx" else find_spec(name, *a))
    export.export_model("AttentionLSTM", cfg, str(tmp_path / "w"), str(tmp_path / "auto"))
    assert sorted(os.listdir(tmp_path / "auto")) == ["attention_lstm.json", "attention_lstm.pdiparams"]
    with pytest.raises(UserError, match="needs paddle2onnx"):
        export.export_model("AttentionLSTM", cfg, str(tmp_path / "w"), str(tmp_path / "yes"), onnx=True)
    assert not os.path.exists(tmp_path / "yes")


def test_export_script(tiny_config, tmp_path, capfd):
    """The README's command on the tiny config; then weights of another model: one line, exit 2, no files."""
    cfg = load_config(tiny_config)
    random_release_weights(build_model("AttentionLSTM", cfg), str(tmp_path / "w.pdparams"))
    done = run_script("export_model.py", "--model_name=AttentionLSTM", f"--config={tiny_config}",
                      f"--weights={tmp_path / 'w'}", f"--save_dir={tmp_path / 'out'}", "--onnx=no")
    assert done.returncode == 0, done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["attention_lstm.json", "attention_lstm.pdiparams"]
    assert str(tmp_path / "out" / "attention_lstm.json") in done.stdout
    assert_quiet(done.stdout)

    done = run_main("export_model.py", "--model_name=AttentionLSTM", f"--config={tiny_config}",  # in this process
                    "-o", "MODEL.num_classes=9", f"--weights={tmp_path / 'w'}",
                    f"--save_dir={tmp_path / 'other'}", "--onnx=no", capfd=capfd)
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stdout
    assert "error: weight file" in done.stdout and "output.w_0 has shape" in done.stdout
    assert not os.path.exists(tmp_path / "other")


def readme_snippets():
    """The Python blocks of docs/deploy.md (README's deploy section links there)."""
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.mark.parametrize("runtime", ["paddle_inference", "onnxruntime"])
def test_readme_serving_snippets(lstm_export, tmp_path, monkeypatch, runtime):
    """README's snippets, run as written in a folder laid out as they expect, give the model's probabilities."""
    snippets = {("paddle_inference" if "paddle.inference" in code else "onnxruntime"): code for code in readme_snippets()}
    assert sorted(snippets) == ["onnxruntime", "paddle_inference"]
    if runtime == "onnxruntime" and not HAS_ONNX:
        pytest.skip("paddle2onnx or onnxruntime not installed (pip install paddle2onnx onnxruntime)")
    model, _, directory = lstm_export
    shutil.copytree(directory, tmp_path / "data" / "export")
    os.makedirs(tmp_path / "data" / "tsn_features")
    features = np.random.default_rng(4).standard_normal((6, FEATURE_DIM)).astype(np.float32)
    name = "data/tsn_features/cooking_1f3a9c2e5b07d4a6.npy"  # as the extractor names it, found via manifest.tsv
    np.save(tmp_path / name, features)
    (tmp_path / "data" / "tsn_features" / "manifest.tsv").write_text(
        f"data/mp4/other.mp4\tdata/tsn_features/other_77d0b41593c1e8f2.npy\ndata/mp4/cooking.mp4\t{name}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(snippets[runtime], namespace)
    expected = 1 / (1 + np.exp(-dygraph(model, [features[None], [6]])))
    np.testing.assert_allclose(namespace["probabilities"], expected, rtol=0, atol=TOLERANCE)


# The feature model (export_model.py --features) and the exported pair run end to end (tools/run_exported.py).

@pytest.fixture(scope="module")
def pair_export(tmp_path_factory, tsn50_release):
    """A folder with a small TSN (ResNet50, 4 classes, 32 px, 5 segments: tsn.yaml, tsn.pdparams), a small
    AttentionLSTM (6 classes: lstm.yaml, lstm.pdparams), labels.txt, and both exported into export/:
    tsn_features (``--features``; with ONNX where paddle2onnx is installed) and attention_lstm."""
    import yaml
    tmp = tmp_path_factory.mktemp("pair")
    shutil.copy(tsn50_release[0], tmp / "tsn.pdparams")
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        tsn = yaml.safe_load(f)
    tsn["MODEL"].update(num_layers=50, num_classes=3)  # the weights' classifier has 4: not read by --features
    tsn["INFER"].update(seg_num=5, short_size=40, target_size=32)
    (tmp / "tsn.yaml").write_text(yaml.safe_dump(tsn), encoding="utf-8")
    with open(os.path.join(ROOT, "configs", "attention_lstm.yaml"), encoding="utf-8") as f:
        lstm = yaml.safe_load(f)
    lstm["MODEL"].update(embedding_size=8, lstm_size=4, num_classes=6, fc_sizes=[16, 8], topk=6)
    (tmp / "lstm.yaml").write_text(yaml.safe_dump(lstm), encoding="utf-8")
    random_release_weights(build_model("AttentionLSTM", load_config(str(tmp / "lstm.yaml"))),
                           str(tmp / "lstm.pdparams"), seed=2)
    (tmp / "labels.txt").write_text("".join(f"标签 {i}\n" for i in range(6)), encoding="utf-8")
    written = export.export_model("TSN", load_config(str(tmp / "tsn.yaml")), str(tmp / "tsn"), str(tmp / "export"),
                                  onnx=HAS_ONNX, features=True)
    export.export_model("AttentionLSTM", load_config(str(tmp / "lstm.yaml")), str(tmp / "lstm"),
                        str(tmp / "export"), onnx=False)
    return tmp, written


def test_exported_tsn_features_match_the_extractors_features(pair_export):
    """--features: frames [B, S, 3, H, W] -> TSN.features [B, S, 2048] in Paddle Inference and onnxruntime
    (where installed), for other B and S than the export's sample; no classifier: a weight file whose fc_0
    has another size than the config's exports all the same."""
    tmp, written = pair_export
    assert {os.path.basename(f) for f in written} == {"tsn_features.json", "tsn_features.pdiparams"} | (
        {"tsn_features.onnx"} if HAS_ONNX else set())
    model = build_model("TSN", load_config(str(tmp / "tsn.yaml")))
    load_weights(model, str(tmp / "tsn"), skip=("fc_0.",))
    model.eval()
    rng = np.random.default_rng(5)
    for batch, segments in ((2, 3), (1, 1)):
        colour = rng.uniform(-2, 2, (batch, segments, 3, 1, 1))
        frames = (colour + 0.5 * rng.standard_normal((batch, segments, 3, 32, 32))).astype(np.float32)
        with paddle.no_grad():
            expected = model.features(paddle.to_tensor(frames)).numpy()
        for run in (paddle_inference, onnx_runtime) if HAS_ONNX else (paddle_inference,):
            got = run(str(tmp / "export"), "tsn_features", [frames])
            assert got.shape == (batch, segments, 2048)
            np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE * max(1.0, np.abs(expected).max()))


def test_features_are_tsn_only(tmp_path):
    cfg = load_config(os.path.join(ROOT, "configs", "attention_lstm.yaml"))
    with pytest.raises(UserError, match="--features exports TSN's feature model; AttentionLSTM has none"):
        export.export_model("AttentionLSTM", cfg, "w", str(tmp_path / "out"), features=True)
    assert not os.path.exists(tmp_path / "out")


def test_exported_pair_tags_videos_as_videotag_does(pair_export, tmp_path, capfd):
    """tools/run_exported.py with the two exports alone (TSN --features, AttentionLSTM) gives videotag.py's
    tags: the same classes in the same order, probabilities within 1e-5; an unreadable video: exit 1."""
    import json

    import cv2
    setup, _ = pair_export
    videos = []
    rng = np.random.default_rng(6)
    for name in ("a.avi", "b c.avi"):
        writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for _ in range(23):
            writer.write((rng.uniform(0, 1, (1, 1, 3)) * 255 * np.ones((48, 64, 3))).astype(np.uint8))
        writer.release()
        videos.append(str(tmp_path / name))
    (tmp_path / "broken.avi").write_bytes(b"\x00" * 64)
    done = run_main("tools/run_exported.py", *videos, str(tmp_path / "broken.avi"), f"--model_dir={setup}/export",
                    f"--label_file={setup}/labels.txt", f"--tsn_config={setup}/tsn.yaml", "--topk=6", capfd=capfd)
    assert done.returncode == 1 and f"cannot read {tmp_path / 'broken.avi'}" in done.stdout, done.stdout
    exported = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    done = run_main("videotag.py", str(tmp_path), f"--tsn_weights={setup}/tsn.pdparams",
                    f"--lstm_weights={setup}/lstm.pdparams", f"--label_file={setup}/labels.txt",
                    f"--config={setup}/lstm.yaml", f"--tsn_config={setup}/tsn.yaml", "--num_workers=1",
                    f"--save_dir={tmp_path}/out/tags", capfd=capfd)
    assert done.returncode == 1, done.stdout  # the broken video
    with open(tmp_path / "out" / "tags" / "predictions.jsonl", encoding="utf-8") as f:
        tagged = {line["video"]: line["tags"] for line in map(json.loads, f)}
    assert [line["video"] for line in exported] == videos and set(tagged) == set(videos)
    for line in exported:
        ours, theirs = line["tags"], tagged[line["video"]]
        assert [(t["class_id"], t["class_name"]) for t in ours] == [(t["class_id"], t["class_name"]) for t in theirs]
        np.testing.assert_allclose([t["probability"] for t in ours], [t["probability"] for t in theirs], rtol=0, atol=1e-5)
