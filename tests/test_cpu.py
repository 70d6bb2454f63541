"""CPU settings: threads and the environment the process started with."""
import os

from video_tag import cpu


def test_default_threads_ignore_paddles_own_omp_setting(monkeypatch):
    # import paddle put OMP_NUM_THREADS=1 into os.environ; only a value the process started with counts.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cpu, "launch_env", lambda name: None)
    assert cpu.default_cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpu, "launch_env", lambda name: "3")
    assert cpu.default_cpu_threads() == 3
