"""names.py: names that are not UTF-8, or hold a TAB or a newline, in text outputs."""
import os

from video_tag.names import shown, text_path, text_paths

NAMES = ["plain.mp4", "海边 日落.mp4", "a\tb.mp4", "two\nlines\r.mp4", "back\\slash\\x41.mp4",
         os.fsdecode("视频".encode("gbk") + b".avi"), os.fsdecode(b"\xff\\xff\t\x80.avi")]


def test_shown_is_utf8_and_leaves_utf8_names_alone():
    assert [shown(n) for n in NAMES[:5]] == NAMES[:5]
    assert shown(os.fsdecode(b"x\xc4\xe3.avi")) == "x\\xc4\\xe3.avi"
    for name in NAMES:
        shown(name).encode("utf-8")


def test_text_path_is_one_utf8_field_and_leaves_plain_names_alone():
    for name in NAMES:
        field = text_path(name)
        field.encode("utf-8")  # never a surrogate
        assert not set(field) & {"\t", "\n", "\r"}, name
    assert [text_path(n) for n in (NAMES[0], NAMES[1], NAMES[4])] == [NAMES[0], NAMES[1], NAMES[4]]
    assert text_path("a\tb\\c") == "a\\tb\\c"  # backslashes of Windows paths stay as they are
    assert text_path("two\nlines\r.mp4") == "two\\nlines\\r.mp4"
    assert text_path(os.fsdecode(b"x\xc4\t.avi")) == "x\\xc4\\t.avi"
    # distinct names stay distinct, except the one ambiguity the store refuses (a real TAB vs backslash-t)
    assert len({text_path(n) for n in NAMES}) == len(NAMES)
    assert text_path("a\tb") == text_path("a\\tb")


def test_text_paths_is_text_path_of_each():
    for names in (NAMES, NAMES[:2], NAMES[:1] * 3, [NAMES[1]], [NAMES[0], os.fsdecode(b"\xff.avi")], []):
        assert text_paths(names) == [text_path(n) for n in names], names
