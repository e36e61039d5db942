"""Long short-term memory (one layer, one direction), three variants: the oracle.

With (.)_k = W_ik x_t + b_ik + W_hk h_{t-1} + b_hk, the pre-activation of gate k:

  variant="forget" (torch.nn.LSTM exactly; G = 4 gates, order i, f, g, o)
      i = sigma((.)_i)   f = sigma((.)_f)   g = tanh((.)_g)   o = sigma((.)_o)
      c_t = f * c_{t-1} + i * g             h_t = o * tanh(c_t)

  variant="no_forget" (the course's first LSTM; G = 3 gates, order i, g, o)
      i = sigma((.)_i)   g = tanh((.)_g)   o = sigma((.)_o)
      c_t = c_{t-1} + i * g                 h_t = o * tanh(c_t)

  variant="peephole" (G = 4, order i, f, g, o, plus diagonal peepholes P = weight_peephole [3, H],
  rows p_i, p_f, p_o: the input and forget gates look at c_{t-1}, the output gate at c_t)
      i = sigma((.)_i + p_i * c_{t-1})   f = sigma((.)_f + p_f * c_{t-1})   g = tanh((.)_g)
      c_t = f * c_{t-1} + i * g
      o = sigma((.)_o + p_o * c_t)        h_t = o * tanh(c_t)

Shapes (time-major, torch.nn's layouts): x [T, B, I], h0 and c0 [B, H] (None: zeros),
weight_ih [G*H, I], weight_hh [G*H, H], bias_ih and bias_hh [G*H] (None: no bias), the row
blocks of the weights and biases in the gate order above.

Workspace [T, B, (G+1)*H]: at step t the activated gates in the gate order, then c_t:
    forget, peephole:  [ i | f | g | o | c_t ]     no_forget:  [ i | g | o | c_t ]
each block H wide (so c_t is workspace[t, :, G*H:]). Every backend produces this layout, and
the backward needs nothing else (no bias, no pre-activation).
"""

from __future__ import annotations

import numpy as np

from ._validate import check_choice, check_dtype_as, check_optional, check_recurrent, check_saved, check_shape
from .activations import sigmoid_forward

VARIANTS = ("forget", "no_forget", "peephole")
GATES = {"forget": 4, "no_forget": 3, "peephole": 4}


# ------------------------------------------------------------------ argument checks
# (shared by every recurrent family; the private names are what the backends import)
_check_dtype = check_dtype_as
_check_recurrent = check_recurrent
_check_grad = check_optional
_check_saved = check_saved


def _check_lstm(
    x: np.ndarray,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None,
    bias_hh: np.ndarray | None,
    weight_peephole: np.ndarray | None,
    variant: str,
) -> tuple[int, int, int, int, int]:
    """The LSTM's checks on top of the recurrent ones; return (T, B, I, H, G)."""
    check_choice(variant, VARIANTS, "variant")
    G = GATES[variant]
    T, B, I, H = _check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, G)
    if c0 is not None:
        _check_dtype(c0, "c0", x.dtype)
        check_shape(c0, (B, H), "c0", "batch of x, hidden_size of weight_hh")
    if variant == "peephole":
        if weight_peephole is None:
            raise ValueError(f"weight_peephole [3, {H}] (rows p_i, p_f, p_o) is required for variant='peephole'")
        _check_dtype(weight_peephole, "weight_peephole", x.dtype)
        check_shape(weight_peephole, (3, H), "weight_peephole", "rows p_i, p_f, p_o; hidden_size")
    elif weight_peephole is not None:
        raise ValueError(f"weight_peephole must be None for variant={variant!r} (only 'peephole' has peepholes)")
    return T, B, I, H, G


