"""2-D max and average pooling (NCHW): the oracle.

A window of kh x kw taps slides over each (H, W) plane with stride (sh, sw) after
padding ph rows / pw columns on each side:

    OH = floor((H + 2 ph - kh) / sh) + 1        OW = floor((W + 2 pw - kw) / sw) + 1
    max:  y[n,c,oh,ow] = max_{i<kh, j<kw} xp[n, c, oh*sh + i, ow*sw + j]      (xp padded with -inf)
    avg:  y[n,c,oh,ow] = sum_{i<kh, j<kw} xp[n, c, oh*sh + i, ow*sw + j] / d  (xp padded with 0)

Hyperparameters follow torch.nn.functional.max_pool2d / avg_pool2d (floor mode, no
dilation): ``kernel_size``, ``stride`` and ``padding`` are an int or an (h, w) pair,
``stride`` defaults to ``kernel_size``, and ``padding`` may be at most half the kernel
per axis, so every window holds at least one real (non-padding) element.

Each op loops over the kh*kw kernel taps; one tap is a strided slice covering every
output position at once, so there is no per-pixel Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import check_bool, check_float, check_ndim, check_shape, pair, window_output_hw

IntOrPair = int | Sequence[int]

# ------------------------------------------------------------------------ helpers


def _check_x_shape(x_shape: Sequence[int], name: str = "x_shape") -> tuple[int, int, int, int]:
    ok = (
        isinstance(x_shape, (tuple, list))
        and len(x_shape) == 4
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in x_shape)
    )
    if not ok:
        raise ValueError(f"{name} must be a 4-tuple of ints (N, C, H, W), got {x_shape!r}")
    if min(x_shape) < 1:
        raise ValueError(f"{name} must have every size >= 1 (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = (int(s) for s in x_shape)
    return n, c, h, w


def _params(
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None,
    padding: IntOrPair,
    name: str = "x_shape",
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated (kernel, stride, padding, (OH, OW)), each an (h, w) pair; ``name``: what the caller
    calls the shape (x's shape in a forward)."""
    _, _, h, w = _check_x_shape(tuple(x_shape), name)
    k = pair(kernel_size, "kernel_size", minimum=1)
    s = k if stride is None else pair(stride, "stride", minimum=1)
    p = pair(padding, "padding", minimum=0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"padding must be at most half the kernel size per axis (<= {(k[0] // 2, k[1] // 2)} "
            f"for kernel_size {k}), got {padding!r}"
        )
    out_hw = window_output_hw((h, w), k, s, p, name="kernel_size")
    return k, s, p, out_hw


def _tap(
    xp: np.ndarray, i: int, j: int, stride: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[slice, slice, slice, slice]:
    """Index of tap (i, j) of every window in the padded plane: a strided slice."""
    (sh, sw), (oh, ow) = stride, out_hw
    return (slice(None), slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))


