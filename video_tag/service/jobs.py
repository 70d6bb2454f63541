"""The job store: one SQLite file (``<data_dir>/jobs.sqlite3``) shared by the HTTP process and the workers.

A job goes ``queued -> running -> done | failed``, or to ``cancelled`` from ``queued`` or ``running``.
Claiming (``claim``) is one write transaction: two workers never take the same job. A claimed job carries its
claim (``<worker>:<n>``); ``finish`` and ``fail`` take effect only for the claim that holds the job while it is
still running, so a result is stored once: a worker that lost its job (the service restarted under it, the job
was cancelled) cannot write over it or report it twice. ``recover`` (at start) puts the jobs a killed service
left running back in the queue; a job that was running ``max_attempts`` times fails instead (a video that
takes the service down must not do it forever). ``forget_ended`` deletes the jobs that ended before a time
(``forget_old_jobs``: the retention rule of ``serve.py --keep_days``).

Every write is a short transaction of its own on a connection of its own (WAL: readers never wait for the
writer), so the store may be used from any thread or process.
"""
import json
import os
import sqlite3
import time
import uuid

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800)  # seconds, for /metrics
DAY = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    video TEXT NOT NULL,
    path TEXT NOT NULL,
    upload INTEGER NOT NULL,
    options TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    frames INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    claim TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority, seq);
