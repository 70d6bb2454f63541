"""The readers (each model's ``ModelSpec`` names its own) and the batch loader they share."""
import collections
import logging
from concurrent.futures import ThreadPoolExecutor

from .feature_reader import FeatureReader  # noqa: F401 (the readers, importable from here)
from .video_reader import VideoReader  # noqa: F401
from . import workers
from .. import feature_files
from ..errors import failure_reason

log = logging.getLogger(__name__)


def iterate_batches(reader, batches, num_workers=2, on_error=None, prefetch=2, refill=False):
    """Load and collate batches of sample indices, a few batches ahead, in the sampler's order.

    batches: iterable of index lists (e.g. a ``paddle.io.BatchSampler``); the batches come out in its
    order. A sample whose ``load`` raises ``ValueError`` (or any other ``Exception``: a decoder's
    ``cv2.error``, ``MemoryError``, ``ZeroDivisionError``, ... is that sample's failure, not the run's;
    ``KeyboardInterrupt`` and ``SystemExit`` pass) is reported once through ``on_error(entry, reason)``
    (default: a warning naming the file and list line) and left out of its batch; a batch left empty
    is skipped. With ``refill`` (training) it is replaced by the next readable sample of the list
    instead, so every batch keeps its size and every data-parallel process runs the same number of steps.
    Yields the dicts of ``reader.collate``.

    Readers marked ``in_processes`` (the feature reader) load and collate each batch in one of
    ``num_workers`` worker processes (``workers.py``; ``prefetch`` batches per worker in flight), other
    readers (video decoding, which releases the GIL) on ``num_workers`` threads; ``num_workers=0``
    loads in this process.
    """
    bad = set()

    def report(failures):
        for index, reason in failures:
            if index not in bad:
                bad.add(index)
                (on_error or _warn)(reader.entries[index], reason)

    if num_workers < 1:
        for indices in batches:
            samples, failures = workers.load_batch(reader, indices, refill, bad.copy())
            report(failures)
            if samples:
                yield reader.collate(samples)
        return
    if getattr(reader, "in_processes", False) and workers.available():
        yield from _in_processes(reader, batches, num_workers, prefetch, refill, report)
        return

    def load(index):
        try:
            return reader.load(index)
        except ValueError as e:
            return e
        except Exception as e:  # the reader's own code failed on this sample's data
            return ValueError(failure_reason(e))

    with ThreadPoolExecutor(num_workers) as pool:
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
                    report([(index, str(result))])
                    if not refill or len(bad) >= len(reader):
                        break
                    index = (index + 1) % len(reader)
                    result = ValueError("known bad") if index in bad else load(index)
                else:
                    samples.append(result)
            if samples:
                yield reader.collate(samples)


def _in_processes(reader, batches, num_workers, prefetch, refill, report):
    """``iterate_batches`` with each batch loaded and collated by one of ``num_workers`` processes."""
    batches = iter(batches)
    with workers.Workers(reader, num_workers, max(1, prefetch) * num_workers, refill) as pool:
        sent = received = 0
        while True:
            while pool.can_submit():
                indices = next(batches, None)
                if indices is None:
                    break
                pool.submit(sent, indices)
                sent += 1
            if received == sent:
                return
            batch, failures = pool.result(received)
            received += 1
            report(failures)
            if batch is not None:
                yield batch


def to_tensors(batch, on_device=None):
    """``batch["inputs"]`` as Paddle tensors on the current device, for the model. Features collated in a
    compact form become float32 there: float16 is cast; uint8 is dequantised with ``batch["scale"]`` and
    ``batch["offset"]`` ([B, F]) and zeroed beyond each row's length (``inputs[1]``), as ``collate`` pads.

    on_device: dequantise uint8 with Paddle on the device (a quarter of the bytes to copy to a GPU), or
    with numpy before the copy (default on CPU, where Paddle's broadcasting kernels are 10x slower:
    bench/README.md).
    """
    import paddle
    inputs = list(batch["inputs"])
    if on_device is None:
        on_device = not paddle.get_device().startswith("cpu")
    if "scale" in batch and not on_device:
        q, lengths = inputs[0], inputs[1]
        x = feature_files.dequantize(q, batch["scale"][:, None, :], batch["offset"][:, None, :])
        for row, length in enumerate(lengths):
            x[row, length:] = 0
        inputs[0] = x
    tensors = [paddle.to_tensor(x) for x in inputs]
    if "scale" in batch and on_device:
        q, lengths = tensors[0], tensors[1]
        steps = paddle.arange(q.shape[1], dtype=lengths.dtype)
        valid = (steps.unsqueeze(0) < lengths.unsqueeze(1)).astype("float32").unsqueeze(2)
        scale = paddle.to_tensor(batch["scale"]).unsqueeze(1)
        offset = paddle.to_tensor(batch["offset"]).unsqueeze(1)
        tensors[0] = (q.astype("float32") * scale + offset) * valid
    elif tensors and tensors[0].dtype == paddle.float16:
        tensors[0] = tensors[0].astype("float32")
    return tensors


def _warn(entry, reason):
    log.warning("skipping %s (list line %d): %s", entry.path, entry.line, reason)
