"""The decode job of the service's worker, in a module without Paddle: ``decode_pool.DecodePool`` spawns
processes that import the module of their function, and a decoder must not load Paddle (~1.3 s, ~300 MB)."""
from ..readers.windows import stream_levels


def decode_job(job, emit):
    """``job``: ``(path, decode)`` with ``decode`` as ``stream_levels`` takes it; emits its windows and shots
    (numbered frames, as videotag.py's decoder), then the whole video. Each job carries its own settings
    (the service's jobs differ in ``segment_seconds`` and ``shots``)."""
    path, decode = job
    stream_levels(path, emit, decode)
