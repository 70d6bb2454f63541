"""Third-party chatter kept off the console, all in one place; ``--verbose`` (every entry script) keeps it.

What a run would print otherwise, and what turns each off:

- ``import paddle``: a UserWarning "No ccache found" (ccache only matters for building C++ extensions):
  a warnings filter.
- ``import paddle`` with OMP_NUM_THREADS > 1: "WARNING: OMP_NUM_THREADS set to N ... PLEASE USE
  OMP_NUM_THREADS WISELY." on stderr (this project sets Paddle's threads itself: cpu.py): Paddle is
  imported once here with those two lines dropped.
- Paddle's C++ glog INFO and WARNING lines (``W1129 ... eager_utils.cc ... PIR not support input out
  tensor``): GLOG_minloglevel=2 (errors still show). glog reads it when libpaddle loads, so it must be in
  the environment before ``import paddle``; child processes inherit it.
- Paddle Inference's glog lines (``analysis_predictor.cc ... pir optimization completed``):
  ``Config.disable_glog_info()`` (inference.py asks ``VERBOSE``).
- Paddle Inference's oneDNN build prints ``ReduceMeanCheckIfOneDNNSupport`` from C++ straight to stdout at
  a predictor's first run: ``native_stdout_muted`` around that run.
- FFmpeg's own lines about unreadable videos (``[mov,mp4,... @ 0x...] moov atom not found``):
  OPENCV_FFMPEG_LOGLEVEL=-8 (AV_LOG_QUIET), read by OpenCV at its first VideoCapture; decode workers
  inherit it. The video is still reported, in one line and in failed.list.
- INFO records Paddle logs through the root logger: cli.setup_logging shows other libraries' warnings
  and errors only.

A user's own GLOG_minloglevel or OPENCV_FFMPEG_LOGLEVEL wins. Every entry script calls ``setup()``
first (through ``video_tag.cli.setup_process``), before anything imports Paddle or OpenCV; importing
this module sets nothing.
"""
import contextlib
import io
import multiprocessing
import os
import sys
import warnings


def _asks_verbose(argv):
    # Every prefix argparse would accept for --verbose ("--v" alone is ambiguous with --valid_interval).
    return any(len(arg) > 3 and "--verbose".startswith(arg) for arg in argv)


VERBOSE = _asks_verbose(sys.argv[1:])

QUIET_ENV = {"GLOG_minloglevel": "2", "OPENCV_FFMPEG_LOGLEVEL": "-8"}
# Names of QUIET_ENV that setup() put in the environment (not the user), so that a --verbose process
# started by a quiet one (a test, a demo script) can take them out again.
_MARK = "VIDEOTAG_QUIET_ENV"
OMP_ADVICE = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY")


def setup(verbose=VERBOSE):
    """Silence the chatter above for this process and the processes it starts (or, verbose, undo what a
    quiet parent process set). Call before Paddle or OpenCV is imported."""
    ours = [name for name in os.environ.get(_MARK, "").split(",") if name]
    if verbose:
        for name in ours:
            if os.environ.get(name) == QUIET_ENV.get(name):
                del os.environ[name]
        os.environ.pop(_MARK, None)
        return
    for name, value in QUIET_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            ours.append(name)
    if ours:
        os.environ[_MARK] = ",".join(sorted(set(ours)))
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    # Decode workers (spawned processes) import the entry script but never need Paddle.
    if "paddle" not in sys.modules and _omp_advice_due() and multiprocessing.current_process().name == "MainProcess":
        _import_paddle_without_omp_advice()


def _omp_advice_due():
    """Whether ``import paddle`` will print its OMP_NUM_THREADS advice (Paddle 2.x-3.x: when it is > 1)."""
    try:
        return int(os.environ.get("OMP_NUM_THREADS", "1")) > 1
    except ValueError:
        return False


def _import_paddle_without_omp_advice():
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import paddle  # noqa: F401
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True) if not line.startswith(OMP_ADVICE)]
        sys.stderr.write("".join(kept))


@contextlib.contextmanager
def native_stdout_muted():
    """Send what native code writes to stdout (file descriptor 1) to the null device meanwhile, unless
    ``VERBOSE``. Python's stdout is flushed first, so earlier text is not lost; text another thread
    flushes meanwhile would be. Native code's buffered stdout is flushed (to the null device) at the end."""
    if VERBOSE:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio():
    """fflush(NULL): C++ output still buffered in the C library goes where stdout points now."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # not a POSIX C library
        pass