# -------------------------------------------------------------------------- lstm


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
    weight_peephole: np.ndarray | None = None,
    variant: str = "forget",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the LSTM over the sequence (equations in the module docstring).

    Args:
        x: [T, B, I] input sequence (time-major).
        h0, c0: [B, H] initial hidden and cell states, or None for zeros.
        weight_ih: [G*H, I]; weight_hh: [G*H, H] (G = 4 for forget/peephole, 3 for no_forget).
        bias_ih, bias_hh: [G*H] each, or None for no bias.
        weight_peephole: [3, H] rows p_i, p_f, p_o; required for "peephole", None otherwise.
        variant: "forget" | "no_forget" | "peephole".
    Returns:
        (output [T, B, H] = h_1..h_T, h_n [B, H] = h_T, c_n [B, H] = c_T,
         workspace [T, B, (G+1)*H] = the activated gates then c_t, see the module docstring).
    """
    T, B, _, H, G = _check_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole, variant)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    c = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0
    # the input term has no recurrence: one GEMM for all time steps
    xw = x @ weight_ih.T  # T,B,GH
    if bias_ih is not None:
        xw = xw + bias_ih
    output = np.empty((T, B, H), dtype=x.dtype)
    workspace = np.empty((T, B, (G + 1) * H), dtype=x.dtype)
    for t in range(T):
        z = xw[t] + h @ weight_hh.T  # B,GH
        if bias_hh is not None:
            z = z + bias_hh
        blocks = [z[:, k * H : (k + 1) * H] for k in range(G)]  # G x (B,H), in gate order
        if variant == "no_forget":
            zi, zg, zo = blocks
            i = sigmoid_forward(zi)
            g = np.tanh(zg)
            c = c + i * g
            o = sigmoid_forward(zo)
            gates = (i, g, o)
        else:
            zi, zf, zg, zo = blocks
            if variant == "peephole":
                zi = zi + weight_peephole[0] * c  # c is still c_{t-1}
                zf = zf + weight_peephole[1] * c
            i = sigmoid_forward(zi)
            f = sigmoid_forward(zf)
            g = np.tanh(zg)
            c = f * c + i * g
            if variant == "peephole":
                zo = zo + weight_peephole[2] * c  # c is now c_t
            o = sigmoid_forward(zo)
            gates = (i, f, g, o)
        h = o * np.tanh(c)
        output[t] = h
        workspace[t] = np.concatenate([*gates, c], axis=1)  # B,(G+1)H
    return output, output[-1].copy(), c.copy(), workspace


def lstm_backward(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    d_c_n: np.ndarray | None,
    x: np.ndarray,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    output: np.ndarray,
    workspace: np.ndarray,
    weight_peephole: np.ndarray | None = None,
    variant: str = "forget",
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None
]:
    """Backpropagation through time for ``lstm_forward``.

    Going back from dh = d_h_n, dc = d_c_n, at each step t (s = sigma' = y(1-y), tanh' = 1-y^2):

        dh     += d_output_t                       tc = tanh(c_t)
        dz_o    = dh * tc * o(1-o)
        dc     += dh * o * (1 - tc^2)   [+ dz_o * p_o]                     (peephole: o sees c_t)
        dz_i    = dc * g * i(1-i)       dz_g = dc * i * (1-g^2)
        dz_f    = dc * c_{t-1} * f(1-f)                                    (forget, peephole)
        dc_{t-1} = dc * f  (dc for no_forget)   [+ dz_i * p_i + dz_f * p_f]  (peephole)
        dh_{t-1} = dz_t W_hh

    then, with dz_t the gate pre-activation gradients in gate order [B, G*H]:
        dx_t = dz_t W_ih    dW_ih = sum_t dz_t^T x_t    dW_hh = sum_t dz_t^T h_{t-1}
        db_ih = db_hh = sum_t sum_b dz_t
        dp_i = sum_t sum_b dz_i c_{t-1}   dp_f = sum_t sum_b dz_f c_{t-1}   dp_o = sum_t sum_b dz_o c_t

    Args:
        d_output: [T, B, H] gradient w.r.t. output, or None for zeros.
        d_h_n, d_c_n: [B, H] gradients w.r.t. h_n and c_n, or None for zeros.
        x, h0, c0, weight_ih, weight_hh, weight_peephole, variant: as in the forward.
        output, workspace: the forward's output [T, B, H] and workspace [T, B, (G+1)*H].
    Returns:
        (dx [T, B, I], dh0 [B, H], dc0 [B, H], dweight_ih [G*H, I], dweight_hh [G*H, H],
         dbias_ih [G*H], dbias_hh [G*H] (equal; returned even without biases),
         dweight_peephole [3, H] for "peephole", else None).
    """
    T, B, _, H, G = _check_lstm(x, h0, c0, weight_ih, weight_hh, None, None, weight_peephole, variant)
    _check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _check_saved(workspace, (T, B, (G + 1) * H), "workspace", x.dtype, f"T, B, ({G}+1)*hidden_size")
    _check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    _check_grad(d_c_n, (B, H), "d_c_n", x.dtype, "B, hidden_size")
    h0 = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    c0 = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0
    peep = variant == "peephole"
    dp = np.zeros((3, H), dtype=x.dtype) if peep else None  # rows p_i, p_f, p_o
    dh = np.zeros((B, H), dtype=x.dtype) if d_h_n is None else d_h_n  # B,H: flowing back from step t+1
    dc = np.zeros((B, H), dtype=x.dtype) if d_c_n is None else d_c_n  # B,H
    dz = np.empty((T, B, G * H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        ws = workspace[t]
        blocks = [ws[:, k * H : (k + 1) * H] for k in range(G + 1)]  # gates..., c_t
        c_prev = workspace[t - 1, :, G * H :] if t > 0 else c0  # B,H
        if d_output is not None:
            dh = dh + d_output[t]
        if variant == "no_forget":
            i, g, o, c = blocks
        else:
            i, f, g, o, c = blocks
        tc = np.tanh(c)  # B,H
        dzo = dh * tc * o * (1 - o)
        dc = dc + dh * o * (1 - tc * tc)
        if peep:
            dc = dc + dzo * weight_peephole[2]
            dp[2] += np.sum(dzo * c, axis=0)
        dzi = dc * g * i * (1 - i)
        dzg = dc * i * (1 - g * g)
        if variant == "no_forget":
            dz[t] = np.concatenate([dzi, dzg, dzo], axis=1)  # B,3H
            dc_prev = dc
        else:
            dzf = dc * c_prev * f * (1 - f)
            dz[t] = np.concatenate([dzi, dzf, dzg, dzo], axis=1)  # B,4H
            dc_prev = dc * f
        if peep:
            dc_prev = dc_prev + dzi * weight_peephole[0] + dzf * weight_peephole[1]
            dp[0] += np.sum(dzi * c_prev, axis=0)
            dp[1] += np.sum(dzf * c_prev, axis=0)
        dc = dc_prev
        dh = dz[t] @ weight_hh  # B,H
    # the non-recurrent products: one GEMM each over all time steps
    h_prev = np.concatenate([h0[None], output[:-1]], axis=0)  # T,B,H
    dz2 = dz.reshape(T * B, G * H)  # TB,GH
    dx = dz @ weight_ih  # T,B,I
    dweight_ih = dz2.T @ x.reshape(T * B, -1)  # GH,I
    dweight_hh = dz2.T @ h_prev.reshape(T * B, H)  # GH,H
    dbias = dz2.sum(axis=0)  # GH
    return dx, dh, dc, dweight_ih, dweight_hh, dbias, dbias.copy(), dp
