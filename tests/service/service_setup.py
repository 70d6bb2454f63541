"""What the service tests share: tiny random-weight models (as tests/test_tagger.py builds them), generated
clips, videotag.py's own result for a clip, and a real ``serve.py`` on a free loopback port."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEG, SHORT, TARGET, FPS = 5, 40, 32, 10


def make_models(folder, tsn50_release):
    """Write tsn.pdparams, tsn.yaml, lstm.yaml, lstm.pdparams, labels.txt (6 classes) into ``folder``;
    returns the serve.py / videotag.py flags that use them."""
    from video_tag import weights
    from video_tag.config import load_config
    from video_tag.models import build_model
    folder = str(folder)
    shutil.copy(tsn50_release[0], os.path.join(folder, "tsn.pdparams"))
    with open(os.path.join(ROOT, "configs", "tsn.yaml"), encoding="utf-8") as f:
        tsn = yaml.safe_load(f)
    tsn["MODEL"].update(num_layers=50, num_classes=4)
    tsn["INFER"].update(seg_num=SEG, short_size=SHORT, target_size=TARGET)
    with open(os.path.join(folder, "tsn.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(tsn, f)
    with open(os.path.join(ROOT, "configs", "attention_lstm.yaml"), encoding="utf-8") as f:
        lstm = yaml.safe_load(f)
    lstm["MODEL"].update(embedding_size=8, lstm_size=4, num_classes=6, fc_sizes=[16, 8], topk=6)
    with open(os.path.join(folder, "lstm.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(lstm, f)
    model = build_model("AttentionLSTM", load_config(os.path.join(folder, "lstm.yaml")))
    weights.write_state(weights.model_state(model), os.path.join(folder, "lstm.pdparams"))
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"标签 {i}\n" for i in range(6)))
    return [f"--tsn_weights={folder}/tsn.pdparams", f"--lstm_weights={folder}/lstm.pdparams",
            f"--label_file={folder}/labels.txt", f"--config={folder}/lstm.yaml", f"--tsn_config={folder}/tsn.yaml",
            "--use_gpu=False", "--frame_batch=4"]


def write_clip(path, seed, seconds=2.0, size=(64, 48), fourcc="MJPG", fps=FPS):
    """An MJPG .avi (or another ``fourcc``) at ``fps`` frames/s of random plain colours, a new one every 5
    frames (seeded)."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for i in range(int(seconds * fps)):
        if i % 5 == 0:
            frame = np.empty((size[1], size[0], 3), np.uint8)
            frame[:] = rng.integers(0, 256, 3)
        writer.write(frame)
    writer.release()
    return str(path)


def write_cuts(path, lengths=(30, 12, 7, 21), seed=0):
    """An H.264 .mp4 (160x96, 25 frames/s, tests/shot_videos.py) of textured scenes with hard cuts between
    shots of ``lengths`` frames; returns ``(path, cut frames)``."""
    from shot_videos import Scene, encode_decode, shot_frames
    frames, cuts = shot_frames([(Scene(seed + k), n) for k, n in enumerate(lengths)], ["cut"] * (len(lengths) - 1))
    encode_decode(frames, path)
    return str(path), cuts


