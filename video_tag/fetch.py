"""The VideoTag release in one command (``./run fetch``, ``tools/fetch_release.py``): download, unpack
safely, check, and put the files where every script looks for them.

    <dest>/weights/tsn.pdparams             from video_tag_tsn.tar   (member video_tag_tsn/tsn.pdparams)
    <dest>/weights/attention_lstm.pdparams  from video_tag_lstm.tar  (member attention_lstm/attention_lstm.pdparams)
    <dest>/label_3396.txt                   PaddleVideo's applications/VideoTag/label_3396.txt
    <dest>/data/mp4/*.mp4                   with samples: mp4.tar (members mp4/1.mp4, ...)

The archives' members are found by file name wherever they sit in the archive; their other members
(``.pdmodel``, ``.pdopt``: Paddle 1.8 files no script here reads) are not unpacked. Downloads go to
``<dest>/weights/downloads/<archive>.part`` and resume from there (HTTP Range); a complete download is
renamed ``<archive>``, unpacked into a temporary file, checked, renamed into place and removed. A final
name only ever holds a complete, checked file, whatever stops the run (Ctrl-C, a network error, a full
disk); running again continues, and skips the files already in place once they pass the same checks.

urllib honours ``http_proxy``, ``https_proxy`` and ``no_proxy``.
"""
import contextlib
import http.client
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib

from tqdm import tqdm

from .errors import RunError, UserError
from .files import WriteError, sha256

log = logging.getLogger(__name__)

RELEASE_BASE = "https://videotag.bj.bcebos.com"
LABELS_URL = ("https://raw.githubusercontent.com/PaddlePaddle/PaddleVideo/develop/"
              "applications/VideoTag/label_3396.txt")
MIRROR_VARIABLE = "VIDEOTAG_MIRROR"
NUM_CLASSES = 3396
TSN_LAYERS = 101
LABELS = "label_3396.txt"
SAMPLES_ARCHIVE, SAMPLES_DIR = "mp4.tar", "data"
DOWNLOADS = os.path.join("weights", "downloads")
BLOCK = 1 << 20

# archive -> (member file name, where it goes under dest, the model it must load into)
WEIGHTS = {
    "video_tag_tsn.tar": ("tsn.pdparams", os.path.join("weights", "tsn.pdparams"), "TSN"),
    "video_tag_lstm.tar": ("attention_lstm.pdparams", os.path.join("weights", "attention_lstm.pdparams"),
                           "AttentionLSTM"),
}
# What the extractor leaves out of the TSN file (weights.load_weights skip): its classifier's size varies.
TSN_SKIP = ("fc_0.",)


class _Transient(Exception):
    """A failure worth another try: a dropped connection, a timeout, a 5xx answer."""


def urls(mirror=None):
    """``{file name: URL}`` of the release files; under ``mirror`` (a base URL) they all keep their names."""
    if mirror:
        base = mirror.rstrip("/")
        names = list(WEIGHTS) + [LABELS, SAMPLES_ARCHIVE]
        return {name: f"{base}/{name}" for name in names}
    found = {name: f"{RELEASE_BASE}/{name}" for name in list(WEIGHTS) + [SAMPLES_ARCHIVE]}
    found[LABELS] = LABELS_URL
    return found


def download(url, path, retries=4, backoff=1.0, timeout=30.0):
    """Download ``url`` to ``path`` through ``path + ".part"``, resuming a part left by an earlier run.

    Transient failures (connection refused, reset or cut mid-body, timeouts, HTTP 408/429/5xx) are tried
    again ``retries`` times, after ``backoff``, 2 x ``backoff``, ... seconds, each try continuing where the
    last one stopped. Raises UserError on another HTTP error (404: the address is wrong), RunError when
    the tries run out (the part stays: running again continues) or the disk refuses the bytes.
    """
    part = path + ".part"
    for attempt in range(retries + 1):
        try:
            _download_once(url, part, timeout)
            break
        except _Transient as e:
            have = os.path.getsize(part) if os.path.exists(part) else 0
            if attempt == retries:
                kept = f"{have} bytes kept in {part}: run again to continue" if have else "run again to try again"
                tries = f"{retries + 1} tries" if retries else "1 try"
                raise RunError(f"cannot download {url}: {e} ({tries}; {kept})") from None
            delay = backoff * 2 ** attempt
            log.warning("%s: %s; trying again in %.0f s (from byte %d)", url, e, delay, have)
            time.sleep(delay)
    try:
        os.replace(part, path)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}", e.errno) from None
    return path


