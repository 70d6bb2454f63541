"""Fluid's peephole LSTM (``dynamic_lstm``, peepholes on, h0 = c0 = 0) on packed sequences.

Per step, gate blocks ordered [candidate, input, forget, output] along the 4D axis (GUIDE section 1)::

    g   = x_t + b4 + h_{t-1} @ W             c~  = tanh(g_c)
    i   = sigmoid(g_i + c_{t-1} * W_ic)      f   = sigmoid(g_f + c_{t-1} * W_fc)
    c_t = c~ * i + c_{t-1} * f               o   = sigmoid(g_o + c_t * W_oc)      h_t = o * tanh(c_t)

with sigmoid inputs clipped to [-40, 13] as in Paddle's kernel. Two implementations of the same function:

* ``fused_lstm``: Paddle's fluid kernel ``_C_ops.lstm``. Its forward is exact, and it runs every forward
  pass without gradients (inference, eval, predict). Its backward is wrong in Paddle 3.3.1's CPU build
  for float32 whenever the hidden size is a multiple of 8 (VideoTag's is 512): the AVX path never adds
  the gradient arriving through h_t to the cell-state gradient, so the candidate, input and forget
  gates, W_ic and W_fc get exactly zero and everything upstream a wrong gradient. Float64 is right.
* ``OwnLSTM``: the same recurrence in Paddle ops with a hand-written backward through time (a
  ``PyLayer``), run for training wherever ``fused_backward_ok`` finds the kernel's gradients wrong.
  Chosen over the alternatives by measurement (bench/README.md): padding the hidden size to 513 makes
  the kernel take its correct scalar path but costs ~15% more LSTM time, float64 ~2.4x, while this one
  is *faster* than the kernel on CPU (it multiplies by a transposed copy of W, the GEMM orientation
  MKL runs ~2x faster at batch 32, and computes the weight gradient as one GEMM).
* ``padded_lstm``: the forward recurrence on a padded, time-major batch in one ``while_loop`` over a
  variable number of steps: the graph ``export`` traces (the fused kernel reads sequence boundaries
  from a LoD that a traced graph cannot carry, and a Python loop would unroll under ``to_static``).

``fused_backward_ok(place, dtype)`` compares a hidden-size-8 gradient with the float64 one, once per
device and dtype, so a Paddle release that fixes the kernel is used as is, and a GPU build is checked
the same way.
"""
import logging
import threading

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import _C_ops
from paddle.autograd import PyLayer

log = logging.getLogger(__name__)

_SIGMOID_CLIP = (-40.0, 13.0)


def fused_lstm(xproj, offsets, weight, bias, is_reverse, is_test):
    """Paddle's fused kernel. xproj [N, 4D] packed, offsets [0, T1, T1+T2, ..., N] -> h [N, D]."""
    # The kernel reads sequence boundaries from the tensor's LoD.
    xproj.value().get_tensor().set_lod([list(offsets)])
    hidden, _ = _C_ops.lstm(xproj, None, None, weight, bias, True, is_reverse, is_test,
                            "sigmoid", "tanh", "tanh")
    return hidden


# ---- the probe ----------------------------------------------------------------------------------
_PROBED = {}
_PROBE_LOCK = threading.Lock()


def fused_backward_ok(place, dtype):
    """Whether the fused kernel's gradients are right on ``place`` for ``dtype`` (cached per device kind).

    A hidden-size-8 LSTM on two packed sequences (both directions), its gradients against the same
    computation in float64. Float64 itself is trusted (``OwnLSTM`` is tested against an independent
    float64 reference). Costs a few milliseconds once.
    """
    key = (str(place).split(":")[0], str(dtype))
    with _PROBE_LOCK:
        if key not in _PROBED:
            _PROBED[key] = _probe(place, dtype)
            log.debug("fused LSTM kernel, %s %s: backward %s", key[0], key[1].replace("paddle.", ""),
                      "verified, used for training" if _PROBED[key] else
                      "WRONG in this Paddle build: training uses videotag's own LSTM backward")
        return _PROBED[key]


