"""service.tagging.Tagger: one video at a time with the models loaded once, the same timeline (tags,
segments, shots, ranges) as videotag.py writes."""
import pytest

from service_setup import (assert_same_result, make_models, validate_timeline, videotag_results, write_clip,
                           write_cuts)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tsn50_release):
    from video_tag.config import load_config
    from video_tag.service.tagging import Tagger
    folder = tmp_path_factory.mktemp("tagging")
    make_models(folder, tsn50_release)
    tagger = Tagger(load_config(str(folder / "tsn.yaml")), load_config(str(folder / "lstm.yaml")),
                    str(folder / "tsn.pdparams"), str(folder / "lstm.pdparams"), str(folder / "labels.txt"),
                    frame_batch=4)
    return folder, tagger


def test_equals_videotag_on_the_same_clips(models):
    from video_tag.readers.lists import output_stem
    folder, tagger = models
    clips = [write_clip(folder / f"clip{i}.avi", i, seconds=s) for i, s in enumerate((2.0, 3.4))]
    reference = videotag_results(folder, clips, folder / "out", segment_seconds=1.0)
    results = [tagger.tag(clip, {"segment_seconds": 1.0}) for clip in clips]
    for clip, result in zip(clips, results):
        assert result["video"] == clip and result["name"] == output_stem(clip)
        assert [s["segment"] for s in result["segments"]] == list(range(len(reference[clip]["segments"])))
        assert reference[clip]["timeline"] is not None  # compared whole: metadata, ranges
        assert_same_result(result, reference[clip])
        validate_timeline(result)
    # options as videotag.py's flags: topk and threshold cut the same list
    full = results[0]["tags"]
    assert len(full) == 6
    alone = validate_timeline(tagger.tag(clips[0], {"topk": 2}))
    assert (alone["tags"], alone["segments"], alone["shots"], alone["ranges"]) == (full[:2], [], [], [])
    assert tagger.tag(clips[0], {"topk": 5, "threshold": full[2]["probability"]})["tags"] == full[:3]


@pytest.mark.parametrize("raw, flags", [
    ({"shots": True}, {}),
    ({"shots": "true", "segment_seconds": 1, "min_confidence": "0.45", "include": ["标签 1,标签 2", 4],
      "exclude": "2"},
     {"min_confidence": 0.45, "include": ["标签 1,标签 2", "4"], "exclude": ["2"]})])
def test_shots_equal_videotag_shots(models, raw, flags):
    """A video with hard cuts: the shots (bounds, tags), segments and ranges of videotag.py --shots (with
    --segment_seconds, --min_confidence, --include and --exclude as the options ask)."""
    from video_tag.service.options import check_options
    from video_tag.timeline import TimelineOptions
    folder, tagger = models
    video, cuts = write_cuts(folder / "cuts.mp4")
    options = check_options(raw, tagger.names)
    reference = videotag_results(folder, [video], folder / f"shots{len(raw)}", options.get("segment_seconds"),
                                 TimelineOptions(shots=True, **flags))[video]
    result = validate_timeline(tagger.tag(video, options))
    assert [(s["start_frame"], s["end_frame"]) for s in result["shots"]] == list(zip([0] + cuts, cuts + [70]))
    assert_same_result(result, reference)
    assert {r["level"] for r in result["ranges"]} == ({"shot", "segment"} if "segment_seconds" in raw else {"shot"})
    if "include" in raw:  # 标签 1, 标签 2 and 4, less 2
        assert {t["class_id"] for s in result["shots"] for t in s["tags"]} == {1, 4}
        assert {r["class_id"] for r in result["ranges"]} <= {1, 4}


def test_a_bad_video_raises_its_reason(models):
    from video_tag.service.tagging import VideoError
    folder, tagger = models
    (folder / "bad.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(VideoError, match="cannot open|cannot read|no frames"):
        tagger.tag(str(folder / "bad.mp4"))
