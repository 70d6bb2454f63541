"""Feature shards: many videos' feature files in one uncompressed tar, plus an index.

``tsn_extractor.py --shard_size N`` (and ``videotag.py --save_features DIR --shard_size N``) writes::

    save_dir/shard-000000.tar         POSIX tar (pax format, no compression) of N videos, two members each:
                                        <stem>_<hash>.npy (.npz for uint8)  the feature file, byte for byte
                                                                            what one-file-per-video writes
                                        <stem>_<hash>.json                  its provenance record
    save_dir/shard-000000.index.tsv   ``member<TAB>offset<TAB>size`` per line (after a header line): where
                                      each member's bytes start in the tar, and how many there are

Lists name a member as ``save_dir/shard-000000.tar/<stem>_<hash>.npy``: every reader (train, eval,
predict) takes such lines, mixed with plain files. Tar because every tool reads it: ``tar -xf`` gives the
very files of a one-file-per-video run, Python's ``tarfile`` and WebDataset read the shards as they are.
Uncompressed because a member is then a contiguous byte range that a reader opens with one seek (no
scan of the archive, no decompression); the index holds those ranges. A tar made by other tools (no
index beside it) is read too: its headers are scanned once per process.

The index is the authority on which members are live: when a video is extracted again (its provenance
changed, or it moved to another shard or to a plain file), its old members are taken out of the old
shard's index (a tar is never rewritten), so a list naming the old member fails loudly ("not in the
shard's index") instead of reading stale features; a shard left with no live member is deleted.

A shard is written as ``shard-NNNNNN.tar.part`` (locked while its writer lives), then its index, then
renamed: a shard and its index appear complete or not at all. The videos of a shard that was still being
written when its run was killed are extracted again by the next run (at most N videos), which also removes
an index left without its tar. An interrupted run (Ctrl-C, a full disk, an error) closes its shard early
instead, with the videos it holds whole (a video cut off halfway is left out), so nothing finished is lost.
A writer that cannot lock its shard (a file system without ``flock``) stops: another run would take the
shard for a killed run's and delete it.
"""
import collections
import contextlib
import io
import os
import re
import tarfile
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per folder there
    fcntl = None

from . import files
from .errors import RunError

INDEX_HEADER = "member\toffset\tsize\n"
SHARD_RE = re.compile(r"shard-(\d{6,})\.tar")
CACHE_BYTES = 64 << 20  # index text whose parsed entries are kept per process (about 1,500 shards of 1,000 videos)
_INDEXES = collections.OrderedDict()  # index file -> (stamp, {member: (offset, size) or error}, bytes), LRU first
_cached = 0  # bytes of index text behind the entries in _INDEXES
_SCANS = {}  # tar without an index -> (stamp, {member: (offset, size)})


def index_path(shard):
    """``dir/shard-000003.tar -> dir/shard-000003.index.tsv``."""
    return shard[:-len(".tar")] + ".index.tsv"


def split_member(path):
    """``(shard, member)`` when ``path`` names a member of a tar (``dir/x.tar/member``, or
    ``dir/x.tar/sub/member`` for a tar made by other tools), else None."""
    head, member = os.path.split(path)
    while member and head:
        if head.endswith(".tar") and os.path.isfile(head):
            return head, member
        parent, name = os.path.split(head)
        if parent == head:
            return None
        head, member = parent, name + "/" + member
    return None


def shard_files(save_dir):
    """The names in ``save_dir`` that start with ``shard-`` (one listing: no pattern matched per file of a
    folder of a million feature files)."""
    try:
        return [n for n in os.listdir(save_dir) if n.startswith("shard-")]
    except FileNotFoundError:
        return []


def shards_in(save_dir, names=None):
    """The finished shards of ``save_dir`` (those with an index), in number order. ``names``: its
    ``shard_files`` when the caller has them."""
    names = set(shard_files(save_dir) if names is None else names)
    found = [n for n in names if SHARD_RE.fullmatch(n) and n[:-len(".tar")] + ".index.tsv" in names]
    return [os.path.join(save_dir, n) for n in sorted(found, key=lambda n: int(SHARD_RE.fullmatch(n).group(1)))]