"""


def new_id():
    """A job id: 32 hex digits (random, so ids do not reveal how many jobs there were)."""
    return uuid.uuid4().hex


class JobStore:
    """The jobs of ``path`` (created if missing). Public dicts (``get``, ``page``) hold ``id, state, progress,
    error, result, video, options, created, started, finished``."""

    def __init__(self, path):
        self.path = path
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        return _Closing(db)

    def add(self, video, path, options, upload=False, priority=0, job_id=None):
        """A queued job for the file ``path`` (shown as ``video``); returns its id."""
        job_id = job_id or new_id()
        with self._connect() as db:
            db.execute("INSERT INTO jobs (id, state, priority, video, path, upload, options, created) "
                       "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                       (job_id, priority, video, path, int(upload), json.dumps(options), time.time()))
        return job_id

    def get(self, job_id):
        """The public dict of a job, or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else public(row)

    def source(self, job_id):
        """``(path, whether it is an upload the service still keeps)`` of a job, or None."""
        with self._connect() as db:
            row = db.execute("SELECT path, upload FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (row["path"], bool(row["upload"]))

    def video(self, job_id):
        """The video as a job shows it (the client's file name, or the path as given), or None."""
        with self._connect() as db:
            row = db.execute("SELECT video FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row["video"]

    def page(self, limit, before=None, state=None):
        """Up to ``limit`` jobs, newest first, older than the job ``before`` (the cursor of the previous
        page); returns ``(jobs without their results, cursor of the next page or None)``."""
        where, args = [], []
        if before is not None:
            where.append("seq < (SELECT seq FROM jobs WHERE id = ?)")
            args.append(before)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(sql, (*args, limit + 1)).fetchall()
        jobs = [public(r, with_result=False) for r in rows[:limit]]
        return jobs, (jobs[-1]["id"] if len(rows) > limit else None)

    def claim(self, worker, limit=1):
        """Take up to ``limit`` queued jobs (highest priority, then oldest first) for ``worker``:
        ``[(id, path, options dict, claim)]``."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id, path, options FROM jobs WHERE state = 'queued' "
                              "ORDER BY priority DESC, seq LIMIT ?", (limit,)).fetchall()
            now, claimed = time.time(), []
            for row in rows:
                claim = f"{worker}:{new_id()[:12]}"
                taken = db.execute("UPDATE jobs SET state = 'running', claim = ?, started = ?, progress = 0, "
                                   "attempts = attempts + 1 WHERE id = ? AND state = 'queued'",
                                   (claim, now, row["id"])).rowcount
                if taken:  # always, inside the write transaction; the condition is a second guard
                    claimed.append((row["id"], row["path"], json.loads(row["options"]), claim))
            db.execute("COMMIT")
        return claimed

    def holds(self, job_id, claim):
        """Whether ``claim`` still holds the running job (False once it is cancelled or recovered)."""
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM jobs WHERE id = ? AND claim = ? AND state = 'running'",
                             (job_id, claim)).fetchone()
        return row is not None

    def set_progress(self, job_id, claim, progress):
        with self._connect() as db:
            db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND claim = ? AND state = 'running'",
                       (float(progress), job_id, claim))

    def finish(self, job_id, claim, result, frames):
        """Store the result of a running job held by ``claim``; returns whether it was stored."""
        return self._end(job_id, claim, "done", None, json.dumps(result, ensure_ascii=False), frames)

    def fail(self, job_id, claim, reason):
        """Fail a running job held by ``claim`` with ``reason``; returns whether it was failed."""
        return self._end(job_id, claim, "failed", reason, None, 0)

    def _end(self, job_id, claim, state, error, result, frames):
        with self._connect() as db:
            cursor = db.execute("UPDATE jobs SET state = ?, error = ?, result = ?, frames = ?, progress = ?, "
                                "finished = ? WHERE id = ? AND claim = ? AND state = 'running'",
                                (state, error, result, frames, 1.0 if state == "done" else 0.0, time.time(),
                                 job_id, claim))
            return cursor.rowcount == 1

    def cancel(self, job_id):
        """Cancel a queued or running job: returns its state before (None: no such job)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None and row["state"] in ("queued", "running"):
                db.execute("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?", (time.time(), job_id))
            db.execute("COMMIT")
        return None if row is None else row["state"]

    def recover(self, max_attempts, worker=None):
        """Jobs left running (by a killed service, or by ``worker`` alone when it died) go back to the
        queue, or fail once they were tried ``max_attempts`` times. Returns ``(requeued, failed)`` counts."""
        held = "state = 'running'" + ("" if worker is None else " AND substr(claim, 1, ?) = ?")
        args = () if worker is None else (len(worker) + 1, worker + ":")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            failed = db.execute(
                f"UPDATE jobs SET state = 'failed', claim = NULL, finished = ?, error = ? WHERE {held} AND attempts >= ?",
                (time.time(), f"the service stopped {max_attempts} times while tagging this video", *args,
                 max_attempts)).rowcount
            requeued = db.execute(f"UPDATE jobs SET state = 'queued', claim = NULL, progress = 0 WHERE {held}",
                                  args).rowcount
            db.execute("COMMIT")
        return requeued, failed

    def ended_uploads(self):
        """``[(id, path)]`` of the uploads still kept for jobs that have ended (to be removed)."""
        with self._connect() as db:
            return [(r["id"], r["path"]) for r in db.execute(
                "SELECT id, path FROM jobs WHERE upload = 1 AND state IN (?, ?, ?)", FINAL).fetchall()]

    def kept_uploads(self):
        """Paths of the uploads of jobs that have not ended (the files the uploads folder must keep)."""
        with self._connect() as db:
            return {r["path"] for r in db.execute(
                "SELECT path FROM jobs WHERE upload = 1 AND state NOT IN (?, ?, ?)", FINAL).fetchall()}

    def forget_upload(self, job_id):
        """The upload of ``job_id`` has been removed."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET upload = 0 WHERE id = ?", (job_id,))

    def forget_ended(self, before):
        """Delete the jobs that ended (done, failed, cancelled) before the time ``before`` (seconds since the
        epoch; a job without an end time counts from its creation); queued and running jobs are never
        deleted. Returns ``(jobs deleted, paths of the uploads they still kept)``: the caller removes those."""
        ended = "state IN (?, ?, ?) AND COALESCE(finished, created) < ?"
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            uploads = [r["path"] for r in db.execute(f"SELECT path FROM jobs WHERE {ended} AND upload = 1",
                                                     (*FINAL, before)).fetchall()]
            deleted = db.execute(f"DELETE FROM jobs WHERE {ended}", (*FINAL, before)).rowcount
            db.execute("COMMIT")
        return deleted, uploads

    def counts(self):
        """{state: number of jobs} for every state."""
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {**dict.fromkeys(STATES, 0), **{r["state"]: r["n"] for r in rows}}

    def totals(self):
        """For /metrics: ``(videos done, frames run through the TSN, latency count, latency sum,
        [jobs done within each LATENCY_BUCKETS])``; latency: from submission to the result."""
        with self._connect() as db:
            done, frames, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(frames), 0), COALESCE(SUM(finished - created), 0) "
                "FROM jobs WHERE state = 'done'").fetchone()
            buckets = [db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done' AND finished - created <= ?",
                                  (b,)).fetchone()[0] for b in LATENCY_BUCKETS]
        return done, frames, done, total, buckets


class _Closing:
    """A connection closed at the end of a ``with`` block (sqlite3's own ``with`` only commits)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, kind, *_):
        if kind is not None and self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()


def forget_old_jobs(store, keep_days, now=None):
    """The retention rule (``serve.py --keep_days``): delete the jobs that ended more than ``keep_days``
    days before ``now`` (default: the time now), with the uploads they still kept; 0 keeps every job.
    Returns the number of jobs deleted."""
    if not keep_days:
        return 0
    deleted, uploads = store.forget_ended((time.time() if now is None else now) - keep_days * DAY)
    for path in uploads:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return deleted


def public(row, with_result=True):
    """The dict the API shows for a job row."""
    job = {"id": row["id"], "state": row["state"], "progress": round(row["progress"], 4), "error": row["error"],
           "video": row["video"], "options": json.loads(row["options"]), "created": row["created"],
           "started": row["started"], "finished": row["finished"]}
    if with_result:
        job["result"] = json.loads(row["result"]) if row["result"] is not None else None
    return job
