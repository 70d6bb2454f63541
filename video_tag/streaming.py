"""JSONL outputs that are streamed while a long job runs and survive a kill: ``PartialJsonl``.

Each process appends its records, one flushed line each, to a partial file of its own,
``<name>.partial.<rank>.<time>.<pid>``, whose first line records the job's inputs (settings, and
digests of the weights and of the input list: a few hundred bytes, however long the list). Each line
also carries the ``source`` it was computed from (``file_identity`` of the input: its size and mtime,
taken before the input was read). The final file appears only at the end, assembled from all partial
files in key order (``assemble``), without keys and sources. A job started again with the same inputs
reads the complete lines of the partial files (``done``) and skips the keys whose line is still valid
(the caller checks the line's input and source against the input as it is now); a torn last line (a
killed process), a file of other inputs, or a line of an input changed since is ignored.
"""
import glob
import hashlib
import json
import logging
import os
import time

from . import files
from .errors import RunError

log = logging.getLogger(__name__)


def file_identity(path):
    """``[size, mtime_ns]`` of the file ``path`` (symlinks followed), or None when it cannot be stat'ed:
    what a line computed from that file is valid for (a replaced or rewritten file differs)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    return [st.st_size, st.st_mtime_ns]


def list_digest(paths):
    """The hex sha256 of the absolute paths of ``paths`` in order (NUL-separated, as the filesystem spells
    them): stands for the list in a header (64 characters for ten million paths)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(os.path.abspath(path)) + b"\0")
    return digest.hexdigest()


class PartialJsonl:
    """``save_dir/name`` (e.g. ``predictions.jsonl``), streamed through partial files.

    Records are dicts; each carries a ``key`` (a list of ints, e.g. ``[list index]`` or ``[list index,
    window]``) that orders the final file, and a ``source`` (``file_identity`` of its input before it was
    read) that ``done``'s caller checks; both are removed from the final file.
    """

    def __init__(self, save_dir, name, inputs):
        self.path = os.path.join(save_dir, name)
        self.pattern = os.path.join(glob.escape(save_dir), name + ".partial.*")
        self.header = json.dumps({"inputs": inputs}, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        self.file = self.own = None
        self.earlier, self.previous = set(), {}

    def resume(self, valid):
        """At the start of a run: the lines of earlier runs that still hold, as ``done`` returns them
        (``valid(key, record)`` checks each against its input as it is now; None: nothing is reused).
        Remembers them and which partial files exist, for ``final``."""
        self.earlier = set(glob.glob(self.pattern))
        self.previous = self.done(valid, self.earlier) if valid is not None else {}
        return self.previous

    def final(self, keep):
        """At the end of a run (all processes done): the lines to ``assemble``: those ``resume`` found for
        the keys with ``keep(key)`` (the inputs not computed again), and every line of the partial files
        written since (this run's, all processes'). The sources of earlier lines were checked once, at the
        start; this run's lines are right for the inputs as they were when read."""
        lines = {k: v for k, v in self.previous.items() if keep(k)}
        lines.update(self.done(paths=set(glob.glob(self.pattern)) - self.earlier))
        return lines

    def done(self, valid=lambda key, record: True, paths=None):
        """``{key tuple: (partial file, offset, length)}`` of the complete lines written for these inputs
        in ``paths`` (default: every partial file); ``valid(key, record)`` may reject a line, e.g. a list
        index that now names another video, or a ``record["source"]`` that is not the input's identity
        now."""
        found = {}
        for path in sorted(glob.glob(self.pattern) if paths is None else paths):
            try:
                with open(path, "rb") as f:
                    if f.readline() != self.header:
                        log.info("%s was written for other inputs: not reused", path)
                        continue
                    offset = f.tell()
                    for line in f:
                        if line.endswith(b"\n"):
                            try:
                                record = json.loads(line)
                                key = tuple(int(k) for k in record["key"])
                                if valid(key, record):
                                    found[key] = (path, offset, len(line))
                            except (ValueError, KeyError, TypeError, IndexError):
                                pass
                        offset += len(line)
            except OSError:
                continue  # removed meanwhile
        return found

    def remove_partials(self):
        for path in glob.glob(self.pattern):
            os.remove(path)

    def open(self, rank):
        """Start this process's partial file for this run; returns self (a context manager)."""
        self.own = f"{self.path}.partial.{rank}.{time.time_ns()}.{os.getpid()}"
        try:
            self.file = open(self.own, "xb")
            self.file.write(self.header)
            self.file.flush()
        except OSError as e:
            raise RunError(f"cannot write {self.own}: {e.strerror or e}") from None
        return self

    def append(self, key, record):
        """Append ``record`` (a dict with its ``source``) under ``key``, flushed to the OS: a kill leaves at
        most a torn line."""
        line = json.dumps({"key": list(key), **record}, ensure_ascii=False) + "\n"
        try:
            self.file.write(line.encode("utf-8"))
            self.file.flush()
        except OSError as e:
            raise RunError(f"cannot write {self.own}: {e.strerror or e}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()
            self.file = None

    def assemble(self, done):
        """Write the final file from ``done`` (as returned by ``done()``) in key order, without the keys
        and sources, then remove the partial files. Returns the number of lines."""
        def write(f):
            for line in _read_lines(done[k] for k in sorted(done)):
                record = json.loads(line)
                del record["key"]
                record.pop("source", None)
                f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

        files.atomic_write(self.path, write)
        self.remove_partials()
        return len(done)


def _read_lines(locations):
    """The bytes of each ``(file, offset, length)`` line, in the order given."""
    handles = {}
    try:
        for path, offset, length in locations:
            f = handles.get(path) or handles.setdefault(path, open(path, "rb"))
            f.seek(offset)
            yield f.read(length)
    finally:
        for f in handles.values():
            f.close()
