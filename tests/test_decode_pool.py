"""The decode worker pool shared by the extractor and the tagger (decode_pool.py): one crash rule, and a
shutdown that prints nothing. (Its use by the extractor and the tagger: tests/test_extractor.py and
tests/test_tagger.py, the crash tests.)"""
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from video_tag.decode_pool import CRASHED, DecodePool, LiveDecodePool, returned


@pytest.fixture(autouse=True)
def no_hang():
    """A pool that waits or retries for ever (e.g. a crash rule without its end) fails its test after 60 s
    instead of hanging the suite (SIGALRM, also during a blocking read)."""
    def fail(*_):  # not TimeoutError: an OSError, which the pool takes for a dead worker
        pytest.fail("the test ran past 60 s: the decode pool hangs")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_video_that_crashes_once_is_decoded_again_and_one_that_always_crashes_fails(tmp_path):
    from fussy_decoder import flaky_decode
    marker = str(tmp_path / "crashed-once")
    videos = ["a", "flaky1", "bb"]
    with DecodePool(videos, returned, (flaky_decode, marker), num_workers=2) as pool:
        results = {job: list(messages) for job, messages in pool}
    assert os.path.exists(marker)  # flaky1 did crash its worker once
    assert {job: [m[0] for m in messages] for job, messages in results.items()} == {
        "a": ["result"], "flaky1": ["result"], "bb": ["result"]}


def test_a_video_decoded_again_does_not_repeat_what_was_delivered(tmp_path):
    from fussy_decoder import flaky_stream
    marker = str(tmp_path / "crashed-once")
    with DecodePool(["a", "flaky1", "b"], flaky_stream, (marker,), num_workers=1) as pool:
        results = {job: list(messages) for job, messages in pool}
    assert os.path.exists(marker)
    parts = [("part", 0), ("part", 1), ("part", 2)]
    assert results == {"a": parts, "flaky1": parts, "b": parts}


def test_a_crash_fails_its_video_alone(tmp_path):
    from fussy_decoder import fussy_decode
    videos = ["a", "crash1", "bb", "crash2", "ccc", "zero"]
    with DecodePool(videos, returned, (fussy_decode,), num_workers=2) as pool:
        results = {job: list(messages) for job, messages in pool}
    assert results.pop("crash1") == results.pop("crash2") == [("failed", CRASHED)]
    assert results.pop("zero") == [("failed", "ZeroDivisionError: integer division or modulo by zero")]
    assert {job: m[0][1][0, 0] for job, m in results.items()} == {"a": 1, "bb": 2, "ccc": 3}


def test_a_message_that_cannot_be_sent_fails_its_video():
    from fussy_decoder import odd_stream
    with DecodePool(["a", "odd1", "b"], odd_stream, (), num_workers=1) as pool:
        results = {job: list(messages) for job, messages in pool}
    assert results.pop("odd1")[0][0] == "failed"
    assert results == {"a": [("window", 1)], "b": [("window", 1)]}


def test_a_consumer_may_stop_reading_a_video_at_its_last_message():
    from fussy_decoder import big_stream
    with DecodePool(["a", "b", "c"], big_stream, (), num_workers=1) as pool:
        firsts = [(job, next(messages)[:2]) for job, messages in pool]  # the rest left unread
    assert firsts == [("a", ("window", 0)), ("b", ("window", 0)), ("c", ("window", 0))]


STOP_WHILE_BUSY = """
import os, sys, time
from fussy_decoder import big_stream
from video_tag.decode_pool import DecodePool
from video_tag.errors import RunError


def main():
    try:
        with DecodePool([f"v{i}" for i in range(6)], big_stream, (), num_workers=2) as pool:
            print(" ".join(str(w.process.pid) for w in pool.workers), flush=True)
            for job, messages in pool:
                for message in messages:  # both workers are blocked sending, or decoding
                    raise RunError("cannot write v0.npy: No space left on device")
    except RunError as e:
        time.sleep(1)  # what a run does next (closing its outputs, writing lists): a live worker would speak
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
"""


