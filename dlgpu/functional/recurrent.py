"""Whole-sequence recurrent ops (RNN, LSTM x3, GRU x2, MGU) as torch custom ops with autograd.

Sequences are time-major: input [T, B, I], states [B, H]; weights in torch.nn's shapes. Each
forward also returns the kernel's workspace (the saved gates), which autograd keeps for BPTT.
"""

from __future__ import annotations

from torch import Tensor

from ..reference._validate import check_choice
from ._common import autocast, check_same_dtype, check_tensor, dlgpu_op, run, zeros_if_none

# --------------------------------------------------------------------------- RNN


@dlgpu_op("rnn", mutates_args=())
def _rnn(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, nonlinearity: str
) -> tuple[Tensor, Tensor]:
    return run("rnn_forward", x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity)


@_rnn.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity):  # noqa: ANN001, ANN202
    return x.new_empty((x.shape[0], x.shape[1], w_hh.shape[1])), h0.new_empty(h0.shape)


@dlgpu_op("rnn_backward", mutates_args=())
def _rnn_backward(
    d_out: Tensor, d_hn: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, out: Tensor, nonlinearity: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return run("rnn_backward", d_out, d_hn, x, h0, w_ih, w_hh, out, nonlinearity)


@_rnn_backward.register_fake
def _(d_out, d_hn, x, h0, w_ih, w_hh, out, nonlinearity):  # noqa: ANN001, ANN202
    g = w_hh.new_empty((w_hh.shape[0],))
    return (*(t.new_empty(t.shape) for t in (x, h0, w_ih, w_hh)), g, g.clone())


def _rnn_setup(ctx, inputs, output):  # noqa: ANN001
    x, h0, w_ih, w_hh, b_ih, b_hh, ctx.nonlinearity = inputs
    ctx.save_for_backward(x, h0, w_ih, w_hh, output[0])
    ctx.biases = (b_ih is not None, b_hh is not None)


def _rnn_bwd(ctx, d_out, d_hn):  # noqa: ANN001, ANN202
    x, h0, w_ih, w_hh, out = ctx.saved_tensors
    dx, dh0, dwi, dwh, dbi, dbh = _rnn_backward(
        zeros_if_none(d_out, out), zeros_if_none(d_hn, h0), x, h0, w_ih, w_hh, out, ctx.nonlinearity
    )
    return dx, dh0, dwi, dwh, dbi if ctx.biases[0] else None, dbh if ctx.biases[1] else None, None


_rnn.register_autograd(_rnn_bwd, setup_context=_rnn_setup)

# -------------------------------------------------------------------------- LSTM


@dlgpu_op("lstm", mutates_args=())
def _lstm(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
    w_peep: Tensor | None, variant: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    return run("lstm_forward", x, h0, c0, w_ih, w_hh, b_ih, b_hh, weight_peephole=w_peep, variant=variant)


@_lstm.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, variant):  # noqa: ANN001, ANN202
    t, b, h = x.shape[0], x.shape[1], w_hh.shape[1]
    g = w_hh.shape[0] // h
    return x.new_empty((t, b, h)), h0.new_empty(h0.shape), c0.new_empty(c0.shape), x.new_empty((t, b, (g + 1) * h))


@dlgpu_op("lstm_backward", mutates_args=())
def _lstm_backward(
    d_out: Tensor, d_hn: Tensor, d_cn: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
    out: Tensor, ws: Tensor, w_peep: Tensor | None, variant: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    grads = run(
        "lstm_backward", d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, out, ws, weight_peephole=w_peep, variant=variant
    )
    # a custom op returns tensors only: no peephole gradient becomes an empty tensor
    return (*grads[:7], grads[7] if grads[7] is not None else x.new_empty((0,)))


@_lstm_backward.register_fake
def _(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, out, ws, w_peep, variant):  # noqa: ANN001, ANN202
    g = w_hh.new_empty((w_hh.shape[0],))
    dp = w_peep.new_empty(w_peep.shape) if w_peep is not None else x.new_empty((0,))
    return (x.new_empty(x.shape), h0.new_empty(h0.shape), c0.new_empty(c0.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), g, g.clone(), dp)  # fmt: skip


def _lstm_setup(ctx, inputs, output):  # noqa: ANN001
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, ctx.variant = inputs
    ctx.mark_non_differentiable(output[3])
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, output[0], output[3], w_peep)
    ctx.biases = (b_ih is not None, b_hh is not None)


def _lstm_bwd(ctx, d_out, d_hn, d_cn, _d_ws):  # noqa: ANN001, ANN202
    x, h0, c0, w_ih, w_hh, out, ws, w_peep = ctx.saved_tensors
    dx, dh0, dc0, dwi, dwh, dbi, dbh, dwp = _lstm_backward(
        zeros_if_none(d_out, out), zeros_if_none(d_hn, h0), zeros_if_none(d_cn, c0),
        x, h0, c0, w_ih, w_hh, out, ws, w_peep, ctx.variant,
    )  # fmt: skip
    return (dx, dh0, dc0, dwi, dwh, dbi if ctx.biases[0] else None, dbh if ctx.biases[1] else None,
            dwp if w_peep is not None else None, None)  # fmt: skip


_lstm.register_autograd(_lstm_bwd, setup_context=_lstm_setup)

# ---------------------------------------------------------------- GRU and MGU


@dlgpu_op("gated", mutates_args=())
def _gated(
    cell: str, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
    variant: str,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    extra = {"variant": variant} if cell == "gru" else {}
    return run(f"{cell}_forward", x, h0, w_ih, w_hh, b_ih, b_hh, **extra)


_WS_BLOCKS = {("gru", "cudnn"): 4, ("gru", "cho"): 3, ("mgu", ""): 2}


@_gated.register_fake
def _(cell, x, h0, w_ih, w_hh, b_ih, b_hh, variant):  # noqa: ANN001, ANN202
    t, b, h = x.shape[0], x.shape[1], w_hh.shape[1]
    return x.new_empty((t, b, h)), h0.new_empty(h0.shape), x.new_empty((t, b, _WS_BLOCKS[(cell, variant)] * h))


@dlgpu_op("gated_backward", mutates_args=())
def _gated_backward(
    cell: str, d_out: Tensor, d_hn: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, out: Tensor,
    ws: Tensor, variant: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    extra = {"variant": variant} if cell == "gru" else {}
    return run(f"{cell}_backward", d_out, d_hn, x, h0, w_ih, w_hh, out, ws, **extra)


@_gated_backward.register_fake
def _(cell, d_out, d_hn, x, h0, w_ih, w_hh, out, ws, variant):  # noqa: ANN001, ANN202
    g = w_hh.new_empty((w_hh.shape[0],))
    return (*(t.new_empty(t.shape) for t in (x, h0, w_ih, w_hh)), g, g.clone())


def _gated_setup(ctx, inputs, output):  # noqa: ANN001
    ctx.cell, x, h0, w_ih, w_hh, b_ih, b_hh, ctx.variant = inputs
    ctx.mark_non_differentiable(output[2])
    ctx.save_for_backward(x, h0, w_ih, w_hh, output[0], output[2])
    ctx.biases = (b_ih is not None, b_hh is not None)


def _gated_bwd(ctx, d_out, d_hn, _d_ws):  # noqa: ANN001, ANN202
    x, h0, w_ih, w_hh, out, ws = ctx.saved_tensors
    dx, dh0, dwi, dwh, dbi, dbh = _gated_backward(
        ctx.cell, zeros_if_none(d_out, out), zeros_if_none(d_hn, h0), x, h0, w_ih, w_hh, out, ws, ctx.variant
    )
    return None, dx, dh0, dwi, dwh, dbi if ctx.biases[0] else None, dbh if ctx.biases[1] else None, None


_gated.register_autograd(_gated_bwd, setup_context=_gated_setup)

# ------------------------------------------------------------------ public API


def _state(h: Tensor | None, input: Tensor, weight_hh: Tensor, name: str) -> Tensor:
    if h is None:
        return input.new_zeros((input.shape[1], weight_hh.shape[1]))
    check_tensor(h, name)
    return h


def _empty_batch(
    input: Tensor, states: dict[str, Tensor], weight_ih: Tensor, weight_hh: Tensor, *rest: Tensor | None
) -> tuple[Tensor, ...]:
    """torch's result for B = 0: output [T, 0, H] and the (empty) states, attached to every input's graph
    so that backward runs and gives zero gradients, as torch's recurrent layers do. No kernel runs, so
    the shapes the kernels would check are checked here."""
    if input.shape[0] < 1:
        raise ValueError(f"input must have at least one time step, got shape {tuple(input.shape)}")
    hidden = weight_hh.shape[1]
    if weight_ih.ndim != 2 or weight_ih.shape != (weight_hh.shape[0], input.shape[2]):
        raise ValueError(
            f"weight_ih must have shape {(weight_hh.shape[0], input.shape[2])} (weight_hh's rows, input's "
            f"features), got {tuple(weight_ih.shape)}"
        )
    for name, st in states.items():
        if st.shape != (0, hidden):
            raise ValueError(f"{name} must have shape (0, {hidden}) for an empty batch, got {tuple(st.shape)}")
    weights = (weight_ih, weight_hh, *rest)
    states = tuple(states.values())
    # the sum of an empty slice is an exact 0 that carries each tensor's graph
    tie = sum(t.reshape(-1)[:0].sum() for t in (input, *states, *weights) if t is not None)
    return (input.new_zeros((input.shape[0], 0, hidden)) + tie, *(st + tie for st in states))


def _check(input: Tensor, weight_ih: Tensor, weight_hh: Tensor) -> None:
    check_tensor(input, "input")
    check_tensor(weight_ih, "weight_ih")
    check_tensor(weight_hh, "weight_hh")
    check_same_dtype(input=input, weight_ih=weight_ih, weight_hh=weight_hh)
    if input.ndim != 3:
        raise ValueError(f"input must be 3-D (T, B, I), time-major; got shape {tuple(input.shape)}")
    if weight_hh.ndim != 2:
        raise ValueError(f"weight_hh must be 2-D (G*H, H), got shape {tuple(weight_hh.shape)}")


def rnn(
    input: Tensor,
    hx: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, Tensor]:
    """Vanilla RNN over a sequence: h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    Returns (output [T, B, H], h_n [B, H]); hx None means zeros.
    """
    input, hx, weight_ih, weight_hh, bias_ih, bias_hh = autocast(
        "lower", input, hx, weight_ih, weight_hh, bias_ih, bias_hh
    )
    _check(input, weight_ih, weight_hh)
    check_choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
    h0 = _state(hx, input, weight_hh, "hx")
    if input.shape[1] == 0:
        return _empty_batch(input, {"hx": h0}, weight_ih, weight_hh, bias_ih, bias_hh)
    out, hn = _rnn(input, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    return out, hn


def lstm(
    input: Tensor,
    hx: tuple[Tensor, Tensor] | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_peephole: Tensor | None = None,
    variant: str = "forget",
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """LSTM over a sequence; variant forget (torch.nn.LSTM) | no_forget | peephole.

    Returns (output [T, B, H], (h_n, c_n)); hx None means zero states.
    """
    if hx is None:
        h0 = c0 = None
    elif isinstance(hx, (tuple, list)) and len(hx) == 2:
        h0, c0 = hx
    else:
        raise ValueError("hx must be None or a pair (h0, c0) of [B, H] tensors")
    input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole = autocast(
        "lower", input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole
    )
    _check(input, weight_ih, weight_hh)
    check_choice(variant, ("forget", "no_forget", "peephole"), "variant")
    h0, c0 = _state(h0, input, weight_hh, "h0"), _state(c0, input, weight_hh, "c0")
    if input.shape[1] == 0:
        states = {"h0": h0, "c0": c0}
        out, hn, cn = _empty_batch(input, states, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole)
        return out, (hn, cn)
    out, hn, cn, _ = _lstm(input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole, variant)
    return out, (hn, cn)


def gru(
    input: Tensor,
    hx: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    variant: str = "cudnn",
) -> tuple[Tensor, Tensor]:
    """GRU over a sequence; variant cudnn (torch.nn.GRU) | cho (Cho et al. 2014).

    Returns (output [T, B, H], h_n [B, H]); hx None means zeros.
    """
    input, hx, weight_ih, weight_hh, bias_ih, bias_hh = autocast(
        "lower", input, hx, weight_ih, weight_hh, bias_ih, bias_hh
    )
    _check(input, weight_ih, weight_hh)
    check_choice(variant, ("cudnn", "cho"), "variant")
    h0 = _state(hx, input, weight_hh, "hx")
    if input.shape[1] == 0:
        return _empty_batch(input, {"hx": h0}, weight_ih, weight_hh, bias_ih, bias_hh)
    out, hn, _ = _gated("gru", input, h0, weight_ih, weight_hh, bias_ih, bias_hh, variant)
    return out, hn


def mgu(
    input: Tensor,
    hx: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimal Gated Unit over a sequence (one forget gate, rows f, h in the weights).

    Returns (output [T, B, H], h_n [B, H]); hx None means zeros.
    """
    input, hx, weight_ih, weight_hh, bias_ih, bias_hh = autocast(
        "lower", input, hx, weight_ih, weight_hh, bias_ih, bias_hh
    )
    _check(input, weight_ih, weight_hh)
    h0 = _state(hx, input, weight_hh, "hx")
    if input.shape[1] == 0:
        return _empty_batch(input, {"hx": h0}, weight_ih, weight_hh, bias_ih, bias_hh)
    out, hn, _ = _gated("mgu", input, h0, weight_ih, weight_hh, bias_ih, bias_hh, "")
    return out, hn