def _index(shard):
    """``{member: (offset, size), or the one-line reason its line is damaged}`` of ``shard``'s index file,
    parsed once per process (least recently used out, past ``CACHE_BYTES`` of index text) until the file
    changes: a member is then found in O(1). FileNotFoundError when there is no index."""
    global _cached
    path = index_path(shard)
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _INDEXES.get(path)
    if hit is not None and hit[0] == stamp:
        _INDEXES.move_to_end(path)
        return hit[1]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.startswith(INDEX_HEADER):
        raise ValueError(f"shard index {path} does not start with the line {INDEX_HEADER.strip()!r}")
    tar_size = os.path.getsize(shard)
    entries = {}
    for number, line in enumerate(text.split("\n")[1:], 2):
        if line:
            name, entry = _entry(path, line, number, tar_size)
            entries.setdefault(name, entry)
    if hit is not None:
        _cached -= _INDEXES.pop(path)[2]
    _INDEXES[path] = (stamp, entries, len(text))
    _cached += len(text)
    while _cached > CACHE_BYTES and len(_INDEXES) > 1:
        _cached -= _INDEXES.popitem(last=False)[1][2]
    return entries


def _entry(path, line, number, tar_size):
    """``(member, (offset, size))`` of a ``line`` of the index ``path``, checked against the tar's size, or
    ``(member, reason)`` for a damaged line. The member is what comes before the last two TABs: a name with a
    TAB (written by videotag before its names were made safe) is read whole."""
    fields = line.rsplit("\t", 2)
    try:
        if len(fields) != 3:
            raise ValueError
        name, offset, size = fields[0], int(fields[1]), int(fields[2])
    except ValueError:
        return line.split("\t", 1)[0], f"{path}:{number}: expected 'member<TAB>offset<TAB>size'"
    if offset < 0 or size < 0 or offset + size > tar_size:
        return name, f"{path}:{number}: {name} lies outside the tar ({tar_size} bytes)"
    return name, (offset, size)


def lookup(shard, member):
    """``(offset, size)`` of ``member`` in ``shard`` (from its index, else from the tar's headers), or None
    when it is not there. Raises ``ValueError`` for a damaged index line of that member, or a damaged tar."""
    try:
        entry = _index(shard).get(member)
    except FileNotFoundError:
        return _scanned(shard).get(member)
    except OSError as e:
        raise ValueError(f"cannot read shard index {index_path(shard)}: {e.strerror}") from None
    if isinstance(entry, str):
        raise ValueError(entry)
    return entry


def read_index(shard):
    """``{member: (offset, size)}`` of ``shard``: from its index file, else (a tar made by other tools) from
    its headers. Raises ``ValueError`` (the first damaged line)."""
    try:
        entries = _index(shard)
    except FileNotFoundError:
        return _scanned(shard)
    except OSError as e:
        raise ValueError(f"cannot read shard index {index_path(shard)}: {e.strerror}") from None
    for entry in entries.values():
        if isinstance(entry, str):
            raise ValueError(entry)
    return dict(entries)


def _scanned(shard):
    """The members of a tar without an index, from its headers (read once per process while it is unchanged)."""
    try:
        st = os.stat(shard)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = _SCANS.get(shard)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with tarfile.open(shard, "r:") as tar:
            entries = {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
    except (tarfile.TarError, OSError) as e:
        raise ValueError(f"not a readable uncompressed tar: {shard} ({e})") from None
    if len(_SCANS) > 256:
        _SCANS.clear()
    _SCANS[shard] = (stamp, entries)
    return entries


def locate(path):
    """``(file, offset, size)`` of the bytes ``path`` names: a plain file (offset 0), or a shard member.
    Raises ``ValueError`` with a one-line reason (FileNotFoundError for a plain file that is not there)."""
    found = split_member(path)
    if found is None:
        return path, 0, None
    shard, member = found
    entry = lookup(shard, member)
    if entry is None:
        raise ValueError(f"{member} is not in the index of shard {shard} (never written there, or extracted "
                         f"again since: see manifest.tsv of its folder)")
    return shard, entry[0], entry[1]


def exists(path):
    """True for a plain file, or a member listed in its shard's index."""
    if os.path.isfile(path):
        return True
    try:
        return locate(path)[2] is not None  # None: not a member (and not a file either)
    except ValueError:
        return False


class Window(io.RawIOBase):
    """Bytes ``[offset, offset + size)`` of an open binary file, as a seekable file of their own."""

    def __init__(self, raw, offset, size):
        super().__init__()
        self.raw, self.start, self.size, self.pos = raw, offset, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=0):
        self.pos = max(0, {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence])
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self.size - self.pos))
        self.raw.seek(self.start + self.pos)
        done = self.raw.readinto(view[:count]) if count else 0
        self.pos += done or 0
        return done


