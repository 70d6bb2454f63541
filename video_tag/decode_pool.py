"""One pool of decode worker processes, with one crash rule, for the extractor and the tagger
(``DecodePool``: a list of jobs known at the start), and the service's workers (``LiveDecodePool``: the
same processes for jobs that arrive over time).

Worker w (of n) decodes jobs w, w + n, w + 2n, ... in order, one at a time, calling
``function(job, emit, *args)`` in its own process (spawned: no Paddle, no inherited threads; one
decoding thread at the lowest CPU priority, ``init_decode_worker``). What it emits goes through its own
pipe, sent by a thread that holds up to ``buffered`` messages ready: a worker runs that many messages
(plus the one in the pipe) ahead of the consumer, and no further. Iterating the pool yields ``(job,
messages)`` in job order; ``messages`` (consume it before the next job; it may be left at the job's last
message) yields the job's messages, its last one ``("failed", reason)`` if the job could not be decoded.

The crash rule: an exception in ``function`` fails that job (``failure_reason``) and the worker goes on.
A worker that dies (a decoder that crashes its process) is replaced by a fresh one that decodes again,
alone, the job whose end has not come (the worker may have died on a later job, its messages for this
one still buffered), skipping the messages already delivered (decoding is deterministic); a job that
kills its own worker as well fails with ``CRASHED``. Either way a fresh worker then takes the rest of
the dead worker's jobs.

Shutdown (leaving the ``with`` block, also on an exception such as a full disk): the workers are
terminated and joined and the pipes closed, before the exception goes on; a worker that finds its pipe
closed exits quietly. No manager thread and no wakeup pipe (as ``concurrent.futures`` has): nothing of
the pool prints a traceback at exit.
"""
import multiprocessing
import queue
import threading
from multiprocessing.reduction import ForkingPickler

from .errors import failure_reason
from .readers.video_reader import init_decode_worker

CRASHED = "the decoder crashed on this video"


def returned(job, emit, function, *args):
    """For a decode function that returns its result: ``emit(("result", function(job, *args)))``."""
    emit(("result", function(job, *args)))


class _PoolGone(BaseException):
    """Raised inside a worker once nobody reads its pipe any more (a BaseException: no decoder catches it)."""


def _work(function, args, jobs, connection, buffered):
    """A worker process: ``jobs`` is ``[(number, job)]``; sends ``(number, message)`` for each message,
    then ``(number, ("end",))``, through a thread holding up to ``buffered`` messages ready, so that the
    worker decodes on while the consumer has not taken its last message yet."""
    init_decode_worker()
    outbox = queue.Queue(maxsize=max(1, buffered))
    gone = threading.Event()

    def send():
        while True:
            data = outbox.get()
            if data is None:
                return
            try:
                connection.send_bytes(data)
            except OSError:  # BrokenPipeError, ConnectionResetError: the pool is gone, nobody reads
                gone.set()
                return

    def put(item):
        data = None if item is None else ForkingPickler.dumps(item)  # here: a pickling error fails the job
        while not gone.is_set():
            try:
                return outbox.put(data, timeout=0.2)
            except queue.Full:
                continue
        raise _PoolGone

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        for number, job in jobs:
            try:
                function(job, lambda message: put((number, message)), *args)
            except Exception as e:  # cv2.error, MemoryError, ...: this job's problem; go on with the next
                put((number, ("failed", failure_reason(e))))
            put((number, ("end",)))
        put(None)
        sender.join()  # everything sent before the process ends
    except _PoolGone:
        return


class _Worker:
    """A worker process, the read end of its pipe, the job numbers it decodes, and for a worker decoding
    one job alone (after a crash) the numbers a fresh worker takes after it (``then``)."""

    sender = None  # its jobs were given at its start: no pipe to send more

    def __init__(self, process, reader, numbers, then=None):
        self.process, self.reader, self.numbers, self.then = process, reader, numbers, then


class _Processes:
    """What both pools do with their ``workers``: stop one (terminated, joined, its pipes closed), and stop
    them all when the ``with`` block is left."""

    def _stop(self, worker):
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
        worker.process.join()
        worker.reader.close()
        if worker.sender is not None:
            worker.sender.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for worker in self.workers:
            self._stop(worker)


class DecodePool(_Processes):
    """``jobs`` (picklable) decoded by ``function(job, emit, *args)`` (a module-level function) in
    ``num_workers`` processes, each holding up to ``buffered`` messages ready beyond the one in its pipe;
    see the module docstring. Use as a context manager."""

    def __init__(self, jobs, function, args=(), num_workers=1, buffered=1):
        self.jobs, self.function, self.args, self.buffered = list(jobs), function, tuple(args), buffered
        self.context = multiprocessing.get_context("spawn")
        self.count = max(1, min(num_workers, len(self.jobs)))
        self.workers = [self._start(list(range(w, len(self.jobs), self.count))) for w in range(self.count)]

    def _start(self, numbers, then=None):
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_work, daemon=True,
                                       args=(self.function, self.args, [(n, self.jobs[n]) for n in numbers],
                                             writer, self.buffered))
        process.start()
        writer.close()  # the worker holds the only writer: its end ends the pipe
        return _Worker(process, reader, numbers, then)

    def __iter__(self):
        for number, job in enumerate(self.jobs):
            yield job, self._messages(number)

    def _messages(self, number):
        w = number % self.count
        delivered, skip, retried = 0, 0, False
        while True:
            worker = self.workers[w]
            if number not in worker.numbers:  # a worker that decoded an earlier job alone: the rest to a fresh one
                self._stop(worker)
                self.workers[w] = self._start(worker.then)
                continue
            try:
                got, message = worker.reader.recv()
            except (EOFError, OSError):  # the worker ended before this job's end: it died
                self._stop(worker)
                rest = worker.then if worker.then is not None else [n for n in worker.numbers if n > number]
                if retried:  # the job killed a worker of its own
                    self.workers[w] = self._start(rest)
                    yield ("failed", CRASHED)
                    return
                self.workers[w] = self._start([number], then=rest)
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


