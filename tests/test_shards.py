"""Feature shards (video_tag/shards.py): tars that other tools read, the index, members read by every
reader, superseded members refused, unfinished shards of killed runs removed."""
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import tarfile

import numpy as np
import pytest

from video_tag import feature_files, shards
from video_tag.errors import UserError
from video_tag.readers import iterate_batches
from video_tag.readers.feature_reader import FeatureReader, features_of

CFG = {"MODEL": {"num_classes": 3, "feature_dims": [16]}}


def stored(x, dtype):
    f = io.BytesIO()
    feature_files.write(f, x, dtype)
    return f.getvalue()


def write_shards(save_dir, videos, size, dtype="float32"):
    """``videos``: {stem: features}; returns the shards put in place, with their members."""
    placed = []
    writer = shards.ShardWriter(str(save_dir), size, lambda shard, names: placed.append((shard, names)))
    for stem, x in videos.items():
        writer.add(stem + feature_files.suffix(dtype), stored(x, dtype), stem + ".json",
                   json.dumps({"video": f"{stem}.mp4", "说明": "ü"}))
    writer.close()
    return placed


def features(seed, t=5, f=16):
    return np.random.default_rng(seed).standard_normal((t, f)).astype(np.float32) * 3


@pytest.mark.parametrize("dtype", feature_files.DTYPES)
def test_shards_are_tars_of_the_plain_files_with_an_index(tmp_path, dtype):
    videos = {f"clip {i}_0000000{i}": features(i) for i in range(5)}
    videos["海边 日落_" + "a" * 120] = features(9, t=7)  # a long UTF-8 name: pax headers
    placed = write_shards(tmp_path, videos, 2, dtype)
    assert [os.path.basename(s) for s, _ in placed] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert sorted(os.listdir(tmp_path)) == sorted(f"shard-00000{i}.{e}" for i in range(3) for e in ("tar", "index.tsv"))
    suffix = feature_files.suffix(dtype)
    for shard, names in placed:
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar}
            assert sorted(members) == sorted(n for name in names for n in (name, name[:-4] + ".json"))
            index = shards.read_index(shard)
            assert index == {m.name: (m.offset_data, m.size) for m in members.values()}
            for name in names:
                stem = name[:-len(suffix)]
                # byte for byte what one-file-per-video writes, and its record beside it
                assert tar.extractfile(name).read() == stored(videos[stem], dtype)
                assert json.loads(tar.extractfile(stem + ".json").read())["说明"] == "ü"
                data, scale, offset = feature_files.read(os.path.join(shard, name))
                back = data.astype(np.float32) if scale is None else feature_files.dequantize(data, scale, offset)
                np.testing.assert_allclose(back, videos[stem], atol=0.02 * np.abs(videos[stem]).max())
                assert feature_files.complete(os.path.join(shard, name), dtype, videos[stem].shape)
                assert not feature_files.complete(os.path.join(shard, name), dtype, (99, 16))
    if shutil.which("tar"):  # the command-line tool gives the very files back
        out = tmp_path / "untarred"
        out.mkdir()
        subprocess.run(["tar", "-xf", placed[2][0], "-C", str(out)], check=True)
        name = placed[2][1][-1]
        assert (out / name).read_bytes() == stored(videos[name[:-len(suffix)]], dtype)


