"""video_tag/make_lists.py and tools/make_lists.py: labelled lists from class folders or a CSV, split into
train/val/test (stratified, seeded), in the format the extractor's --train_list reads."""
import os

import pytest

from conftest import run_main
from video_tag.errors import UserError
from video_tag.make_lists import Video, check_path, from_csv, from_folders, list_text, split
from video_tag.readers.lists import read_list

EXT = (".mp4", ".mkv")


def touch(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("x")
    return path


def dataset(root, counts):
    """``root/<class>/clip{i}.mp4`` for each ``{class: count}``."""
    for name, count in counts.items():
        for i in range(count):
            touch(os.path.join(root, name, f"clip{i}.mp4"))


def test_from_folders_sorted_recursive_videos_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("ds/sports/b.mp4", "ds/sports/deep/a.MKV", "ds/cooking/c.mp4", "ds/cooking/notes.txt",
                 "ds/.hidden/x.mp4", "ds/loose.mp4"):
        touch(path)
    videos, names = from_folders("ds", extensions=EXT)
    assert names == ["cooking", "sports"]
    assert [(v.path, v.labels) for v in videos] == [("ds/cooking/c.mp4", [0]), ("ds/sports/b.mp4", [1]),
                                                   ("ds/sports/deep/a.MKV", [1])]


def test_from_folders_with_a_label_file_maps_folder_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch("ds/sports/b.mp4")
    touch("ds/7/a.mp4")  # an id of the label file
    videos, names = from_folders("ds", ["a", "b", "sports", "d", "e", "f", "g", "h"], extensions=EXT)
    assert [(v.path, v.labels) for v in videos] == [("ds/7/a.mp4", [7]), ("ds/sports/b.mp4", [2])]
    touch("ds/unknown/c.mp4")
    with pytest.raises(UserError, match=r"ds/unknown: label 'unknown' is not a class of the label file \(8 names"):
        from_folders("ds", ["a", "b", "sports", "d", "e", "f", "g", "h"], extensions=EXT)


def test_from_csv_names_ids_header_and_multiple_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b c.mp4", "海边.mp4"):
        touch(name)
    with open("clips.csv", "w", encoding="utf-8") as f:
        f.write("path,label\na.mp4,sports\n\n\"b c.mp4\", cooking ,sports,cooking\n海边.mp4,beach\n")
    videos, names = from_csv("clips.csv")
    assert names == ["beach", "cooking", "sports"]
    assert [(v.path, v.labels, v.where) for v in videos] == [
        ("a.mp4", [2], "clips.csv:2"), ("b c.mp4", [1, 2], "clips.csv:4"), ("海边.mp4", [0], "clips.csv:5")]
    videos, _ = from_csv("clips.csv", ["x"] * 5 + ["sports", "cooking", "beach"])
    assert [v.labels for v in videos] == [[5], [6, 5], [7]]


@pytest.mark.parametrize("row, message", [
    ("a.mp4", r"clips.csv:2: expected 'path,label\[,label...\]'"),
    ("missing.mp4,x", r"clips.csv:2: video not found: missing.mp4"),
    ("a.mp4,x\na.mp4,y", r"clips.csv:3: a.mp4 is listed again \(first on line 2\)"),
    ("a.mp4,12", r"clips.csv:2: label '12' is not a class of the label file \(3 names, ids 0-2\)"),
])
def test_from_csv_refuses_bad_rows_naming_the_line(tmp_path, monkeypatch, row, message):
    monkeypatch.chdir(tmp_path)
    touch("a.mp4")
    with open("clips.csv", "w", encoding="utf-8") as f:
        f.write("path,labels\n" + row + "\n")
    with pytest.raises(UserError, match=message):
        from_csv("clips.csv", ["x", "y", "z"])


@pytest.mark.parametrize("path", ["clips/take 12", "a\nb.mp4", "clip \udce4.mp4"])
def test_names_a_list_cannot_hold_are_refused(path):
    with pytest.raises(UserError, match="where: "):
        check_path(path, "where")
    assert check_path("take 12.mp4", "where") == "take 12.mp4"


def videos_of(counts):
    return [Video(f"{label}/{i}.mp4", [label], "x") for label, count in counts.items() for i in range(count)]


def test_split_is_stratified_complete_and_seeded():
    videos = videos_of({0: 20, 1: 10, 2: 3, 3: 2, 4: 1})
    lists = split(videos, (0.8, 0.1, 0.1), seed=0)
    assert sorted(v.path for name in lists for v in lists[name]) == sorted(v.path for v in videos)  # each once
    count = {name: {c: sum(v.labels[0] == c for v in lists[name]) for c in range(5)} for name in lists}
    assert count["val"] == {0: 2, 1: 1, 2: 1, 3: 0, 4: 0} and count["test"] == count["val"]
    assert count["train"] == {0: 16, 1: 8, 2: 1, 3: 2, 4: 1}
    assert [v.path for v in lists["train"]] == [v.path for v in videos if v in lists["train"]]  # input order
    again = split(videos, (0.8, 0.1, 0.1), seed=0)
    assert all([v.path for v in again[n]] == [v.path for v in lists[n]] for n in lists)
    other = split(videos, (0.8, 0.1, 0.1), seed=1)
    assert [v.path for v in other["val"]] != [v.path for v in lists["val"]]


def test_split_of_one_class_does_not_move_when_another_grows():
    small, grown = split(videos_of({0: 10, 1: 10}), seed=3), split(videos_of({0: 25, 1: 10}), seed=3)
    for name in ("val", "test"):
        assert [v.path for v in small[name] if v.labels[0] == 1] == [v.path for v in grown[name] if v.labels[0] == 1]


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0, 0.5, 0.5), (0.8, 0.2, 0.2), (0.9, -0.1, 0.2)])
def test_split_refuses_bad_fractions(fractions):
    with pytest.raises(UserError, match="--split needs three fractions"):
        split(videos_of({0: 4}), fractions)


