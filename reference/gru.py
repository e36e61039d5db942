"""Gated Recurrent Unit (one layer, one direction): the oracle, forward and BPTT backward.

Shapes (time-major, torch.nn.GRU's parameter layout, G = 3 gates in row order r, z, n):

    x: [T, B, I]    h0, h_n: [B, H]    output: [T, B, H] (h_1 .. h_T)
    weight_ih: [3H, I] rows (W_ir; W_iz; W_in)    bias_ih: [3H] (b_ir; b_iz; b_in) or None
    weight_hh: [3H, H] rows (W_hr; W_hz; W_hn)    bias_hh: [3H] (b_hr; b_hz; b_hn) or None

Two variants, which differ in where the reset gate acts and in the role of z:

``cudnn`` (torch.nn.GRU and cuDNN exactly):

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    hn_t = W_hn h_{t-1} + b_hn                   (r multiplies the *projected* state)
    n_t = tanh(W_in x_t + b_in + r_t * hn_t)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}        (z = fraction of the old state kept)

``cho`` (the original GRU of Cho et al. 2014, as in the course text):

    r_t, z_t as above
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)   (r multiplies the state itself)
    h_t = (1 - z_t) * h_{t-1} + z_t * n_t        (z = fraction of the *new* candidate taken)

With the same weights the two variants give different results: z's role is swapped
(z_cho plays 1 - z_cudnn) and the reset gate is applied before W_hn in ``cho`` but after it
in ``cudnn``, which lets cuDNN compute all three W_h* products of a step in one GEMM.

Workspace (the forward saves it, the backward reads it; every backend produces this layout):

    cudnn: [T, B, 4H] = concatenation along the last axis of r_t, z_t, n_t, hn_t
           (hn_t = W_hn h_{t-1} + b_hn, the pre-reset projection, so the backward needs no bias)
    cho:   [T, B, 3H] = concatenation along the last axis of r_t, z_t, n_t

Everything is computed in x's dtype (float32 in -> float32 out).
"""

from __future__ import annotations

import numpy as np

from ._validate import check_choice, check_recurrent, check_shape
from .activations import sigmoid_forward

VARIANTS = ("cudnn", "cho")
GATES = 3
WORKSPACE_GATES = {"cudnn": 4, "cho": 3}


# shared by every recurrent family; the private name is what the backends import
_check_recurrent = check_recurrent


