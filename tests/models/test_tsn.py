"""TSN against an independent reference: functional conv / batch-norm ops on the named arrays of a
release-format weight file, walked by the naming scheme of GUIDE section 1 (not by our model code)."""
import pickle

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from video_tag import weights
from video_tag.models.tsn import TSN, vision_resnet_names

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def ref_block_names(layers):
    """GUIDE: letters everywhere, except stage 4 of ResNet101/152: res4a, res4b1, res4b2, ..."""
    out = []
    for stage, depth in zip((2, 3, 4, 5), DEPTHS[layers]):
        for i in range(depth):
            if stage == 4 and layers in (101, 152):
                out.append((stage, i, "res4a" if i == 0 else f"res4b{i}"))
            else:
                out.append((stage, i, f"res{stage}{'abcdefghijklmnopqrstuvwxyz'[i]}"))
    return out


def release_weights(layers, num_classes, rng):
    """A release-format dict: every conv [out, in, k, k] + its bn, He-scaled so activations stay sane."""
    p = {}

    def conv_bn(conv, bn, cin, cout, k, gain=1.0):
        p[conv + "_weights"] = (rng.standard_normal((cout, cin, k, k)) * gain * np.sqrt(2.0 / (cin * k * k))
                                ).astype(np.float32)
        p[bn + "_scale"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        p[bn + "_offset"] = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
        p[bn + "_mean"] = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
        p[bn + "_variance"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)

    conv_bn("conv1", "bn_conv1", 3, 64, 7)
    cin = 64
    for stage, i, name in ref_block_names(layers):
        width = 64 * 2 ** (stage - 2)
        bn = "bn" + name[3:]
        conv_bn(name + "_branch2a", bn + "_branch2a", cin, width, 1)
        conv_bn(name + "_branch2b", bn + "_branch2b", width, width, 3)
        conv_bn(name + "_branch2c", bn + "_branch2c", width, width * 4, 1, gain=0.2)
        if i == 0:
            conv_bn(name + "_branch1", bn + "_branch1", cin, width * 4, 1)
        cin = width * 4
    p["fc_0.w_0"] = (rng.standard_normal((2048, num_classes)) * 0.05).astype(np.float32)
    p["fc_0.b_0"] = (rng.standard_normal(num_classes) * 0.1).astype(np.float32)
    return p


def ref_features(p, layers, x):
    """frames [N, 3, H, W] -> [N, 2048], from the named arrays with functional ops."""
    t = {k: paddle.to_tensor(v) for k, v in p.items()}

    def conv_bn(x, conv, bn, stride, relu):
        k = t[conv + "_weights"].shape[-1]
        y = F.conv2d(x, t[conv + "_weights"], stride=stride, padding=(k - 1) // 2)
        y = F.batch_norm(y, t[bn + "_mean"], t[bn + "_variance"], t[bn + "_scale"], t[bn + "_offset"],
                         training=False, epsilon=1e-5)
        return F.relu(y) if relu else y

    x = conv_bn(paddle.to_tensor(x), "conv1", "bn_conv1", 2, True)
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, i, name in ref_block_names(layers):
        stride = 2 if i == 0 and stage > 2 else 1
        bn = "bn" + name[3:]
        y = conv_bn(x, name + "_branch2a", bn + "_branch2a", 1, True)
        y = conv_bn(y, name + "_branch2b", bn + "_branch2b", stride, True)
        y = conv_bn(y, name + "_branch2c", bn + "_branch2c", 1, False)
        short = conv_bn(x, name + "_branch1", bn + "_branch1", stride, False) if i == 0 else x
        x = F.relu(short + y)
    return F.adaptive_avg_pool2d(x, 1).flatten(1).numpy()


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("layers", [50, 101])
def test_features_and_classifier_match_reference(tmp_path, layers):
    rng = np.random.default_rng(layers)
    params = release_weights(layers, 6, rng)
    with open(tmp_path / "tsn.pdparams", "wb") as f:
        pickle.dump(params, f, protocol=2)
    model = TSN(num_classes=6, num_layers=layers)
    weights.load_weights(model, str(tmp_path / "tsn"))
    model.eval()
    frames = rng.standard_normal((2, 3, 3, 64, 64)).astype(np.float32)   # [B, S, 3, H, W]
    with paddle.no_grad():
        feats = model.features(paddle.to_tensor(frames)).numpy()
        probs = F.softmax(model(paddle.to_tensor(frames)), axis=-1).numpy()
    ref = ref_features(params, layers, frames.reshape(6, 3, 64, 64)).reshape(2, 3, 2048)
    assert rel_err(feats, ref) <= 1e-4
    logits = ref.mean(axis=1) @ params["fc_0.w_0"] + params["fc_0.b_0"]
    ref_probs = np.exp(logits - logits.max(1, keepdims=True))
    ref_probs /= ref_probs.sum(1, keepdims=True)
    assert rel_err(probs, ref_probs) <= 1e-4


@pytest.mark.parametrize("layers,count", [(50, 267), (101, 522), (152, 777)])
def test_parameter_names_match_the_release_scheme(layers, count):
    model = TSN(num_classes=400, num_layers=layers)
    names = set(model.fluid_names().values())
    expected = set(release_weights_names(layers))
    assert names == expected and len(names) == count


def release_weights_names(layers):
    names = ["conv1_weights"] + [f"bn_conv1_{f}" for f in ("scale", "offset", "mean", "variance")]
    for stage, i, name in ref_block_names(layers):
        for branch in ["_branch2a", "_branch2b", "_branch2c"] + (["_branch1"] if i == 0 else []):
            names.append(name + branch + "_weights")
            names += [f"bn{name[3:]}{branch}_{f}" for f in ("scale", "offset", "mean", "variance")]
    return names + ["fc_0.w_0", "fc_0.b_0"]


def test_imagenet_names_cover_the_backbone():
    vision = paddle.vision.models.resnet50(pretrained=False)
    mapping = vision_resnet_names(50)
    keys = [k for k in vision.state_dict() if not k.startswith("fc.")]
    assert sorted(keys) == sorted(mapping)
    assert set(mapping.values()) == set(release_weights_names(50)) - {"fc_0.w_0", "fc_0.b_0"}


def test_pretrain_from_a_paddle_vision_imagenet_checkpoint(tmp_path, caplog):
    vision = paddle.vision.models.resnet50(pretrained=False)
    paddle.save(vision.state_dict(), str(tmp_path / "resnet50.pdparams"))
    model = TSN(num_classes=3, num_layers=50)
    skipped = weights.load_pretrain(model, str(tmp_path / "resnet50.pdparams"))
    assert sorted(skipped) == ["fc.bias", "fc.weight"]
    ours = model.state_dict()
    np.testing.assert_array_equal(ours["backbone.blocks.5.branch2b.bn._mean"].numpy(),
                                  vision.state_dict()["layer2.2.bn2._mean"].numpy())
    np.testing.assert_array_equal(ours["backbone.conv1.conv.weight"].numpy(),
                                  vision.state_dict()["conv1.weight"].numpy())
