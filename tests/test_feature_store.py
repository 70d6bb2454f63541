"""The feature store (video_tag/feature_store.py) with tiny features [2, 4]: names from the real world (too
long, not UTF-8, a TAB), per-video write errors, names held by another video, names from before 16-digit
hashes, and the records index (record_index.py) that decides what is done without reading every record."""
import errno
import json
import logging
import os

import numpy as np
import pytest

from video_tag import feature_files, files, shards
from video_tag.errors import RunError
from video_tag.feature_store import FeatureStore, legacy_stem, video_provenance
from video_tag.readers.lists import output_stem
from video_tag.record_index import FILE

SETTINGS = {"weights_sha256": "w" * 64, "precision": "fp32", "feature_dtype": "float32", "seg_num": 2,
            "short_size": 8, "target_size": 8, "videotag": "test"}
SHAPE = (2, 4)


def make_videos(folder, names):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = os.path.join(os.fsdecode(folder), name)
        with open(path, "wb") as f:
            f.write(b"v" * (i + 1))
        paths.append(path)
    return paths


def features(i):
    return np.full(SHAPE, i, np.float32) + np.arange(4, dtype=np.float32)


def extract(store, videos):
    """What the extractor does for ``videos`` with a network that gives ``features(i)``: save each, close,
    write the lists. Returns {video: feature path}."""
    unique, failed, same = store.assign(videos)
    for i, video in enumerate(videos):
        if video not in unique:
            continue
        reason = store.save(video, features(i), video_provenance(video, SETTINGS))
        if reason is not None:
            failed[video] = reason
    store.close()
    done = store.done([v for v in unique if v not in failed], SETTINGS, *SHAPE)
    return store.write_lists(videos, failed, done)


