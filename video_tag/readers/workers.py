"""Worker processes that load and collate whole batches, handing them over in shared memory.

Each worker is forked from the training (or evaluating) process, so it has the reader and its list
without pickling them (ten million list entries would take seconds and gigabytes per worker); it runs
nothing but the reader's ``load`` and ``collate``: numpy and file reads, no Paddle. Batch ``k`` goes to
worker ``k % num_workers``, so reading the workers' answers in turn gives the batches in the sampler's
order. A worker collates its batch's large arrays straight into one of the slots (shared memory files,
grown by the worker as needed) and sends their place and the small arrays through its pipe; the main
process hands out views of them (no copy), and the slot takes a new batch once they are gone.
Measured against threads and ``paddle.io.DataLoader`` in bench/README.md (``bench_input.py``).
"""
import contextlib
import math
import mmap
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import weakref

import numpy as np

from ..errors import RunError, failure_reason

SHARED_BYTES = 1 << 16  # arrays from this size on go through shared memory, smaller ones through the pipe
HELD = 2  # batches the consumer may hold as views of shared memory before it gets copies
_ALIGN = 64


def available():
    """Worker processes need ``fork`` (the reader is inherited, not pickled): Linux. Elsewhere, threads."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def load_batch(reader, indices, refill, bad, empty=None):
    """Load the samples ``indices`` of ``reader``: ``(samples, failures)``, failures ``[(index, reason)]``
    in the order met. A failed sample is left out or, with ``refill``, replaced by the next readable
    sample of the list (wrapping around); ``bad`` (a set, updated) holds the indices known to fail.
    empty: an allocator for ``reader.load`` (readers marked ``in_processes`` take one). A reader with a
    ``prefetch(indices)`` method is told the whole batch first."""
    samples, failures = [], []
    if hasattr(reader, "prefetch"):
        reader.prefetch(indices)
    for index in indices:
        while True:
            reason = "known bad" if index in bad else None
            if reason is None:
                try:
                    samples.append(reader.load(index) if empty is None else reader.load(index, empty))
                    break
                except Exception as e:  # a ValueError says why; anything else: the reader's own code failed on it
                    reason = failure_reason(e)
                bad.add(index)
                failures.append((index, reason))
            if not refill or len(bad) >= len(reader):
                break
            index = (index + 1) % len(reader)
    return samples, failures


@contextlib.contextmanager
def ctrl_c_held():
    """Run the body with Ctrl-C noted, then raise it through the SIGINT handler once the body is done.

    Around ``fork()``: a Ctrl-C landing there runs its handler inside an at-fork hook (logging's), which
    prints the KeyboardInterrupt and drops it, and the run goes on. Only the main thread may do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])


class Workers:
    """``num_workers`` forked processes running ``load_batch`` and ``reader.collate``; ``in_flight`` batches
    may be on their way. ``submit(k, indices)`` in the order k = 0, 1, ...; ``result(k)`` in the same
    order returns ``(batch or None, failures)``. Use as a context manager: leaving it ends the workers.

    A batch's large arrays are views of its slot, not copies, as long as the consumer holds fewer than
    ``HELD`` such batches (a training loop holds one: the batch it works on); the slot is given to a new
    batch only once every view of it is gone (a weak reference tells). A consumer that keeps more
    (``list(iterate_batches(...))``) gets copies from then on.
    """

    def __init__(self, reader, num_workers, in_flight, refill):
        self.in_flight = max(1, in_flight)
        slots = self.in_flight + HELD
        self.files = [_shared_file() for _ in range(slots)]
        self.maps = [None] * slots
        self.state = [None] * slots  # None: free; "busy": a worker's; a weakref: the consumer's while alive
        self.slot_of = {}
        context = multiprocessing.get_context("fork")
        self.pipes, self.processes = [], []
        try:
            for _ in range(max(1, num_workers)):
                ours, theirs = context.Pipe()
                process = context.Process(target=_work, args=(reader, theirs, self.files, refill, os.getpid()),
                                          daemon=True)
                with ctrl_c_held():
                    process.start()
                    theirs.close()
                    self.pipes.append(ours)
                    self.processes.append(process)
        except BaseException:  # Ctrl-C, or a failed fork: end the workers already started
            self.__exit__()
            raise

    def _free_slot(self):
        for slot, state in enumerate(self.state):
            if state is None or (isinstance(state, weakref.ref) and state() is None):
                return slot
        return None

    def can_submit(self):
        return len(self.slot_of) < self.in_flight and self._free_slot() is not None

    def submit(self, k, indices):
        slot = self._free_slot()
        self.state[slot] = "busy"
        self.slot_of[k] = slot
        self.pipes[k % len(self.pipes)].send((list(indices), slot))

    def result(self, k):
        """Batch ``k``'s ``(batch or None, failures)``; raises ``RunError`` if its worker died."""
        worker = k % len(self.pipes)
        try:
            kind, payload, failures = self.pipes[worker].recv()
        except (EOFError, OSError):
            self.processes[worker].join(1)
            raise RunError(f"a feature loading worker process died (exit code {self.processes[worker].exitcode}"
                           f"; out of memory?)") from None
        slot = self.slot_of.pop(k)
        try:
            if kind == "error":
                raise payload
            if payload is None:
                return None, failures
            size = os.fstat(self.files[slot]).st_size  # the worker grows the file as batches need
            if self.maps[slot] is None or len(self.maps[slot]) < size:
                if self.maps[slot] is not None:
                    self.maps[slot].close()  # no view of it is alive: the slot was free
                self.maps[slot] = mmap.mmap(self.files[slot], size)
            base = np.frombuffer(self.maps[slot], np.uint8)
            held = sum(isinstance(s, weakref.ref) and s() is not None for s in self.state)
            batch = _take(payload, base, copy=held >= HELD)
            if held < HELD:
                self.state[slot] = weakref.ref(base)
            return batch, failures
        finally:
            if self.state[slot] == "busy":
                self.state[slot] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
            pipe.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        for m in self.maps:
            if m is not None:
                try:
                    m.close()
                except BufferError:  # the consumer still holds a batch: unmapped when it lets go
                    pass
        for fd in self.files:
            os.close(fd)