def test_lists_read_back_as_labelled_lists(tmp_path):
    touch(str(tmp_path / "a b.mp4"))
    path = tmp_path / "train.list"
    path.write_text(list_text([Video(str(tmp_path / "a b.mp4"), [3, 0], "x")]), encoding="utf-8")
    (entry,) = read_list(str(path), num_classes=4)
    assert entry.path == str(tmp_path / "a b.mp4") and entry.labels == [3, 0]


def test_script_writes_the_lists_and_labels_then_refuses_to_overwrite(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    dataset("ds", {"cooking": 5, "sports": 4, "beach": 1})
    done = run_main("tools/make_lists.py", "--folders", "ds", "--labels_out", "my_labels.txt", capfd=capfd)
    assert done.returncode == 0, done.stdout
    assert ("wrote data/train_videos.list (6 videos), data/val_videos.list (2 videos), data/test_videos.list "
            "(2 videos); 3 classes in my_labels.txt") in done.stdout
    assert "class 0 has 1 video(s): all in train" in done.stdout
    assert open("my_labels.txt", encoding="utf-8").read() == "beach\ncooking\nsports\n"
    listed = {name: read_list(f"data/{name}_videos.list", num_classes=3) for name in ("train", "val", "test")}
    assert sorted(e.path for es in listed.values() for e in es) == sorted(
        os.path.join("ds", c, f"clip{i}.mp4") for c, n in (("cooking", 5), ("sports", 4), ("beach", 1)) for i in range(n))
    before = open("data/val_videos.list", encoding="utf-8").read()
    done = run_main("tools/make_lists.py", "--folders", "ds", "--labels_out", "my_labels.txt", "--seed", "5",
                    capfd=capfd)
    assert done.returncode == 2 and done.stdout.strip().splitlines()[-1] == (
        "error: data/train_videos.list exists: pass --overwrite to replace it")
    assert open("data/val_videos.list", encoding="utf-8").read() == before
    done = run_main("tools/make_lists.py", "--folders", "ds", "--labels_out", "my_labels.txt", "--seed", "5",
                    "--overwrite", capfd=capfd)
    assert done.returncode == 0, done.stdout


def test_split_keeps_a_training_video_of_every_class():
    lists = split(videos_of({0: 2, 1: 1}), (0.2, 0.4, 0.4))
    assert sorted(v.labels[0] for v in lists["train"]) == [0, 1]
    assert len(lists["val"]) + len(lists["test"]) == 1