def rows(save_dir, name):
    with open(os.path.join(save_dir, name), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_a_name_too_long_for_the_file_system_is_shortened_on_a_character_boundary(tmp_path):
    long = "海" * 80 + ".mp4"  # 240 bytes: with _<hash>.json.tmp<pid> beyond the 255 of a name
    videos = make_videos(tmp_path / "v", [long, "short.mp4"])
    out = str(tmp_path / "out")
    outputs = extract(FeatureStore(out, "float32", feature_dim=4), videos)
    assert sorted(outputs) == sorted(videos)
    name = os.path.basename(outputs[videos[0]])
    assert name.startswith("海" * 60) and len((name[:-4] + ".json.tmp4194304").encode("utf-8")) <= 255
    assert name[:-4] == output_stem(videos[0]) and len(output_stem(videos[0]).rsplit("_", 1)[1]) == 16
    np.testing.assert_array_equal(feature_files.read(outputs[videos[0]])[0], features(0))
    with open(outputs[videos[0]][:-4] + ".json", encoding="utf-8") as f:
        assert json.load(f)["video"] == videos[0]
    # a shorter cut of the same stem stays distinct: the hash is kept
    assert output_stem(str(tmp_path / "v" / ("海" * 81 + ".mp4")))[:-17] == name[:-21]
    assert output_stem(str(tmp_path / "v" / ("海" * 81 + ".mp4"))) != name[:-4]


def test_paths_not_utf8_or_with_a_tab_never_break_a_list(tmp_path):
    folder = os.fsencode(tmp_path / "v")
    os.makedirs(folder)
    gbk = os.path.join(folder, "你好".encode("gbk") + b".mp4")  # a name from a zip made on Windows
    open(gbk, "wb").close()
    videos = [os.fsdecode(gbk)] + make_videos(tmp_path / "v", ["a\tb.mp4", "plain.mp4", "a\\tb.mp4"])
    out = str(tmp_path / "out")
    outputs = extract(FeatureStore(out, "float32", feature_dim=4), videos)
    assert len(set(outputs.values())) == 3
    manifest = rows(out, "manifest.tsv")
    assert all(len(row) == 2 for row in manifest)
    assert [v for v, _ in manifest] == [str(tmp_path / "v") + "/\\xc4\\xe3\\xba\\xc3.mp4",
                                        str(tmp_path / "v") + "/a\\tb.mp4", videos[2]]
    assert [f for _, f in manifest] == [outputs[v] for v in videos[:3]]
    # a path written in the lists as another's (a\tb.mp4 with a backslash): refused, not merged
    failed = rows(out, "failed.list")
    assert [v for v, _ in failed] == [videos[3]] and "as that of another video" in failed[0][1]
    videos = videos[:3]
    for i, video in enumerate(videos):
        assert "\t" not in outputs[video] and os.fsencode(outputs[video]).decode("utf-8")
        np.testing.assert_array_equal(feature_files.read(outputs[video])[0], features(i))
        with open(outputs[video][:-4] + ".json", encoding="utf-8") as f:
            assert json.load(f)["video"] == manifest[i][0]
    # Another list into the same folder keeps these rows (each still held by its video), once each.
    other = make_videos(tmp_path / "w", ["other.mp4"])
    extract(FeatureStore(out, "float32", feature_dim=4), other)
    assert rows(out, "manifest.tsv") == manifest + [[other[0], rows(out, "manifest.tsv")[-1][1]]]
    # and a rerun finds them done
    store = FeatureStore(out, "float32", feature_dim=4)
    assert store.done(videos, SETTINGS, *SHAPE) == set(videos)


def test_a_write_error_of_one_video_fails_that_video_a_full_disk_stops_the_run(tmp_path, monkeypatch):
    videos = make_videos(tmp_path / "v", ["a.mp4", "refused.mp4", "c.mp4"])
    out = str(tmp_path / "out")
    real_open = open

    def refuse(path, *args, **kwargs):  # what writing a name the file system refuses does
        if os.path.basename(str(path)).startswith("refused"):
            raise OSError(errno.EILSEQ, os.strerror(errno.EILSEQ), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", refuse, raising=False)
    outputs = extract(FeatureStore(out, "float32", feature_dim=4), videos)
    assert sorted(outputs) == [videos[0], videos[2]]
    failed = rows(out, "failed.list")
    assert [v for v, _ in failed] == [videos[1]] and "cannot store its features" in failed[0][1]
    assert not [n for n in os.listdir(out) if n.startswith("refused") or ".tmp" in n]

    def full(path, *args, **kwargs):
        if os.path.basename(str(path)).startswith("c_"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", full, raising=False)
    store = FeatureStore(out, "float32", feature_dim=4)
    with pytest.raises(RunError, match="No space left on device"):
        store.save(videos[2], features(2), video_provenance(videos[2], SETTINGS))


def test_a_kept_row_must_be_held_by_its_video(tmp_path):
    videos = make_videos(tmp_path / "v", ["a.mp4", "b.mp4"])
    out = str(tmp_path / "out")
    outputs = extract(FeatureStore(out, "float32", feature_dim=4), videos)
    # Someone's manifest names b's features for a third video: that row is not kept (its record names b).
    with open(os.path.join(out, "manifest.tsv"), "a", encoding="utf-8") as f:
        f.write(f"/elsewhere/c.mp4\t{outputs[videos[1]]}\n")
    other = make_videos(tmp_path / "w", ["d.mp4"])
    extract(FeatureStore(out, "float32", feature_dim=4), other)
    assert [v for v, _ in rows(out, "manifest.tsv")] == videos + other


def test_a_name_held_by_another_real_path_fails_that_video(tmp_path, monkeypatch):
    from video_tag.readers import lists
    videos = make_videos(tmp_path / "a", ["clip.mp4"]) + make_videos(tmp_path / "b", ["clip.mp4"])
    monkeypatch.setattr(lists, "path_digest", lambda real: "0" * 40)  # every path hashes alike
    monkeypatch.setattr("video_tag.feature_store.path_digest", lambda real: "0" * 40)
    out = str(tmp_path / "out")
    store = FeatureStore(out, "float32", feature_dim=4)
    unique, failed, same = store.assign(videos)
    assert unique == [videos[0]] and list(failed) == [videos[1]] and same == {}
    assert str(tmp_path / "a" / "clip.mp4") in failed[videos[1]]
    extract(store, [videos[0]])
    # another run, another list: the name is held by a/clip.mp4 (its record says so)
    store = FeatureStore(out, "float32", feature_dim=4)
    plan = store.plan([videos[1]], SETTINGS, *SHAPE)
    assert plan.todo == [] and list(plan.failed) == [videos[1]] and "already that of" in plan.failed[videos[1]]
    assert store.up_to_date(videos[1], video_provenance(videos[1], SETTINGS), *SHAPE)[0] is False
    # the same real path under another spelling is the same video
    os.chdir(tmp_path)
    assert store.assign([videos[0], "a/clip.mp4"])[2] == {"a/clip.mp4": videos[0]}


@pytest.mark.parametrize("shard_size", [0, 2])
def test_features_named_before_16_digit_hashes_are_redone_and_the_old_copy_removed(tmp_path, shard_size, caplog):
    videos = make_videos(tmp_path / "v", ["a.mp4", "b.mp4"])
    out = str(tmp_path / "out")
    os.makedirs(out)
    old = {v: legacy_stem(v, os.path.realpath(v)) for v in videos}
    assert old[videos[0]] == "a_" + output_stem(videos[0])[-16:-8]
    for i, v in enumerate(videos):  # as videotag wrote them before
        record = json.dumps(video_provenance(v, SETTINGS))
        if shard_size:
            writer = shards.ShardWriter(out, 5, lambda shard, names: None)
            writer.add(old[v] + ".npy", stored(features(9)), old[v] + ".json", record)
            writer.close()
        else:
            with open(os.path.join(out, old[v] + ".npy"), "wb") as f:
                feature_files.write(f, features(9), "float32")
            with open(os.path.join(out, old[v] + ".json"), "w", encoding="utf-8") as f:
                f.write(record)
    caplog.set_level(logging.INFO)
    store = FeatureStore(out, "float32", shard_size, feature_dim=4)
    plan = store.plan(videos, SETTINGS, *SHAPE)
    assert plan.todo == videos
    assert "2 video(s) have features" in caplog.text and "under their name from before 16-digit hashes" in caplog.text
    outputs = extract(store, videos)
    assert caplog.text.count("features named as before 16-digit hashes") == 2
    for i, v in enumerate(videos):
        assert os.path.basename(outputs[v])[:-4] == output_stem(v)
        np.testing.assert_array_equal(feature_files.read(outputs[v])[0], features(i))
    left = [n for n in os.listdir(out) if os.path.splitext(n)[0] in old.values()]
    assert left == []
    for shard in shards.shards_in(out):
        assert not [m for m in shards.read_index(shard) if m[:-4] in old.values() or m[:-5] in old.values()]


def stored(x):
    import io
    f = io.BytesIO()
    feature_files.write(f, x, "float32")
    return f.getvalue()


@pytest.mark.parametrize("shard_size", [0, 2])
def test_the_records_index_decides_and_the_records_stay_the_truth(tmp_path, shard_size, monkeypatch):
    videos = make_videos(tmp_path / "v", [f"{i}.mp4" for i in range(5)])
    out = str(tmp_path / "out")
    extract(FeatureStore(out, "float32", shard_size, feature_dim=4), videos)
    assert open(os.path.join(out, FILE), encoding="utf-8").readline() == "videotag records 1\n"
    # A rerun reads no record file: the index says what is done.
    reads = []
    real_read_member, real_open = shards.read_member, open

    def counting_open(path, *args, **kwargs):
        if str(path).endswith(".json"):
            reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(shards, "read_member", lambda path: reads.append(path) or real_read_member(path))
    monkeypatch.setattr("builtins.open", counting_open)
    store = FeatureStore(out, "float32", shard_size, feature_dim=4)
    assert store.plan(videos, SETTINGS, *SHAPE).done == set(videos) and reads == []
    monkeypatch.setattr("builtins.open", real_open)
    monkeypatch.setattr(shards, "read_member", real_read_member)
    # Without the index (a folder of an older videotag): the records are read, the index is made again.
    os.remove(os.path.join(out, FILE))
    store = FeatureStore(out, "float32", shard_size, feature_dim=4)
    assert store.plan(videos, SETTINGS, *SHAPE).done == set(videos)
    store.close()
    assert len([line for line in open(os.path.join(out, FILE), encoding="utf-8") if line.count("\t") == 7]) == 5
    # A stale index: features and record rewritten by a videotag without the index (other settings), a
    # feature file deleted, a feature file rewritten by a run killed before its record.
    if not shard_size:
        first = output_stem(videos[0])
        with open(os.path.join(out, first + ".npy"), "wb") as f:
            feature_files.write(f, features(7), "float32")
        with open(os.path.join(out, first + ".json"), "w", encoding="utf-8") as f:
            json.dump({**video_provenance(videos[0], SETTINGS), "precision": "bf16"}, f)
        os.remove(os.path.join(out, output_stem(videos[1]) + ".npy"))
        third = os.path.join(out, output_stem(videos[2]))
        os.remove(third + ".json")
        with open(third + ".npy", "wb") as f:
            feature_files.write(f, features(8), "float32")
        plan = FeatureStore(out, "float32", feature_dim=4).plan(videos, SETTINGS, *SHAPE)
        assert plan.todo == videos[:3] and plan.stale == {"precision": 1}


def test_an_index_that_cannot_be_appended_to_loses_lines_not_videos(tmp_path, monkeypatch):
    from video_tag import record_index
    videos = make_videos(tmp_path / "v", ["a.mp4", "b.mp4"])
    out = str(tmp_path / "out")
    extract(FeatureStore(out, "float32", feature_dim=4), videos[:1])
    before = open(os.path.join(out, FILE), "rb").read()
    real_open = open

    class HalfWritten:  # a full disk halfway through the appended lines
        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record_index, "open", lambda path, mode="r", *a, **k: HalfWritten(path, mode) if mode == "ab"
                        else real_open(path, mode, *a, **k), raising=False)
    extract(FeatureStore(out, "float32", feature_dim=4), videos[1:])
    monkeypatch.undo()
    assert open(os.path.join(out, FILE), "rb").read() == before  # no half line
    store = FeatureStore(out, "float32", feature_dim=4)
    assert store.plan(videos, SETTINGS, *SHAPE).done == set(videos)  # b from its record


def test_the_real_path_of_a_name_in_the_root_folder(tmp_path, monkeypatch):
    """A path in / has the folder "/", not "" (which realpath would take for the working folder: the name's
    hash would then depend on where the run starts)."""
    from video_tag.feature_store import Names
    monkeypatch.chdir(tmp_path)
    real, size, _, _ = Names(".npy").look("/etc")
    assert real == "/etc" and size is not None


def test_merge_lists_lists_a_feature_once_and_counts_the_rows_of_other_lists():
    from video_tag.feature_store import merge_lists
    holds = lambda video, feature: video != "gone.mp4"  # noqa: E731
    old = [["x.mp4", "f/x.npy"], ["gone.mp4", "f/g.npy"], ["a.mp4", "f/old-a.npy"], ["bad row"]]
    # no feature twice: this run's rows replace theirs, after the kept rows of other lists
    manifest, failures, kept = merge_lists(old, [["a.mp4", "old reason"], ["z.mp4", "z reason"]],
                                           [("a.mp4", "f/a.npy"), ("b.mp4", None), ("a.mp4", "f/a.npy")],
                                           {"b.mp4": "b reason"}, holds)
    assert list(manifest.items()) == [("x.mp4", "f/x.npy"), ("a.mp4", "f/a.npy")] and kept == 1
    assert failures == {"z.mp4": "z reason", "b.mp4": "b reason"}
    # a feature already listed (by a kept row, or by a video earlier in the list) is not listed again
    manifest, _, kept = merge_lists(old, [], [("a.mp4", "f/x.npy"), ("b.mp4", "f/b.npy"), ("c.mp4", "f/b.npy")],
                                    {}, holds)
    assert list(manifest.items()) == [("x.mp4", "f/x.npy"), ("b.mp4", "f/b.npy")] and kept == 1
    assert list(merge_lists(old, [], [("a.mp4", "f/x.npy")], {}, holds)[0].items()) == [("x.mp4", "f/x.npy")]
    # one text for two videos (a TAB in one, backslash-t in the other): the second is refused, not the first
    manifest, _, _ = merge_lists([], [], [("a\\tb.mp4", "f/a.npy"), ("a\\tb.mp4", None)], {"a\\tb.mp4": "r"}, holds)
    assert manifest == {"a\\tb.mp4": "f/a.npy"}


def test_the_log_counts_the_rows_of_other_lists(tmp_path, caplog):
    first, second = make_videos(tmp_path / "v", ["a.mp4", "b.mp4"]), make_videos(tmp_path / "w", ["c.mp4"])
    out = str(tmp_path / "out")
    extract(FeatureStore(out, "float32", feature_dim=4), first)
    caplog.set_level(logging.INFO)
    extract(FeatureStore(out, "float32", feature_dim=4), second + first[:1])
    assert "2 feature file(s) of this list listed in" in caplog.text
    assert "(and 1 of other lists extracted into the same folder)" in caplog.text
