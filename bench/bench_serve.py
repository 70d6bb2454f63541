"""The service under load, on loopback: ``--clients`` concurrent clients upload ``--clips`` short generated clips
in all (each client submits, polls its job to the end, then takes the next clip), in two halves. Prints the
errors (must be 0), whether every result equals videotag.py's line for the same clip (1e-5), the throughput
of the service (first submission to last result; the models loaded before) against videotag.py run on the
same clips as one list (the whole process, as a user runs it), and the service's peak memory (RSS of the
server, its workers and their decoders, summed) during the first and the second half.

    python bench/bench_serve.py                       # 20 clients, 100 clips of 3 s, tiny random models
    python bench/bench_serve.py --clips 40 --clients 8
    python bench/bench_serve.py --tsn_weights weights/tsn.pdparams --lstm_weights weights/attention_lstm.pdparams \
        --label_file label_3396.txt                   # the release models and configs

Bounded: at most ``--timeout`` seconds in all (the run stops and says so).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ENV = dict(os.environ)  # before anything imports Paddle (which sets OMP_NUM_THREADS=1 for its children)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "service"))


def group_rss(pgid):
    """Resident memory (bytes) of every process of the process group ``pgid``."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


class PeakMemory(threading.Thread):
    """Samples ``group_rss`` every 0.1 s; ``peak`` since the last ``reset``."""

    def __init__(self, pgid):
        super().__init__(daemon=True)
        self.pgid, self.peak, self.stopped = pgid, 0, False

    def run(self):
        while not self.stopped:
            self.peak = max(self.peak, group_rss(self.pgid))
            time.sleep(0.1)

    def reset(self):
        peak, self.peak = self.peak, 0
        return peak


