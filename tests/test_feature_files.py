"""Feature files: float32/float16 .npy and uint8 .npz round trips within their documented error, reading
them as numpy does, completeness checks for resume, and the reasons a bad file is refused."""
import io
import zipfile

import numpy as np
import pytest

from video_tag import feature_files

T, F = 7, 16


def post_relu(seed, steps=T, width=F):
    """Features like TSN's: averages of ReLU outputs, non-negative, some dimensions exactly zero."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((steps, width)) * rng.uniform(0.1, 5, width), 0).astype(np.float32)
    x[:, :3] = 0  # dimensions the video never activates
    return x


def write(path, x, dtype):
    with open(path, "wb") as f:
        feature_files.write(f, x, dtype)
    return str(path)


def read_as_float32(path):
    data, scale, offset = feature_files.read(path)
    return data.astype(np.float32) if scale is None else feature_files.dequantize(data, scale, offset)


@pytest.mark.parametrize("seed", [0, 1])
def test_uint8_within_half_a_step_of_each_dimension_range(tmp_path, seed):
    x = post_relu(seed)
    x[:, 5] = -3.25  # a constant dimension, and a negative one (other extractors' features may be)
    x[:, 6] -= 10
    path = write(tmp_path / "x.npz", x, "uint8")
    got = read_as_float32(path)
    lo, hi = x.min(0), x.max(0)
    step = (hi - lo) / 255  # the documented quantisation: 256 levels over each dimension's range
    assert got.dtype == np.float32 and got.shape == (T, F)
    assert (np.abs(got - x) <= step / 2 * (1 + 1e-4) + 1e-6 * np.abs(x)).all()
    np.testing.assert_array_equal(got.min(0), lo)  # each dimension's minimum comes back exactly
    assert (got[:, :3] == 0).all() and (got[:, 5] == -3.25).all()
    assert np.abs(got - x).max() > 0  # it is quantised, not stored


def test_uint8_is_readable_with_numpy_alone_as_documented(tmp_path):
    x = post_relu(2)
    path = write(tmp_path / "x.npz", x, "uint8")
    with np.load(path) as d:
        assert sorted(d.files) == ["offset", "q", "scale"] and d["q"].dtype == np.uint8
        by_hand = d["q"] * d["scale"] + d["offset"]
    assert by_hand.dtype == np.float32
    np.testing.assert_array_equal(read_as_float32(path), by_hand)
    # np.savez_compressed files of the same three arrays are read too
    compressed = tmp_path / "c.npz"
    with np.load(path) as d:
        np.savez_compressed(compressed, **d)
    np.testing.assert_array_equal(read_as_float32(str(compressed)), by_hand)


def test_float_files_round_trip(tmp_path):
    x = post_relu(3)
    np.testing.assert_array_equal(read_as_float32(write(tmp_path / "a.npy", x, "float32")), x)
    half = feature_files.read(write(tmp_path / "b.npy", x, "float16"))[0]
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, x.astype(np.float16))
    assert np.abs(half.astype(np.float32) - x).max() <= 2 ** -11 * np.abs(x).max()
    # what np.save writes otherwise: Fortran order, version 2 headers
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.testing.assert_array_equal(read_as_float32(str(tmp_path / "f.npy")), x)
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=(2, 0))
    np.testing.assert_array_equal(read_as_float32(str(tmp_path / "v2.npy")), x)


def test_nan_cannot_be_quantised():
    x = post_relu(4)
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        feature_files.quantize(x)


@pytest.mark.parametrize("dtype", feature_files.DTYPES)
def test_complete_checks_dtype_shape_and_truncation(tmp_path, dtype):
    path = write(tmp_path / f"x{feature_files.suffix(dtype)}", post_relu(5), dtype)
    assert feature_files.complete(path, dtype, (T, F))
    assert not feature_files.complete(path, dtype, (T + 1, F))
    other = "float16" if dtype == "float32" else "float32"
    assert not feature_files.complete(path, other, (T, F))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-40])  # a run killed while writing
    assert not feature_files.complete(path, dtype, (T, F))
    assert not feature_files.complete(str(tmp_path / "missing.npz"), dtype, (T, F))


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


Q = np.zeros((T, F), np.uint8)
S = np.ones(F, np.float32)


@pytest.mark.parametrize("content, words", [
    (npz(q=Q, scale=S), ["without offset"]),
    (npz(q=Q.astype(np.int16), scale=S, offset=S), ["q of dtype int16"]),
    (npz(q=Q, scale=S[:-1], offset=S), ["scale", f"[{F - 1}]", f"float32 [{F}]"]),
    (npz(q=Q, scale=S, offset=S.astype(np.float64)), ["offset of dtype float64"]),
    (npz(q=Q, scale=np.full(F, np.inf, np.float32), offset=S), ["scale holds NaN or Inf"]),
    (npz(q=Q, scale=S, offset=S)[:-30], ["not a readable .npz"]),
    (npz(q=np.zeros((10 ** 6, F), np.uint8), scale=S, offset=S)[:5000], ["not a readable .npz"]),
    (np.lib.format.magic(1, 0) + b"\x20\x00{'descr': '<f4'", ["not a readable .npy"]),
    (b"PK\x03\x04 not really a zip", ["not a readable .npz"]),
])
def test_bad_files_are_refused_with_a_reason(tmp_path, content, words):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        feature_files.read(str(path))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "\n" not in str(e.value)


def test_quantised_member_cut_short_inside_a_valid_zip_is_refused(tmp_path):
    # a zip whose q.npy header promises more data than the member holds
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        short = io.BytesIO()
        np.save(short, Q)
        z.writestr("q.npy", short.getvalue()[:-10])
        for name in ("scale", "offset"):
            member = io.BytesIO()
            np.save(member, S)
            z.writestr(f"{name}.npy", member.getvalue())
    path = tmp_path / "short.npz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match=r"cut short.*\(q in the .npz\)|q in the .npz.*cut short"):
        feature_files.read(str(path))


# --- untrusted files: nothing allocated or decompressed beyond what the limits and headers allow -------

def refusing_allocator(shape, dtype):
    raise AssertionError(f"allocated {shape} {dtype} for a file that must be refused first")


def npy_bytes(x):
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def test_more_frames_than_max_frames_are_refused_before_reading(tmp_path):
    x = post_relu(0, steps=9)
    for dtype in ("float32", "float16", "uint8"):
        path = write(tmp_path / f"long.{dtype}", x, dtype)
        with pytest.raises(ValueError) as e:
            feature_files.read(path, refusing_allocator, max_frames=8)
        assert "9 frames" in str(e.value) and "MODEL.max_frames" in str(e.value) and "\n" not in str(e.value)
        assert feature_files.read(path, max_frames=9)[0].shape == (9, F)  # at the limit: read


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_another_width_is_refused_before_reading(tmp_path, dtype):
    path = write(tmp_path / "wide", post_relu(0, width=F + 1), dtype)
    with pytest.raises(ValueError, match=rf"shape \[{T}, {F + 1}\].*expected \[T, {F}\]"):
        feature_files.read(path, refusing_allocator, width=F)


def compressed_npz(q_member, scale=S, offset=S):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("q.npy", q_member)
        z.writestr("scale.npy", npy_bytes(scale))
        z.writestr("offset.npy", npy_bytes(offset))
    return buffer.getvalue()


def test_zip_bomb_member_is_decompressed_only_up_to_its_declared_array(tmp_path):
    """q.npy declares [T, F] uint8 (112 bytes) and goes on with 64 MB of zeros (~64 KB compressed):
    reading it must not inflate them (np.load and zipfile.read would)."""
    import tracemalloc
    bomb = npy_bytes(Q) + bytes(64 << 20)
    path = tmp_path / "bomb.npz"
    path.write_bytes(compressed_npz(bomb))
    del bomb
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        q, scale, offset = feature_files.read(str(path), max_frames=T, width=F)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert q.shape == (T, F) and (q == 0).all() and (scale == 1).all()
    assert peak < 16 << 20, f"{peak / 2 ** 20:.0f} MB allocated to read a {T}x{F} uint8 file"


def test_compressed_member_declaring_a_huge_array_is_refused_unallocated(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 9, F)})
    path = tmp_path / "huge.npz"
    path.write_bytes(compressed_npz(header.getvalue() + bytes(64)))
    with pytest.raises(ValueError, match="cut short"):  # more than the member declares it holds
        feature_files.read(str(path), refusing_allocator)
    path.write_bytes(compressed_npz(npy_bytes(np.zeros((5000, F), np.uint8))))  # all there, too long
    with pytest.raises(ValueError, match=r"5000 frames \(q in the .npz\), above the limit of 4096"):
        feature_files.read(str(path), refusing_allocator, max_frames=4096)


def test_compressed_scale_of_another_width_is_refused_unallocated(tmp_path):
    path = tmp_path / "scale.npz"
    path.write_bytes(compressed_npz(npy_bytes(Q), scale=np.ones(10 ** 6, np.float32)))
    allocated = []

    def allocate(shape, dtype):
        allocated.append(tuple(shape))
        return np.empty(shape, dtype)
    with pytest.raises(ValueError, match=rf"scale in the .npz.*\[{10 ** 6}\].*float32 \[{F}\]"):
        feature_files.read(str(path), allocate)
    assert allocated == [(T, F)]  # q only


def test_compressed_npz_still_reads(tmp_path):
    x = post_relu(3)
    q, scale, offset = feature_files.quantize(x)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, q=q, scale=scale, offset=offset)
    path = tmp_path / "c.npz"
    path.write_bytes(buffer.getvalue())
    got = feature_files.read(str(path), max_frames=T, width=F)
    for a, b in zip(got, (q, scale, offset)):
        np.testing.assert_array_equal(a, b)


def test_float16_refuses_values_outside_its_range(tmp_path):
    x = post_relu(0)
    x[2, 5] = 70000.0  # float16 would store Inf
    with pytest.raises(ValueError, match="outside float16's range.*70000"):
        write(tmp_path / "big.npy", x, "float16")
    x[2, 5] = 65504.0  # float16's largest: stored as it is
    assert feature_files.read(write(tmp_path / "max.npy", x, "float16"))[0][2, 5] == 65504.0
    x[2, 5] = -1e6
    write(tmp_path / "f32.npy", x, "float32")  # float32 holds it


def test_float16_store_names_the_video(tmp_path):
    from video_tag.errors import RunError
    from video_tag.feature_store import FeatureStore
    x = post_relu(0)
    x[0, 0] = 1e5
    with pytest.raises(RunError, match=r"cannot store the features of /videos/clip 1\.mp4 as float16: .*range"):
        FeatureStore(str(tmp_path), "float16").save("/videos/clip 1.mp4", x, {})


def test_stored_member_declaring_more_than_the_file_holds_is_refused_unallocated(tmp_path):
    # q.npy declares [10**6, F] uint8 (16 MB) and holds 64 bytes; the zip's central directory claims the
    # member is 16 MB too: the file's own size bounds what is read, before anything is allocated.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 6, F)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("q.npy", header.getvalue() + bytes(64))
        z.writestr("scale.npy", npy_bytes(S))
        z.writestr("offset.npy", npy_bytes(S))
    data = bytearray(buffer.getvalue())
    entry = data.index(b"PK\x01\x02")  # q.npy's central directory entry: its sizes at +20 and +24
    claimed = len(header.getvalue()) + 10 ** 6 * F
    data[entry + 20:entry + 28] = claimed.to_bytes(4, "little") * 2
    path = tmp_path / "forged.npz"
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(str(path)).getinfo("q.npy").file_size == claimed
    with pytest.raises(ValueError, match=r"cut short.*\(q in the .npz\)|q in the .npz.*cut short"):
        feature_files.read(str(path), refusing_allocator)
