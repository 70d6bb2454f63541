"""Export a trained model for deployment: a Paddle Inference model and, with paddle2onnx, an ONNX model.

    files = export_model("AttentionLSTM", cfg, "weights/attention_lstm", "export")

writes into ``save_dir``, with ``name`` = ``attention_lstm`` or ``tsn``:

    <name>.json + <name>.pdiparams   ``paddle.jit.save`` (Paddle 3 program + weights), for
                                     ``paddle.inference.Config(json, pdiparams)``
    <name>.onnx                      when paddle2onnx is installed (opset 13)

Inputs and output (B, T and S vary from call to call):

    AttentionLSTM: features float32 [B, T, F] (padded anyhow after each video's length),
                   lengths int64 [B] (1 <= length <= T)            -> logits float32 [B, num_classes]
    TSN:           frames float32 [B, S, 3, H, W] (normalised RGB, H = W = INFER.target_size)
                                                                   -> logits float32 [B, num_classes]
    TSN, features=True (file name tsn_features): the same frames   -> features float32 [B, S, 2048],
                   the extractor's per-frame features, the AttentionLSTM's input (no classifier)

Probabilities are ``sigmoid(logits)`` for the AttentionLSTM (multi-label), ``softmax(logits)`` for TSN.
Before anything is written, the exported models are run on a sample input and compared with the
dygraph model; all files of one export appear together, or none does (``put_in_place``).
"""
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from . import quiet
from .errors import RunError, UserError
from .models import build_model
from .models.peephole_lstm import padded_lstm
from .weights import load_weights

log = logging.getLogger(__name__)

FILE_NAMES = {"AttentionLSTM": "attention_lstm", "TSN": "tsn"}
ONNX_OPSET = 13
TOLERANCE = 1e-4  # max |exported - dygraph| / max(1, max |dygraph|) on the sample input


class AttentionLSTMGraph(nn.Layer):
    """``AttentionLSTM`` (eval mode) in ops that ``paddle.jit.to_static`` traces with variable B and T.

    The model's own forward packs the valid steps with numpy and hands the fused LSTM kernel a LoD; a
    traced graph can do neither. This one masks instead: padded steps are zeroed before the LSTM, reset
    its state (``padded_lstm``) and get no attention. Same parameters (``model``'s), same function:
    ``forward(features [B, T, F] float32, lengths [B] int64)`` -> logits [B, C].
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, lengths):
        m = self.model
        steps = paddle.shape(features)[1]
        valid = paddle.arange(steps, dtype="int64").unsqueeze(0) < lengths.unsqueeze(1)   # [B, T] bool
        x = paddle.tanh(m.rgb_fc(features))                                              # [B, T, E]
        x = paddle.where(valid.unsqueeze(-1), x, paddle.zeros([1], x.dtype))  # padding may be NaN: drop it
        x = x.transpose([1, 0, 2])                                                       # [T, B, E]
        # Cast before transposing: Paddle Inference's oneDNN has no kernel for a bool transpose.
        mask = valid.astype(x.dtype).transpose([1, 0]).unsqueeze(-1)                     # [T, B, 1]
        directions = ((m.rgb_fc_forward, m.rgb_lstm_forward), (m.rgb_fc_backward, m.rgb_lstm_backward))
        h = [padded_lstm(proj(x), mask, lstm.weight, lstm.bias, lstm.is_reverse) for proj, lstm in directions]
        z = paddle.concat(h, axis=2).transpose([1, 0, 2])                                # [B, T, 2D]
        z = F.dropout(z, p=m.drop_rate, training=False, mode="downscale_in_infer")
        score = m.rgb_weight(z).squeeze(-1)                                              # [B, T]
        score = paddle.where(valid, score, paddle.full([1], -1e30, score.dtype))
        attention = F.softmax(score, axis=1)
        pooled = paddle.bmm(attention.unsqueeze(1), z).squeeze(1)                        # [B, 2D]
        hidden = paddle.tanh(m.fc2(F.relu(m.fc1(pooled))))
        return m.output(hidden)                                                          # [B, C]


class TSNFeatures(nn.Layer):
    """TSN's backbone as the extractor runs it: ``forward(frames [B, S, 3, H, W])`` -> features
    [B, S, 2048] (``TSN.features``; the classifier is not part of it)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames):
        return self.model.features(frames)


def graph_and_inputs(model_name, model, cfg):
    """The layer to trace, its ``InputSpec`` list, and a small sample input (numpy arrays) to check it on."""
    rng = np.random.default_rng(0)
    if model_name == "AttentionLSTM":
        width = int(sum(cfg["MODEL"]["feature_dims"]))
        specs = [paddle.static.InputSpec([None, None, width], "float32", "features"),
                 paddle.static.InputSpec([None], "int64", "lengths")]
        sample = [rng.standard_normal((2, 5, width)).astype(np.float32), np.array([5, 3], np.int64)]
        return AttentionLSTMGraph(model), specs, sample
    if model_name == "TSN":
        size = int(cfg["INFER"].get("target_size", 224))
        specs = [paddle.static.InputSpec([None, None, 3, size, size], "float32", "frames")]
        return model, specs, [rng.standard_normal((1, 2, 3, size, size)).astype(np.float32)]
    raise ValueError(f"no export for model {model_name}")


