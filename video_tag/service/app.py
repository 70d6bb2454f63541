"""The HTTP layer (FastAPI): it checks requests, stores jobs and answers from the store; the workers
(``worker.py``) own the models. Every answer is JSON (``/metrics``: Prometheus text; ``/``: the web page);
an error is ``{"error": "<one line>"}`` with its status, never a stack trace.

    POST   /v1/jobs        upload (multipart field "video") or JSON {"path": ...}; options: topk, threshold,
                           segment_seconds, segment_stride_seconds, segment_seg_num, shots, min_confidence,
                           include, exclude  -> 202 {"id", "state"}
    GET    /v1/jobs/{id}   {"id", "state", "progress", "error", "result", "video", "options", times}
    GET    /v1/jobs        ?limit=&cursor=&state= -> {"jobs": [... without results], "next": cursor or null}
    DELETE /v1/jobs/{id}   cancels a queued or running job (409 once it ended)
    POST   /v1/tag         as POST /v1/jobs, for short clips: waits, answers the job (200) or its failure (422)
    GET    /v1/labels, /healthz, /readyz, /metrics, /  (the web page)

With a token (``--token``) every /v1 route and /metrics need ``Authorization: Bearer <token>``.
"""
import asyncio
import json
import logging
import os
import secrets
import signal
import time
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..errors import RunError
from .intake import FIELD_BYTES, Refused, allowed_path, receive_form
from .jobs import DAY, LATENCY_BUCKETS, STATES, forget_old_jobs, new_id
from .options import check_options
from .worker import video_seconds

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
WAIT_SECONDS = 0.05  # how often POST /v1/tag looks at its job
FORGET_SECONDS = 3600.0  # how often jobs past the retention (--keep_days) are deleted


class Limits(BaseModel):
    """What one request may bring: ``max_upload_bytes`` per upload, ``sync_max_seconds`` of video for
    POST /v1/tag, ``keep_free_bytes`` of disk an upload must leave free."""
    max_upload_bytes: int = 2 << 30
    sync_max_seconds: float = 60.0
    keep_free_bytes: int = 256 << 20


class Submitted(BaseModel):
    id: str
    state: str


class JobSummary(BaseModel):
    id: str
    state: str
    progress: float
    error: Optional[str] = None
    video: str
    options: Dict[str, Any]
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None


class Job(JobSummary):
    result: Optional[Dict[str, Any]] = None


class JobPage(BaseModel):
    jobs: List[JobSummary]
    next: Optional[str] = None


class Error(BaseModel):
    error: str


ERRORS = {code: {"model": Error} for code in (401, 403, 404, 409, 413, 415, 422, 503, 507)}
CLASS_LIST = "class names or ids, as videotag.py's flag (a comma list, or a list)"
OPTION_SCHEMAS = {
    "topk": {"type": "integer", "minimum": 1}, "threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "segment_seconds": {"type": "number", "exclusiveMinimum": 0},
    "segment_stride_seconds": {"type": "number", "exclusiveMinimum": 0},
    "segment_seg_num": {"type": "integer", "minimum": 1},
    "shots": {"type": "boolean", "description": "detect shots and tag each one (the result's shots)"},
    "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "tag ranges' threshold"},
    "include": {"type": "array", "items": {"type": "string"}, "description": "only these classes: " + CLASS_LIST},
    "exclude": {"type": "array", "items": {"type": "string"}, "description": "never these classes: " + CLASS_LIST}}
SUBMISSION = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["video"], "properties": {
        "video": {"type": "string", "format": "binary"}, **OPTION_SCHEMAS}}},
    "application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
        "path": {"type": "string", "description": "a file under one of the server's --allow_dir"},
        **OPTION_SCHEMAS}}}}}}


