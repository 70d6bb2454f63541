"""TSN: the first stage of VideoTag, a ResNet (50 / 101 / 152) applied to sparsely sampled frames.

Structure and parameter names follow the Paddle 1.8 original (GUIDE section 1), so the release
``tsn.pdparams`` loads by name: ``conv1_weights``, ``bn_conv1_scale``, ``res4b22_branch2c_weights``,
``bn4b22_branch2c_variance``, ..., ``fc_0.w_0``. Bottleneck blocks put the stride on the 3x3 conv and on
the projection shortcut; ReLU follows branch2a, branch2b and the residual add; BN epsilon 1e-5.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..losses import softmax_cross_entropy_mean
from ..metrics import TopkAccuracy
from ..optimizers import tsn_optimizer
from ..readers.video_reader import VideoReader
from .spec import ModelSpec

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
FEATURE_DIM = 2048


def block_names(num_layers):
    """Fluid names of the bottleneck blocks, stage by stage: [["res2a", "res2b", ...], ...]."""
    names = []
    for stage, depth in enumerate(DEPTHS[num_layers]):
        if num_layers in (101, 152) and stage == 2:
            names.append([f"res{stage + 2}a"] + [f"res{stage + 2}b{i}" for i in range(1, depth)])
        else:
            names.append([f"res{stage + 2}{chr(97 + i)}" for i in range(depth)])
    return names


class ConvBN(nn.Layer):
    """conv (no bias, padding (k-1)//2) + batch norm (+ ReLU). ``name`` is the conv's fluid name."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, relu=True, name=""):
        super().__init__()
        self.fluid_name = name
        self.relu = relu
        self.conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, epsilon=1e-5)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x

    def fluid_names(self):
        """``{state-dict key within this layer: fluid name}``."""
        bn = "bn_conv1" if self.fluid_name == "conv1" else "bn" + self.fluid_name[3:]
        return {"conv.weight": self.fluid_name + "_weights", "bn.weight": bn + "_scale",
                "bn.bias": bn + "_offset", "bn._mean": bn + "_mean", "bn._variance": bn + "_variance"}


class Bottleneck(nn.Layer):
    def __init__(self, in_channels, channels, stride, name):
        super().__init__()
        self.branch2a = ConvBN(in_channels, channels, 1, name=name + "_branch2a")
        self.branch2b = ConvBN(channels, channels, 3, stride=stride, name=name + "_branch2b")
        self.branch2c = ConvBN(channels, channels * 4, 1, relu=False, name=name + "_branch2c")
        self.branch1 = None
        if in_channels != channels * 4 or stride != 1:
            self.branch1 = ConvBN(in_channels, channels * 4, 1, stride=stride, relu=False, name=name + "_branch1")

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
        return F.relu(shortcut + self.branch2c(self.branch2b(self.branch2a(x))))


class ResNet(nn.Layer):
    """The TSN backbone: frames [N, 3, H, W] (normalised RGB) -> pooled features [N, 2048]."""

    def __init__(self, num_layers=101):
        super().__init__()
        if num_layers not in DEPTHS:
            raise ValueError(f"MODEL.num_layers must be one of {sorted(DEPTHS)}, got {num_layers}")
        self.conv1 = ConvBN(3, 64, 7, stride=2, name="conv1")
        blocks, in_channels = [], 64
        for stage, names in enumerate(block_names(num_layers)):
            channels = 64 * 2 ** stage
            for i, name in enumerate(names):
                blocks.append(Bottleneck(in_channels, channels, 2 if i == 0 and stage > 0 else 1, name))
                in_channels = channels * 4
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        x = self.blocks(x)
        return x.mean(axis=[2, 3])


class TSN(nn.Layer):
    """VideoTag's TSN.

    Args mirror ``MODEL`` in the YAML config: ``num_layers`` (50 / 101 / 152; 101 in the release),
    ``num_classes``.

    ``forward(frames)``: frames [B, S, 3, H, W] float32 (S segments, normalised RGB) -> logits [B, C]:
    the classifier ``fc_0`` on the mean of the S per-frame features; probabilities are ``softmax``.
    ``features(frames)``: the per-frame features [B, S, 2048] the extractor saves.
    """

    def __init__(self, num_classes=400, num_layers=101):
        super().__init__()
        self.num_layers = int(num_layers)
        self.backbone = ResNet(self.num_layers)
        self.fc_0 = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, frames):
        x = self.backbone(frames.flatten(0, 1))                                 # [B * S, 2048]
        # paddle.shape, not frames.shape: traced for export, B and S are unknown (-1) in the latter.
        return x.reshape([-1, paddle.shape(frames)[1], FEATURE_DIM])

    def forward(self, frames):
        return self.fc_0(self.features(frames).mean(axis=1))

    def fluid_names(self):
        """``{state_dict key: fluid parameter name}``, e.g. ``backbone.conv1.conv.weight -> conv1_weights``."""
        names = {"fc_0.weight": "fc_0.w_0", "fc_0.bias": "fc_0.b_0"}
        for prefix, layer in self.backbone.named_sublayers(prefix="backbone"):
            if isinstance(layer, ConvBN):
                names.update({f"{prefix}.{k}": v for k, v in layer.fluid_names().items()})
        return names


    def translate_state(self, state):
        """Rename a paddle.vision ImageNet ResNet checkpoint to fluid names; other files pass unchanged."""
        if "layer1.0.conv1.weight" not in state:
            return state
        names = vision_resnet_names(self.num_layers)
        return {names.get(key, key): value for key, value in state.items()}


def vision_resnet_names(num_layers):
    """``{paddle.vision ResNet key: fluid name}`` for the ImageNet checkpoints of paddle.vision.

    e.g. ``conv1.weight -> conv1_weights``, ``layer3.5.bn2._mean -> bn4f_branch2b_mean`` (ResNet50).
    """
    names = {"conv1.weight": "conv1_weights", "bn1.weight": "bn_conv1_scale", "bn1.bias": "bn_conv1_offset",
             "bn1._mean": "bn_conv1_mean", "bn1._variance": "bn_conv1_variance"}
    bn_fields = {"weight": "scale", "bias": "offset", "_mean": "mean", "_variance": "variance"}
    for stage, blocks in enumerate(block_names(num_layers)):
        for i, block in enumerate(blocks):
            convs = {"conv1": "_branch2a", "conv2": "_branch2b", "conv3": "_branch2c"}
            for conv, branch in convs.items():
                names[f"layer{stage + 1}.{i}.{conv}.weight"] = block + branch + "_weights"
                for field, fluid in bn_fields.items():
                    names[f"layer{stage + 1}.{i}.bn{conv[-1]}.{field}"] = f"bn{block[3:]}{branch}_{fluid}"
            if i == 0:
                names[f"layer{stage + 1}.0.downsample.0.weight"] = block + "_branch1_weights"
                for field, fluid in bn_fields.items():
                    names[f"layer{stage + 1}.0.downsample.1.{field}"] = f"bn{block[3:]}_branch1_{fluid}"
    return names


SPEC = ModelSpec(layer=TSN, reader=VideoReader, loss=softmax_cross_entropy_mean,
                 probabilities=lambda logits: F.softmax(logits, axis=-1), optimizer=tsn_optimizer,
                 metrics=lambda cfg: TopkAccuracy(topk=(1, 5)),
                 other_keys=frozenset({"name", "format", "topk", "seg_num", "seglen", "image_mean", "image_std"}))
