"""Losses fused with their gradient through CUDA C (losses.cu): same API as dlgpu.reference.losses.

Every ``*_forward`` returns ``(loss, grad_input)`` from one pass over the scores (see losses.cu);
the "mean"/"sum" reduction is a fixed-order two-stage sum, so the loss is bitwise reproducible.
Validation is the reference's own checks, given shape/dtype stand-ins; the value checks (labels in
{-1, +1}, probabilities in [0, 1], class indices in [0, K)) are counted inside the pass and only a
non-zero count runs the reference's check on a host copy, to raise its message (one host sync for
the losses that have such checks). Inputs: cupy arrays or torch CUDA tensors; input float32,
float16 or bfloat16 (torch); an elementwise target may be any float dtype (float64 included) and
is cast to input's dtype inside the kernel; class indices any integer dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...reference._validate import check_array, check_float, check_positive, check_real, check_reduction
from ...reference.losses import _check_classes, _check_elementwise, _check_signs, _check_unit_interval
from ._common import (
    CTYPES,
    FLOAT_DTYPES,
    Call,
    Module,
    cdiv,
    dtype_name,
    f32,
    i32,
    i64,
    is_device_array,
    ptr,
    round_to_dtype,
)

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)
TARGET_DTYPES = ("float32", "float16", "bfloat16", "float64")
INDEX_DTYPES = ("int64", "int32")
ELEMENTWISE = {
    "hinge": 0, "squared_hinge": 1, "binary_cross_entropy": 2, "binary_cross_entropy_with_logits": 3,
    "mse": 4, "l1": 5, "pseudo_huber": 6,
}  # fmt: skip
CLASSES = {"cross_entropy": 0, "multiclass_hinge": 1, "multiclass_squared_hinge": 2}
MODE_WARP, MODE_BLOCK = 0, 1

NAME_EXPRESSIONS: tuple[str, ...] = (
    *(f"elementwise_loss_kernel<{c}, {CTYPES[t]}>" for c in _FLOAT_CT for t in TARGET_DTYPES),
    *(f"class_loss_kernel<{c}, {CTYPES[i]}, {m}>" for c in _FLOAT_CT for i in INDEX_DTYPES for m in (0, 1)),
    *(f"sum_finish_kernel<{c}>" for c in _FLOAT_CT),
    *(f"loss_bwd_kernel<{c}, {CTYPES[t]}>" for c in _FLOAT_CT for t in TARGET_DTYPES),
)
MODULE = Module("losses", NAME_EXPRESSIONS)

EW_THREADS, EW_CHUNK = 256, 4096  # as losses.cu
ROW_THREADS = 256
WARP_MAX_K = 1024
FINISH_THREADS = 1024
BWD_THREADS, BWD_MAX_BLOCKS = 256, 65536


class _Spec:
    """Shape and dtype of an array for the reference's checks (astype is a no-op here)."""

    def __init__(self, x: Any) -> None:
        self.shape, self.ndim, self.dtype = tuple(int(s) for s in x.shape), len(x.shape), x.dtype

    def astype(self, *args: Any, **kwargs: Any) -> _Spec:
        return self


class _Labels(_Spec):
    """Class indices for ``_check_classes``: a numpy dtype; min/max are checked in the kernel."""

    def __init__(self, t: Any) -> None:
        super().__init__(t)
        try:
            self.dtype = np.dtype(dtype_name(t.dtype))
        except TypeError:  # bfloat16 or another type numpy lacks: the check names it as given
            pass

    def min(self) -> int:
        return 0

    def max(self) -> int:
        return 0


def _spec(x: Any) -> Any:
    return _Spec(x) if all(hasattr(x, a) for a in ("shape", "dtype")) else x


def _finish(call: Call, part: Any, m: int, dt: str, scale: float) -> Any:
    """The 0-d loss: scale * sum(part[:m]) in dtype ``dt``."""
    out = call.empty((), dt)
    call.launch(MODULE, f"sum_finish_kernel<{CTYPES[dt]}>", (1,), (FINISH_THREADS,),
                (ptr(part), ptr(out), i64(m), f32(scale)))  # fmt: skip
    return out


