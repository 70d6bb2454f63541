"""stats.py: os.stat of many paths, half of a long list in a helper process, the same answers as one by one."""
import os
import stat
import sys
import time

import pytest

from video_tag import stats


def expected(paths, follow_symlinks):
    out = []
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=follow_symlinks)
        except (OSError, ValueError):
            out.append(None)
            continue
        out.append((st.st_mode, st.st_size, st.st_mtime_ns))
    return out


@pytest.fixture
def paths(tmp_path):
    """Files of distinct sizes, a link to one, a dangling link, missing files, names with a TAB, bytes that
    are not UTF-8 and a NUL, in a list long enough to be split."""
    names = [f"f{i}.bin" for i in range(7)] + ["a\tb.mp4", os.fsdecode(b"\xc4\xe3.avi")]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"x" * i)
    os.symlink(tmp_path / "f3.bin", tmp_path / "link.mp4")
    os.symlink(tmp_path / "gone", tmp_path / "dangling.mp4")
    listed = names + ["link.mp4", "dangling.mp4", "missing.mp4", "nul\0.mp4"]
    return [os.path.join(str(tmp_path), n) for n in listed] * 3


@pytest.mark.parametrize("follow_symlinks", [True, False])
def test_the_helper_stats_half_with_the_same_answers(paths, follow_symlinks, monkeypatch):
    monkeypatch.setattr(stats, "PARALLEL", 4)
    monkeypatch.setattr(stats, "_cores", lambda: 2)
    here = []
    real_part = stats._stat_part
    monkeypatch.setattr(stats, "_stat_part", lambda p, f: here.append(len(p)) or real_part(p, f))
    found = stats.stat_many(paths, follow_symlinks)
    assert found == expected(paths, follow_symlinks)
    assert here == [len(paths) // 2]  # the other half came from the helper
    link = found[paths.index(paths[0].replace("f0.bin", "link.mp4"))]
    assert stat.S_ISLNK(link[0]) != follow_symlinks and (link[1] == 3) == follow_symlinks
    assert found.count(None) == (3 if follow_symlinks else 2) * 3


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false", "/bin/echo"])
def test_a_helper_that_cannot_start_or_answer_costs_only_time(paths, executable, monkeypatch):
    monkeypatch.setattr(stats, "PARALLEL", 4)
    monkeypatch.setattr(stats, "_cores", lambda: 2)
    monkeypatch.setattr(sys, "executable", executable)
    assert stats.stat_many(paths, False) == expected(paths, False)


def test_a_helper_that_closes_its_output_and_lingers_is_not_waited_for(paths, tmp_path, monkeypatch):
    lingering = tmp_path / "lingering"
    lingering.write_text("#!/bin/sh\nexec 1>&-\nsleep 60\n")
    lingering.chmod(0o755)
    monkeypatch.setattr(stats, "PARALLEL", 4)
    monkeypatch.setattr(stats, "_cores", lambda: 2)
    monkeypatch.setattr(sys, "executable", str(lingering))
    start = time.monotonic()
    assert stats.stat_many(paths, False) == expected(paths, False)
    assert time.monotonic() - start < 30


def test_short_lists_and_one_core_stay_in_this_process(paths, monkeypatch):
    monkeypatch.setattr(stats.subprocess, "Popen", None)  # any helper would fail loudly
    assert stats.stat_many(paths[:stats.PARALLEL - 1]) == expected(paths, True)
    monkeypatch.setattr(stats, "PARALLEL", 4)
    monkeypatch.setattr(stats, "_cores", lambda: 1)
    assert stats.stat_many(paths) == expected(paths, True)
    monkeypatch.setattr(stats, "_cores", lambda: 2)
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # sys.executable is the application itself
    assert stats.stat_many(paths) == expected(paths, True)
