"""2-D convolution (cross-correlation, as in every DL framework) with a fused activation: the oracle.

    xpad = x zero-padded by (ph, pw) on each side of H and W
    z[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xpad[n, g*Cg + c, i*sh + u*dh, j*sw + v*dw]
    y = act(z)          act in {none, relu, leaky_relu, sigmoid, tanh}

    x: [N, C, H, W]   w: [O, C/G, KH, KW] (torch layout)   b: [O]   y: [N, O, OH, OW]
    g = o // (O/G) is the group of output channel o, Cg = C/G its input channels;
    OH = floor((H + 2ph - dh(KH-1) - 1) / sh) + 1, and likewise OW.

The sum is evaluated one kernel tap (u, v) at a time: each tap reads a strided slice
of the padded input (the [OH, OW] grid of positions that tap touches) and contracts it
with w[:, :, u, v] over the channels. That is KH*KW small GEMMs, exact and readable.
Parameter sharing: one [C/G, KH, KW] filter + 1 bias per output channel, whatever the
output size (AlexNet conv1: 96 * (11*11*3 + 1) = 34,944 parameters; compare
locally_connected.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import (
    check_activation,
    check_dtype_as,
    check_float,
    check_ndim,
    check_same_shape,
    check_shape,
    pair,
    window_output_hw,
)
from .activations import activation_backward, activation_forward


def _check_rank(shape: Sequence[int], ndim: int, name: str, layout: str) -> tuple[int, ...]:
    """Same message as check_ndim, for a bare shape tuple."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D ({layout}), got shape {shape}")
    return shape


def _check_groups(groups: int) -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return int(groups)


def _tap(k: int, dilation: int, stride: int, n_out: int) -> slice:
    """The padded-input positions kernel tap k reads for outputs 0..n_out-1: k*d + i*s."""
    return slice(k * dilation, k * dilation + stride * (n_out - 1) + 1, stride)


