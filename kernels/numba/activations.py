"""Activations: Numba CPU kernels with the names, arguments and checks of dlgpu.reference.activations.

Elementwise ops are one parallel pass over the flat array, output allocated once; softmax and
log_softmax are one parallel pass over rows along the last axis (another axis is moved last by
the wrapper and back).

exp, tanh and log1p are the inline branch-free polynomials of ``_math``, not numpy's: numba lowers
np.exp to a scalar libm call (it has no vector math library unless Intel SVML is installed), which
keeps every loop around it scalar and 3-5x slower than torch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...reference._validate import check_activation, check_axis, check_float, check_number, check_same_shape
from ._common import JIT, SERIAL_BELOW_CHEAP, pjit, prepare
from ._math import INLINE, _c, _exp, _log1p_unit, _sigmoid, _tanh

# Epilogue codes shared with the fused linear kernel (kernels take an int, not a string).
ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}
NONE, RELU, LEAKY_RELU, SIGMOID, TANH = range(5)

# Per-element activations and their gradients; the *_grad take the forward's input x where
# the reference does, else its output y (the sign of relu/leaky_relu's output is that of x).


@njit(**INLINE)
def _relu(x):
    return _c(0.0, x) if x < 0 else x  # NaN passes through, as np.maximum


@njit(**INLINE)
def _leaky_relu(x, slope):
    return x if x > 0 else x * slope


@njit(**INLINE)
def _relu_grad(g, x):
    return g if x > 0 else _c(0.0, g)


@njit(**INLINE)
def _leaky_relu_grad(g, x, slope):
    return g if x > 0 else g * slope


@njit(**INLINE)
def _sigmoid_grad(g, y):
    return g * y * (_c(1.0, y) - y)


@njit(**INLINE)
def _tanh_grad(g, y):
    return g * (_c(1.0, y) - y * y)


# Row reductions. LLVM vectorizes a float reduction only if it may reorder it: reassoc for the
# sums (nothing else in them to reorder), explicit partial maxima for the max (no fast-math flag
# gets LLVM to vectorize a float max loop).


@njit(**dict(JIT, fastmath={"reassoc"}))
def _row_sum(a):
    s = _c(0.0, a)
    for j in range(a.size):
        s += a[j]
    return s


@njit(**dict(JIT, fastmath={"reassoc"}))
def _row_dot(a, b):
    s = _c(0.0, a)
    for j in range(a.size):
        s += a[j] * b[j]
    return s


@njit(**JIT)
def _row_max(a):
    n = a.size  # >= 1
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = a[0]
    n8 = n - n % 8
    for j in range(0, n8, 8):
        m0, m1, m2, m3 = max(m0, a[j]), max(m1, a[j + 1]), max(m2, a[j + 2]), max(m3, a[j + 3])
        m4, m5, m6, m7 = max(m4, a[j + 4]), max(m5, a[j + 5]), max(m6, a[j + 6]), max(m7, a[j + 7])
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(n8, n):
        m = max(m, a[j])
    return m


# ---------------------------------------------------------------------------- kernels


@pjit(SERIAL_BELOW_CHEAP)
def _relu_fwd_kernel(x, y):
    for i in prange(x.size):
        y[i] = _relu(x[i])


@pjit(SERIAL_BELOW_CHEAP)
def _relu_bwd_kernel(dy, x, dx):
    for i in prange(x.size):
        dx[i] = _relu_grad(dy[i], x[i])


@pjit(SERIAL_BELOW_CHEAP)
def _leaky_relu_fwd_kernel(x, slope, y):
    for i in prange(x.size):
        y[i] = _leaky_relu(x[i], slope)


@pjit(SERIAL_BELOW_CHEAP)
def _leaky_relu_bwd_kernel(dy, x, slope, dx):
    for i in prange(x.size):
        dx[i] = _leaky_relu_grad(dy[i], x[i], slope)


@pjit()
def _sigmoid_fwd_kernel(x, y):
    for i in prange(x.size):
        y[i] = _sigmoid(x[i])


@pjit(SERIAL_BELOW_CHEAP)
def _sigmoid_bwd_kernel(dy, y, dx):
    for i in prange(y.size):
        dx[i] = _sigmoid_grad(dy[i], y[i])


@pjit()
def _tanh_fwd_kernel(x, y):
    for i in prange(x.size):
        y[i] = _tanh(x[i])


@pjit(SERIAL_BELOW_CHEAP)
def _tanh_bwd_kernel(dy, y, dx):
    for i in prange(y.size):
        dx[i] = _tanh_grad(dy[i], y[i])


@pjit()
def _softplus_fwd_kernel(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = (v if v > 0 else _c(0.0, v)) + _log1p_unit(_exp(-abs(v)))


@pjit()
def _softplus_bwd_kernel(dy, x, dx):
    for i in prange(x.size):
        dx[i] = dy[i] * _sigmoid(x[i])


@pjit()
def _softmax_fwd_kernel(x, y):  # R,K rows along the softmax axis
    for i in prange(x.shape[0]):
        xi, yi = x[i], y[i]
        m = _row_max(xi)
        for j in range(xi.size):
            yi[j] = _exp(xi[j] - m)
        inv = _c(1.0, m) / _row_sum(yi)
        for j in range(xi.size):
            yi[j] *= inv


@pjit()
def _softmax_bwd_kernel(dy, y, dx):  # R,K
    for i in prange(y.shape[0]):
        dyi, yi, dxi = dy[i], y[i], dx[i]
        s = _row_dot(dyi, yi)
        for j in range(yi.size):
            dxi[j] = yi[j] * (dyi[j] - s)


@pjit()
def _log_softmax_fwd_kernel(x, y):  # R,K
    for i in prange(x.shape[0]):
        xi, yi = x[i], y[i]
        m = _row_max(xi)
        for j in range(xi.size):
            yi[j] = _exp(xi[j] - m)  # y holds e^(x-m) until the sum is known
        log_sum = np.log(_row_sum(yi))
        for j in range(xi.size):
            yi[j] = (xi[j] - m) - log_sum


@pjit()
def _log_softmax_bwd_kernel(dy, y, dx):  # R,K
    for i in prange(y.shape[0]):
        dyi, yi, dxi = dy[i], y[i], dx[i]
        s = _row_sum(dyi)
        for j in range(yi.size):
            dxi[j] = dyi[j] - _exp(yi[j]) * s


# --------------------------------------------------------------------------- wrappers


def _unary(kernel, x, *args):
    x = prepare(x, "x")
    y = np.empty(x.shape, x.dtype)
    kernel(x.reshape(-1), *(x.dtype.type(a) for a in args), y.reshape(-1))
    return y


def _binary(kernel, dy, saved, saved_name, *args):
    """Backward of an elementwise op: ``saved`` is the forward's x or y."""
    dy = prepare(dy, "dy")
    saved = prepare(saved, saved_name, dy.dtype)
    dx = np.empty(dy.shape, dy.dtype)
    kernel(dy.reshape(-1), saved.reshape(-1), *(dy.dtype.type(a) for a in args), dx.reshape(-1))
    return dx


