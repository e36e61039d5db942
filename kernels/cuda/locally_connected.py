"""Locally connected 2-D layer through CUDA C (locally_connected.cu): same API as
dlgpu.reference.locally_connected.

x [N, C, H, W], weight [OH, OW, O, C, KH, KW], bias [O, OH, OW]; cupy arrays or torch CUDA tensors of
one dtype (float32, float16, bfloat16 on torch), fp32 accumulation. Forward and weight gradient
are one gemm.cuh tile per output position; the input gradient is a deterministic gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...reference._validate import check_float, check_shape, pair
from ...reference.locally_connected import _check, locally_connected2d_output_shape
from ._common import CTYPES, FLOAT_DTYPES, GEMM_THREADS, Call, Module, cdiv, dtype_name, gemm_tiles, i32, i64, ptr

__all__ = ["locally_connected2d_backward", "locally_connected2d_forward", "locally_connected2d_output_shape"]

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)

NAME_EXPRESSIONS: tuple[str, ...] = tuple(
    f"{k}<{c}>" for k in ("lc2d_fwd_kernel", "lc2d_dwdb_kernel", "lc2d_dx_kernel") for c in _FLOAT_CT
)
MODULE = Module("locally_connected", NAME_EXPRESSIONS)

DX_THREADS = 256
DX_MAX_BLOCKS = 65536


def _geometry(x_shape, w_shape, stride, padding) -> tuple:
    """N, C, H, W, O, OH, OW (long long), KH, KW, sh, sw, ph, pw (int)."""
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow, o, _, kh, kw = (int(s) for s in w_shape)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    return (*(i64(v) for v in (n, c, h, w, o, oh, ow)), *(i32(v) for v in (kh, kw, sh, sw, ph, pw)))


def _grid_limit(positions: int) -> None:
    if positions >= 2**31:
        raise ValueError(f"the output has {positions} positions; at most 2^31 - 1 are supported")


def locally_connected2d_forward(
    x: Any,
    weight: Any,
    bias: Any | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> Any:
    """y[n, o, i, j] = b[o, i, j] + sum_{c,u,v} w[i, j, o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v].

    Args:
        x: [N, C, H, W]; weight: [OH, OW, O, C, KH, KW]; bias: [O, OH, OW] or None.
        stride, padding: int or (h, w) pair.
    Returns:
        y: [N, O, OH, OW].
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding)
    call = Call(x=x, weight=weight, bias=bias)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    weight = call.prepare(weight, "weight", dtype=(dt, "x"))
    bias = None if bias is None else call.prepare(bias, "bias", dtype=(dt, "x"))
    y = call.empty((n, o, oh, ow), dt)
    if n:
        _grid_limit(oh * ow)
        tn, to = gemm_tiles(n, o)
        args = (ptr(x), ptr(weight), ptr(bias), ptr(y), *_geometry(x.shape, weight.shape, stride, padding))
        call.launch(MODULE, f"lc2d_fwd_kernel<{CTYPES[dt]}>", (oh * ow, tn, to), (GEMM_THREADS,), args)
    return y


def locally_connected2d_backward(
    dy: Any,
    x: Any,
    weight: Any,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[Any, Any, Any]:
    """Gradients of the locally connected layer.

    Args:
        dy: [N, O, OH, OW]; x, weight, stride, padding: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [OH, OW, O, C, KH, KW], dbias [O, OH, OW]).
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    call = Call(dy=dy, x=x, weight=weight)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    weight = call.prepare(weight, "weight", dtype=(dt, "x"))
    dy = call.prepare(dy, "dy", dtype=(dt, "x"))
    ct = CTYPES[dt]
    geo = _geometry(x.shape, weight.shape, stride, padding)
    _grid_limit(oh * ow)
    c, kh, kw = (int(s) for s in weight.shape[3:])
    dx = call.empty(x.shape, dt)
    dw = call.empty(weight.shape, dt)
    db = call.empty((o, oh, ow), dt)
    total = n * c * int(x.shape[2]) * int(x.shape[3])
    if total:
        grid = (max(1, min(cdiv(total, DX_THREADS), DX_MAX_BLOCKS)),)
        call.launch(MODULE, f"lc2d_dx_kernel<{ct}>", grid, (DX_THREADS,), (ptr(dy), ptr(weight), ptr(dx), *geo))
    to, tj = gemm_tiles(o, c * kh * kw + 1)
    args = (ptr(dy), ptr(x), ptr(dw), ptr(db), *geo)
    call.launch(MODULE, f"lc2d_dwdb_kernel<{ct}>", (oh * ow, to, tj), (GEMM_THREADS,), args)
    return dx, dw, db
