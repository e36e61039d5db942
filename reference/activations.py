"""Activations: the oracle. Forward and backward, one NumPy line per equation.

Every function computes in the dtype of its input (tests use float64). Backward
functions take the upstream gradient ``dy`` first, then what the forward saved:
the input ``x`` where the derivative needs it, the output ``y`` where the
derivative is cheaper from the output (sigmoid, tanh, softmax), which is what
the fused GPU epilogues keep as well.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_activation, check_axis, check_dtype_as, check_float, check_number, check_same_shape


def _check_backward(dy: np.ndarray, saved: np.ndarray, saved_name: str) -> None:
    """An elementwise backward's arguments: float dy, and the forward's x or y of its shape and dtype."""
    check_same_shape(saved, dy, saved_name, "dy")
    check_float(dy, "dy")
    check_dtype_as(saved, saved_name, dy.dtype, like="dy")


# --------------------------------------------------------------------------- relu


def relu_forward(x: np.ndarray) -> np.ndarray:
    """y = max(0, x)."""
    check_float(x, "x")
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx = dy * [x > 0]; the subgradient at x = 0 is taken as 0 (as torch does)."""
    _check_backward(dy, x, "x")
    return np.where(x > 0, dy, 0).astype(dy.dtype, copy=False)


# --------------------------------------------------------------------- leaky relu


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """y = x if x > 0 else negative_slope * x."""
    check_float(x, "x")
    slope = x.dtype.type(check_number(negative_slope, "negative_slope"))
    return np.where(x > 0, x, x * slope).astype(x.dtype, copy=False)


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """dx = dy if x > 0 else negative_slope * dy (slope at 0 is negative_slope, as torch)."""
    _check_backward(dy, x, "x")
    slope = dy.dtype.type(check_number(negative_slope, "negative_slope"))
    return np.where(x > 0, dy, dy * slope).astype(dy.dtype, copy=False)


# ------------------------------------------------------------------------ sigmoid


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """y = 1 / (1 + exp(-x)), evaluated without overflow for large |x|.

    For x < 0 the algebraically equal exp(x) / (1 + exp(x)) keeps exp's argument <= 0.
    """
    check_float(x, "x")
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy * y * (1 - y), from the forward's output y."""
    _check_backward(dy, y, "y")
    return dy * y * (1 - y)


# --------------------------------------------------------------------------- tanh


def tanh_forward(x: np.ndarray) -> np.ndarray:
    """y = tanh(x)."""
    check_float(x, "x")
    return np.tanh(x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy * (1 - y^2), from the forward's output y."""
    _check_backward(dy, y, "y")
    return dy * (1 - y * y)


# ----------------------------------------------------------------------- softplus


def softplus_forward(x: np.ndarray) -> np.ndarray:
    """y = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), stable for any x."""
    check_float(x, "x")
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def softplus_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx = dy * sigmoid(x)."""
    _check_backward(dy, x, "x")
    return dy * sigmoid_forward(x)


# ------------------------------------------------------------------------ softmax


def _check_softmax_input(x: np.ndarray, axis: int) -> int:
    check_float(x, "x")
    axis = check_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x must have at least one element along axis {axis}, got shape {tuple(x.shape)}")
    return axis


def softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_k = exp(x_k - m) / sum_j exp(x_j - m), m = max_j x_j (the shift changes nothing
    mathematically and keeps every exp's argument <= 0)."""
    axis = _check_softmax_input(x, axis)
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx_k = y_k * (dy_k - sum_j dy_j y_j): the Jacobian diag(y) - y y^T applied to dy."""
    _check_backward(dy, y, "y")
    axis = check_axis(axis, dy.ndim)
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_k = x_k - m - log sum_j exp(x_j - m), m = max_j x_j: finite for any finite x."""
    axis = _check_softmax_input(x, axis)
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def log_softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx_k = dy_k - exp(y_k) * sum_j dy_j, from the forward's output y = log softmax(x)."""
    _check_backward(dy, y, "y")
    axis = check_axis(axis, dy.ndim)
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


# ------------------------------------------------- fused epilogues (linear, conv)


def activation_forward(z: np.ndarray, activation: str = "none", negative_slope: float = 0.01) -> np.ndarray:
    """Apply a named activation (the set a fused linear/conv epilogue supports)."""
    check_activation(activation, negative_slope)
    if activation == "none":
        return z
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
    """Gradient through a named activation, from the activation's *output* ``out``.

    Every supported activation's derivative is a function of its output (relu and
    leaky_relu keep the sign of their input for negative_slope > 0), so fused
    kernels never store the pre-activation.
    """
    check_activation(activation, negative_slope)
    if activation == "none":
        return dy
    if activation == "relu":
        return relu_backward(dy, out)
    if activation == "leaky_relu":
        return leaky_relu_backward(dy, out, negative_slope)
    if activation == "sigmoid":
        return sigmoid_backward(dy, out)
    return tanh_backward(dy, out)