def _download_once(url, part, timeout):
    """One request: append to ``part`` from its size (206), or start it over (200: the server ignored the
    Range header, or there was nothing to resume). Complete when the byte count matches Content-Length."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "videotag-fetch"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        # a new opener each time: it reads the proxy variables now (urlopen's shared one read them once)
        opener = urllib.request.build_opener()
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            if e.headers.get("Content-Range") == f"bytes */{have}":
                return  # the part was complete already (a run stopped just before renaming it)
            os.remove(part)  # the part is longer than the file: it changed on the server
            raise _Transient("the server cannot continue the earlier part (HTTP 416): starting over") from None
        if e.code in (408, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise UserError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e)) from None
    with response:
        start = have if have and response.status == 206 else 0
        if have and response.status == 206 and not _range_starts_at(response, have):
            os.remove(part)
            raise _Transient(f"the server answered another range ({response.headers.get('Content-Range')}): "
                             f"starting over")
        if have and not start:
            log.warning("%s: the server does not resume downloads: starting over", url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        got = _copy(response, part, start, total, os.path.basename(part[:-len(".part")]))
    if total is not None and got != total:
        raise _Transient(f"the connection closed after {got} of {total} bytes")


def _range_starts_at(response, offset):
    """Whether a 206 answer's ``Content-Range: bytes a-b/n`` starts at ``offset``."""
    value = response.headers.get("Content-Range", "")
    return value.startswith(f"bytes {offset}-")


def _copy(response, part, start, total, name):
    """Write the body of ``response`` to ``part`` from byte ``start`` (truncating it there); returns its
    size. Network errors are transient; a write error (a full disk) is a RunError naming ``part``."""
    try:
        f = open(part, "r+b" if start else "wb")
        f.truncate(start)
        f.seek(start)
    except OSError as e:
        raise WriteError(f"cannot write {part}: {e.strerror or e}", e.errno) from None

    def read():
        try:
            return response.read1(BLOCK)  # what has arrived: a Ctrl-C keeps every byte received
        except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
            raise _Transient(_reason(e)) from None

    with f, tqdm(total=total, initial=start, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                 dynamic_ncols=True, mininterval=0.5) as progress:
        return start + _pour(read, f, part, progress)


def _pour(read, f, target, progress=None):
    """Write the blocks ``read()`` returns to the open file ``f`` until an empty one, then flush and fsync
    it; returns the number of bytes written. A read error propagates; a write error (a full disk) is a
    WriteError naming ``target``."""
    written = 0
    while True:
        block = read()
        if not block:
            break
        try:
            f.write(block)
        except OSError as e:
            raise WriteError(f"cannot write {target}: {e.strerror or e}", e.errno) from None
        written += len(block)
        if progress is not None:
            progress.update(len(block))
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror or e}", e.errno) from None
    return written


def _reason(error):
    """One line for a network error: ``timed out``, ``[Errno 111] Connection refused``, ..."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"the connection closed after {len(error.partial)} more bytes"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def safe_files(tar, archive):
    """Yield the regular-file members of the open ``tar``, refusing the whole archive (UserError naming
    the member) at an absolute name, a ``..`` component, a link or a device: nothing in a release archive
    needs them, and unpacked blindly they write outside the target."""
    for member in tar:
        name = member.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise UserError(f"archive {archive} refused: member {name!r} points outside the folder it unpacks to")
        if member.issym() or member.islnk():
            raise UserError(f"archive {archive} refused: member {name!r} is a link (to {member.linkname!r})")
        if member.isdir():
            continue
        if not member.isfile():
            raise UserError(f"archive {archive} refused: member {name!r} is not a regular file or folder")
        yield member


@contextlib.contextmanager
def open_archive(path):
    """``tarfile`` in 'r:*' mode (gzip despite the .tar name, or plain tar); a damaged or truncated
    archive becomes a UserError naming it, wherever it shows (opening, headers or a member's data)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # OSError: gzip.BadGzipFile
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"archive {path} is truncated or damaged ({reason})") from None


