"""JSONL outputs that are streamed while a long job runs and survive a kill: ``PartialJsonl``.

Each process appends its records, one flushed line each, to a partial file of its own,
``<name>.partial.<rank>.<time>.<pid>``, whose first line records the job's inputs. The final file
appears only at the end, assembled from all partial files in key order (``assemble``). A job started
again with the same inputs reads the complete lines of the partial files (``done``) and skips their
keys; a torn last line (a killed process) or a file of other inputs is ignored.
"""
import glob
import json
import logging
import os
import time

from . import files
from .errors import RunError

log = logging.getLogger(__name__)


class PartialJsonl:
    """``save_dir/name`` (e.g. ``predictions.jsonl``), streamed through partial files.

    Records are dicts; each carries a ``key`` (a list of ints, e.g. ``[list index]`` or ``[list index,
    window]``) that orders the final file and is removed from it.
    """

    def __init__(self, save_dir, name, inputs):
        self.path = os.path.join(save_dir, name)
        self.pattern = os.path.join(glob.escape(save_dir), name + ".partial.*")
        self.header = json.dumps({"inputs": inputs}, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        self.file = self.own = None

    def done(self, valid=lambda key, record: True):
        """``{key tuple: (partial file, offset, length)}`` of the complete lines written for these inputs
        (``valid(key, record)`` may reject a line, e.g. a list index that now names another video)."""
        found = {}
        for path in sorted(glob.glob(self.pattern)):
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
        """Append ``record`` (a dict) under ``key``, flushed to the OS: a kill leaves at most a torn line."""
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
        """Write the final file from ``done`` (as returned by ``done()``) in key order, without the keys,
        then remove the partial files. Returns the number of lines."""
        def write(f):
            for line in _read_lines(done[k] for k in sorted(done)):
                record = json.loads(line)
                del record["key"]
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