def create_app(store, labels, uploads, allow_dirs=(), token=None, limits=None, workers=None, keep_days=0):
    """The app over ``store`` (``jobs.JobStore``); ``labels`` the class names; ``uploads`` the folder uploads go
    to; ``allow_dirs`` real paths of the folders a JSON ``path`` may name; ``workers`` (``worker.Workers``, or
    None: jobs are stored and wait) watched while the app runs; ``keep_days``: jobs that ended longer ago
    are deleted while it runs (``jobs.forget_old_jobs``, every ``FORGET_SECONDS`` or a tenth of the
    retention if shorter; 0 keeps them)."""
    limits = limits or Limits()
    allow_dirs = [os.path.realpath(d) for d in allow_dirs]
    forget_every = min(FORGET_SECONDS, keep_days * DAY / 10)

    async def watch():
        next_forget = time.monotonic() + forget_every  # the service forgot the old jobs as it started
        while True:
            try:
                if workers is not None:
                    workers.check(store)
                if keep_days and time.monotonic() >= next_forget:
                    forgotten = forget_old_jobs(store, keep_days)
                    if forgotten:
                        log.info("%d job(s) that ended over %g day(s) ago deleted", forgotten, keep_days)
                    next_forget = time.monotonic() + forget_every
                for job_id, path in store.ended_uploads():
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                    store.forget_upload(job_id)
            except RunError as e:  # the models cannot be loaded: stop the service (uvicorn's own shutdown)
                log.error("%s", e)
                app.state.fatal = e
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception:
                log.exception("watching the workers")
            await asyncio.sleep(0.5)

    async def lifespan(app):
        task = asyncio.get_running_loop().create_task(watch())
        yield
        task.cancel()

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN; /openapi.json is served
    app = FastAPI(title="videotag", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Tag videos with VideoTag's TSN + AttentionLSTM: asynchronous jobs kept in SQLite.")
    app.state.fatal = None

    @app.middleware("http")
    async def authorize(request: Request, call_next):
        path = request.url.path
        if token and (path.startswith("/v1/") or path == "/metrics"):
            given = request.headers.get("authorization", "")
            if path.endswith("/video") and "token" in request.query_params:  # a <video> element sends no header
                given = "Bearer " + request.query_params["token"]
            if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong token (Authorization: Bearer <token>)"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request, e):
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Refused)
    async def refused(request, e):
        return JSONResponse({"error": e.message}, e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.exception_handler(Exception)
    async def internal(request, e):
        log.exception("%s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the service's log)"}, 500)

    async def intake(request, priority):
        """Store a job from a request: ``(id, stored path)``."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        job_id = new_id()
        if kind == "multipart/form-data":
            fields, path, filename = await receive_form(request, uploads, job_id, limits.max_upload_bytes,
                                                        limits.keep_free_bytes)
            video, upload = os.path.basename(filename) or "video", True
        elif kind == "application/json":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > FIELD_BYTES:
                    raise Refused(413, f"a JSON body is at most {FIELD_BYTES} bytes")
            try:
                fields = json.loads(body)
            except ValueError:
                raise Refused(400, "the body is not valid JSON") from None
            if not isinstance(fields, dict) or "path" not in fields:
                raise Refused(422, 'a JSON body names the video: {"path": ...}')
            video = fields.pop("path")
            path, upload = allowed_path(video, allow_dirs), False
        else:
            raise Refused(415, "send multipart/form-data (field 'video') or application/json ({\"path\": ...})")
        try:
            options = check_options(fields, labels)
            if priority and limits.sync_max_seconds:
                seconds = video_seconds(path)
                if seconds > limits.sync_max_seconds:
                    raise Refused(413, f"the video is {seconds:.1f} s long; POST /v1/tag takes up to "
                                       f"{limits.sync_max_seconds:g} s: submit it to POST /v1/jobs")
        except (ValueError, Refused) as e:
            if upload:
                os.remove(path)
            raise e if isinstance(e, Refused) else Refused(422, str(e)) from None
        store.add(video, path, options, upload=upload, priority=priority, job_id=job_id)
        return job_id

    @app.post("/v1/jobs", status_code=202, response_model=Submitted, responses=ERRORS, openapi_extra=SUBMISSION)
    async def submit(request: Request):
        """Start a job: a video upload or a path under --allow_dir, with videotag.py's options."""
        job_id = await intake(request, 0)
        return JSONResponse({"id": job_id, "state": "queued"}, 202, headers={"Location": f"/v1/jobs/{job_id}"})

    @app.post("/v1/tag", response_model=Job, responses=ERRORS, openapi_extra=SUBMISSION)
    async def tag_now(request: Request):
        """Tag a short clip and wait for it (ahead of the queued jobs); a video that cannot be read: 422."""
        if workers is None:
            raise Refused(503, "this service tags no videos itself (--workers 0): submit to POST /v1/jobs")
        job_id = await intake(request, 1)
        while True:
            job = store.get(job_id)
            if job["state"] in ("done", "failed", "cancelled"):
                break
            if await request.is_disconnected():
                store.cancel(job_id)
                return JSONResponse({"error": "the client went away"}, 499)
            await asyncio.sleep(WAIT_SECONDS)
        if job["state"] != "done":
            return JSONResponse({"error": job["error"] or job["state"], "id": job_id}, 422)
        return job

    @app.get("/v1/jobs/{job_id}", response_model=Job, responses=ERRORS)
    def get_job(job_id: str):
        """A job: its state, progress, and once done its result (videotag.py's tags and segments)."""
        job = store.get(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id}")
        return job

    @app.get("/v1/jobs", response_model=JobPage, responses=ERRORS)
    def list_jobs(limit: int = Query(50, ge=1, le=500), cursor: Optional[str] = None,
                  state: Optional[str] = Query(None, pattern="^(" + "|".join(STATES) + ")$")):
        """Jobs, newest first, without their results; ``next`` is the cursor of the next page."""
        jobs, cursor = store.page(limit, cursor, state)
        return {"jobs": jobs, "next": cursor}

    @app.delete("/v1/jobs/{job_id}", response_model=Job, responses=ERRORS)
    def cancel_job(job_id: str):
        """Cancel a queued or running job (its upload is removed); 409 once it has ended."""
        before = store.cancel(job_id)
        if before is None:
            raise Refused(404, f"no job {job_id}")
        if before not in ("queued", "running"):
            raise Refused(409, f"job {job_id} has already ended ({before})")
        return store.get(job_id)

    @app.get("/v1/jobs/{job_id}/video", response_class=FileResponse, responses=ERRORS)
    def job_video(job_id: str):
        """The video of a job submitted by path (for the page's player; ``?token=`` may carry the token);
        an upload is not kept once its job has ended: 404."""
        source = store.source(job_id)
        if source is None:
            raise Refused(404, f"no job {job_id}")
        if not os.path.isfile(source[0]):
            raise Refused(404, f"the video of job {job_id} is not kept")
        return FileResponse(source[0], filename=os.path.basename(store.get(job_id)["video"]))

    @app.get("/v1/labels")
    def get_labels():
        """The class names: ``{"labels": [{"class_id", "class_name"}]}``."""
        return {"labels": [{"class_id": i, "class_name": n} for i, n in enumerate(labels)]}

    @app.get("/healthz")
    def healthz():
        """The HTTP process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Error}})
    def readyz():
        """Every worker has loaded its models (503 until then)."""
        if workers is None or not workers.ready():
            return JSONResponse({"error": "the models are not loaded yet"}, 503)
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics():
        """Prometheus text: jobs by state, videos and frames processed, job latency."""
        return PlainTextResponse(prometheus_text(store, workers), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(os.path.join(STATIC, "index.html"))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def openapi_document():
    """The service's OpenAPI document (what GET /openapi.json serves), as text: docs/openapi.json holds a copy."""
    import tempfile
    from .jobs import JobStore
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(JobStore(os.path.join(folder, "jobs.sqlite3")), [], folder)
        return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def prometheus_text(store, workers):
    """The /metrics page (Prometheus text format 0.0.4)."""
    counts = store.counts()
    done, frames, count, total, buckets = store.totals()
    lines = ["# HELP videotag_jobs Jobs in the store, by state.", "# TYPE videotag_jobs gauge"]
    lines += [f'videotag_jobs{{state="{s}"}} {counts[s]}' for s in STATES]
    lines += ["# HELP videotag_videos_processed_total Videos tagged (jobs done).",
              "# TYPE videotag_videos_processed_total counter", f"videotag_videos_processed_total {done}",
              "# HELP videotag_frames_processed_total Frames run through the TSN for done jobs.",
              "# TYPE videotag_frames_processed_total counter", f"videotag_frames_processed_total {frames}",
              "# HELP videotag_job_latency_seconds From submission to result, jobs done.",
              "# TYPE videotag_job_latency_seconds histogram"]
    lines += [f'videotag_job_latency_seconds_bucket{{le="{b:g}"}} {n}' for b, n in zip(LATENCY_BUCKETS, buckets)]
    lines += [f'videotag_job_latency_seconds_bucket{{le="+Inf"}} {count}',
              f"videotag_job_latency_seconds_sum {total:.6f}", f"videotag_job_latency_seconds_count {count}",
              "# HELP videotag_workers_ready Whether every worker has its models loaded.",
              "# TYPE videotag_workers_ready gauge",
              f"videotag_workers_ready {int(workers is not None and workers.ready())}"]
    return "\n".join(lines) + "\n"
