"""The readers (each model's ``ModelSpec`` names its own) and the threaded batch loader they share."""
import collections
import logging
from concurrent.futures import ThreadPoolExecutor

from .feature_reader import FeatureReader  # noqa: F401 (the readers, importable from here)
from .video_reader import VideoReader, error_reason  # noqa: F401

log = logging.getLogger(__name__)


def iterate_batches(reader, batches, num_workers=2, on_error=None, prefetch=2, refill=False):
    """Load and collate batches of sample indices, a few batches ahead, on ``num_workers`` threads.

    batches: iterable of index lists (e.g. a ``paddle.io.BatchSampler``). A sample whose ``load``
    raises ``ValueError`` (or any other ``Exception``: a decoder's ``cv2.error``, ``MemoryError``,
    ``ZeroDivisionError``, ... is that sample's failure, not the run's; ``KeyboardInterrupt`` and
    ``SystemExit`` pass) is reported once through ``on_error(entry, reason)`` (default: a warning
    naming the file and list line) and left out of its batch; a batch left empty is skipped. With ``refill``
    (training) it is replaced by the next readable sample of the list instead, so every batch keeps
    its size and every data-parallel process runs the same number of steps.
    Yields the dicts of ``reader.collate``.
    """
    bad = set()

    def report(index, reason):
        if index not in bad:
            bad.add(index)
            (on_error or _warn)(reader.entries[index], reason)

    def load(index):
        try:
            return reader.load(index)
        except ValueError as e:
            return e
        except Exception as e:  # the reader's own code failed on this sample's data
            return ValueError(error_reason(e))

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        pending = collections.deque()
        batches = iter(batches)
        while True:
            while len(pending) < prefetch:
                indices = next(batches, None)
                if indices is None:
                    break
                pending.append((list(indices), [pool.submit(load, i) for i in indices]))
            if not pending:
                return
            indices, futures = pending.popleft()
            samples = []
            for index, future in zip(indices, futures):
                result = future.result()
                while isinstance(result, ValueError):
                    report(index, str(result))
                    if not refill or len(bad) >= len(reader):
                        break
                    index = (index + 1) % len(reader)
                    result = ValueError("known bad") if index in bad else load(index)
                else:
                    samples.append(result)
            if samples:
                yield reader.collate(samples)


def _warn(entry, reason):
    log.warning("skipping %s (list line %d): %s", entry.path, entry.line, reason)