def _take(obj, base, copy):
    """``obj`` with each ``("shared", offset, dtype, shape)`` replaced by that array of ``base`` (the
    slot's bytes): a view, or a copy."""
    if isinstance(obj, dict):
        return {k: _take(v, base, copy) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_take(v, base, copy) for v in obj]
    if isinstance(obj, tuple) and len(obj) == 4 and obj[0] == "shared":
        _, offset, dtype, shape = obj
        dtype = np.dtype(dtype)
        array = base[offset:offset + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)
        return array.copy() if copy else array
    return obj


def _exit_with(parent):
    """End this worker once the process that forked it is gone (it is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _shared_file():
    """A file descriptor of size 0 in shared memory, inherited by forked workers (Linux memfd: not bound
    by the size of /dev/shm, which containers often keep at 64 MB)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("videotag-batch")
    f = tempfile.TemporaryFile()
    fd = os.dup(f.fileno())
    f.close()
    return fd


def _work(reader, pipe, files, refill, parent):
    """A worker's loop: ``(indices, slot)`` in, ``(kind, batch with shared arrays placed, failures)`` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A main process killed outright (SIGKILL, the OOM killer) closes no pipe of ours that a sibling
    # worker inherited: without this, its workers would wait for work forever.
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    arenas = [_Arena(fd) for fd in files]
    scratch = _Scratch()
    bad = set()
    while True:
        try:
            task = pipe.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        indices, slot = task
        arena = arenas[slot]
        arena.reset()
        scratch.reset()
        try:
            samples, failures = load_batch(reader, indices, refill, bad, scratch.empty)
            batch = arena.place(reader.collate(samples, empty=arena.empty)) if samples else None
            message = ("batch", batch, failures)
        except Exception as e:  # a bug in collate, or out of memory: the main process raises it
            message = ("error", e, [])
        samples = batch = None  # freed before the next batch is read: its memory is reused, not faulted in anew
        try:
            pipe.send(message)
        except OSError:  # the main process is gone
            return
        except Exception:  # an exception that does not pickle
            pipe.send(("error", RuntimeError(f"{type(message[1]).__name__}: {message[1]}"), []))


class _Scratch:
    """Private memory for the samples of one batch, reused by the next (``reset``) instead of freed: in a
    forked process, fresh or freed-and-reallocated memory is faulted in page by page (3x the CPU time of
    the reading itself, measured)."""

    def __init__(self):
        self.buffer, self.end = np.empty(0, np.uint8), 0

    def reset(self):
        self.end = 0

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        offset, self.end = self.end, self.end + -(-nbytes // _ALIGN) * _ALIGN
        if self.end > len(self.buffer):  # the arrays made from the old buffer keep it alive for this batch
            self.buffer, offset = np.empty(2 * self.end, np.uint8), 0
            self.end = -(-nbytes // _ALIGN) * _ALIGN
        return self.buffer[offset:offset + nbytes].view(dtype).reshape(shape)


class _Arena:
    """A worker's side of one slot: ``empty(shape, dtype)`` hands out arrays in the shared file ``fd``
    (grown as needed), one batch at a time; ``place(batch)`` replaces the large arrays of a batch by their
    place, ``("shared", offset, dtype, shape)``, copying in those that ``empty`` did not make. A collate
    that fills arrays from ``empty`` writes each batch once, into memory that stays mapped from batch to
    batch (a fresh array per batch costs a page fault per 4 KB: ~10 us each on a VM)."""

    def __init__(self, fd):
        self.fd, self.map, self.retired, self.end, self.made = fd, None, [], 0, {}

    def reset(self):
        self.end, self.made = 0, {}
        for old in list(self.retired):  # mappings replaced by a larger one during the last batch
            try:
                old.close()
                self.retired.remove(old)
            except BufferError:  # an array of it is still referenced somewhere: later
                pass

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        offset, self.end = self.end, self.end + -(-nbytes // _ALIGN) * _ALIGN
        if self.map is None or len(self.map) < self.end:
            size = os.fstat(self.fd).st_size
            if size < self.end:
                size = max(self.end + self.end // 4, 1 << 20)  # room for a somewhat longer batch next time
                os.ftruncate(self.fd, size)
            if self.map is not None:
                self.retired.append(self.map)  # arrays of this batch may live in it; the file is the same
            self.map = mmap.mmap(self.fd, size)
        array = np.frombuffer(self.map, np.uint8, nbytes, offset).view(dtype).reshape(shape)
        self.made[id(array)] = (array, offset)
        return array

    def place(self, obj):
        if isinstance(obj, dict):
            return {k: self.place(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.place(v) for v in obj]
        if isinstance(obj, np.ndarray) and obj.nbytes >= SHARED_BYTES:
            made, offset = self.made.get(id(obj), (None, None))
            if made is not obj:
                copy = self.empty(obj.shape, obj.dtype)
                copy[...] = obj
                offset = self.made[id(copy)][1]
            return ("shared", offset, obj.dtype.str, obj.shape)
        return obj
