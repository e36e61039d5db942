"""GRU (one layer, one direction; variants cudnn | cho): Numba CPU kernels.

Same functions, arguments, results, errors and workspace layouts as ``dlgpu.reference.gru``
(cudnn [T, B, 4H] = r, z, n, hn; cho [T, B, 3H] = r, z, n).

Forward: x W_ih^T for all steps as one GEMM, then the time loop. cudnn: per step one BLAS
call h_{t-1} W_hh^T [B, 3H] and one compiled fused pass (biases, both gates, candidate, new
state, workspace). cho: the candidate needs W_hn (r * h_{t-1}), so a step is a GEMM for the r, z rows,
a fused pass (gates, r * h), a GEMM for the n rows and a fused pass (candidate, new state).

Backward: per step fused pass(es) write the pre-activation gradients into [T, B, .] buffers and
one GEMM (cho: two, as in the forward) carries dh to the previous step; dx and the weight
gradients are then single GEMMs over all steps, the bias gradients column sums.

The cho kernels are written for any "reset-gated" cell: G-1 sigmoid gates, gate 0 multiplying
h_{t-1} before the candidate's GEMM, gate ``u`` interpolating h_t = h + u (cand - h). The MGU
(``mgu.py``) is the same cell with one gate playing both roles and runs on them.

The per-step passes are serial: vectorised they take ~17 us (float32, B*H = 8192) against
~85 us for the step's GEMM on 2 threads, and a prange over B inside the BLAS-threaded loop made
the whole forward 40x slower on 2 cores (numba's and OpenBLAS's workers spin against each other).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...reference import gru as _ref
from ...reference._validate import check_choice
from ._common import JIT, prepare
from ._math import _dsigmoid, _dtanh, _sigmoid, _tanh
from .rnn import as_numpy, input_projection

VARIANTS = _ref.VARIANTS
GATES = _ref.GATES
WORKSPACE_GATES = _ref.WORKSPACE_GATES

# Numpy's error model: float division without the ZeroDivisionError branch, which keeps the
# transcendental polynomials (they divide) and hence every gate loop SIMD (~10x).
VJIT = dict(JIT, error_model="numpy")

# Loops index row slices from 0: an index that may be negative (range(j0, j1)) makes numba
# emit a wraparound select per access, and LLVM then leaves the loop scalar.


# ----------------------------------------------------------------- cudnn forward


@njit(**VJIT)
def _gru_fwd_kernel(gx, gh, b_x, b_hn, h_prev, h_new, ws):
    """r, z, hn, n and h_t for one step; gx: x W_ih^T, gh: h_{t-1} W_hh^T (B,3H, no biases)."""
    B, H = h_new.shape
    br, bz, bn = b_x[:H], b_x[H : 2 * H], b_x[2 * H :]
    for b in range(B):
        x, g, w, hp, ho = gx[b], gh[b], ws[b], h_prev[b], h_new[b]
        xr, xz, xn = x[:H], x[H : 2 * H], x[2 * H :]
        gr, gz, gn = g[:H], g[H : 2 * H], g[2 * H :]
        r, z, n, hn = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H :]
        for j in range(H):
            rj = _sigmoid(xr[j] + gr[j] + br[j])
            zj = _sigmoid(xz[j] + gz[j] + bz[j])
            hnj = gn[j] + b_hn[j]
            nj = _tanh(xn[j] + bn[j] + rj * hnj)
            r[j], z[j], n[j], hn[j] = rj, zj, nj, hnj
            ho[j] = nj + zj * (hp[j] - nj)


# ------------------------------------------------------- reset-gated (cho, MGU) forward


@njit(**VJIT)
def _reset_fwd_gates_kernel(gx, gq, b_x, h_prev, ws, qh):
    """The sigmoid gates (the first G-1 blocks) and qh = q * h_{t-1}, q = gate 0."""
    B, H = h_prev.shape
    ng = gq.shape[1] // H
    for b in range(B):
        x, g, w = gx[b], gq[b], ws[b]
        for k in range(1, ng):  # gates other than the reset gate: just the sigmoid
            xk, gk, bk, wk = x[k * H : (k + 1) * H], g[k * H : (k + 1) * H], b_x[k * H : (k + 1) * H], w[k * H :]
            for j in range(H):
                wk[j] = _sigmoid(xk[j] + gk[j] + bk[j])
        hp, q, o = h_prev[b], w[:H], qh[b]
        for j in range(H):
            qj = _sigmoid(x[j] + g[j] + b_x[j])
            q[j] = qj
            o[j] = qj * hp[j]


@njit(**VJIT)
def _reset_fwd_update_kernel(gx, gc, b_x, h_prev, u_idx, h_new, ws):
    """Candidate c = tanh(x W_c^T + (q h) W_hc^T + b) and h_t = h + u (c - h), u = gate u_idx."""
    B, H = h_new.shape
    ng = ws.shape[1] // H - 1
    bc = b_x[ng * H :]
    for b in range(B):
        x, g, w, hp, ho = gx[b, ng * H :], gc[b], ws[b], h_prev[b], h_new[b]
        u, c = w[u_idx * H : (u_idx + 1) * H], w[ng * H :]
        for j in range(H):
            cj = _tanh(x[j] + g[j] + bc[j])
            c[j] = cj
            ho[j] = hp[j] + u[j] * (cj - hp[j])


# ---------------------------------------------------------------- cudnn backward


@njit(**VJIT)
def _gru_bwd_kernel(dh, dg, d_out, ws, h_prev, d_ih, d_hh):
    """One step's gate gradients. In: dh = the part of dL/dh_t not through W_hh, dg = the part
    through it (last step's GEMM). Out: d_ih = (da_r, da_z, da_n), d_hh = (da_r, da_z, dhn), dh = g z."""
    B, H = dh.shape
    for b in range(B):
        w, hp, dp, dgb, do = ws[b], h_prev[b], dh[b], dg[b], d_out[b]
        r, z, n, hn = w[:H], w[H : 2 * H], w[2 * H : 3 * H], w[3 * H :]
        ir, iz, i_n = d_ih[b, :H], d_ih[b, H : 2 * H], d_ih[b, 2 * H :]
        hr, hz, h_n = d_hh[b, :H], d_hh[b, H : 2 * H], d_hh[b, 2 * H :]
        for j in range(H):
            g = dp[j] + dgb[j] + do[j]
            zj, nj = z[j], n[j]
            da_n = (g - g * zj) * _dtanh(nj)
            da_r = da_n * hn[j] * _dsigmoid(r[j])
            da_z = g * (hp[j] - nj) * _dsigmoid(zj)
            ir[j], iz[j], i_n[j] = da_r, da_z, da_n
            hr[j], hz[j], h_n[j] = da_r, da_z, da_n * r[j]
            dp[j] = g * zj


# -------------------------------------------------------- reset-gated backward


@njit(**VJIT)
def _reset_bwd_cand_kernel(dh, dg, d_out, ws, h_prev, u_idx, d_c, d_q):
    """Candidate part of a step: d_c = da_c; d_q[u] = dL/du (final unless u is the reset gate); dh = g (1 - u)."""
    B, H = dh.shape
    ng = ws.shape[1] // H - 1
    for b in range(B):
        w, hp, dp, dgb, do, dc = ws[b], h_prev[b], dh[b], dg[b], d_out[b], d_c[b]
        u, c, du = w[u_idx * H : (u_idx + 1) * H], w[ng * H :], d_q[b, u_idx * H : (u_idx + 1) * H]
        for j in range(H):
            g = dp[j] + dgb[j] + do[j]
            uj, cj = u[j], c[j]
            dc[j] = g * uj * _dtanh(cj)
            du[j] = g * (cj - hp[j]) if u_idx == 0 else g * (cj - hp[j]) * _dsigmoid(uj)
            dp[j] = g - g * uj


@njit(**VJIT)
def _reset_bwd_gate_kernel(dqh, ws, h_prev, u_idx, d_q, qh, dh):
    """Reset-gate part, from dqh = da_c W_hc = dL/d(q h): da_q, qh = q h (for dW_hc), dh += dqh q."""
    B, H = dh.shape
    for b in range(B):
        w, hp, dr, dq, o, dp = ws[b], h_prev[b], dqh[b], d_q[b], qh[b], dh[b]
        for j in range(H):
            qj, hj = w[j], hp[j]
            dqj = dr[j] * hj + dq[j] if u_idx == 0 else dr[j] * hj
            dq[j] = dqj * _dsigmoid(qj)
            o[j] = qj * hj
            dp[j] += dr[j] * qj


# ------------------------------------------------------------------ wrappers
# The time loops run in Python around numpy's BLAS: one thread pool for every GEMM here (numba's
# np.dot goes through scipy's OpenBLAS, a second pool; alternating the two made the forward 2x
# slower on 2 cores), NN layouts (h W^T with W^T copied once is ~15% faster per step than the
# transposed GEMM), and ~5 us of call overhead per step against a ~85 us GEMM.


def prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, dims):
    """C-contiguous arrays of x's float dtype, after the reference's checks (None -> zeros)."""
    T, B, H = dims
    x = prepare(x, "x")
    dt = x.dtype
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    h0 = np.zeros((B, H), dtype=dt) if h0 is None else prepare(h0, "h0", dt)
    gh = w_hh.shape[0]
    b_ih = np.zeros(gh, dtype=dt) if bias_ih is None else prepare(bias_ih, "bias_ih", dt)
    b_hh = np.zeros(gh, dtype=dt) if bias_hh is None else prepare(bias_hh, "bias_hh", dt)
    return x, h0, w_ih, w_hh, b_ih, b_hh


def prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace, dims):
    """Backward arguments, after the reference's checks, prepared: d_output None -> a
    [1, B, H] zero dummy (with has_dout False); ``dh`` a fresh buffer holding d_h_n (or 0)."""
    T, B, H = dims
    x = prepare(x, "x")
    dt = x.dtype
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    output, workspace = prepare(output, "output", dt), prepare(workspace, "workspace", dt)
    h0 = None if h0 is None else prepare(h0, "h0", dt)
    has_dout = d_output is not None
    d_out = prepare(d_output, "d_output", dt) if has_dout else np.zeros((1, B, H), dtype=dt)
    dh = np.zeros((B, H), dtype=dt) if d_h_n is None else prepare(d_h_n, "d_h_n", dt).copy()
    return d_out, has_dout, dh, x, h0, w_ih, w_hh, output, workspace


def hidden_grad(dz: np.ndarray, h0: np.ndarray | None, output: np.ndarray, out: np.ndarray) -> None:
    """out = sum_t dz_t^T h_{t-1} as dz_0^T h0 + dz_{1:}^T output_{:-1}: one GEMM, and the
    shifted sequence [h0, output[:-1]] is never built (h0 None: that term is 0)."""
    T, B, G = dz.shape
    H = output.shape[2]
    if T > 1:
        np.dot(dz[1:].reshape(-1, G).T, output[:-1].reshape(-1, H), out=out)
    else:
        out[...] = 0
    if h0 is not None:
        out += np.dot(dz[0].T, h0)