def test_a_tar_made_by_other_tools_is_read_without_an_index(tmp_path):
    x = features(1)
    with tarfile.open(tmp_path / "mine.tar", "w") as tar:
        for name, payload in (("readme.txt", b"hello"), ("a.npy", stored(x, "float16")),
                              ("sub/dir/b.npy", stored(2 * x, "float32"))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = feature_files.read(str(tmp_path / "mine.tar" / "a.npy"))[0]
    np.testing.assert_array_equal(data, x.astype(np.float16))
    assert shards.exists(str(tmp_path / "mine.tar" / "a.npy"))
    np.testing.assert_array_equal(feature_files.read(str(tmp_path / "mine.tar" / "sub" / "dir" / "b.npy"))[0], 2 * x)
    assert not shards.exists(str(tmp_path / "mine.tar" / "b.npy"))
    with pytest.raises(ValueError, match=r"b\.npy is not in the index of shard .*mine\.tar"):
        feature_files.read(str(tmp_path / "mine.tar" / "b.npy"))
    with pytest.raises(ValueError, match="not a .npy or .npz"):
        feature_files.read(str(tmp_path / "mine.tar" / "readme.txt"))


def test_dropped_members_are_refused_and_an_emptied_shard_goes(tmp_path):
    (shard, names), = write_shards(tmp_path, {"a_1": features(1), "b_2": features(2)}, 2)
    member = os.path.join(shard, "a_1.npy")
    feature_files.read(member)
    assert shards.drop_members(shard, ["a_1.npy", "a_1.json", "not_there.npy"]) == 2
    with pytest.raises(ValueError, match="a_1.npy is not in the index of shard"):
        feature_files.read(member)  # the cached index is read again when the index file changes
    assert not shards.exists(member)
    assert shards.exists(os.path.join(shard, "b_2.npy"))
    shards.drop_members(shard, ["b_2.npy", "b_2.json"])
    assert os.listdir(tmp_path) == []


def test_a_damaged_index_names_its_line(tmp_path):
    (shard, _), = write_shards(tmp_path, {"a_1": features(1)}, 1)
    index = shards.index_path(shard)
    with open(index, "a", encoding="utf-8") as f:
        f.write(f"b_2.npy\t{os.path.getsize(shard)}\t10\n")
    with pytest.raises(ValueError, match=r"shard-000000\.index\.tsv:4: b_2\.npy lies outside the tar"):
        feature_files.read(os.path.join(shard, "b_2.npy"))
    with pytest.raises(ValueError, match=r"shard-000000\.index\.tsv:4: b_2\.npy lies outside the tar"):
        shards.read_index(shard)
    with open(index, "a", encoding="utf-8") as f:
        f.write("c_3.npy\t12\n")
    with pytest.raises(ValueError, match=r"shard-000000\.index\.tsv:5: expected 'member<TAB>offset<TAB>size'"):
        feature_files.read(os.path.join(shard, "c_3.npy"))
    feature_files.read(os.path.join(shard, "a_1.npy"))  # a reader parses only the line of its member


def test_interrupted_writer_keeps_whole_videos_only(tmp_path, monkeypatch):
    placed = []
    writer = shards.ShardWriter(str(tmp_path), 10, lambda shard, names: placed.append(names))
    writer.add("a_1.npy", stored(features(1), "float32"), "a_1.json", "{}")
    writer.close(interrupted=True)  # Ctrl-C between videos: the shard is put in place with what it has
    assert placed == [["a_1.npy"]]
    real = tarfile.TarFile.addfile

    def interrupted_at_the_record(self, info, fileobj=None):
        if info.name.endswith(".json"):
            raise KeyboardInterrupt
        return real(self, info, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", interrupted_at_the_record)
    with pytest.raises(KeyboardInterrupt):
        writer.add("b_2.npy", stored(features(2), "float32"), "b_2.json", "{}")
    writer.close(interrupted=True)  # Ctrl-C in the middle of a video: the shard is dropped
    assert placed == [["a_1.npy"]]
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.index.tsv", "shard-000000.tar"]


@pytest.mark.parametrize("stop", ["ctrl-c", "disk full"])
def test_a_shard_stopped_halfway_keeps_its_whole_videos(tmp_path, monkeypatch, stop):
    from video_tag.errors import RunError
    placed = []
    writer = shards.ShardWriter(str(tmp_path), 10, lambda shard, names: placed.append(names))
    x = {name: features(i) for i, name in enumerate(["a_1", "b_2", "c_3"])}
    for name in ("a_1", "b_2"):
        writer.add(name + ".npy", stored(x[name], "float32"), name + ".json", "{}")
    real = tarfile.TarFile.addfile

    def stopped_in_the_features(self, info, fileobj=None):  # c_3's header is written, its bytes are not
        if info.name == "c_3.npy":
            self.fileobj.write(info.tobuf(self.format, self.encoding, self.errors))
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            raise OSError(28, "No space left on device")
        return real(self, info, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", stopped_in_the_features)
    with pytest.raises(KeyboardInterrupt if stop == "ctrl-c" else RunError):
        writer.add("c_3.npy", stored(x["c_3"], "float32"), "c_3.json", "{}")
    writer.close(interrupted=True)
    assert placed == [["a_1.npy", "b_2.npy"]]
    shard = str(tmp_path / "shard-000000.tar")
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.index.tsv", "shard-000000.tar"]
    with tarfile.open(shard) as tar:  # a valid tar of the whole videos only
        assert tar.getnames() == ["a_1.npy", "a_1.json", "b_2.npy", "b_2.json"]
    assert sorted(shards.read_index(shard)) == ["a_1.json", "a_1.npy", "b_2.json", "b_2.npy"]
    for name in ("a_1", "b_2"):
        np.testing.assert_array_equal(feature_files.read(os.path.join(shard, name + ".npy"))[0], x[name])


def test_a_writer_that_cannot_lock_its_shard_stops(tmp_path, monkeypatch):
    from video_tag.errors import RunError
    monkeypatch.setattr(shards, "_lock_nowait", lambda f: False)  # e.g. a file system without flock
    writer = shards.ShardWriter(str(tmp_path), 10, lambda shard, names: None)
    with pytest.raises(RunError, match="cannot lock .*shard-000000.tar.part"):
        writer.add("a_1.npy", stored(features(1), "float32"), "a_1.json", "{}")
    assert os.listdir(tmp_path) == []


def test_an_index_left_without_its_tar_is_removed(tmp_path, monkeypatch):
    (shard, _), = write_shards(tmp_path, {"a_1": features(1)}, 5)
    real = os.replace

    def killed_before_the_rename(src, dst):
        if src.endswith(".tar.part"):
            raise KeyboardInterrupt  # as a kill between the index and the rename
        return real(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_the_rename)
    writer = shards.ShardWriter(str(tmp_path), 5, lambda *a: None)
    writer.add("b_2.npy", stored(features(2), "float32"), "b_2.json", "{}")
    with pytest.raises(KeyboardInterrupt):
        writer.finish()
    monkeypatch.setattr(os, "replace", real)
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.index.tsv", "shard-000000.tar", "shard-000001.index.tsv",
                                            "shard-000001.tar.part"]
    part = str(tmp_path / "shard-000001.tar.part")
    writer.file.close()  # the process is gone: its lock too
    os.utime(part, (os.path.getmtime(part) - shards.ORPHAN_AGE,) * 2)
    assert sorted(shards.remove_orphans(str(tmp_path))) == [str(tmp_path / "shard-000001.index.tsv"), part]
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.index.tsv", "shard-000000.tar"]
    assert shards.shards_in(str(tmp_path)) == [shard]


def test_lookup_is_a_dict_built_once_per_index(tmp_path, monkeypatch):
    videos = {f"v_{i}": features(i, t=1, f=2) for i in range(50)}
    (shard, names), = write_shards(tmp_path, videos, 50)
    shards.lookup(shard, names[0])
    parsed = []
    real = shards._entry
    monkeypatch.setattr(shards, "_entry", lambda *a: parsed.append(a) or real(*a))
    for name in names:
        assert shards.lookup(shard, name) == shards.read_index(shard)[name]
    assert parsed == []  # no line parsed again while the index is unchanged
    shards.drop_members(shard, [names[0]])
    assert shards.lookup(shard, names[0]) is None and len(parsed) == 99  # the new index, parsed once


def test_an_old_index_with_a_tab_in_a_member_name_is_read(tmp_path):
    (shard, _), = write_shards(tmp_path, {"a\tb_1": features(1)}, 5)
    assert sorted(shards.read_index(shard)) == ["a\tb_1.json", "a\tb_1.npy"]
    np.testing.assert_array_equal(feature_files.read(os.path.join(shard, "a\tb_1.npy"))[0], features(1))


def _write_and_wait(save_dir, ready):
    writer = shards.ShardWriter(save_dir, 5, lambda *a: None)
    writer.add("a_1.npy", stored(features(1), "float32"), "a_1.json", "{}")
    ready.set()
    signal.pause()


def test_unfinished_shard_of_a_killed_writer_is_removed_not_while_it_lives(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_write_and_wait, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(30)
        assert os.listdir(tmp_path) == ["shard-000000.tar.part"]
        assert shards.remove_orphans(str(tmp_path)) == []  # its writer holds it
        # another writer meanwhile takes the next number
        (shard, _), = write_shards(tmp_path, {"b_2": features(2)}, 5)
        assert os.path.basename(shard) == "shard-000001.tar"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    part = str(tmp_path / "shard-000000.tar.part")
    assert shards.remove_orphans(str(tmp_path)) == []  # too young: its writer may not have locked it yet
    os.utime(part, (os.path.getmtime(part) - shards.ORPHAN_AGE,) * 2)
    assert shards.remove_orphans(str(tmp_path)) == [part]
    assert shards.shards_in(str(tmp_path)) == [shard]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_readers_take_lists_mixing_members_and_files(tmp_path, num_workers):
    xs = {f"v{i}_{i}": features(i, t=3 + i) for i in range(4)}
    (first, _), (second, _) = write_shards(tmp_path, dict(list(xs.items())[:3]), 2, "uint8")
    np.save(tmp_path / "v3_3.npy", xs["v3_3"])
    paths = [os.path.join(first, "v0_0.npz"), str(tmp_path / "v3_3.npy"), os.path.join(second, "v2_2.npz"),
             os.path.join(first, "v1_1.npz")]
    listing = tmp_path / "train.list"
    listing.write_text("".join(f"{p} {i % 3}\n" for i, p in enumerate(paths)), encoding="utf-8")
    reader = FeatureReader(str(listing), "train", CFG)
    batches = list(iterate_batches(reader, [[0, 1], [2, 3]], num_workers=num_workers))
    stems = ["v0_0", "v3_3", "v2_2", "v1_1"]
    for b, batch in enumerate(batches):
        x, lengths = batch["inputs"]
        for row in range(2):
            want = xs[stems[2 * b + row]]
            got = x[row, :lengths[row]].astype(np.float32)
            if "scale" in batch:
                got = feature_files.dequantize(x[row, :lengths[row]], batch["scale"][row], batch["offset"][row])
            np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())
    np.testing.assert_allclose(features_of(reader.load(0)), xs["v0_0"], atol=0.05)

    listing.write_text(f"{paths[0]} 1\n{os.path.join(first, 'v9_9.npz')} 2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train\.list:2: file not found: .*shard-000000\.tar/v9_9\.npz"):
        FeatureReader(str(listing), "train", CFG)
