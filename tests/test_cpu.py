"""CPU settings: threads and the environment the process started with."""
import os
import subprocess
import sys

from video_tag import cpu


def test_default_threads_ignore_paddles_own_omp_setting(monkeypatch):
    # import paddle put OMP_NUM_THREADS=1 into os.environ; only a value the process started with counts.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cpu, "launch_env", lambda name: None)
    assert cpu.default_cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpu, "launch_env", lambda name: "3")
    assert cpu.default_cpu_threads() == 3


def test_child_processes_do_not_inherit_paddles_omp_setting(monkeypatch):
    # the demo imports Paddle, then runs the scripts: they must not take Paddle's 1 for the user's choice
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cpu, "launch_env", lambda name: None)
    assert "OMP_NUM_THREADS" not in cpu.child_env()
    monkeypatch.setattr(cpu, "launch_env", lambda name: "1")  # the user's own 1 is passed on
    assert cpu.child_env()["OMP_NUM_THREADS"] == "1"


def test_container_cpu_quota(tmp_path, monkeypatch):
    assert cpu.cgroup_cpu_quota(str(tmp_path)) is None                    # no cgroup files
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_quota(str(tmp_path)) is None                    # no quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_cpu_quota(str(tmp_path)) == 2                       # 1.5 cores: 2 threads
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")       # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_quota(str(tmp_path)) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu.cgroup_cpu_quota(str(tmp_path)) is None
    # the default thread count follows the quota when it is below the affinity
    monkeypatch.setattr(cpu, "launch_env", lambda name: None)
    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: 1)
    assert cpu.default_cpu_threads() == 1
    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: 10 ** 6)
    assert cpu.default_cpu_threads() == len(os.sched_getaffinity(0))


LAUNCH_ENV = {"PADDLE_TRAINERS_NUM": "4", "PADDLE_LOCAL_SIZE": "2",
              "PADDLE_TRAINER_ENDPOINTS": "10.0.0.1:6170,10.0.0.1:6171,10.0.0.2:6170,10.0.0.2:6171",
              "PADDLE_CURRENT_ENDPOINT": "10.0.0.2:6171"}


def test_local_processes_under_launch_and_spawn():
    assert cpu.local_processes({}) == 1                                           # not launched
    assert cpu.local_processes(LAUNCH_ENV) == 2                                   # paddle.distributed.launch
    # PADDLE_LOCAL_SIZE first: the endpoints may name this host otherwise than PADDLE_CURRENT_ENDPOINT does
    assert cpu.local_processes({**LAUNCH_ENV, "PADDLE_CURRENT_ENDPOINT": "node2:6171"}) == 2
    spawned = {k: v for k, v in LAUNCH_ENV.items() if k != "PADDLE_LOCAL_SIZE"}   # spawn: endpoints only
    assert cpu.local_processes(spawned) == 2
    assert cpu.local_processes({**spawned, "PADDLE_TRAINER_ENDPOINTS": "10.0.0.2:1,10.0.0.2:2,10.0.0.2:3",
                                "PADDLE_TRAINERS_NUM": "3"}) == 3


def test_default_threads_every_core_omp_wins_launched_processes_share(monkeypatch):
    monkeypatch.setattr(cpu, "available_cores", lambda: 8)
    for key in LAUNCH_ENV:
        monkeypatch.delenv(key, raising=False)
    started = {}
    monkeypatch.setattr(cpu, "launch_env", lambda name: started.get(name))
    parent = {}
    monkeypatch.setattr(cpu, "parent_env", lambda name: parent.get(name))
    assert cpu.default_cpu_threads() == 8                       # no setting: every core
    started["OMP_NUM_THREADS"] = "3"
    assert cpu.default_cpu_threads() == 3                       # the user's OMP_NUM_THREADS wins
    for key, value in LAUNCH_ENV.items():
        monkeypatch.setenv(key, value)
    assert cpu.default_cpu_threads() == 3                       # also under a launcher
    started["OMP_NUM_THREADS"] = "1"                            # the launcher imported Paddle, which wrote 1
    assert cpu.thread_choice() == (4, "8 core(s) shared by 2 local processes")
    parent["OMP_NUM_THREADS"] = "1"                             # ... unless the user started it with 1
    assert cpu.default_cpu_threads() == 1
    del started["OMP_NUM_THREADS"]
    assert cpu.default_cpu_threads() == 4


# The threads Paddle will compute on, as its OpenMP runtime (libiomp5) has them: not what cpu.py noted.
THREADS_SCRIPT = """import ctypes, sys
sys.path.insert(0, sys.argv[1])
from video_tag import cpu, distributed
cpu.available_cores = lambda: 6  # as if this machine had 6 cores (it may have 2)
distributed.init(False)
runtime = next(line.split()[-1] for line in open("/proc/self/maps")
               if "/paddle/" in line and "omp" in line.split()[-1].rsplit("/", 1)[-1])
print("threads", distributed.rank(), ctypes.CDLL(runtime).omp_get_max_threads(), flush=True)
"""


def test_math_threads_alone_and_under_paddle_distributed_launch(tmp_path):
    # What the user's shell passes: no OMP_NUM_THREADS (this process's own is Paddle's).
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    script = tmp_path / "threads.py"
    script.write_text(THREADS_SCRIPT, encoding="utf-8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    alone = subprocess.run([sys.executable, str(script), root], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
    assert "threads 0 6" in alone.stdout, alone.stdout
    assert "CPU: 6 math thread(s) per process (every core this process may run on)" in alone.stdout
    launched = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                               "--log_dir", str(tmp_path / "log"), str(script), root], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    logs = "".join((tmp_path / "log" / f"workerlog.{r}").read_text() for r in range(2))
    assert launched.returncode == 0, launched.stdout + logs
    assert "threads 0 3" in logs and "threads 1 3" in logs, logs     # 6 cores / 2 local processes
    assert "3 math thread(s) per process (6 core(s) shared by 2 local processes)" in logs
