"""Mixed precision (--amp): the choice per device, and training with it on CPU (where Paddle 3.3.1 has no
low-precision training: float32, with a warning), including the float16 loss scaler's resume."""
import os
import shutil
import types

import numpy as np
import paddle
import pytest

from video_tag import amp, trainer, weights
from video_tag.config import load_config
from video_tag.models import build_model
from test_trainer import read_metrics_csv, train

pytestmark = pytest.mark.usefixtures("no_curves_png")


@pytest.mark.parametrize("capability, cuda, dtype, scaled", [
    ((9, 0), "12.3", "bfloat16", False),   # H100/H200
    ((8, 0), "11.8", "bfloat16", False),   # A100
    ((8, 6), "10.2", "float16", True),     # bfloat16 needs CUDA 11
    ((7, 0), "12.0", "float16", True),     # V100
    ((7, 5), "False", "float16", True),
    ((6, 1), "12.0", None, False),          # Pascal: no fast float16
])
def test_gpu_choice_by_compute_capability(capability, cuda, dtype, scaled):
    choice = amp.choose("gpu", capability, cuda)
    assert (choice.dtype, choice.scaled) == (dtype, scaled)
    assert f"compute capability {capability[0]}.{capability[1]}" in choice.reason


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_cpus_train_in_float32(cpu_bf16):
    choice = amp.choose("cpu", cpu_bf16=cpu_bf16)
    assert (choice.dtype, choice.scaled) == (None, False)
    assert "training in float32" in choice.reason and ("native bfloat16" in choice.reason) == cpu_bf16


def test_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n\nprocessor\t: 1\n", encoding="utf-8")
    assert not amp.cpu_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n", encoding="utf-8")
    assert amp.cpu_has_bf16(str(info))
    assert not amp.cpu_has_bf16(str(tmp_path / "missing"))


def test_amp_on_cpu_trains_in_float32(tiny_config, tmp_path, capfd):
    out = train(capfd, tiny_config, tmp_path / "amp", "--amp", "--epoch", "2", "-o", "TRAIN.seed=5")
    assert out.count("WARNING --amp: Paddle") == 1 and "training in float32" in out
    losses = [float(r["train_loss"]) for r in read_metrics_csv(tmp_path / "amp" / "metrics.csv")]
    assert losses[1] < losses[0]
    tuned = weights.read_state(str(tmp_path / "amp" / "AttentionLSTM"))
    assert {v.dtype for v in tuned.values()} == {np.dtype("float32")}
    model = build_model("AttentionLSTM", load_config(tiny_config))
    weights.load_weights(model, str(tmp_path / "amp" / "AttentionLSTM"))  # a release-format checkpoint
    # Float32 really: the weights of the same run without --amp.
    train(capfd, tiny_config, tmp_path / "plain", "--epoch", "2", "-o", "TRAIN.seed=5")
    plain = weights.read_state(str(tmp_path / "plain" / "AttentionLSTM"))
    assert all(np.array_equal(tuned[k], plain[k]) for k in plain)


def gpu_like_scaler(**kwargs):
    """Paddle's GradScaler made on CPU as on a GPU (it disables itself on a CPU place)."""
    from paddle.amp import grad_scaler
    real = grad_scaler._dygraph_tracer
    place = types.SimpleNamespace(is_gpu_place=lambda: True, is_xpu_place=lambda: False,
                                  is_custom_place=lambda: False)
    grad_scaler._dygraph_tracer = lambda: types.SimpleNamespace(_expected_place=place)
    try:
        return paddle.amp.GradScaler(**kwargs)
    finally:
        grad_scaler._dygraph_tracer = real


