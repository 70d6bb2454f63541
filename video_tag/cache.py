"""A cache of exported inference models, so that a run does not rebuild, load and trace the network each
time it starts (ResNet101: ~10 s before the first frame on 2 cores, of which creating the predictor
from the exported files is ~1.5 s).

An entry is a folder named by a hash of everything the export depends on (the sha256 of the weight
file, the architecture, the input shape, the Paddle and videotag versions), written under a temporary
name and renamed when complete, with ``key.json`` recording the key. Entries not used for a day are
removed once more than ``KEEP`` are there (an exported ResNet101 takes 170 MB).

Where: ``$VIDEOTAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/videotag/exports``, else
``~/.cache/videotag/exports``. Where that cannot be written, or is not safe to load models from (a folder
another user owns, or that others may write to: they could put a model there that this run would load),
each run exports into a temporary folder, as without a cache (the latter with one log line saying why).
"""
import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time

log = logging.getLogger(__name__)

KEEP = 4
KEY_FILE = "key.json"


def root():
    if os.environ.get("VIDEOTAG_CACHE_DIR"):
        return os.environ["VIDEOTAG_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "videotag", "exports")


def _matches(directory, key):
    try:
        with open(os.path.join(directory, KEY_FILE), encoding="utf-8") as f:
            return json.load(f) == key
    except (OSError, ValueError):
        return False


def unsafe(folder):
    """Why ``folder`` must not hold models this process loads (another user owns it, or others may write to
    it), or None when it is this user's own, or does not exist yet."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"others may write to it (mode {stat.filemode(st.st_mode)})"
    return None


@contextlib.contextmanager
def exported(name, key, export, still_valid=lambda: True):
    """Yield the folder holding the export of ``key``: a cached one, or one made now by
    ``export(folder)`` (it writes the files; the folder exists).

    key: a JSON-serialisable dict of everything the export depends on.
    still_valid: called after a fresh export; False (e.g. the weight file changed while it was read)
        keeps the export out of the cache: it is used for this run only.
    The folder may be read only inside the ``with`` block (a temporary one is removed at its end).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    entry = os.path.join(root(), f"{name}-{digest}")
    why = unsafe(root())
    if why:
        log.warning("not using the export cache %s: %s; exporting into a temporary folder", root(), why)
    elif _matches(entry, key):
        with contextlib.suppress(OSError):
            os.utime(os.path.join(entry, KEY_FILE))  # last use, for pruning
        log.debug("exported %s from the cache: %s", name, entry)
        yield entry
        return
    work = None
    if not why:
        try:
            os.makedirs(root(), mode=0o755, exist_ok=True)
            work = tempfile.mkdtemp(prefix=f".{name}-", dir=root())
        except OSError as e:
            log.debug("no export cache (%s): exporting into a temporary folder", e)
    if work is None:
        work, entry = tempfile.mkdtemp(prefix=f"videotag_{name}_"), None
    try:
        export(work)
        if entry is not None and still_valid():
            with open(os.path.join(work, KEY_FILE), "w", encoding="utf-8") as f:
                json.dump(key, f)
            try:
                os.rename(work, entry)
                work = entry
                _prune(name, keep=entry)
            except OSError:  # another process cached it first (or the entry is damaged): use ours
                pass
        yield work
    finally:
        if work != entry:
            shutil.rmtree(work, ignore_errors=True)


def _prune(name, keep):
    """Remove ``name`` entries unused for a day beyond the ``KEEP`` most recently used, and temporary
    folders of killed exports older than a day."""
    now, entries = time.time(), []
    for item in os.listdir(root()):
        path = os.path.join(root(), item)
        if not item.startswith((f"{name}-", f".{name}-")) or path == keep:
            continue
        try:
            used = os.stat(os.path.join(path, KEY_FILE) if not item.startswith(".") else path).st_mtime
        except OSError:
            used = 0.0
        if item.startswith("."):
            if now - used > 86400:
                shutil.rmtree(path, ignore_errors=True)
        else:
            entries.append((used, path))
    for used, path in sorted(entries, reverse=True)[KEEP - 1:]:
        if now - used > 86400:
            shutil.rmtree(path, ignore_errors=True)
            log.debug("export cache: removed %s", path)
