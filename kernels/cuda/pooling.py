"""2-D max and average pooling through CUDA C (pooling.cu): same API as dlgpu.reference.pooling.

x [N, C, H, W] cupy arrays or torch CUDA tensors (float32, float16, bfloat16 on torch); max pooling
returns int64 indices h * W + w per plane (torch's convention) and the reference's tie and NaN
rules. The max backward scatters with fp32 atomics (see pooling.cu); everything else is a
deterministic gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...reference._validate import check_bool, check_float, check_ndim, check_shape
from ...reference.pooling import IntOrPair, _check_x, _check_x_shape, _params, pool2d_output_shape
from ._common import CTYPES, FLOAT_DTYPES, Call, Module, cdiv, dtype_name, i32, i64, ptr

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "pool2d_output_shape",
]

_FLOAT_CT = tuple(CTYPES[d] for d in FLOAT_DTYPES)
INDEX_DTYPES = ("int64", "int32")

NAME_EXPRESSIONS: tuple[str, ...] = (
    *(f"max_pool2d_fwd_kernel<{c}>" for c in _FLOAT_CT),
    *(f"max_pool2d_bwd_kernel<{c}, {CTYPES[i]}>" for c in _FLOAT_CT for i in INDEX_DTYPES),
    *(f"cast_kernel<{c}>" for c in _FLOAT_CT if c != "float"),
    *(f"avg_pool2d_fwd_kernel<{c}>" for c in _FLOAT_CT),
    *(f"avg_pool2d_bwd_kernel<{c}>" for c in _FLOAT_CT),
)
MODULE = Module("pooling", NAME_EXPRESSIONS)

THREADS = 256
MAX_BLOCKS = 65536


def grid(n: int) -> tuple[int]:
    """Blocks for a grid-stride kernel over n elements."""
    return (max(1, min(cdiv(n, THREADS), MAX_BLOCKS)),)


def _geometry(shape, kernel, stride, padding, out_hw) -> tuple:
    """planes, H, W, OH, OW (long long), KH, KW, sh, sw, ph, pw (int)."""
    n, c, h, w = shape
    return (
        i64(n * c), i64(h), i64(w), i64(out_hw[0]), i64(out_hw[1]),
        *(i32(v) for v in (*kernel, *stride, *padding)),
    )  # fmt: skip


def max_pool2d_forward(
    x: Any, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> tuple[Any, Any]:
    """y = max over each window, indices = flat h * W + w of each maximum (int64).

    Args:
        x: [N, C, H, W]; kernel_size, stride (default kernel_size), padding: int or (h, w) pair.
    Returns:
        (y [N, C, OH, OW] in x's dtype, indices [N, C, OH, OW] int64).
    """
    _check_x(x)
    shape = tuple(int(s) for s in x.shape)
    kernel, stride_hw, pad, out_hw = _params(shape, kernel_size, stride, padding, "x")
    call = Call(x=x)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    y = call.empty(shape[:2] + out_hw, dt)
    idx = call.empty(shape[:2] + out_hw, "int64")
    total = shape[0] * shape[1] * out_hw[0] * out_hw[1]
    if total:
        args = (ptr(x), ptr(y), ptr(idx), *_geometry(shape, kernel, stride_hw, pad, out_hw))
        call.launch(MODULE, f"max_pool2d_fwd_kernel<{CTYPES[dt]}>", grid(total), (THREADS,), args)
    return y, idx


def max_pool2d_backward(dy: Any, indices: Any, x_shape: Sequence[int]) -> Any:
    """dx[n, c, indices[n, c, oh, ow]] += dy[n, c, oh, ow].

    Args:
        dy: [N, C, OH, OW]; indices: integer [N, C, OH, OW] from max_pool2d_forward; x_shape: (N, C, H, W).
    Returns:
        dx: [N, C, H, W] in dy's dtype.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    check_shape(dy, (n, c, None, None), "dy", "N and C of x_shape")
    check_shape(indices, dy.shape, "indices", "dy's shape")
    if np.dtype(dtype_name(indices.dtype)).kind not in "iu":
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    call = Call(dy=dy, indices=indices)
    dy = call.prepare(dy, "dy")
    dt = dtype_name(dy.dtype)
    it = dtype_name(indices.dtype)
    indices = call.astype(indices, it if it in INDEX_DTYPES else "int64")
    it = dtype_name(indices.dtype)
    ohw = int(dy.shape[2]) * int(dy.shape[3])
    total = n * c * ohw
    if not total:
        return call.zeros((n, c, h, w), dt)
    direct = dt == "float32"  # accumulate straight into the output
    dx = call.zeros((n, c, h, w), dt) if direct else call.empty((n, c, h, w), dt)
    acc = dx if direct else call.zeros((n, c, h, w), "float32")
    bad = call.zeros((1,), "int32")
    args = (ptr(dy), ptr(indices), ptr(acc), ptr(bad), i64(n * c), i64(h * w), i64(ohw))
    call.launch(MODULE, f"max_pool2d_bwd_kernel<{CTYPES[dt]}, {CTYPES[it]}>", grid(total), (THREADS,), args)
    if call.item(bad):  # one host sync: the reference's range check, with its message
        host = call.to_numpy(indices)
        raise ValueError(f"indices must lie in [0, H*W) = [0, {h * w}), got [{host.min()}, {host.max()}]")
    if not direct:
        call.launch(MODULE, f"cast_kernel<{CTYPES[dt]}>", grid(n * c * h * w), (THREADS,),
                    (ptr(acc), ptr(dx), i64(n * c * h * w)))  # fmt: skip
    return dx


def avg_pool2d_forward(
    x: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> Any:
    """y = mean over each window (divisor kh*kw, or the real elements when not count_include_pad).

    Returns:
        y: [N, C, OH, OW] in x's dtype.
    """
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    _check_x(x)
    shape = tuple(int(s) for s in x.shape)
    kernel, stride_hw, pad, out_hw = _params(shape, kernel_size, stride, padding, "x")
    call = Call(x=x)
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    y = call.empty(shape[:2] + out_hw, dt)
    total = shape[0] * shape[1] * out_hw[0] * out_hw[1]
    if total:
        args = (ptr(x), ptr(y), *_geometry(shape, kernel, stride_hw, pad, out_hw), i32(count_include_pad))
        call.launch(MODULE, f"avg_pool2d_fwd_kernel<{CTYPES[dt]}>", grid(total), (THREADS,), args)
    return y


def avg_pool2d_backward(
    dy: Any,
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> Any:
    """Each window spreads dy / d evenly over its taps (a gather per input element).

    Returns:
        dx: [N, C, H, W] in dy's dtype.
    """
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    kernel, stride_hw, pad, out_hw = _params(x_shape, kernel_size, stride, padding)
    check_shape(dy, (n, c) + out_hw, "dy", "N, C, OH, OW of the pooling output")
    call = Call(dy=dy)
    dy = call.prepare(dy, "dy")
    dt = dtype_name(dy.dtype)
    dx = call.empty((n, c, h, w), dt)
    total = n * c * h * w
    if total:
        geo = _geometry((n, c, h, w), kernel, stride_hw, pad, out_hw)
        args = (ptr(dy), ptr(dx), *geo, i32(count_include_pad))
        call.launch(MODULE, f"avg_pool2d_bwd_kernel<{CTYPES[dt]}>", grid(total), (THREADS,), args)
    return dx
