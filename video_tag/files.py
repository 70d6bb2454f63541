"""Writing output files so that a reader never sees half of one (temporary name, fsync, rename), and
fingerprinting inputs."""
import contextlib
import errno
import gc
import hashlib
import os

from .errors import RunError

# What a write error says about the next writes into the same folder: these fail them all (stop the run);
# others (a name too long, bytes the file system refuses in a name) concern one file.
FOLDER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


class WriteError(RunError):
    """A file could not be written (``errno``: the ``OSError``'s number); ``folder_wide`` when every next
    write into the same folder would fail too (a full disk, a read-only file system, no permission)."""

    def __init__(self, message, errno_=None):
        super().__init__(message)
        self.errno = errno_

    @property
    def folder_wide(self):
        return self.errno in FOLDER_ERRNOS


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector paused: the bookkeeping loops over a million videos make millions of
    small objects and no cycles, and the collector's passes over them cost about as much as the loops
    (bench/bench_bookkeeping.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it into place.

    An ``OSError`` (a full disk, no permission, a name too long) leaves no file behind and becomes a
    ``WriteError`` (a ``RunError``) naming ``path``.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}", e.errno) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Write ``text`` as UTF-8, atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def sha256(path):
    """The hex sha256 of a file's bytes, read in 1 MiB blocks (weights, lists, label files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
