"""Locally-connected 2-D layer (unshared convolution): Numba CPU kernels with the names, arguments and
checks of dlgpu.reference.locally_connected.

Every output position l = (i, j) has its own filter bank W_l = weight[i, j] viewed as [O, K],
K = C*KH*KW in (c, u, v) order, so the layer is one small GEMM per position:

    forward     Y_l [N, O] = X_l [N, K] @ W_l^T       (+ b[:, i, j])
    backward    dW_l [O, K] = dY_l^T @ X_l,   dX_l [N, K] = dY_l @ W_l,   db[:, i, j] = sum_n dY_l

with X_l the position's patches (im2col of one position). One task is one output row i (all its
OW positions), so each task's writes into y[:, :, i, :] stay together; tasks go round robin to the
threads, each with its own scratch, and every GEMM is a BLAS call run single-threaded inside the
prange (see conv.serial_blas for why).

The backward scatter of dX_l into dx overlaps between rows less than KH/sh apart, so rows run in
P = ceil(KH/sh) phases (i = phase mod P): rows of one phase touch disjoint input rows, and no two
threads ever write the same dx element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from ...reference._validate import check_float, check_shape, pair
from ...reference.locally_connected import _check, locally_connected2d_output_shape
from ._common import JIT, PJIT, prepare, prepare_optional
from .conv import _add, _copy, _valid_range, _zero, serial_blas

__all__ = ["locally_connected2d_backward", "locally_connected2d_forward", "locally_connected2d_output_shape"]


@njit(**JIT)
def _patches(x, i, j, geo, xl):
    """xl [N, C*KH*KW] = the zero-padded input window of output position (i, j), (c, u, v) order."""
    kh, kw, sh, sw, ph, pw = geo
    n, c, h, w = x.shape
    coff = j * sw - pw
    v0, v1 = _valid_range(coff, 1, w, kw)  # taps v whose column coff + v is inside the image
    for b in range(n):
        for ch in range(c):
            for u in range(kh):
                hi = i * sh + u - ph
                d = xl[b, (ch * kh + u) * kw : (ch * kh + u + 1) * kw]
                if 0 <= hi < h and v1 > v0:
                    _zero(d[:v0])
                    _copy(d[v0:v1], x[b, ch, hi, coff + v0 : coff + v1])
                    _zero(d[v1:])
                else:
                    _zero(d)


@njit(**JIT)
def _patches_t(dxl, i, j, geo, dx):
    """dx += the scatter of dxl [N, C*KH*KW] into position (i, j)'s window (the transpose of _patches)."""
    kh, kw, sh, sw, ph, pw = geo
    n, c, h, w = dx.shape
    coff = j * sw - pw
    v0, v1 = _valid_range(coff, 1, w, kw)
    for b in range(n):
        for ch in range(c):
            for u in range(kh):
                hi = i * sh + u - ph
                if 0 <= hi < h and v1 > v0:
                    base = (ch * kh + u) * kw
                    _add(dx[b, ch, hi, coff + v0 : coff + v1], dxl[b, base + v0 : base + v1])


# The prange kernels only hand each thread its slot: the per-thread work is a plain njit function
# over that thread's own scratch, writing only that scratch and the outputs its tasks own.


@njit(**JIT)
def _lc_fwd_thread(t, nt, x, w3, bias, y, xl, zrow, geo):
    """Output rows i = t, t + nt, ...: zrow [OW, N, O] collects the row's GEMMs, then y[:, :, i, :]."""
    n, o, oh, ow = y.shape
    for i in range(t, oh, nt):
        for j in range(ow):
            _patches(x, i, j, geo, xl)
            np.dot(xl, w3[i * ow + j].T, zrow[j])  # N,O
        for b in range(n):
            for oc in range(o):
                row = y[b, oc, i]
                z = zrow[:, b, oc]
                if bias.size:
                    beta = bias[oc, i]
                    for jj in range(ow):
                        row[jj] = z[jj] + beta[jj]
                else:
                    for jj in range(ow):
                        row[jj] = z[jj]


@njit(**PJIT)
def _lc_fwd_kernel(x, w3, bias, y, xl, zrow, geo):
    """x [N, C, H, W], w3 [OH*OW, O, K], bias [O, OH, OW] or empty, y [N, O, OH, OW]; per-thread
    scratch xl [T, N, K], zrow [T, OW, N, O]."""
    nt = xl.shape[0]
    for t in prange(nt):
        _lc_fwd_thread(t, nt, x, w3, bias, y, xl[t], zrow[t], geo)


