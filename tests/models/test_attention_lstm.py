"""AttentionLSTM against an independent numpy reference written from GUIDE section 1 (not from our model)."""
import pickle

import numpy as np
import paddle
import pytest

from video_tag import weights
from video_tag.errors import UserError
from video_tag.models.attention_lstm import AttentionLSTM

F, E, D, C = 24, 16, 8, 7          # feature width, embedding, LSTM hidden, classes
FC = (32, 16)


def release_weights(rng, scale=0.5, lstm_scale=None):
    """A release-format parameter dict (fluid names, fc weights [in, out]) with random values.

    ``lstm_scale`` (default ``scale``): the scale of the LSTM's input projections, recurrent weights and
    biases; large values drive the gate pre-activations past the sigmoid clamp at 13.
    """
    def r(*shape, s=scale):
        return (rng.standard_normal(shape) * s).astype(np.float32)
    lstm = scale if lstm_scale is None else lstm_scale
    return {
        "rgb_fc.w_0": r(F, E), "rgb_fc.b_0": r(E),
        "rgb_fc_forward.w_0": r(E, 4 * D, s=lstm),
        "rgb_lstm_forward.w_0": r(D, 4 * D, s=lstm), "rgb_lstm_forward.b_0": r(1, 7 * D, s=lstm),
        "rgb_fc_backward.w_0": r(E, 4 * D, s=lstm),
        "rgb_lstm_backward.w_0": r(D, 4 * D, s=lstm), "rgb_lstm_backward.b_0": r(1, 7 * D, s=lstm),
        "rgb_weight.w_0": r(2 * D, 1),
        "fc1.w_0": r(2 * D, FC[0]), "fc1.b_0": r(FC[0]),
        "fc2.w_0": r(FC[0], FC[1]), "fc2.b_0": r(FC[1]),
        "output.w_0": r(FC[1], C), "output.b_0": r(C),
    }


# ---- reference, from the GUIDE's equations, float64 --------------------------------------------
def ref_sigmoid(x, clamp=True):
    return 1.0 / (1.0 + np.exp(-(np.clip(x, -40.0, 13.0) if clamp else x)))


def ref_tanh(x):
    return 2.0 / (1.0 + np.exp(np.minimum(-2.0 * x, 40.0))) - 1.0


def ref_lstm(xproj, w, b, reverse, clamp=True, peaks=None):
    """fluid dynamic_lstm with peepholes on one video: xproj [T, 4D] -> h [T, D].

    ``clamp=False``: sigmoid without the kernel's clamp (to show that a test reaches it); ``peaks``: a
    list that receives every sigmoid input."""
    d = w.shape[0]
    gate_bias, w_ic, w_fc, w_oc = b[0, :4 * d], b[0, 4 * d:5 * d], b[0, 5 * d:6 * d], b[0, 6 * d:]
    h, c = np.zeros(d), np.zeros(d)
    out = np.zeros((len(xproj), d))
    steps = range(len(xproj) - 1, -1, -1) if reverse else range(len(xproj))
    for t in steps:
        g = xproj[t] + gate_bias + h @ w
        g_c, g_i, g_f, g_o = g[:d], g[d:2 * d], g[2 * d:3 * d], g[3 * d:]
        cand = ref_tanh(g_c)
        i = ref_sigmoid(g_i + c * w_ic, clamp)
        f = ref_sigmoid(g_f + c * w_fc, clamp)
        if peaks is not None:
            peaks.extend([g_i + c * w_ic, g_f + c * w_fc])
        c = cand * i + c * f
        o = ref_sigmoid(g_o + c * w_oc, clamp)
        if peaks is not None:
            peaks.append(g_o + c * w_oc)
        h = o * ref_tanh(c)
        out[t] = h
    return out


