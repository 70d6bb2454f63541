"""Your tags next to VideoTag's: the label files checked, the old head rows kept exactly, the old tags'
targets the frozen starting model's probabilities where a video has no old label, train.py end to end."""
import os

import numpy as np
import paddle
import pytest

from conftest import FEATURE_DIM, NUM_CLASSES, run_main
from test_losses import reference_bce
from video_tag import extend, weights
from video_tag.config import load_config
from video_tag.errors import UserError
from video_tag.models import build_model

OLD = [f"tag {c}" for c in range(NUM_CLASSES)]
NEW = OLD + ["new a", "new b"]


def write_names(path, names):
    path.write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return str(path)


@pytest.fixture
def start(tiny_config, tmp_path):
    """The starting model's weights (5 tags) and label files; a config extending it to 7 tags."""
    cfg = load_config(tiny_config)
    paddle.seed(1)
    w = str(tmp_path / "start.pdparams")
    weights.write_state(weights.model_state(build_model("AttentionLSTM", cfg)), w)
    cfg["MODEL"]["num_classes"] = len(NEW)
    cfg["TRAIN"].update(extend_from=w, extend_from_labels=write_names(tmp_path / "old.txt", OLD),
                        extend_to_labels=write_names(tmp_path / "new.txt", NEW), distill_weight=0.5)
    return cfg, weights.read_state(w)


def test_label_files_are_checked(tmp_path):
    old = write_names(tmp_path / "old.txt", OLD)
    assert extend.check_labels(old, write_names(tmp_path / "new.txt", NEW), 7) == NUM_CLASSES

    def refused(names, num_classes=None):
        with pytest.raises(UserError) as e:
            extend.check_labels(old, write_names(tmp_path / "bad.txt", names), num_classes or len(names))
        assert "\n" not in str(e.value)
        return str(e.value)

    bad = str(tmp_path / "bad.txt")
    assert refused(OLD[:2] + ["other"] + OLD[3:] + ["new a"]) == (
        f"{bad}:3: 'other' where {old}:3 has 'tag 2': the label file of the extended model starts with the 5 "
        f"names of {old}, in order")
    assert refused(OLD[1:] + ["new a", "new b"]).startswith(f"{bad}:1: 'tag 1' where {old}:1 has 'tag 0'")
    assert refused(OLD + ["new a", "tag 3"]) == f"{bad}:7: new tag 'tag 3' duplicates tag 3 ({bad}:4)"
    assert refused(OLD + ["new a", "new a"]) == f"{bad}:7: new tag 'new a' duplicates tag 5 ({bad}:6)"
    assert refused(OLD + ["", "new b"]) == f"{bad}:6: a new tag without a name"
    assert "no more than the 5" in refused(OLD)
    assert "has 7 names, MODEL.num_classes is 8: set MODEL.num_classes=7" in refused(NEW, 8)


def test_head_rows_kept_exactly_new_rows_as_initialised(start):
    cfg, state = start
    paddle.seed(2)
    model = build_model("AttentionLSTM", cfg)
    initial = weights.model_state(model)
    distiller = extend.setup(model, cfg, "AttentionLSTM")
    got = weights.model_state(model)
    assert got["output.w_0"].shape == (8, 7)
    assert np.array_equal(got["output.w_0"][:, :NUM_CLASSES], state["output.w_0"])
    assert np.array_equal(got["output.b_0"][:NUM_CLASSES], state["output.b_0"])
    assert np.array_equal(got["output.w_0"][:, NUM_CLASSES:], initial["output.w_0"][:, NUM_CLASSES:])
    assert np.array_equal(got["output.b_0"][NUM_CLASSES:], initial["output.b_0"][NUM_CLASSES:])
    assert not np.array_equal(initial["output.w_0"][:, :NUM_CLASSES], state["output.w_0"])  # really loaded
    for name in state:
        if name not in extend.HEAD:
            assert np.array_equal(got[name], state[name]), name
    teacher = weights.model_state(distiller.teacher)
    assert all(np.array_equal(teacher[k], state[k]) for k in state) and len(teacher) == len(state)
    assert not distiller.teacher.training and all(p.stop_gradient for p in distiller.teacher.parameters())
    assert distiller.num_old == NUM_CLASSES and distiller.distill_weight == 0.5


def test_old_targets_are_the_teachers_probabilities_where_a_video_has_no_old_label():
    labels = np.zeros((4, 7), np.float32)
    labels[0, 2] = 1            # an old label only
    labels[1, 5] = 1            # a new label only: distilled
    labels[2, [1, 6]] = 1       # both
    teacher = np.random.default_rng(0).random((4, NUM_CLASSES)).astype(np.float32)   # row 3: no label, distilled
    targets, w = (t.numpy() for t in extend.distillation_targets(paddle.to_tensor(labels), paddle.to_tensor(teacher),
                                                                  NUM_CLASSES, 0.3))
    for row in (1, 3):
        assert np.array_equal(targets[row, :NUM_CLASSES], teacher[row])
        assert np.array_equal(w[row], np.float32([0.3] * NUM_CLASSES + [1.0, 1.0]))
    for row in (0, 2):
        assert np.array_equal(targets[row, :NUM_CLASSES], labels[row, :NUM_CLASSES])
        assert np.array_equal(w[row], np.ones(7))
    assert np.array_equal(targets[:, NUM_CLASSES:], labels[:, NUM_CLASSES:])  # new tags: always the labels


