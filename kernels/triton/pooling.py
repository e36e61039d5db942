"""2-D max and average pooling (NCHW): Triton kernels, same API as dlgpu.reference.pooling.

Every kernel works on a tile of [BLOCK_P planes, BLOCK_Q pixels] of the N*C planes seen as a
[NC, pixels] matrix: big planes get a whole tile of pixels from one plane, small planes (7x7
late in a network) share a tile across planes, so no lane idles on a half-empty plane.

* Max forward: each output scans its window once in row-major order (taps unrolled), keeping
  the running best and its flat index with the reference's update ``v > best or isnan(v)``:
  the first of equal maxima wins, a NaN wins (the last NaN is reported), and a window whose
  real elements are all -inf reports its first real element. Padding taps load -inf.
* Max backward: the reference's signature gives only ``indices`` and ``x_shape`` -- not the
  window geometry -- so an input pixel cannot enumerate the windows that may have chosen it.
  It is therefore a scatter, ``dx[indices] += dy``, by float64 atomics into a zeroed scratch
  rounded to dy's dtype at the end. The few gradients that meet at one pixel (overlapping
  windows) are summed exactly in float64 unless their magnitudes differ by more than ~2^27,
  so the order the atomics land in does not change the result: deterministic in practice.
  Indices outside [0, H*W) are never written; the pass counts them and the wrapper raises.
* Avg forward: a sum over the unrolled taps (padding loads 0) over the reference's divisor,
  kh*kw or the count of real elements, computed from the window's position.
* Avg backward: a deterministic gather -- each input pixel sums dy/d over the at most
  ceil(kh/sh) * ceil(kw/sw) windows that cover it, in a fixed order, no atomics.

fp16/bf16 storage, fp32 arithmetic, outputs in the input's dtype; indices int64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from ...reference._validate import check_bool, check_float, check_ndim, check_shape
from ...reference.pooling import IntOrPair, _check_x_shape, _params, pool2d_output_shape
from ._common import autotune_configs, cdiv, has_data, next_pow2, prepare, wrap_triton

__all__ = [
    "pool2d_output_shape",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]

# ------------------------------------------------------------------------ launch shape
# TILE elements per program; the tile's shape follows the plane size (heuristics below).
# Pooling is bandwidth-bound with a handful of flops per element, so the configs only trade
# bytes in flight per SM (bigger tiles) against tail waste on small problems.
_CONFIGS = [
    triton.Config({"TILE": 1024}, num_warps=4),
    triton.Config({"TILE": 512}, num_warps=4),
    triton.Config({"TILE": 2048}, num_warps=8),
]


def _block_q(args: dict) -> int:
    return min(args["TILE"], next_pow2(args["Q"]))


def _block_p(args: dict) -> int:
    return max(1, min(args["TILE"] // _block_q(args), next_pow2(args["NC"])))


_TILE_SHAPE = {"BLOCK_Q": _block_q, "BLOCK_P": _block_p}


def _grid(nc: int, q: int):  # noqa: ANN202
    def grid(meta: dict) -> tuple[int]:
        return (cdiv(nc, meta["BLOCK_P"]) * cdiv(q, meta["BLOCK_Q"]),)

    return grid


@triton.jit
def _tile(NC, Q, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr):
    """This program's planes [BLOCK_P] and pixels [BLOCK_Q] (flat within a plane), and the mask."""
    pid = tl.program_id(0)
    n_q = tl.cdiv(Q, BLOCK_Q)
    planes = (pid // n_q) * BLOCK_P + tl.arange(0, BLOCK_P)
    pix = (pid % n_q) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask = (planes < NC)[:, None] & (pix < Q)[None, :]
    return planes.to(tl.int64), pix, mask


# ------------------------------------------------------------------------ kernels
# Napkin math (H100, ~3 TB/s): every kernel moves each byte once from HBM (the taps of
# neighbouring windows hit the same cache lines), so time ~ bytes / bandwidth. Example
# N=64, C=64, 112x112 -> 56x56 (3x3, stride 2, pad 1), fp32: x 205 MB, y 51 MB, indices 103 MB.


# max forward: x + y + 8 B indices per output = 360 MB -> ~0.12 ms; kh*kw compares per output.
@triton.autotune(configs=autotune_configs(_CONFIGS), key=["NC", "Q"])
@triton.heuristics(_TILE_SHAPE)
@triton.jit
def _max_pool_fwd_kernel(
    x_ptr,  # [NC, H, W] input planes
    y_ptr,  # [NC, OH, OW] window maxima, x's dtype
    idx_ptr,  # [NC, OH, OW] int64: flat h * W + w of each maximum inside its plane
    NC, H, W, OW, Q,  # planes, input height and width, output width, Q = OH * OW
    SH, SW, PH, PW,  # stride and padding
    KH: tl.constexpr, KW: tl.constexpr,  # window, unrolled: typical windows are 2x2 or 3x3
    TILE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,  # tile (TILE = BLOCK_P * BLOCK_Q)
):  # fmt: skip
    planes, q, mask = _tile(NC, Q, BLOCK_P, BLOCK_Q)
    r0 = (q // OW) * SH - PH  # first (possibly padding) row of each window
    c0 = (q % OW) * SW - PW
    base = x_ptr + planes[:, None] * H * W
    best = tl.full((BLOCK_P, BLOCK_Q), float("-inf"), tl.float32)
    # seeded with the first real element: a tap must beat -inf strictly to replace it, so an
    # all -inf window keeps this index, as in the reference
    bidx = tl.broadcast_to((tl.maximum(r0, 0) * W + tl.maximum(c0, 0))[None, :], (BLOCK_P, BLOCK_Q))
    for i in tl.static_range(KH):
        r = r0 + i
        row_ok = (r >= 0) & (r < H)
        for j in tl.static_range(KW):
            c = c0 + j
            ok = row_ok & (c >= 0) & (c < W)
            off = r * W + c
            v = tl.load(base + off[None, :], mask=mask & ok[None, :], other=float("-inf")).to(tl.float32)
            take = (v > best) | (v != v)  # v != v: a NaN wins, so NaN propagates as in torch
            best = tl.where(take, v, best)
            bidx = tl.where(take, off[None, :], bidx)
    out = planes[:, None] * Q + q[None, :]
    tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(idx_ptr + out, bidx.to(tl.int64), mask=mask)


# max backward: dy + 8 B indices read (154 MB), a float64 scratch zeroed, hit by Q atomics
# (resolved in L2) and rounded (411 MB written, read back, 205 MB out): ~1.2 GB -> ~0.4 ms,
# about 3x a gather; the price of having no window geometry (see the module docstring).
# reset_to_zero: autotuning runs every config on the same buffers, and atomics accumulate.
@triton.autotune(configs=autotune_configs(_CONFIGS), key=["NC", "Q"], reset_to_zero=["acc_ptr", "bad_ptr"])
@triton.heuristics(_TILE_SHAPE)
@triton.jit
def _max_pool_bwd_kernel(
    dy_ptr,  # [NC, OH, OW] upstream gradient
    idx_ptr,  # [NC, OH, OW] flat h * W + w per plane, any integer dtype
    acc_ptr,  # [NC, H, W] float64 scratch, zeroed: receives dy at each index
    bad_ptr,  # [1] int32: count of indices outside [0, HW)
    NC, HW, Q,  # planes, input and output pixels per plane
    TILE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,  # tile (TILE = BLOCK_P * BLOCK_Q)
):  # fmt: skip
    planes, q, mask = _tile(NC, Q, BLOCK_P, BLOCK_Q)
    src = planes[:, None] * Q + q[None, :]
    k = tl.load(idx_ptr + src, mask=mask, other=0).to(tl.int64)
    ok = (k >= 0) & (k < HW)
    g = tl.load(dy_ptr + src, mask=mask, other=0.0).to(tl.float64)
    tl.atomic_add(acc_ptr + planes[:, None] * HW + k, g, mask=mask & ok, sem="relaxed")
    # integer atomics commute exactly: the count is deterministic
    tl.atomic_add(bad_ptr, tl.sum((mask & ~ok).to(tl.int32)), sem="relaxed")


# avg forward: x + y = 256 MB -> ~0.09 ms; kh*kw adds per output.
@triton.autotune(configs=autotune_configs(_CONFIGS), key=["NC", "Q"])
@triton.heuristics(_TILE_SHAPE)
@triton.jit
def _avg_pool_fwd_kernel(
    x_ptr,  # [NC, H, W] input planes
    y_ptr,  # [NC, OH, OW] window means, x's dtype
    NC, H, W, OW, Q,  # planes, input height and width, output width, Q = OH * OW
    SH, SW, PH, PW,  # stride and padding
    KH: tl.constexpr, KW: tl.constexpr,  # window, unrolled
    COUNT_PAD: tl.constexpr,  # divisor kh*kw (True) or the number of real elements (False)
    TILE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,  # tile (TILE = BLOCK_P * BLOCK_Q)
):  # fmt: skip
    planes, q, mask = _tile(NC, Q, BLOCK_P, BLOCK_Q)
    r0 = (q // OW) * SH - PH
    c0 = (q % OW) * SW - PW
    base = x_ptr + planes[:, None] * H * W
    acc = tl.zeros((BLOCK_P, BLOCK_Q), tl.float32)
    for i in tl.static_range(KH):
        r = r0 + i
        row_ok = (r >= 0) & (r < H)
        for j in tl.static_range(KW):
            c = c0 + j
            ok = row_ok & (c >= 0) & (c < W)
            acc += tl.load(base + (r * W + c)[None, :], mask=mask & ok[None, :], other=0.0).to(tl.float32)
    if COUNT_PAD:
        d = tl.full((BLOCK_Q,), KH * KW, tl.float32)
    else:
        d = _real_count(r0, c0, H, W, KH, KW)
    out = planes[:, None] * Q + q[None, :]
    tl.store(y_ptr + out, (acc / d[None, :]).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _real_count(r0, c0, H, W, KH: tl.constexpr, KW: tl.constexpr):
    """Real (non-padding) elements of the windows starting at rows r0 and columns c0, as float32
    (at least 1: lanes past the end of a tile hold no window, and must not divide by 0)."""
    rows = tl.minimum(r0 + KH, H) - tl.maximum(r0, 0)
    cols = tl.minimum(c0 + KW, W) - tl.maximum(c0, 0)
    return tl.maximum(rows * cols, 1).to(tl.float32)


# avg backward: dy + dx = 256 MB -> ~0.09 ms; each input pixel visits ceil(kh/sh)*ceil(kw/sw)
# windows (4 for 3x3 stride 2), their dy from L1/L2.
@triton.autotune(configs=autotune_configs(_CONFIGS), key=["NC", "Q"])
@triton.heuristics(_TILE_SHAPE)
@triton.jit
def _avg_pool_bwd_kernel(
    dy_ptr,  # [NC, OH, OW] upstream gradient
    dx_ptr,  # [NC, H, W] input gradient, dy's dtype
    NC, H, W, OH, OW, Q,  # planes, input height and width, output height and width, Q = H * W
    SH, SW, PH, PW,  # stride and padding
    KH: tl.constexpr, KW: tl.constexpr,  # window
    NA: tl.constexpr, NB: tl.constexpr,  # windows covering one row / column at most: ceil(KH/SH), ceil(KW/SW)
    COUNT_PAD: tl.constexpr,  # divisor kh*kw (True) or the number of real elements (False)
    TILE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,  # tile over INPUT pixels
):  # fmt: skip
    planes, p, mask = _tile(NC, Q, BLOCK_P, BLOCK_Q)
    hh = p // W + PH  # the pixel's row and column in the padded plane
    ww = p % W + PW
    base = dy_ptr + planes[:, None] * OH * OW
    acc = tl.zeros((BLOCK_P, BLOCK_Q), tl.float32)
    # windows covering row hh: oh = hh // SH - a while the tap hh - oh * SH stays < KH
    for a in tl.static_range(NA):
        oh = hh // SH - a
        oh_ok = (oh >= 0) & (oh < OH) & (hh - oh * SH < KH)
        for b in tl.static_range(NB):
            ow = ww // SW - b
            ok = oh_ok & (ow >= 0) & (ow < OW) & (ww - ow * SW < KW)
            g = tl.load(base + (oh * OW + ow)[None, :], mask=mask & ok[None, :], other=0.0).to(tl.float32)
            if COUNT_PAD:
                acc += g / (KH * KW)
            else:
                d = _real_count(oh * SH - PH, ow * SW - PW, H, W, KH, KW)
                acc += g / d[None, :]
    tl.store(dx_ptr + planes[:, None] * Q + p[None, :], acc.to(dx_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------ max pool


def _is_integer(dtype: torch.dtype | np.dtype) -> bool:
    """The reference's ``np.dtype(dtype).kind in "iu"``, for torch dtypes too."""
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    return np.dtype(dtype).kind in "iu"


def max_pool2d_forward(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = max over each window; indices (int64) = flat h * W + w of each maximum in its plane.

    Same arguments, ties (first maximum in row-major window order wins), NaN rule (NaN wins;
    the last NaN is reported) and results as ``dlgpu.reference.pooling.max_pool2d_forward``.
    """
    check_float(x, "x")
    check_ndim(x, 4, "x", "N, C, H, W")
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(tuple(x.shape), kernel_size, stride, padding, "x")
    x = prepare(x, "x")
    n, c, h, w = x.shape
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device)
    idx = torch.empty((n, c, oh, ow), dtype=torch.int64, device=x.device)
    nc, q = n * c, oh * ow
    wrap_triton(_max_pool_fwd_kernel)[_grid(nc, q)](x, y, idx, nc, h, w, ow, q, sh, sw, ph, pw, KH=kh, KW=kw)
    return y, idx


def max_pool2d_backward(dy: torch.Tensor, indices: torch.Tensor, x_shape: Sequence[int]) -> torch.Tensor:
    """dx[n, c, indices[n,c,oh,ow]] += dy[n,c,oh,ow]; overlapping windows accumulate.

    Same arguments and checks as ``dlgpu.reference.pooling.max_pool2d_backward``.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    check_shape(dy, (n, c, None, None), "dy", "N and C of x_shape")
    check_shape(indices, dy.shape, "indices", "dy's shape")
    if not _is_integer(indices.dtype):
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    dy = prepare(dy, "dy")
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"indices must be a torch tensor for the triton backend, got {type(indices).__name__}")
    if indices.device != dy.device:
        raise ValueError(f"indices must be on {dy.device} like the other inputs, got {indices.device}")
    indices = indices.contiguous()
    acc = torch.zeros((n, c, h, w), dtype=torch.float64, device=dy.device)
    bad = torch.zeros(1, dtype=torch.int32, device=dy.device)
    nc, q = n * c, dy.shape[2] * dy.shape[3]
    if q:
        wrap_triton(_max_pool_bwd_kernel)[_grid(nc, q)](dy, indices, acc, bad, nc, h * w, q)
        if has_data(bad) and bad.item():  # the one host sync: the reference raises on a bad index
            lo, hi = torch.aminmax(indices)
            raise ValueError(f"indices must lie in [0, H*W) = [0, {h * w}), got [{lo.item()}, {hi.item()}]")
    return acc.to(dy.dtype)


# ------------------------------------------------------------------------ avg pool


def avg_pool2d_forward(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> torch.Tensor:
    """y = mean over each window (divisor kh*kw, or the real elements when not count_include_pad).

    Same arguments and results as ``dlgpu.reference.pooling.avg_pool2d_forward``.
    """
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    check_float(x, "x")
    check_ndim(x, 4, "x", "N, C, H, W")
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(tuple(x.shape), kernel_size, stride, padding, "x")
    x = prepare(x, "x")
    n, c, h, w = x.shape
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device)
    nc, q = n * c, oh * ow
    wrap_triton(_avg_pool_fwd_kernel)[_grid(nc, q)](
        x, y, nc, h, w, ow, q, sh, sw, ph, pw, KH=kh, KW=kw, COUNT_PAD=count_include_pad
    )
    return y


def avg_pool2d_backward(
    dy: torch.Tensor,
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> torch.Tensor:
    """Gradient of avg_pool2d_forward: each window spreads dy / d evenly over its real taps.

    Same arguments, checks and results as ``dlgpu.reference.pooling.avg_pool2d_backward``.
    """
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(x_shape, kernel_size, stride, padding)
    check_shape(dy, (n, c, oh, ow), "dy", "N, C, OH, OW of the pooling output")
    dy = prepare(dy, "dy")
    dx = torch.empty((n, c, h, w), dtype=dy.dtype, device=dy.device)
    nc, q = n * c, h * w
    wrap_triton(_avg_pool_bwd_kernel)[_grid(nc, q)](
        dy, dx, nc, h, w, oh, ow, q, sh, sw, ph, pw,
        KH=kh, KW=kw, NA=cdiv(kh, sh), NB=cdiv(kw, sw), COUNT_PAD=count_include_pad,
    )  # fmt: skip
    return dx
