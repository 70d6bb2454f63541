"""Job options named as videotag.py's flags, checked where they arrive (form fields come as text)."""
import pytest

from video_tag.service.options import check_options

LABELS = ["猫", "dog, big", "bird"]


def test_values_of_their_types():
    assert check_options({"topk": "5", "threshold": "0.25", "segment_seconds": 30, "segment_stride_seconds": "10",
                          "segment_seg_num": 8}) == {"topk": 5, "threshold": 0.25, "segment_seconds": 30.0,
                                                     "segment_stride_seconds": 10.0, "segment_seg_num": 8}
    assert check_options({}) == {} and check_options({"topk": None}) == {}


def test_shots_and_the_options_that_go_with_them():
    assert check_options({"shots": True, "min_confidence": "0.7", "include": "猫,2", "exclude": ["dog, big", 0]},
                         LABELS) == {"shots": True, "min_confidence": 0.7, "include": ["猫,2"],
                                     "exclude": ["dog, big", "0"]}
    for text, value in (("true", True), ("1", True), ("On", True), ("false", False), ("0", False), ("no", False)):
        assert check_options({"shots": text}) == {"shots": value}
    assert check_options({"shots": False}) == {"shots": False}
    assert check_options({"include": [], "exclude": ""}, LABELS) == {}  # videotag.py's default: no filter
    assert check_options({"min_confidence": 0, "include": ["2"]}, LABELS) == {"min_confidence": 0.0, "include": ["2"]}


@pytest.mark.parametrize("raw, words", [
    ({"topk": 0}, "topk must be at least 1"), ({"topk": "2.5"}, "topk must be an integer"),
    ({"topk": 2.5}, "topk must be an integer"), ({"topk": True}, "topk must be an integer"),
    ({"threshold": "nan"}, "finite"), ({"threshold": 1.5}, "at most 1"), ({"threshold": -0.1}, "at least 0"),
    ({"segment_seconds": 0}, "greater than 0"), ({"segment_seconds": "inf"}, "finite"),
    ({"segment_stride_seconds": 1}, "needs segment_seconds"), ({"shot": True}, "unknown option 'shot'"),
    ({"topk": [1]}, "topk must be an integer"), ([1], "must be an object"),
    ({"topk": ["1", "2"]}, "topk must be an integer"),  # a form field given twice
    ({"shots": "maybe"}, "shots must be true or false"), ({"shots": 1}, "shots must be true or false"),
    ({"shots": ""}, "shots must be true or false"),
    ({"min_confidence": 1.01}, "min_confidence must be at most 1"), ({"min_confidence": -1}, "at least 0"),
    ({"min_confidence": "x"}, "min_confidence must be a finite number"),
    ({"include": "fish"}, "option include: no class named or numbered 'fish'"),
    ({"exclude": ["猫", "3"]}, "option exclude: no class named or numbered '3'"),
    ({"include": [1.5]}, "include must be class names or ids"), ({"exclude": {"a": 1}}, "exclude must be class names"),
    ({"include": True}, "include must be class names")])
def test_refused_with_the_option_named(raw, words):
    with pytest.raises(ValueError, match=words):
        check_options(raw, LABELS)