def ref_logits(p, x, keep=0.5, clamp=True, peaks=None):
    """One video x [T, F] -> logits [C].

    ``keep``: what dropout multiplies z [T, 2D] by: 0.5 at inference (downgrade_in_infer), the 0/1 mask
    in training (no rescaling)."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    e = np.tanh(x @ p["rgb_fc.w_0"] + p["rgb_fc.b_0"])
    hf = ref_lstm(e @ p["rgb_fc_forward.w_0"], p["rgb_lstm_forward.w_0"], p["rgb_lstm_forward.b_0"], False,
                  clamp, peaks)
    hb = ref_lstm(e @ p["rgb_fc_backward.w_0"], p["rgb_lstm_backward.w_0"], p["rgb_lstm_backward.b_0"], True,
                  clamp, peaks)
    z = np.concatenate([hf, hb], axis=1) * keep
    s = (z @ p["rgb_weight.w_0"])[:, 0]
    a = np.exp(s - s.max())
    a /= a.sum()
    v = (a[:, None] * z).sum(0)
    h1 = np.maximum(v @ p["fc1.w_0"] + p["fc1.b_0"], 0)
    h2 = np.tanh(h1 @ p["fc2.w_0"] + p["fc2.b_0"])
    return h2 @ p["output.w_0"] + p["output.b_0"]
# -------------------------------------------------------------------------------------------------


def make_model(num_classes=C):
    return AttentionLSTM(num_classes=num_classes, feature_dims=[F], embedding_size=E, lstm_size=D,
                         fc_sizes=FC)


def write_fluid_pickle(path, params):
    """Write as fluid.save did: a protocol-2 pickle of a plain dict of arrays."""
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=2)


def relative_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def test_matches_reference_on_variable_lengths(tmp_path):
    # LSTM weights large enough that many gate pre-activations lie past the sigmoid clamp at 13, where
    # the clamp changes the logits ~10x more than float32 rounding does: the test sees the clamp.
    rng = np.random.default_rng(0)
    params = release_weights(rng, lstm_scale=12.0)
    write_fluid_pickle(tmp_path / "attention_lstm.pdparams", params)
    model = make_model()
    weights.load_weights(model, str(tmp_path / "attention_lstm"))   # path without the suffix
    model.eval()

    lengths = [9, 1, 5, 9]
    x = rng.standard_normal((len(lengths), 9, F)).astype(np.float32)
    x[1, 1:] = 1e3  # padding must not matter
    x[2, 5:] = -7.0
    peaks = []
    ref = np.stack([ref_logits(params, x[b, :n], peaks=peaks) for b, n in enumerate(lengths)])
    unclamped = np.stack([ref_logits(params, x[b, :n], clamp=False) for b, n in enumerate(lengths)])
    peaks = np.concatenate(peaks)
    assert (peaks > 13).mean() > 0.2 and (peaks < -13).mean() > 0.2
    assert relative_error(unclamped, ref) > 1e-6

    # Without gradients the fused kernel runs (eval, predict); with them, the LSTM that training uses.
    for grad in (False, True):
        with paddle.set_grad_enabled(grad):
            logits = model(paddle.to_tensor(x), lengths).numpy()
        assert relative_error(logits, ref) <= 4e-7, f"gradients enabled: {grad}"

    # Full-length batch (no packing) and one video at a time agree too.
    with paddle.no_grad():
        full = model(paddle.to_tensor(x[[0, 3]]), [9, 9]).numpy()
        one = model(paddle.to_tensor(x[2:3, :5]), [5]).numpy()
    assert relative_error(full, ref[[0, 3]]) <= 4e-7
    assert relative_error(one, ref[2:3]) <= 4e-7
    with paddle.no_grad():
        probs = paddle.nn.functional.sigmoid(model(paddle.to_tensor(x), lengths)).numpy()
    assert np.abs(probs - 1.0 / (1.0 + np.exp(-ref))).max() <= 1e-5


def test_training_dropout_masks_without_rescaling():
    # In training the model drops elements of z = [h_fwd, h_bwd] (packed valid steps [N, 2D]) without
    # rescaling the kept ones. The mask is drawn again from the same seed, assuming the model's dropout
    # is its only random draw and acts on the packed [N, 2D] z.
    rng = np.random.default_rng(1)
    params = release_weights(rng)
    model = make_model()
    for name, param in weights.fluid_params(model).items():
        param.set_value(params[name])
    lengths = [6, 2, 4]
    x = rng.standard_normal((len(lengths), 6, F)).astype(np.float32)
    model.train()
    paddle.seed(7)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x), lengths).numpy()
    paddle.seed(7)
    mask = paddle.nn.functional.dropout(paddle.ones([sum(lengths), 2 * D]), p=0.5, training=True).numpy()
    mask = (mask != 0).astype(np.float64)
    assert 0.3 < mask.mean() < 0.7
    offsets = np.cumsum([0] + lengths)
    ref = np.stack([ref_logits(params, x[b, :n], keep=mask[offsets[b]:offsets[b + 1]])
                    for b, n in enumerate(lengths)])
    assert relative_error(logits, ref) <= 1e-6
    # ...and the same drop rate, scaled by 0.5 at inference, is not what training computes.
    inference = np.stack([ref_logits(params, x[b, :n]) for b, n in enumerate(lengths)])
    assert relative_error(inference, ref) > 1e-2


def test_backward_reaches_every_parameter():
    model = make_model()
    model.train()
    x = paddle.randn([3, 6, F])
    loss = model(x, [6, 2, 4]).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), name
        assert np.abs(p.grad.numpy()).sum() > 0, name


def test_round_trip_of_own_checkpoint(tmp_path):
    params = release_weights(np.random.default_rng(2))
    a = make_model()
    weights.write_state(params, str(tmp_path / "w.pdparams"))
    weights.load_weights(a, str(tmp_path / "w.pdparams"))
    weights.write_state(weights.model_state(a), str(tmp_path / "again.pdparams"))
    again = weights.read_state(str(tmp_path / "again"))
    assert sorted(again) == sorted(params)
    for name, value in params.items():
        assert again[name].dtype == np.float32, name
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_pretrain_skips_classifier_of_other_size(tmp_path, caplog):
    rng = np.random.default_rng(3)
    write_fluid_pickle(tmp_path / "release.pdparams", release_weights(rng))
    model = make_model(num_classes=3)
    skipped = weights.load_pretrain(model, str(tmp_path / "release"))
    assert skipped == ["output.w_0", "output.b_0"]
    assert "output.w_0, output.b_0" in caplog.text
    with pytest.raises(UserError, match="output.w_0 has shape"):
        weights.load_weights(model, str(tmp_path / "release"))