@contextlib.contextmanager
def open_bytes(path):
    """``(binary file, size)`` of what ``path`` names (a plain file, or a shard member)."""
    where, offset, size = locate(path)
    with open(where, "rb", buffering=0) as raw:
        if size is None:
            yield io.BufferedReader(raw), os.fstat(raw.fileno()).st_size
        else:
            yield io.BufferedReader(Window(raw, offset, size)), size


def read_member(path):
    """All the bytes ``path`` names."""
    with open_bytes(path) as (f, size):
        return f.read(size)


def advise(path):
    """Ask the OS to start reading what ``path`` names (``posix_fadvise(WILLNEED)``); errors are ignored."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        where, offset, size = locate(path)
        fd = os.open(where, os.O_RDONLY)
    except (OSError, ValueError):
        return  # the read will say what is wrong
    try:
        os.posix_fadvise(fd, offset, size or 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def drop_members(shard, members):
    """Take ``members`` out of ``shard``'s index (the caller holds the folder's lock); delete the shard when
    nothing live is left in it. Returns how many were dropped."""
    index = read_index(shard)
    gone = {m for m in members if m in index}
    if not gone:
        return 0
    left = {m: v for m, v in index.items() if m not in gone}
    if left:
        write_index(shard, left)
    else:
        os.remove(index_path(shard))
        os.remove(shard)
    return len(gone)


def write_index(shard, index):
    files.write_text(index_path(shard), INDEX_HEADER + "".join(f"{m}\t{o}\t{s}\n" for m, (o, s) in index.items()))


def _lock_nowait(f):
    """True when the exclusive lock of ``f`` was taken (always, where the OS has no locks)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


ORPHAN_AGE = 10  # seconds: a .part this young may be one whose writer has not locked it yet


def remove_orphans(save_dir, names=None):
    """Delete the unfinished shards (``.part``) of killed runs in ``save_dir``: those no live writer holds
    locked (and older than ``ORPHAN_AGE`` seconds: a writer creates its file, then locks it), and the
    indexes without their tar (a writer killed between writing the index and renaming its tar). Returns
    their paths. ``names``: its ``shard_files`` when the caller has them (a listing of a million files
    costs a second)."""
    removed = []
    names = shard_files(save_dir) if names is None else names
    for part in [os.path.join(save_dir, n) for n in names if n.endswith(".tar.part")]:
        try:
            with open(part, "rb") as f:
                if time.time() - os.fstat(f.fileno()).st_mtime < ORPHAN_AGE or not _lock_nowait(f):
                    continue  # another extractor is writing it
                os.remove(part)
                removed.append(part)
        except FileNotFoundError:
            continue
    for index in [os.path.join(save_dir, n) for n in names if n.endswith(".index.tsv")]:
        shard = index[:-len(".index.tsv")] + ".tar"
        if not os.path.exists(shard) and not os.path.exists(shard + ".part"):  # a writer killed before its rename
            with contextlib.suppress(FileNotFoundError):
                os.remove(index)
                removed.append(index)
    return removed