def _extract_to(tar, member, target):
    """Write ``member``'s bytes to a temporary file beside ``target``; returns its path (the caller renames
    it or removes it). A read error propagates (open_archive words it); a write error is a WriteError."""
    tmp = f"{target}.tmp{os.getpid()}"  # as files.atomic_write: the umask's permissions, not mkstemp's 0600
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        f = open(tmp, "wb")
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror or e}", e.errno) from None
    try:
        source = tar.extractfile(member)
        with f:
            written = _pour(lambda: source.read(BLOCK), f, target)
        if written != member.size:
            raise EOFError(f"member {member.name} ends after {written} of {member.size} bytes")
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def expected_shapes(model_name):
    """``{fluid name: shape}`` of the release's model: ResNet101 TSN (backbone; the classifier ``fc_0``
    is left out, as the extractor does) or the AttentionLSTM with 3396 outputs. Built without allocating
    parameters (``paddle.LazyGuard``), from the project's own model definitions."""
    import paddle
    from .models import TSN, AttentionLSTM
    from .weights import fluid_params
    with paddle.LazyGuard():
        model = TSN(num_layers=TSN_LAYERS) if model_name == "TSN" else AttentionLSTM(num_classes=NUM_CLASSES)
    shapes = {name: tuple(param.shape) for name, param in fluid_params(model).items()}
    if model_name == "TSN":
        shapes = {name: shape for name, shape in shapes.items() if not name.startswith(TSN_SKIP)}
    return shapes


def check_weights(path, model_name, shown=None):
    """Refuse (UserError naming ``shown`` or ``path``) a weight file the safe loader refuses or that lacks a
    parameter of the release's ``model_name`` or has it in another shape."""
    from .weights import read_state
    shown = shown or path
    try:
        state = read_state(path)
    except UserError as e:
        raise UserError(str(e).replace(path, shown)) from None
    for name, shape in expected_shapes(model_name).items():
        if name not in state:
            raise UserError(f"{shown} is not the release's {model_name}: it has no parameter {name}")
        if tuple(state[name].shape) != shape:
            raise UserError(f"{shown} is not the release's {model_name}: {name} has shape "
                            f"{list(state[name].shape)}, the release's has {list(shape)}")


def check_labels(path, shown=None):
    """Refuse (UserError naming ``shown`` or ``path``) a label file that is not UTF-8, has an empty line or
    does not have 3396 lines (one class name per line; a final newline is not a line)."""
    from .readers.lists import read_lines
    shown = shown or path
    try:
        lines = [text for _, text in read_lines(path, keep_blank=True)]
    except UserError as e:
        raise UserError(str(e).replace(path, shown)) from None
    if lines and not lines[-1].strip():
        lines.pop()
    empty = [i for i, text in enumerate(lines, 1) if not text.strip()]
    if empty:
        raise UserError(f"label file {shown}:{empty[0]}: empty line (the release has a class name on every line)")
    if len(lines) != NUM_CLASSES:
        raise UserError(f"label file {shown} has {len(lines)} lines, the release's has {NUM_CLASSES}")


def _in_place(target, check, shown):
    """Whether ``target`` already holds a file passing ``check``; a file there that fails it is not ours
    to replace (a user's own weights, say): UserError."""
    if not os.path.exists(target):
        return False
    try:
        check(target)
    except UserError as e:
        raise UserError(f"{shown} is already there and is not the release ({e}): move it away and run again") from None
    print(f"{shown}: already there, checked")
    return True


