"""streaming.py: partial JSONL files, what a resumed run reuses, and the digest that stands for a list."""
import json
import os

from video_tag.streaming import PartialJsonl, file_identity, list_digest


def test_a_resumed_run_keeps_earlier_lines_of_unchanged_inputs_only(tmp_path):
    first = PartialJsonl(str(tmp_path), "x.jsonl", {"list": "a"})
    with first.open(0):
        first.append([0], {"source": [1, 1], "video": "v0"})
        first.append([1, 0], {"source": [1, 1], "video": "v1", "window": 0})
        first.append([1, 1], {"source": [1, 1], "video": "v1", "window": 1})
        first.file.write(b'{"key": [2], "sou')  # killed mid-line
    again = PartialJsonl(str(tmp_path), "x.jsonl", {"list": "a"})
    assert set(again.resume(lambda key, record: True)) == {(0,), (1, 0), (1, 1)}
    with again.open(0):  # v1 changed: computed again, now with one window
        again.append([1, 0], {"source": [2, 2], "video": "v1", "window": 0})
    assert again.assemble(again.final(lambda key: key[0] == 0)) == 2
    lines = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == [{"video": "v0"}, {"video": "v1", "window": 0}]  # no key, no source, no stale window
    assert os.listdir(tmp_path) == ["x.jsonl"]


def test_other_inputs_reuse_nothing(tmp_path):
    first = PartialJsonl(str(tmp_path), "x.jsonl", {"list": "a"})
    with first.open(0):
        first.append([0], {"source": None, "video": "v0"})
    assert PartialJsonl(str(tmp_path), "x.jsonl", {"list": "b"}).resume(lambda key, record: True) == {}
    assert PartialJsonl(str(tmp_path), "x.jsonl", {"list": "a"}).resume(None) == {}


def test_list_digest_and_file_identity(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert list_digest(["a", "b"]) != list_digest(["b", "a"])
    assert list_digest(["a", "b"]) == list_digest([str(tmp_path / "a"), str(tmp_path / "b")])
    assert list_digest(["/a", "/b"]) != list_digest(["/a/b"])  # each path ends with a NUL, which none holds
    (tmp_path / "f").write_bytes(b"123")
    st = os.stat(tmp_path / "f")
    assert file_identity("f") == [3, st.st_mtime_ns] and file_identity("missing") is None
