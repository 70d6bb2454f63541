"""The cache of exported models (video_tag/cache.py): hits only on the same key, never caches an export
whose inputs changed while it ran, survives an unwritable folder, prunes old entries."""
import os
import time

import pytest

from video_tag import cache


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOTAG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def exporter(calls, content):
    def export(folder):
        calls.append(folder)
        with open(os.path.join(folder, "backbone.json"), "w", encoding="utf-8") as f:
            f.write(content)
    return export


def read(folder):
    with open(os.path.join(folder, "backbone.json"), encoding="utf-8") as f:
        return f.read()


def test_same_key_hits_other_key_exports(root):
    calls = []
    with cache.exported("m", {"weights_sha256": "a"}, exporter(calls, "A")) as folder:
        assert read(folder) == "A"
    with cache.exported("m", {"weights_sha256": "a"}, exporter(calls, "changed")) as folder:
        assert read(folder) == "A"  # from the cache: not exported again
    assert len(calls) == 1
    with cache.exported("m", {"weights_sha256": "b"}, exporter(calls, "B")) as folder:
        assert read(folder) == "B"
    assert len(calls) == 2 and len(os.listdir(root)) == 2


def test_an_export_whose_inputs_changed_is_used_once_not_cached(root):
    calls = []
    with cache.exported("m", {"k": 1}, exporter(calls, "torn"), still_valid=lambda: False) as folder:
        assert read(folder) == "torn"
        temporary = folder
    assert not os.path.exists(temporary)
    with cache.exported("m", {"k": 1}, exporter(calls, "right")) as folder:
        assert read(folder) == "right"
    assert len(calls) == 2


def test_a_failed_export_leaves_nothing(root):
    def broken(folder):
        open(os.path.join(folder, "backbone.json"), "w").close()
        raise ValueError("bad weights")
    with pytest.raises(ValueError):
        with cache.exported("m", {"k": 1}, broken):
            pass
    assert os.listdir(root) == []
    calls = []
    with cache.exported("m", {"k": 1}, exporter(calls, "A")) as folder:
        assert read(folder) == "A" and calls


def test_unwritable_cache_exports_into_a_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VIDEOTAG_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be made
    calls = []
    for _ in range(2):
        with cache.exported("m", {"k": 1}, exporter(calls, "A")) as folder:
            assert read(folder) == "A"
        assert not os.path.exists(folder)
    assert len(calls) == 2


def test_old_entries_pruned_beyond_keep(root, monkeypatch):
    calls = []
    for i in range(cache.KEEP + 2):
        with cache.exported("m", {"k": i}, exporter(calls, str(i))):
            pass
    entries = sorted(os.listdir(root))
    assert len(entries) == cache.KEEP + 2  # all used within the day: kept
    day_ago = time.time() - 2 * 86400
    for name in entries:
        os.utime(root / name / cache.KEY_FILE, (day_ago, day_ago))
    with cache.exported("m", {"k": "new"}, exporter(calls, "new")):
        pass
    assert len(os.listdir(root)) == cache.KEEP
    with cache.exported("m", {"k": "new"}, exporter(calls, "again")) as folder:
        assert read(folder) == "new"


@pytest.mark.parametrize("how", ["another user's", "writable by others"])
def test_a_folder_not_safe_to_load_models_from_is_not_used(root, how, caplog):
    """A cached model is loaded and run: a cache folder someone else owns or may write to could hand this
    run their model. Such a folder is left alone, with one line saying why; each run exports anew."""
    root.mkdir()
    if how == "another user's":
        os.chown(root, 12345, 12345)
        os.chmod(root, 0o755)
        why = "it belongs to another user (uid 12345)"
    else:
        os.chmod(root, 0o777)
        why = "others may write to it (mode drwxrwxrwx)"
    calls = []
    for _ in range(2):
        with cache.exported("m", {"k": 1}, exporter(calls, "A")) as folder:
            assert read(folder) == "A" and not folder.startswith(str(root))
        assert not os.path.exists(folder)
    assert len(calls) == 2 and os.listdir(root) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"not using the export cache {root}: {why}; exporting into a temporary folder"] * 2


def test_a_folder_of_ones_own_is_used(root):
    root.mkdir()
    os.chmod(root, 0o700)
    calls = []
    for _ in range(2):
        with cache.exported("m", {"k": 1}, exporter(calls, "A")) as folder:
            assert folder.startswith(str(root))
    assert len(calls) == 1
