"""The records index of a save_dir: what every stored video's provenance record says, in one file read once
per run, so that deciding what is done costs O(videos of the run), not a stat and a JSON read per video of
the folder.

``save_dir/.videotag-records.tsv`` (UTF-8, append-only, written under the folder's lock)::

    videotag records 1                       header
    \t=<key>\t<settings JSON>                the settings of a run (weights, dtype, sizes...), once per key
    \t+shard-000003.tar                      every member of this shard has its line (or had)
    \t-shard-000003.tar                      this shard is gone
    <stem>\t<where>\t<stamp>\t<video>\t<real_path>\t<size>\t<mtime_ns>\t<key>
                                             a video's features: <where> relative to save_dir (a file, or
                                             shard-NNNNNN.tar/<member>), ``stamp`` "size:mtime_ns" of
                                             a plain feature file ("" for a shard member),
                                             then the record (paths in ``names.text_path`` form)
    <stem>\t\t...                            the video's features are gone

The last line of a stem wins. The per-video records (``<stem>.json``, beside the features or in their
shard) stay the truth: the store trusts a line only while the features it names are as it says (a plain feature
file's size and mtime, which a run rewrites before its record; a shard that is still there), and reads the record itself when the index has no line, or a
stale one (a folder written by an older videotag, files changed by hand, a run killed before it wrote its
lines); what it reads there goes into the index. Shards not yet named by a ``+`` line are read whole once.
The file is rewritten without the superseded lines when they outnumber the live ones.
"""
import contextlib
import hashlib
import json
import os
from collections import namedtuple

from . import files
from .names import text_path

HEADER = "videotag records 1\n"
FILE = ".videotag-records.tsv"
PER_VIDEO = ("video", "real_path", "size", "mtime_ns")

Entry = namedtuple("Entry", "stem where stamp video real_path size mtime_ns key")


def settings_text(settings):
    """The canonical JSON of a run's settings and its 16-hex key."""
    text = json.dumps(settings, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text, hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def split_record(record):
    """``(per-video fields, settings)`` of a provenance record dict (records from before ``feature_dtype``
    describe float32 features)."""
    settings = {k: v for k, v in record.items() if k not in PER_VIDEO}
    settings.setdefault("feature_dtype", "float32")
    return {k: record.get(k) for k in PER_VIDEO}, settings


class RecordIndex:
    """The records index of ``save_dir``: ``get(stem)`` -> ``Entry`` or None; ``add``/``remove`` lines,
    written by ``flush`` (the caller holds the folder's lock)."""

    def __init__(self, save_dir):
        self.path = os.path.join(save_dir, FILE)
        self.entries, self.settings, self.shards = {}, {}, set()
        self.pending, self.lines, self.stamp, self.offset = [], 0, None, 0
        self.reload()

    def reload(self):
        """Read the whole file (none: an empty index)."""
        self.entries, self.settings, self.shards, self.lines, self.stamp, self.offset = {}, {}, set(), 0, None, 0
        self.refresh()

    @files.collector_paused()
    def refresh(self):
        """Read what other processes appended since the last read (the whole file when it was rewritten)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if self.stamp is not None and (st.st_ino != self.stamp or st.st_size < self.offset):
                    self.stamp = None
                    return self.reload()
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being appended is read next time
        text = data[:end].decode("utf-8", "replace")
        if self.offset == 0:
            if not text.startswith(HEADER):
                return  # not ours (or empty): the records themselves are read instead
            text = text[len(HEADER):]
        self.stamp, self.offset = st.st_ino, self.offset + end
        lines = text.split("\n")
        lines.pop()  # after the last newline
        self.lines += len(lines)
        entries, special = self.entries, []
        for line in lines:  # the hot loop of a run's start: one partition and one dict store per video
            stem, _, rest = line.partition("\t")
            if stem:
                entries[stem] = rest
            else:
                special.append(rest)
        gone = [stem for stem, rest in entries.items() if rest[:1] == "\t"] if "\t\t\t\t\t\t\t\n" in text else []
        for stem in gone:
            del entries[stem]
        for line in special:
            kind, value = line[:1], line[1:]
            if kind == "=":
                key, _, settings = value.partition("\t")
                try:
                    self.settings[key] = json.loads(settings)
                except ValueError:  # a damaged line: the entries of that key are read from their records
                    continue
            elif kind == "+":
                self.shards.add(value)
            elif kind == "-":
                self.shards.discard(value)

    def get(self, stem):
        """The ``Entry`` of ``stem``, or None (also for a damaged line: the video's record is read instead)."""
        rest = self.entries.get(stem)
        if rest is None:
            return None
        if rest.__class__ is Entry:
            return rest
        fields = rest.split("\t")
        return Entry(stem, *fields) if len(fields) == 7 and fields[0] else None

    def record_settings(self, entry):
        return self.settings.get(entry.key)

    def add(self, stem, where, stamp, record):
        """Index ``record`` (a provenance dict) of the features ``where`` (relative to save_dir)."""
        per_video, settings = split_record(record)
        text, key = settings_text(settings)
        if key not in self.settings:
            self.settings[key] = settings
            self.pending.append(f"\t={key}\t{text}")
        entry = Entry(stem, where, stamp, text_path(str(per_video["video"])),
                      text_path(str(per_video["real_path"])), str(per_video["size"]),
                      str(per_video["mtime_ns"]), key)
        self.entries[stem] = entry
        self.pending.append("\t".join(entry))

    def remove(self, stem):
        if self.entries.pop(stem, None) is not None:
            self.pending.append(f"{stem}\t\t\t\t\t\t\t")

    def shard_added(self, shard_name):
        self.shards.add(shard_name)
        self.pending.append("\t+" + shard_name)

    def shard_gone(self, shard_name):
        if shard_name in self.shards:
            self.shards.discard(shard_name)
            self.pending.append("\t-" + shard_name)

    def flush(self):
        """Append the pending lines (the caller holds the folder's lock); rewrite the file without the
        superseded lines when they outnumber the live ones. An error is not fatal: the records stay the truth."""
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        try:
            self.refresh()  # what others appended: read before the file may be rewritten
            if self.stamp is None or self.lines > 2 * (len(self.entries) + len(self.shards)) + 10000:
                self.rewrite()
                return
            with open(self.path, "ab") as f:
                f.write(("\n".join(lines) + "\n").encode("utf-8"))
            self.offset += sum(len(line.encode("utf-8")) + 1 for line in lines)
            self.lines += len(lines)
        except (OSError, files.WriteError):  # e.g. a full disk: the lines are lost, not the records
            try:
                os.truncate(self.path, self.offset)  # no half line
            except OSError:
                with contextlib.suppress(OSError):
                    os.remove(self.path)  # the records are read again

    def rewrite(self):
        """The live lines only, atomically."""
        out = [HEADER]
        live = [self.get(stem) for stem in self.entries]
        used = {e.key for e in live if e is not None}
        out += [f"\t={k}\t{settings_text(s)[0]}\n" for k, s in self.settings.items() if k in used]
        out += [f"\t+{s}\n" for s in sorted(self.shards)]
        out += ["\t".join(e) + "\n" for e in live if e is not None]
        files.write_text(self.path, "".join(out))
        st = os.stat(self.path)
        self.stamp, self.offset, self.lines = st.st_ino, st.st_size, len(out) - 1