def export_model(model_name, cfg, weights, save_dir, onnx=None, features=False):
    """Export ``model_name`` with ``weights`` (release format) into ``save_dir``; returns the files written.

    onnx: None writes the ONNX model when paddle2onnx is installed; True requires it; False skips it.
    features (TSN only): export the feature model ``tsn_features`` (frames -> [B, S, 2048]) instead of
    the classifier; the weights' classifier ``fc_0`` is not read.
    A model that fails its check, or a failed conversion, raises ``RunError`` and writes nothing.
    """
    if features and model_name != "TSN":
        raise UserError(f"--features exports TSN's feature model; {model_name} has none: use --model_name=TSN")
    name = "tsn_features" if features else FILE_NAMES[model_name]
    if onnx is None:
        onnx = importlib.util.find_spec("paddle2onnx") is not None
        if not onnx:
            log.info("paddle2onnx is not installed: no ONNX model (pip install paddle2onnx onnxruntime)")
    elif onnx and importlib.util.find_spec("paddle2onnx") is None:
        raise UserError("--onnx=yes needs paddle2onnx: pip install paddle2onnx onnxruntime")
    model = build_model(model_name, cfg)
    load_weights(model, weights, skip=("fc_0.",) if features else ())
    model.eval()
    graph, specs, sample = graph_and_inputs(model_name, model, cfg)
    if features:
        graph = TSNFeatures(model)
    with paddle.no_grad():  # the dygraph model's output is what the export must give
        expected = (graph if features else model)(*[paddle.to_tensor(a) for a in sample]).numpy()
    try:
        os.makedirs(save_dir, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".export_", dir=save_dir)  # same file system: renames are atomic
    except OSError as e:
        raise RunError(f"cannot write to {save_dir}: {e.strerror or e}") from None
    try:
        prefix = os.path.join(work, name)
        try:
            with warnings.catch_warnings():  # Paddle's where() asks a traced tensor for its place: harmless
                warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
                paddle.jit.save(graph, prefix, input_spec=specs)
        except OSError as e:
            raise RunError(f"cannot write the exported model in {save_dir}: {e.strerror or e}") from None
        check("Paddle Inference", run_paddle_inference(prefix + ".json", prefix + ".pdiparams", sample), expected)
        if onnx:
            convert_to_onnx(prefix + ".json", prefix + ".pdiparams", prefix + ".onnx")
            if importlib.util.find_spec("onnxruntime") is not None:
                check("onnxruntime", run_onnxruntime(prefix + ".onnx", sample), expected)
            else:
                log.info("onnxruntime is not installed: the ONNX model was not checked")
        stale = [] if onnx else [name + ".onnx"]  # an earlier export's: it holds another model
        written = put_in_place(work, save_dir, sorted(os.listdir(work)), stale)
    except OSError as e:
        raise RunError(f"cannot write the exported model in {save_dir}: {e.strerror or e}; the files there "
                       f"are those of before") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return written


def put_in_place(work, save_dir, names, stale=()):
    """Move the files ``names`` of the folder ``work`` into ``save_dir`` as one set; returns their new paths.

    The files of an earlier export they replace, and ``stale`` ones (which would no longer match), first
    go aside into ``work`` (the model file, ``.json``, first); then the new ones come in, the ``.json``
    last. A move that fails (``OSError``) puts the earlier files back before it is raised. So ``save_dir``
    holds the earlier set, the new set, or (only while a killed process was between the two) a set without
    its ``.json``, which nothing loads: never a model file with another export's weights.
    """
    aside = os.path.join(work, ".earlier")
    os.makedirs(aside)
    model_last = lambda file: (file.endswith(".json"), file)
    earlier = [f for f in sorted(set(names) | set(stale), key=model_last, reverse=True)
               if os.path.lexists(os.path.join(save_dir, f))]
    moved_aside, moved_in = [], []
    try:
        for file in earlier:
            os.replace(os.path.join(save_dir, file), os.path.join(aside, file))
            moved_aside.append(file)
        for file in sorted(names, key=model_last):
            os.replace(os.path.join(work, file), os.path.join(save_dir, file))
            moved_in.append(file)
    except OSError:
        for file in reversed(moved_in):
            os.replace(os.path.join(save_dir, file), os.path.join(work, file))
        for file in reversed(moved_aside):
            os.replace(os.path.join(aside, file), os.path.join(save_dir, file))
        raise
    for file in stale:
        if file in moved_aside:
            log.warning("removed %s, left by an earlier export: it no longer matches the files just written",
                        os.path.join(save_dir, file))
    return [os.path.join(save_dir, file) for file in names]