def relu_forward(x: np.ndarray) -> np.ndarray:
    """y = max(0, x)."""
    check_float(x, "x")
    return _unary(_relu_fwd_kernel, x)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx = dy * [x > 0]; the subgradient at x = 0 is taken as 0 (as torch does)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(_relu_bwd_kernel, dy, x, "x")


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """y = x if x > 0 else negative_slope * x."""
    check_float(x, "x")
    return _unary(_leaky_relu_fwd_kernel, x, check_number(negative_slope, "negative_slope"))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """dx = dy if x > 0 else negative_slope * dy (slope at 0 is negative_slope, as torch)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(_leaky_relu_bwd_kernel, dy, x, "x", check_number(negative_slope, "negative_slope"))


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """y = 1 / (1 + exp(-x)), without overflow for large |x|."""
    check_float(x, "x")
    return _unary(_sigmoid_fwd_kernel, x)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy * y * (1 - y), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(_sigmoid_bwd_kernel, dy, y, "y")


def tanh_forward(x: np.ndarray) -> np.ndarray:
    """y = tanh(x)."""
    check_float(x, "x")
    return _unary(_tanh_fwd_kernel, x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy * (1 - y^2), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(_tanh_bwd_kernel, dy, y, "y")


def softplus_forward(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0) + log1p(exp(-|x|)), stable for any x."""
    check_float(x, "x")
    return _unary(_softplus_fwd_kernel, x)


