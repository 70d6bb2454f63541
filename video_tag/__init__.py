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


def _reuse_freed_memory():
    """Keep freed large blocks in the process instead of returning them to the OS (glibc only).

    glibc serves every allocation over 32 MB (feature batches, activations, gradients: a [9600, 2048]
    float32 tensor is 78 MB) with a fresh mmap and unmaps it when freed, so each training step faults
    every page of them in again. On VMs a page fault costs ~10 us: a quarter of the CPU time of an
    AttentionLSTM training step went there, and keeping freed memory made it ~30% faster
    (bench/README.md). Peak memory does not grow: freed blocks are reused, not added. A user's own
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins.
    """
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    try:
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)   # blocks up to 1 GB come from the heap and are reused
    mallopt(m_trim_threshold, 1 << 30)   # keep up to 1 GB of freed memory at the top of the heap


_mkl_fast_path_on_amd()
_reuse_freed_memory()

__version__ = "0.1.0"
