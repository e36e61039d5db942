"""2-D max and average pooling (NCHW): Numba CPU kernels, same API as dlgpu.reference.pooling.

Every kernel runs ``prange`` over the N*C planes: a plane's outputs (forward) or its input
gradient (backward) belong to one thread, so backward scatters, which overlapping windows
make collide inside a plane, never race across threads. Windows are clipped to the plane,
so padding costs nothing.

Max pooling follows the reference's rules bit for bit: each output is one row-major scan
of its window, and a tap replaces the running best when ``v > best or isnan(v)`` -- the
first of equal maxima wins, a NaN wins (and the last NaN is reported), and a window whose
real elements are all -inf reports its first real element. The backward scatters dy at the
indices with the range check fused into the same pass.

Average pooling sums each band of kh input rows into one row first (contiguous, vectorised
adds), then gathers the kw columns of each window from it, and divides by the reference's
own divisor table; the summation order differs from the reference's tap order, so results
agree up to rounding. The backward is the same two steps transposed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import prange

from ...reference._validate import check_float, check_ndim, check_shape
from ...reference.pooling import IntOrPair, _check_x_shape, _divisor, _params, pool2d_output_shape
from ._common import SERIAL_BELOW_HEAVY, pjit, prepare

__all__ = [
    "pool2d_output_shape",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]

# ------------------------------------------------------------------------ kernels


@pjit(SERIAL_BELOW_HEAVY)
def _max_pool_fwd_kernel(x, y, idx, h, w, oh, ow, kh, kw, sh, sw, ph, pw):  # noqa: ANN001, ANN202
    # x: NC,H*W  y, idx: NC,OH*OW -- flat planes, so each tap is one add and one load
    for pl in prange(x.shape[0]):
        xp, yp, ip = x[pl], y[pl], idx[pl]
        for o in range(oh):
            r0 = o * sh - ph
            r_lo, r_hi = max(r0, 0), min(r0 + kh, h)
            for q in range(ow):
                c0 = q * sw - pw
                c_lo, c_hi = max(c0, 0), min(c0 + kw, w)
                # Seeding with the first real element equals the reference's -inf seed: a later
                # tap must still beat it strictly, and an all -inf window keeps this index.
                bi = r_lo * w + c_lo
                best = xp[bi]
                for r in range(r_lo, r_hi):
                    for k in range(r * w + c_lo, r * w + c_hi):
                        v = xp[k]
                        # v != v: NaN wins, so NaN propagates like torch; selects, not branches,
                        # since on real data the winner is unpredictable
                        take = (v > best) | (v != v)
                        best = v if take else best
                        bi = k if take else bi
                yp[o * ow + q] = best
                ip[o * ow + q] = bi


@pjit()
def _max_pool_bwd_kernel(dy, indices, dx):  # noqa: ANN001, ANN202
    # dy, indices: NC,OH*OW  dx: NC,H*W
    nc, hw = dx.shape
    m = dy.shape[1]
    bad = 0
    for pl in prange(nc):
        dp, gp, ip = dx[pl], dy[pl], indices[pl]
        for k in range(hw):
            dp[k] = 0
        for k in range(m):
            j = ip[k]
            # the range check is fused here (one pass over indices); the caller raises on bad > 0
            if j < 0 or j >= hw:
                bad += 1
            else:
                dp[j] += gp[k]
    return bad


@pjit()
def _avg_pool_fwd_kernel(x, y, d, h, w, kh, kw, sh, sw, ph, pw):  # noqa: ANN001, ANN202
    # x: NC,H*W  y: NC,OH*OW  d: OH,OW divisors
    oh, ow = d.shape
    for pl in prange(x.shape[0]):
        xp, yp = x[pl], y[pl]
        colsum = np.empty(w, dtype=x.dtype)  # W: one window-row band summed down its rows
        for o in range(oh):
            # Rows first: adding whole contiguous rows vectorises, and leaves the strided
            # gather only kw taps per output (about twice as fast as tap by tap).
            colsum[:] = 0
            r0 = o * sh - ph
            for r in range(max(r0, 0), min(r0 + kh, h)):
                xr = xp[r * w : (r + 1) * w]
                for c in range(w):
                    colsum[c] += xr[c]
            yr = yp[o * ow : (o + 1) * ow]
            yr[:] = 0
            for j in range(kw):
                off = j - pw
                for q in range(max(0, (sw - 1 - off) // sw), min(ow, (w - 1 - off) // sw + 1)):
                    yr[q] += colsum[q * sw + off]
            dr = d[o]
            for q in range(ow):
                yr[q] /= dr[q]


@pjit()
def _avg_pool_bwd_kernel(dy, dx, d, h, w, kh, kw, sh, sw, ph, pw):  # noqa: ANN001, ANN202
    # dy: NC,OH*OW  dx: NC,H*W  d: OH,OW divisors; the forward's two passes transposed
    oh, ow = d.shape
    for pl in prange(dx.shape[0]):
        gp, dp = dy[pl], dx[pl]
        band = np.empty(w, dtype=dy.dtype)  # W: what each row of one window band receives
        share = np.empty(ow, dtype=dy.dtype)  # OW: each tap's share of a window, the reference's dy / d
        dp[:] = 0
        for o in range(oh):
            dr = d[o]
            for q in range(ow):
                share[q] = gp[o * ow + q] / dr[q]
            band[:] = 0
            for j in range(kw):
                off = j - pw
                for q in range(max(0, (sw - 1 - off) // sw), min(ow, (w - 1 - off) // sw + 1)):
                    band[q * sw + off] += share[q]
            r0 = o * sh - ph
            for r in range(max(r0, 0), min(r0 + kh, h)):
                xr = dp[r * w : (r + 1) * w]
                for c in range(w):
                    xr[c] += band[c]


# ------------------------------------------------------------------------ max pool


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """y = max over each window; indices (int64) = flat h * W + w of each maximum in its plane.

    Same arguments, ties (first maximum in row-major window order wins), NaN rule (NaN wins;
    the last NaN is reported) and results as ``dlgpu.reference.pooling.max_pool2d_forward``.
    """
    check_float(x, "x")
    check_ndim(x, 4, "x", "N, C, H, W")
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(x.shape, kernel_size, stride, padding, "x")
    x = prepare(x, "x")
    n, c, h, w = x.shape
    y = np.empty((n * c, oh * ow), dtype=x.dtype)  # NC,OH*OW
    idx = np.empty((n * c, oh * ow), dtype=np.int64)  # NC,OH*OW
    _max_pool_fwd_kernel(x.reshape(n * c, h * w), y, idx, h, w, oh, ow, kh, kw, sh, sw, ph, pw)
    return y.reshape(n, c, oh, ow), idx.reshape(n, c, oh, ow)


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, x_shape: Sequence[int]) -> np.ndarray:
    """dx[n, c, indices[n,c,oh,ow]] += dy[n,c,oh,ow]; overlapping windows accumulate.

    Same arguments and checks as ``dlgpu.reference.pooling.max_pool2d_backward``.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    check_shape(dy, (n, c, None, None), "dy", "N and C of x_shape")
    check_shape(indices, dy.shape, "indices", "dy's shape")
    if np.dtype(indices.dtype).kind not in "iu":
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    dy = prepare(dy, "dy")
    # uint64 values past int64 wrap negative here and are then caught by the range check
    idx64 = np.ascontiguousarray(indices, dtype=np.int64)
    dx = np.empty((n * c, h * w), dtype=dy.dtype)  # NC,HW
    bad = _max_pool_bwd_kernel(dy.reshape(n * c, -1), idx64.reshape(n * c, -1), dx)
    if bad:
        raise ValueError(f"indices must lie in [0, H*W) = [0, {h * w}), got [{indices.min()}, {indices.max()}]")
    return dx.reshape(n, c, h, w)


