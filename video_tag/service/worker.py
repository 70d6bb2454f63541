"""The service's workers: one process per device, each loading the models once (``tagging.Tagger``) and
tagging the jobs it claims from the store, until the service ends.

A worker claims up to ``CLAIM`` queued jobs at a time and gives them to its decode processes
(``decode_pool.LiveDecodePool``: started once, with the worker, and kept for its life, with the crash rule
of videotag.py's pool), which decode them in order while the network tags; it claims the next jobs, and
hands them to the decoders, when the last video of a claim is reached. A video that cannot be read fails
its job with the reason; any other error in a job fails that job (its traceback in the service's log,
never in the answer) and the worker goes on. A worker dies with the service (``PR_SET_PDEATHSIG``), and
also stops claiming once its parent is gone; its decoders end with it. ``Workers`` (in the HTTP process)
starts them, restarts one that died and gives its jobs back to the queue.
"""
import ctypes
import logging
import multiprocessing
import os
import signal
import time

from ..errors import RunError
from .jobs import JobStore

log = logging.getLogger(__name__)

CLAIM = 8            # jobs claimed at a time (and handed to the decoders)
DECODERS = 2         # decode processes per worker, as videotag.py's --num_workers default
IDLE_SECONDS = 0.1   # how often an idle worker looks for jobs
MAX_ATTEMPTS = 3     # a job whose worker (or service) died under it this many times fails


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the parent check in the loop still stops it
        pass


def _stop(signum, frame):
    raise SystemExit(0)  # unwinds: the decode pool stops its processes, the log's lock is released


def run(name, models, db_path, ready, parent):
    """A worker process. ``models``: dict of ``Tagger``'s arguments plus ``device_id``; ``ready``: a
    multiprocessing Event set once the models are loaded; ``parent``: the HTTP process's pid."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the service's: it stops the workers
    from .. import cli
    cli.setup_logging()
    import paddle
    # the service stops its workers with SIGTERM: end quietly (Paddle's handler prints a C++ report)
    signal.signal(signal.SIGTERM, _stop)
    from ..cpu import reuse_freed_memory, use_default_threads
    from .tagging import Tagger
    gpu = bool(models["use_gpu"]) and paddle.is_compiled_with_cuda()
    paddle.set_device(f"gpu:{models['device_id']}" if gpu else "cpu")
    use_default_threads()
    reuse_freed_memory()
    tagger = Tagger(**{**models, "use_gpu": gpu})
    store = JobStore(db_path)
    from ..decode_pool import LiveDecodePool
    from .decoding import decode_job
    with LiveDecodePool(decode_job, (), DECODERS, buffered=2) as pool:
        ready.set()
        log.info("worker %s ready (%s)", name, f"GPU {models['device_id']}" if gpu else "CPU")
        batch = None
        while os.getppid() == parent:
            batch = batch or open_batch(tagger, store, pool, store.claim(name, CLAIM))
            if batch is None:
                time.sleep(IDLE_SECONDS)
                continue
            # the next claim goes to the decoders while this claim's last video is tagged: they decode on
            batch = tag_batch(tagger, store, batch, lambda: open_batch(tagger, store, pool, store.claim(name, CLAIM)))


def open_batch(tagger, store, pool, jobs):
    """Claimed jobs ``[(id, path, options, claim)]`` handed to the decoders (``pool``, a
    ``decode_pool.LiveDecodePool``): ``(jobs, [(decode job, messages)])``; None when none is left (a
    missing file fails its job at once)."""
    todo = []
    for job in jobs:
        if os.path.isfile(job[1]):
            todo.append(job)
        else:
            _end(store, job, error="file not found")
    if not todo:
        return None
    return todo, pool.submit([(path, tagger.decode_args(options)) for _, path, options, _ in todo])


def tag_batch(tagger, store, batch, next_batch=None):
    """Tag the jobs of ``open_batch``; each ends done or failed (or was cancelled meanwhile). Before the
    last job, ``next_batch()`` opens the next batch, which is returned (None without it)."""
    from ..errors import failure_reason
    from .tagging import VideoError
    todo, decoded = batch
    following = None
    for number, (job, (_, messages)) in enumerate(zip(todo, decoded)):
        if number == len(todo) - 1 and next_batch is not None:
            following = next_batch()
        job_id, path, options, claim = job
        duration = video_seconds(path)

        def progress(end):
            if duration:
                store.set_progress(job_id, claim, min(0.99, end / duration))

        try:
            outcome = tagger.result(path, messages, options, progress, lambda: not store.holds(job_id, claim),
                                    store.video(job_id))
        except VideoError as e:
            _end(store, job, error=str(e))
            continue
        except Exception as e:  # a bug or an out-of-memory: this job fails, the worker goes on
            log.exception("job %s (%s) failed", job_id, path)
            for _ in messages:  # the rest of this video's messages, before the next video's
                pass
            _end(store, job, error=f"internal error ({failure_reason(e)})")
            continue
        if outcome is None:
            log.info("job %s cancelled", job_id)
            continue
        _end(store, job, result=outcome)
    return following


def _end(store, job, error=None, result=None):
    job_id, path, options, claim = job
    stored = store.fail(job_id, claim, error) if error is not None else store.finish(job_id, claim, *result)
    if not stored:
        log.info("job %s ended elsewhere (cancelled, or given back after a restart): its %s dropped",
                 job_id, "failure" if error is not None else "result")
    elif error is not None:
        log.warning("job %s failed: %s: %s", job_id, path, error)


def video_seconds(path):
    """The length the container claims (0 if it claims none): for progress only, never for windows."""
    import cv2
    cap = cv2.VideoCapture(path)
    try:
        fps, frames = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    return frames / fps if fps == fps and fps > 0 and frames == frames and frames > 0 else 0.0


class Workers:
    """The worker processes of the HTTP process: ``count`` of them, worker i on device i (GPU) or all on the
    CPU; ``check()`` restarts a dead one and gives its running jobs back to the queue."""

    def __init__(self, count, models, db_path):
        self.models, self.db_path = models, db_path
        self.context = multiprocessing.get_context("spawn")
        self.processes, self.events = {}, {}
        for i in range(count):
            self._start(f"w{i}", i)

    def _start(self, name, device_id):
        ready = self.context.Event()
        process = self.context.Process(target=run, name=f"videotag-worker-{name}",
                                       args=(name, {**self.models, "device_id": device_id}, self.db_path, ready,
                                             os.getpid()))
        process.start()
        self.processes[name], self.events[name] = (process, device_id), ready

    def ready(self):
        """Whether every worker has loaded its models and is alive."""
        return all(self.events[n].is_set() and p.is_alive() for n, (p, _) in self.processes.items())

    def check(self, store):
        """Restart the workers that died (after giving their jobs back); returns their names. A worker that
        died before its models were loaded is not restarted: ``RunError`` (the service stops)."""
        dead = [n for n, (p, _) in self.processes.items() if p.exitcode is not None]
        for name in dead:
            process, device_id = self.processes[name]
            if not self.events[name].is_set():
                raise RunError(f"worker {name} died while loading the models (exit {process.exitcode}): "
                               "see its error above")
            requeued, failed = store.recover(MAX_ATTEMPTS, worker=name)
            log.error("worker %s died (exit %s): %d job(s) back in the queue, %d failed; starting it again",
                      name, process.exitcode, requeued, failed)
            self._start(name, device_id)
        return dead

    def stop(self):
        for process, _ in self.processes.values():
            if process.is_alive():
                process.terminate()
        for process, _ in self.processes.values():
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