def videotag_results(folder, clips, save_dir, segment_seconds=None, timeline=None):
    """videotag.py's outputs for ``clips`` tagged as one list (``tagger.tag``, what videotag.py calls, with
    the models of ``make_models``; ``timeline``: a ``timeline.TimelineOptions``, as --shots, --min_confidence,
    --include, --exclude give it): ``{path: {"tags": [...], "segments": [{"start", "end", "tags"}],
    "shots": [{"shot", "start", "end", "start_frame", "end_frame", "tags"}], "timeline": the timeline file
    or None}}``."""
    from video_tag.config import load_config
    from video_tag.readers.lists import output_stem
    from video_tag.tagger import tag
    folder = str(folder)
    listing = os.path.join(folder, "clips.list")
    with open(listing, "w", encoding="utf-8") as f:
        f.write("".join(c + "\n" for c in clips))
    code = tag(listing, str(save_dir), load_config(os.path.join(folder, "tsn.yaml")),
               load_config(os.path.join(folder, "lstm.yaml")), os.path.join(folder, "tsn.pdparams"),
               os.path.join(folder, "lstm.pdparams"), os.path.join(folder, "labels.txt"),
               segment_seconds=segment_seconds, num_workers=1, frame_batch=4, timeline=timeline)
    assert code == 0
    results = {}
    for record in read_jsonl(os.path.join(save_dir, "predictions.jsonl")):
        location = os.path.join(save_dir, "timelines", output_stem(record["video"]) + ".json")
        written = None
        if os.path.exists(location):
            with open(location, encoding="utf-8") as f:
                written = json.load(f)
        results[record["video"]] = {"tags": record["tags"], "segments": [], "shots": [], "timeline": written}
    if segment_seconds:
        for record in read_jsonl(os.path.join(save_dir, "segments.jsonl")):
            results[record["video"]]["segments"].append(
                {"start": record["start"], "end": record["end"], "tags": record["tags"]})
    if timeline is not None and timeline.shots:
        for record in read_jsonl(os.path.join(save_dir, "shots.jsonl")):
            results[record["video"]]["shots"].append({k: v for k, v in record.items() if k not in ("video", "source")})
    return results


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def assert_same_tags(ours, reference, atol=1e-5):
    """Two tag lists: the same classes in the same order, probabilities within ``atol``."""
    assert [t["class_id"] for t in ours] == [t["class_id"] for t in reference], (ours, reference)
    assert [t["class_name"] for t in ours] == [t["class_name"] for t in reference]
    np.testing.assert_allclose([t["probability"] for t in ours], [t["probability"] for t in reference], atol=atol)


def assert_same_result(result, reference):
    """A service result against videotag.py's outputs for the same clip: tags, segments and shots (the
    same boundaries, tags within 1e-5); with a timeline file, the result is that timeline (its ranges the
    same, confidences within 1e-5) but for its name."""
    assert_same_tags(result["tags"], reference["tags"])
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(s["start"], s["end"]) for s in reference["segments"]]
    for ours, ref in zip(result["segments"], reference["segments"]):
        assert_same_tags(ours["tags"], ref["tags"])
    bounds = ("shot", "start", "end", "start_frame", "end_frame")
    assert [[s[k] for k in bounds] for s in result["shots"]] == [[s[k] for k in bounds] for s in reference["shots"]]
    for ours, ref in zip(result["shots"], reference["shots"]):
        assert_same_tags(ours["tags"], ref["tags"])
    if reference.get("timeline") is not None:
        written = reference["timeline"]
        assert set(result) == set(written) and result["metadata"] == written["metadata"]
        assert [s["segment"] for s in result["segments"]] == [s["segment"] for s in written["segments"]]
        key = ("class_id", "class_name", "start", "end", "level")
        assert [[r[k] for k in key] for r in result["ranges"]] == [[r[k] for k in key] for r in written["ranges"]]
        np.testing.assert_allclose([r["confidence"] for r in result["ranges"]],
                                   [r["confidence"] for r in written["ranges"]], atol=1e-5)


def validate_timeline(timeline):
    """``timeline`` (a dict) against video_tag/timeline.schema.json (``jsonschema.ValidationError``)."""
    import jsonschema
    with open(os.path.join(ROOT, "video_tag", "timeline.schema.json"), encoding="utf-8") as f:
        jsonschema.validate(timeline, json.load(f))
    return timeline


def child_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python serve.py`` on a free loopback port, its output in ``<data_dir>.log``; ``url``, ``client()``."""

    def __init__(self, data_dir, flags, token=None, wait_ready=True, preexec_fn=None):
        self.data_dir, self.flags, self.token = str(data_dir), list(flags), token
        self.preexec_fn, self.process = preexec_fn, None
        self.start(wait_ready)

    def start(self, wait_ready=True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.data_dir + ".log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "serve.py"), f"--port={self.port}", f"--data_dir={self.data_dir}",
             *self.flags, *([f"--token={self.token}"] if self.token else [])],
            env=child_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self.preexec_fn)
        deadline = time.time() + 120
        path = "/readyz" if wait_ready else "/healthz"
        while time.time() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not become ready:\n" + self.output())

    def client(self, token="default"):
        token = self.token if token == "default" else token
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {token}"} if token else {})

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.data_dir + ".log", encoding="utf-8", errors="replace") as f:
            return f.read()

    def kill(self):
        """SIGKILL the server alone (its workers die with it: PR_SET_PDEATHSIG)."""
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def wait_done(client, job_id, seconds=120):
    """Poll a job until it has ended; returns its dict."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {job}")
