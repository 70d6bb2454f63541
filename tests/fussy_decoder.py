"""A decode function for the extractor's decode-queue test, in a module that spawned workers import
quickly (no Paddle)."""
import os
import time

import numpy as np


def fussy_decode(path):
    """A decode function for the queue's test: crashes its process, raises, or returns frames by name."""
    name = os.path.basename(path)
    if name.startswith("crash"):
        os._exit(1)
    if name.startswith("zero"):
        return 1 // 0
    if name.startswith("slow"):
        time.sleep(1.5)  # still running when a later video kills the pool
    return np.full((2, 2), len(name))


def fussy_stream(path, emit, decode):
    """A decode job for the tagger's test (as ``readers.windows.stream_levels``): two "window" messages and
    a "video" one, except that "crash*" kills the process after its first window and "zero*" raises."""
    name = os.path.basename(path)
    emit(("window", 0, 0.0, 1.0, np.full((1,), len(name))))
    if name.startswith("crash"):
        os._exit(1)
    if name.startswith("zero"):
        return 1 // 0
    emit(("window", 1, 1.0, 2.0, np.full((1,), len(name))))
    emit(("video", np.full((1,), len(name)), 3))


def flaky_decode(path, marker):
    """Crashes its process the first time it meets ``path`` (it leaves ``marker`` behind), then decodes."""
    if os.path.basename(path).startswith("flaky") and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return np.full((2, 2), len(os.path.basename(path)))


def big_stream(path, emit):
    """Three 8 MB messages: a worker sending them blocks until the consumer reads."""
    for k in range(3):
        emit(("window", k, np.zeros(8 << 20, np.uint8)))


def flaky_stream(path, emit, marker):
    """Three messages; "flaky*" crashes its process after the first two, the first time (leaving
    ``marker``), once they have had time to reach the consumer."""
    emit(("part", 0))
    emit(("part", 1))
    if os.path.basename(path).startswith("flaky") and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(0.5)
        os._exit(1)
    emit(("part", 2))


def odd_stream(path, emit):
    """"odd*" emits a message that cannot be pickled (it cannot reach the consumer); others one message."""
    emit(("window", (lambda: 0) if os.path.basename(path).startswith("odd") else 1))