class ShardWriter:
    """Writes videos into shards of ``size`` videos in ``save_dir``; ``add`` one video at a time, ``close``
    at the end (or on an interruption: the shard in progress is finished with the videos it holds whole).
    ``on_shard(shard, names)`` is called after each shard is in place, with the feature members it holds."""

    def __init__(self, save_dir, size, on_shard):
        if size < 1:
            raise ValueError(f"shard size {size}: must be at least 1")
        self.save_dir, self.size, self.on_shard = save_dir, size, on_shard
        self.part = self.file = self.tar = None
        self.index, self.names, self.whole = {}, [], 0  # whole: bytes of the tar that hold whole videos

    def _claim(self):
        """A new ``shard-NNNNNN.tar.part``, created exclusively (another writer in the folder takes another
        number) and locked while this writer lives. Raises ``RunError`` when it cannot be locked (a file
        system without locks): another run's ``remove_orphans`` would take it for a killed run's."""
        pattern = re.compile(r"shard-(\d{6,})\.(tar|tar\.part|index\.tsv)$")
        taken = [int(m.group(1)) for m in map(pattern.search, os.listdir(self.save_dir)) if m]
        number = max(taken, default=-1) + 1
        while True:
            part = os.path.join(self.save_dir, f"shard-{number:06d}.tar.part")
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1
                continue
            self.file = os.fdopen(fd, "wb", buffering=0)  # unbuffered: what is written is in the file, to cut it
            if not _lock_nowait(self.file):
                self.file.close()
                os.remove(part)
                self.file = None
                raise RunError(f"cannot lock {part}: shards need a file system with file locks (flock); "
                               f"use shard_size 0 (one file per video) there")
            self.part = part
            self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.PAX_FORMAT)
            self.whole = 0
            return

    def add(self, feature, data, record, text):
        """Add one video: its feature file ``feature`` (member name) of bytes ``data``, then its provenance
        record ``record`` (member name) of UTF-8 ``text``. The shard is put in place once it holds
        ``size`` videos."""
        if self.tar is None:
            self._claim()
        try:
            for member, payload in ((feature, data), (record, text.encode("utf-8"))):
                info = tarfile.TarInfo(member)
                info.size, info.mode = len(payload), 0o644
                self.tar.addfile(info, io.BytesIO(payload))
                self.index[member] = (self.tar.offset - -(-len(payload) // 512) * 512, len(payload))
        except OSError as e:
            raise RunError(f"cannot write {self.part}: {e.strerror or e}") from None
        self.names.append(feature)
        self.whole = self.tar.offset
        if len(self.names) >= self.size:
            self.finish()

    def close(self, interrupted=False):
        """The end of a run, or its interruption (Ctrl-C, a full disk, an error): the shard in progress is
        put in place with the videos it holds whole (a video interrupted halfway is cut off). When even that
        cannot be written, the shard is dropped (its videos are extracted again) and the error raised."""
        try:
            self.finish(cut=interrupted)
        except BaseException:
            self.abandon()
            raise

    def finish(self, cut=False):
        """Put the shard in progress in place (tar, then index, then the rename), if it holds any video;
        ``cut``: first cut off what follows its last whole video."""
        if self.tar is None:
            return
        if not self.names:
            return self.abandon()
        shard = self.part[:-len(".part")]
        names, index = self.names, {m: v for m, v in self.index.items() if v[0] < self.whole}
        try:
            if cut:
                self.file.truncate(self.whole)
                self.file.seek(self.whole)
                self.file.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # the end-of-archive blocks
                self.tar.closed = True  # what tarfile would still write is cut off
            else:
                self.tar.close()  # the end-of-archive blocks
            os.fsync(self.file.fileno())
            write_index(shard, index)
            os.replace(self.part, shard)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.remove(index_path(shard))  # no index without its tar
            raise RunError(f"cannot write {shard}: {e.strerror or e}") from None
        self.file.close()  # releases the lock
        self.tar = self.file = None
        self.index, self.names = {}, []
        self.on_shard(shard, names)

    def abandon(self):
        """Drop the shard in progress (its videos are not counted as done)."""
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            with contextlib.suppress(OSError):
                os.remove(self.part)
        self.tar = self.file = None
        self.index, self.names = {}, []