def reset_forward(x, h0, w_ih, w_hh, b_ih, b_hh, u_idx):
    """Forward of a reset-gated cell (cho GRU: u_idx 1; MGU: u_idx 0): (output, h_n, workspace)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    ngh = w_hh.shape[0] - H  # (G-1)H: the sigmoid gates' rows
    dt = x.dtype
    gx = input_projection(x, w_ih)  # T,B,GH
    b_x = b_ih + b_hh  # every bias adds outside the products here
    w_q = np.ascontiguousarray(w_hh[:ngh].T)  # H,(G-1)H
    w_c = np.ascontiguousarray(w_hh[ngh:].T)  # H,H
    output = np.empty((T, B, H), dtype=dt)
    workspace = np.empty((T, B, ngh + H), dtype=dt)
    gq, gc, qh = np.empty((B, ngh), dtype=dt), np.empty((B, H), dtype=dt), np.empty((B, H), dtype=dt)
    h_prev = h0
    for t in range(T):
        np.dot(h_prev, w_q, out=gq)
        _reset_fwd_gates_kernel(gx[t], gq, b_x, h_prev, workspace[t], qh)
        np.dot(qh, w_c, out=gc)
        _reset_fwd_update_kernel(gx[t], gc, b_x, h_prev, u_idx, output[t], workspace[t])
        h_prev = output[t]
    return output, output[-1].copy(), workspace


def reset_backward(d_out, has_dout, dh, x, h0, w_ih, w_hh, output, workspace, u_idx):
    """BPTT of a reset-gated cell: (dx, dh0, dW_ih, dW_hh, db), db the bias gradient (the same
    for bias_ih and bias_hh: both add to every pre-activation)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    ngh = w_hh.shape[0] - H
    dt = x.dtype
    d_q = np.empty((T, B, ngh), dtype=dt)  # T,B,(G-1)H: the gates' pre-activation gradients
    d_c = np.empty((T, B, H), dtype=dt)  # T,B,H: the candidate's
    qh = np.empty((T, B, H), dtype=dt)  # T,B,H: q_t h_{t-1}, for dW_hc
    w_q, w_c = w_hh[:ngh], w_hh[ngh:]
    h_init = np.zeros((B, H), dtype=dt) if h0 is None else h0
    dg, dqh = np.zeros((B, H), dtype=dt), np.empty((B, H), dtype=dt)
    for t in range(T - 1, -1, -1):
        h_prev = h_init if t == 0 else output[t - 1]
        _reset_bwd_cand_kernel(dh, dg, d_out[t if has_dout else 0], workspace[t], h_prev, u_idx, d_c[t], d_q[t])
        np.dot(d_c[t], w_c, out=dqh)
        _reset_bwd_gate_kernel(dqh, workspace[t], h_prev, u_idx, d_q[t], qh[t], dh)
        np.dot(d_q[t], w_q, out=dg)
    dh += dg
    dq2, dc2, x2 = d_q.reshape(T * B, ngh), d_c.reshape(T * B, H), x.reshape(T * B, -1)
    dx = np.dot(dq2, w_ih[:ngh])  # TB,I
    dx += np.dot(dc2, w_ih[ngh:])
    dw_ih, dw_hh = np.empty_like(w_ih), np.empty_like(w_hh)
    np.dot(dq2.T, x2, out=dw_ih[:ngh])
    np.dot(dc2.T, x2, out=dw_ih[ngh:])
    hidden_grad(d_q, h0, output, dw_hh[:ngh])
    np.dot(dc2.T, qh.reshape(T * B, H), out=dw_hh[ngh:])
    db = np.concatenate([dq2.sum(axis=0), dc2.sum(axis=0)])
    return dx.reshape(x.shape), dh, dw_ih, dw_hh, db


