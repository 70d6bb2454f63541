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