def test_stopping_while_the_workers_are_busy_prints_nothing_but_the_error(tmp_path):
    script = tmp_path / "stop.py"
    script.write_text(STOP_WHILE_BUSY, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stderr == "error: cannot write v0.npy: No space left on device\n"
    for pid in result.stdout.split():  # no worker decodes on after the run
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def live_results(videos, function, args, num_workers, parts):
    """``videos`` decoded by one LiveDecodePool, submitted in ``parts`` (lists of indices, in order):
    ``({job: [messages]}, worker pids before, after)``."""
    with LiveDecodePool(function, args, num_workers) as pool:
        before = [w.process.pid for w in pool.workers]
        results = {}
        for part in parts:
            results.update({job: list(messages) for job, messages in pool.submit([videos[i] for i in part])})
        after = [w.process.pid for w in pool.workers]
    return results, before, after


def test_a_live_pool_keeps_its_processes_and_decodes_jobs_as_they_come():
    from fussy_decoder import fussy_decode
    videos = ["a", "bb", "ccc", "dddd", "eeeee"]
    results, before, after = live_results(videos, returned, (fussy_decode,), 2, [[0], [1, 2], [3, 4]])
    assert {job: m[0][1][0, 0] for job, m in results.items()} == {"a": 1, "bb": 2, "ccc": 3, "dddd": 4, "eeeee": 5}
    assert before == after and len(set(before)) == 2  # the same two processes for every submit


def test_a_live_pool_has_the_crash_rule(tmp_path):
    from fussy_decoder import flaky_decode, flaky_stream, fussy_decode
    videos = ["a", "crash1", "bb", "crash2", "ccc", "zero", "dd"]
    results, before, after = live_results(videos, returned, (fussy_decode,), 2, [[0, 1, 2, 3], [4, 5, 6]])
    assert results.pop("crash1") == results.pop("crash2") == [("failed", CRASHED)]
    assert results.pop("zero") == [("failed", "ZeroDivisionError: integer division or modulo by zero")]
    assert {job: m[0][1][0, 0] for job, m in results.items()} == {"a": 1, "bb": 2, "ccc": 3, "dd": 2}
    marker = str(tmp_path / "crashed-once")
    results, _, _ = live_results(["a", "flaky1", "bb", "c"], returned, (flaky_decode, marker), 2, [[0, 1], [2, 3]])
    assert os.path.exists(marker)  # flaky1 crashed its worker once, then was decoded again
    assert {job: [m[0] for m in messages] for job, messages in results.items()} == dict.fromkeys(
        ["a", "flaky1", "bb", "c"], ["result"])
    marker = str(tmp_path / "stream-crashed-once")
    results, _, _ = live_results(["a", "flaky1", "b", "c"], flaky_stream, (marker,), 1, [[0, 1, 2], [3]])
    parts = [("part", 0), ("part", 1), ("part", 2)]
    assert os.path.exists(marker) and results == dict.fromkeys(["a", "flaky1", "b", "c"], parts)  # none repeated


def test_a_live_pool_takes_jobs_while_a_crashed_one_is_decoded_again(tmp_path):
    """As the service submits its next claim before the last job of a claim is read to its end."""
    from fussy_decoder import flaky_stream
    marker = str(tmp_path / "crashed-once")
    parts = [("part", 0), ("part", 1), ("part", 2)]
    with LiveDecodePool(flaky_stream, (marker,), 1) as pool:
        (_, first), (_, flaky) = pool.submit(["a", "flaky1"])
        assert list(first) == parts
        assert [next(flaky) for _ in range(3)] == parts  # the last from the worker decoding it again, alone
        assert os.path.exists(marker)
        (_, later), = pool.submit(["b"])  # given while that worker decodes flaky1 alone
        assert list(later) == parts
        (_, last), = pool.submit(["c"])
        assert list(last) == parts


def test_a_live_pool_consumer_may_stop_reading_a_video_at_its_last_message():
    from fussy_decoder import big_stream
    with LiveDecodePool(big_stream, (), 1) as pool:
        firsts = [(job, next(messages)[:2]) for job, messages in pool.submit(["a", "b"])]
        firsts += [(job, next(messages)[:2]) for job, messages in pool.submit(["c"])]
    assert firsts == [("a", ("window", 0)), ("b", ("window", 0)), ("c", ("window", 0))]
