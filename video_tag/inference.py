"""Run a dygraph feature backbone through Paddle Inference, the fastest path Paddle offers.

On CPU this is the oneDNN predictor: ~7x dygraph fp32 speed on ResNet101, ~2x that again in bf16 on a CPU
with native bf16 (avx512_bf16 / AMX). See GUIDE section 5 and ``bench/bench_backbone.py``.

``predictor.run()`` holds the GIL for the whole batch (Paddle 3.3's binding releases it only in
custom-device builds): Python threads stall meanwhile, so decode in other *processes* to overlap.

    engine = InferenceEngine(backbone, input_shape=(None, 3, 224, 224), precision="bf16")
    features = engine.run(frames)          # float32 [N, 3, 224, 224] -> float32 [N, 2048]
"""
import contextlib
import os
import shutil
import tempfile
import threading

import numpy as np
import paddle

from . import quiet
from .cpu import default_cpu_threads

try:
    import paddle.inference as paddle_infer
except ImportError:  # some minimal/custom builds ship without the inference library
    paddle_infer = None

PRECISIONS = ("fp32", "bf16", "fp16")


def cpu_supports_bf16():
    """True when this CPU does bf16 natively (avx512_bf16 or AMX), so oneDNN bf16 is faster than fp32.

    ``core.supports_bfloat16()`` alone only means "can emulate" (avx512_core), which is slower than fp32.
    """
    core = paddle.base.core
    return bool(core.supports_bfloat16() and core.supports_bfloat16_fast_performance())


def export_layer(layer, input_shape, prefix):
    """``paddle.jit.save`` the eval-mode graph of ``layer`` to ``<prefix>.json`` + ``<prefix>.pdiparams``.

    The layer's training flag is restored afterwards; its weights are not touched.
    """
    was_training = layer.training
    # jit.save already marks batch norm is_test, but Python branches on self.training (dropout and the
    # like) are traced as the layer stands: trace the eval branch.
    layer.eval()
    try:
        spec = paddle.static.InputSpec(list(input_shape), "float32", "x")
        paddle.jit.save(layer, prefix, input_spec=[spec])
    finally:
        if was_training:
            layer.train()
    return prefix + ".json", prefix + ".pdiparams"


def check_device(precision, use_gpu, batch_size=1):
    """Raise ``RuntimeError`` / ``ValueError`` when this Paddle build or machine cannot run ``precision``."""
    if paddle_infer is None:
        raise RuntimeError("this Paddle build has no paddle.inference; install the paddlepaddle wheel")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if use_gpu and not paddle.device.is_compiled_with_cuda():
        raise RuntimeError("use_gpu=True needs a CUDA build of Paddle (paddlepaddle-gpu)")
    if not use_gpu and precision == "fp16":
        raise ValueError("precision 'fp16' is GPU only; on CPU use 'bf16' or 'fp32'")
    if not use_gpu and precision == "bf16" and not cpu_supports_bf16():
        raise RuntimeError("precision 'bf16' needs a CPU with native bf16 (avx512_bf16 or AMX); "
                           "this one has none, use 'fp32'")