def test_float16_loss_scaler_state_resumes(tiny_config, tmp_path, monkeypatch):
    # The trainer's float16 path on CPU: autocast makes no effect here, but Paddle's loss scaler runs
    # (scale, unscale, skip on overflow, update), doubling its scale every 2 finite steps.
    monkeypatch.setattr(amp, "for_training", lambda enabled: amp.Precision("float16", True, "float16 (test)"))
    monkeypatch.setattr(amp, "loss_scaler",
                        lambda precision: gpu_like_scaler(init_loss_scaling=2.0 ** 15, incr_every_n_steps=2))
    cfg = load_config(tiny_config, ["TRAIN.batch_size=2", "TRAIN.save_interval_steps=1", "TRAIN.keep_checkpoints=0",
                                    "TRAIN.amp=true"])
    full, part = tmp_path / "full", tmp_path / "part"
    trainer.train("AttentionLSTM", cfg, str(full), epochs=2)
    at17 = weights.read_pickle(str(full / "AttentionLSTM_step17.pdopt"))["loss_scaler"]
    assert (float(at17["scale"][0]), at17["incr_count"]) == (2.0 ** (15 + 17 // 2), 17 % 2)
    # Resumed from step 17 (12 steps per epoch): the scaler goes on from its saved state.
    shutil.copytree(full, part)
    for name in os.listdir(part):
        if name.startswith("AttentionLSTM_epoch1") or name == "AttentionLSTM.pdparams":
            os.remove(part / name)
    trainer.train("AttentionLSTM", cfg, str(part), epochs=2, resume=str(part / "AttentionLSTM_step17"))
    ends = [weights.read_pickle(str(d / "AttentionLSTM_epoch1.pdopt"))["loss_scaler"] for d in (full, part)]
    assert float(ends[0]["scale"][0]) == float(ends[1]["scale"][0]) == 2.0 ** (15 + 24 // 2)
    assert ends[0]["incr_count"] == ends[1]["incr_count"] == 0
    a, b = (weights.read_state(str(d / "AttentionLSTM")) for d in (full, part))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_lstm_branch_of_an_autocast_region(monkeypatch):
    # On a GPU under --amp the input projections come out of autocast in bfloat16/float16, and
    # bidirectional() casts them to float32 for the recurrence (the fused kernel has no low-precision
    # kernel; 300 steps of accumulation in it are not measured safe). CPU has no autocast: the projections
    # are made to return bfloat16 here, as autocast would. The branch must then compute what the plain
    # path computes on the same rounded projections, forward and backward, with gradients (videotag's own
    # LSTM) and without (the fused kernel: evaluation).
    from video_tag.models import AttentionLSTM
    paddle.seed(1)
    model = AttentionLSTM(num_classes=3, feature_dims=[6], embedding_size=8, lstm_size=4, drop_rate=0.0,
                          fc_sizes=[8, 8])
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((3, 5, 6)).astype("float32"))
    projections = (model.rgb_fc_forward, model.rgb_fc_backward)

    def project_in_bfloat16(back_to_float32):
        for layer in projections:
            def forward(inputs, _layer=layer):
                y = type(_layer).forward(_layer, inputs).astype("bfloat16")
                return y.astype("float32") if back_to_float32 else y
            monkeypatch.setattr(layer, "forward", forward)

    def run():
        logits = model(x, [5, 2, 4])
        logits.sum().backward()
        grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
        model.clear_gradients()
        with paddle.no_grad():
            evaluated = model(x, [5, 2, 4])
        return logits, grads, evaluated

    project_in_bfloat16(back_to_float32=True)
    plain = run()
    project_in_bfloat16(back_to_float32=False)
    monkeypatch.setattr(paddle.amp, "is_autocast_enabled", lambda *a: True)
    branch = run()
    assert branch[0].dtype == branch[2].dtype == paddle.float32
    for k in (0, 2):
        np.testing.assert_allclose(branch[k].numpy(), plain[k].numpy(), rtol=1e-6, atol=1e-7)
    for k in plain[1]:
        np.testing.assert_allclose(branch[1][k], plain[1][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_low_precision_logits_reach_the_loss_as_float32(tiny_config, tmp_path, monkeypatch):
    # Under autocast on a GPU the classifier's logits come out in bfloat16 or float16; the trainer casts
    # them to float32 for the loss (which has no low-precision kernel for float32 labels). CPU has no
    # autocast: the model is made to return bfloat16 logits here, as autocast would.
    build = trainer.build_model

    def build_bfloat16(name, cfg):
        model = build(name, cfg)
        forward = model.forward
        monkeypatch.setattr(model, "forward", lambda *inputs: forward(*inputs).astype("bfloat16"))
        return model

    monkeypatch.setattr(trainer, "build_model", build_bfloat16)
    trainer.train("AttentionLSTM", load_config(tiny_config), str(tmp_path / "ck"), epochs=1, valid_interval=0)
    tuned = weights.read_state(str(tmp_path / "ck" / "AttentionLSTM"))
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in tuned.values())
