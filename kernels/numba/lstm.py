"""LSTM (one layer, one direction; variants forget | no_forget | peephole): Numba CPU kernels.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.lstm``
([T, B, (G+1)*H]: the activated gates in gate order, then c_t).

Forward: x W_ih^T as GEMMs over blocks of time steps; inside one compiled time loop, per step
one BLAS call (W_hh h_{t-1}^T, [G*H, B], turned to [B, G*H]) and one fused pass over the
hidden units that adds the biases, applies every gate nonlinearity (peepholes included),
updates c and writes output[t], c_t and the workspace row. Backward: per step one fused pass
producing the gate pre-activation gradients dz_t [B, G*H] (and dc_{t-1}, the bias and
peephole sums) and one GEMM for dh_{t-1} = dz_t W_hh; dx and the weight gradients are single
GEMMs over all steps after the loop. The per-step passes are single-threaded: the GEMMs
between them use BLAS's threads (see the note in rnn.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...reference import lstm as _ref
from ._common import JIT, prepare
from ._math import _dsigmoid, _dtanh, _sigmoid, _tanh
from .rnn import (
    as_numpy,
    bias_sum,
    block_steps,
    preact_into,
    project_block,
    recurrent_weight_t,
    transpose_into,
    weight_grads,
)

VARIANTS = _ref.VARIANTS
GATES = _ref.GATES
_CODE = {"forget": 0, "no_forget": 1, "peephole": 2}  # the kernels branch on an int, one compile per dtype
_FORGET, _NO_FORGET, _PEEPHOLE = 0, 1, 2


# ----------------------------------------------------------------------- forward


@njit(**JIT)
def _lstm_fwd_step(z, c, peep, variant, ws_t, out_t):
    """All gate math of one step from the pre-activations z [B, G*H] (biases included);
    c: c_{t-1} in, c_t out.

    Every gate block is its own slice (not z[k*H + j]): with a runtime offset inside the
    index LLVM cannot prove the blocks disjoint and leaves the loop scalar (~10x slower).
    """
    H = c.shape[1]
    pi, pf, po = peep[0], peep[1], peep[2]
    for b in range(c.shape[0]):
        zr, w, cr, h = z[b], ws_t[b], c[b], out_t[b]
        if variant == _NO_FORGET:  # i, g, o
            zi, zg, zo = zr[:H], zr[H : 2 * H], zr[2 * H :]
            wi, wg, wo, wc = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H :]
            for j in range(H):
                i, g, o = _sigmoid(zi[j]), _tanh(zg[j]), _sigmoid(zo[j])
                cn = cr[j] + i * g
                wi[j], wg[j], wo[j], wc[j], cr[j] = i, g, o, cn, cn
                h[j] = o * _tanh(cn)
            continue
        zi, zf, zg, zo = zr[:H], zr[H : 2 * H], zr[2 * H : 3 * H], zr[3 * H :]
        wi, wf, wg, wo, wc = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H : 4 * H], w[4 * H :]
        if variant == _FORGET:  # i, f, g, o
            for j in range(H):
                i, f, g, o = _sigmoid(zi[j]), _sigmoid(zf[j]), _tanh(zg[j]), _sigmoid(zo[j])
                cn = f * cr[j] + i * g
                wi[j], wf[j], wg[j], wo[j], wc[j], cr[j] = i, f, g, o, cn, cn
                h[j] = o * _tanh(cn)
        else:  # peephole: i and f see c_{t-1}, o sees c_t
            for j in range(H):
                cp = cr[j]
                i, f, g = _sigmoid(zi[j] + pi[j] * cp), _sigmoid(zf[j] + pf[j] * cp), _tanh(zg[j])
                cn = f * cp + i * g
                o = _sigmoid(zo[j] + po[j] * cn)
                wi[j], wf[j], wg[j], wo[j], wc[j], cr[j] = i, f, g, o, cn, cn
                h[j] = o * _tanh(cn)


@njit(**JIT)
def _lstm_fwd_kernel(x, w_ih, h0, c, w_hh, bias, peep, variant, nblk, output, workspace):
    T, B, H = output.shape
    GH = w_hh.shape[0]
    buf = np.empty(GH * nblk * B, dtype=output.dtype)  # W_ih x^T for a block of steps
    xwT = project_block(x, w_ih, 0, nblk, buf)  # GH,nblk*B
    hwT = np.empty((GH, B), dtype=output.dtype)  # GH,B: W_hh h_{t-1}^T
    z = np.empty((B, GH), dtype=output.dtype)  # B,GH: pre-activations
    for t in range(T):
        if t % nblk == 0 and t > 0:
            xwT = project_block(x, w_ih, t, nblk, buf)
        np.dot(w_hh, (h0 if t == 0 else output[t - 1]).T, hwT)
        preact_into(xwT, (t % nblk) * B, hwT, bias, z)
        _lstm_fwd_step(z, c, peep, variant, workspace[t], output[t])


# ---------------------------------------------------------------------- backward


@njit(**JIT)
def _lstm_bwd_step(dh, d_out_t, has_dout, dc, workspace, t, c0, peep, variant, dz_t, db, dp):
    """dz_t for every batch row; dc: dc_t in, dc_{t-1} out; db (its batch sum, while it is in
    registers) and dp (peephole) accumulate.

    Gate blocks as separate slices, as in the forward, so the loops vectorise.
    """
    H = dc.shape[1]
    G = 3 if variant == _NO_FORGET else 4
    pi, pf, po = peep[0], peep[1], peep[2]
    dpi, dpf, dpo = dp[0], dp[1], dp[2]
    for b in range(dc.shape[0]):
        w, d, dcr, dhr, do = workspace[t, b], dz_t[b], dc[b], dh[b], d_out_t[b]
        cprev = c0[b] if t == 0 else workspace[t - 1, b, G * H :]
        if variant == _NO_FORGET:  # i, g, o
            wi, wg, wo, wc = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H :]
            di, dg, do_ = d[:H], d[H : 2 * H], d[2 * H :]
            for j in range(H):
                i, g, o, c = wi[j], wg[j], wo[j], wc[j]
                dhv = dhr[j] + do[j] if has_dout else dhr[j]
                tc = _tanh(c)
                dcv = dcr[j] + dhv * o * _dtanh(tc)
                di[j], dg[j], do_[j] = dcv * g * _dsigmoid(i), dcv * i * _dtanh(g), dhv * tc * _dsigmoid(o)
                dcr[j] = dcv
        else:
            wi, wf, wg, wo, wc = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H : 4 * H], w[4 * H :]
            di, df, dg, do_ = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
            if variant == _FORGET:  # i, f, g, o
                for j in range(H):
                    i, f, g, o, c = wi[j], wf[j], wg[j], wo[j], wc[j]
                    dhv = dhr[j] + do[j] if has_dout else dhr[j]
                    tc = _tanh(c)
                    dcv = dcr[j] + dhv * o * _dtanh(tc)
                    di[j], df[j] = dcv * g * _dsigmoid(i), dcv * cprev[j] * _dsigmoid(f)
                    dg[j], do_[j] = dcv * i * _dtanh(g), dhv * tc * _dsigmoid(o)
                    dcr[j] = dcv * f
            else:  # peephole: o saw c_t; i, f saw c_{t-1}
                for j in range(H):
                    i, f, g, o, c, cp = wi[j], wf[j], wg[j], wo[j], wc[j], cprev[j]
                    dhv = dhr[j] + do[j] if has_dout else dhr[j]
                    tc = _tanh(c)
                    dzo = dhv * tc * _dsigmoid(o)
                    dcv = dcr[j] + dhv * o * _dtanh(tc) + dzo * po[j]
                    dzi, dzf = dcv * g * _dsigmoid(i), dcv * cp * _dsigmoid(f)
                    di[j], df[j], dg[j], do_[j] = dzi, dzf, dcv * i * _dtanh(g), dzo
                    dcr[j] = dcv * f + dzi * pi[j] + dzf * pf[j]
                # the sums in loops of their own: with them above, the stream count defeats
                # LLVM's runtime alias checks and the loop stays scalar
                for j in range(H):
                    dpi[j] += di[j] * cprev[j]
                    dpf[j] += df[j] * cprev[j]
                    dpo[j] += do_[j] * wc[j]
        for g in range(G * H):
            db[g] += d[g]


@njit(**JIT)
def _lstm_bwd_kernel(d_output, has_dout, dh, dc, c0, w_hhT, workspace, peep, variant, dz, db, dp):
    """BPTT over the steps; dh, dc enter as d_h_n, d_c_n and leave as dh0, dc0; w_hhT is W_hh^T
    (C-contiguous, ``recurrent_weight_t``)."""
    T, B, H = dz.shape[0], dh.shape[0], dh.shape[1]
    dhT = np.empty((H, B), dtype=dh.dtype)  # H,B: W_hh^T dz_t^T
    for t in range(T - 1, -1, -1):
        _lstm_bwd_step(dh, d_output[t if has_dout else 0], has_dout, dc, workspace, t, c0, peep, variant, dz[t], db, dp)
        np.dot(w_hhT, dz[t].T, dhT)
        transpose_into(dhT, dh)


# ---------------------------------------------------------------------- wrappers


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
    """Run the LSTM over the sequence (equations in dlgpu.reference.lstm).

    Returns (output [T, B, H], h_n [B, H], c_n [B, H], workspace [T, B, (G+1)*H]).
    """
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole = as_numpy(
        x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole
    )
    T, B, _, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole, variant)
    x = prepare(x, "x")
    dt = x.dtype
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    h0 = np.zeros((B, H), dtype=dt) if h0 is None else prepare(h0, "h0", dt)
    c = np.zeros((B, H), dtype=dt) if c0 is None else prepare(c0, "c0", dt).copy()  # B,H: c_t in place
    peep = np.zeros((3, H), dtype=dt) if weight_peephole is None else prepare(weight_peephole, "weight_peephole", dt)
    bias = bias_sum(bias_ih, bias_hh, G * H, dt)
    output = np.empty((T, B, H), dtype=dt)
    workspace = np.empty((T, B, (G + 1) * H), dtype=dt)
    nblk = block_steps(T, B, G * H, dt.itemsize)
    _lstm_fwd_kernel(x, w_ih, h0, c, w_hh, bias, peep, _CODE[variant], nblk, output, workspace)
    return output, output[-1].copy(), c, workspace


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Backpropagation through time for ``lstm_forward`` (equations in dlgpu.reference.lstm).

    Returns (dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, dweight_peephole or None).
    """
    d_output, d_h_n, d_c_n, x, h0, c0, weight_ih, weight_hh, output, workspace, weight_peephole = as_numpy(
        d_output, d_h_n, d_c_n, x, h0, c0, weight_ih, weight_hh, output, workspace, weight_peephole
    )
    T, B, _, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, None, None, weight_peephole, variant)
    dt = x.dtype
    _ref._check_saved(output, (T, B, H), "output", dt, "T, B, hidden_size")
    _ref._check_saved(workspace, (T, B, (G + 1) * H), "workspace", dt, f"T, B, ({G}+1)*hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", dt, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", dt, "B, hidden_size")
    _ref._check_grad(d_c_n, (B, H), "d_c_n", dt, "B, hidden_size")
    x = prepare(x, "x")
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    output, workspace = prepare(output, "output", dt), prepare(workspace, "workspace", dt)
    has_h0 = h0 is not None
    h0 = prepare(h0, "h0", dt) if has_h0 else np.zeros((B, H), dtype=dt)
    c0 = np.zeros((B, H), dtype=dt) if c0 is None else prepare(c0, "c0", dt)
    peep = np.zeros((3, H), dtype=dt) if weight_peephole is None else prepare(weight_peephole, "weight_peephole", dt)
    has_dout = d_output is not None
    d_out = prepare(d_output, "d_output", dt) if has_dout else np.zeros((1, B, H), dtype=dt)
    dh = np.zeros((B, H), dtype=dt) if d_h_n is None else prepare(d_h_n, "d_h_n", dt).copy()
    dc = np.zeros((B, H), dtype=dt) if d_c_n is None else prepare(d_c_n, "d_c_n", dt).copy()
    dz = np.empty((T, B, G * H), dtype=dt)
    db, dp = np.zeros(G * H, dtype=dt), np.zeros((3, H), dtype=dt)
    _lstm_bwd_kernel(d_out, has_dout, dh, dc, c0, recurrent_weight_t(w_hh), workspace, peep, _CODE[variant], dz, db, dp)
    dx, dw_ih, dw_hh = weight_grads(dz, x, h0, has_h0, output, w_ih)
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy(), dp if variant == "peephole" else None
