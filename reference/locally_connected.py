"""Locally-connected 2-D layer (unshared convolution): the oracle.

A convolution without parameter sharing: every output position (i, j) has its own
filter bank and its own bias, for when different features belong in different places
(e.g. centred faces: eye detectors at the top, mouth detectors at the bottom).

    xpad = x zero-padded by (ph, pw) on each side of H and W
    y[n, o, i, j] = b[o, i, j] + sum_{c, u, v} w[i, j, o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v]

    x: [N, C, H, W]   w: [OH, OW, O, C, KH, KW]   b: [O, OH, OW]   y: [N, O, OH, OW]
    OH = floor((H + 2ph - KH) / sh) + 1, OW = floor((W + 2pw - KW) / sw) + 1

Parameter count: OH*OW*O*(C*KH*KW + 1), which grows with the output size. AlexNet's
conv1 made unshared (x [1, 3, 227, 227], 96 filters of 11x11, stride 4, no padding,
so a 55x55x96 output) would need 55*55*96*(11*11*3 + 1) = 105,705,600 parameters,
against 96*(11*11*3 + 1) = 34,944 with sharing (conv.py).

As in conv.py the sum runs one kernel tap (u, v) at a time over a strided slice of
the padded input; here the contraction keeps the output position (i, j) as a batch
index instead of summing the same filter over it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import check_dtype_as, check_float, check_ndim, check_shape, pair, window_output_hw


def _tap(k: int, stride: int, n_out: int) -> slice:
    """The padded-input positions kernel tap k reads for outputs 0..n_out-1: k + i*s."""
    return slice(k, k + stride * (n_out - 1) + 1, stride)


def locally_connected2d_output_shape(
    x_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[int, int]:
    """Output (OH, OW) of a locally connected layer on an [N, C, H, W] input.

    OH = floor((H + 2ph - KH) / sh) + 1, likewise OW. Raises ValueError on a wrong rank,
    kernel_size/stride < 1, padding < 0, or a window larger than the padded input.
    The weight for this configuration has shape [OH, OW, O, C, KH, KW], the bias [O, OH, OW].
    """
    return _output_hw(x_shape, kernel_size, stride, padding, "kernel_size")


def _output_hw(
    x_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int],
    kernel_name: str,
) -> tuple[int, int]:
    """locally_connected2d_output_shape, naming the kernel's source in its errors."""
    shape = tuple(int(s) for s in x_shape)
    if len(shape) != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {shape}")
    k = pair(kernel_size, kernel_name, minimum=1)
    s = pair(stride, "stride", minimum=1)
    p = pair(padding, "padding", minimum=0)
    return window_output_hw((shape[2], shape[3]), k, s, p, name=kernel_name)


def _check(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: int | Sequence[int],
    padding: int | Sequence[int],
) -> tuple[int, int, int, int]:
    """Validate and return the output shape (N, O, OH, OW)."""
    check_float(x, "x")
    check_dtype_as(weight, "weight", x.dtype)
    check_ndim(x, 4, "x", "N, C, H, W")
    check_ndim(weight, 6, "weight", "OH, OW, out_channels, in_channels, KH, KW")
    _, _, o, cw, kh, kw = (int(d) for d in weight.shape)
    if min(o, cw, kh, kw) < 1:
        raise ValueError(f"weight must have O, C, KH, KW >= 1, got shape {tuple(weight.shape)}")
    if cw != x.shape[1]:
        raise ValueError(
            f"weight's in_channels (weight.shape[3] = {cw}) must equal x's channels C={x.shape[1]} "
            f"(x shape {tuple(x.shape)})"
        )
    oh, ow = _output_hw(x.shape, (kh, kw), stride, padding, "weight")
    if tuple(weight.shape[:2]) != (oh, ow):
        raise ValueError(
            f"weight's first two dimensions must be the output size (OH, OW) = {(oh, ow)} for x "
            f"{tuple(x.shape)}, kernel {(kh, kw)}, stride {stride!r}, padding {padding!r}; "
            f"got weight shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_dtype_as(bias, "bias", x.dtype)
        check_shape(bias, (o, oh, ow), "bias", "out_channels, OH, OW")
    return x.shape[0], o, oh, ow


def locally_connected2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> np.ndarray:
    """y[n, o, i, j] = b[o, i, j] + sum_{c,u,v} w[i, j, o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v].

    Args:
        x: [N, C, H, W] input (NCHW).
        weight: [OH, OW, O, C, KH, KW], one filter bank per output position; OH, OW
            must be the output size that x, KH, KW, stride and padding give.
        bias: [O, OH, OW] (one bias per output unit) or None.
        stride, padding: int or (height, width) pair; stride >= 1, padding >= 0 (zeros).
    Returns:
        y: [N, O, OH, OW].
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    kh, kw = weight.shape[4], weight.shape[5]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # N,C,H+2ph,W+2pw
    y = np.zeros((n, o, oh, ow), dtype=np.result_type(x.dtype, weight.dtype))  # N,O,OH,OW
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, _tap(u, sh, oh), _tap(v, sw, ow)]  # N,C,OH,OW
            y += np.einsum("ncij,ijoc->noij", patch, weight[:, :, :, :, u, v], optimize=True)
    if bias is not None:
        y += bias  # O,OH,OW broadcast over N
    return y


def locally_connected2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the locally connected layer.

        dw[i, j, o, c, u, v] = sum_n dy[n, o, i, j] * xpad[n, c, i*sh + u, j*sw + v]
        dxpad[n, c, i*sh + u, j*sw + v] += sum_o dy[n, o, i, j] * w[i, j, o, c, u, v]
                               dx = dxpad without its padding border
        db[o, i, j] = sum_n dy[n, o, i, j]

    Args:
        dy: [N, O, OH, OW] upstream gradient.
        x, weight, stride, padding: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [OH, OW, O, C, KH, KW], dbias [O, OH, OW]); dbias is
        returned even when the forward had no bias.
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding)
    check_dtype_as(dy, "dy", x.dtype)
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    h, w, kh, kw = x.shape[2], x.shape[3], weight.shape[4], weight.shape[5]
    dtype = np.result_type(dy.dtype, x.dtype, weight.dtype)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # N,C,Hp,Wp
    dxp = np.zeros(xp.shape, dtype=dtype)  # N,C,Hp,Wp
    dweight = np.zeros(weight.shape, dtype=dtype)  # OH,OW,O,C,KH,KW
    for u in range(kh):
        for v in range(kw):
            rows, cols = _tap(u, sh, oh), _tap(v, sw, ow)
            patch = xp[:, :, rows, cols]  # N,C,OH,OW
            dweight[:, :, :, :, u, v] = np.einsum("noij,ncij->ijoc", dy, patch, optimize=True)
            # one tap's positions are distinct, so += never aliases within a tap
            dxp[:, :, rows, cols] += np.einsum("noij,ijoc->ncij", dy, weight[:, :, :, :, u, v], optimize=True)
    dx = dxp[:, :, ph : ph + h, pw : pw + w]  # N,C,H,W: drop the padding border
    dbias = dy.sum(axis=0)  # O,OH,OW
    return np.ascontiguousarray(dx), dweight, dbias
