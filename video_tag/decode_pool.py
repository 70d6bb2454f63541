"""One pool of decode worker processes, with one crash rule, for the extractor and the tagger.

Worker w (of n) decodes jobs w, w + n, w + 2n, ... in order, one at a time, calling
``function(job, emit, *args)`` in its own process (spawned: no Paddle, no inherited threads; one
decoding thread at the lowest CPU priority, ``init_decode_worker``). Each message it emits goes at once
through the worker's own pipe; a pipe write blocks until the consumer has taken the previous message, so
a worker runs at most one message ahead, and a message sent is never lost with its worker (no queue
thread: what a worker sent before dying is read before its end of the pipe closes). Iterating the pool
yields ``(job, messages)`` in job order; ``messages`` (consume it before the next job) yields the job's
messages, its last one ``("failed", reason)`` if the job could not be decoded.

The crash rule: an exception in ``function`` fails that job (``failure_reason``) and the worker goes on.
A worker that dies (a decoder that crashes its process) was decoding the job whose end has not come:
a fresh worker decodes that job again, alone first, skipping the messages already delivered (decoding
is deterministic), then the rest of the dead worker's jobs; if the job kills its fresh worker as well,
it alone fails with ``CRASHED`` and another fresh worker takes the rest.

Shutdown (leaving the ``with`` block, also on an exception such as a full disk): the workers are
terminated and joined and the pipes closed, before the exception goes on; a worker that finds its pipe
closed exits quietly. No threads and no wakeup pipe (as ``concurrent.futures`` has): nothing of the pool
prints a traceback at exit.
"""
import multiprocessing

from .errors import failure_reason
from .readers.video_reader import init_decode_worker

CRASHED = "the decoder crashed on this video"


def returned(job, emit, function, *args):
    """For a decode function that returns its result: ``emit(("result", function(job, *args)))``."""
    emit(("result", function(job, *args)))


def _work(function, args, jobs, connection):
    """A worker process: ``jobs`` is ``[(number, job)]``; sends ``(number, message)`` for each message,
    then ``(number, ("end",))``."""
    init_decode_worker()
    try:
        for number, job in jobs:
            try:
                function(job, lambda message: connection.send((number, message)), *args)
            except (BrokenPipeError, ConnectionResetError):
                return  # the pool is gone: nobody reads
            except Exception as e:  # cv2.error, MemoryError, ...: this job's problem; go on with the next
                connection.send((number, ("failed", failure_reason(e))))
            connection.send((number, ("end",)))
    except (BrokenPipeError, ConnectionResetError):
        return


class _Worker:
    def __init__(self, process, reader, numbers):
        self.process, self.reader, self.numbers = process, reader, numbers


class DecodePool:
    """``jobs`` (picklable) decoded by ``function(job, emit, *args)`` (a module-level function) in
    ``num_workers`` processes; see the module docstring. Use as a context manager."""

    def __init__(self, jobs, function, args=(), num_workers=1):
        self.jobs, self.function, self.args = list(jobs), function, tuple(args)
        self.context = multiprocessing.get_context("spawn")
        self.count = max(1, min(num_workers, len(self.jobs)))
        self.workers = [self._start(list(range(w, len(self.jobs), self.count))) for w in range(self.count)]

    def _start(self, numbers):
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_work, daemon=True,
                                       args=(self.function, self.args, [(n, self.jobs[n]) for n in numbers],
                                             writer))
        process.start()
        writer.close()  # the worker holds the only writer: its death ends the pipe
        return _Worker(process, reader, numbers)

    def __iter__(self):
        for number, job in enumerate(self.jobs):
            yield job, self._messages(number)

    def _messages(self, number):
        w = number % self.count
        delivered, skip, retried = 0, 0, False
        while True:
            worker = self.workers[w]
            try:
                got, message = worker.reader.recv()
            except (EOFError, OSError):  # the worker died before this job's end
                self._stop(worker)
                rest = [n for n in worker.numbers if n > number]
                if retried:  # it killed a fresh worker too
                    self.workers[w] = self._start(rest)
                    yield ("failed", CRASHED)
                    return
                self.workers[w] = self._start([number] + rest)
                skip, retried = delivered, True
                continue
            if got != number:
                continue  # the rest of an earlier job whose consumer stopped reading (at its last message)
            if message[0] == "end":
                return
            if skip:
                skip -= 1
                continue
            delivered += 1
            yield message

    def _stop(self, worker):
        if worker.process.is_alive():
            worker.process.terminate()
        worker.process.join()
        worker.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for worker in self.workers:
            self._stop(worker)
