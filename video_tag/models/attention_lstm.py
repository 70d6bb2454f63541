"""AttentionLSTM: the second stage of VideoTag (bidirectional peephole LSTM + attention pooling + MLP).

Semantics follow the Paddle 1.8 original exactly (GUIDE section 1): fluid's ``dynamic_lstm`` with
peepholes (gate order candidate, input, forget, output), dropout in fluid's ``downgrade_in_infer`` mode
(training masks without rescaling, inference multiplies by ``1 - drop_rate``), and an attention softmax
over each video's own valid steps, so padded batches of videos of different lengths give the same
result as one video at a time.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..cpu import math_threads
from ..losses import sigmoid_cross_entropy_sum
from ..metrics import MultiLabelMetrics
from ..optimizers import attention_lstm_optimizer
from ..readers.feature_reader import FeatureReader
from .peephole_lstm import PeepholeLSTM, bidirectional
from .spec import ModelSpec

_NO_DECAY = paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.0))


class AttentionLSTM(nn.Layer):
    """VideoTag's AttentionLSTM.

    Args mirror ``MODEL`` in the YAML config: ``num_classes`` (3396 in the release),
    ``feature_dims`` ([2048]: the TSN feature width), ``embedding_size`` (1024), ``lstm_size`` (512,
    hidden size of each direction), ``drop_rate`` (0.5), ``fc_sizes`` ([8192, 4096]: the MLP after the
    attention pooling, fixed in the release; smaller only for tests).

    ``forward(features, lengths)``: features [B, T, F] float32 padded with anything after each video's
    length; lengths [B] int (a tensor, array or list, 1 <= length <= T). Returns logits [B, num_classes];
    probabilities are ``sigmoid(logits)``.
    """

    def __init__(self, num_classes=3396, feature_dims=(2048,), embedding_size=1024, lstm_size=512,
                 drop_rate=0.5, fc_sizes=(8192, 4096)):
        super().__init__()
        feature_dim = int(sum(feature_dims))
        self.drop_rate = float(drop_rate)
        self.rgb_fc = nn.Linear(feature_dim, embedding_size, bias_attr=_NO_DECAY)
        self.rgb_fc_forward = nn.Linear(embedding_size, 4 * lstm_size, bias_attr=False)
        self.rgb_lstm_forward = PeepholeLSTM(lstm_size, is_reverse=False)
        self.rgb_fc_backward = nn.Linear(embedding_size, 4 * lstm_size, bias_attr=False)
        self.rgb_lstm_backward = PeepholeLSTM(lstm_size, is_reverse=True)
        self.rgb_weight = nn.Linear(2 * lstm_size, 1, bias_attr=False)
        self.fc1 = nn.Linear(2 * lstm_size, fc_sizes[0], bias_attr=_NO_DECAY)
        self.fc2 = nn.Linear(fc_sizes[0], fc_sizes[1], bias_attr=_NO_DECAY)
        self.output = nn.Linear(fc_sizes[1], num_classes, bias_attr=_NO_DECAY)
        # With one math thread (Paddle's default) the two directions run on two threads on CPU: the
        # recurrences are sequential by nature and would leave a core idle. With more math threads the
        # GEMMs use the cores themselves, and two directions on top oversubscribe them (measured slower).
        self.parallel_directions = True

    def fluid_names(self):
        """``{state_dict key: fluid parameter name}``, e.g. ``rgb_fc.weight -> rgb_fc.w_0``."""
        suffix = {"weight": "w_0", "bias": "b_0"}
        return {key: f"{layer}.{suffix[kind]}" for key in self.state_dict()
                for layer, kind in [key.rsplit(".", 1)]}

    def forward(self, features, lengths):
        lengths = np.asarray(lengths.numpy() if isinstance(lengths, paddle.Tensor) else lengths, "int64")
        batch, steps = features.shape[0], features.shape[1]
        if lengths.shape != (batch,) or lengths.min() < 1 or lengths.max() > steps:
            raise ValueError(f"lengths {lengths.tolist()} do not fit features of shape {features.shape}")
        offsets = [0] + np.cumsum(lengths).tolist()
        full = bool((lengths == steps).all())
        # Pack the valid steps of all videos back to back: the LSTM never sees padding.
        rows = None if full else paddle.to_tensor(_valid_rows(lengths, steps))
        x = features.reshape([batch * steps, -1])
        if rows is not None:
            x = paddle.gather(x, rows)
        x = paddle.tanh(self.rgb_fc(x))                                        # [N, E]
        parallel = self.parallel_directions and x.place.is_cpu_place() and math_threads() == 1
        h_fwd, h_bwd = bidirectional(x, (self.rgb_fc_forward, self.rgb_fc_backward),   # [N, D] each
                                     (self.rgb_lstm_forward, self.rgb_lstm_backward), offsets, parallel)
        z = paddle.concat([h_fwd, h_bwd], axis=1)                              # [N, 2D]
        z = F.dropout(z, p=self.drop_rate, training=self.training, mode="downscale_in_infer")
        score = self.rgb_weight(z)                                             # [N, 1]
        if rows is None:
            score = score.reshape([batch, steps])
            z = z.reshape([batch, steps, -1])
        else:
            # Scatter back to [B, T]; padded steps get -inf scores, hence zero attention.
            score = paddle.scatter(paddle.full([batch * steps, 1], -np.inf, score.dtype), rows, score)
            score = score.reshape([batch, steps])
            z = paddle.scatter(paddle.zeros([batch * steps, z.shape[1]], z.dtype), rows, z)
            z = z.reshape([batch, steps, -1])
        attention = F.softmax(score, axis=1)                                   # [B, T]
        pooled = paddle.bmm(attention.unsqueeze(1), z).squeeze(1)              # [B, 2D]
        hidden = F.relu(self.fc1(pooled))
        hidden = paddle.tanh(self.fc2(hidden))
        return self.output(hidden)                                             # [B, C]


def _valid_rows(lengths, steps):
    """Row indices of the valid steps in a [B * T] flattening, video after video."""
    return np.concatenate([b * steps + np.arange(n) for b, n in enumerate(lengths)]).astype("int64")


SPEC = ModelSpec(layer=AttentionLSTM, reader=FeatureReader, loss=sigmoid_cross_entropy_sum,
                 probabilities=F.sigmoid, optimizer=attention_lstm_optimizer,
                 metrics=lambda cfg: MultiLabelMetrics(cfg["MODEL"]["num_classes"], top_k=20),
                 other_keys=frozenset({"name", "dataset", "bone_nework", "feature_num", "feature_names", "topk"}))
