"""List files (``path label [label ...]``) and label files: parsing, tolerance, errors with file:line."""
import os

import pytest

from video_tag.errors import UserError
from video_tag.readers.lists import read_label_file, read_lines, read_list, read_texts, split_labels

RELEASE_LABELS = "/work/shared/label_3396.txt"


def write(tmp_path, data, name="a.list"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def parsed(entries):
    return [(e.path, e.labels, e.line) for e in entries]


@pytest.mark.parametrize("text, expected", [
    ("path/to/x.npy 3 17 204", ("path/to/x.npy", [3, 17, 204])),
    ("x.npy 0", ("x.npy", [0])),
    ("my video 2019.npy 3", ("my video 2019.npy", [3])),
    ("my video 2019 7 8", ("my video", [2019, 7, 8])),   # every trailing integer field is a label
    ("视频 一.npy 3110", ("视频 一.npy", [3110])),
    ("x.npy", ("x.npy", [])),
    ("x.npy 1\t2  ", ("x.npy", [1, 2])),
    ("x.npy 3a", ("x.npy 3a", [])),
    ("x.npy --3", ("x.npy --3", [])),
    ("x.npy ²", ("x.npy ²", [])),                         # str.isdigit() is True, int() fails
    ("x.npy 3 b", ("x.npy 3 b", [])),
])
def test_split_labels(text, expected):
    assert split_labels(text) == expected


def test_train_list_with_spaces_unicode_crlf_bom_blank_lines(tmp_path):
    data = ("\ufeffdata/a b/cooking video.npy 3 17 204\r\n"
            "\r\n"
            "   \n"
            "data/训练 视频.npy 4\r\n"
            "data/c.npy 0\n"
            "\n").encode("utf-8")
    entries = read_list(write(tmp_path, data), num_classes=205, check_files=False)
    assert parsed(entries) == [("data/a b/cooking video.npy", [3, 17, 204], 1),
                               ("data/训练 视频.npy", [4], 4),
                               ("data/c.npy", [0], 5)]


def test_last_line_without_newline(tmp_path):
    entries = read_list(write(tmp_path, "a.npy 1\nb.npy 2"), num_classes=3, check_files=False)
    assert [e.labels for e in entries] == [[1], [2]]


def test_infer_list_without_labels(tmp_path):
    data = "feat/video 1.npy\r\nfeat/视频 2.npy 3\nfeat/c.npy 99999\n"
    entries = read_list(write(tmp_path, data), num_classes=5, need_labels=False, check_files=False)
    # labels are ignored in an infer list (even out-of-range ones), paths keep their spaces
    assert parsed(entries) == [("feat/video 1.npy", [], 1), ("feat/视频 2.npy", [], 2), ("feat/c.npy", [], 3)]


def test_check_files_accepts_existing_files(tmp_path):
    feature = tmp_path / "a dir" / "视频 1.npy"
    feature.parent.mkdir()
    feature.write_bytes(b"x")
    entries = read_list(write(tmp_path, f"{feature} 2\n"), num_classes=3, check_files=True)
    assert entries[0].path == str(feature) and entries[0].labels == [2]


@pytest.mark.parametrize("data, line, words, kwargs", [
    ("a.npy 1\nb.npy\n", 2, ["b.npy"], {}),                                     # no labels
    ("a.npy 1\n\nb.npy 1 5\n", 3, ["5", "out of range"], {}),                    # id == num_classes
    ("a.npy 1 -1\n", 1, ["-1", "out of range"], {}),
    ("a.npy 1\nb.npy 70000\n", 2, ["70000"], {}),
    ("a.npy 1\n3\n", 2, [], {}),                                                 # no path
    ("a.npy 1\nb\xff.npy 2\n".encode("latin1"), 2, ["UTF-8"], {}),               # invalid UTF-8
    ("a.npy 1\nb\xff.npy\n".encode("latin1"), 2, ["UTF-8"], {"need_labels": False}),
])
def test_errors_name_file_and_line(tmp_path, data, line, words, kwargs):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as e:
        read_list(path, num_classes=5, check_files=False, **kwargs)
    message = str(e.value)
    assert f"{path}:{line}:" in message, message
    assert all(w in message for w in words), message


def test_missing_listed_file_names_line_and_file(tmp_path):
    (tmp_path / "here.npy").write_bytes(b"x")
    missing = str(tmp_path / "gone 视频.npy")
    path = write(tmp_path, f"{tmp_path / 'here.npy'} 1\n\n{missing} 2\n")
    with pytest.raises(UserError) as e:
        read_list(path, num_classes=5, check_files=True)
    assert f"{path}:3:" in str(e.value) and missing in str(e.value)
    # without check_files the same list loads (eval/predict report missing files one by one)
    assert len(read_list(path, num_classes=5, check_files=False)) == 2


def test_missing_listed_file_in_infer_list(tmp_path):
    path = write(tmp_path, f"{tmp_path / 'gone.npy'}\n")
    with pytest.raises(UserError, match=f"{path}:1:"):
        read_list(path, need_labels=False, check_files=True)


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf\r\n"])
def test_empty_list_is_an_error(tmp_path, data):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as e:
        read_list(path, num_classes=5, check_files=False)
    assert path in str(e.value)


def test_missing_list_file(tmp_path):
    path = str(tmp_path / "nope.list")
    with pytest.raises(UserError) as e:
        read_list(path, num_classes=5)
    assert path in str(e.value)


def test_labels_unchecked_without_num_classes(tmp_path):
    entries = read_list(write(tmp_path, "a.npy 4000\n"), check_files=False)
    assert entries[0].labels == [4000]


def test_read_texts_is_read_lines_without_numbers(tmp_path):
    data = "\ufeff a b.mp4 \r\n\n \t\r\n视频\t1.mp4\r\r\nlast.mp4".encode("utf-8")
    path = write(tmp_path, data)
    assert read_texts(path) == [t for _, t in read_lines(path)] == [" a b.mp4 ", "视频\t1.mp4", "last.mp4"]
    assert [n for n, _ in read_lines(path)] == [1, 4, 5]
    assert read_texts(write(tmp_path, "x\ny\n")) == read_texts(write(tmp_path, "x\r\ny\r\n")) == ["x", "y"]


@pytest.mark.parametrize("line", [3, 4])
def test_line_not_utf8_is_named_by_its_number(tmp_path, line):
    lines = ["a.mp4", "海边.mp4", "b.mp4", "c.mp4"]
    data = [t.encode("utf-8") for t in lines]
    data[line - 1] = "海边".encode("utf-8")[:4] + b".mp4"  # a character cut in two
    path = write(tmp_path, b"\n".join(data) + b"\n")
    for read in (read_texts, lambda p: list(read_lines(p))):
        with pytest.raises(UserError, match=f"^{path}:{line}: line is not valid UTF-8$"):
            read(path)


# --- label files --------------------------------------------------------------------------------

def test_label_file_line_index_is_class_id(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf\xe8\x83\xb6\xe5\x90\x88\xe6\x9d\xbf\r\ncat\r\n\r\n dog \r\n\n", "labels.txt")
    # a blank line is a class (keeps the ids of the lines after it); trailing blank lines are not
    assert read_label_file(path, 4) == ["胶合板", "cat", "", "dog"]
    assert read_label_file(path, 2) == ["胶合板", "cat"]


def test_label_file_with_too_few_lines(tmp_path):
    path = write(tmp_path, "a\nb\n\n\n", "labels.txt")
    with pytest.raises(UserError) as e:
        read_label_file(path, 3)
    message = str(e.value)
    assert path in message and "label_3396.txt" in message and "PaddleVideo" in message


def test_missing_label_file_says_where_the_release_one_comes_from(tmp_path):
    path = str(tmp_path / "label_3396.txt")
    with pytest.raises(UserError) as e:
        read_label_file(path, 3396)
    message = str(e.value)
    assert path in message and "label_3396.txt" in message and "PaddleVideo" in message
    assert "comes with ./run fetch" in message


def test_label_file_invalid_utf8(tmp_path):
    path = write(tmp_path, "a\nb\n".encode() + "c\n".encode("utf-16"), "labels.txt")
    with pytest.raises(UserError, match=f"{path}:3"):
        read_label_file(path, 3)


@pytest.mark.skipif(not os.path.isfile(RELEASE_LABELS), reason="release label file not available")
def test_release_label_file():
    names = read_label_file(RELEASE_LABELS, 3396)
    assert len(names) == 3396
    assert names[0] == "胶合板"
    assert names[1] == "坠楼"
    assert names[3110] == "训练"
    assert names[3395] == "星际宝贝"
    assert all(names)
    # cross-check against the raw file: line k+1 holds class k
    with open(RELEASE_LABELS, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[3110] == names[3110] and lines[:3396] == names
    with pytest.raises(UserError):
        read_label_file(RELEASE_LABELS, 3397)


def test_output_stem_is_stable_and_never_shared(tmp_path):
    from video_tag.readers.lists import output_stem
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = str(tmp_path / "a" / "clip 1.mp4"), str(tmp_path / "b" / "clip 1.mp4")
    assert output_stem(a).startswith("clip 1_") and output_stem(a) != output_stem(b)
    os.symlink(a, tmp_path / "link.mp4")  # the same video under another name: the same digest
    assert output_stem(str(tmp_path / "link.mp4")) == "link_" + output_stem(a).rsplit("_", 1)[1]
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "a")
        assert output_stem("clip 1.mp4") == output_stem(a)  # relative or absolute: one video, one name
    finally:
        os.chdir(cwd)