def _probe(place, dtype):
    if str(dtype) == "paddle.float64":
        return True
    hidden, offsets = 8, [0, 5, 12]
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-1, 1, shape) for shape in ((12, 4 * hidden), (hidden, 4 * hidden), (1, 7 * hidden))]
    weight_out = rng.uniform(-1, 1, (12, hidden))

    def grads(dt):
        with paddle.set_grad_enabled(True):
            x, w, b = [paddle.to_tensor(a, dtype=dt, place=place, stop_gradient=False) for a in arrays]
            out = paddle.to_tensor(weight_out, dtype=dt, place=place)
            for reverse in (False, True):
                (fused_lstm(x, offsets, w, b, reverse, False) * out).sum().backward()
            return [t.grad.numpy().astype("float64") for t in (x, w, b)]

    try:
        expected, got = grads("float64"), grads(dtype)
    except Exception as e:  # no float64 kernel on this device: nothing to check against, don't trust it
        log.info("fused LSTM probe could not run (%s)", e)
        return False
    return all(np.allclose(g, e, rtol=1e-3, atol=1e-4) for g, e in zip(got, expected))


# ---- our own recurrence -------------------------------------------------------------------------
class Schedule:
    """The order in which the recurrence visits packed sequences: step by step, all sequences at once.

    Sequences are taken longest first (stable), so the ``active[t]`` sequences still running at step
    t are the first rows of step t-1's. ``split`` turns packed rows [N, C] into one [active[t], C]
    tensor per step, in processing order (the reverse direction starts at each sequence's end);
    ``merge`` undoes it. When all sequences have the same length (the release's 300 frames) this is a
    reshape, otherwise a gather.
    """

    def __init__(self, offsets, reverse):
        offsets = np.asarray(offsets, "int64")
        lengths = np.diff(offsets)
        self.reverse = reverse
        self.batch, self.steps = len(lengths), int(lengths.max())
        self.equal = bool((lengths == self.steps).all())
        self.active = [int((lengths > t).sum()) for t in range(self.steps)]
        prev = np.arange(offsets[-1]) + (1 if reverse else -1)
        prev[offsets[1:] - 1 if reverse else offsets[:-1]] = offsets[-1]  # the zero row
        self.prev = paddle.to_tensor(prev)
        if not self.equal:
            order = np.argsort(-lengths, kind="stable")
            rows = np.concatenate([offsets[order[:k]] + (lengths[order[:k]] - 1 - t if reverse else t)
                                   for t, k in enumerate(self.active)])
            inverse = np.empty_like(rows)
            inverse[rows] = np.arange(len(rows))
            self.rows, self.inverse = paddle.to_tensor(rows), paddle.to_tensor(inverse)

    def split(self, packed):
        if self.equal:
            steps = paddle.unbind(packed.reshape([self.batch, self.steps, -1]), axis=1)
            return steps[::-1] if self.reverse else steps
        return paddle.split(paddle.gather(packed, self.rows), self.active, axis=0)

    def previous(self, packed):
        """For each packed row [N, C], the row of the same sequence's previous step (zeros at step 0)."""
        return paddle.gather(paddle.concat([packed, paddle.zeros([1, packed.shape[1]], packed.dtype)]),
                             self.prev)

    def merge(self, steps):
        if self.equal:
            steps = steps[::-1] if self.reverse else steps
            return paddle.stack(steps, axis=1).reshape([self.batch * self.steps, -1])
        return paddle.gather(paddle.concat(steps), self.inverse)


def _rows(bias, start, stop, rows):
    """``bias[:, start:stop]`` repeated on ``rows`` rows: same-shape ops are several times faster than
    broadcasting ones in Paddle's CPU kernels at these sizes."""
    return bias[:, start:stop].expand([rows, stop - start]).contiguous()


def _sigmoid(x):
    return F.sigmoid(paddle.clip(x, *_SIGMOID_CLIP))


