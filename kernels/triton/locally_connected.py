"""Locally-connected 2-D layer (unshared convolution): Triton kernels with the names, arguments and
checks of dlgpu.reference.locally_connected.

Every output position l = (i, j) has its own filter bank W_l = weight[i, j] viewed as [O, K],
K = C*KH*KW in (c, u, v) order, so the layer is one small GEMM per position, run as an implicit GEMM
(the position's patches X_l [N, K] are gathered from x on the fly, zero-padded through masks):

    forward   Y_l [N, O] = X_l @ W_l^T + b[:, i, j]          a program per (l, O block, N block)
    wgrad     dW_l [O, K] = dY_l^T @ X_l,  db[:, i, j] = sum_n dY_l   (db in the same mainloop)
    dgrad     dx[n, c, h, w] = sum over the positions (i, j) whose window covers (h, w), and
              o, of dy[n, o, i, j] * W[i, j, o, c, h + ph - i*sh, w + pw - j*sw]

dgrad is a gather: a program owns a block of (n, c) at one input pixel and loops over the at most
ceil(KH/sh) * ceil(KW/sw) covering positions in a fixed order, so dx is written once, with no
atomics, and is deterministic. x and dy are read through their real strides (channels-last works,
without a copy); outputs are contiguous. The layer has no parameter sharing: every weight is used
by one position only, so each pass streams the whole weight (or its gradient) once per N block and
is bound by memory bandwidth on the weights unless the batch is large (2N flops per weight, i.e.
N/2 flops per byte in fp32, N in fp16).

Storage float32/float16/bfloat16, fp32 accumulation; float32 dots use exact IEEE products.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ...reference._validate import check_float, check_shape, pair
from ...reference.locally_connected import _check, locally_connected2d_output_shape
from ._common import DOT_UPCAST, autotune_configs, cdiv, prepare, prepare_optional, wrap_triton
from .conv import _prepare_strided

__all__ = ["locally_connected2d_backward", "locally_connected2d_forward", "locally_connected2d_output_shape"]

# Napkin math, every pass (AlexNet conv1 made unshared: 55*55 positions, O = 96, K = 363, so
# 105.4M weights; N = 32, fp16): 2*N*L*O*K = 6.7 GFLOP over 211 MB of weights -> ~85 us at
# ~2.5 TB/s, weight-bandwidth bound (tensor cores idle ~90% of the time); the x gathers
# (N*C*H*W re-read ~KH*KW/(sh*sw) times, mostly from L2) and y are small next to the weights.

# One list per pass for all dtypes: every config compiles for sm_90 without spills in fp32, fp16 and
# bf16 (ptxas for sm_90, Triton 3.9 and 3.6; the recorded launches plus 16-divisible and channels-last
# specialisations). fp32's FMA dot holds (rows + cols) per thread x BLOCK_K operands in registers, so
# BLOCK_K = 64 needs 8 warps: 16x64x64 and 32x64x64 with 4 warps spilled 36-216 B (fp32) and 52 B
# (fp16/bf16, 3.9). Worst kept 254 / 240 registers (3.9 / 3.6).
_FWD_CONFIGS = [
    triton.Config({"BLOCK_N": 16, "BLOCK_O": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 32, "BLOCK_O": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_O": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 16, "BLOCK_O": 128, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 32, "BLOCK_O": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_O": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
]


@triton.autotune(configs=autotune_configs(_FWD_CONFIGS), key=["N", "O", "K"])
@triton.jit
def _lc_fwd_kernel(
    x_ptr,  # [N, C, H, W] input, any strides
    w_ptr,  # [OH, OW, O, C, KH, KW] weights, contiguous: position l's bank is rows l*O .. l*O+O-1
    b_ptr,  # [O, OH, OW] bias, or a dummy pointer when HAS_BIAS is False
    y_ptr,  # [N, O, OH, OW] output, contiguous
    N, O, K,  # batch, output channels, C*KH*KW
    H, W, OW, L,  # input plane, output width, OH*OW positions
    KH, KW, SH, SW, PH, PW,  # kernel, stride, padding
    stride_xn, stride_xc, stride_xh, stride_xw,  # strides of x in elements
    HAS_BIAS: tl.constexpr,  # add b[o, i, j]
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    l = tl.program_id(0)
    pid_o = tl.program_id(1)
    pid_n = tl.program_id(2)
    i = l // OW
    j = l % OW
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    n_ok = rn < N
    o_ok = ro < O
    x_row = x_ptr + rn.to(tl.int64) * stride_xn  # [BLOCK_N] pointers
    w_col = w_ptr + (l.to(tl.int64) * O + ro) * K  # [BLOCK_O] pointers
    KHW = KH * KW
    acc = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)  # (c, u, v)
        c = kk // KHW
        t = kk % KHW
        hi = (i * SH - PH + t // KW).to(tl.int64)  # int64: x may be any (permuted) view
        wi = (j * SW - PW + t % KW).to(tl.int64)
        k_ok = kk < K
        inside = k_ok & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)  # one position: a 1-D mask
        x_off = c.to(tl.int64) * stride_xc + hi * stride_xh + wi * stride_xw
        a = tl.load(x_row[:, None] + x_off[None, :], mask=n_ok[:, None] & inside[None, :], other=0.0)
        b = tl.load(w_col[None, :] + kk[:, None], mask=o_ok[None, :] & k_ok[:, None], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + ro.to(tl.int64) * L + l, mask=o_ok, other=0.0).to(tl.float32)[None, :]
    y_off = (rn.to(tl.int64) * O)[:, None] * L + (ro.to(tl.int64) * L)[None, :] + l
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=n_ok[:, None] & o_ok[None, :])


# Spill-free as the forward's list. Dropped: 64x64x16 w4 (12 B fp32 under 3.6), 64x128x32 w4 (20-24 B
# fp32, 292 B fp16 under 3.6), 128x64x64 w8 (32 B fp32 under 3.9). Worst kept 255 / 255 registers.
_WGRAD_CONFIGS = [
    triton.Config({"BLOCK_O": 64, "BLOCK_Q": 64, "BLOCK_N": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_O": 128, "BLOCK_Q": 64, "BLOCK_N": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_O": 128, "BLOCK_Q": 64, "BLOCK_N": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_O": 64, "BLOCK_Q": 128, "BLOCK_N": 32}, num_warps=8, num_stages=3),
]


@triton.autotune(configs=autotune_configs(_WGRAD_CONFIGS), key=["N", "O", "K"])
@triton.jit
def _lc_wgrad_kernel(
    dy_ptr,  # [N, O, OH, OW] upstream gradient, any strides
    x_ptr,  # [N, C, H, W] input, any strides
    dw_ptr,  # [OH, OW, O, C, KH, KW] weight gradient, contiguous
    db_ptr,  # [O, OH, OW] bias gradient, contiguous
    N, O, K,  # batch (the reduction), output channels, C*KH*KW
    H, W, OW, L,  # input plane, output width, OH*OW positions
    KH, KW, SH, SW, PH, PW,  # kernel, stride, padding
    stride_dn, stride_dc, stride_dh, stride_dw,  # strides of dy in elements
    stride_xn, stride_xc, stride_xh, stride_xw,  # strides of x in elements
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_O: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    l = tl.program_id(0)
    pid_o = tl.program_id(1)
    pid_q = tl.program_id(2)
    i = l // OW
    j = l % OW
    ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    rq = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)  # (c, u, v)
    o_ok = ro < O
    KHW = KH * KW
    c = rq // KHW
    t = rq % KHW
    hi = (i * SH - PH + t // KW).to(tl.int64)  # int64: x may be any (permuted) view
    wi = (j * SW - PW + t % KW).to(tl.int64)
    q_in = (rq < K) & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    x_col = x_ptr + c.to(tl.int64) * stride_xc + hi * stride_xh + wi * stride_xw  # [BLOCK_Q], fixed
    dy_row = dy_ptr + ro.to(tl.int64) * stride_dc + i.to(tl.int64) * stride_dh + j.to(tl.int64) * stride_dw  # [BLOCK_O]
    acc = tl.zeros((BLOCK_O, BLOCK_Q), dtype=tl.float32)
    db = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rn = n0 + tl.arange(0, BLOCK_N)
        n_ok = rn < N
        a = tl.load(dy_row[:, None] + (rn.to(tl.int64) * stride_dn)[None, :],
                    mask=o_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
        b = tl.load(x_col[None, :] + (rn.to(tl.int64) * stride_xn)[:, None],
                    mask=n_ok[:, None] & q_in[None, :], other=0.0)  # fmt: skip
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
        db += tl.sum(a.to(tl.float32), axis=1)  # db is dy's row sum: free while the tile is loaded
    dw_off = (l.to(tl.int64) * O + ro)[:, None] * K + rq[None, :]
    tl.store(dw_ptr + dw_off, acc.to(dw_ptr.dtype.element_ty), mask=o_ok[:, None] & (rq < K)[None, :])
    if pid_q == 0:  # one program per (position, O block) writes db
        tl.store(db_ptr + ro.to(tl.int64) * L + l, db.to(db_ptr.dtype.element_ty), mask=o_ok)


# Spill-free as the forward's list. Dropped: 16x64x64 w4 (628 B fp32 under 3.9). Worst kept 248 / 228.
_DGRAD_CONFIGS = [
    triton.Config({"BLOCK_N": 16, "BLOCK_C": 32, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 32, "BLOCK_C": 32, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_C": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 32, "BLOCK_C": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_C": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
]


@triton.autotune(configs=autotune_configs(_DGRAD_CONFIGS), key=["N", "C", "O"])
@triton.jit
def _lc_dgrad_kernel(
    dy_ptr,  # [N, O, OH, OW] upstream gradient, any strides
    w_ptr,  # [OH, OW, O, C, KH, KW] weights, contiguous
    dx_ptr,  # [N, C, H, W] input gradient, contiguous
    N, C, O,  # batch, input channels, output channels
    H, W, OH, OW,  # input and output plane sizes
    KH, KW, SH, SW, PH, PW,  # kernel, stride, padding
    stride_dn, stride_dc, stride_dh, stride_dw,  # strides of dy in elements
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # The W tile [BLOCK_K, BLOCK_C] at one tap (u, v) is strided by KH*KW along c: each program
    # reads 1/(KH*KW) of every sector it touches, and neighbouring pixels' programs (adjacent in
    # launch order) read the rest while it is still in L2.
    pix = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_n = tl.program_id(2)
    h = pix // W
    w = pix % W
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    n_ok = rn < N
    c_ok = rc < C
    KHW = KH * KW
    K = C * KHW
    # covering positions: i*SH <= h + PH <= i*SH + KH - 1, 0 <= i < OH (likewise j)
    i_lo = (tl.maximum(h + PH - KH + 1, 0) + SH - 1) // SH
    ni = tl.maximum(tl.minimum((h + PH) // SH + 1, OH) - i_lo, 0)
    j_lo = (tl.maximum(w + PW - KW + 1, 0) + SW - 1) // SW
    nj = tl.maximum(tl.minimum((w + PW) // SW + 1, OW) - j_lo, 0)
    # The reduction runs over (i, j, o) flattened, so small O does not leave chunks mostly masked.
    KT = ni * nj * O
    dy_row = dy_ptr + rn.to(tl.int64) * stride_dn  # [BLOCK_N] pointers
    w_col = w_ptr + rc * KHW  # [BLOCK_C] pointers at position 0, o = 0, tap (0, 0)
    acc = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
    for k0 in range(0, KT, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < KT
        o = kk % O
        t = kk // O
        i = i_lo + t // nj
        j = j_lo + t % nj
        tap = (h + PH - i * SH) * KW + (w + PW - j * SW)  # u*KW + v
        dy_off = o.to(tl.int64) * stride_dc + i.to(tl.int64) * stride_dh + j.to(tl.int64) * stride_dw
        w_off = ((i * OW + j).to(tl.int64) * O + o) * K + tap
        a = tl.load(dy_row[:, None] + dy_off[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(w_col[None, :] + w_off[:, None], mask=k_ok[:, None] & c_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
    dx_off = (rn.to(tl.int64) * C)[:, None] * (H * W) + (rc.to(tl.int64) * (H * W))[None, :] + pix
    tl.store(dx_ptr + dx_off, acc.to(dx_ptr.dtype.element_ty), mask=n_ok[:, None] & c_ok[None, :])


def locally_connected2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """y[n, o, i, j] = b[o, i, j] + sum_{c,u,v} w[i, j, o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v].

    Args:
        x: [N, C, H, W] input (NCHW logical order; any strides, channels-last included, no copy).
        weight: [OH, OW, O, C, KH, KW], one filter bank per output position.
        bias: [O, OH, OW] or None.
        stride, padding: int or (height, width) pair.
    Returns:
        y: [N, O, OH, OW], contiguous, in x's dtype.
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding)
    x = _prepare_strided(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    bias = prepare_optional(bias, "bias", x.dtype, x.device)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    c, kh, kw = x.shape[1], weight.shape[4], weight.shape[5]
    y = torch.empty((n, o, oh, ow), dtype=x.dtype, device=x.device)
    if n == 0:
        return y

    def grid(meta: dict) -> tuple[int, int, int]:
        return oh * ow, cdiv(o, meta["BLOCK_O"]), cdiv(n, meta["BLOCK_N"])

    wrap_triton(_lc_fwd_kernel)[grid](
        x, weight, bias if bias is not None else weight, y,
        n, o, c * kh * kw,
        x.shape[2], x.shape[3], ow, oh * ow,
        kh, kw, sh, sw, ph, pw,
        *x.stride(),
        HAS_BIAS=bias is not None, UPCAST=DOT_UPCAST,
    )  # fmt: skip
    return y


def locally_connected2d_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the locally connected layer, see dlgpu.reference.locally_connected.

    Args:
        dy: [N, O, OH, OW] upstream gradient (any strides).
        x, weight, stride, padding: as in the forward (x with any strides).
    Returns:
        (dx [N, C, H, W], dweight [OH, OW, O, C, KH, KW], dbias [O, OH, OW]), contiguous, in x's
        dtype; dbias is returned even when the forward had no bias.
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    x = _prepare_strided(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    dy = _prepare_strided(dy, "dy", x.dtype, x.device)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    c, h, w, kh, kw = x.shape[1], x.shape[2], x.shape[3], weight.shape[4], weight.shape[5]
    dx = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    dweight = torch.empty(weight.shape, dtype=x.dtype, device=x.device)
    dbias = torch.empty((o, oh, ow), dtype=x.dtype, device=x.device)
    if n == 0:  # nothing flows back
        return dx, dweight.zero_(), dbias.zero_()

    def wgrad_grid(meta: dict) -> tuple[int, int, int]:
        return oh * ow, cdiv(o, meta["BLOCK_O"]), cdiv(c * kh * kw, meta["BLOCK_Q"])

    wrap_triton(_lc_wgrad_kernel)[wgrad_grid](
        dy, x, dweight, dbias,
        n, o, c * kh * kw,
        h, w, ow, oh * ow,
        kh, kw, sh, sw, ph, pw,
        *dy.stride(), *x.stride(),
        UPCAST=DOT_UPCAST,
    )  # fmt: skip

    def dgrad_grid(meta: dict) -> tuple[int, int, int]:
        return h * w, cdiv(c, meta["BLOCK_C"]), cdiv(n, meta["BLOCK_N"])

    if h * w == 0:  # a zero-size input plane (its padding alone holds the window)
        return dx, dweight, dbias
    wrap_triton(_lc_dgrad_kernel)[dgrad_grid](
        dy, weight, dx,
        n, c, o, h, w, oh, ow,
        kh, kw, sh, sw, ph, pw,
        *dy.stride(),
        UPCAST=DOT_UPCAST,
    )  # fmt: skip
    return dx, dweight, dbias
