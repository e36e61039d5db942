"""Regularizers and gradient clipping through CUDA C (regularizers.cu): same API as
dlgpu.reference.regularizers.

Inputs: cupy arrays or torch CUDA tensors (float32, float16, bfloat16 on torch); results are new
arrays of the same kind (inputs untouched). Reductions are fixed-order two-stage sums (bitwise
reproducible) accumulated in fp64, so the squares of a Euclidean norm (max-norm's rows,
clip_grad_norm's 2-norm) neither overflow nor underflow (see regularizers.cu). Hyperparameters are
rounded to the storage dtype as the reference casts them; a ``grad_output`` given as a device 0-d
array is read to the host (one sync).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...reference._validate import check_choice, check_float, check_nonnegative, check_positive
from ...reference.regularizers import CLIP_EPS, NORM_TYPES, _check_grad_output
from ._common import CTYPES, FLOAT_DTYPES, Call, Module, cdiv, dtype_name, f32, i32, i64, ptr, round_to_dtype

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)
RED_ABS, RED_SQUARE, RED_MAXABS = 0, 1, 2
PW_SIGN, PW_SCALE, PW_CLIP = 0, 1, 2

NAME_EXPRESSIONS: tuple[str, ...] = tuple(
    f"{k}<{c}>"
    for k in ("norm_partial_kernel", "norm_finish_kernel", "pointwise_kernel", "scale_by_kernel", "max_norm_kernel")
    for c in _FLOAT_CT
)
MODULE = Module("regularizers", NAME_EXPRESSIONS)

RED_THREADS, RED_CHUNK = 256, 4096  # as regularizers.cu
FINISH_THREADS = 1024
EW_THREADS, EW_MAX_BLOCKS = 256, 65536


def _ew_grid(n: int) -> tuple[int]:
    return (max(1, min(cdiv(n, EW_THREADS), EW_MAX_BLOCKS)),)


def _blocks(n: int) -> int:
    """Partial-sum blocks for n elements (at least one, so an empty array reduces to 0)."""
    return max(1, cdiv(n, RED_CHUNK))


def _penalty(weight: Any, kind: int, coef_of: Any) -> Any:
    call = Call(weight=weight)
    w = call.prepare(weight, "weight")
    dt = dtype_name(w.dtype)
    n = math.prod(w.shape)
    blocks = _blocks(n)
    part = call.empty((blocks,), "float64")
    ct = CTYPES[dt]
    call.launch(MODULE, f"norm_partial_kernel<{ct}>", (blocks,), (RED_THREADS,), (ptr(w), ptr(part), i64(n), i32(kind)))
    out = call.empty((), dt)
    args = (ptr(part), i64(blocks), i32(kind), i32(0), f32(coef_of(dt)), ptr(out), ptr(None), f32(0.0), f32(0.0))
    call.launch(MODULE, f"norm_finish_kernel<{ct}>", (1,), (FINISH_THREADS,), args)
    return out


def _pointwise(x: Any, name: str, kind: int, coef_of: Any) -> Any:
    call = Call(**{name: x})
    x = call.prepare(x, name)
    dt = dtype_name(x.dtype)
    out = call.empty(x.shape, dt)
    n = math.prod(x.shape)
    if n:
        args = (ptr(x), ptr(out), i64(n), f32(coef_of(dt)), i32(kind))
        call.launch(MODULE, f"pointwise_kernel<{CTYPES[dt]}>", _ew_grid(n), (EW_THREADS,), args)
    return out


def _coef(grad_output: Any, lam: float) -> Any:
    """dtype(grad_output) * dtype(lam), rounded in dtype (the reference's coefficient)."""
    go = float(np.asarray(grad_output, dtype=np.float64)) if not hasattr(grad_output, "item") else grad_output.item()
    return lambda dt: round_to_dtype(round_to_dtype(go, dt) * round_to_dtype(lam, dt), dt)


def l1_penalty_forward(weight: Any, lam: float) -> Any:
    """R = lam * sum |w|: a 0-d array in weight's dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    return _penalty(weight, RED_ABS, lambda dt: round_to_dtype(lam, dt))


def l1_penalty_backward(weight: Any, lam: float, grad_output: Any = 1.0) -> Any:
    """dW = grad_output * lam * sign(W) (0 at w = 0); weight's shape and dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    return _pointwise(weight, "weight", PW_SIGN, _coef(grad_output, lam))


def l2_penalty_forward(weight: Any, lam: float) -> Any:
    """R = (lam / 2) * sum w^2: a 0-d array in weight's dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    return _penalty(weight, RED_SQUARE, lambda dt: round_to_dtype(lam, dt) / 2)


def l2_penalty_backward(weight: Any, lam: float, grad_output: Any = 1.0) -> Any:
    """dW = grad_output * lam * W; weight's shape and dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    return _pointwise(weight, "weight", PW_SCALE, _coef(grad_output, lam))


def max_norm_forward(weight: Any, max_norm: float) -> Any:
    """Clamp every neuron's (axis 0) incoming weight vector to norm <= max_norm; rows within the
    bound are copied bit for bit. weight: [O, ...], at least 2-D. Returns a new array."""
    check_float(weight, "weight")
    if len(weight.shape) < 2:
        raise ValueError(
            f"weight must be at least 2-D (neurons on axis 0: [O, I] or [O, C, KH, KW]), got shape "
            f"{tuple(weight.shape)}"
        )
    c = check_positive(max_norm, "max_norm")
    call = Call(weight=weight)
    w = call.prepare(weight, "weight")
    dt = dtype_name(w.dtype)
    rows = int(w.shape[0])
    cols = math.prod(w.shape[1:])
    out = call.empty(w.shape, dt)
    if rows and cols:
        threads = 1024 if cols >= 16384 else 256
        call.launch(MODULE, f"max_norm_kernel<{CTYPES[dt]}>", (rows,), (threads,),
                    (ptr(w), ptr(out), i64(cols), f32(round_to_dtype(c, dt))))  # fmt: skip
    return out


def clip_grad_norm_forward(grads: Sequence[Any], max_norm: float, norm_type: float = 2.0) -> tuple[list[Any], Any]:
    """Rescale gradients so that their global norm is at most max_norm (torch's clip_grad_norm_).

    Args:
        grads: non-empty list of arrays, one floating dtype; max_norm > 0; norm_type 2.0, 1.0 or inf.
    Returns:
        (clipped copies, total norm before clipping as a 0-d array in the grads' dtype).
    """
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError("grads must be a non-empty list of arrays, got an empty list")
    for i, g in enumerate(grads):
        check_float(g, f"grads[{i}]")
        if g.dtype != grads[0].dtype:
            raise TypeError(f"grads[{i}] must have the dtype of grads[0] ({grads[0].dtype}), got {g.dtype}")
    check_choice(norm_type, NORM_TYPES, "norm_type")
    c = check_positive(max_norm, "max_norm")
    call = Call(**{f"grads[{i}]": g for i, g in enumerate(grads)})
    gs = [call.prepare(g, f"grads[{i}]") for i, g in enumerate(grads)]
    dt = dtype_name(gs[0].dtype)
    ct = CTYPES[dt]
    kind = {2.0: RED_SQUARE, 1.0: RED_ABS}.get(float(norm_type), RED_MAXABS)
    sizes = [math.prod(g.shape) for g in gs]
    blocks = [_blocks(n) for n in sizes]
    part = call.empty((sum(blocks),), "float64")
    offset = 0
    for g, n, b in zip(gs, sizes, blocks):
        # each grad's partials land in its own slice of one buffer (pointer arithmetic on the address)
        args = (ptr(g), ptr(part) + np.uint64(8 * offset), i64(n), i32(kind))
        call.launch(MODULE, f"norm_partial_kernel<{ct}>", (b,), (RED_THREADS,), args)
        offset += b
    total = call.empty((), dt)
    factor = call.empty((1,), "float32")
    args = (
        ptr(part), i64(offset), i32(kind), i32(kind == RED_SQUARE), f32(1.0), ptr(total), ptr(factor),
        f32(round_to_dtype(c, dt)), f32(round_to_dtype(CLIP_EPS, dt)),
    )  # fmt: skip
    call.launch(MODULE, f"norm_finish_kernel<{ct}>", (1,), (FINISH_THREADS,), args)
    out = []
    for g, n in zip(gs, sizes):
        o = call.empty(g.shape, dt)
        if n:
            call.launch(MODULE, f"scale_by_kernel<{ct}>", _ew_grid(n), (EW_THREADS,),
                        (ptr(g), ptr(o), i64(n), ptr(factor)))  # fmt: skip
        out.append(o)
    return out, total


def clip_grad_value_forward(grad: Any, clip_value: float) -> Any:
    """clip(g, -c, c) elementwise (NaN kept); a new array of grad's shape and dtype."""
    check_float(grad, "grad")
    c = check_positive(clip_value, "clip_value")
    return _pointwise(grad, "grad", PW_CLIP, lambda dt: round_to_dtype(c, dt))