def run_clients(url, clips, clients, deadline):
    """Every clip uploaded and polled to its end by ``clients`` threads: ``({clip: job}, [errors])``."""
    import httpx
    todo, lock, jobs, errors = list(clips), threading.Lock(), {}, []

    def client():
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.time() < deadline:
                with lock:
                    if not todo:
                        return
                    clip = todo.pop()
                try:
                    with open(clip, "rb") as f:
                        answer = http.post("/v1/jobs", files={"video": (os.path.basename(clip), f)})
                    if answer.status_code != 202:
                        raise RuntimeError(f"{answer.status_code} {answer.text}")
                    job_id = answer.json()["id"]
                    while time.time() < deadline:
                        job = http.get(f"/v1/jobs/{job_id}").json()
                        if job["state"] in ("done", "failed", "cancelled"):
                            break
                        time.sleep(0.2)
                    if job["state"] != "done":
                        raise RuntimeError(f"job {job_id}: {job['state']} {job.get('error')}")
                    jobs[clip] = job
                except Exception as e:  # counted, the client goes on
                    errors.append(f"{os.path.basename(clip)}: {e}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return jobs, errors


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each clip")
    p.add_argument("--timeout", type=float, default=1800, help="the whole run stops after this many seconds")
    p.add_argument("--tsn_weights", help="with --lstm_weights, --label_file (and --config, --tsn_config): real "
                                         "models; default: tiny random ones (ResNet50 at 32 px, 5 frames)")
    p.add_argument("--lstm_weights")
    p.add_argument("--label_file")
    p.add_argument("--config", default="configs/attention_lstm.yaml")
    p.add_argument("--tsn_config", default="configs/tsn.yaml")
    args = p.parse_args()
    deadline = time.time() + args.timeout
    env = {**ENV, "PYTHONPATH": ROOT}
    import httpx
    from service_setup import Server, assert_same_tags, free_port, write_clip  # noqa: F401
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        if args.tsn_weights:
            flags = [f"--tsn_weights={args.tsn_weights}", f"--lstm_weights={args.lstm_weights}",
                     f"--label_file={args.label_file}", f"--config={args.config}", f"--tsn_config={args.tsn_config}"]
        else:  # tiny models, written by a child (no Paddle in this process)
            code = ("import pickle, sys, numpy as np; sys.path[:0] = ['tests', 'tests/service'];"
                    "from models.test_tsn import release_weights; from service_setup import make_models;"
                    f"pickle.dump(release_weights(50, 4, np.random.default_rng(0)), open('{tmp}/tsn50.pdparams', 'wb'), protocol=2);"
                    f"print('\\n'.join(make_models('{tmp}', ['{tmp}/tsn50.pdparams'])))")
            made = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
            if made.returncode:
                raise SystemExit(made.stderr)
            flags = [f for f in made.stdout.splitlines() if f.startswith("--") and "use_gpu" not in f and "frame_batch" not in f]
        clips = [write_clip(os.path.join(tmp, f"clip{i:03d}.avi"), i, seconds=args.seconds) for i in range(args.clips)]
        with open(os.path.join(tmp, "clips.list"), "w", encoding="utf-8") as f:
            f.write("".join(c + "\n" for c in clips))

        start = time.time()
        done = subprocess.run([sys.executable, os.path.join(ROOT, "videotag.py"), os.path.join(tmp, "clips.list"),
                               f"--save_dir={tmp}/videotag", *flags], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=max(1, deadline - time.time()))
        videotag_seconds = time.time() - start
        if done.returncode:
            raise SystemExit(f"videotag.py failed:\n{done.stderr}")
        with open(os.path.join(tmp, "videotag", "predictions.jsonl"), encoding="utf-8") as f:
            reference = {json.loads(line)["video"]: json.loads(line)["tags"] for line in f}

        port = free_port()
        start = time.time()
        server = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), f"--port={port}",
                                   f"--data_dir={tmp}/service", *flags], cwd=ROOT, env=env,
                                  stdout=open(os.path.join(tmp, "serve.log"), "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("the server did not start:\n" + open(os.path.join(tmp, "serve.log")).read())
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            ready_seconds = time.time() - start
            memory = PeakMemory(server.pid)
            memory.start()
            half = len(clips) // 2
            start = time.time()
            jobs, errors = run_clients(url, clips[:half], args.clients, deadline)
            first_peak = memory.reset()
            more, more_errors = run_clients(url, clips[half:], args.clients, deadline)
            service_seconds = time.time() - start
            second_peak = memory.reset()
            memory.stopped = True
        finally:
            server.terminate()
            server.wait(30)
        jobs.update(more)
        errors += more_errors
        unequal = []
        for clip, job in jobs.items():
            try:
                assert_same_tags(job["result"]["tags"], reference[clip])
            except AssertionError:
                unequal.append(clip)
        missing = len(clips) - len(jobs)
        print(f"{len(clips)} clips of {args.seconds:g} s, {args.clients} clients; models: "
              f"{'given' if args.tsn_weights else 'tiny random (ResNet50, 32 px, 5 frames)'}")
        print(f"errors: {len(errors)}{' (' + '; '.join(errors[:3]) + ')' if errors else ''}; "
              f"not finished: {missing}; results unlike videotag.py's (1e-5): {len(unequal)}")
        print(f"videotag.py on the list: {videotag_seconds:.1f} s = {len(clips) / videotag_seconds:.2f} clips/s "
              "(whole process, models loaded in it)")
        print(f"service: {service_seconds:.1f} s = {len(jobs) / service_seconds:.2f} clips/s (models loaded before: "
              f"ready in {ready_seconds:.1f} s); ratio service / videotag.py: "
              f"{(len(jobs) / service_seconds) / (len(clips) / videotag_seconds):.2f}x")
        print(f"service peak memory: first {half} clips {first_peak / 2**20:.0f} MiB, "
              f"second {len(clips) - half} clips {second_peak / 2**20:.0f} MiB "
              f"({(second_peak - first_peak) / 2**20:+.0f} MiB)")
        return 1 if errors or unequal or missing else 0


if __name__ == "__main__":
    sys.exit(main())
