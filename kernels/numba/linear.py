"""Fully-connected layer with a fused activation: Numba CPU kernels with the names, arguments and
checks of dlgpu.reference.linear.

    z = x W^T + b        x: [N, I], W: [O, I], b: [O]     -> z: [N, O]
    y = act(z)           act in {none, relu, leaky_relu, sigmoid, tanh}

Forward: one BLAS GEMM writes x2 W^T into the output, then one parallel pass over its rows adds the
bias and applies the activation in place. Backward: one parallel pass over row chunks turns dy into
dz = dy * act'(z) (from the saved output) and accumulates each chunk's column sums for db; then two
BLAS GEMMs give dx = dz W and dW = dz^T x.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...reference._validate import check_activation, check_same_shape, check_shape
from ...reference.linear import _check
from ._common import PJIT, prepare, prepare_optional
from ._math import _sigmoid, _tanh
from .activations import (
    ACT_CODES,
    LEAKY_RELU,
    NONE,
    RELU,
    SIGMOID,
    _leaky_relu,
    _leaky_relu_grad,
    _relu,
    _relu_grad,
    _sigmoid_grad,
    _tanh_grad,
)

# Row chunks of the backward's db reduction: a fixed count (not one per thread), so that db's
# summation order, hence its rounding, does not depend on the number of threads.
_DB_CHUNKS = 32
_DB_MIN_ROWS = 16


@njit(**PJIT)
def _linear_fwd_kernel(z, bias, act, slope):  # z: N,O holds x W^T, overwritten with y; bias: O
    for i in prange(z.shape[0]):
        zi = z[i]
        # one loop per activation: the branch stays out of the vectorized inner loop
        if act == NONE:
            for j in range(zi.size):
                zi[j] += bias[j]
        elif act == RELU:
            for j in range(zi.size):
                zi[j] = _relu(zi[j] + bias[j])
        elif act == LEAKY_RELU:
            for j in range(zi.size):
                zi[j] = _leaky_relu(zi[j] + bias[j], slope)
        elif act == SIGMOID:
            for j in range(zi.size):
                zi[j] = _sigmoid(zi[j] + bias[j])
        else:
            for j in range(zi.size):
                zi[j] = _tanh(zi[j] + bias[j])


@njit(**PJIT)
def _linear_bwd_kernel(dy, out, act, slope, dz, db_part):  # dy, out, dz: N,O; db_part: C,O
    n, nchunk = dy.shape[0], db_part.shape[0]
    for c in prange(nchunk):
        acc = db_part[c]  # this chunk's column sums of dz
        acc[:] = 0
        for i in range(c * n // nchunk, (c + 1) * n // nchunk):
            g, o, d = dy[i], out[i], dz[i]
            if act == NONE:  # dz is dy itself: only the sums
                for j in range(g.size):
                    acc[j] += g[j]
            elif act == RELU:
                for j in range(g.size):
                    v = _relu_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v
            elif act == LEAKY_RELU:
                for j in range(g.size):
                    v = _leaky_relu_grad(g[j], o[j], slope)
                    d[j] = v
                    acc[j] += v
            elif act == SIGMOID:
                for j in range(g.size):
                    v = _sigmoid_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v
            else:
                for j in range(g.size):
                    v = _tanh_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v


def linear_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> np.ndarray:
    """y = act(x W^T + b).

    Args:
        x: [..., I] input.
        weight: [O, I] (torch.nn.Linear's layout).
        bias: [O] or None.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for x < 0.
    Returns:
        y: [..., O].
    """
    _check(x, weight, bias)
    check_activation(activation, negative_slope)
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    bias = prepare_optional(bias, "bias", x.dtype)
    (o, i), n = weight.shape, math.prod(x.shape[:-1])
    y = np.empty(x.shape[:-1] + (o,), x.dtype)
    y2 = y.reshape(n, o)
    np.matmul(x.reshape(n, i), weight.T, out=y2)
    if bias is None and activation == "none":
        return y
    if bias is None:
        bias = np.zeros(o, x.dtype)
    _linear_fwd_kernel(y2, bias, ACT_CODES[activation], x.dtype.type(negative_slope))
    return y


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    out: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = act(x W^T + b).

        dz = dy * act'(z)   (from the output y)
        dx = dz W           dW = dz^T x           db = sum_n dz

    Args:
        dy: [..., O] upstream gradient.
        x, weight: as in the forward.
        out: the forward's output y; required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [..., I], dweight [O, I], dbias [O]); dbias is returned even when the
        forward had no bias (the caller drops it).
    """
    _check(x, weight, None)
    check_activation(activation, negative_slope)
    out_shape = x.shape[:-1] + (weight.shape[0],)
    check_shape(dy, out_shape, "dy", "x's leading dims, out_features")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    dy = prepare(dy, "dy", x.dtype)
    (o, i), n = weight.shape, math.prod(x.shape[:-1])
    dy2, x2 = dy.reshape(n, o), x.reshape(n, i)
    db_part = np.empty((max(1, min(_DB_CHUNKS, n // _DB_MIN_ROWS)), o), x.dtype)  # C,O
    if activation == "none":
        dz2 = dy2  # the kernel only sums it: it gets an empty dz, so a read-only dy works and is never written
        _linear_bwd_kernel(dy2, dy2, NONE, x.dtype.type(0), np.empty((n, 0), x.dtype), db_part)
    else:
        out2 = prepare(out, "out", x.dtype).reshape(n, o)
        dz2 = np.empty_like(dy2)
        _linear_bwd_kernel(dy2, out2, ACT_CODES[activation], x.dtype.type(negative_slope), dz2, db_part)
    dx = (dz2 @ weight).reshape(x.shape)
    dw = dz2.T @ x2  # O,I
    db = db_part.sum(axis=0)  # O
    return dx, dw, db
