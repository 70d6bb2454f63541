"""AttentionLSTM: the second stage of VideoTag (bidirectional peephole LSTM + attention pooling + MLP).

Semantics follow the Paddle 1.8 original exactly (GUIDE section 1): fluid's ``dynamic_lstm`` with
peepholes (gate order candidate, input, forget, output), dropout in fluid's ``downgrade_in_infer`` mode
(training masks without rescaling, inference multiplies by ``1 - drop_rate``), and an attention softmax
over each video's own valid steps, so padded batches of videos of different lengths give the same
result as one video at a time.
"""
import threading

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import _C_ops

_NO_DECAY = paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.0))


class PeepholeLSTM(nn.Layer):
    """One direction of fluid's ``dynamic_lstm`` (peepholes on, h0 = c0 = 0), on packed sequences.

    Parameters: ``weight`` [D, 4D] (recurrent, gate blocks [candidate, input, forget, output]) and
    ``bias`` [1, 7D] (4D gate biases, then the peepholes W_ic, W_fc, W_oc).
    """

    def __init__(self, hidden_size, is_reverse=False):
        super().__init__()
        self.hidden_size = hidden_size
        self.is_reverse = is_reverse
        self.weight = self.create_parameter([hidden_size, 4 * hidden_size])
        self.bias = self.create_parameter([1, 7 * hidden_size], is_bias=True)

    def forward(self, xproj, offsets):
        """xproj: [N, 4D] input projections of all videos packed back to back; offsets: [0, T1, T1+T2, ..., N].

        Returns h: [N, D], aligned with xproj (the reverse direction runs t = T-1 .. 0 within each video).
        """
        # The fused fluid kernel reads sequence boundaries from the tensor's LoD.
        xproj.value().get_tensor().set_lod([offsets])
        hidden, _ = _C_ops.lstm(xproj, None, None, self.weight, self.bias, True, self.is_reverse,
                                not self.training, "sigmoid", "tanh", "tanh")
        return hidden


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
                 drop_rate=0.5, fc_sizes=(8192, 4096), **unused):
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
        # On CPU the two directions run on two threads: Paddle keeps its math library on one thread
        # unless told otherwise, so the recurrences (sequential by nature) would leave a core idle.
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
        h_fwd, h_bwd = _both(                                                  # [N, D] each
            lambda: self.rgb_lstm_forward(self.rgb_fc_forward(x), offsets),
            lambda: self.rgb_lstm_backward(self.rgb_fc_backward(x), offsets),
            parallel=self.parallel_directions and x.place.is_cpu_place())
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


def _both(first, second, parallel):
    """``(first(), second())``, the second on another thread when ``parallel`` (same results either way:
    each builds its own part of the autograd graph; the kernels release the GIL)."""
    if not parallel:
        return first(), second()
    result, grad_enabled = {}, paddle.is_grad_enabled()

    def run():
        try:
            with paddle.set_grad_enabled(grad_enabled):  # grad mode is per thread
                result["value"] = second()
        except BaseException as e:  # re-raised in the calling thread
            result["error"] = e

    thread = threading.Thread(target=run, name="attention_lstm_backward_direction")
    thread.start()
    try:
        value = first()
    finally:
        thread.join()
    if "error" in result:
        raise result["error"]
    return value, result["value"]


def _valid_rows(lengths, steps):
    """Row indices of the valid steps in a [B * T] flattening, video after video."""
    return np.concatenate([b * steps + np.arange(n) for b, n in enumerate(lengths)]).astype("int64")