def conv2d_output_shape(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> tuple[int, int, int, int]:
    """Validate a conv2d configuration and return its output shape (N, O, OH, OW).

    OH = floor((H + 2ph - dh(KH-1) - 1) / sh) + 1 (likewise OW). Raises ValueError on
    wrong ranks, stride/dilation < 1, padding < 0, groups not dividing C and O, C not
    equal to weight.shape[1] * groups, or a dilated window larger than the padded input.
    """
    n, c, h, w = _check_rank(x_shape, 4, "x", "N, C, H, W")
    o, cg, kh, kw = _check_rank(weight_shape, 4, "weight", "out_channels, in_channels/groups, KH, KW")
    if min(o, cg, kh, kw) < 1:
        raise ValueError(f"weight must have every dimension >= 1, got shape {(o, cg, kh, kw)}")
    s = pair(stride, "stride", minimum=1)
    p = pair(padding, "padding", minimum=0)
    d = pair(dilation, "dilation", minimum=1)
    g = _check_groups(groups)
    if c % g != 0:
        raise ValueError(f"groups must divide x's channels C={c}, got groups={g}")
    if o % g != 0:
        raise ValueError(f"groups must divide weight's out_channels O={o}, got groups={g}")
    if c != cg * g:
        raise ValueError(
            f"x's channels C={c} must equal weight.shape[1] * groups = {cg} * {g} = {cg * g} "
            f"(weight shape {(o, cg, kh, kw)}, x shape {(n, c, h, w)})"
        )
    oh, ow = window_output_hw((h, w), (kh, kw), s, p, d, name="weight")
    return n, o, oh, ow


def _check(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: int | Sequence[int],
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
) -> tuple[int, int, int, int]:
    check_float(x, "x")
    check_dtype_as(weight, "weight", x.dtype)
    check_ndim(x, 4, "x", "N, C, H, W")
    check_ndim(weight, 4, "weight", "out_channels, in_channels/groups, KH, KW")
    out_shape = conv2d_output_shape(x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_dtype_as(bias, "bias", x.dtype)
        check_shape(bias, (weight.shape[0],), "bias", "out_channels")
    return out_shape


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> np.ndarray:
    """y = act(conv2d(x, w) + b), see the module docstring for the equation.

    Args:
        x: [N, C, H, W] input (NCHW).
        weight: [O, C/groups, KH, KW] filters (torch.nn.Conv2d's layout).
        bias: [O] or None.
        stride, padding, dilation: int or (height, width) pair; stride, dilation >= 1,
            padding >= 0 (zero padding on both sides).
        groups: input and output channels split into this many independent groups.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for z < 0.
    Returns:
        y: [N, O, OH, OW], OH = floor((H + 2ph - dh(KH-1) - 1)/sh) + 1, likewise OW.
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    c, kh, kw = x.shape[1], weight.shape[2], weight.shape[3]
    cg, og = c // groups, o // groups
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # N,C,H+2ph,W+2pw
    xg = xp.reshape(n, groups, cg, xp.shape[2], xp.shape[3])  # N,G,Cg,Hp,Wp
    wg = weight.reshape(groups, og, cg, kh, kw)  # G,Og,Cg,KH,KW
    z = np.zeros((n, groups, og, oh, ow), dtype=np.result_type(x.dtype, weight.dtype))  # N,G,Og,OH,OW
    for u in range(kh):
        for v in range(kw):
            patch = xg[:, :, :, _tap(u, dh, sh, oh), _tap(v, dw, sw, ow)]  # N,G,Cg,OH,OW
            z += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, u, v], optimize=True)
    z = z.reshape(n, o, oh, ow)  # output channel o = g*Og + og, as torch orders them
    if bias is not None:
        z += bias.reshape(1, o, 1, 1)
    return activation_forward(z, activation, negative_slope)


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    out: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = act(conv2d(x, w) + b).

        dz = dy * act'(z)   (from the forward's output y, see activation_backward)
        dw[o, c, u, v] = sum_{n,i,j} dz[n, o, i, j] * xpad[n, g*Cg + c, i*sh + u*dh, j*sw + v*dw]
        dxpad[n, g*Cg + c, i*sh + u*dh, j*sw + v*dw] += sum_o' dz[n, o, i, j] * w[o, c, u, v]
                            (o over group g's outputs); dx = dxpad without its padding border
        db[o] = sum_{n,i,j} dz[n, o, i, j]

    Args:
        dy: [N, O, OH, OW] upstream gradient (the forward output's shape).
        x, weight, stride, padding, dilation, groups: as in the forward.
        out: the forward's output y; required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [O, C/groups, KH, KW], dbias [O]); dbias is returned
        even when the forward had no bias (the caller drops it).
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    check_dtype_as(dy, "dy", x.dtype)
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
        check_dtype_as(out, "out", x.dtype)
        dz = activation_backward(dy, out, activation, negative_slope)
    else:
        dz = dy
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    c, h, w, kh, kw = x.shape[1], x.shape[2], x.shape[3], weight.shape[2], weight.shape[3]
    cg, og = c // groups, o // groups
    dtype = np.result_type(dz.dtype, x.dtype, weight.dtype)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # N,C,Hp,Wp
    xg = xp.reshape(n, groups, cg, xp.shape[2], xp.shape[3])  # N,G,Cg,Hp,Wp
    wg = weight.reshape(groups, og, cg, kh, kw)  # G,Og,Cg,KH,KW
    dzg = dz.reshape(n, groups, og, oh, ow)  # N,G,Og,OH,OW
    dxg = np.zeros(xg.shape, dtype=dtype)  # N,G,Cg,Hp,Wp
    dwg = np.zeros(wg.shape, dtype=dtype)  # G,Og,Cg,KH,KW
    for u in range(kh):
        for v in range(kw):
            rows, cols = _tap(u, dh, sh, oh), _tap(v, dw, sw, ow)
            patch = xg[:, :, :, rows, cols]  # N,G,Cg,OH,OW
            dwg[:, :, :, u, v] = np.einsum("ngohw,ngchw->goc", dzg, patch, optimize=True)
            # one tap's positions are distinct, so += never aliases within a tap
            dxg[:, :, :, rows, cols] += np.einsum("ngohw,goc->ngchw", dzg, wg[:, :, :, u, v], optimize=True)
    dx = dxg.reshape(xp.shape)[:, :, ph : ph + h, pw : pw + w]  # N,C,H,W: drop the padding border
    dweight = dwg.reshape(weight.shape)  # O,Cg,KH,KW
    dbias = dz.sum(axis=(0, 2, 3))  # O
    return np.ascontiguousarray(dx), dweight, dbias
