"""video_tag/timeline.py: the class filter, top tags of the allowed classes, tag ranges, option checks."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT
from video_tag.errors import UserError
from video_tag.timeline import (TimelineOptions, allowed_classes, check_options, check_writable, tag_ranges,
                                top_tags)

NAMES = ["猫", "dog", "a, b", "7", "sea"]


def test_allowed_classes_by_name_id_and_comma_list():
    assert allowed_classes(NAMES) is None
    assert allowed_classes(NAMES, include=["dog,4", "猫"]).tolist() == [0, 1, 4]
    assert allowed_classes(NAMES, include=["a, b"]).tolist() == [2]  # a name holding a comma, matched whole
    assert allowed_classes(NAMES, include=["7"]).tolist() == [3]      # a name before an id
    assert allowed_classes(NAMES, exclude=["sea", " 0 "]).tolist() == [1, 2, 3]
    assert allowed_classes(NAMES, include=["dog", "sea"], exclude=["sea"]).tolist() == [1]
    assert allowed_classes(NAMES, include=[1, 2]).tolist() == [1, 2]


@pytest.mark.parametrize("include, exclude, bad", [(["cat"], [], "'cat'"), ([], ["dog,5"], "'5'"),
                                                   (["-1"], [], "'-1'"), (["dog", "Dog"], [], "'Dog'")])
def test_an_unknown_class_is_refused(include, exclude, bad):
    with pytest.raises(UserError, match=("--include" if include else "--exclude") + f".*{bad}.*ids 0..4"):
        allowed_classes(NAMES, include, exclude)


def test_top_tags_of_the_allowed_classes():
    p = np.array([0.1, 0.9, 0.5, 0.5, 0.7], np.float32)
    assert [t["class_id"] for t in top_tags(p, NAMES, 3)] == [1, 4, 2]  # ties: the lower id first
    assert [t["class_id"] for t in top_tags(p, NAMES, 3, allowed=np.array([0, 2, 3]))] == [2, 3, 0]
    assert [t["class_id"] for t in top_tags(p, NAMES, 5, threshold=0.5, allowed=np.array([0, 3, 4]))] == [4, 3]
    assert top_tags(p, NAMES, 1)[0] == {"class_id": 1, "class_name": "dog", "probability": pytest.approx(0.9)}


def test_tag_ranges_merge_consecutive_items_at_or_above_the_threshold():
    p = np.array([[0.6, 0.1], [0.5, 0.2], [0.4, 0.9], [0.8, 0.9], [0.7, 0.1]], np.float32)
    items = [(k * 2.0, k * 2.0 + 2.0, p[k]) for k in range(5)]
    names = ["x", "y"]
    assert tag_ranges(items, names, 0.5, "shot") == [
        {"class_id": 0, "class_name": "x", "start": 0.0, "end": 4.0, "confidence": pytest.approx(0.6), "level": "shot"},
        {"class_id": 0, "class_name": "x", "start": 6.0, "end": 10.0, "confidence": pytest.approx(0.8), "level": "shot"},
        {"class_id": 1, "class_name": "y", "start": 4.0, "end": 8.0, "confidence": pytest.approx(0.9), "level": "shot"}]
    assert [r["class_id"] for r in tag_ranges(items, names, 0.5, "segment", allowed=np.array([1]))] == [1]
    assert tag_ranges(items, names, 0.95, "shot") == [] and tag_ranges([], names, 0.5, "shot") == []
    assert len(tag_ranges(items, names, 0.0, "shot")) == 2  # 0: one range per class over everything


def test_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(UserError, match="--min_confidence must be between 0 and 1, got 1.5"):
        check_options(TimelineOptions(min_confidence=1.5), str(tmp_path))
    with pytest.raises(UserError, match="between 0 and 1, got nan"):
        check_options(TimelineOptions(min_confidence=float("nan")), str(tmp_path))
    check_options(TimelineOptions(min_confidence=0.0, report=True), str(tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists()  # checked, nothing made
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        check_writable(str(tmp_path / "file" / "out"))
    if os.path.isdir("/proc/self"):  # a folder nobody can create files in, not even root
        with pytest.raises(UserError, match="/proc is not writable"):
            check_writable("/proc/videotag_report")
    check_options(TimelineOptions(), "/proc/videotag_report")  # without --report: not checked
    # shots of shared frames need shots; what a shot is tagged from is one of two
    with pytest.raises(UserError, match="^--shot_frames shared needs --shots$"):
        check_options(TimelineOptions(shot_frames="shared"), str(tmp_path))
    with pytest.raises(UserError, match="--shot_frames must be one of own, shared, got 'mine'"):
        check_options(TimelineOptions(shots=True, shot_frames="mine"), str(tmp_path))
    check_options(TimelineOptions(shots=True, shot_frames="shared"), str(tmp_path))


def test_the_schema_is_valid_and_refuses_a_broken_timeline():
    import jsonschema
    with open(os.path.join(ROOT, "video_tag", "timeline.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {"video": "a.mp4", "name": "a_0123456789abcdef",
            "metadata": {"duration": 1.0, "fps": 25.0, "frames": 25, "width": 64, "height": 48, "codec": None},
            "tags": [], "shots": [{"shot": 0, "start": 0.0, "end": 1.0, "start_frame": 0, "end_frame": 25,
                                   "tags": [{"class_id": 1, "class_name": "dog", "probability": 0.5}]}],
            "segments": [], "ranges": [{"class_id": 1, "class_name": "dog", "start": 0.0, "end": 1.0,
                                        "confidence": 0.5, "level": "shot"}]}
    jsonschema.validate(good, schema)
    for broken in ({**good, "ranges": [{**good["ranges"][0], "level": "frame"}]},
                   {**good, "metadata": {**good["metadata"], "frames": 0}},
                   {k: v for k, v in good.items() if k != "shots"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