def check(runtime, got, expected):
    """Raise ``RunError`` unless ``got`` matches the dygraph output ``expected`` within ``TOLERANCE``."""
    if got.shape != expected.shape:
        raise RunError(f"the exported model gives output {list(got.shape)} under {runtime}, the dygraph model "
                       f"{list(expected.shape)}: nothing was written")
    error = float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))
    if not error <= TOLERANCE:  # NaN fails too
        raise RunError(f"the exported model disagrees with the dygraph model under {runtime} (relative "
                       f"difference {error:.2e}): nothing was written")
    log.info("%s runs the exported model: relative difference from dygraph %.1e", runtime, error)


def run_paddle_inference(model_file, params_file, inputs):
    """Run an exported model once with Paddle Inference on CPU; inputs in the model's input order."""
    config = paddle.inference.Config(model_file, params_file)
    if not quiet.VERBOSE:
        config.disable_glog_info()
    config.disable_gpu()
    predictor = paddle.inference.create_predictor(config)
    for input_name, array in zip(predictor.get_input_names(), inputs):
        handle = predictor.get_input_handle(input_name)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    with quiet.native_stdout_muted():  # oneDNN's ReduceMeanCheckIfOneDNNSupport
        predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def run_onnxruntime(onnx_file, inputs):
    """Run an ONNX model once with onnxruntime on CPU; inputs in the model's input order."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: not its notes on paddle2onnx's unused constants
    session = onnxruntime.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})[0]


# paddle2onnx aborts the whole process (SIGABRT) on an operator it cannot convert, so it runs in a
# child. save_file=None returns the model instead of saving it: saving runs Polygraphy, which pip-installs
# packages at run time.
_CONVERT = """import sys, paddle2onnx
data = paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=None, opset_version=int(sys.argv[4]))
with open(sys.argv[3], "wb") as f:
    f.write(data)
"""


def convert_to_onnx(model_file, params_file, onnx_file):
    """Convert a ``paddle.jit.save`` model to ONNX with paddle2onnx; ``RunError`` with its error if it fails."""
    done = subprocess.run([sys.executable, "-c", _CONVERT, model_file, params_file, onnx_file, str(ONNX_OPSET)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    log.debug("paddle2onnx output:\n%s", done.stdout)
    if done.returncode != 0 or not os.path.isfile(onnx_file):
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line] or lines[-1:] or ["no output"]
        raise RunError(f"paddle2onnx could not convert the model (exit {done.returncode}): {errors[0]}; "
                       f"nothing was written (--onnx=no exports the Paddle model alone)")


# The exported AttentionLSTM runs its LSTM as a loop of small operators, which oneDNN runs several times
# slower than Paddle's own CPU kernels (bench/README.md, bench_engine.py).
ONEDNN = {"AttentionLSTM": False, "TSN": True}


class InferenceRunner:
    """A loaded dygraph model, exported and run through Paddle Inference: ``predict.py`` and ``eval.py``
    with ``--engine inference``.

    The export goes to a fresh temporary directory, private to this process and removed once the
    predictor has read it, so no export of other weights (or a half-written one) can ever be picked up.
    Before it is used it must give the dygraph model's logits on a sample input (``check``).

    ``runner(*inputs)``: the model's inputs as numpy arrays, as its reader collates them (AttentionLSTM:
    features float32 [B, T, F], lengths int64 [B]) -> logits float32 [B, C].
    """

    def __init__(self, model_name, model, cfg, use_gpu=False, device_id=0, cpu_threads=None, onednn=None):
        from .inference import predictor_config
        model.eval()
        graph, specs, sample = graph_and_inputs(model_name, model, cfg)
        self.dtypes = [a.dtype for a in sample]  # the dtypes of the specs
        with paddle.no_grad():
            expected = model(*[paddle.to_tensor(a) for a in sample]).numpy()
        work = tempfile.mkdtemp(prefix="videotag_engine_")
        try:
            prefix = os.path.join(work, FILE_NAMES[model_name])
            with warnings.catch_warnings():  # as in export_model
                warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
                paddle.jit.save(graph, prefix, input_spec=specs)
            config = predictor_config(prefix + ".json", prefix + ".pdiparams", use_gpu, cpu_threads,
                                      onednn=ONEDNN[model_name] if onednn is None else onednn,
                                      device_id=device_id)
            self.predictor = paddle.inference.create_predictor(config)  # reads both files completely
        except OSError as e:
            raise RunError(f"cannot export the model for Paddle Inference: {e.strerror or e}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.inputs = [self.predictor.get_input_handle(n) for n in self.predictor.get_input_names()]
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        with quiet.native_stdout_muted():  # oneDNN's first-run print
            check("Paddle Inference", self(*sample), expected)

    def __call__(self, *arrays):
        for handle, array, dtype in zip(self.inputs, arrays, self.dtypes):
            array = np.ascontiguousarray(array, dtype=dtype)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        self.predictor.run()
        return self.output.copy_to_cpu()