# ------------------------------------------------------------------------ avg pool


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """y = mean over each window (divisor kh*kw, or the real elements when not count_include_pad).

    Same arguments and results as ``dlgpu.reference.pooling.avg_pool2d_forward``.
    """
    check_float(x, "x")
    check_ndim(x, 4, "x", "N, C, H, W")
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(x.shape, kernel_size, stride, padding, "x")
    x = prepare(x, "x")
    n, c, h, w = x.shape
    y = np.empty((n * c, oh * ow), dtype=x.dtype)  # NC,OH*OW
    d = _divisor((h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow), count_include_pad, x.dtype)  # OH,OW
    _avg_pool_fwd_kernel(x.reshape(n * c, h * w), y, d, h, w, kh, kw, sh, sw, ph, pw)
    return y.reshape(n, c, oh, ow)


def avg_pool2d_backward(
    dy: np.ndarray,
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Gradient of avg_pool2d_forward: each window spreads dy / d evenly over its real taps.

    Same arguments, checks and results as ``dlgpu.reference.pooling.avg_pool2d_backward``.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _params(x_shape, kernel_size, stride, padding)
    check_shape(dy, (n, c, oh, ow), "dy", "N, C, OH, OW of the pooling output")
    dy = prepare(dy, "dy")
    dx = np.empty((n * c, h * w), dtype=dy.dtype)  # NC,H*W
    d = _divisor((h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow), count_include_pad, dy.dtype)  # OH,OW
    _avg_pool_bwd_kernel(dy.reshape(n * c, oh * ow), dx, d, h, w, kh, kw, sh, sw, ph, pw)
    return dx.reshape(n, c, h, w)
