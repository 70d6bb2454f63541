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


def fussy_stream(jobs, decode, out):
    """A stream worker for the tagger's test (as ``readers.windows.stream_worker``): per video two
    "window" messages and a "video" one, except that "crash*" kills the process after its first window
    and "zero*" raises."""
    for index, path in jobs:
        name = os.path.basename(path)
        out.put((index, ("window", 0, 0.0, 1.0, np.full((1,), len(name)))))
        if name.startswith("crash"):
            os._exit(1)
        if name.startswith("zero"):
            out.put((index, ("failed", "ZeroDivisionError: division by zero")))
        else:
            out.put((index, ("window", 1, 1.0, 2.0, np.full((1,), len(name)))))
            out.put((index, ("video", np.full((1,), len(name)), 3)))
        out.put((index, ("end",)))
