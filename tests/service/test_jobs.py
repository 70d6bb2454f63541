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
