"""The HTTP API on a real ``serve.py`` (uvicorn on a free loopback port, one worker, tiny random models):
jobs by upload and by path equal videotag.py's lines, /v1/tag, several clients at once, every refusal as one
JSON line, a bad video failing only its job, paging, cancelling, labels, metrics."""
import os
import threading
import time

import pytest

from service_setup import Server, assert_same_result, assert_same_tags, make_models, videotag_results, wait_done, write_clip

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tsn50_release):
    root = tmp_path_factory.mktemp("app")
    (root / "models").mkdir()
    (root / "videos").mkdir()
    flags = make_models(root / "models", tsn50_release)
    clips = {"short": write_clip(root / "videos" / "short 视频.avi", 1, seconds=2.0),
             "other": write_clip(root / "videos" / "other.avi", 2, seconds=3.4),
             "long": write_clip(root / "videos" / "long.avi", 3, seconds=6.0)}
    reference = videotag_results(root / "models", list(clips.values()), root / "ref", segment_seconds=1.0)
    server = Server(root / "data", flags + [f"--allow_dir={root / 'videos'}", "--max_upload_mb=0.2",
                                            "--sync_max_seconds=5"], token=TOKEN)
    yield root, clips, reference, server
    server.stop()


def upload(client, path, route="/v1/jobs", **options):
    with open(path, "rb") as f:
        return client.post(route, files={"video": (os.path.basename(path), f)},
                           data={k: str(v) for k, v in options.items()})


def test_an_upload_and_a_path_give_videotags_result(served):
    root, clips, reference, server = served
    with server.client() as client:
        answer = upload(client, clips["short"], segment_seconds=1)
        assert answer.status_code == 202 and answer.json()["state"] == "queued"
        assert answer.headers["location"] == f"/v1/jobs/{answer.json()['id']}"
        by_path = client.post("/v1/jobs", json={"path": clips["other"], "topk": 3})
        assert by_path.status_code == 202
        job = wait_done(client, answer.json()["id"])
        assert (job["state"], job["progress"], job["error"], job["video"]) == ("done", 1.0, None, "short 视频.avi")
        assert job["options"] == {"segment_seconds": 1.0}
        assert_same_result(job["result"], reference[clips["short"]])
        job = wait_done(client, by_path.json()["id"])
        assert job["state"] == "done" and job["video"] == clips["other"] and job["result"]["segments"] == []
        assert_same_tags(job["result"]["tags"], reference[clips["other"]]["tags"][:3])
    assert uploads_gone(root / "data" / "uploads", answer.json()["id"])  # removed once its job ended


def test_shots_by_upload_and_by_path_give_videotags_timeline(served):
    """Options as form fields (include given twice) and as JSON keys: the timeline videotag.py --shots
    --include writes for the same video (shots, tags, ranges), valid against the timeline schema."""
    from service_setup import validate_timeline, write_cuts
    from video_tag.timeline import TimelineOptions
    root, clips, reference, server = served
    video, cuts = write_cuts(root / "videos" / "cuts.mp4")
    expected = videotag_results(root / "models", [video], root / "ref_shots", timeline=TimelineOptions(
        shots=True, min_confidence=0.45, include=["标签 0", "3,标签 5"]))[video]
    with server.client() as client:
        with open(video, "rb") as f:
            answer = client.post("/v1/jobs", files={"video": ("cuts.mp4", f)},
                                 data={"shots": "true", "min_confidence": "0.45", "include": ["标签 0", "3,标签 5"]})
        by_path = client.post("/v1/jobs", json={"path": video, "shots": True, "min_confidence": 0.45,
                                                "include": ["标签 0", "3,标签 5"]})
        assert answer.status_code == 202 and by_path.status_code == 202, (answer.text, by_path.text)
        uploaded, named = wait_done(client, answer.json()["id"]), wait_done(client, by_path.json()["id"])
    assert uploaded["options"] == {"shots": True, "min_confidence": 0.45, "include": ["标签 0", "3,标签 5"]}
    for job, shown in ((uploaded, "cuts.mp4"), (named, video)):
        assert job["state"] == "done", job
        result = validate_timeline(job["result"])
        assert result["video"] == shown
        assert [(s["start_frame"], s["end_frame"]) for s in result["shots"]] == list(zip([0] + cuts, cuts + [70]))
        assert {t["class_id"] for t in result["tags"]} == {0, 3, 5}
        assert_same_result(result, expected)
    assert named["result"]["name"] == expected["timeline"]["name"]


