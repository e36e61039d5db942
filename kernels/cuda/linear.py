"""Fully-connected layer with a fused activation through CUDA C (linear.cu, gemm.cuh): same API as
dlgpu.reference.linear.

x [..., I] (leading dimensions flattened into N), weight [O, I], bias [O]; cupy arrays or torch
CUDA tensors of one dtype (float32, float16, bfloat16 on torch). fp32 accumulation; float32 uses
exact FFMA products, float16/bfloat16 WMMA tensor cores (sm_80+).
"""

from __future__ import annotations

import math
from typing import Any

from ...reference._validate import check_activation, check_same_shape, check_shape
from ...reference.linear import _check
from ._common import (
    ACTIVATION_CODES,
    CTYPES,
    FLOAT_DTYPES,
    GEMM_THREADS,
    Call,
    Module,
    cdiv,
    dtype_name,
    f32,
    gemm_tiles,
    i32,
    i64,
    ptr,
    split_k,
)

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)

NAME_EXPRESSIONS: tuple[str, ...] = (
    *(f"linear_fwd_kernel<{c}>" for c in _FLOAT_CT),
    *(f"linear_dx_kernel<{c}>" for c in _FLOAT_CT),
    *(f"linear_dwdb_kernel<{c}>" for c in _FLOAT_CT),
    *(f"splitk_dwdb_finish_kernel<{c}>" for c in _FLOAT_CT),
)
MODULE = Module("linear", NAME_EXPRESSIONS)


def _prepare(call: Call, x: Any, weight: Any, bias: Any | None = None) -> tuple[Any, Any, Any]:
    x = call.prepare(x, "x")
    like = (dtype_name(x.dtype), "x")
    weight = call.prepare(weight, "weight", dtype=like)
    bias = None if bias is None else call.prepare(bias, "bias", dtype=like)
    return x, weight, bias


def linear_forward(
    x: Any, weight: Any, bias: Any | None = None, activation: str = "none", negative_slope: float = 0.01
) -> Any:
    """y = act(x W^T + b).

    Args:
        x: [..., I]; weight: [O, I]; bias: [O] or None.
        activation: none|relu|leaky_relu|sigmoid|tanh, fused in the GEMM epilogue.
    Returns:
        y: [..., O], x's kind and dtype.
    """
    _check(x, weight, bias)
    check_activation(activation, negative_slope)
    call = Call(x=x, weight=weight, bias=bias)
    x, weight, bias = _prepare(call, x, weight, bias)
    o, i = (int(s) for s in weight.shape)
    lead = tuple(int(s) for s in x.shape[:-1])
    n = math.prod(lead)
    dt = dtype_name(x.dtype)
    y = call.empty((*lead, o), dt)
    if n and o:
        tm, tn = gemm_tiles(n, o)
        args = (ptr(x), ptr(weight), ptr(bias), ptr(y), i64(n), i64(o), i64(i),
                i32(ACTIVATION_CODES[activation]), f32(negative_slope))  # fmt: skip
        call.launch(MODULE, f"linear_fwd_kernel<{CTYPES[dt]}>", (tm, tn, 1), (GEMM_THREADS,), args)
    return y


def linear_backward(
    dy: Any,
    x: Any,
    weight: Any,
    out: Any | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[Any, Any, Any]:
    """Gradients of y = act(x W^T + b).

    Args:
        dy: [..., O]; x, weight: as in the forward; out: the forward's output (required when
            activation is not "none").
    Returns:
        (dx [..., I], dweight [O, I], dbias [O]), dy's kind and dtype.
    """
    _check(x, weight, None)
    check_activation(activation, negative_slope)
    o, i = (int(s) for s in weight.shape)
    out_shape = tuple(int(s) for s in x.shape[:-1]) + (o,)
    check_shape(dy, out_shape, "dy", "x's leading dims, out_features")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    else:
        out = None
    call = Call(dy=dy, x=x, weight=weight, out=out)
    x, weight, _ = _prepare(call, x, weight)
    dt = dtype_name(x.dtype)
    like = (dt, "x")
    dy = call.prepare(dy, "dy", dtype=like)
    out = None if out is None else call.prepare(out, "out", dtype=like)
    n = math.prod(out_shape[:-1])
    c = CTYPES[dt]
    act = i32(ACTIVATION_CODES[activation])
    dx = call.empty(x.shape, dt)
    dw = call.empty((o, i), dt)
    db = call.empty((o,), dt)
    if n and i and o:
        tm, tn = gemm_tiles(n, i)
        args = (ptr(dy), ptr(out), ptr(weight), ptr(dx), i64(n), i64(o), i64(i), act, f32(negative_slope))
        call.launch(MODULE, f"linear_dx_kernel<{c}>", (tm, tn, 1), (GEMM_THREADS,), args)
    elif n and i:  # O == 0: dx = dz W is an empty sum
        dx = call.zeros(x.shape, dt)
    if o:
        tm, tn = gemm_tiles(o, i + 1)
        splits, chunk = split_k(n, tm * tn)
        part = call.empty((splits, o, i + 1), "float32")
        args = (ptr(dy), ptr(out), ptr(x), ptr(part), i64(n), i64(o), i64(i), i64(chunk), act, f32(negative_slope))
        call.launch(MODULE, f"linear_dwdb_kernel<{c}>", (tm, tn, splits), (GEMM_THREADS,), args)
        fin = (ptr(part), ptr(dw), ptr(db), i64(splits), i64(o), i64(i))
        call.launch(MODULE, f"splitk_dwdb_finish_kernel<{c}>", (cdiv(o * (i + 1), 256),), (256,), fin)
    return dx, dw, db