def test_distillation_loss_and_gradient_against_a_numpy_reference(start):
    cfg, state = start
    distiller = extend.setup(build_model("AttentionLSTM", cfg), cfg, "AttentionLSTM")
    rng = np.random.default_rng(3)
    features = paddle.to_tensor(rng.standard_normal((3, 6, FEATURE_DIM)).astype(np.float32))
    lengths = np.array([6, 4, 5])
    labels = np.zeros((3, 7), np.float32)
    labels[0, 1], labels[1, 6], labels[2, 5] = 1, 1, 1
    # the teacher independently: the starting weights, inference mode (dropout scaled, GUIDE section 1)
    reference = build_model("AttentionLSTM", {**cfg, "MODEL": {**cfg["MODEL"], "num_classes": NUM_CLASSES}})
    for name, p in weights.fluid_params(reference).items():
        p.set_value(state[name])
    reference.eval()
    teacher = 1 / (1 + np.exp(-reference(features, lengths).numpy().astype(np.float64)))
    logits = paddle.to_tensor(rng.standard_normal((3, 7)).astype(np.float32) * 2, stop_gradient=False)
    loss, per_video = distiller.loss(logits, paddle.to_tensor(labels), (features, lengths), nranks=1)
    loss.backward()
    targets, w = labels.astype(np.float64), np.ones((3, 7))
    targets[1:, :NUM_CLASSES], w[1:, :NUM_CLASSES] = teacher[1:], 0.5   # rows 1, 2: no old label
    expected, gradient = reference_bce(logits.numpy(), targets, w)
    np.testing.assert_allclose(per_video.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(logits.grad.numpy(), gradient, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_train_py_extends_the_tags_and_refuses_a_bad_label_file(start, tiny_config, tmp_path, capfd, monkeypatch):
    cfg, state = start
    rng = np.random.default_rng(4)
    lines = open(cfg["TRAIN"]["filelist"], encoding="utf-8").read().splitlines()[:8]
    os.makedirs(tmp_path / "new", exist_ok=True)
    for i in range(8):  # videos with only new labels
        x = rng.standard_normal((5, FEATURE_DIM)).astype(np.float32)
        np.save(tmp_path / "new" / f"{i}.npy", x)
        lines.append(f"{tmp_path / 'new' / f'{i}.npy'} {5 + i % 2}")
    (tmp_path / "extend.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = cfg["TRAIN"]
    args = ["--model_name=AttentionLSTM", "--use_gpu=False", f"--config={tiny_config}", "--epoch=1",
            f"--filelist={tmp_path / 'extend.list'}", "-o", "MODEL.num_classes=7", "-o", f"TRAIN.extend_from={t['extend_from']}",
            "-o", f"TRAIN.extend_from_labels={t['extend_from_labels']}", "-o", "TRAIN.distill_weight=2"]
    calls = []
    real_loss = extend.Distiller.loss
    monkeypatch.setattr(extend.Distiller, "loss", lambda self, *a: calls.append(self.distill_weight) or real_loss(self, *a))
    result = run_main("train.py", *args, "-o", f"TRAIN.extend_to_labels={t['extend_to_labels']}",
                      f"--save_dir={tmp_path / 'ck'}", capfd=capfd)
    assert result.returncode == 0, result.stdout
    assert calls == [2.0, 2.0]  # 16 videos, batch 8: every step's loss is the mixed one
    assert "extending 5 tags" in result.stdout
    final = weights.read_state(str(tmp_path / "ck" / "AttentionLSTM.pdparams"))
    assert final["output.w_0"].shape == (8, 7)

    bad = write_names(tmp_path / "bad.txt", OLD[:4] + ["tag 9", "new a", "new b"])
    for extra, message in (([f"TRAIN.extend_to_labels={bad}"], f"{bad}:5: 'tag 9' where"),
                           ([f"TRAIN.extend_to_labels={write_names(tmp_path / 'dup.txt', OLD + ['new', 'tag 0'])}"],
                            "new tag 'tag 0' duplicates tag 0")):
        result = run_main("train.py", *args, "-o", *extra, f"--save_dir={tmp_path / 'refused'}", capfd=capfd)
        assert result.returncode == 2
        errors = [line for line in result.stdout.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], result.stdout
    result = run_main("train.py", *args, "-o", f"TRAIN.extend_to_labels={t['extend_to_labels']}",
                      f"--pretrain={t['extend_from']}", f"--save_dir={tmp_path / 'refused'}", capfd=capfd)
    assert result.returncode == 2 and "--pretrain and TRAIN.extend_from exclude each other" in result.stdout
    assert not (tmp_path / "refused").exists()


def test_settings_that_do_not_fit_are_refused(start, tmp_path):
    cfg, _ = start

    def refused(**train):
        bad = {**cfg, "TRAIN": {**cfg["TRAIN"], **train}}
        with pytest.raises(UserError) as e:
            extend.setup(build_model("AttentionLSTM", bad), bad, "AttentionLSTM")
        return str(e.value)

    four = write_names(tmp_path / "four.txt", OLD[:4])
    # the starting weights have 5 outputs, its label file 4 names
    assert "has 5 outputs, TRAIN.extend_from_labels names 4 tags" in refused(
        extend_from_labels=four, extend_to_labels=write_names(tmp_path / "six.txt", OLD[:4] + ["a", "b", "c"]))
    assert refused(extend_to_labels=None) == ("TRAIN.extend_from needs TRAIN.extend_to_labels too (see README, "
                                              "'Your tags next to VideoTag's')")
    assert "TRAIN.extend_from_labels is set but TRAIN.extend_from is not" in refused(extend_from=None)
    assert extend.check({**cfg, "TRAIN": {**cfg["TRAIN"], "extend_from": None, "extend_from_labels": None,
                                          "extend_to_labels": None}}, "AttentionLSTM") is None
    with pytest.raises(UserError, match="extends the AttentionLSTM's tags, not TSN's"):
        extend.check(cfg, "TSN")
