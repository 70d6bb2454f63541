"""The losses against independent numpy references: values and gradients with respect to the logits."""
import numpy as np
import paddle
import pytest

from video_tag.losses import sigmoid_cross_entropy_sum, weighted_sigmoid_cross_entropy_sum


def reference_bce(logits, targets, weights):
    """float64: sum of w * -(t log s(l) + (1 - t) log(1 - s(l))), and its gradient w * (s(l) - t), written
    from the definition (log s(l) = -log(1 + exp(-l)), log(1 - s(l)) = -l - log(1 + exp(-l)))."""
    l, t, w = (np.asarray(a, np.float64) for a in (logits, targets, weights))
    log_one_plus = np.logaddexp(0, -l)                                # log(1 + exp(-l)), stable
    entries = w * (t * log_one_plus + (1 - t) * (l + log_one_plus))
    return entries.sum(axis=1), w * (1 / (1 + np.exp(-l)) - t)


def test_weighted_soft_target_bce_matches_the_reference_with_its_gradient():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((4, 6)) * 4).astype(np.float32)
    logits[0, 0], logits[1, 1] = 30.0, -30.0  # saturated
    targets = rng.random((4, 6)).astype(np.float32)
    targets[2] = (targets[2] > 0.5)  # a row of hard labels
    weights = rng.choice([0.0, 0.3, 1.0, 2.5], size=(4, 6)).astype(np.float32)
    x = paddle.to_tensor(logits, stop_gradient=False)
    loss, per_video = weighted_sigmoid_cross_entropy_sum(x, paddle.to_tensor(targets), paddle.to_tensor(weights),
                                                         nranks=2)
    loss.backward()
    expected, gradient = reference_bce(logits, targets, weights)
    np.testing.assert_allclose(per_video.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert float(loss) == pytest.approx(2 * expected.sum(), rel=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), 2 * gradient, rtol=1e-4, atol=1e-6)


def test_hard_labels_and_unit_weights_give_the_plain_loss():
    rng = np.random.default_rng(1)
    logits = paddle.to_tensor(rng.standard_normal((3, 5)).astype(np.float32))
    labels = paddle.to_tensor((rng.random((3, 5)) > 0.6).astype(np.float32))
    plain = sigmoid_cross_entropy_sum(logits, labels)
    weighted = weighted_sigmoid_cross_entropy_sum(logits, labels, paddle.ones_like(labels))
    np.testing.assert_allclose(weighted[1].numpy(), plain[1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(reference_bce(logits.numpy(), labels.numpy(), np.ones((3, 5)))[0], plain[1].numpy(),
                               rtol=1e-5)
