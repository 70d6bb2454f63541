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


def release_weights(rng, scale=0.5):
    """A release-format parameter dict (fluid names, fc weights [in, out]) with random values."""
    def r(*shape):
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    return {
        "rgb_fc.w_0": r(F, E), "rgb_fc.b_0": r(E),
        "rgb_fc_forward.w_0": r(E, 4 * D),
        "rgb_lstm_forward.w_0": r(D, 4 * D), "rgb_lstm_forward.b_0": r(1, 7 * D),
        "rgb_fc_backward.w_0": r(E, 4 * D),
        "rgb_lstm_backward.w_0": r(D, 4 * D), "rgb_lstm_backward.b_0": r(1, 7 * D),
        "rgb_weight.w_0": r(2 * D, 1),
        "fc1.w_0": r(2 * D, FC[0]), "fc1.b_0": r(FC[0]),
        "fc2.w_0": r(FC[0], FC[1]), "fc2.b_0": r(FC[1]),
        "output.w_0": r(FC[1], C), "output.b_0": r(C),
    }


# ---- reference, from the GUIDE's equations, float64 --------------------------------------------
def ref_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 13.0)))


def ref_tanh(x):
    return 2.0 / (1.0 + np.exp(np.minimum(-2.0 * x, 40.0))) - 1.0


def ref_lstm(xproj, w, b, reverse):
    """fluid dynamic_lstm with peepholes on one video: xproj [T, 4D] -> h [T, D]."""
    d = w.shape[0]
    gate_bias, w_ic, w_fc, w_oc = b[0, :4 * d], b[0, 4 * d:5 * d], b[0, 5 * d:6 * d], b[0, 6 * d:]
    h, c = np.zeros(d), np.zeros(d)
    out = np.zeros((len(xproj), d))
    steps = range(len(xproj) - 1, -1, -1) if reverse else range(len(xproj))
    for t in steps:
        g = xproj[t] + gate_bias + h @ w
        g_c, g_i, g_f, g_o = g[:d], g[d:2 * d], g[2 * d:3 * d], g[3 * d:]
        cand = ref_tanh(g_c)
        i = ref_sigmoid(g_i + c * w_ic)
        f = ref_sigmoid(g_f + c * w_fc)
        c = cand * i + c * f
        o = ref_sigmoid(g_o + c * w_oc)
        h = o * ref_tanh(c)
        out[t] = h
    return out


def ref_probabilities(p, x):
    """Inference on one video x [T, F] -> sigmoid probabilities [C]."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    e = np.tanh(x @ p["rgb_fc.w_0"] + p["rgb_fc.b_0"])
    hf = ref_lstm(e @ p["rgb_fc_forward.w_0"], p["rgb_lstm_forward.w_0"], p["rgb_lstm_forward.b_0"], False)
    hb = ref_lstm(e @ p["rgb_fc_backward.w_0"], p["rgb_lstm_backward.w_0"], p["rgb_lstm_backward.b_0"], True)
    z = np.concatenate([hf, hb], axis=1) * 0.5          # downgrade_in_infer dropout at inference
    s = (z @ p["rgb_weight.w_0"])[:, 0]
    a = np.exp(s - s.max())
    a /= a.sum()
    v = (a[:, None] * z).sum(0)
    h1 = np.maximum(v @ p["fc1.w_0"] + p["fc1.b_0"], 0)
    h2 = np.tanh(h1 @ p["fc2.w_0"] + p["fc2.b_0"])
    return 1.0 / (1.0 + np.exp(-(h2 @ p["output.w_0"] + p["output.b_0"])))
# -------------------------------------------------------------------------------------------------


def make_model(num_classes=C):
    return AttentionLSTM(num_classes=num_classes, feature_dims=[F], embedding_size=E, lstm_size=D,
                         fc_sizes=FC)


def write_fluid_pickle(path, params):
    """Write as fluid.save did: a protocol-2 pickle of a plain dict of arrays."""
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=2)


def test_matches_reference_on_variable_lengths(tmp_path):
    rng = np.random.default_rng(0)
    params = release_weights(rng)
    write_fluid_pickle(tmp_path / "attention_lstm.pdparams", params)
    model = make_model()
    weights.load_weights(model, str(tmp_path / "attention_lstm"))   # path without the suffix
    model.eval()

    lengths = [9, 1, 5, 9]
    x = rng.standard_normal((len(lengths), 9, F)).astype(np.float32)
    x[1, 1:] = 1e3  # padding must not matter
    x[2, 5:] = -7.0
    with paddle.no_grad():
        probs = paddle.nn.functional.sigmoid(model(paddle.to_tensor(x), lengths)).numpy()
    ref = np.stack([ref_probabilities(params, x[b, :n]) for b, n in enumerate(lengths)])
    assert np.abs(probs - ref).max() <= 1e-5

    # Full-length batch (no packing) and one video at a time agree too.
    with paddle.no_grad():
        full = paddle.nn.functional.sigmoid(model(paddle.to_tensor(x[[0, 3]]), [9, 9])).numpy()
        one = paddle.nn.functional.sigmoid(model(paddle.to_tensor(x[2:3, :5]), [5])).numpy()
    assert np.abs(full - ref[[0, 3]]).max() <= 1e-5
    assert np.abs(one - ref[2:3]).max() <= 1e-5


def test_training_dropout_masks_without_rescaling():
    paddle.seed(1)
    model = make_model()
    model.train()
    z = paddle.ones([1000, 4])
    out = paddle.nn.functional.dropout(z, p=model.drop_rate, training=True, mode="downscale_in_infer")
    kept = out.numpy()[out.numpy() != 0]
    assert np.all(kept == 1.0) and 0.4 < kept.size / 4000 < 0.6


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
    rng = np.random.default_rng(2)
    a = make_model()
    weights.write_state(release_weights(rng), str(tmp_path / "w.pdparams"))
    weights.load_weights(a, str(tmp_path / "w.pdparams"))
    weights.write_state(weights.model_state(a), str(tmp_path / "again.pdparams"))
    assert sorted(weights.read_state(str(tmp_path / "again"))) == sorted(release_weights(rng))


def test_pretrain_skips_classifier_of_other_size(tmp_path, caplog):
    rng = np.random.default_rng(3)
    write_fluid_pickle(tmp_path / "release.pdparams", release_weights(rng))
    model = make_model(num_classes=3)
    skipped = weights.load_pretrain(model, str(tmp_path / "release"))
    assert skipped == ["output.w_0", "output.b_0"]
    assert "output.w_0, output.b_0" in caplog.text
    with pytest.raises(UserError, match="output.w_0 has shape"):
        weights.load_weights(model, str(tmp_path / "release"))
