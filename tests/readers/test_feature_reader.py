"""FeatureReader: loading [T, F] .npy features, the reasons it refuses a file, padding, and skipping."""
import logging
import os

import numpy as np
import pytest

from video_tag.errors import UserError
from video_tag.models import MODELS
from video_tag.readers import iterate_batches
from video_tag.readers.feature_reader import FeatureReader, features_of

F, C = 8, 6
CFG = {"MODEL": {"num_classes": C, "feature_dims": [F]}}


def make_list(tmp_path, files, mode_labels=True):
    """``files``: {name: array | bytes | None (absent)}. Writes them and a list; returns its path."""
    lines = []
    for i, (name, content) in enumerate(files.items()):
        path = tmp_path / "feat dir" / name
        path.parent.mkdir(exist_ok=True)
        if isinstance(content, np.ndarray):
            with open(path, "wb") as f:
                np.save(f, content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        lines.append(f"{path} {i % C} {(i + 2) % C}" if mode_labels else str(path))
    list_path = tmp_path / "features.list"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(list_path)


def features(steps, width=F, dtype=np.float32, value=None):
    rng = np.random.default_rng(steps)
    x = rng.standard_normal((steps, width)).astype(dtype)
    return x if value is None else np.full((steps, width), value, dtype)


def test_registered_for_attention_lstm():
    assert MODELS["AttentionLSTM"].reader is FeatureReader


def test_load_returns_features_labels_index(tmp_path):
    x = features(5)
    reader = FeatureReader(make_list(tmp_path, {"a b 视频.npy": x, "c.npy": features(3)}), "train", CFG)
    assert len(reader) == 2
    sample = reader.load(1)
    assert sample["index"] == 1
    np.testing.assert_array_equal(sample["labels"], np.eye(C, dtype=np.float32)[[1, 3]].sum(0))
    first = reader.load(0)
    np.testing.assert_array_equal(first["features"], x)
    assert first["features"].dtype == np.float32 and first["labels"].dtype == np.float32
    assert first["labels"].tolist() == [1, 0, 1, 0, 0, 0]


def test_float64_becomes_float32_and_float16_stays_compact_until_a_mixed_batch(tmp_path):
    x16, x64 = features(4, dtype=np.float16), features(3, dtype=np.float64)
    reader = FeatureReader(make_list(tmp_path, {"a.npy": x16, "b.npy": x64}), "test", CFG)
    half, double = reader.load(0), reader.load(1)
    assert half["features"].dtype == np.float16 and double["features"].dtype == np.float32
    np.testing.assert_array_equal(features_of(half), x16.astype(np.float32))
    np.testing.assert_array_equal(double["features"], x64.astype(np.float32))
    only_half = reader.collate([half, half])["inputs"][0]
    assert only_half.dtype == np.float16 and only_half.shape == (2, 4, F)
    mixed = reader.collate([half, double])["inputs"][0]
    assert mixed.dtype == np.float32
    np.testing.assert_array_equal(mixed[0], x16.astype(np.float32))
    np.testing.assert_array_equal(mixed[1, :3], x64.astype(np.float32))
    assert not mixed[1, 3:].any()


def test_infer_mode_needs_no_labels(tmp_path):
    reader = FeatureReader(make_list(tmp_path, {"a.npy": features(2)}, mode_labels=False), "infer", CFG)
    assert reader.load(0)["labels"].sum() == 0


def test_train_mode_needs_labels_and_files(tmp_path):
    with pytest.raises(UserError, match="features.list:1"):
        FeatureReader(make_list(tmp_path, {"a.npy": features(2)}, mode_labels=False), "train", CFG)
    with pytest.raises(UserError, match="features.list:2"):
        FeatureReader(make_list(tmp_path, {"a.npy": features(2), "gone.npy": None}), "train", CFG)
    # eval/predict do not check files up front: the missing one fails on its own at load time
    reader = FeatureReader(make_list(tmp_path, {"a.npy": features(2), "gone.npy": None}), "test", CFG,
                           check_files=False)
    with pytest.raises(ValueError, match="not found"):
        reader.load(1)


def _npz():
    import io
    buffer = io.BytesIO()
    np.savez(buffer, a=features(3))
    return buffer.getvalue()


def _truncated():
    import io
    buffer = io.BytesIO()
    np.save(buffer, features(10))
    return buffer.getvalue()[:-17]


@pytest.mark.parametrize("content, words", [
    (features(4, width=F + 1), ["shape", str(F + 1), str(F)]),          # wrong width
    (features(4, width=2048), ["shape", "2048"]),
    (np.zeros(F, np.float32), ["shape", f"[{F}]"]),                      # 1-D
    (np.zeros((0, F), np.float32), ["shape", f"[0, {F}]"]),              # no rows
    (np.zeros((1, 4, F), np.float32), ["shape"]),                        # 3-D
    (np.zeros((3, F), np.int32), ["dtype", "int32"]),                    # not float
    (np.zeros((3, F), np.uint8), ["dtype", "uint8"]),
    (np.zeros((3, F), bool), ["dtype", "bool"]),
    (np.zeros((3, F), np.complex64), ["dtype", "complex64"]),
    (np.array([["a"] * F]), ["dtype"]),                                  # strings
    (b"definitely not an npy file", ["npy"]),                            # corrupted
    (b"", ["npy"]),                                                      # empty file
    (b"\x80\x02}q\x00.", ["npy"]),                                       # a pickle
    (_npz(), ["npz", "q, scale, offset"]),                               # an .npz of other arrays
    (_truncated(), ["npy"]),                                             # cut short
    (None, ["not found"]),                                               # missing
])
def test_load_refuses_with_a_reason(tmp_path, content, words):
    reader = FeatureReader(make_list(tmp_path, {"ok.npy": features(2), "bad.npy": content}), "test", CFG,
                           check_files=False)
    with pytest.raises(ValueError) as e:
        reader.load(1)
    reason = str(e.value)
    assert all(w in reason for w in words), reason
    assert "\n" not in reason
    assert reader.load(0)["features"].shape == (2, F)


def test_object_array_is_refused_without_unpickling(tmp_path):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Evil()], dtype=object), allow_pickle=True)
    (tmp_path / "e.list").write_text(f"{path} 1\n", encoding="utf-8")
    reader = FeatureReader(str(tmp_path / "e.list"), "test", CFG)
    with pytest.raises(ValueError):
        reader.load(0)
    assert not target.exists()