def _serve(function, args, inbox, connection, buffered):
    """A ``LiveDecodePool`` worker process: ``_work`` on the jobs ``(number, job)`` that come through
    ``inbox``, until the pool closes it (or goes)."""
    def jobs():
        while True:
            try:
                yield inbox.recv()
            except (EOFError, OSError):
                return

    _work(function, args, jobs(), connection, buffered)


class _LiveWorker:
    """A live pool's worker process: the read end of its messages, the write end of its jobs, the numbers
    it was sent whose end has not been read (``pending``); a worker decoding one job again after a crash
    (``alone``) keeps the jobs for its slot in ``then``, for the fresh worker that follows it."""

    def __init__(self, process, reader, sender, alone=False, then=None):
        self.process, self.reader, self.sender = process, reader, sender
        self.pending, self.alone, self.then = [], alone, list(then or [])


class LiveDecodePool(_Processes):
    """Decode processes that live as long as the pool and take jobs as they come (a service's jobs arrive
    over time: its decoders start once, not once per batch). ``submit(jobs)`` returns ``[(job, messages)]``
    as iterating a ``DecodePool`` yields them: consume them in order, each before the next, and the jobs of
    one ``submit`` before those of the next. Job n goes to worker ``n % num_workers``, which decodes its jobs
    in order; the crash rule, the ``buffered`` bound and the shutdown are ``DecodePool``'s (module
    docstring). Jobs wait in a pipe (64 KiB): submit a few at a time, as a service claims them."""

    def __init__(self, function, args=(), num_workers=1, buffered=1):
        self.function, self.args, self.buffered = function, tuple(args), buffered
        self.context = multiprocessing.get_context("spawn")
        self.count = max(1, num_workers)
        self.jobs, self.submitted = {}, 0  # number -> job, until its end is read
        self.workers = [self._start([]) for _ in range(self.count)]

    def _start(self, numbers, alone=False, then=None):
        inbox, sender = self.context.Pipe(duplex=False)
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_serve, daemon=True,
                                       args=(self.function, self.args, inbox, writer, self.buffered))
        process.start()
        writer.close()  # the worker holds the only writer: its end ends the pipe
        inbox.close()
        worker = _LiveWorker(process, reader, sender, alone, then)
        for number in numbers:
            worker.pending.append(number)
            self._send(worker, number)
        return worker

    def _send(self, worker, number):
        try:
            worker.sender.send((number, self.jobs[number]))
        except OSError:  # the worker died: its pipe ends, and the crash rule sends the job again
            pass

    def submit(self, jobs):
        """Queue ``jobs`` (picklable): ``[(job, messages)]``, see the class docstring."""
        numbers = []
        for job in jobs:
            number, self.submitted = self.submitted, self.submitted + 1
            self.jobs[number] = job
            worker = self.workers[number % self.count]
            if worker.alone:  # decoding a crashed job again: the fresh worker after it takes this one
                worker.then.append(number)
            else:
                worker.pending.append(number)
                self._send(worker, number)
            numbers.append(number)
        return [(self.jobs[n], self._messages(n)) for n in numbers]

    def _messages(self, number):
        w = number % self.count
        delivered, skip, retried = 0, 0, False
        while True:
            worker = self.workers[w]
            try:
                got, message = worker.reader.recv()
            except (EOFError, OSError):  # the worker ended before this job's end: it died
                self._stop(worker)
                rest = [n for n in worker.pending + worker.then if n > number]
                if retried:  # the job killed a worker of its own
                    self.workers[w] = self._start(rest)
                    self.jobs.pop(number, None)
                    yield ("failed", CRASHED)
                    return
                self.workers[w] = self._start([number], alone=True, then=rest)
                skip, retried = delivered, True
                continue
            if message[0] == "end":
                if got in worker.pending:
                    worker.pending.remove(got)
                self.jobs.pop(got, None)
                if worker.alone:  # the job decoded again alone is over: a fresh worker takes the rest
                    self._stop(worker)
                    self.workers[w] = self._start(worker.then)
                if got == number:
                    return
                continue
            if got != number:
                continue  # the rest of an earlier job whose consumer stopped reading (at its last message)
            if skip:
                skip -= 1
                continue
            delivered += 1
            yield message