def _raise_invalid(which: int, call: Call, y: Any, t: Any) -> None:
    """The reference's value checks on host copies, once the kernel counted a bad value."""
    if which in (ELEMENTWISE["hinge"], ELEMENTWISE["squared_hinge"]):
        _check_signs(call.to_numpy(t))
    elif which == ELEMENTWISE["binary_cross_entropy"]:
        _check_unit_interval(call.to_numpy(y), "input")
        _check_unit_interval(call.to_numpy(t), "target")
    else:
        _check_unit_interval(call.to_numpy(t), "target")
    raise ValueError("invalid target (or input) values")  # unreachable: the kernel's predicates are the reference's


def _elementwise(loss: str, input: Any, target: Any, reduction: str, delta: float = 1.0) -> tuple[Any, Any]:
    which = ELEMENTWISE[loss]
    _check_elementwise(_spec(input), _spec(target), reduction)
    if loss == "pseudo_huber":
        delta = check_positive(delta, "delta")
    call = Call(input=input, target=target)
    y = call.prepare(input, "input")
    t = call.prepare(target, "target", dtypes=TARGET_DTYPES)
    dt, tt = dtype_name(y.dtype), dtype_name(t.dtype)
    n = math.prod(y.shape)
    blocks = cdiv(n, EW_CHUNK)
    none = reduction == "none"
    grad = call.empty(y.shape, dt)
    per = call.empty(y.shape, dt) if none else None
    part = None if none else call.empty((blocks,), "float32")
    checked = which in (0, 1, 2, 3)
    bad = call.zeros((1,), "int32")
    args = (
        ptr(y), ptr(t), ptr(per), ptr(part), ptr(grad), ptr(bad), i64(n),
        f32(1.0 / n if reduction == "mean" else 1.0), f32(delta), i32(which),
    )  # fmt: skip
    call.launch(MODULE, f"elementwise_loss_kernel<{CTYPES[dt]}, {CTYPES[tt]}>", (blocks,), (EW_THREADS,), args)
    if checked and call.item(bad):
        _raise_invalid(which, call, y, target)
    if none:
        return per, grad
    return _finish(call, part, blocks, dt, 1.0 / n if reduction == "mean" else 1.0), grad