def _forward_steps(xs, weight, bias, active):
    """The recurrence over per-step inputs xs ([active[t], 4D] each, ``Schedule.split``).

    Returns ``{name: [per-step tensor]}`` of what the backward pass needs: the gates (cand, i, f, o),
    c, tanh(c) and h.
    """
    d, k = weight.shape[0], active[0]
    w_t = weight.t().contiguous()  # h @ W as h @ (W^T)^T: MKL's faster orientation at small batch
    gate_bias, w_ic, w_fc, w_oc = (_rows(bias, a * d, b * d, k) for a, b in ((0, 4), (4, 5), (5, 6), (6, 7)))
    saved = {name: [] for name in ("cand", "i", "f", "o", "c", "tanh_c", "h")}
    h = c = None
    for t, (x, k) in enumerate(zip(xs, active)):
        if k < gate_bias.shape[0]:
            gate_bias, w_ic, w_fc, w_oc = gate_bias[:k], w_ic[:k], w_fc[:k], w_oc[:k]
            h, c = h[:k], c[:k]
        g = x + gate_bias
        if t:
            g = g + paddle.matmul(h, w_t, transpose_y=True)
        g_c, g_i, g_f, g_o = paddle.split(g, 4, axis=1)
        cand = paddle.tanh(g_c)
        if t:
            i = _sigmoid(g_i + c * w_ic)
            f = _sigmoid(g_f + c * w_fc)
            c = cand * i + c * f
        else:
            i, f = _sigmoid(g_i), _sigmoid(g_f)
            c = cand * i
        o = _sigmoid(g_o + c * w_oc)
        tanh_c = paddle.tanh(c)
        h = o * tanh_c
        for name, value in zip(saved, (cand, i, f, o, c, tanh_c, h)):
            saved[name].append(value)
    return saved


def _pad_rows(x, rows):
    return x if x.shape[0] == rows else F.pad(x, [0, rows - x.shape[0], 0, 0])


def _backward_steps(saved, dhs, weight, bias, active):
    """Backward through time. dhs: per-step gradients of the loss w.r.t. h (``Schedule.split`` order).

    Returns (per-step gradients w.r.t. the inputs, [active[t], 4D] each, which are also the gradients
    w.r.t. the gate pre-activations; the peephole gradients [1, 3D]).
    """
    d, k = weight.shape[0], active[0]
    w_ic, w_fc, w_oc = (_rows(bias, a * d, b * d, k) for a, b in ((4, 5), (5, 6), (6, 7)))
    cand, i, f, o, c, tanh_c, h = (saved[n] for n in ("cand", "i", "f", "o", "c", "tanh_c", "h"))
    dgates = [None] * len(active)
    dh_next = dc_next = None            # gradients carried from step t+1 to step t
    peep = [None, None, None]           # running sums of dW_ic, dW_fc, dW_oc terms, [rows, D]
    for t in range(len(active) - 1, -1, -1):
        k = active[t]
        dh = dhs[t]
        if dh_next is not None:
            dh = dh + _pad_rows(dh_next, k)   # sequences that end at step t join with zeros
        dh_o = dh * o[t]
        do = dh_o * tanh_c[t] * (1 - o[t])
        dc = dh_o * (1 - tanh_c[t] * tanh_c[t]) + do * w_oc[:k]
        if dc_next is not None:
            dc = dc + _pad_rows(dc_next, k)
        dc_i = dc * i[t]
        dcand = dc_i * (1 - cand[t] * cand[t])
        di = dc_i * cand[t] * (1 - i[t])
        terms = [None, None, do * c[t]]
        if t:
            c_prev = c[t - 1][:k]
            df = dc * c_prev * f[t] * (1 - f[t])
            terms[:2] = di * c_prev, df * c_prev
            dc_next = dc * f[t] + di * w_ic[:k] + df * w_fc[:k]
        else:
            df = paddle.zeros_like(dc)
        for n, term in enumerate(terms):
            if term is not None:
                peep[n] = term if peep[n] is None else _pad_rows(peep[n], k) + term
        dgates[t] = paddle.concat([dcand, di, df, do], axis=1)
        if t:
            dh_next = paddle.matmul(dgates[t], weight, transpose_y=True)
    peep = [paddle.matmul(paddle.ones([1, p.shape[0]], p.dtype), p) if p is not None
            else paddle.zeros([1, d], h[0].dtype) for p in peep]
    return dgates, paddle.concat(peep, axis=1)


