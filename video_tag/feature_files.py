"""Feature files in three storage types: what the extractor writes and every reader accepts.

One file per video, [T, F] (T frames, F = 2048 for TSN)::

    float32  <stem>.npy   float32 [T, F]: the release format
    float16  <stem>.npy   float16 [T, F]: half the bytes; read back as float32
    uint8    <stem>.npz   uncompressed np.savez with three arrays:
                            q       uint8   [T, F]
                            scale   float32 [F]
                            offset  float32 [F]
                          features = q * scale + offset, in float32

uint8 is quantised as YouTube-8M quantises its frame features (linear, 256 levels), with the range taken
per video and per dimension: ``offset`` is each dimension's minimum over the video's frames and
``scale = (maximum - minimum) / 255``, so every value is within ``scale / 2`` of the original (plus float32
rounding), each dimension's minimum comes back exactly, and so do the zeros of a post-ReLU dimension that
reaches zero. A fixed range cannot fit features whose scale depends on the backbone (TSN's are
unbounded post-ReLU averages); bench/README.md has the cosines of each choice. Without this toolkit::

    d = np.load("clip_1f3a9c2e.npz")
    features = d["q"] * d["scale"] + d["offset"]        # float32 [T, F]
"""
import io
import math
import struct
import zipfile
import zlib

import numpy as np

from . import shards

DTYPES = ("float32", "float16", "uint8")
SUFFIXES = {"float32": ".npy", "float16": ".npy", "uint8": ".npz"}
NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
UINT8_MEMBERS = ("q", "scale", "offset")
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504: larger values would be stored as Inf


def suffix(dtype):
    """The file suffix of ``dtype``: ``.npy`` (float32, float16) or ``.npz`` (uint8)."""
    return SUFFIXES[dtype]


def quantize(x):
    """float [T, F] -> (q uint8 [T, F], scale float32 [F], offset float32 [F]), per dimension over the T
    frames; ``dequantize`` gives back ``x`` within ``scale / 2`` (plus float32 rounding). Raises
    ``ValueError`` for NaN or Inf, which 8 bits cannot hold."""
    x = np.asarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or Inf: they cannot be quantised to uint8")
    offset = x.min(axis=0)
    scale = ((x.max(axis=0) - offset) / np.float32(255)).astype(np.float32)
    step = np.where(scale > 0, scale, np.float32(1))  # a constant dimension: q = 0, value = offset
    q = np.rint((x - offset) / step).clip(0, 255).astype(np.uint8)
    return q, scale, offset


def dequantize(q, scale, offset, out=None):
    """``q * scale + offset`` in float32: [T, F] (or [..., F]); written into ``out`` when given."""
    out = np.empty(q.shape, np.float32) if out is None else out
    np.copyto(out, q)
    np.multiply(out, scale, out=out)
    np.add(out, offset, out=out)
    return out


def write(f, features, dtype):
    """Write float32 ``features`` [T, F] to the binary file ``f`` stored as ``dtype`` (one of ``DTYPES``)."""
    if dtype == "uint8":
        q, scale, offset = quantize(features)
        np.savez(f, q=q, scale=scale, offset=offset)
        return
    features = np.asarray(features)
    if dtype == "float16":
        outside = np.abs(features) > FLOAT16_MAX  # NaN compares False: stored as NaN, as float32 stores it
        if outside.any():
            raise ValueError(f"features hold values outside float16's range (|x| <= {FLOAT16_MAX:g}), up to "
                             f"{float(np.abs(features[outside]).max()):g}: store them as float32")
    np.save(f, features.astype(dtype, copy=False))


def complete(path, dtype, shape):
    """True when ``path`` (a file or a shard member) is a complete feature file of ``dtype`` and ``shape``
    [T, F] as ``write`` makes it (only headers are read: a resumed extraction checks every file)."""
    shape = tuple(shape)
    try:
        with shards.open_bytes(path) as (f, size):
            if dtype != "uint8":
                found = _npy_header(f)
                return found == (shape, False, np.dtype(dtype)) and size - f.tell() >= math.prod(shape) * found[2].itemsize
            with zipfile.ZipFile(f) as z:
                found = {}
                for m in UINT8_MEMBERS:
                    with z.open(m + ".npy") as member:
                        found[m] = _npy_header(member)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, struct.error):
        return False
    return (found["q"] == (shape, False, np.dtype(np.uint8))
            and found["scale"] == found["offset"] == (shape[1:], False, np.dtype(np.float32)))