@njit(**JIT)
def _lc_bwd_thread(t, nt, phase, nphase, dy, x, w3, dx, dw3, db, xl, dxl, dyrow, geo):
    """Rows i = phase + nphase*(t + k*nt) of this phase: dW_l, db and dx += the scatter of dX_l."""
    n, o, oh, ow = dy.shape
    for i in range(phase + nphase * t, oh, nphase * nt):
        for b in range(n):  # dyrow [OW, N, O]: the row's dY_l, position-major
            for oc in range(o):
                src = dy[b, oc, i]
                d = dyrow[:, b, oc]
                for jj in range(ow):
                    d[jj] = src[jj]
        for oc in range(o):
            acc = db[oc, i]
            for jj in range(ow):
                s = 0.0  # float64 accumulation over the batch
                for b in range(n):
                    s += dyrow[jj, b, oc]
                acc[jj] = s
        for j in range(ow):
            l = i * ow + j
            _patches(x, i, j, geo, xl)
            np.dot(dyrow[j].T, xl, dw3[l])  # O,K
            np.dot(dyrow[j], w3[l], dxl)  # N,K
            _patches_t(dxl, i, j, geo, dx)


@njit(**PJIT)
def _lc_bwd_kernel(dy, x, w3, dx, dw3, db, xl, dxl, dyrow, geo, nphase):
    """dy [N, O, OH, OW], x and dx [N, C, H, W], w3 and dw3 [OH*OW, O, K], db [O, OH, OW]; per-thread
    scratch xl, dxl [T, N, K] and dyrow [T, OW, N, O]. Phases of rows run one after the other."""
    nt = xl.shape[0]
    n, c = dx.shape[0], dx.shape[1]
    for p in prange(n * c):
        _zero(dx[p // c, p % c].reshape(-1))
    for phase in range(nphase):
        for t in prange(nt):
            _lc_bwd_thread(t, nt, phase, nphase, dy, x, w3, dx, dw3, db, xl[t], dxl[t], dyrow[t], geo)


def _geometry(weight_shape, stride, padding):
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    return (int(weight_shape[4]), int(weight_shape[5]), sh, sw, ph, pw)


def locally_connected2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> np.ndarray:
    """y[n, o, i, j] = b[o, i, j] + sum_{c,u,v} w[i, j, o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v].

    Args:
        x: [N, C, H, W] input (NCHW).
        weight: [OH, OW, O, C, KH, KW], one filter bank per output position.
        bias: [O, OH, OW] or None.
        stride, padding: int or (height, width) pair; stride >= 1, padding >= 0 (zeros).
    Returns:
        y: [N, O, OH, OW].
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding)
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    bias = prepare_optional(bias, "bias", x.dtype)
    k = x.shape[1] * weight.shape[4] * weight.shape[5]
    y = np.empty((n, o, oh, ow), x.dtype)
    with serial_blas() as nt:
        nt = max(1, min(nt, oh))  # one task per output row
        _lc_fwd_kernel(
            x, weight.reshape(oh * ow, o, k), bias if bias is not None else np.empty((0, 0, 0), x.dtype), y,
            np.empty((nt, n, k), x.dtype), np.empty((nt, ow, n, o), x.dtype), _geometry(weight.shape, stride, padding),
        )  # fmt: skip
    return y


def locally_connected2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the locally connected layer, see
    dlgpu.reference.locally_connected.locally_connected2d_backward.

    Args:
        dy: [N, O, OH, OW] upstream gradient.
        x, weight, stride, padding: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [OH, OW, O, C, KH, KW], dbias [O, OH, OW]).
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    dy = prepare(dy, "dy", x.dtype)
    geo = _geometry(weight.shape, stride, padding)
    k = x.shape[1] * geo[0] * geo[1]
    dx = np.empty(x.shape, x.dtype)
    dweight = np.empty(weight.shape, x.dtype)
    dbias = np.empty((o, oh, ow), x.dtype)
    with serial_blas() as nt:
        nt = max(1, min(nt, oh))
        _lc_bwd_kernel(
            dy, x, weight.reshape(oh * ow, o, k), dx, dweight.reshape(oh * ow, o, k), dbias,
            np.empty((nt, n, k), x.dtype), np.empty((nt, n, k), x.dtype), np.empty((nt, ow, n, o), x.dtype), geo,
            -(-geo[0] // geo[2]),
        )  # fmt: skip
    return dx, dweight, dbias
