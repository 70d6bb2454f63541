"""names.py: names that are not UTF-8, or hold a TAB or a newline, in text outputs."""
import os

from video_tag.names import escape_field, shown, unescape_field

NAMES = ["plain.mp4", "海边 日落.mp4", "a\tb.mp4", "two\nlines\r.mp4", "back\\slash\\x41.mp4",
         os.fsdecode("视频".encode("gbk") + b".avi"), os.fsdecode(b"\xff\\xff\t\x80.avi")]


def test_escape_field_round_trips_in_one_utf8_field():
    for name in NAMES:
        field = escape_field(name)
        field.encode("utf-8")  # never a surrogate
        assert not set(field) & {"\t", "\n", "\r"}
        assert unescape_field(field) == name, name
    assert escape_field("a\tb\\c") == "a\\tb\\\\c"
    assert escape_field(os.fsdecode(b"x\xc4.avi")) == "x\\xc4.avi"
    assert len({escape_field(n) for n in NAMES}) == len(NAMES)


def test_shown_is_utf8_and_leaves_utf8_names_alone():
    assert [shown(n) for n in NAMES[:5]] == NAMES[:5]
    assert shown(os.fsdecode(b"x\xc4\xe3.avi")) == "x\\xc4\\xe3.avi"
    for name in NAMES:
        shown(name).encode("utf-8")