def softplus_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx = dy * sigmoid(x)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(_softplus_bwd_kernel, dy, x, "x")


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved last, C-contiguous, as R,K rows (a view when axis is last)."""
    if axis == a.ndim - 1:  # the usual case, without moveaxis's ~3 us of Python
        return a.reshape(-1, a.shape[axis])
    return np.ascontiguousarray(np.moveaxis(a, axis, -1)).reshape(-1, a.shape[axis])


def _unrows(r: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of ``_rows``: C-contiguous, in ``shape``."""
    if axis == len(shape) - 1:
        return r.reshape(shape)
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    return np.ascontiguousarray(np.moveaxis(r.reshape(moved), -1, axis))


def _rowwise_forward(kernel, x, axis):
    check_float(x, "x")
    x = prepare(x, "x")
    axis = check_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x must have at least one element along axis {axis}, got shape {tuple(x.shape)}")
    xr = _rows(x, axis)
    y = np.empty(xr.shape, x.dtype)
    kernel(xr, y)
    return _unrows(y, x.shape, axis)


def _rowwise_backward(kernel, dy, y, axis):
    check_same_shape(y, dy, "y", "dy")
    dy = prepare(dy, "dy")
    y = prepare(y, "y", dy.dtype)
    axis = check_axis(axis, dy.ndim)
    if dy.size == 0:
        return np.empty(dy.shape, dy.dtype)
    dyr, yr = _rows(dy, axis), _rows(y, axis)
    dx = np.empty(dyr.shape, dy.dtype)
    kernel(dyr, yr, dx)
    return _unrows(dx, dy.shape, axis)


def softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_k = exp(x_k - m) / sum_j exp(x_j - m), m = max_j x_j."""
    return _rowwise_forward(_softmax_fwd_kernel, x, axis)


def softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx_k = y_k * (dy_k - sum_j dy_j y_j)."""
    return _rowwise_backward(_softmax_bwd_kernel, dy, y, axis)


def log_softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_k = x_k - m - log sum_j exp(x_j - m), m = max_j x_j."""
    return _rowwise_forward(_log_softmax_fwd_kernel, x, axis)


def log_softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx_k = dy_k - exp(y_k) * sum_j dy_j, from the forward's output y = log softmax(x)."""
    return _rowwise_backward(_log_softmax_bwd_kernel, dy, y, axis)


# ---------------------------------------------------- fused epilogues (linear, conv)


def activation_forward(z: np.ndarray, activation: str = "none", negative_slope: float = 0.01) -> np.ndarray:
    """Apply a named activation (the set a fused linear/conv epilogue supports)."""
    check_activation(activation, negative_slope)
    if activation == "none":
        return prepare(z, "z")
    if activation == "relu":
        return relu_forward(z)
    if activation == "leaky_relu":
        return leaky_relu_forward(z, negative_slope)
    if activation == "sigmoid":
        return sigmoid_forward(z)
    return tanh_forward(z)


def activation_backward(
    dy: np.ndarray, out: np.ndarray, activation: str = "none", negative_slope: float = 0.01
) -> np.ndarray:
    """Gradient through a named activation, from the activation's *output* ``out``
    (relu and leaky_relu keep the sign of their input for negative_slope > 0)."""
    check_activation(activation, negative_slope)
    if activation == "none":
        return prepare(dy, "dy")
    if activation == "relu":
        return relu_backward(dy, out)
    if activation == "leaky_relu":
        return leaky_relu_backward(dy, out, negative_slope)
    if activation == "sigmoid":
        return sigmoid_backward(dy, out)
    return tanh_backward(dy, out)
