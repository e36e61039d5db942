"""2-D convolution with a fused activation through CUDA C (conv.cu): same API as
dlgpu.reference.conv.

Implicit GEMMs on gemm.cuh's shared-memory tile (see conv.cu): forward with bias and activation in
the epilogue, a gather input gradient (no atomics), and a split-K weight gradient whose extra
column of ones yields the bias gradient in the same pass (deterministic fixed-order reduction).
NCHW inputs (a non-contiguous input is copied to a contiguous one); outputs contiguous NCHW, of
the inputs' kind and dtype (float32, float16, bfloat16 on torch); fp32 accumulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...reference._validate import check_activation, check_float, check_same_shape, check_shape, pair
from ...reference.conv import _check, conv2d_output_shape
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

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_output_shape"]

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)

NAME_EXPRESSIONS: tuple[str, ...] = tuple(
    f"{k}<{c}>"
    for k in ("conv2d_fwd_kernel", "conv2d_dx_kernel", "conv2d_dwdb_kernel", "splitk_dwdb_finish_kernel")
    for c in _FLOAT_CT
)
MODULE = Module("conv", NAME_EXPRESSIONS)


def _geometry(x_shape, w_shape, out_hw, stride, padding, dilation, groups) -> tuple:
    """The shared scalar arguments: N, C, H, W, O, OH, OW (long long), KH, KW, sh, sw, ph, pw, dh,
    dw, G (int)."""
    n, c, h, w = (int(s) for s in x_shape)
    o, _, kh, kw = (int(s) for s in w_shape)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    return (
        *(i64(v) for v in (n, c, h, w, o, *out_hw)),
        *(i32(v) for v in (kh, kw, sh, sw, ph, pw, dh, dw, groups)),
    )


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> Any:
    """y = act(conv2d(x, w) + b).

    Args:
        x: [N, C, H, W]; weight: [O, C/groups, KH, KW]; bias: [O] or None.
        stride, padding, dilation: int or (h, w) pair; groups: channel groups.
        activation: none|relu|leaky_relu|sigmoid|tanh (fused epilogue).
    Returns:
        y: [N, O, OH, OW].
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    call = Call(x=x, weight=weight, bias=bias)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    weight = call.prepare(weight, "weight", dtype=(dt, "x"))
    bias = None if bias is None else call.prepare(bias, "bias", dtype=(dt, "x"))
    y = call.empty((n, o, oh, ow), dt)
    og = o // groups
    p = n * oh * ow
    if p:
        tp, to = gemm_tiles(p, og)
        args = (
            ptr(x), ptr(weight), ptr(bias), ptr(y),
            *_geometry(x.shape, weight.shape, (oh, ow), stride, padding, dilation, groups),
            i32(ACTIVATION_CODES[activation]), f32(negative_slope),
        )  # fmt: skip
        call.launch(MODULE, f"conv2d_fwd_kernel<{CTYPES[dt]}>", (tp, to, groups), (GEMM_THREADS,), args)
    return y


def conv2d_backward(
    dy: Any,
    x: Any,
    weight: Any,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    out: Any | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[Any, Any, Any]:
    """Gradients of y = act(conv2d(x, w) + b).

    Args:
        dy: [N, O, OH, OW]; x, weight, stride, padding, dilation, groups: as in the forward;
        out: the forward's output (required when activation is not "none").
    Returns:
        (dx [N, C, H, W], dweight [O, C/groups, KH, KW], dbias [O]).
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    else:
        out = None
    call = Call(dy=dy, x=x, weight=weight, out=out)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    like = (dt, "x")
    weight = call.prepare(weight, "weight", dtype=like)
    dy = call.prepare(dy, "dy", dtype=like)
    out = None if out is None else call.prepare(out, "out", dtype=like)
    c, h, w = (int(s) for s in x.shape[1:])
    _, cg, kh, kw = (int(s) for s in weight.shape)
    og, ct = o // groups, CTYPES[dt]
    geo = _geometry(x.shape, weight.shape, (oh, ow), stride, padding, dilation, groups)
    act = (i32(ACTIVATION_CODES[activation]), f32(negative_slope))
    dx = call.empty(x.shape, dt)
    dw = call.empty(weight.shape, dt)
    db = call.empty((o,), dt)
    if n * h * w:
        tq, tc = gemm_tiles(n * h * w, cg)
        args = (ptr(dy), ptr(out), ptr(weight), ptr(dx), *geo, *act)
        call.launch(MODULE, f"conv2d_dx_kernel<{ct}>", (tq, tc, groups), (GEMM_THREADS,), args)
    j = cg * kh * kw
    to, tj = gemm_tiles(og, j + 1)
    splits, chunk = split_k(n * oh * ow, to * tj * groups)
    if splits * groups > 65535:  # grid.z holds groups * splits
        splits = max(1, 65535 // groups)
        chunk = cdiv(n * oh * ow, splits)
        splits = cdiv(n * oh * ow, chunk) if chunk else 1
    part = call.empty((splits, o, j + 1), "float32")
    args = (ptr(dy), ptr(out), ptr(x), ptr(part), *geo, *act, i64(splits), i64(max(chunk, 1)))
    call.launch(MODULE, f"conv2d_dwdb_kernel<{ct}>", (to, tj, groups * splits), (GEMM_THREADS,), args)
    fin = (ptr(part), ptr(dw), ptr(db), i64(splits), i64(o), i64(j))
    call.launch(MODULE, f"splitk_dwdb_finish_kernel<{ct}>", (cdiv(o * (j + 1), 256),), (256,), fin)
    return dx, dw, db