def _cudnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    gx = input_projection(x, w_ih)  # T,B,3H
    b_x = b_ih.copy()  # b_hn stays inside r * (W_hn h + b_hn); the rest adds up front
    b_x[: 2 * H] += b_hh[: 2 * H]
    b_hn = b_hh[2 * H :]
    w_t = np.ascontiguousarray(w_hh.T)  # H,3H
    output = np.empty((T, B, H), dtype=dt)
    workspace = np.empty((T, B, 4 * H), dtype=dt)
    gh = np.empty((B, 3 * H), dtype=dt)  # B,3H: h_{t-1} W_hh^T
    h_prev = h0
    for t in range(T):
        np.dot(h_prev, w_t, out=gh)
        _gru_fwd_kernel(gx[t], gh, b_x, b_hn, h_prev, output[t], workspace[t])
        h_prev = output[t]
    return output, output[-1].copy(), workspace


def _cudnn_backward(d_out, has_dout, dh, x, h0, w_ih, w_hh, output, workspace):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    d_ih = np.empty((T, B, 3 * H), dtype=dt)  # T,B,3H: (da_r, da_z, da_n)
    d_hh = np.empty((T, B, 3 * H), dtype=dt)  # T,B,3H: (da_r, da_z, dhn)
    h_init = np.zeros((B, H), dtype=dt) if h0 is None else h0
    dg = np.zeros((B, H), dtype=dt)  # B,H: d_hh[t+1] W_hh
    for t in range(T - 1, -1, -1):
        h_prev = h_init if t == 0 else output[t - 1]
        _gru_bwd_kernel(dh, dg, d_out[t if has_dout else 0], workspace[t], h_prev, d_ih[t], d_hh[t])
        np.dot(d_hh[t], w_hh, out=dg)
    dh += dg
    d_ih2 = d_ih.reshape(T * B, 3 * H)
    dx = np.dot(d_ih2, w_ih).reshape(x.shape)  # T,B,I
    dw_ih = np.dot(d_ih2.T, x.reshape(T * B, -1))
    dw_hh = np.empty_like(w_hh)
    hidden_grad(d_hh, h0, output, dw_hh)
    return dx, dh, dw_ih, dw_hh, d_ih2.sum(axis=0), d_hh.reshape(T * B, 3 * H).sum(axis=0)


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
    variant: str = "cudnn",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a GRU over a sequence; returns (output [T, B, H], h_n [B, H], workspace
    (cudnn [T, B, 4H] = r, z, n, hn; cho [T, B, 3H] = r, z, n)). See dlgpu.reference.gru."""
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh = as_numpy(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
    check_choice(variant, VARIANTS, "variant")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    args = prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, (T, B, H))
    return _cudnn_forward(*args) if variant == "cudnn" else reset_forward(*args, 1)


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
    """Backpropagation through time for ``gru_forward``; returns (dx [T, B, I], dh0 [B, H],
    dweight_ih [3H, I], dweight_hh [3H, H], dbias_ih [3H], dbias_hh [3H]). See dlgpu.reference.gru."""
    d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace = as_numpy(
        d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace
    )
    check_choice(variant, VARIANTS, "variant")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    _ref._check_backward_args(d_output, d_h_n, output, workspace, T, B, H, WORKSPACE_GATES[variant])
    args = prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace, (T, B, H))
    if variant == "cudnn":
        return _cudnn_backward(*args)
    dx, dh0, dw_ih, dw_hh, db = reset_backward(*args, 1)
    return dx, dh0, dw_ih, dw_hh, db, db.copy()