def _pad(x: np.ndarray, padding: tuple[int, int], value: float) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def pool2d_output_shape(
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[int, int, int, int]:
    """(N, C, OH, OW) of a 2-D pooling of an input of shape ``x_shape`` = (N, C, H, W).

    OH = floor((H + 2 ph - kh) / sh) + 1, likewise OW. Validates everything the pooling
    ops validate: positive kernel and stride, 0 <= padding <= kernel // 2 per axis, and
    a window no larger than the padded input (ValueError naming the argument otherwise).
    """
    n, c, _, _ = _check_x_shape(x_shape)
    _, _, _, (oh, ow) = _params(x_shape, kernel_size, stride, padding)
    return n, c, oh, ow


def _check_x(x: np.ndarray) -> None:
    check_float(x, "x")
    check_ndim(x, 4, "x", "N, C, H, W")


# ------------------------------------------------------------------------ max pool


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """y = max over each window; indices = where each maximum came from.

        y[n,c,oh,ow] = max_{i,j} xp[n, c, oh*sh + i, ow*sw + j]    (xp: x padded with -inf)

    Args:
        x: [N, C, H, W] input.
        kernel_size, stride, padding: int or (h, w) pair; stride defaults to kernel_size;
            0 <= padding <= kernel_size // 2 per axis.
    Returns:
        y: [N, C, OH, OW], x's dtype.
        indices: int64 [N, C, OH, OW], the flat index h * W + w of the chosen element inside
            its own unpadded (H, W) plane (torch's return_indices convention). Padding is
            -inf and never chosen: a window whose real elements are all -inf reports its
            first real element.

    Ties and NaN (as torch's CPU and CUDA kernels, which update on ``v > best or isnan(v)``
    scanning the window in row-major order):
        * among equal maxima the FIRST in row-major scan order of the window wins;
        * a NaN in the window wins, so y is NaN (NaN propagates); among several NaNs the
          LAST one in scan order is the index reported.
    """
    _check_x(x)
    (kh, kw), stride_hw, pad, (oh, ow) = _params(x.shape, kernel_size, stride, padding, "x")
    (sh, sw), (ph, pw) = stride_hw, pad
    w_in = x.shape[3]
    xp = _pad(x, pad, -np.inf)  # N,C,H+2ph,W+2pw
    # The unpadded row/column each window starts at; clamped to 0 it is the window's first real element.
    row0 = np.arange(oh, dtype=np.int64) * sh - ph  # OH
    col0 = np.arange(ow, dtype=np.int64) * sw - pw  # OW
    best = np.full(x.shape[:2] + (oh, ow), -np.inf, dtype=x.dtype)  # N,C,OH,OW
    first = np.maximum(row0, 0)[:, None] * w_in + np.maximum(col0, 0)[None, :]  # OH,OW
    idx = np.broadcast_to(first, best.shape)  # N,C,OH,OW
    for i in range(kh):  # row-major scan: strict '>' below keeps the first of equal maxima
        for j in range(kw):
            v = xp[_tap(xp, i, j, stride_hw, (oh, ow))]  # N,C,OH,OW
            take = (v > best) | np.isnan(v)
            best = np.where(take, v, best)
            tap_idx = (row0 + i)[:, None] * w_in + (col0 + j)[None, :]  # OH,OW (junk where padding: never taken)
            idx = np.where(take, tap_idx, idx)
    return best, idx


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, x_shape: Sequence[int]) -> np.ndarray:
    """dx[n, c, indices[n,c,oh,ow]] += dy[n,c,oh,ow]: route each gradient to its window's maximum.

    Overlapping windows (stride < kernel) that chose the same element accumulate.

    Args:
        dy: [N, C, OH, OW] upstream gradient.
        indices: int64 [N, C, OH, OW] from max_pool2d_forward (flat h * W + w per plane).
        x_shape: (N, C, H, W), the forward input's shape.
    Returns:
        dx: [N, C, H, W], dy's dtype.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    check_shape(dy, (n, c, None, None), "dy", "N and C of x_shape")
    check_shape(indices, dy.shape, "indices", "dy's shape")
    if np.dtype(indices.dtype).kind not in "iu":
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(f"indices must lie in [0, H*W) = [0, {h * w}), got [{indices.min()}, {indices.max()}]")
    dx = np.zeros((n * c, h * w), dtype=dy.dtype)  # NC,HW
    plane = np.arange(n * c)[:, None]  # NC,1
    # add.at, not fancy-index '+=', so repeated indices (overlapping windows) accumulate
    np.add.at(dx, (plane, indices.reshape(n * c, -1)), dy.reshape(n * c, -1))
    return dx.reshape(n, c, h, w)


# ------------------------------------------------------------------------ avg pool


def _divisor(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out_hw: tuple[int, int],
    count_include_pad: bool,
    dtype: np.dtype,
) -> np.ndarray:
    """d[oh, ow]: kh*kw, or the number of real (non-padding) elements of each window."""
    # floor mode: a window never passes the padded border, so always kh*kw when padding counts
    if check_bool(count_include_pad, "count_include_pad"):
        return np.full(out_hw, kernel[0] * kernel[1], dtype=dtype)
    counts = []
    for size, k, s, p, o in zip(hw, kernel, stride, padding, out_hw):
        start = np.arange(o) * s - p  # O
        counts.append(np.minimum(start + k, size) - np.maximum(start, 0))  # O
    return (counts[0][:, None] * counts[1][None, :]).astype(dtype)  # OH,OW


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """y = mean over each window.

        y[n,c,oh,ow] = sum_{i,j} xp[n, c, oh*sh + i, ow*sw + j] / d[oh,ow]    (xp: x padded with 0)
        d = kh * kw                                       if count_include_pad
        d = number of real (non-padding) window elements  otherwise          (torch semantics)

    Args:
        x: [N, C, H, W] input.
        kernel_size, stride, padding: int or (h, w) pair; stride defaults to kernel_size;
            0 <= padding <= kernel_size // 2 per axis.
        count_include_pad: whether padding zeros count in the divisor.
    Returns:
        y: [N, C, OH, OW], x's dtype.
    """
    _check_x(x)
    kernel, stride_hw, pad, out_hw = _params(x.shape, kernel_size, stride, padding, "x")
    xp = _pad(x, pad, 0)  # N,C,H+2ph,W+2pw
    total = np.zeros(x.shape[:2] + out_hw, dtype=x.dtype)  # N,C,OH,OW
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            total += xp[_tap(xp, i, j, stride_hw, out_hw)]
    d = _divisor(x.shape[2:], kernel, stride_hw, pad, out_hw, count_include_pad, x.dtype)  # OH,OW
    return total / d


def avg_pool2d_backward(
    dy: np.ndarray,
    x_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Gradient of avg_pool2d_forward: each window spreads dy / d evenly over its taps.

        dxp[n, c, oh*sh + i, ow*sw + j] += dy[n,c,oh,ow] / d[oh,ow]   for every tap (i, j)
        dx = dxp with the padding cropped off

    Args:
        dy: [N, C, OH, OW] upstream gradient.
        x_shape: (N, C, H, W), the forward input's shape.
        kernel_size, stride, padding, count_include_pad: as in the forward.
    Returns:
        dx: [N, C, H, W], dy's dtype.
    """
    check_float(dy, "dy")
    check_ndim(dy, 4, "dy", "N, C, OH, OW")
    n, c, h, w = _check_x_shape(x_shape)
    kernel, stride_hw, pad, out_hw = _params(x_shape, kernel_size, stride, padding)
    check_shape(dy, (n, c) + out_hw, "dy", "N, C, OH, OW of the pooling output")
    d = _divisor((h, w), kernel, stride_hw, pad, out_hw, count_include_pad, dy.dtype)  # OH,OW
    g = dy / d  # N,C,OH,OW: the share each tap of a window receives
    (ph, pw) = pad
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)  # N,C,H+2ph,W+2pw
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            # within one tap the strided positions are distinct, so '+=' accumulates correctly
            dxp[_tap(dxp, i, j, stride_hw, out_hw)] += g
    return np.ascontiguousarray(dxp[:, :, ph : ph + h, pw : pw + w])
