"""Job options named as videotag.py's flags, checked where they arrive (form fields come as text)."""
import pytest

from video_tag.service.options import check_options


def test_values_of_their_types():
    assert check_options({"topk": "5", "threshold": "0.25", "segment_seconds": 30, "segment_stride_seconds": "10",
                          "segment_seg_num": 8}) == {"topk": 5, "threshold": 0.25, "segment_seconds": 30.0,
                                                     "segment_stride_seconds": 10.0, "segment_seg_num": 8}
    assert check_options({}) == {} and check_options({"topk": None}) == {}


@pytest.mark.parametrize("raw, words", [
    ({"topk": 0}, "topk must be at least 1"), ({"topk": "2.5"}, "topk must be an integer"),
    ({"topk": 2.5}, "topk must be an integer"), ({"topk": True}, "topk must be an integer"),
    ({"threshold": "nan"}, "finite"), ({"threshold": 1.5}, "at most 1"), ({"threshold": -0.1}, "at least 0"),
    ({"segment_seconds": 0}, "greater than 0"), ({"segment_seconds": "inf"}, "finite"),
    ({"segment_stride_seconds": 1}, "needs segment_seconds"), ({"shots": True}, "unknown option 'shots'"),
    ({"topk": [1]}, "topk must be an integer"), ([1], "must be an object")])
def test_refused_with_the_option_named(raw, words):
    with pytest.raises(ValueError, match=words):
        check_options(raw)
