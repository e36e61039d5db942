"""Activations through CUDA C (activations.cu): same API as dlgpu.reference.activations.

Inputs are cupy arrays or torch CUDA tensors (float32, float16; bfloat16 torch tensors only);
outputs have the input's kind, dtype and shape. Arithmetic is fp32. Softmax runs over any axis:
the array is viewed as [outer, K, inner] without copying (see activations.cu for the modes).
"""

from __future__ import annotations

import math
from typing import Any

from ...reference._validate import check_activation, check_axis, check_float, check_number, check_same_shape
from ._common import ACTIVATION_CODES, CTYPES, FLOAT_DTYPES, Call, Module, cdiv, dtype_name, f32, i64, ptr

# elementwise codes: ACT_* of common.cuh, SOFTPLUS = 5 in activations.cu
EW_CODES = {**{k: v for k, v in ACTIVATION_CODES.items() if k != "none"}, "softplus": 5}
MODE_WARP, MODE_BLOCK, MODE_COL = 0, 1, 2
_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)

NAME_EXPRESSIONS: tuple[str, ...] = (
    *(f"act_{d}_kernel<{c}, {a}>" for d in ("fwd", "bwd") for c in _FLOAT_CT for a in EW_CODES.values()),
    *(
        f"softmax_{d}_kernel<{c}, {log}, {mode}>"
        for d in ("fwd", "bwd")
        for c in _FLOAT_CT
        for log in ("false", "true")
        for mode in (MODE_WARP, MODE_BLOCK, MODE_COL)
    ),
)
MODULE = Module("activations", NAME_EXPRESSIONS)

EW_THREADS = 256
EW_MAX_BLOCKS = 65536  # grid-stride beyond this
ROW_THREADS = 256  # warp mode: 8 rows per block; block mode: one row per block
WARP_MAX_K = 1024


def ew_grid(n: int) -> tuple[int]:
    """Blocks of EW_THREADS for a grid-stride elementwise kernel over n elements."""
    return (max(1, min(cdiv(n, EW_THREADS), EW_MAX_BLOCKS)),)


def _unary(x: Any, act: str, slope: float = 0.0) -> Any:
    call = Call(x=x)
    x = call.prepare(x, "x")
    y = call.empty(x.shape, _dt(x))
    n = math.prod(x.shape)
    if n:
        name = f"act_fwd_kernel<{CTYPES[_dt(x)]}, {EW_CODES[act]}>"
        call.launch(MODULE, name, ew_grid(n), (EW_THREADS,), (ptr(x), ptr(y), i64(n), f32(slope)))
    return y


def _binary(dy: Any, saved: Any, saved_name: str, act: str, slope: float = 0.0) -> Any:
    """Backward of an elementwise op: ``saved`` is the forward's x or y (same shape, checked)."""
    call = Call(dy=dy, **{saved_name: saved})
    dy = call.prepare(dy, "dy")
    saved = call.prepare(saved, saved_name, dtype=(_dt(dy), "dy"))
    dx = call.empty(dy.shape, _dt(dy))
    n = math.prod(dy.shape)
    if n:
        name = f"act_bwd_kernel<{CTYPES[_dt(dy)]}, {EW_CODES[act]}>"
        call.launch(MODULE, name, ew_grid(n), (EW_THREADS,), (ptr(dy), ptr(saved), ptr(dx), i64(n), f32(slope)))
    return dx


def _dt(x: Any) -> str:
    return dtype_name(x.dtype)


def relu_forward(x: Any) -> Any:
    """y = max(0, x) (NaN propagates)."""
    check_float(x, "x")
    return _unary(x, "relu")


def relu_backward(dy: Any, x: Any) -> Any:
    """dx = dy * [x > 0]; 0 at x = 0."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "relu")


def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> Any:
    """y = x if x > 0 else negative_slope * x."""
    check_float(x, "x")
    return _unary(x, "leaky_relu", check_number(negative_slope, "negative_slope"))


def leaky_relu_backward(dy: Any, x: Any, negative_slope: float = 0.01) -> Any:
    """dx = dy if x > 0 else negative_slope * dy."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "leaky_relu", check_number(negative_slope, "negative_slope"))


def sigmoid_forward(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), without overflow."""
    check_float(x, "x")
    return _unary(x, "sigmoid")


def sigmoid_backward(dy: Any, y: Any) -> Any:
    """dx = dy * y * (1 - y), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(dy, y, "y", "sigmoid")


def tanh_forward(x: Any) -> Any:
    """y = tanh(x)."""
    check_float(x, "x")
    return _unary(x, "tanh")


