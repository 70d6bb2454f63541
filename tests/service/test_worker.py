"""Jobs survive: a server killed with SIGKILL while a job runs, started again on the same data folder,
finishes every job once (the killed run's workers die with it); a worker that dies alone is replaced and its
job given back to the queue."""
import os
import signal
import time

import pytest

from service_setup import Server, assert_same_result, make_models, videotag_results, wait_done, write_clip


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tsn50_release):
    root = tmp_path_factory.mktemp("worker")
    (root / "models").mkdir()
    flags = make_models(root / "models", tsn50_release)
    clips = [write_clip(root / f"clip{i}.avi", 10 + i, seconds=5.0) for i in range(2)]
    reference = videotag_results(root / "models", clips, root / "ref", segment_seconds=0.5)
    server = Server(root / "data", flags + [f"--allow_dir={root}"])
    yield root, server, clips, reference
    server.stop()


def group_alive(pgid):
    """Pids of live (not zombie) processes of the process group ``pgid``."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(pid))
    return alive


def wait_for(condition, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_server_finishes_every_job_once_after_a_restart(setup):
    root, server, clips, reference = setup
    with server.client() as client:
        ids = [client.post("/v1/jobs", json={"path": clips[i % 2], "segment_seconds": 0.5}).json()["id"]
               for i in range(5)]
        # killed while the first job runs, part-way (its windows are being tagged)
        wait_for(lambda: client.get(f"/v1/jobs/{ids[0]}").json()["progress"] > 0)
        # not ended yet: queued, or claimed already (a worker claims up to 8 jobs and the next claim's pool
        # opens while the last video of a claim is tagged: which of the two depends on timing)
        assert client.get(f"/v1/jobs/{ids[-1]}").json()["state"] in ("queued", "running")
    pgid = server.process.pid
    server.kill()
    assert wait_for(lambda: not group_alive(pgid), 10)  # the workers (and their decoders) died with it
    server.start()
    with server.client() as client:
        for i, job_id in enumerate(ids):
            job = wait_done(client, job_id)
            assert job["state"] == "done", job
            assert_same_result(job["result"], reference[clips[i % 2]])
        listed = [j["id"] for j in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]]
        assert sorted(listed) == sorted(ids)  # each job once, none made twice
    assert "job(s) back in the queue" in server.output()


def test_a_worker_that_dies_is_replaced_and_its_job_done(setup):
    root, server, clips, reference = setup  # started again by the test above
    with server.client() as client:
        job_id = client.post("/v1/jobs", json={"path": clips[0], "segment_seconds": 0.5}).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["progress"] > 0)
        worker = [p for p in group_alive(server.process.pid) if "spawn_main" in cmdline(p)
                  and parent(p) == server.process.pid]
        assert len(worker) == 1
        os.kill(worker[0], signal.SIGKILL)
        job = wait_done(client, job_id, seconds=120)
        assert job["state"] == "done"
        assert_same_result(job["result"], reference[clips[0]])
        assert client.get("/readyz").status_code == 200
    assert "worker w0 died" in server.output()


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_worker_keeps_its_decoders_from_job_to_job(setup):
    """The decode processes start with the worker and serve every claim (none started per claim)."""
    root, server, clips, reference = setup

    def decoders():
        worker, = [p for p in group_alive(server.process.pid) if parent(p) == server.process.pid
                   and "spawn_main" in cmdline(p)]
        return sorted(p for p in group_alive(server.process.pid) if parent(p) == worker)

    with server.client() as client:
        for clip in clips:
            job = wait_done(client, client.post("/v1/jobs", json={"path": clip}).json()["id"])
            assert job["state"] == "done"
            assert_same_result(job["result"], {**reference[clip], "segments": [], "timeline": None})
            if clip == clips[0]:
                first = wait_for(decoders)
        assert len(first) == 2 and decoders() == first
