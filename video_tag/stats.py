"""``os.stat`` of many paths at once, on two cores: the bookkeeping of a run over a list of a million videos
is mostly system calls (a ``lstat`` of each video, a ``stat`` of each feature file, a few microseconds each,
bench/bench_bookkeeping.py), which one Python thread makes one after another.

    stat_many(paths, follow_symlinks)   [(st_mode, st_size, st_mtime_ns) or None (no such file, or any
                                        other OSError) for each path], in order

Lists of at least ``PARALLEL`` paths are split in two when the process may run on two cores or more: a
helper process stats the second half while this one stats the first. The helper is this file run as a
script by the same Python (``-I -S``: the standard library only; nothing of the caller's program is run
again in it, as a ``multiprocessing`` spawn would its main module); the paths go to it in a temporary file,
the answers come back on its standard output (``marshal``). Threads would not do: each call takes and gives
back the GIL, and the hand-overs cost more than the calls. Anything wrong with the helper (it cannot start,
it dies, it answers something else) only costs time: its half is stat'ed here.
"""
import marshal
import os
import subprocess
import sys
import tempfile

PARALLEL = 100_000  # below this, starting the helper (~0.05 s) costs more than half the calls save


def stat_many(paths, follow_symlinks=True):
    """``[(st_mode, st_size, st_mtime_ns) or None, ...]`` of ``paths`` (a list of str)."""
    if len(paths) < PARALLEL or _cores() < 2 or not _can_help():
        return _stat_part(paths, follow_symlinks)
    half = len(paths) // 2
    with tempfile.TemporaryFile() as job:
        marshal.dump((paths[half:], follow_symlinks), job)
        job.seek(0)
        try:
            helper = subprocess.Popen([sys.executable, "-I", "-S", __file__], stdin=job, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        except OSError:  # no process to spare: all of them here
            return _stat_part(paths, follow_symlinks)
    with helper:
        mine = _stat_part(paths[:half], follow_symlinks)
        try:
            theirs = marshal.loads(helper.stdout.read())
        except (OSError, EOFError, ValueError, TypeError):  # the helper died, or wrote something else
            theirs = None
        helper.kill()  # its output is read to the end: nothing more to wait for, whatever the program was
    if not isinstance(theirs, list) or len(theirs) != len(paths) - half:
        theirs = _stat_part(paths[half:], follow_symlinks)
    mine += theirs
    return mine


def _can_help():
    """Whether this file can be run as a script by this Python (not in a frozen application, whose executable
    is the application itself)."""
    return bool(sys.executable) and not getattr(sys, "frozen", False) and os.path.isfile(__file__)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _stat_part(paths, follow_symlinks):
    stat, found = os.stat if follow_symlinks else os.lstat, []
    append = found.append
    for path in paths:
        try:
            st = stat(path)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            append(None)
            continue
        append((st.st_mode, st.st_size, st.st_mtime_ns))
    return found


if __name__ == "__main__":  # the helper
    _paths, _follow = marshal.load(sys.stdin.buffer)
    sys.stdout.buffer.write(marshal.dumps(_stat_part(_paths, _follow)))
