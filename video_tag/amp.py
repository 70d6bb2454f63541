"""Mixed-precision training (``train.py --amp`` / ``TRAIN.amp: true``): which low precision a device gets.

``choose(device, ...)`` decides, from what the device supports:

    GPU, compute capability >= 8.0, CUDA >= 11   bfloat16 (float32's exponent range: no loss scaling)
    GPU, compute capability 7.x                   float16 with dynamic loss scaling (paddle.amp.GradScaler)
    older GPUs                                    float32, with a warning
    CPU                                           float32, with a warning (below)

Paddle 3.3.1 mixes precision in dygraph on GPUs (and XPUs, custom devices) only: ``paddle.amp.auto_cast``
makes no effect on a CPU place, and the CPU build's matmul has no bfloat16 kernel (oneDNN's bfloat16
kernels are there, but only Paddle Inference's static graphs reach them). A CPU with native bfloat16
(AVX512-BF16, AMX) therefore trains in float32 too: there is nothing to measure faster.

Autocast level O1: parameters, gradients, optimizer state and checkpoints stay float32 (release format);
matmuls and convolutions run in the low precision, and what paddle.amp keeps in float32 (softmax, the
losses, ...) stays there. The AttentionLSTM's peephole recurrence stays float32 inside the autocast
region (models/peephole_lstm.py, ``bidirectional``): its input projections are low precision, the
recurrence (fused kernel or videotag's own) is not; the logits go to the loss as float32.
"""
import contextlib
import logging
from typing import NamedTuple, Optional

import paddle

log = logging.getLogger(__name__)

LOW_PRECISION = (paddle.float16, paddle.bfloat16)


class Precision(NamedTuple):
    """dtype: "bfloat16", "float16" or None (float32); scaled: dynamic loss scaling; reason: for the log."""
    dtype: Optional[str]
    scaled: bool
    reason: str


def choose(device, capability=None, cuda_version=None, cpu_bf16=False):
    """The precision ``--amp`` trains in on ``device`` ("gpu" or "cpu").

    capability: the GPU's compute capability (major, minor); cuda_version: the CUDA Paddle was built with
    ("12.3"); cpu_bf16: the CPU has native bfloat16 (only for the message).
    """
    if device == "gpu":
        cc = f"compute capability {capability[0]}.{capability[1]}"
        cuda_major = int(str(cuda_version).split(".")[0]) if str(cuda_version)[:1].isdigit() else 0
        if capability[0] >= 8 and cuda_major >= 11:
            return Precision("bfloat16", False, f"bfloat16 autocast ({cc})")
        if capability[0] >= 7:
            return Precision("float16", True, f"float16 autocast with dynamic loss scaling ({cc}, no bfloat16)")
        return Precision(None, False, f"--amp: this GPU ({cc}) has no fast float16: training in float32")
    native = " although this CPU has native bfloat16" if cpu_bf16 else ""
    return Precision(None, False, f"--amp: Paddle {paddle.__version__} trains in mixed precision on GPUs only "
                                  f"(no bfloat16 training kernels on CPU{native}): training in float32")


def for_training(enabled):
    """The ``Precision`` of this process's device (``paddle.set_device`` done) when ``enabled``, logged
    once; float32 without a word when not."""
    if not enabled:
        return Precision(None, False, "")
    place = paddle.framework._current_expected_place()
    if isinstance(place, paddle.CUDAPlace):
        precision = choose("gpu", paddle.device.cuda.get_device_capability(), paddle.version.cuda())
    else:
        precision = choose("cpu", cpu_bf16=cpu_has_bf16())
    (log.info if precision.dtype else log.warning)("%s", precision.reason)
    return precision


def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU announces native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16); False if unknown."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(precision):
    """The autocast region of a training forward pass (nothing when float32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return paddle.amp.auto_cast(enable=True, dtype=precision.dtype, level="O1")


def loss_scaler(precision):
    """A ``paddle.amp.GradScaler`` for float16 (dynamic loss scaling, Paddle's defaults), else None."""
    return paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if precision.scaled else None
