"""Batches loaded in worker processes: the sampler's order, refill, reports once, growing shared memory,
a worker that dies or fails, and no process left behind."""
import multiprocessing
import os

import numpy as np
import pytest

from video_tag.errors import RunError
from video_tag.readers import iterate_batches, workers
from video_tag.readers.feature_reader import FeatureReader

F, C = 8, 4
CFG = {"MODEL": {"num_classes": C, "feature_dims": [F]}}
pytestmark = pytest.mark.skipif(not workers.available(), reason="worker processes need fork (Linux)")


def make_reader(tmp_path, lengths, bad=()):
    """Float32 files of ``lengths`` steps (value = 1000 * file + step), the ``bad`` ones garbage."""
    lines, arrays = [], {}
    for i, steps in enumerate(lengths):
        path = tmp_path / f"v{i}.npy"
        if i in bad:
            path.write_bytes(b"not features")
        else:
            arrays[i] = (1000 * i + np.arange(steps * F, dtype=np.float32)).reshape(steps, F)
            np.save(path, arrays[i])
        lines.append(f"{path} {i % C}")
    (tmp_path / "l.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return FeatureReader(str(tmp_path / "l.list"), "train", CFG), arrays


def check_rows(batch, arrays):
    for row, (index, length) in enumerate(zip(batch["index"], batch["inputs"][1])):
        np.testing.assert_array_equal(batch["inputs"][0][row, :length], arrays[index])
        assert not batch["inputs"][0][row, length:].any()


def test_batches_come_in_the_samplers_order_and_memory_grows_with_them(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "SHARED_BYTES", 1)  # every array through shared memory
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 9, 40)] + [300, 2]  # a long video late: the slots grow
    reader, arrays = make_reader(tmp_path, lengths)
    order = [list(rng.permutation(len(lengths))[:int(rng.integers(1, 6))]) for _ in range(30)]
    order.append([40, 41])
    batches = list(iterate_batches(reader, order, num_workers=3, prefetch=1))
    assert [b["index"].tolist() for b in batches] == [list(map(int, o)) for o in order]
    for batch in batches:
        check_rows(batch, arrays)
    assert batches[-1]["inputs"][0].shape == (2, 300, F)
    assert not multiprocessing.active_children()


def test_refill_replaces_bad_files_in_the_workers_and_reports_each_once(tmp_path):
    reader, arrays = make_reader(tmp_path, [3] * 8, bad={2, 3, 6})
    failed = []
    order = [[0, 2], [3, 4], [6, 2], [5, 1]]
    batches = list(iterate_batches(reader, order, num_workers=2, refill=True,
                                   on_error=lambda entry, reason: failed.append(entry.line)))
    # 2 -> 3 (bad) -> 4; 3 -> 4; 6 -> 7; 2 -> 4 again: every batch keeps its size, in the sampler's order
    assert [b["index"].tolist() for b in batches] == [[0, 4], [4, 4], [7, 4], [5, 1]]
    assert failed == [3, 4, 7]  # list lines of files 2, 3, 6, once each, in the order met
    for batch in batches:
        check_rows(batch, arrays)


def test_a_worker_that_dies_stops_the_run_with_a_reason(tmp_path, monkeypatch):
    reader, _ = make_reader(tmp_path, [2] * 6)
    real_load = reader.load
    monkeypatch.setattr(reader, "load", lambda i, empty=None: os._exit(7) if i == 4 else real_load(i))
    got = []
    with pytest.raises(RunError, match=r"worker process died \(exit code 7"):
        for batch in iterate_batches(reader, [[0, 1], [2, 3], [4, 5]], num_workers=2):
            got.append(batch["index"].tolist())
    assert got == [[0, 1], [2, 3]]
    assert not multiprocessing.active_children()


def test_an_error_in_collate_reaches_the_main_process(tmp_path, monkeypatch):
    reader, _ = make_reader(tmp_path, [2] * 4)
    monkeypatch.setattr(reader, "collate", lambda samples, empty=None: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        list(iterate_batches(reader, [[0, 1], [2, 3]], num_workers=2))
    assert not multiprocessing.active_children()


def test_leaving_early_ends_the_workers(tmp_path):
    reader, arrays = make_reader(tmp_path, [4] * 12)
    batches = iterate_batches(reader, [[i, i + 1] for i in range(0, 12, 2)], num_workers=2)
    first = next(batches)
    check_rows(first, arrays)
    assert len(multiprocessing.active_children()) == 2
    batches.close()
    assert not multiprocessing.active_children()