class InferenceEngine:
    """A Paddle Inference predictor built from a dygraph layer with one float32 input and one output.

    Args:
        layer: ``paddle.nn.Layer``; ``forward(self, x [N, *input_shape[1:]])`` -> one tensor [N, ...].
        input_shape: input shape with ``None`` for the variable batch dimension.
        precision: "fp32"; "bf16" (CPU with native bf16, or GPU); "fp16" (GPU only).
            Inputs and outputs stay float32 in every precision.
        use_gpu, device_id, gpu_memory_mb: run on a CUDA GPU (needs a CUDA build of Paddle).
        cpu_threads: oneDNN/OpenMP threads; default ``default_cpu_threads()``.
        batch_size: ``run`` feeds the predictor at most this many samples at a time.
        cache_dir: keep the exported model there (``backbone.json`` / ``backbone.pdiparams``);
            by default it goes to a temporary directory removed once the predictor is built.
        exported: a folder holding ``backbone.json`` / ``backbone.pdiparams`` already exported from
            the layer (``export_layer``): the predictor is built from them and ``layer`` is not used.

    ``run`` may be called from any thread; calls are serialised (one predictor, shared handles).
    """

    def __init__(self, layer, input_shape=(None, 3, 224, 224), precision="fp32", use_gpu=False,
                 cpu_threads=None, batch_size=8, cache_dir=None, device_id=0, gpu_memory_mb=256, exported=None):
        check_device(precision, use_gpu, batch_size)
        self.input_shape = tuple(input_shape)
        self.precision = precision
        self.batch_size = int(batch_size)
        self.cpu_threads = int(cpu_threads or default_cpu_threads())

        workdir = exported or cache_dir or tempfile.mkdtemp(prefix="videotag_infer_")
        try:
            os.makedirs(workdir, exist_ok=True)
            prefix = os.path.join(workdir, "backbone")
            model_file, params_file = ((prefix + ".json", prefix + ".pdiparams") if exported
                                       else export_layer(layer, self.input_shape, prefix))
            config = self._config(model_file, params_file, use_gpu, device_id, gpu_memory_mb)
            self.predictor = paddle_infer.create_predictor(config)  # reads both files completely
        finally:
            if not (exported or cache_dir):
                shutil.rmtree(workdir, ignore_errors=True)
        self._lock = threading.Lock()
        self._input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self._first_run = True

    def _config(self, model_file, params_file, use_gpu, device_id, gpu_memory_mb):
        return predictor_config(model_file, params_file, use_gpu, self.cpu_threads, self.precision,
                                device_id=device_id, gpu_memory_mb=gpu_memory_mb)

    def run(self, batch):
        """Features of a batch: float32 [N, *input_shape[1:]] -> float32 [N, ...] (N >= 1, any size)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = self.input_shape[1:]
        if batch.ndim != len(self.input_shape) or batch.shape[0] < 1 or any(
                e is not None and e != -1 and e != s for e, s in zip(expected, batch.shape[1:])):
            raise ValueError(f"expected input [N, {', '.join(str(e) for e in expected)}], "
                             f"got {list(batch.shape)}")
        with self._lock:
            # The oneDNN build prints a debug line to stdout at a predictor's first run.
            with quiet.native_stdout_muted() if self._first_run else contextlib.nullcontext():
                outputs = [self._run_chunk(batch[i:i + self.batch_size])
                           for i in range(0, batch.shape[0], self.batch_size)]
            self._first_run = False
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    __call__ = run

    def _run_chunk(self, chunk):
        self._input.reshape(list(chunk.shape))
        self._input.copy_from_cpu(chunk)
        self.predictor.run()
        return self._output.copy_to_cpu()


def predictor_config(model_file, params_file, use_gpu=False, cpu_threads=None, precision="fp32", onednn=True,
                     device_id=0, gpu_memory_mb=256):
    """A ``paddle.inference.Config`` for an exported model: on CPU with ``cpu_threads`` threads (default
    ``default_cpu_threads()``) and oneDNN unless ``onednn`` is False; on GPU ``device_id``, with
    ``precision`` "fp16"/"bf16" turning on Paddle's mixed precision pass."""
    config = paddle_infer.Config(model_file, params_file)
    if not quiet.VERBOSE:
        config.disable_glog_info()
    config.switch_ir_optim(True)
    # No config.enable_memory_optim(): with the PIR programs of Paddle 3.x create_predictor fails with
    # "Not find predictor_id 0 and pass_name memory_optimize_pass"; PIR reuses buffers on its own.
    if use_gpu:
        # Not tested here (CPU-only machine); API as in AnalysisConfig::EnableUseGpu of Paddle 3.x:
        # Half/Bfloat16 turn on the auto mixed precision pass (bf16 needs compute capability >= 8.0).
        mode = {"fp32": paddle_infer.PrecisionType.Float32, "fp16": paddle_infer.PrecisionType.Half,
                "bf16": paddle_infer.PrecisionType.Bfloat16}[precision]
        config.enable_use_gpu(gpu_memory_mb, device_id, mode)
    else:
        config.disable_gpu()
        if onednn:
            config.enable_onednn()  # already the default in 3.3 CPU builds; explicit for older ones
            if precision == "bf16":
                config.enable_onednn_bfloat16()
        else:
            config.disable_onednn()
        config.set_cpu_math_library_num_threads(int(cpu_threads or default_cpu_threads()))  # its default is 1
    return config