class OwnLSTM(PyLayer):
    """Both directions of the peephole LSTM, forward and backward in Paddle ops (see the module doc).

    ``apply(x_fwd, x_bwd, w_fwd, b_fwd, w_bwd, b_bwd, offsets, parallel)``: x_* [N, 4D] packed
    projections, offsets [0, T1, ..., N]; returns (h_fwd [N, D], h_bwd [N, D]) aligned with the input
    (the reverse direction runs t = T-1 .. 0 within each sequence). With ``parallel`` the two
    directions run on two threads, forward and backward (Paddle keeps its math library on one thread
    unless told otherwise, and the recurrence is sequential by nature).
    """

    @staticmethod
    def forward(ctx, x_fwd, x_bwd, w_fwd, b_fwd, w_bwd, b_bwd, offsets, parallel):
        schedules = Schedule(offsets, False), Schedule(offsets, True)

        def direction(x, w, b, schedule):
            with paddle.no_grad():
                saved = _forward_steps(schedule.split(x), w, b, schedule.active)
                saved["packed_h"] = schedule.merge(saved["h"])
                return saved, saved["packed_h"]

        (saved_f, h_f), (saved_b, h_b) = run_both(
            lambda: direction(x_fwd, w_fwd, b_fwd, schedules[0]),
            lambda: direction(x_bwd, w_bwd, b_bwd, schedules[1]), parallel)
        ctx.saved = saved_f, saved_b
        ctx.schedules, ctx.parallel = schedules, parallel
        ctx.save_for_backward(w_fwd, b_fwd, w_bwd, b_bwd)
        return h_f, h_b

    @staticmethod
    def backward(ctx, dh_fwd, dh_bwd):
        w_fwd, b_fwd, w_bwd, b_bwd = ctx.saved_tensor()

        def direction(saved, dh, w, b, schedule):
            with paddle.no_grad():
                dhs = [paddle.zeros_like(h) for h in saved["h"]] if dh is None else schedule.split(dh)
                dgates, dpeep = _backward_steps(saved, dhs, w, b, schedule.active)
                dx = schedule.merge(dgates)                                     # [N, 4D]
                h_prev = schedule.previous(saved["packed_h"])          # [N, D]
                dw = paddle.matmul(h_prev, dx, transpose_x=True)                # sum_t h_{t-1}^T dg_t
                db = paddle.concat([paddle.matmul(paddle.ones([1, dx.shape[0]], dx.dtype), dx), dpeep], axis=1)
                return dx, dw, db

        (dx_f, dw_f, db_f), (dx_b, dw_b, db_b) = run_both(
            lambda: direction(ctx.saved[0], dh_fwd, w_fwd, b_fwd, ctx.schedules[0]),
            lambda: direction(ctx.saved[1], dh_bwd, w_bwd, b_bwd, ctx.schedules[1]), ctx.parallel)
        ctx.saved = None
        return dx_f, dx_b, dw_f, db_f, dw_b, db_b


def bidirectional(x, projections, lstms, offsets, parallel):
    """Both directions over packed x [N, E] -> (h_fwd, h_bwd), [N, D] each.

    ``projections``: the two input projections (E -> 4D, no bias); ``lstms``: the forward and reverse
    ``PeepholeLSTM``. The fused kernel runs every forward pass without gradients, and training where its
    backward is verified (``fused_backward_ok``); otherwise ``OwnLSTM`` does. ``parallel``: run the two
    directions on two threads. Inside a mixed-precision autocast region (``--amp``, video_tag/amp.py) the
    projections run in its low precision and the recurrence in float32 (h is float32): 300 steps of
    accumulation in float16/bfloat16 are not measured safe, and the fused kernel has no such kernel.
    """
    (proj_f, proj_b), (lstm_f, lstm_b) = projections, lstms
    params = [x, lstm_f.weight, lstm_f.bias, lstm_b.weight, lstm_b.bias]
    amp = paddle.amp.is_autocast_enabled()
    dtype = paddle.float32 if amp else x.dtype  # the recurrence's
    own = (paddle.is_grad_enabled() and not all(t.stop_gradient for t in params)
           and not fused_backward_ok(x.place, dtype))
    if amp:
        x_f, x_b = (t.astype(dtype) for t in run_both(lambda: proj_f(x), lambda: proj_b(x), parallel))
        with paddle.amp.auto_cast(enable=False, dtype=paddle.amp.get_autocast_dtype()):  # dtype: kept as is
            if own:
                return OwnLSTM.apply(x_f, x_b, lstm_f.weight, lstm_f.bias, lstm_b.weight, lstm_b.bias, offsets,
                                     parallel)
            return run_both(lambda: lstm_f(x_f, offsets), lambda: lstm_b(x_b, offsets), parallel)
    if own:
        x_f, x_b = run_both(lambda: proj_f(x), lambda: proj_b(x), parallel)
        return OwnLSTM.apply(x_f, x_b, lstm_f.weight, lstm_f.bias, lstm_b.weight, lstm_b.bias, offsets, parallel)
    return run_both(lambda: lstm_f(proj_f(x), offsets), lambda: lstm_b(proj_b(x), offsets), parallel)