def uploads_gone(folder, job_id, seconds=5):
    """Whether the upload of ``job_id`` leaves ``folder`` within ``seconds`` (the service looks every 0.5 s)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not [n for n in os.listdir(folder) if n.startswith(job_id)]:
            return True
        time.sleep(0.1)
    return False


def test_tag_waits_for_a_short_clip_and_refuses_a_long_one(served):
    root, clips, reference, server = served
    with server.client() as client:
        answer = upload(client, clips["other"], "/v1/tag", segment_seconds=1)
        assert answer.status_code == 200 and answer.json()["state"] == "done"
        assert_same_result(answer.json()["result"], reference[clips["other"]])
        too_long = upload(client, clips["long"], "/v1/tag")  # 6 s, the limit is 5 s
        assert too_long.status_code == 413 and "POST /v1/jobs" in too_long.json()["error"]
        by_path = client.post("/v1/tag", json={"path": clips["long"]})
        assert by_path.status_code == 413
    assert not [n for n in os.listdir(root / "data" / "uploads") if not n.startswith(answer.json()["id"])]


def chunked_upload(client, path, boundary="b0undary"):
    """A multipart upload sent in chunks, without Content-Length."""
    def body():
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="x.avi"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(16384)
                if not chunk:
                    break
                yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()
    return client.post("/v1/jobs", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})


def test_several_clients_at_once(served):
    root, clips, reference, server = served
    results, errors = [], []

    def client_thread(i):
        try:
            with server.client() as client:
                name = ("short", "other", "long")[i % 3]
                answer = (upload(client, clips[name], segment_seconds=1) if i % 2 else
                          client.post("/v1/jobs", json={"path": clips[name], "segment_seconds": 1}))
                assert answer.status_code == 202, answer.text
                results.append((name, wait_done(client, answer.json()["id"])))
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    assert len({job["id"] for _, job in results}) == 8
    for name, job in results:
        assert job["state"] == "done", job
        assert_same_result(job["result"], reference[clips[name]])


def test_refusals_are_one_json_line(served):
    root, clips, reference, server = served
    outside = root / "models" / "outside.avi"
    write_clip(outside, 4, seconds=0.5)
    link = root / "videos" / "link.avi"
    if not link.exists():
        link.symlink_to(outside)
    big = root / "big.avi"
    big.write_bytes(os.urandom(300 * 1024))  # over --max_upload_mb=0.2
    with server.client() as client, server.client(token=None) as anonymous, server.client("wrong") as wrong:
        cases = [
            (anonymous.get("/v1/jobs"), 401),
            (wrong.post("/v1/jobs", json={"path": clips["short"]}), 401),
            (anonymous.get("/metrics"), 401),
            (client.post("/v1/jobs", json={"path": str(root / "videos" / ".." / "models" / "outside.avi")}), 403),
            (client.post("/v1/jobs", json={"path": str(link)}), 403),
            (client.post("/v1/jobs", json={"path": "/etc/passwd"}), 403),
            (client.post("/v1/jobs", json={"path": str(root / "videos" / "nope.avi")}), 404),
            (client.get("/v1/jobs/0123456789abcdef"), 404),
            (client.delete("/v1/jobs/0123456789abcdef"), 404),
            (upload(client, big), 413),
            (chunked_upload(client, big), 413),  # no Content-Length: cut off while streamed
            (client.post("/v1/jobs", json={"path": clips["short"], "topk": 0}), 422),
            (client.post("/v1/jobs", json={"path": clips["short"], "topk": "x"}), 422),
            (client.post("/v1/jobs", json={"path": clips["short"], "shots": True, "nope": 1}), 422),
            (client.post("/v1/jobs", json={"path": clips["short"], "segment_stride_seconds": 2}), 422),
            (upload(client, clips["short"], threshold="nan"), 422),
            (upload(client, clips["short"], shots="maybe"), 422),
            (client.post("/v1/jobs", json={"path": clips["short"], "shots": True, "include": ["标签 1", "fish"]}), 422),
            (client.post("/v1/jobs", json={"path": clips["short"], "shots": True, "min_confidence": 2}), 422),
            (client.post("/v1/jobs", json={"topk": 3}), 422),
            (client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400),
            (client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}), 415),
            (client.get("/v1/jobs?limit=0"), 422),
            (client.get("/v1/jobs?state=lost"), 422),
        ]
        for i, (answer, status) in enumerate(cases):
            assert answer.status_code == status, (i, answer.status_code, answer.text)
            body = answer.json()
            assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], body
        assert anonymous.get("/healthz").status_code == 200  # health checks need no token
    assert os.listdir(root / "data" / "uploads") == [] or all(
        not n.endswith(".part") for n in os.listdir(root / "data" / "uploads"))


def test_a_bad_video_fails_its_job_and_the_service_stays_up(served):
    root, clips, reference, server = served
    bad = root / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with server.client() as client:
        failed = wait_done(client, upload(client, bad).json()["id"])
        assert failed["state"] == "failed" and failed["error"] and failed["result"] is None
        sync = upload(client, bad, "/v1/tag")
        assert sync.status_code == 422 and sync.json()["error"] == failed["error"]
        good = wait_done(client, upload(client, clips["short"]).json()["id"])
        assert good["state"] == "done"
        assert_same_tags(good["result"]["tags"], reference[clips["short"]]["tags"])
        assert client.get("/readyz").status_code == 200


def test_paging_cancelling_labels_and_metrics(served):
    root, clips, reference, server = served
    with server.client() as client:
        ids = [client.post("/v1/jobs", json={"path": clips["long"], "segment_seconds": 0.5}).json()["id"]
               for _ in range(7)]
        cancelled = client.delete(f"/v1/jobs/{ids[-1]}")  # queued (the worker takes 4 at a time) or running
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        for job_id in ids[:-1]:
            assert wait_done(client, job_id)["state"] == "done"
        assert client.get(f"/v1/jobs/{ids[-1]}").json()["state"] == "cancelled"
        again = client.delete(f"/v1/jobs/{ids[0]}")
        assert again.status_code == 409 and "done" in again.json()["error"]
        listed, cursor = [], None
        while True:
            page = client.get("/v1/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
            assert len(page["jobs"]) <= 3 and all("result" not in j for j in page["jobs"])
            listed += [j["id"] for j in page["jobs"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert listed[:7] == ids[::-1] and len(listed) == len(set(listed))
        done = client.get("/v1/jobs", params={"state": "done", "limit": 500}).json()["jobs"]
        assert ids[-1] not in {j["id"] for j in done} and set(ids[:-1]) <= {j["id"] for j in done}
        assert client.get("/v1/labels").json()["labels"][2] == {"class_id": 2, "class_name": "标签 2"}
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        lines = dict(line.rsplit(" ", 1) for line in metrics.text.splitlines() if not line.startswith("#"))
        assert int(lines['videotag_jobs{state="done"}']) == len(done)
        assert int(lines["videotag_videos_processed_total"]) == len(done)
        assert int(lines['videotag_jobs{state="cancelled"}']) >= 1
        # each of the 6 jobs: the 60 frames of its 12 windows (the video's 5 among them, through the TSN once)
        assert int(lines["videotag_frames_processed_total"]) >= 6 * 60
        assert int(lines['videotag_job_latency_seconds_bucket{le="+Inf"}']) == len(done)
        assert lines["videotag_workers_ready"] == "1"


def test_the_log_is_quiet_after_a_stop(served):
    """Last: the service stopped (Ctrl-C), its log holds our log lines only: no traceback (refusals and bad
    videos are not errors of the service), no third-party chatter, nothing left behind at exit."""
    from conftest import noise_in
    root, clips, reference, server = served
    server.stop()
    assert server.process.returncode == 0
    log = server.output()
    assert "Traceback" not in log and "leaked" not in log and noise_in(log) == [], log
    assert "worker w0 ready" in log