def test_directory_is_refused(tmp_path):
    (tmp_path / "d.npy").mkdir()
    (tmp_path / "d.list").write_text(f"{tmp_path / 'd.npy'} 1\n", encoding="utf-8")
    with pytest.raises(ValueError):
        FeatureReader(str(tmp_path / "d.list"), "test", CFG, check_files=False).load(0)


def test_collate_pads_and_keeps_lengths(tmp_path):
    xs = {"a.npy": features(5), "b.npy": features(2), "c.npy": features(7)}
    reader = FeatureReader(make_list(tmp_path, xs), "train", CFG)
    batch = reader.collate([reader.load(i) for i in (0, 1, 2)])
    x, lengths = batch["inputs"]
    assert x.shape == (3, 7, F) and x.dtype == np.float32
    assert lengths.tolist() == [5, 2, 7] and lengths.dtype == np.int64
    for row, array in enumerate(xs.values()):
        np.testing.assert_array_equal(x[row, :len(array)], array)
        assert not x[row, len(array):].any()                   # padding is zeros
    assert batch["labels"].shape == (3, C) and batch["index"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(batch["labels"][2], reader.load(2)["labels"])


def test_collate_single_sample(tmp_path):
    reader = FeatureReader(make_list(tmp_path, {"a.npy": features(3)}), "test", CFG)
    batch = reader.collate([reader.load(0)])
    assert batch["inputs"][0].shape == (1, 3, F) and batch["inputs"][1].tolist() == [3]


@pytest.mark.parametrize("num_workers", [1, 3])
def test_iterate_batches_skips_bad_files_with_a_warning(tmp_path, caplog, num_workers):
    files = {f"v{i}.npy": features(i + 1) for i in range(7)}
    files["v2.npy"] = features(3, width=F + 3)        # wrong width
    files["v5.npy"] = b"garbage"                      # corrupted
    files["v6.npy"] = None                            # missing
    reader = FeatureReader(make_list(tmp_path, files), "test", CFG, check_files=False)
    with caplog.at_level(logging.WARNING):
        batches = list(iterate_batches(reader, [[0, 1, 2], [3, 4], [5, 6]], num_workers=num_workers))
    # the last batch holds only bad files: it is dropped; the others keep their good samples, in order
    assert [b["index"].tolist() for b in batches] == [[0, 1], [3, 4]]
    assert [b["inputs"][1].tolist() for b in batches] == [[1, 2], [4, 5]]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for bad in ("v2.npy", "v5.npy", "v6.npy"):
        assert any(bad in m for m in warned), warned
    assert not any(f"v{i}.npy" in m for m in warned for i in (0, 1, 3, 4))


def test_iterate_batches_reports_through_on_error(tmp_path):
    files = {"a.npy": features(2), "b.npy": np.zeros(F, np.float32), "c.npy": features(4)}
    reader = FeatureReader(make_list(tmp_path, files), "test", CFG)
    failed = []
    batches = list(iterate_batches(reader, [[0, 1, 2]], num_workers=2,
                                   on_error=lambda entry, reason: failed.append((entry.path, reason))))
    assert len(batches) == 1 and batches[0]["index"].tolist() == [0, 2]
    assert batches[0]["inputs"][0].shape == (2, 4, F)
    assert [os.path.basename(p) for p, _ in failed] == ["b.npy"] and "shape" in failed[0][1]


def test_iterate_batches_survives_a_header_declaring_terabytes(tmp_path):
    # np.load would try to allocate what the header declares; the file fails alone, nothing is allocated
    import io
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10 ** 12, F)})
    files = {"a.npy": features(2), "huge.npy": header.getvalue() + bytes(64), "c.npy": features(4)}
    reader = FeatureReader(make_list(tmp_path, files), "test", CFG)
    failed = []
    batches = list(iterate_batches(reader, [[0, 1, 2]], num_workers=2,
                                   on_error=lambda entry, reason: failed.append((entry.line, reason))))
    assert [b["index"].tolist() for b in batches] == [[0, 2]]
    assert failed == [(2, f"not a readable .npy file (cut short: 64 bytes of data for shape [{10 ** 12}, {F}])")]


