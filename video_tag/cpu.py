"""CPU settings that decide speed: how many threads Paddle's math library runs, and the environment the
process was started with (which ``import paddle`` rewrites)."""
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


def default_cpu_threads():
    """OMP_NUM_THREADS when the process was started with it, else the cores this process may run on."""
    env = (launch_env("OMP_NUM_THREADS") or "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
