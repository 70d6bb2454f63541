"""The SQLite job store: a job is claimed once, its result stored once by its claim, jobs a killed service
left running go back to the queue (or fail after MAX_ATTEMPTS), paging, cancelling."""
import threading

from video_tag.service.jobs import JobStore


def store_with(tmp_path, count):
    store = JobStore(str(tmp_path / "jobs.sqlite3"))
    ids = [store.add(f"v{i}.mp4", f"/data/v{i}.mp4", {"topk": i + 1}) for i in range(count)]
    return store, ids


def test_two_claimers_never_take_the_same_job(tmp_path):
    store, ids = store_with(tmp_path, 60)
    taken = {"a": [], "b": []}

    def claimer(name):
        while True:
            jobs = store.claim(name, 2)
            if not jobs:
                return
            taken[name] += [job_id for job_id, *_ in jobs]

    threads = [threading.Thread(target=claimer, args=(n,)) for n in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken["a"] + taken["b"]) == sorted(ids)  # every job once, none twice
    assert store.counts()["running"] == 60


def test_priority_then_age_and_options(tmp_path):
    store, ids = store_with(tmp_path, 3)
    urgent = store.add("now.mp4", "/data/now.mp4", {}, priority=1)
    claimed = store.claim("w0", 2)
    assert [c[0] for c in claimed] == [urgent, ids[0]]
    assert claimed[1][1:3] == ("/data/v0.mp4", {"topk": 1})


def test_a_result_is_stored_once_and_only_by_its_claim(tmp_path):
    store, (job_id,) = store_with(tmp_path, 1)
    (_, _, _, claim), = store.claim("w0")
    assert not store.finish(job_id, "w1:other", {"tags": ["x"]}, 5)  # not its claim
    assert store.finish(job_id, claim, {"tags": ["a"]}, 5)
    assert not store.finish(job_id, claim, {"tags": ["b"]}, 5)  # done already: never twice
    assert not store.fail(job_id, claim, "late")
    job = store.get(job_id)
    assert (job["state"], job["result"], job["error"], job["progress"]) == ("done", {"tags": ["a"]}, None, 1.0)


def test_recover_requeues_running_jobs_and_the_old_claim_is_void(tmp_path):
    store, ids = store_with(tmp_path, 2)
    (first, _, _, old_claim), = store.claim("w0")
    assert store.recover(3) == (1, 0)  # the service was killed while `first` ran
    assert store.get(first)["state"] == "queued"
    assert not store.holds(first, old_claim)
    (again, _, _, new_claim), = store.claim("w0")
    assert again == first and new_claim != old_claim
    assert not store.finish(first, old_claim, {"tags": []}, 1)  # a worker of the killed service
    assert store.finish(first, new_claim, {"tags": []}, 1)


def test_a_job_that_takes_the_service_down_fails_after_max_attempts(tmp_path):
    store, (job_id,) = store_with(tmp_path, 1)
    for attempt in range(3):
        store.claim("w0")
        assert store.recover(3) == ((1, 0) if attempt < 2 else (0, 1))
    job = store.get(job_id)
    assert job["state"] == "failed" and "3 times" in job["error"]


def test_recover_one_dead_worker_leaves_the_others_jobs(tmp_path):
    store, ids = store_with(tmp_path, 2)
    store.claim("w1", 1)
    store.claim("w10", 1)  # a name that starts like the dead one's
    assert store.recover(3, worker="w1") == (1, 0)
    assert [store.get(i)["state"] for i in ids] == ["queued", "running"]


def test_cancel_and_paging(tmp_path):
    store, ids = store_with(tmp_path, 5)
    assert store.cancel(ids[1]) == "queued"
    assert store.cancel(ids[1]) == "cancelled"  # a second cancel changes nothing
    assert store.cancel("nope") is None
    (running, _, _, claim), = store.claim("w0")
    assert store.cancel(running) == "running" and not store.holds(running, claim)
    assert not store.finish(running, claim, {}, 0)  # a cancelled job's late result is dropped
    seen, cursor = [], None
    while True:
        page, cursor = store.page(2, cursor)
        seen += [j["id"] for j in page]
        assert all("result" not in j for j in page)
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert [j["id"] for j in store.page(10, state="cancelled")[0]] == [ids[1], running]  # newest first


def test_forget_old_jobs_deletes_only_jobs_ended_before_the_retention(tmp_path, monkeypatch):
    """Jobs stamped by a fake clock in a real SQLite file: those that ended more than keep_days ago go, with
    the uploads they kept; queued and running jobs stay however old, and so does a video named by path."""
    import os
    import types
    from video_tag.service import jobs
    day, now = 86400.0, 1.8e9
    clock = types.SimpleNamespace(time=lambda: clock.now, now=now - 30 * day)
    monkeypatch.setattr(jobs, "time", clock)
    store = JobStore(str(tmp_path / "jobs.sqlite3"))
    files = {name: tmp_path / name for name in ("done.mp4", "recent.mp4", "queued.mp4", "running.mp4", "mine.mp4")}
    for path in files.values():
        path.write_bytes(b"video")

    def ended(name, at, upload=True, how="finish"):
        job_id = store.add(name, str(files.get(name, tmp_path / name)), {}, upload=upload, priority=1)
        if how == "cancel":
            clock.now = at
            store.cancel(job_id)
            return job_id
        (_, _, _, claim), = store.claim("w0")
        clock.now = at
        assert store.finish(job_id, claim, {"tags": []}, 1) if how == "finish" else store.fail(job_id, claim, "bad")
        return job_id

    old = [ended("done.mp4", now - 10 * day), ended("mine.mp4", now - 9 * day, upload=False, how="fail"),
           ended("gone.mp4", now - 8 * day, how="cancel")]
    kept = [ended("recent.mp4", now - 1 * day), ended("edge.mp4", now - 7 * day)]  # exactly 7 days: kept
    clock.now = now - 20 * day
    running = store.add("running.mp4", str(files["running.mp4"]), {}, upload=True)
    assert store.claim("w0", 1)[0][0] == running  # running since 20 days ago
    queued = store.add("queued.mp4", str(files["queued.mp4"]), {}, upload=True)
    store.add("later.mp4", "/data/later.mp4", {})
    clock.now = now
    assert jobs.forget_old_jobs(store, 0, now + 1000 * day) == 0  # 0 keeps every job
    assert jobs.forget_old_jobs(store, 7, now) == 3
    assert [store.get(j) for j in old] == [None] * 3
    assert all(store.get(j) is not None for j in kept + [queued, running])
    assert store.counts() == {"queued": 2, "running": 1, "done": 2, "failed": 0, "cancelled": 0}
    videos = sorted(n for n in os.listdir(tmp_path) if n.endswith(".mp4"))
    assert videos == ["mine.mp4", "queued.mp4", "recent.mp4", "running.mp4"]  # mine.mp4: a path job's, never removed
    assert jobs.forget_old_jobs(store, 0.5, now) == 2  # 12 hours: the recent one and the edge one
    assert store.counts()["done"] == 0 and store.counts()["queued"] == 2 and not files["recent.mp4"].exists()