def tanh_backward(dy: Any, y: Any) -> Any:
    """dx = dy * (1 - y^2), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(dy, y, "y", "tanh")


def softplus_forward(x: Any) -> Any:
    """y = max(x, 0) + log1p(exp(-|x|))."""
    check_float(x, "x")
    return _unary(x, "softplus")


def softplus_backward(dy: Any, x: Any) -> Any:
    """dx = dy * sigmoid(x)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "softplus")


# ------------------------------------------------------------------ softmax


def softmax_plan(shape: tuple[int, ...], axis: int) -> tuple[int, tuple[int], tuple[int], tuple[int, int, int]]:
    """(mode, grid, block, (rows, K, inner)) for a softmax over ``axis`` of a contiguous ``shape``.

    rows is the number of rows (MODE_WARP/MODE_BLOCK) or of (outer, inner) columns (MODE_COL).
    """
    k = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    if inner > 1:
        cols = outer * inner
        return MODE_COL, (cdiv(cols, ROW_THREADS),), (ROW_THREADS,), (cols, k, inner)
    if k <= WARP_MAX_K:
        return MODE_WARP, (cdiv(outer, ROW_THREADS // 32),), (ROW_THREADS,), (outer, k, 1)
    threads = 1024 if k >= 8192 else ROW_THREADS
    return MODE_BLOCK, (outer,), (threads,), (outer, k, 1)


def _rowwise(kernel: str, arrays: dict[str, Any], axis: int, log: bool) -> Any:
    call = Call(**arrays)
    names = list(arrays)
    first = call.prepare(arrays[names[0]], names[0])
    rest = [call.prepare(arrays[n], n, dtype=(_dt(first), names[0])) for n in names[1:]]
    axis = check_axis(axis, len(first.shape))
    shape = tuple(int(s) for s in first.shape)
    if shape[axis] == 0 and kernel == "fwd":
        raise ValueError(f"x must have at least one element along axis {axis}, got shape {shape}")
    out = call.empty(shape, _dt(first))
    if math.prod(shape):
        mode, grid, block, (rows, k, inner) = softmax_plan(shape, axis)
        name = f"softmax_{kernel}_kernel<{CTYPES[_dt(first)]}, {'true' if log else 'false'}, {mode}>"
        args = (ptr(first), *(ptr(r) for r in rest), ptr(out), i64(rows), i64(k), i64(inner))
        call.launch(MODULE, name, grid, block, args)
    return out


def softmax_forward(x: Any, axis: int = -1) -> Any:
    """y_k = exp(x_k - m) / sum_j exp(x_j - m), m = max_j x_j, over ``axis``."""
    check_float(x, "x")
    return _rowwise("fwd", {"x": x}, axis, False)


def softmax_backward(dy: Any, y: Any, axis: int = -1) -> Any:
    """dx_k = y_k * (dy_k - sum_j dy_j y_j)."""
    check_same_shape(y, dy, "y", "dy")
    return _rowwise("bwd", {"dy": dy, "y": y}, axis, False)


def log_softmax_forward(x: Any, axis: int = -1) -> Any:
    """y_k = x_k - m - log sum_j exp(x_j - m)."""
    check_float(x, "x")
    return _rowwise("fwd", {"x": x}, axis, True)


def log_softmax_backward(dy: Any, y: Any, axis: int = -1) -> Any:
    """dx_k = dy_k - exp(y_k) * sum_j dy_j, from y = log softmax(x)."""
    check_same_shape(y, dy, "y", "dy")
    return _rowwise("bwd", {"dy": dy, "y": y}, axis, True)


# ------------------------------------------------- fused epilogues (as the reference)


def activation_forward(z: Any, activation: str = "none", negative_slope: float = 0.01) -> Any:
    """Apply a named activation (none|relu|leaky_relu|sigmoid|tanh); "none" returns z contiguous."""
    check_activation(activation, negative_slope)
    check_float(z, "z")
    if activation == "none":
        call = Call(z=z)
        return call.prepare(z, "z")
    return _unary(z, activation, negative_slope)


def activation_backward(dy: Any, out: Any, activation: str = "none", negative_slope: float = 0.01) -> Any:
    """Gradient through a named activation from its output ``out``."""
    check_activation(activation, negative_slope)
    if activation == "none":
        call = Call(dy=dy)
        return call.prepare(dy, "dy")
    check_same_shape(out, dy, "out", "dy")
    return _binary(dy, out, "out", activation, negative_slope)
