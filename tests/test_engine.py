"""predict.py and eval.py with ``--engine inference``: the AttentionLSTM exported and run through Paddle
Inference gives dygraph's tags, probabilities (within 1e-5) and metrics."""
import json

import numpy as np
import pytest

from conftest import NUM_CLASSES
from test_export import random_release_weights
from video_tag import export
from video_tag.config import load_config
from video_tag.errors import UserError
from video_tag.evaluate import check_engine, evaluate
from video_tag.models import build_model
from video_tag.predict import predict
from video_tag.streaming import PartialJsonl


@pytest.fixture
def lively(tiny_config, tmp_path):
    """The tiny config with weights uniform in [-0.5, 0.5] (every part of the model matters), a label
    file, and a prediction list with a missing file."""
    cfg = load_config(tiny_config)
    weights_path = str(tmp_path / "w.pdparams")
    random_release_weights(build_model("AttentionLSTM", cfg), weights_path, seed=3)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"类别 {i}\n" for i in range(NUM_CLASSES)), encoding="utf-8")
    lines = open(cfg["INFER"]["filelist"], encoding="utf-8").read().splitlines()
    listing = tmp_path / "infer.list"
    listing.write_text("\n".join(lines[:3] + [str(tmp_path / "gone.npy")] + lines[3:]) + "\n", encoding="utf-8")
    return cfg, weights_path, str(listing), str(labels)


def test_inference_engine_predicts_and_evaluates_as_dygraph(lively, tmp_path, monkeypatch):
    cfg, weights_path, listing, labels = lively
    batches = []

    class CountingRunner(export.InferenceRunner):
        def __call__(self, *arrays):
            batches.append(len(arrays[0]))
            return super().__call__(*arrays)

    monkeypatch.setattr(export, "InferenceRunner", CountingRunner)
    results = {}
    for engine in ("dygraph", "inference"):
        # batches of 4 videos of 6-9 steps: padded batches, and a last one of 2
        assert predict("AttentionLSTM", cfg, weights_path, listing, labels, str(tmp_path / engine),
                       topk=NUM_CLASSES, batch_size=4, engine=engine) == 1      # the missing file
        with open(tmp_path / engine / "predictions.jsonl", encoding="utf-8") as f:
            results[engine] = [json.loads(line) for line in f]
        assert evaluate("AttentionLSTM", cfg, weights_path, cfg["TEST"]["filelist"], str(tmp_path / f"e_{engine}"),
                        batch_size=3, engine=engine) == 0
    # Paddle Inference computed every batch: 10 videos in 3 batches (predict: the 4th file of the first is
    # missing) and 4 (eval), each command
    # after the runner's check on its sample batch of 2
    assert batches == [2, 3, 4, 3] + [2, 3, 3, 3, 1]
    dygraph, inference = results["dygraph"], results["inference"]
    assert len(dygraph) == 10 and [r["video"] for r in inference] == [r["video"] for r in dygraph]
    for a, b in zip(dygraph, inference):
        assert [t["class_id"] for t in b["tags"]] == [t["class_id"] for t in a["tags"]]
        np.testing.assert_allclose([t["probability"] for t in b["tags"]], [t["probability"] for t in a["tags"]],
                                   rtol=0, atol=1e-5)
    # the videos get different rankings: the comparison is not one of constants
    assert len({tuple(t["class_id"] for t in r["tags"]) for r in dygraph}) > 3
    a = json.load(open(tmp_path / "e_dygraph" / "metrics.json"))
    b = json.load(open(tmp_path / "e_inference" / "metrics.json"))
    assert a["num_videos"] == b["num_videos"] == 10
    for key in ("gap", "hit_at_one", "perr", "loss"):
        assert b[key] == pytest.approx(a[key], abs=1e-5), key


def test_engine_choices():
    check_engine("AttentionLSTM", "inference")
    check_engine("TSN", "dygraph")
    with pytest.raises(UserError, match="--engine inference runs the AttentionLSTM only, not TSN"):
        check_engine("TSN", "inference")
    with pytest.raises(UserError, match="--engine must be one of dygraph, inference, got 'onnx'"):
        check_engine("AttentionLSTM", "onnx")


def test_a_killed_prediction_is_not_resumed_with_the_other_engine(lively, tmp_path, monkeypatch):
    cfg, weights_path, listing, labels = lively
    real_append, count = PartialJsonl.append, [0]

    def append_then_die(self, key, record):
        count[0] += 1
        if count[0] == 4:
            raise KeyboardInterrupt
        real_append(self, key, record)

    monkeypatch.setattr(PartialJsonl, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):  # killed after 3 of 10 videos
        predict("AttentionLSTM", cfg, weights_path, listing, labels, str(tmp_path / "out"), engine="dygraph")
    count[0] = -100
    assert predict("AttentionLSTM", cfg, weights_path, listing, labels, str(tmp_path / "out"),
                   engine="inference") == 1
    assert count[0] == -100 + 10  # every video predicted again: no dygraph probabilities in the output