def quantised(x):
    """The documented uint8 storage, written independently here: 256 levels over each dimension's range."""
    lo = x.min(0)
    scale = ((x.max(0) - lo) / np.float32(255)).astype(np.float32)
    q = np.rint((x - lo) / np.where(scale > 0, scale, 1)).astype(np.uint8)
    return q, scale, lo


def write_uint8(path, x):
    q, scale, offset = quantised(x)
    np.savez(path, q=q, scale=scale, offset=offset)
    return q.astype(np.float32) * scale + offset


@pytest.mark.parametrize("num_workers, on_device", [(0, False), (2, True)])
def test_a_list_mixing_float32_float16_and_uint8(tmp_path, num_workers, on_device):
    from video_tag.readers import to_tensors
    xs = [np.abs(features(5 + i)) for i in range(6)]
    expected = {}
    lines = []
    for i, x in enumerate(xs):
        path = tmp_path / f"v{i}.{'npz' if i % 3 == 2 else 'npy'}"
        if i % 3 == 0:
            np.save(path, x)
            expected[i] = x
        elif i % 3 == 1:
            np.save(path, x.astype(np.float16))
            expected[i] = x.astype(np.float16).astype(np.float32)
        else:
            expected[i] = write_uint8(path, x)
        lines.append(f"{path} {i % C}")
    lines.append(f"{tmp_path / 'plain uint8.npy'} 1")
    np.save(tmp_path / "plain uint8.npy", np.zeros((3, F), np.uint8))
    (tmp_path / "mixed.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reader = FeatureReader(str(tmp_path / "mixed.list"), "test", CFG)
    failed = []
    order = [[0, 1, 2], [2, 5], [4], [6, 3]]
    batches = list(iterate_batches(reader, order, num_workers, on_error=lambda e, r: failed.append((e.line, r))))
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2], [2, 5], [4], [3]]
    assert len(failed) == 1 and failed[0][0] == 7 and "uint8" in failed[0][1] and ".npz" in failed[0][1]
    kinds = [b["inputs"][0].dtype for b in batches]
    assert kinds == [np.float32, np.uint8, np.float16, np.float32]  # compact only when the batch is all one
    assert "scale" in batches[1] and "scale" not in batches[0]
    for batch in batches:
        x = to_tensors(batch, on_device)[0].numpy()
        assert x.dtype == np.float32
        for row, (index, length) in enumerate(zip(batch["index"], batch["inputs"][1])):
            np.testing.assert_allclose(x[row, :length], expected[index], rtol=1e-6, atol=1e-7)
            assert not x[row, length:].any()  # padding stays zero, also for dequantised rows
        if batch["inputs"][0].dtype == np.float32:
            np.testing.assert_array_equal(x, batch["inputs"][0])


def test_prefetch_hint_tolerates_missing_files(tmp_path):
    reader = FeatureReader(make_list(tmp_path, {"a.npy": features(2), "gone.npy": None}), "test", CFG,
                           check_files=False)
    reader.prefetch([0, 1])  # a hint to the OS: a file that is not there is left to load() to report
    with pytest.raises(ValueError, match="not found"):
        reader.load(1)
    np.testing.assert_array_equal(reader.load(0)["features"], features(2))


def test_a_file_of_more_than_max_frames_fails_alone(tmp_path):
    files = {"a.npy": features(3), "long.npy": features(9), "c.npy": features(8)}
    cfg = {"MODEL": {**CFG["MODEL"], "max_frames": 8}}
    reader = FeatureReader(make_list(tmp_path, files), "test", cfg)
    failed = []
    batches = list(iterate_batches(reader, [[0, 1, 2]], num_workers=0,
                                   on_error=lambda entry, reason: failed.append((entry.line, reason))))
    assert [b["index"].tolist() for b in batches] == [[0, 2]]
    assert failed == [(2, "9 frames, above the limit of 8 (MODEL.max_frames; raise it with -o MODEL.max_frames=N)")]
    assert FeatureReader(make_list(tmp_path, files), "test", CFG).max_frames == 4096  # the default