def read(path, empty=np.empty, max_frames=None, width=None):
    """The stored arrays of a feature file: ``(data, scale, offset)``; ``data`` is float [T, F] as stored
    (scale and offset None) or uint8 [T, F] with float32 [F] ``scale`` and ``offset``. ``empty(shape,
    dtype)`` allocates them.

    Raises ``ValueError`` with a one-line reason for anything else (the file type is told by its first
    bytes, not by its name): a missing or unreadable file, another format (a pickle is never unpickled),
    a wrong shape or dtype, an .npz without the three arrays. Reads each array straight into its memory
    (a quarter of the CPU time of ``np.load`` on an .npz; bench/README.md).

    The file is untrusted: nothing is allocated, read or decompressed beyond what its headers declare,
    and a declared shape is checked first: more data than the file (or a stored .npz member) holds, more
    than ``max_frames`` frames (T), or, with ``width``, another shape than [T, width] is refused. A
    compressed .npz member is decompressed up to its declared array's bytes, never further, so with both
    limits given a zip bomb costs at most ``max_frames * width`` elements.
    """
    def frames_and_width(shape, where):
        if max_frames is not None and len(shape) >= 1 and shape[0] > max_frames:
            raise ValueError(f"{shape[0]} frames{where}, above the limit of {max_frames} (MODEL.max_frames; "
                             f"raise it with -o MODEL.max_frames=N)")
        if width is not None and (len(shape) != 2 or shape[1] != width):
            raise ValueError(f"features of shape {list(shape)}{where}, expected [T, {width}]")

    try:
        with shards.open_bytes(path) as (f, size):
            head = f.read(len(NPY_MAGIC))
            f.seek(0)
            if head == NPY_MAGIC:
                array = _npy(f, size, "", empty, frames_and_width)
                if not np.issubdtype(array.dtype, np.floating):
                    raise ValueError(f"features of dtype {array.dtype}, expected float" + (
                        " (uint8 features come as a .npz with q, scale and offset: tsn_extractor.py "
                        "--feature_dtype uint8)" if array.dtype == np.uint8 else ""))
                return array, None, None
            if head.startswith(ZIP_MAGIC):
                return _uint8_npz(f, size, empty, frames_and_width)
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except OSError as e:
        raise ValueError(f"not a readable feature file ({' '.join(str(e).split()) or type(e).__name__})") from None
    raise ValueError("not a .npy or .npz feature file (neither an NPY header nor a zip archive)")


_HEADERS = {}  # NPY header bytes -> (shape, fortran_order, dtype): files of one extraction share a header


def _npy_header(f):
    """``(shape, fortran_order, dtype)`` of the NPY header at ``f``'s position; ``f`` is left at the data.
    Raises ``ValueError`` (or EOFError, struct.error) when there is none."""
    prefix = f.read(10)  # magic, version, and the header length (2 bytes in version 1, 4 after)
    if len(prefix) < 10 or prefix[:6] != NPY_MAGIC:
        raise ValueError("no NPY header")
    if prefix[6] == 1:
        size = struct.unpack("<H", prefix[8:10])[0]
    else:
        prefix += f.read(2)
        size = struct.unpack("<I", prefix[8:12])[0]
    if size > 100_000:
        raise ValueError(f"a header of {size} bytes")
    key = prefix + f.read(size)
    parsed = _HEADERS.get(key)
    if parsed is None:
        fields = io.BytesIO(key[8:])
        parsed = (np.lib.format.read_array_header_1_0(fields) if prefix[6] == 1
                  else np.lib.format.read_array_header_2_0(fields))
        if len(_HEADERS) > 256:
            _HEADERS.clear()
        _HEADERS[key] = parsed
    return parsed


