"""videotag: tag videos with Baidu's VideoTag models (TSN features + AttentionLSTM) on PaddlePaddle."""
import os


def _mkl_fast_path_on_amd():
    """Paddle's bundled MKL picks a slow generic code path on AMD CPUs; MKL_DEBUG_CPU_TYPE=5 selects its
    AVX2 kernels (about 2x the dygraph matmul speed, same fp32 results: bench/README.md). It must be set
    before MKL loads, i.e. before ``import paddle``, which is why it lives here; a user's setting wins."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        return
    if amd:
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"


_mkl_fast_path_on_amd()

__version__ = "0.2.0"