def _check_backward_args(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    output: np.ndarray,
    workspace: np.ndarray,
    t: int,
    b: int,
    h: int,
    ws_gates: int,
) -> None:
    """Validate the upstream gradients and what the forward saved."""
    if d_output is not None:
        check_shape(d_output, (t, b, h), "d_output", "T, B, hidden_size")
    if d_h_n is not None:
        check_shape(d_h_n, (b, h), "d_h_n", "B, hidden_size")
    check_shape(output, (t, b, h), "output", "T, B, hidden_size")
    check_shape(workspace, (t, b, ws_gates * h), "workspace", f"T, B, {ws_gates}*hidden_size")


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
    variant: str = "cudnn",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a GRU over a sequence (equations in the module docstring).

    Args:
        x: [T, B, I] input sequence, time-major.
        h0: [B, H] initial state, or None for zeros.
        weight_ih: [3H, I] rows (W_ir; W_iz; W_in).
        weight_hh: [3H, H] rows (W_hr; W_hz; W_hn).
        bias_ih, bias_hh: [3H] each, or None for no bias.
        variant: "cudnn" (torch.nn.GRU) or "cho" (Cho et al. 2014).
    Returns:
        output: [T, B, H], h_t for t = 1..T.
        h_n: [B, H], the final state h_T (a copy of output[-1]).
        workspace: cudnn [T, B, 4H] = (r, z, n, hn); cho [T, B, 3H] = (r, z, n), along the last axis.
    """
    check_choice(variant, VARIANTS, "variant")
    t_len, b, _, h = _check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    dt = x.dtype
    h_prev = np.zeros((b, h), dtype=dt) if h0 is None else h0.astype(dt, copy=False)
    w_hr, w_hz, w_hn = weight_hh[:h], weight_hh[h : 2 * h], weight_hh[2 * h :]  # H,H each
    b_hh = np.zeros(3 * h, dtype=dt) if bias_hh is None else bias_hh
    b_hr, b_hz, b_hn = b_hh[:h], b_hh[h : 2 * h], b_hh[2 * h :]  # H each

    # The input projections do not depend on the recurrence: one GEMM for all steps.
    gx = x @ weight_ih.T  # T,B,3H
    if bias_ih is not None:
        gx = gx + bias_ih
    output = np.empty((t_len, b, h), dtype=dt)
    workspace = np.empty((t_len, b, WORKSPACE_GATES[variant] * h), dtype=dt)
    for t in range(t_len):
        ax_r, ax_z, ax_n = gx[t, :, :h], gx[t, :, h : 2 * h], gx[t, :, 2 * h :]  # B,H each
        r = sigmoid_forward(ax_r + h_prev @ w_hr.T + b_hr)  # B,H
        z = sigmoid_forward(ax_z + h_prev @ w_hz.T + b_hz)  # B,H
        if variant == "cudnn":
            hn = h_prev @ w_hn.T + b_hn  # B,H
            n = np.tanh(ax_n + r * hn)  # B,H
            h_new = (1 - z) * n + z * h_prev  # B,H
            workspace[t] = np.concatenate([r, z, n, hn], axis=-1)
        else:
            n = np.tanh(ax_n + (r * h_prev) @ w_hn.T + b_hn)  # B,H
            h_new = (1 - z) * h_prev + z * n  # B,H
            workspace[t] = np.concatenate([r, z, n], axis=-1)
        output[t] = h_new
        h_prev = output[t]
    return output, output[-1].copy(), workspace


def gru_backward(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    output: np.ndarray,
    workspace: np.ndarray,
    variant: str = "cudnn",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for ``gru_forward``.

    The gradient reaching h_t is dh_t = d_output[t] + (what step t+1 sends back), with
    dh_T starting from d_h_n. Writing a_r, a_z, a_n for the gates' pre-activations:

    cudnn:  dn = dh (1 - z)   dz = dh (h_{t-1} - n)   dh_{t-1} <- dh z
            da_n = dn (1 - n^2)   dhn = da_n r   dr = da_n hn
    cho:    dn = dh z         dz = dh (n - h_{t-1})   dh_{t-1} <- dh (1 - z)
            da_n = dn (1 - n^2)   d(r h) = da_n W_hn   dr = d(r h) h_{t-1}   dh_{t-1} += d(r h) r
    both:   da_r = dr r (1 - r)   da_z = dz z (1 - z)
            dx_t = [da_r, da_z, da_n] W_ih      dW_ih += [da_r, da_z, da_n]^T x_t
            dW_h{r,z} += da_{r,z}^T h_{t-1}     dh_{t-1} += da_r W_hr + da_z W_hz
            cudnn: dW_hn += dhn^T h_{t-1}, dh_{t-1} += dhn W_hn;  cho: dW_hn += da_n^T (r h_{t-1})
            db_ih = sum of [da_r, da_z, da_n];  db_hh = sum of [da_r, da_z, dhn (cudnn) or da_n (cho)]

    Args:
        d_output: [T, B, H] gradient w.r.t. output, or None for zeros.
        d_h_n: [B, H] gradient w.r.t. h_n, or None for zeros.
        x, h0, weight_ih, weight_hh, variant: as in the forward (h0 None means zeros).
        output, workspace: the forward's output and workspace (the biases are not needed).
    Returns:
        (dx [T, B, I], dh0 [B, H], dweight_ih [3H, I], dweight_hh [3H, H], dbias_ih [3H],
        dbias_hh [3H]); weight gradients summed over all time steps; bias gradients are
        returned even when the forward had no bias (the caller drops them).
    """
    check_choice(variant, VARIANTS, "variant")
    t_len, b, _, h = _check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    _check_backward_args(d_output, d_h_n, output, workspace, t_len, b, h, WORKSPACE_GATES[variant])
    dt = x.dtype
    h_init = np.zeros((b, h), dtype=dt) if h0 is None else h0.astype(dt, copy=False)
    w_hr, w_hz, w_hn = weight_hh[:h], weight_hh[h : 2 * h], weight_hh[2 * h :]  # H,H each

    dx = np.empty_like(x)
    dweight_ih = np.zeros(weight_ih.shape, dtype=dt)
    dweight_hh = np.zeros(weight_hh.shape, dtype=dt)
    dbias_ih = np.zeros(3 * h, dtype=dt)
    dbias_hh = np.zeros(3 * h, dtype=dt)
    dh = np.zeros((b, h), dtype=dt) if d_h_n is None else d_h_n.astype(dt, copy=True)  # B,H
    for t in reversed(range(t_len)):
        if d_output is not None:
            dh = dh + d_output[t]
        h_prev = output[t - 1] if t > 0 else h_init  # B,H
        r, z, n = workspace[t, :, :h], workspace[t, :, h : 2 * h], workspace[t, :, 2 * h : 3 * h]
        if variant == "cudnn":
            hn = workspace[t, :, 3 * h :]  # B,H
            dn = dh * (1 - z)  # B,H
            dz = dh * (h_prev - n)  # B,H
            dh_prev = dh * z  # B,H
            da_n = dn * (1 - n * n)  # B,H
            dhn = da_n * r  # B,H: gradient w.r.t. W_hn h_{t-1} + b_hn
            dr = da_n * hn  # B,H
            dh_prev = dh_prev + dhn @ w_hn
            dweight_hh[2 * h :] += dhn.T @ h_prev
            dbias_hh[2 * h :] += dhn.sum(axis=0)
        else:
            dn = dh * z  # B,H
            dz = dh * (n - h_prev)  # B,H
            dh_prev = dh * (1 - z)  # B,H
            da_n = dn * (1 - n * n)  # B,H
            drh = da_n @ w_hn  # B,H: gradient w.r.t. r * h_{t-1}
            dr = drh * h_prev  # B,H
            dh_prev = dh_prev + drh * r
            dweight_hh[2 * h :] += da_n.T @ (r * h_prev)
            dbias_hh[2 * h :] += da_n.sum(axis=0)
        da_r = dr * r * (1 - r)  # B,H
        da_z = dz * z * (1 - z)  # B,H
        dgx = np.concatenate([da_r, da_z, da_n], axis=-1)  # B,3H
        dx[t] = dgx @ weight_ih
        dweight_ih += dgx.T @ x[t]
        dbias_ih += dgx.sum(axis=0)
        dweight_hh[:h] += da_r.T @ h_prev
        dweight_hh[h : 2 * h] += da_z.T @ h_prev
        dbias_hh[:h] += da_r.sum(axis=0)
        dbias_hh[h : 2 * h] += da_z.sum(axis=0)
        dh = dh_prev + da_r @ w_hr + da_z @ w_hz
    return dx, dh, dweight_ih, dweight_hh, dbias_ih, dbias_hh