def _fetched(url, downloads, name, retries, backoff, timeout):
    """Download ``url`` to ``downloads/name`` (resuming), print its sha256; returns the path."""
    path = os.path.join(downloads, name)
    try:
        os.makedirs(downloads, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot write {downloads}: {e.strerror or e}", e.errno) from None
    if not os.path.exists(path):
        print(f"downloading {url}")
        download(url, path, retries, backoff, timeout)
    print(f"sha256 {sha256(path)}  {name}")
    return path


@contextlib.contextmanager
def _discarded_when_refused(path):
    """Remove the downloaded ``path`` when its content is refused (running again downloads it anew)."""
    try:
        yield
    except UserError as e:
        _remove(path)
        raise UserError(f"{e} (the download was removed)") from None


def fetch_weights(archive_path, member_name, target, model_name, shown):
    """Unpack the one member called ``member_name`` of the archive to ``target`` after checking it."""
    tmp = None
    try:
        with open_archive(archive_path) as tar:
            for member in safe_files(tar, os.path.basename(archive_path)):
                if os.path.basename(member.name) != member_name:
                    continue
                if tmp is not None:
                    raise UserError(f"archive {os.path.basename(archive_path)} holds two files named {member_name}")
                tmp = _extract_to(tar, member, target)
        if tmp is None:
            raise UserError(f"archive {os.path.basename(archive_path)} holds no {member_name}")
        check_weights(tmp, model_name, shown=f"{member_name} of {os.path.basename(archive_path)}")
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise WriteError(f"cannot write {target}: {e.strerror or e}", e.errno) from None
        tmp = None
    finally:
        if tmp is not None:
            _remove(tmp)
    print(f"{shown}: ready, checked ({model_name}, release names and shapes)")


def fetch_samples(archive_path, data_dir):
    """Unpack every file of the sample archive into a temporary folder in ``data_dir``, then move its
    top-level entries (``mp4/``) into ``data_dir``; an entry already there (other than an empty folder)
    is refused, not merged."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".mp4.", suffix=".tmp", dir=data_dir)
    except OSError as e:
        raise WriteError(f"cannot write {data_dir}: {e.strerror or e}", e.errno) from None
    try:
        with open_archive(archive_path) as tar:
            for member in safe_files(tar, os.path.basename(archive_path)):
                target = os.path.join(staging, *member.name.replace("\\", "/").split("/"))
                tmp = _extract_to(tar, member, target)
                try:
                    os.replace(tmp, target)
                except OSError as e:
                    _remove(tmp)
                    raise WriteError(f"cannot write {target}: {e.strerror or e}", e.errno) from None
        entries = sorted(os.listdir(staging))
        taken = [e for e in entries if os.path.exists(os.path.join(data_dir, e))
                 and not (os.path.isdir(os.path.join(data_dir, e)) and not os.listdir(os.path.join(data_dir, e)))]
        if taken:
            raise UserError(f"{os.path.join(data_dir, taken[0])} is already there: move it away to unpack the samples")
        for entry in entries:
            os.replace(os.path.join(staging, entry), os.path.join(data_dir, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [os.path.join(data_dir, e) for e in entries]


def fetch(dest, mirror=None, samples=False, retries=4, backoff=1.0, timeout=30.0):
    """Fetch, check and place the release files under ``dest`` (see the module docstring). Returns 0.

    mirror: a base URL replacing the release's addresses (default: the environment's VIDEOTAG_MIRROR).
    Raises UserError (exit 2) for a refused address or content, RunError (exit 3) when the network or
    the disk fails; either way no final name holds a partial or unchecked file.
    """
    mirror = mirror or os.environ.get(MIRROR_VARIABLE) or None
    if mirror and not mirror.startswith(("http://", "https://")):
        raise UserError(f"mirror {mirror!r} is not an http:// or https:// address")
    addresses = urls(mirror)
    downloads = os.path.join(dest, DOWNLOADS)
    try:
        _fetch_all(dest, addresses, downloads, samples, retries, backoff, timeout)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(downloads)  # when empty: nothing to resume
    return 0


def _fetch_all(dest, addresses, downloads, samples, retries, backoff, timeout):
    """Each release file in turn: skipped when in place and checked, else downloaded, checked, placed."""
    for archive, (member, relative, model_name) in WEIGHTS.items():
        target = os.path.join(dest, relative)
        if _in_place(target, lambda path: check_weights(path, model_name), relative):
            continue
        path = _fetched(addresses[archive], downloads, archive, retries, backoff, timeout)
        with _discarded_when_refused(path):
            fetch_weights(path, member, target, model_name, relative)
        _remove(path)
    labels = os.path.join(dest, LABELS)
    if not _in_place(labels, check_labels, LABELS):
        path = _fetched(addresses[LABELS], downloads, LABELS, retries, backoff, timeout)
        with _discarded_when_refused(path):
            check_labels(path, shown=f"{LABELS} from {addresses[LABELS]}")
        try:
            os.replace(path, labels)
        except OSError as e:
            raise WriteError(f"cannot write {labels}: {e.strerror or e}", e.errno) from None
        print(f"{LABELS}: ready, checked ({NUM_CLASSES} lines)")
    if samples:
        data_dir = os.path.join(dest, SAMPLES_DIR)
        if os.path.isdir(os.path.join(data_dir, "mp4")) and os.listdir(os.path.join(data_dir, "mp4")):
            print(f"{os.path.join(SAMPLES_DIR, 'mp4')}: already there")
        else:
            path = _fetched(addresses[SAMPLES_ARCHIVE], downloads, SAMPLES_ARCHIVE, retries, backoff, timeout)
            with _discarded_when_refused(path):
                placed = fetch_samples(path, data_dir)
            _remove(path)
            print(f"sample videos: {', '.join(os.path.relpath(p, dest) for p in placed)}")
