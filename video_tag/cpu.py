"""CPU settings that decide speed: how many threads Paddle's math library runs, and the environment the
process was started with (which ``import paddle`` rewrites)."""
import math
import os

import paddle

_math_threads = 1  # `import paddle` keeps its math library (MKL/OpenMP) on one thread


def set_math_threads(threads):
    """Run Paddle's math library on ``threads`` threads (from here on, in this process)."""
    global _math_threads
    paddle.base.core.set_num_threads(int(threads))
    _math_threads = int(threads)


def math_threads():
    """The threads Paddle's math library runs on, as set through ``set_math_threads`` (Paddle has no getter)."""
    return _math_threads


def reuse_freed_memory():
    """Keep freed large blocks in the process instead of returning them to the OS (glibc only), for
    dygraph training and inference on CPU.

    glibc serves every allocation over 32 MB (a [9600, 2048] float32 activation is 78 MB) with a fresh
    mmap and unmaps it when freed, so each training step faults every page of its big tensors in again,
    and on VMs a page fault costs ~10 us. Measured on the full AttentionLSTM, batch 32 (bench/README.md):
    training steps 5-20% faster, steady resident memory ~20% higher (3.2 instead of 2.65 GB; it does not
    grow with the number of steps). A user's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins.
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


def launch_env(name):
    """``name`` from the environment the process started with, or None (also where that is unknowable).

    ``import paddle`` writes OMP_NUM_THREADS=1 into ``os.environ`` when it is unset, so ``os.environ``
    cannot tell a user's setting from Paddle's; /proc/self/environ (Linux) still can.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return None
    prefix = name.encode() + b"="
    return next((e[len(prefix):].decode(errors="replace") for e in entries if e.startswith(prefix)), None)


def parent_env(name):
    """``name`` from the environment the parent process started with, or None (also where unknowable)."""
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return None
    prefix = name.encode() + b"="
    return next((e[len(prefix):].decode(errors="replace") for e in entries if e.startswith(prefix)), None)


def child_env():
    """The environment for a process of ours started by this one: ``os.environ`` without the
    OMP_NUM_THREADS=1 that ``import paddle`` wrote into it (the child would take that 1 for the user's
    choice and compute on one core); a value this process started with is passed on."""
    env = dict(os.environ)
    if launch_env("OMP_NUM_THREADS") is None:
        env.pop("OMP_NUM_THREADS", None)
    return env


def launched_processes(environ=None):
    """Processes of a ``paddle.distributed`` job in total (PADDLE_TRAINERS_NUM; 1 when not launched)."""
    environ = os.environ if environ is None else environ
    value = environ.get("PADDLE_TRAINERS_NUM", "1").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def local_processes(environ=None):
    """How many processes of this ``paddle.distributed`` job run on this machine (1 when not launched).

    ``paddle.distributed.launch`` says it in PADDLE_LOCAL_SIZE; ``paddle.distributed.spawn`` (and the
    older fleet launcher) only list every process's endpoint: count those on this process's host.
    """
    environ = os.environ if environ is None else environ
    if launched_processes(environ) <= 1:
        return 1
    local = environ.get("PADDLE_LOCAL_SIZE", "").strip()
    if local.isdigit() and int(local) > 0:
        return int(local)
    endpoints = [e.strip() for e in environ.get("PADDLE_TRAINER_ENDPOINTS", "").split(",") if e.strip()]
    host = environ.get("PADDLE_CURRENT_ENDPOINT", "").rpartition(":")[0]
    same_host = sum(e.rpartition(":")[0] == host for e in endpoints)
    return same_host if host and same_host else launched_processes(environ)


def user_threads():
    """OMP_NUM_THREADS as the user set it (an int > 0), or None.

    Only the environment the process started with counts (see ``launch_env``). Under
    ``paddle.distributed.launch`` or ``spawn`` that environment comes from a parent that imported Paddle,
    which wrote OMP_NUM_THREADS=1 when it was unset: a 1 the parent itself did not start with is Paddle's.
    """
    value = (launch_env("OMP_NUM_THREADS") or "").strip()
    if not (value.isdigit() and int(value) > 0):
        return None
    if value == "1" and launched_processes() > 1 and parent_env("OMP_NUM_THREADS") is None:
        return None
    return int(value)


def available_cores():
    """The cores this process may run on: those of its CPU affinity, fewer where a container's CPU quota
    allows less."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else cores


def default_cpu_threads():
    """The CPU threads to compute on: OMP_NUM_THREADS when the user set it, else the cores this process
    may run on, shared equally between the processes of a ``paddle.distributed`` job on this machine."""
    return thread_choice()[0]


def thread_choice():
    """``(threads, why)``: ``default_cpu_threads()`` and a few words saying where it comes from."""
    user = user_threads()
    if user:
        return user, "OMP_NUM_THREADS"
    cores, local = available_cores(), local_processes()
    if local > 1:
        return max(1, cores // local), f"{cores} core(s) shared by {local} local processes"
    return cores, "every core this process may run on"


def use_default_threads():
    """Run Paddle's math library on ``default_cpu_threads()`` threads; returns ``(threads, why)``."""
    threads, why = thread_choice()
    set_math_threads(threads)
    return threads, why


def cgroup_cpu_quota(root="/sys/fs/cgroup"):
    """The CPU quota of this container (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``) in whole cores,
    rounded up; None when there is none. More threads than that only take turns on the quota."""
    try:
        with open(os.path.join(root, "cpu.max"), encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else math.ceil(int(quota) / int(period))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as f:
            period = int(f.read())
        return math.ceil(quota / period) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