def _npy(f, end, where, empty, check=None):
    """The array of the .npy data at ``f``'s position, which ends at byte ``end`` of the file; ``where``
    names an .npz member in messages. ``check(shape, where)`` may refuse the declared shape (raising
    ``ValueError``) before anything is allocated or read."""
    try:
        shape, fortran, dtype = _npy_header(f)
        if dtype.hasobject:
            raise ValueError("holds Python objects (pickles are not loaded)")
        nbytes = math.prod(shape) * dtype.itemsize
        if end - f.tell() < nbytes:
            raise ValueError(f"cut short: {max(0, end - f.tell())} bytes of data for shape {list(shape)}")
    except (ValueError, EOFError, OverflowError, struct.error) as e:
        raise ValueError(f"not a readable .npy file{where} ({' '.join(str(e).split()) or type(e).__name__})") from None
    if check is not None:
        check(shape, where)
    try:
        array = empty(shape[::-1] if fortran else shape, dtype)
        if nbytes and f.readinto(memoryview(array.reshape(-1).view(np.uint8))) < nbytes:
            raise ValueError("cut short")
    except (ValueError, EOFError, OverflowError, struct.error) as e:
        raise ValueError(f"not a readable .npy file{where} ({' '.join(str(e).split()) or type(e).__name__})") from None
    return array.T if fortran else array


def _uint8_npz(f, size, empty, check):
    """``(q, scale, offset)`` of the .npz at ``f`` (``size`` bytes); stored members are read in place (no
    CRC check, as for an .npy), compressed ones (``np.savez_compressed``) through zipfile, up to the
    bytes their headers declare. ``check`` refuses q's declared shape (see ``_npy``); scale and offset
    must declare [F] of q."""
    arrays = []

    def one_row_of_q(shape, where):  # scale and offset: [F] of q
        if tuple(shape) != arrays[0].shape[1:]:
            raise ValueError(f".npz member{where} of shape {list(shape)}, expected float32 [{arrays[0].shape[1]}]")
    try:
        with zipfile.ZipFile(f) as z:
            members = {i.filename: i for i in z.infolist()}
            missing = [m for m in UINT8_MEMBERS if m + ".npy" not in members]
            if missing:
                raise ValueError(f".npz without {', '.join(missing)}: uint8 features are stored as q, scale and "
                                 f"offset (tsn_extractor.py --feature_dtype uint8)")
            for m in UINT8_MEMBERS:
                info, where = members[m + ".npy"], f" ({m} in the .npz)"
                member_check = check if m == "q" else one_row_of_q
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
                    f.seek(info.header_offset)
                    local = f.read(30)
                    if local[:4] != ZIP_MAGIC:
                        raise zipfile.BadZipFile(f"bad local header of {m}.npy")
                    f.seek(info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30])))
                    end = min(f.tell() + info.file_size, size)  # the declared size cannot pass the file's end
                    arrays.append(_npy(f, end, where, empty, member_check))
                else:
                    # Decompressed as read, never beyond the bytes q's header declares (after ``check``)
                    # nor beyond the member's declared size: a zip bomb cannot make it inflate more.
                    with z.open(info) as member:
                        arrays.append(_npy(member, info.file_size, where, empty, member_check))
                q = arrays[0]
                if m == "q" and (q.dtype != np.uint8 or q.ndim != 2):
                    raise ValueError(f".npz q of dtype {q.dtype} and shape {list(q.shape)}, expected uint8 [T, F]")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            struct.error, zlib.error) as e:
        raise ValueError(f"not a readable .npz file ({' '.join(str(e).split()) or type(e).__name__})") from None
    q, scale, offset = arrays
    for name, array in (("scale", scale), ("offset", offset)):
        if array.dtype != np.float32 or array.shape != q.shape[1:]:
            raise ValueError(f".npz {name} of dtype {array.dtype} and shape {list(array.shape)}, expected "
                             f"float32 [{q.shape[1]}]")
        if not np.isfinite(array).all():
            raise ValueError(f".npz {name} holds NaN or Inf")
    return q, scale, offset