def run_both(first, second, parallel):
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

    thread = threading.Thread(target=run, name="lstm_second_direction")
    thread.start()
    try:
        value = first()
    finally:
        thread.join()
    if "error" in result:
        raise result["error"]
    return value, result["value"]


class PeepholeLSTM(nn.Layer):
    """One direction's parameters, and its forward through the fused kernel.

    ``weight`` [D, 4D] (recurrent, gate blocks [candidate, input, forget, output]) and ``bias`` [1, 7D]
    (4D gate biases, then the peepholes W_ic, W_fc, W_oc): the release's shapes and names.
    ``forward(xproj [N, 4D], offsets)`` -> h [N, D] (the reverse direction runs t = T-1 .. 0 within each
    sequence; its output at t stays aligned with input t).
    """

    def __init__(self, hidden_size, is_reverse=False):
        super().__init__()
        self.hidden_size = hidden_size
        self.is_reverse = is_reverse
        self.weight = self.create_parameter([hidden_size, 4 * hidden_size])
        self.bias = self.create_parameter([1, 7 * hidden_size], is_bias=True)

    def forward(self, xproj, offsets):
        return fused_lstm(xproj, offsets, self.weight, self.bias, self.is_reverse, not self.training)


def padded_lstm(xproj, valid, weight, bias, is_reverse):
    """The recurrence on a padded batch, traceable by ``paddle.jit.to_static`` with variable T and B.

    xproj [T, B, 4D] time-major input projections; valid [T, B, 1] float, 1 on each sequence's steps
    (its first ones) and 0 on padding; weight [D, 4D], bias [1, 7D] as in ``PeepholeLSTM``.
    Returns h [T, B, D], zero at padded steps. The state is zeroed at every padded step, so the reverse
    direction (t = T-1 .. 0) starts from h0 = c0 = 0 at each sequence's own last step.
    """
    d = weight.shape[0]
    steps, batch = paddle.shape(xproj)[0], paddle.shape(xproj)[1]
    gate_bias, w_ic, w_fc, w_oc = bias[:, :4 * d], bias[:, 4 * d:5 * d], bias[:, 5 * d:6 * d], bias[:, 6 * d:]
    # Two tensors, not one: in dygraph, while_loop assigns each step's results into its initial values.
    h0, c0 = paddle.zeros([batch, d], xproj.dtype), paddle.zeros([batch, d], xproj.dtype)
    out = paddle.zeros([steps, batch, d], xproj.dtype)

    def step(t, h, c, out):
        k = steps - 1 - t if is_reverse else t                                  # [1]
        g = paddle.gather(xproj, k).squeeze(0) + gate_bias + paddle.matmul(h, weight)
        m = paddle.gather(valid, k).squeeze(0)                                  # [B, 1]
        i = _sigmoid(g[:, d:2 * d] + c * w_ic)
        f = _sigmoid(g[:, 2 * d:3 * d] + c * w_fc)
        c = (paddle.tanh(g[:, :d]) * i + c * f) * m
        h = _sigmoid(g[:, 3 * d:] + c * w_oc) * paddle.tanh(c) * m
        return t + 1, h, c, paddle.scatter(out, k, h.unsqueeze(0))

    start = paddle.zeros([1], "int64")
    _, _, _, out = paddle.static.nn.while_loop(lambda t, h, c, out: t < steps, step, [start, h0, c0, out])
    return out
