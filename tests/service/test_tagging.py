"""service.tagging.Tagger: one video at a time with the models loaded once, the same tags as videotag.py."""
import pytest

from service_setup import assert_same_result, make_models, videotag_results, write_clip


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
    folder, tagger = models
    clips = [write_clip(folder / f"clip{i}.avi", i, seconds=s) for i, s in enumerate((2.0, 3.4))]
    reference = videotag_results(folder, clips, folder / "out", segment_seconds=1.0)
    results = [tagger.tag(clip, {"segment_seconds": 1.0}) for clip in clips]
    for clip, result in zip(clips, results):
        assert result["video"] == clip
        assert [s["segment"] for s in result["segments"]] == list(range(len(reference[clip]["segments"])))
        assert_same_result(result, reference[clip])
    # options as videotag.py's flags: topk and threshold cut the same list
    full = results[0]["tags"]
    assert len(full) == 6
    assert tagger.tag(clips[0], {"topk": 2}) == {"video": clips[0], "tags": full[:2], "segments": []}
    assert tagger.tag(clips[0], {"topk": 5, "threshold": full[2]["probability"]})["tags"] == full[:3]


def test_a_bad_video_raises_its_reason(models):
    from video_tag.service.tagging import VideoError
    folder, tagger = models
    (folder / "bad.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(VideoError, match="cannot open|cannot read|no frames"):
        tagger.tag(str(folder / "bad.mp4"))
