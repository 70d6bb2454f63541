"""Starting the service: a reachable address needs a token; stray uploads of a killed run are removed; jobs
past the retention (--keep_days) are deleted."""
import os
import sqlite3
import time

from conftest import run_script
from service_setup import Server, make_models
from video_tag.service import jobs
from video_tag.service.jobs import JobStore
from video_tag.service.server import clean_uploads, loopback


def test_binding_a_reachable_address_needs_a_token(tmp_path):
    assert loopback("127.0.0.1") and loopback("localhost") and loopback("::1")
    assert not loopback("0.0.0.0") and not loopback("192.0.2.7")
    done = run_script("serve.py", "--host=0.0.0.0", f"--data_dir={tmp_path / 'data'}", "--workers=0")
    assert done.returncode == 2, done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("error: --host 0.0.0.0 is reachable from other machines")
    assert "Traceback" not in done.stdout and not (tmp_path / "data").exists()
    done = run_script("serve.py", "--host=0.0.0.0", "--token=t", f"--data_dir={tmp_path / 'data'}",
                      "--tsn_weights=nope.pdparams")  # with a token it goes on (and stops at the missing weights)
    assert done.returncode == 2 and "error: weight file not found: nope.pdparams" in done.stdout


def test_clean_uploads_keeps_only_what_queued_jobs_need(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    store = JobStore(str(tmp_path / "jobs.sqlite3"))
    paths = {name: str(folder / name) for name in ("queued.mp4", "done.mp4", "half.part", "lost.mp4")}
    for path in paths.values():
        open(path, "wb").close()
    store.add("q", paths["queued.mp4"], {}, upload=True)
    ended = store.add("d", paths["done.mp4"], {}, upload=True)
    store.cancel(ended)
    assert clean_uploads(store, str(folder)) == 3
    assert os.listdir(folder) == ["queued.mp4"]
    assert store.ended_uploads() == []


def test_a_negative_keep_days_is_refused(tmp_path):
    done = run_script("serve.py", "--keep_days=-1", f"--data_dir={tmp_path / 'data'}", "--workers=0")
    assert done.returncode == 2
    assert done.stdout.strip().splitlines()[-1] == "error: --keep_days must be at least 0, got -1.0"
    assert not (tmp_path / "data").exists()


def test_keep_days_deletes_old_ended_jobs_at_start_and_while_serving(tmp_path, tsn50_release):
    """A real server (no worker) on a jobs file stamped in the past: --keep_days deletes the jobs that ended
    before the retention as it starts, and while it serves (a tiny retention is looked at every tenth of it);
    queued jobs stay however old."""
    (tmp_path / "models").mkdir()
    flags = make_models(tmp_path / "models", tsn50_release) + ["--workers=0"]
    (tmp_path / "data").mkdir()
    store = JobStore(str(tmp_path / "data" / "jobs.sqlite3"))
    stamps = {}
    for name, days in (("d.mp4", 3), ("r.mp4", 1)):
        job_id = store.add(name, f"/videos/{name}", {})
        (_, _, _, claim), = store.claim("w0")
        assert store.finish(job_id, claim, {"tags": []}, 1)
        stamps[job_id] = time.time() - days * jobs.DAY  # ended `days` days ago (and submitted then)
    old_done, recent_done = stamps
    old_queued = store.add("q.mp4", "/videos/q.mp4", {})
    stamps[old_queued] = time.time() - 100 * jobs.DAY
    with sqlite3.connect(store.path) as db:
        for job_id, stamp in stamps.items():
            db.execute("UPDATE jobs SET created = ?, started = ?, "
                       "finished = CASE WHEN finished IS NULL THEN NULL ELSE ? END WHERE id = ?",
                       (stamp, stamp, stamp, job_id))
    db.close()
    server = Server(tmp_path / "data", flags + ["--keep_days=2"], wait_ready=False)
    try:
        with server.client() as client:
            assert client.get(f"/v1/jobs/{old_done}").status_code == 404  # deleted as it started
            assert client.get(f"/v1/jobs/{recent_done}").json()["state"] == "done"
            assert client.get(f"/v1/jobs/{old_queued}").json()["state"] == "queued"
        assert "1 job(s) that ended over 2 day(s) ago deleted" in server.output()
    finally:
        server.stop()
    server = Server(tmp_path / "data", flags + ["--keep_days=0.00002"], wait_ready=False)  # 1.7 s
    try:
        with server.client() as client:
            assert client.get(f"/v1/jobs/{recent_done}").status_code == 404
            late = client.post("/v1/jobs", files={"video": ("v.avi", b"not read")}).json()["id"]
            assert client.delete(f"/v1/jobs/{late}").json()["state"] == "cancelled"  # ended now
            deadline = time.time() + 30
            while client.get(f"/v1/jobs/{late}").status_code != 404:  # once 1.7 s have passed
                assert time.time() < deadline, server.output()
                time.sleep(0.1)
            assert client.get(f"/v1/jobs/{old_queued}").json()["state"] == "queued"
    finally:
        server.stop()