def _classes(loss: str, input: Any, target: Any, reduction: str) -> tuple[Any, Any]:
    _check_classes(_spec(input), _Labels(target) if hasattr(target, "dtype") else target, reduction)
    call = Call(input=input, target=target)
    y = call.prepare(input, "input")
    it = dtype_name(target.dtype)
    t = call.astype(target, it if it in INDEX_DTYPES else "int64")
    it = dtype_name(t.dtype)
    dt = dtype_name(y.dtype)
    n, k = (int(s) for s in y.shape)
    none = reduction == "none"
    grad = call.empty((n, k), dt)
    rows_t = call.empty((n,), dt) if none else None
    rows_f = None if none else call.empty((n,), "float32")
    bad = call.zeros((1,), "int32")
    scale = 1.0 / n if reduction == "mean" else 1.0
    if k <= WARP_MAX_K:
        mode, grid, block = MODE_WARP, (cdiv(n, ROW_THREADS // 32),), (ROW_THREADS,)
    else:
        mode, grid, block = MODE_BLOCK, (n,), (1024 if k >= 8192 else ROW_THREADS,)
    args = (ptr(y), ptr(t), ptr(rows_t), ptr(rows_f), ptr(grad), ptr(bad), i64(n), i64(k), f32(scale),
            i32(CLASSES[loss]))  # fmt: skip
    call.launch(MODULE, f"class_loss_kernel<{CTYPES[dt]}, {CTYPES[it]}, {mode}>", grid, block, args)
    if call.item(bad):  # the reference's range check on a host copy raises its message
        _check_classes(_Spec(y), call.to_numpy(t), reduction)
        raise ValueError(f"target class indices must be in [0, {k})")  # unreachable: same predicate
    if none:
        return rows_t, grad
    return _finish(call, rows_f, n, dt, scale), grad


# ------------------------------------------------------------------ backward


def loss_backward(grad_output: Any, grad_input: Any, reduction: str) -> Any:
    """dinput = grad_output * grad_input (see dlgpu.reference.losses.loss_backward).

    grad_output: for "mean"/"sum" a scalar (Python number, 0-d host or device array); for "none" an
    array of the loss's shape (input's shape, or [N] for a K-class loss: one factor per row).
    Returns dinput with grad_input's shape, dtype and kind.
    """
    check_reduction(reduction)
    check_float(grad_input, "grad_input")
    g = grad_output
    if reduction != "none":
        check_real(g, "grad_output", "a number or a 0-d array")
        shape = tuple(g.shape) if hasattr(g, "shape") else np.shape(g)
        if len(shape) != 0:
            raise ValueError(f"grad_output must be a scalar (0-d) for reduction={reduction!r}, got shape {shape}")
    else:
        check_array(g, "grad_output")
        check_real(g, "grad_output")
    device_g = is_device_array(g)
    call = Call(grad_input=grad_input, grad_output=g if device_g else None)
    gin = call.prepare(grad_input, "grad_input")
    dt = dtype_name(gin.dtype)
    gshape = tuple(int(s) for s in gin.shape)
    n = math.prod(gshape)
    k = 1
    if reduction != "none":
        mode = 1 if device_g else 0
    elif tuple(int(s) for s in g.shape) == gshape:
        mode = 2
    elif len(gshape) == 2 and tuple(int(s) for s in g.shape) == gshape[:1]:
        mode, k = 3, gshape[1]
    else:
        raise ValueError(
            f"grad_output must have the loss's shape for reduction='none': {gshape} (elementwise) or "
            f"{gshape[:1]} (K-class, input [N, K]), got {tuple(int(s) for s in g.shape)}"
        )
    gval = 0.0
    if mode == 0:
        gval = round_to_dtype(float(np.asarray(g, dtype=np.float64)), dt)  # once, as the reference's astype
        gp = None
        tg = dt
    else:
        if not device_g:
            raise ValueError("grad_output must be on the CUDA device of grad_input for reduction='none'")
        tg = dtype_name(g.dtype)
        gp = call.prepare(g, "grad_output", dtypes=TARGET_DTYPES) if tg in TARGET_DTYPES else call.astype(g, dt)
        tg = dtype_name(gp.dtype)
    out = call.empty(gshape, dt)
    if n:
        grid = (max(1, min(cdiv(n, BWD_THREADS), BWD_MAX_BLOCKS)),)
        args = (ptr(gin), ptr(gp), f32(gval), ptr(out), i64(n), i64(k), i32(mode))
        call.launch(MODULE, f"loss_bwd_kernel<{CTYPES[dt]}, {CTYPES[tg]}>", grid, (BWD_THREADS,), args)
    return out


# ------------------------------------------------------------------ the losses


def hinge_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = max(0, 1 - y t), t in {-1, +1}. Returns (loss, grad_input)."""
    return _elementwise("hinge", input, target, reduction)


def squared_hinge_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = max(0, 1 - y t)^2, t in {-1, +1}. Returns (loss, grad_input)."""
    return _elementwise("squared_hinge", input, target, reduction)


def binary_cross_entropy_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = -(t log y + (1 - t) log(1 - y)) with torch's clamps. Returns (loss, grad_input)."""
    return _elementwise("binary_cross_entropy", input, target, reduction)


def binary_cross_entropy_with_logits_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = max(x, 0) - x t + log1p(exp(-|x|)); dL/dx = sigmoid(x) - t. Returns (loss, grad_input)."""
    return _elementwise("binary_cross_entropy_with_logits", input, target, reduction)


def multiclass_hinge_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j)); input [N, K], target [N]. Returns (loss, grad_input)."""
    return _classes("multiclass_hinge", input, target, reduction)


def multiclass_squared_hinge_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j))^2. Returns (loss, grad_input)."""
    return _classes("multiclass_squared_hinge", input, target, reduction)


def cross_entropy_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L_n = logsumexp(y_n) - y_{n,t_n} (max-shifted); grad = softmax - onehot. Returns (loss, grad_input)."""
    return _classes("cross_entropy", input, target, reduction)


def mse_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = (y - t)^2; dL/dy = 2 (y - t). Returns (loss, grad_input)."""
    return _elementwise("mse", input, target, reduction)


def l1_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """L = |y - t|; dL/dy = sign(y - t), 0 at y = t. Returns (loss, grad_input)."""
    return _elementwise("l1", input, target, reduction)


def pseudo_huber_loss_forward(
    input: Any, target: Any, reduction: str = "mean", delta: float = 1.0
) -> tuple[Any, Any]:
    """L = delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1). Returns (loss, grad_input)."""
    return _elementwise("pseudo_huber", input, target, reduction, delta)
