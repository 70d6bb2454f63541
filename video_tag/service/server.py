"""Starting the service: the data folder, the store (jobs a killed service left running go back to the
queue, jobs past the retention are deleted), the uploads folder (what a killed upload or a removed job left
is deleted), the workers, uvicorn."""
import ipaddress
import logging
import os
import socket

from ..errors import UserError
from .jobs import JobStore, forget_old_jobs
from .worker import MAX_ATTEMPTS, Workers

log = logging.getLogger(__name__)


def loopback(host):
    """Whether ``host`` (a name or an address) binds only loopback addresses."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise UserError(f"--host {host}: unknown host name") from None
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def clean_uploads(store, folder):
    """Remove the uploads no job waits for: half-written ones (``*.part``) and those of ended or lost jobs."""
    kept = store.kept_uploads()
    removed = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path not in kept and os.path.isfile(path):
            os.remove(path)
            removed += 1
    for job_id, _ in store.ended_uploads():
        store.forget_upload(job_id)
    return removed


def run(host, port, data_dir, allow_dirs, token, workers, models, labels, limits, keep_days=0):
    """Serve until stopped. ``models``: ``tagging.Tagger``'s arguments; ``labels``: the class names;
    ``keep_days``: jobs that ended longer ago are deleted, at start and while serving (0: kept)."""
    import uvicorn
    from .app import create_app
    if not token and not loopback(host):
        raise UserError(f"--host {host} is reachable from other machines without a token")
    for folder in allow_dirs:
        if not os.path.isdir(folder):
            raise UserError(f"--allow_dir {folder}: not a directory")
    uploads = os.path.join(data_dir, "uploads")
    os.makedirs(uploads, exist_ok=True)
    store = JobStore(os.path.join(data_dir, "jobs.sqlite3"))
    requeued, failed = store.recover(MAX_ATTEMPTS)
    forgotten = forget_old_jobs(store, keep_days)
    if forgotten:
        log.info("%d job(s) that ended over %g day(s) ago deleted", forgotten, keep_days)
    removed = clean_uploads(store, uploads)
    if requeued or failed or removed:
        log.info("after the last stop: %d job(s) back in the queue, %d failed after %d tries, %d stray upload(s) "
                 "removed", requeued, failed, MAX_ATTEMPTS, removed)
    pool = Workers(workers, models, store.path) if workers else None
    app = create_app(store, labels, uploads, allow_dirs, token, limits, pool, keep_days)
    log.info("serving on http://%s:%d (%d worker(s), data in %s)", host, port, workers, data_dir)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if pool is not None:
            pool.stop()
    if app.state.fatal is not None:
        raise app.state.fatal
    return 0
