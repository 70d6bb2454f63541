"""Readers, by the ``--model_name`` they feed, and the threaded batch loader they share."""
import collections
import logging
from concurrent.futures import ThreadPoolExecutor

from .feature_reader import FeatureReader

log = logging.getLogger(__name__)

READERS = {"AttentionLSTM": FeatureReader}


def iterate_batches(reader, batches, num_workers=2, on_error=None, prefetch=2):
    """Load and collate batches of sample indices, a few batches ahead, on ``num_workers`` threads.

    batches: iterable of index lists (e.g. a ``paddle.io.BatchSampler``). A sample whose ``load``
    raises ``ValueError`` is left out of its batch and reported through ``on_error(entry, reason)``
    (default: a warning naming the file); a batch left empty is skipped.
    Yields the dicts of ``reader.collate``.
    """
    on_error = on_error or (lambda entry, reason: log.warning("skipping %s: %s", entry.path, reason))

    def load(index):
        try:
            return reader.load(index)
        except ValueError as e:
            return e

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
                if isinstance(result, ValueError):
                    on_error(reader.entries[index], str(result))
                else:
                    samples.append(result)
            if samples:
                yield reader.collate(samples)
