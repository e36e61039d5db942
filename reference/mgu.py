"""Minimal Gated Unit (one layer, one direction): the oracle, forward and BPTT backward.

The MGU (Zhou et al. 2016) keeps a GRU's structure with a single gate f, which acts both as
the reset gate (on the state fed to the candidate) and as the update gate:

    f_t = sigma(W_f x_t + b_if + U_f h_{t-1} + b_hf)
    h~_t = tanh(W_h x_t + b_ih_h + U_h (f_t * h_{t-1}) + b_hh_h)
    h_t = (1 - f_t) * h_{t-1} + f_t * h~_t

Shapes (time-major, torch.nn-style parameter layout, G = 2 gates in row order f, h):

    x: [T, B, I]    h0, h_n: [B, H]    output: [T, B, H] (h_1 .. h_T)
    weight_ih: [2H, I] rows (W_f; W_h)    bias_ih: [2H] (b_if; b_ih_h) or None
    weight_hh: [2H, H] rows (U_f; U_h)    bias_hh: [2H] (b_hf; b_hh_h) or None

Workspace (the forward saves it, the backward reads it; every backend produces this layout):

    [T, B, 2H] = concatenation along the last axis of f_t, h~_t

Everything is computed in x's dtype (float32 in -> float32 out).
"""

from __future__ import annotations

import numpy as np

from ._validate import check_recurrent, check_shape
from .activations import sigmoid_forward

GATES = 2


# shared by every recurrent family; the private name is what the backends import
_check_recurrent = check_recurrent


def mgu_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run an MGU over a sequence (equations in the module docstring).

    Args:
        x: [T, B, I] input sequence, time-major.
        h0: [B, H] initial state, or None for zeros.
        weight_ih: [2H, I] rows (W_f; W_h).
        weight_hh: [2H, H] rows (U_f; U_h).
        bias_ih, bias_hh: [2H] each, or None for no bias.
    Returns:
        output: [T, B, H], h_t for t = 1..T.
        h_n: [B, H], the final state h_T (a copy of output[-1]).
        workspace: [T, B, 2H] = (f, h~) along the last axis.
    """
    t_len, b, _, h = _check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    dt = x.dtype
    h_prev = np.zeros((b, h), dtype=dt) if h0 is None else h0.astype(dt, copy=False)
    u_f, u_h = weight_hh[:h], weight_hh[h:]  # H,H each
    b_hh = np.zeros(2 * h, dtype=dt) if bias_hh is None else bias_hh
    b_hf, b_hh_h = b_hh[:h], b_hh[h:]  # H each

    # The input projections do not depend on the recurrence: one GEMM for all steps.
    gx = x @ weight_ih.T  # T,B,2H
    if bias_ih is not None:
        gx = gx + bias_ih
    output = np.empty((t_len, b, h), dtype=dt)
    workspace = np.empty((t_len, b, 2 * h), dtype=dt)
    for t in range(t_len):
        f = sigmoid_forward(gx[t, :, :h] + h_prev @ u_f.T + b_hf)  # B,H
        h_cand = np.tanh(gx[t, :, h:] + (f * h_prev) @ u_h.T + b_hh_h)  # B,H
        output[t] = (1 - f) * h_prev + f * h_cand
        workspace[t] = np.concatenate([f, h_cand], axis=-1)
        h_prev = output[t]
    return output, output[-1].copy(), workspace


def mgu_backward(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    output: np.ndarray,
    workspace: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for ``mgu_forward``.

    The gradient reaching h_t is dh_t = d_output[t] + (what step t+1 sends back), with
    dh_T starting from d_h_n. Writing a_f, a_h for the pre-activations of f and h~:

        dh~ = dh f     df = dh (h~ - h_{t-1})     dh_{t-1} <- dh (1 - f)
        da_h = dh~ (1 - h~^2)     d(f h) = da_h U_h     df += d(f h) h_{t-1}     dh_{t-1} += d(f h) f
        da_f = df f (1 - f)       dh_{t-1} += da_f U_f
        dx_t = [da_f, da_h] W_ih          dW_ih += [da_f, da_h]^T x_t     db_ih = sum of [da_f, da_h]
        dU_f += da_f^T h_{t-1}            dU_h += da_h^T (f h_{t-1})      db_hh = sum of [da_f, da_h]

    Args:
        d_output: [T, B, H] gradient w.r.t. output, or None for zeros.
        d_h_n: [B, H] gradient w.r.t. h_n, or None for zeros.
        x, h0, weight_ih, weight_hh: as in the forward (h0 None means zeros).
        output, workspace: the forward's output and workspace (the biases are not needed).
    Returns:
        (dx [T, B, I], dh0 [B, H], dweight_ih [2H, I], dweight_hh [2H, H], dbias_ih [2H],
        dbias_hh [2H]); weight gradients summed over all time steps; bias gradients are
        returned even when the forward had no bias (the caller drops them).
    """
    t_len, b, _, h = _check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    if d_output is not None:
        check_shape(d_output, (t_len, b, h), "d_output", "T, B, hidden_size")
    if d_h_n is not None:
        check_shape(d_h_n, (b, h), "d_h_n", "B, hidden_size")
    check_shape(output, (t_len, b, h), "output", "T, B, hidden_size")
    check_shape(workspace, (t_len, b, 2 * h), "workspace", "T, B, 2*hidden_size")
    dt = x.dtype
    h_init = np.zeros((b, h), dtype=dt) if h0 is None else h0.astype(dt, copy=False)
    u_f, u_h = weight_hh[:h], weight_hh[h:]  # H,H each

    dx = np.empty_like(x)
    dweight_ih = np.zeros(weight_ih.shape, dtype=dt)
    dweight_hh = np.zeros(weight_hh.shape, dtype=dt)
    dbias = np.zeros(2 * h, dtype=dt)  # the same for bias_ih and bias_hh: both add to a_f, a_h
    dh = np.zeros((b, h), dtype=dt) if d_h_n is None else d_h_n.astype(dt, copy=True)  # B,H
    for t in reversed(range(t_len)):
        if d_output is not None:
            dh = dh + d_output[t]
        h_prev = output[t - 1] if t > 0 else h_init  # B,H
        f, h_cand = workspace[t, :, :h], workspace[t, :, h:]  # B,H each
        dh_cand = dh * f  # B,H
        df = dh * (h_cand - h_prev)  # B,H
        dh_prev = dh * (1 - f)  # B,H
        da_h = dh_cand * (1 - h_cand * h_cand)  # B,H
        dfh = da_h @ u_h  # B,H: gradient w.r.t. f * h_{t-1}
        df = df + dfh * h_prev
        dh_prev = dh_prev + dfh * f
        da_f = df * f * (1 - f)  # B,H
        dgx = np.concatenate([da_f, da_h], axis=-1)  # B,2H
        dx[t] = dgx @ weight_ih
        dweight_ih += dgx.T @ x[t]
        dweight_hh[:h] += da_f.T @ h_prev
        dweight_hh[h:] += da_h.T @ (f * h_prev)
        dbias += dgx.sum(axis=0)
        dh = dh_prev + da_f @ u_f
    return dx, dh, dweight_ih, dweight_hh, dbias, dbias.copy()
