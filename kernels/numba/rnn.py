"""Elman RNN (torch.nn.RNN, one layer) and its readout: Numba CPU kernels.

Same functions, arguments, results and errors as ``dlgpu.reference.rnn``. The input term has
no recurrence, so it is computed as GEMMs over blocks of time steps; each step is then one
BLAS call (W_hh h_{t-1}^T) and one fused pass (bias, nonlinearity), and the time loop runs
inside a compiled kernel so no step pays Python overhead. BPTT mirrors it: one fused pass and
one GEMM per step, then dx and the weight gradients as single GEMMs over all steps. The
readout is the numba linear layer applied along the sequence.

This file also holds what the recurrent families share: the per-step transpose, the blocked
input projection and the weight-gradient GEMMs; the gate nonlinearities are the vectorisable
ones of ``_math`` (numba's math.exp/math.tanh are scalar libm calls without SVML, ~10x slower).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ...reference import rnn as _ref
from ...reference._validate import check_choice, check_float, check_ndim
from ._common import JIT, prepare
from ._math import _dtanh, _tanh
from .linear import linear_backward, linear_forward

NONLINEARITIES = _ref.NONLINEARITIES

# ------------------------------------------------------------------ shared pieces


def as_numpy(*arrays: Any) -> list[Any]:
    """Array-likes (torch CPU tensors, ...) as numpy arrays, before the reference's checks:
    the dtype comparisons then see numpy dtypes. Non-arrays pass through to be rejected."""
    return [np.asarray(a) if all(hasattr(a, k) for k in ("shape", "ndim", "dtype")) else a for a in arrays]


@njit
def transpose_into(src, dst):
    """dst[b, g] = src[g, b] for a [rows, B] per-step GEMM result.

    The recurrent GEMMs run as W h^T ([rows, B]): for small B OpenBLAS is ~1.7x faster in
    that orientation than h W^T. The fused passes want batch rows (unit-stride, vectorised),
    so the result is turned around here, 16 source rows at a time to stay in L1.
    """
    R, B = src.shape
    R16 = R - R % 16
    for g0 in range(0, R16, 16):
        for b in range(B):
            d = dst[b]
            for g in range(g0, g0 + 16):
                d[g] = src[g, b]
    for b in range(B):
        for g in range(R16, R):
            dst[b, g] = src[g, b]


@njit
def preact_into(xwT, col, hwT, bias, z):
    """z[b, g] = xwT[g, col + b] + hwT[g, b] + bias[g]: one step's pre-activations.

    Both GEMMs run as W v^T ([rows, B] results): for small B OpenBLAS is ~1.7x faster in that
    orientation than v W^T. The fused passes want batch rows (unit stride, vectorised), so
    the sum is turned around here, and the pass then reads one stream per gate instead of
    three. 16 rows at a time: first summed along the unit-stride B axis into an L1 tile, then
    transposed out of it (a single strided read per element; summing during the transpose
    made two, measured 21 vs 16 us a step at [1024, 32]).
    """
    R, B = hwT.shape
    R16 = R - R % 16
    tile = np.empty((16, B), dtype=z.dtype)
    for g0 in range(0, R16, 16):
        for k in range(16):
            g = g0 + k
            xr, hr, tr, bg = xwT[g, col : col + B], hwT[g], tile[k], bias[g]
            for b in range(B):
                tr[b] = xr[b] + hr[b] + bg
        for b in range(B):
            d = z[b, g0 : g0 + 16]
            for k in range(16):
                d[k] = tile[k, b]
    for b in range(B):
        for g in range(R16, R):
            z[b, g] = xwT[g, col + b] + hwT[g, b] + bias[g]


# The input term has no recurrence, so it is one GEMM per block of time steps (every step
# of a short sequence at once). A block is kept to ~1 MiB: the GEMM's output is then read back
# from L2, and no [T, B, G*H] temporary is allocated (at T=100, B=32, H=256 that temporary
# alone costs ~5 ms in fresh-page faults and DRAM traffic, more than all the fused passes).
_XW_BLOCK_BYTES = 1 << 20


def block_steps(T: int, B: int, GH: int, itemsize: int) -> int:
    """Time steps per input-projection GEMM."""
    return max(1, min(T, _XW_BLOCK_BYTES // (B * GH * itemsize)))


@njit(**JIT)
def input_projection(x, w_ih):
    """x W_ih^T for every step at once: [T, B, I] -> [T, B, G*H], one GEMM (shared helper;
    the RNN and LSTM kernels use ``project_block`` instead)."""
    T, B, I = x.shape
    return np.dot(x.reshape(T * B, I), w_ih.T).reshape(T, B, w_ih.shape[0])


@njit
def project_block(x, w_ih, t0, nblk, buf):
    """W_ih x^T for steps t0 .. t0+n-1 (n <= nblk): one GEMM into ``buf``, returned as the
    [G*H, n*B] view whose columns t*B .. t*B+B-1 belong to step t0 + t."""
    n = min(nblk, x.shape[0] - t0)
    B, I, GH = x.shape[1], x.shape[2], w_ih.shape[0]
    xwT = buf[: GH * n * B].reshape(GH, n * B)
    np.dot(w_ih, x[t0 : t0 + n].reshape(n * B, I).T, xwT)
    return xwT


# --------------------------------------------------------------------------- rnn
# The fused per-step passes run on one thread: the step's GEMM already uses BLAS's threads,
# and a numba parallel region between two BLAS calls fights them for the cores: its OpenMP
# workers spin where BLAS's worker needs to run. Measured for the LSTM forward at T=100,
# B=32, I=128, H=256 on 2 cores: 19 ms serial, 800 ms with a prange per step (27 ms with
# OMP_WAIT_POLICY=passive).


@njit(**JIT)
def _rnn_fwd_step(z, relu, out_t):
    for b in range(out_t.shape[0]):
        zr, h = z[b], out_t[b]  # row views: unit stride, so the loops vectorise
        if relu:
            for j in range(h.shape[0]):
                h[j] = max(zr[j], 0.0)  # max keeps a NaN first argument
        else:
            for j in range(h.shape[0]):
                h[j] = _tanh(zr[j])


@njit(**JIT)
def _rnn_fwd_kernel(x, w_ih, h0, w_hh, bias, relu, nblk, output):
    T, B, H = output.shape
    buf = np.empty(H * nblk * B, dtype=output.dtype)  # W_ih x^T for a block of steps
    xwT = project_block(x, w_ih, 0, nblk, buf)  # H,nblk*B
    hwT = np.empty((H, B), dtype=output.dtype)  # H,B: W_hh h_{t-1}^T
    z = np.empty((B, H), dtype=output.dtype)  # B,H: pre-activations
    for t in range(T):
        if t % nblk == 0 and t > 0:
            xwT = project_block(x, w_ih, t, nblk, buf)
        np.dot(w_hh, (h0 if t == 0 else output[t - 1]).T, hwT)
        preact_into(xwT, (t % nblk) * B, hwT, bias, z)
        _rnn_fwd_step(z, relu, output[t])


@njit(**JIT)
def _rnn_bwd_step(dh, d_out_t, has_dout, h_t, relu, dz_t, db):
    """dz_t = dh_t * phi'; db accumulates dz_t's batch sum while it is in registers."""
    for b in range(dz_t.shape[0]):
        g, do, h, d = dh[b], d_out_t[b], h_t[b], dz_t[b]
        if has_dout:
            for j in range(d.shape[0]):
                g[j] += do[j]
        if relu:
            for j in range(d.shape[0]):
                v = g[j] if h[j] > 0 else 0.0
                d[j] = v
                db[j] += v
        else:
            for j in range(d.shape[0]):
                v = g[j] * _dtanh(h[j])
                d[j] = v
                db[j] += v


@njit(**JIT)
def _rnn_bwd_kernel(d_output, has_dout, dh, w_hhT, output, relu, dz, db):
    """BPTT over the steps; ``dh`` enters as d_h_n and leaves as dh0; db (zeros) gets sum dz.
    w_hhT is W_hh^T as its own C-contiguous array (see ``recurrent_weight_t``)."""
    T, B, H = output.shape
    dhT = np.empty((H, B), dtype=dh.dtype)  # H,B: W_hh^T dz_t^T
    for t in range(T - 1, -1, -1):
        _rnn_bwd_step(dh, d_output[t if has_dout else 0], has_dout, output[t], relu, dz[t], db)
        np.dot(w_hhT, dz[t].T, dhT)
        transpose_into(dhT, dh)


def recurrent_weight_t(w_hh: np.ndarray) -> np.ndarray:
    """W_hh^T [H, G*H] as its own C-contiguous array, for the BPTT step GEMM W_hh^T dz_t^T.

    Numba hands a transposed view to BLAS as a transposed operand, and OpenBLAS is ~20%
    slower that way at these shapes (measured at H=256, G*H=1024, B=32: 25.6 vs 20.5 ms for
    100 steps); the copy is made once per sequence.
    """
    return np.ascontiguousarray(w_hh.T)


def bias_sum(bias_ih: np.ndarray | None, bias_hh: np.ndarray | None, n: int, dtype: Any) -> np.ndarray:
    """b_ih + b_hh, the one bias vector the fused pass adds (zeros without biases)."""
    b = np.zeros(n, dtype=dtype)
    for v in (bias_ih, bias_hh):
        if v is not None:
            b += v
    return b


@njit(**JIT)
def weight_grads(dz, x, h0, has_h0, output, w_ih):
    """The non-recurrent BPTT products as GEMMs over all steps: (dx, dW_ih, dW_hh).

    dW_hh = sum_t dz_t^T h_{t-1} is split as dz_0^T h0 + dz_{1:}^T output_{:-1}, so the
    shifted sequence [h0, output[:-1]] is never materialised.
    """
    T, B, GH = dz.shape
    H = output.shape[2]
    dz2 = dz.reshape(T * B, GH)  # TB,GH
    dx = np.dot(dz2, w_ih).reshape(T, B, w_ih.shape[1])  # T,B,I
    dw_ih = np.dot(dz2.T, x.reshape(T * B, x.shape[2]))  # GH,I
    if T > 1:
        dw_hh = np.dot(dz[1:].reshape((T - 1) * B, GH).T, output[:-1].reshape((T - 1) * B, H))  # GH,H
    else:
        dw_hh = np.zeros((GH, H), dtype=dz.dtype)
    if has_h0:
        dw_hh += np.dot(dz[0].T, h0)
    return dx, dw_ih, dw_hh


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

    Returns (output [T, B, H] = h_1..h_T, h_n [B, H] = h_T); see dlgpu.reference.rnn.
    """
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh = as_numpy(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, 1)
    x = prepare(x, "x")
    dt = x.dtype
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    h0 = np.zeros((B, H), dtype=dt) if h0 is None else prepare(h0, "h0", dt)
    bias = bias_sum(bias_ih, bias_hh, H, dt)
    output = np.empty((T, B, H), dtype=dt)
    nblk = block_steps(T, B, H, dt.itemsize)
    _rnn_fwd_kernel(x, w_ih, h0, w_hh, bias, nonlinearity == "relu", nblk, output)
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

    Returns (dx [T, B, I], dh0 [B, H], dweight_ih [H, I], dweight_hh [H, H], dbias_ih [H],
    dbias_hh [H]); see dlgpu.reference.rnn.
    """
    d_output, d_h_n, x, h0, weight_ih, weight_hh, output = as_numpy(
        d_output, d_h_n, x, h0, weight_ih, weight_hh, output
    )
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, 1)
    _ref._check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    x = prepare(x, "x")
    dt = x.dtype
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt), prepare(weight_hh, "weight_hh", dt)
    output = prepare(output, "output", dt)
    has_h0 = h0 is not None
    h0 = prepare(h0, "h0", dt) if has_h0 else np.zeros((B, H), dtype=dt)
    has_dout = d_output is not None
    d_out = prepare(d_output, "d_output", dt) if has_dout else np.zeros((1, B, H), dtype=dt)
    dh = np.zeros((B, H), dtype=dt) if d_h_n is None else prepare(d_h_n, "d_h_n", dt).copy()
    dz = np.empty((T, B, H), dtype=dt)
    db = np.zeros(H, dtype=dt)
    _rnn_bwd_kernel(d_out, has_dout, dh, recurrent_weight_t(w_hh), output, nonlinearity == "relu", dz, db)
    dx, dw_ih, dw_hh = weight_grads(dz, x, h0, has_h0, output, w_ih)
    return dx, dh, dw_ih, dw_hh, db, db.copy()


# ----------------------------------------------------------------------- readout


def rnn_readout_forward(
    output: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    activation: str = "none",
) -> np.ndarray:
    """y_t = psi(W h_t + b) for every step: [T, B, H] -> [T, B, O]; see dlgpu.reference.rnn."""
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
    """(doutput [T, B, H], dweight [O, H], dbias [O]) of the readout; see dlgpu.reference.rnn."""
    check_float(output, "output")
    check_ndim(output, 3, "output", "T, B, hidden_size")
    return linear_backward(dy, output, weight, y, activation)
