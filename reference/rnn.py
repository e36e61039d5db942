"""Elman recurrent network (torch.nn.RNN, one layer, one direction) and its readout: the oracle.

    h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)     t = 1..T,  phi in {tanh, relu}
    y_t = psi(W h_t + b)                                 the readout, psi a fused activation

Shapes (time-major, torch.nn's layouts):
    x [T, B, I], h0 [B, H] (None: zeros), weight_ih [H, I], weight_hh [H, H],
    bias_ih [H], bias_hh [H] (None: no bias), output [T, B, H] (every h_t), h_n [B, H] = h_T.

The backward is backpropagation through time: the weight gradients sum the
contributions of every step. It needs no bias (everything is in ``output``) and always
returns both bias gradients, which are equal (the caller drops them when there was no bias).
"""

from __future__ import annotations

import numpy as np

from ._validate import (
    check_choice,
    check_dtype_as,
    check_float,
    check_ndim,
    check_optional,
    check_recurrent,
    check_saved,
)
from .linear import linear_backward, linear_forward

NONLINEARITIES = ("tanh", "relu")


# ------------------------------------------------------------------ argument checks
# (shared by every recurrent family; the private names are what the backends import)
_check_dtype = check_dtype_as
_check_recurrent = check_recurrent
_check_grad = check_optional
_check_saved = check_saved


# --------------------------------------------------------------------------- rnn


def rnn_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
    nonlinearity: str = "tanh",
) -> tuple[np.ndarray, np.ndarray]:
    """h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), t = 1..T (torch.nn.RNN).

    Args:
        x: [T, B, I] input sequence (time-major).
        h0: [B, H] initial state, or None for zeros.
        weight_ih: [H, I]; weight_hh: [H, H].
        bias_ih, bias_hh: [H] each, or None for no bias.
        nonlinearity: phi, "tanh" or "relu".
    Returns:
        (output [T, B, H] = h_1..h_T, h_n [B, H] = h_T).
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, 1)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    # the input term has no recurrence: one GEMM for all time steps
    xw = x @ weight_ih.T  # T,B,H
    if bias_ih is not None:
        xw = xw + bias_ih
    output = np.empty((T, B, H), dtype=x.dtype)
    for t in range(T):
        z = xw[t] + h @ weight_hh.T  # B,H
        if bias_hh is not None:
            z = z + bias_hh
        h = np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0).astype(x.dtype, copy=False)
        output[t] = h
    return output, output[-1].copy()


def rnn_backward(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    output: np.ndarray,
    nonlinearity: str = "tanh",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for ``rnn_forward``.

    With dh_T = d_output_T + d_h_n and, going back in time,

        dz_t      = dh_t * phi'(z_t)       phi' from the output: 1 - h_t^2 (tanh), [h_t > 0] (relu)
        dh_{t-1}  = d_output_{t-1} + dz_t W_hh          (dh_0 has no d_output term)
        dx_t      = dz_t W_ih
        dW_ih     = sum_t dz_t^T x_t        dW_hh = sum_t dz_t^T h_{t-1}
        db_ih     = db_hh = sum_t sum_b dz_t

    Args:
        d_output: [T, B, H] gradient of the loss w.r.t. output, or None for zeros.
        d_h_n: [B, H] gradient w.r.t. h_n, or None for zeros.
        x, h0, weight_ih, weight_hh: as in the forward (h0 None: zeros).
        output: the forward's output [T, B, H].
        nonlinearity: as in the forward.
    Returns:
        (dx [T, B, I], dh0 [B, H], dweight_ih [H, I], dweight_hh [H, H], dbias_ih [H], dbias_hh [H]).
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _check_recurrent(x, h0, weight_ih, weight_hh, None, None, 1)
    _check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    h0 = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    dh = np.zeros((B, H), dtype=x.dtype) if d_h_n is None else d_h_n  # B,H: flowing back from step t+1
    dz = np.empty((T, B, H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        if d_output is not None:
            dh = dh + d_output[t]
        h = output[t]  # B,H
        dz[t] = dh * (1 - h * h) if nonlinearity == "tanh" else np.where(h > 0, dh, 0)
        dh = dz[t] @ weight_hh  # B,H
    # the non-recurrent products: one GEMM each over all time steps
    h_prev = np.concatenate([h0[None], output[:-1]], axis=0)  # T,B,H
    dz2 = dz.reshape(T * B, H)  # TB,H
    dx = dz @ weight_ih  # T,B,I
    dweight_ih = dz2.T @ x.reshape(T * B, -1)  # H,I
    dweight_hh = dz2.T @ h_prev.reshape(T * B, H)  # H,H
    dbias = dz2.sum(axis=0)  # H
    return dx, dh, dweight_ih, dweight_hh, dbias, dbias.copy()


# ----------------------------------------------------------------------- readout


def rnn_readout_forward(
    output: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    activation: str = "none",
) -> np.ndarray:
    """y_t = psi(W h_t + b) for every step: a linear layer applied along the sequence.

    psi is a fused activation (none | relu | leaky_relu | sigmoid | tanh); a softmax readout
    is "none" here followed by the loss's softmax.

    Args:
        output: [T, B, H] the recurrent states (rnn_forward's output).
        weight: [O, H]; bias: [O] or None.
        activation: psi.
    Returns:
        y: [T, B, O].
    """
    check_float(output, "output")
    check_ndim(output, 3, "output", "T, B, hidden_size")
    return linear_forward(output, weight, bias, activation)


def rnn_readout_backward(
    dy: np.ndarray,
    output: np.ndarray,
    weight: np.ndarray,
    y: np.ndarray | None = None,
    activation: str = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y_t = psi(W h_t + b), summed over time for the weights.

        dz_t = dy_t * psi'   (from y)     doutput_t = dz_t W     dW = sum_t dz_t^T h_t     db = sum_t,b dz_t

    Args:
        dy: [T, B, O] upstream gradient.
        output: [T, B, H] as in the forward; weight: [O, H].
        y: the forward's result, required unless activation is "none".
        activation: psi.
    Returns:
        (doutput [T, B, H], dweight [O, H], dbias [O]) (dbias even without a bias).
    """
    check_float(output, "output")
    check_ndim(output, 3, "output", "T, B, hidden_size")
    return linear_backward(dy, output, weight, y, activation)
