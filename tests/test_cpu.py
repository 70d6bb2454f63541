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
