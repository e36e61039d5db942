"""2-D convolution with a fused activation: Triton kernels with the names, arguments and checks of
dlgpu.reference.conv.

Every pass is an implicit GEMM: the im2col matrix is never materialised, each program computes the
input addresses of its tile on the fly from (n, c, ih = oh*sh - ph + kh*dh, iw = ...) and zero-pads
through load masks. The input x is read through its real (n, c, h, w) strides, so NCHW and
channels-last tensors (and any other strided view) are used as they are, without a copy; so are dy
and out in the backward. Outputs are contiguous NCHW. Groups are the grid's third dimension.

    forward   y = act(X_col [M, K] @ W_g^T [K, O/G] + b)   M = N*OH*OW, K = C/G*KH*KW
    dz        dz = dy * act'(out)                          (elementwise; skipped for "none")
    dgrad     dx [N*H*W, C/G] = sum over taps (kh, kw) of dz_tap [N*H*W, O/G] @ W_g[:, :, kh, kw]
              where dz_tap holds dz[n, o, oh, ow] for oh*sh = ih + ph - kh*dh (zero where that is
              not a whole in-range oh: the mask does the stride-divisibility check)
    wgrad     dW_g [O/G, C/G*KH*KW] = dz_g [O/G, N*OH*OW] @ X_col, split-K over N*OH*OW into fp32
              partials summed in a fixed order (deterministic); db is the row sum of the same dz
              tiles, taken in the wgrad mainloop (no separate pass over dz)

Storage float32/float16/bfloat16, fp32 accumulation; float32 dots use exact IEEE products.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ...reference._validate import check_activation, check_float, check_same_shape, check_shape, pair
from ...reference.conv import _check, conv2d_output_shape
from ._common import DOT_UPCAST, autotune_configs, cdiv, prepare, prepare_optional, wrap_triton

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_output_shape"]

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

# wgrad split-K: each split reduces at least this many (n, oh, ow) positions, so the fp32 partials
# (SPLIT * O * C/G*KH*KW * 4 bytes) stay small next to the dz and x traffic they replace.
_SPLIT_MIN_CHUNK = 512


def _prepare_strided(x, name: str, dtype: torch.dtype | None = None, device: torch.device | None = None):
    """``prepare``'s checks and errors, without its copy: a read-only input keeps its strides
    (the kernels take them), so channels-last input is never made contiguous."""
    if not isinstance(x, torch.Tensor):
        return prepare(x, name, dtype, device)  # raises prepare's TypeError
    prepare(x.as_strided((0,), (1,)), name, dtype, device)  # an empty view: the checks, no copy
    return x


@functools.cache
def _num_sms(device: torch.device) -> int:
    """Streaming multiprocessors to fill (a small stand-in under the interpreter)."""
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


@triton.jit
def _activate(z, slope, ACT: tl.constexpr):
    """The fused epilogue's activation on an fp32 block (codes as ACT_CODES)."""
    if ACT == 1:
        z = tl.maximum(z, 0.0)
    elif ACT == 2:
        z = tl.where(z > 0, z, z * slope)
    elif ACT == 3:
        e = tl.exp(-tl.abs(z))  # in (0, 1]: never overflows
        z = tl.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    elif ACT == 4:
        e = tl.exp(-2.0 * tl.abs(z))
        t = (1.0 - e) / (1.0 + e)
        z = tl.where(z >= 0, t, -t)
    return z


# ----------------------------------------------------------------------------- forward
# Napkin math (H100, ResNet 3x3 layer N=32, C=O=64, 56x56, pad 1, fp16): M = 100,352, K = 576,
# N_gemm = 64 -> 2*M*K*O = 7.4 GFLOP, ~15-25 us at 30-50% of the ~990 TFLOP/s dense fp16 peak,
# against 26 MB of x and y (~10 us at ~2.5-3 TB/s; x's KH*KW re-reads hit L1/L2): compute-bound by
# ~2x. The address arithmetic (one div/mod chain per K chunk on a [BLOCK_K] vector, compares on the
# tile) is small next to the dot. fp32 with exact IEEE products runs on the CUDA cores (67 TFLOP/s
# peak): ~150-250 us. Small O/G (< BLOCK_N) and depthwise layers waste most of each tile: they want a
# direct (non-GEMM) kernel.

# Two config lists, one kernel (as linear.py), each free of register spills for sm_90 (ptxas for sm_90,
# Triton 3.9 and 3.6; the recorded launches plus 16-divisible and channels-last specialisations). fp16/
# bf16 feed wgmma from registers (the gathered A tile is not a pipelined copy): 128-row tiles with
# BLOCK_K = 32 spill under 3.9 (8 B at 128x64x32 w8, 0.3-3 KB at 128x128 and 128x32), 64x64x32 with
# 4 warps sits at 255 registers; worst kept 254 / 183 registers (3.9 / 3.6). fp32 with exact products
# is an FMA dot holding (rows + cols) per thread x BLOCK_K operands in registers: 64x64x16 / 64x64x32
# with 8 warps are the largest clean tiles (128x64x16 w8 spills 140 B, 128x128x16 w16 1.4 KB, the old
# 64x64x32 w4 0.1 KB); worst kept 206 / 110 registers.
_FWD_TC_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=3),
]
_FWD_FP32_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 128, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=4, num_stages=3),
]


@triton.jit
def _conv2d_fwd_kernel(
    x_ptr,  # [N, C, H, W] input, any strides
    w_ptr,  # [O, C/G, KH, KW] filters, contiguous (row o is the K-vector of output channel o)
    b_ptr,  # [O] bias, or a dummy pointer when HAS_BIAS is False
    y_ptr,  # [N, O, OH, OW] output
    M, OG, K,  # GEMM sizes: N*OH*OW output pixels, O/G output channels per group, C/G*KH*KW
    CG, H, W, OH, OW,  # channels per group, input and output plane sizes
    KH, KW, SH, SW, PH, PW, DH, DW,  # kernel, stride, padding, dilation
    stride_xn, stride_xc, stride_xh, stride_xw,  # strides of x in elements
    stride_yn, stride_yc,  # strides of y's N and O dims (its (OH, OW) plane is contiguous)
    slope,  # leaky_relu's negative slope
    HAS_BIAS: tl.constexpr,  # add b[o] before the activation
    ACT: tl.constexpr,  # activation code (ACT_CODES)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixel (n, oh, ow)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channel within the group
    P = OH * OW
    n = rm // P
    r = rm % P
    oh = r // OW
    ow = r % OW
    ih0 = oh * SH - PH  # top-left input position of each pixel's window
    iw0 = ow * SW - PW
    m_ok = rm < M
    n_ok = rn < OG
    o = g * OG + rn
    x_row = x_ptr + n * stride_xn + (g * CG).to(tl.int64) * stride_xc  # [BLOCK_M] pointers
    w_col = w_ptr + o.to(tl.int64) * K  # [BLOCK_N] pointers
    KHW = KH * KW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)  # (c, kh, kw) flattened as in the weight
        k_ok = kk < K
        c = kk // KHW
        t = kk % KHW
        kh = t // KW
        kw = t % KW
        ih = ih0[:, None] + (kh * DH)[None, :]
        iw = iw0[:, None] + (kw * DW)[None, :]
        a_mask = m_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_row[:, None] + (c.to(tl.int64) * stride_xc)[None, :] + ih * stride_xh + iw * stride_xw,
                    mask=a_mask, other=0.0)  # fmt: skip
        b = tl.load(w_col[None, :] + kk[:, None], mask=n_ok[None, :] & k_ok[:, None], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    acc = _activate(acc, slope, ACT)
    y_off = n[:, None] * stride_yn + o.to(tl.int64)[None, :] * stride_yc + r[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


_conv2d_fwd_tc = triton.autotune(configs=autotune_configs(_FWD_TC_CONFIGS), key=["M", "OG", "K"])(_conv2d_fwd_kernel)
_conv2d_fwd_fp32 = triton.autotune(configs=autotune_configs(_FWD_FP32_CONFIGS), key=["M", "OG", "K"])(
    _conv2d_fwd_kernel
)


# ------------------------------------------------------------------------------ dz
# Napkin math: reads dy and out, writes dz: 3 * N*O*OH*OW * itemsize bytes, ~0 flops; memory-bound,
# ~10 us for the 6.4M-element layer above in fp16 at ~2.5 TB/s.


@triton.jit
def _act_grad_kernel(
    dy_ptr,  # [N, O, OH, OW] upstream gradient, any strides
    out_ptr,  # [N, O, OH, OW] the forward's output, any strides
    dz_ptr,  # [N, O, OH, OW] gradient at the pre-activation, contiguous
    O, P, OW,  # channels, OH*OW, output width
    stride_dn, stride_dc, stride_dh, stride_dw,  # strides of dy in elements
    stride_on, stride_oc, stride_oh, stride_ow,  # strides of out in elements
    slope,  # leaky_relu's negative slope
    ACT: tl.constexpr,  # activation code (ACT_CODES), not 0
    BLOCK: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(0).to(tl.int64)  # (n, o)
    n = plane // O
    o = plane % O
    p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = p < P
    oh = (p // OW).to(tl.int64)  # int64: the strides may be those of any (permuted) view
    ow = (p % OW).to(tl.int64)
    dy = tl.load(dy_ptr + n * stride_dn + o * stride_dc + oh * stride_dh + ow * stride_dw, mask=mask, other=0.0)
    y = tl.load(out_ptr + n * stride_on + o * stride_oc + oh * stride_oh + ow * stride_ow, mask=mask, other=0.0)
    dy = dy.to(tl.float32)
    y = y.to(tl.float32)
    if ACT == 1:
        dz = tl.where(y > 0, dy, 0.0)
    elif ACT == 2:
        dz = tl.where(y > 0, dy, dy * slope)
    elif ACT == 3:
        dz = dy * y * (1.0 - y)
    else:
        dz = dy * (1.0 - y * y)
    tl.store(dz_ptr + plane * P + p, dz.to(dz_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------- dgrad
# Napkin math (layer above): 2*N*H*W*C*O*KH*KW = 7.4 GFLOP, as the forward, times sh*sw: with
# stride > 1 every tap runs for every input pixel and the masks zero the (sh*sw - 1)/(sh*sw) of them
# whose oh is not whole (the straightforward formulation; a sub-pixel decomposition would skip them).
# Stride 1: compute-bound like the forward. O/G < BLOCK_K (depthwise) wastes the rest of each chunk.

# Config lists as the forward's, spill-free in the same sense. fp16/bf16: 64x64x32 with 4 warps spills
# 160 B under 3.9, 128x64x32 76 B, 128x128 tiles up to 2 KB; worst kept 252 / 184 registers (3.9 / 3.6).
# fp32: every (kh, kw) tap recomputes oh = (ih + ph - kh*dh) / sh on int64 pixel indices; ptxas emits
# 64-bit division as a subroutine and spills around its calls (ABI, not register pressure: 16-60 B at
# 80-200 registers, differently in 3.9 and 3.6), so only these small tiles with one stage come out
# clean in every specialisation; 64x64x16 with 8 warps spills 8-60 B. Worst kept 173 / 128 registers.
_DGRAD_TC_CONFIGS = _FWD_TC_CONFIGS  # the same tiles measured clean for both kernels
_DGRAD_FP32_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=1),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=4, num_stages=1),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=1),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=4, num_stages=1),
]


@triton.jit
def _conv2d_dgrad_kernel(
    dz_ptr,  # [N, O, OH, OW] gradient at the pre-activation, any strides
    w_ptr,  # [O, C/G, KH, KW] filters, contiguous
    dx_ptr,  # [N, C, H, W] input gradient, contiguous
    M, CG, OG,  # N*H*W input pixels, channels and output channels per group
    H, W, OH, OW,  # input and output plane sizes
    KH, KW, SH, SW, PH, PW, DH, DW,  # kernel, stride, padding, dilation
    stride_dn, stride_dc, stride_dh, stride_dw,  # strides of dz in elements
    stride_xn, stride_xc,  # strides of dx's N and C dims (its (H, W) plane is contiguous)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # input pixel (n, ih, iw)
    rc = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # input channel within the group
    HW = H * W
    n = rm // HW
    r = rm % HW
    ih = r // W
    iw = r % W
    m_ok = rm < M
    c_ok = rc < CG
    KHW = KH * KW
    K = CG * KHW  # weight row length
    dz_row = dz_ptr + n * stride_dn + (g * OG).to(tl.int64) * stride_dc  # [BLOCK_M] pointers
    w_col = w_ptr + (g * OG).to(tl.int64) * K + rc * KHW  # [BLOCK_N] pointers at tap (0, 0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in range(KH):
        ohs = ih + PH - kh * DH  # = oh * SH when this tap touches (ih, .) from output row oh
        oh = ohs // SH
        h_ok = (ohs >= 0) & (ohs % SH == 0) & (oh < OH)
        for kw in range(KW):
            ows = iw + PW - kw * DW
            ow = ows // SW
            ok = m_ok & h_ok & (ows >= 0) & (ows % SW == 0) & (ow < OW)
            a_row = dz_row + oh * stride_dh + ow * stride_dw
            for o0 in range(0, OG, BLOCK_K):
                ro = o0 + tl.arange(0, BLOCK_K)
                o_ok = ro < OG
                a = tl.load(a_row[:, None] + (ro.to(tl.int64) * stride_dc)[None, :],
                            mask=ok[:, None] & o_ok[None, :], other=0.0)  # fmt: skip
                b = tl.load(w_col[None, :] + (ro * K)[:, None] + (kh * KW + kw),
                            mask=o_ok[:, None] & c_ok[None, :], other=0.0)  # fmt: skip
                if UPCAST:
                    a = a.to(tl.float32)
                    b = b.to(tl.float32)
                acc += tl.dot(a, b, input_precision="ieee")
    dx_off = n[:, None] * stride_xn + (g * CG + rc).to(tl.int64)[None, :] * stride_xc + r[:, None]
    tl.store(dx_ptr + dx_off, acc.to(dx_ptr.dtype.element_ty), mask=m_ok[:, None] & c_ok[None, :])


_conv2d_dgrad_tc = triton.autotune(configs=autotune_configs(_DGRAD_TC_CONFIGS), key=["M", "CG", "OG"])(
    _conv2d_dgrad_kernel
)
_conv2d_dgrad_fp32 = triton.autotune(configs=autotune_configs(_DGRAD_FP32_CONFIGS), key=["M", "CG", "OG"])(
    _conv2d_dgrad_kernel
)


# ---------------------------------------------------------------------------- wgrad
# Napkin math (layer above): 7.4 GFLOP again, but the GEMM is short and fat: O/G x C/G*KH*KW =
# 64 x 576 is only 9 output tiles of 64x64, while the reduction runs over N*OH*OW = 100,352 pixels.
# Split-K over the pixels fills the SMs (~2 programs per SM); the fp32 partials (SPLIT*O*K*4 bytes,
# ~4.4 MB in 30 splits here) are summed in a fixed order by _sum_rows_kernel, so the result is deterministic.

# BLOCK_K must divide 64 (see _wgrad_split). fp16/bf16: 128x128x32 spills 240 B under 3.9, 32x64x64
# 0.5 KB; worst kept 254 / 255 registers (3.9 / 3.6). fp32: the mainloop splits each pixel index into
# (n, oh, ow) with int64 division, a ptxas subroutine whose calls spill (ABI): 3.6 spills 0.5-2.5 KB
# for most 4-warp and 128-wide tiles (and at 16 warps, where ptxas drops to 32 registers), 3.9 12-30 B;
# these 8-warp tiles are clean in every specialisation. Worst kept 198 / 255 registers.
_WGRAD_TC_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 16}, num_warps=16, num_stages=3),
]
_WGRAD_FP32_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 128, "BLOCK_K": 16}, num_warps=8, num_stages=1),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
]


@triton.jit
def _conv2d_wgrad_kernel(
    dz_ptr,  # [N, O, OH, OW] gradient at the pre-activation, any strides
    x_ptr,  # [N, C, H, W] input, any strides
    dw_ptr,  # [SPLIT, O, C/G*KH*KW] fp32 partial weight gradients, contiguous
    db_ptr,  # [SPLIT, O] fp32 partial bias gradients
    O, OG, KG, R, CHUNK,  # all output channels; GEMM sizes O/G, C/G*KH*KW, N*OH*OW; pixels per split
    CG, H, W, OH, OW,  # channels per group, input and output plane sizes
    KH, KW, SH, SW, PH, PW, DH, DW,  # kernel, stride, padding, dilation
    stride_dn, stride_dc, stride_dh, stride_dw,  # strides of dz in elements
    stride_xn, stride_xc, stride_xh, stride_xw,  # strides of x in elements
    SPLIT,  # number of splits of the pixel reduction
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_z = tl.program_id(2)
    g = pid_z // SPLIT
    s = pid_z % SPLIT
    ro = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output channel within the group
    rq = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (c, kh, kw) flattened as in the weight
    o = g * OG + ro
    o_ok = ro < OG
    q_ok = rq < KG
    KHW = KH * KW
    c = rq // KHW
    t = rq % KHW
    khd = (t // KW) * DH
    kwd = (t % KW) * DW
    x_col = x_ptr + (g * CG + c).to(tl.int64) * stride_xc  # [BLOCK_N] pointers
    dz_row = dz_ptr + o.to(tl.int64) * stride_dc  # [BLOCK_M] pointers
    P = OH * OW
    p_lo = s.to(tl.int64) * CHUNK
    p_hi = tl.minimum(p_lo + CHUNK, R)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for p0 in range(p_lo, p_hi, BLOCK_K):
        p = p0 + tl.arange(0, BLOCK_K)  # output pixel (n, oh, ow)
        p_ok = p < p_hi
        n = p // P
        rp = p % P
        oh = rp // OW
        ow = rp % OW
        a = tl.load(dz_row[:, None] + (n * stride_dn + oh * stride_dh + ow * stride_dw)[None, :],
                    mask=o_ok[:, None] & p_ok[None, :], other=0.0)  # fmt: skip
        ih = (oh * SH - PH)[:, None] + khd[None, :]
        iw = (ow * SW - PW)[:, None] + kwd[None, :]
        b_mask = p_ok[:, None] & q_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        b = tl.load(x_col[None, :] + (n * stride_xn)[:, None] + ih * stride_xh + iw * stride_xw,
                    mask=b_mask, other=0.0)  # fmt: skip
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
        db += tl.sum(a.to(tl.float32), axis=1)  # db is dz's row sum: free while the tile is loaded
    row = s.to(tl.int64) * O + o  # (split, o) row of the partials
    tl.store(dw_ptr + row[:, None] * KG + rq[None, :], acc, mask=o_ok[:, None] & q_ok[None, :])
    if pid_n == 0:  # one column of programs writes db
        tl.store(db_ptr + row, db, mask=o_ok)


_conv2d_wgrad_tc = triton.autotune(configs=autotune_configs(_WGRAD_TC_CONFIGS), key=["OG", "KG", "R"])(
    _conv2d_wgrad_kernel
)
_conv2d_wgrad_fp32 = triton.autotune(configs=autotune_configs(_WGRAD_FP32_CONFIGS), key=["OG", "KG", "R"])(
    _conv2d_wgrad_kernel
)


@triton.jit
def _sum_rows_kernel(
    src_ptr,  # [R, L] fp32 partials, contiguous
    dst_ptr,  # [L] their column sums, in the output dtype
    R, L,  # rows (splits) and columns
    BLOCK: tl.constexpr,
):  # fmt: skip
    # Napkin math: reads R*L*4 bytes once; a few us for the wgrad partials.
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < L
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(R):  # fixed order: deterministic
        acc += tl.load(src_ptr + i * L + cols, mask=mask, other=0.0)
    tl.store(dst_ptr + cols, acc.to(dst_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- wrappers


def _geometry(stride, padding, dilation) -> tuple[int, ...]:
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    return sh, sw, ph, pw, dh, dw


def conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """y = act(conv2d(x, w) + b), see dlgpu.reference.conv.conv2d_forward.

    Args:
        x: [N, C, H, W] input (NCHW logical order; any strides, channels-last included, no copy).
        weight: [O, C/groups, KH, KW] filters (torch.nn.Conv2d's layout).
        bias: [O] or None.
        stride, padding, dilation: int or (height, width) pair.
        groups: input and output channels split into this many independent groups.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for z < 0.
    Returns:
        y: [N, O, OH, OW], contiguous, in x's dtype.
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    x = _prepare_strided(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    bias = prepare_optional(bias, "bias", x.dtype, x.device)
    y = torch.empty((n, o, oh, ow), dtype=x.dtype, device=x.device)
    m = n * oh * ow
    if m == 0:
        return y
    sh, sw, ph, pw, dh, dw = _geometry(stride, padding, dilation)
    cg, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    og = o // groups

    def grid(meta: dict) -> tuple[int, int, int]:
        return cdiv(m, meta["BLOCK_M"]), cdiv(og, meta["BLOCK_N"]), groups

    kernel = _conv2d_fwd_fp32 if x.dtype == torch.float32 else _conv2d_fwd_tc
    wrap_triton(kernel)[grid](
        x, weight, bias if bias is not None else weight, y,
        m, og, cg * kh * kw,
        cg, x.shape[2], x.shape[3], oh, ow,
        kh, kw, sh, sw, ph, pw, dh, dw,
        *x.stride(), y.stride(0), y.stride(1),
        float(negative_slope),
        HAS_BIAS=bias is not None, ACT=ACT_CODES[activation], UPCAST=DOT_UPCAST,
    )  # fmt: skip
    return y


def _wgrad_split(tiles: int, r: int, device: torch.device) -> tuple[int, int]:
    """(splits, pixels per split) of the wgrad reduction: about two programs per SM, each with at
    least _SPLIT_MIN_CHUNK pixels (a multiple of 64, so every BLOCK_K divides it)."""
    split = max(1, min(cdiv(2 * _num_sms(device), tiles), cdiv(r, _SPLIT_MIN_CHUNK)))
    chunk = cdiv(cdiv(r, split), 64) * 64
    return cdiv(r, chunk), chunk


def conv2d_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    out: torch.Tensor | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of y = act(conv2d(x, w) + b), see dlgpu.reference.conv.conv2d_backward.

    Args:
        dy: [N, O, OH, OW] upstream gradient (any strides).
        x, weight, stride, padding, dilation, groups: as in the forward (x with any strides).
        out: the forward's output y (any strides); required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [O, C/groups, KH, KW], dbias [O]), contiguous, in x's dtype.
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    x = _prepare_strided(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    dy = _prepare_strided(dy, "dy", x.dtype, x.device)
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    cg, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    og, kg = o // groups, cg * kh * kw
    sh, sw, ph, pw, dh, dw = _geometry(stride, padding, dilation)
    dx = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    dweight = torch.empty(weight.shape, dtype=x.dtype, device=x.device)
    dbias = torch.empty((o,), dtype=x.dtype, device=x.device)
    if n * oh * ow == 0:  # nothing flows back (N = 0)
        return dx, dweight.zero_(), dbias.zero_()

    if activation != "none":
        out = _prepare_strided(out, "out", x.dtype, x.device)
        dz = torch.empty((n, o, oh, ow), dtype=x.dtype, device=x.device)
        block = 1024
        wrap_triton(_act_grad_kernel)[(n * o, cdiv(oh * ow, block))](
            dy, out, dz, o, oh * ow, ow, *dy.stride(), *out.stride(), float(negative_slope),
            ACT=ACT_CODES[activation], BLOCK=block,
        )  # fmt: skip
    else:
        dz = dy

    m = n * h * w

    def dgrad_grid(meta: dict) -> tuple[int, int, int]:
        return cdiv(m, meta["BLOCK_M"]), cdiv(cg, meta["BLOCK_N"]), groups

    fp32 = x.dtype == torch.float32
    if m:  # not a zero-size input plane (its padding alone holding the window)
        dgrad = _conv2d_dgrad_fp32 if fp32 else _conv2d_dgrad_tc
        wrap_triton(dgrad)[dgrad_grid](
            dz, weight, dx,
            m, cg, og, h, w, oh, ow,
            kh, kw, sh, sw, ph, pw, dh, dw,
            *dz.stride(), dx.stride(0), dx.stride(1),
            UPCAST=DOT_UPCAST,
        )  # fmt: skip

    r = n * oh * ow
    split, chunk = _wgrad_split(cdiv(og, 64) * cdiv(kg, 64) * groups, r, x.device)
    dw_part = torch.empty((split, o, kg), dtype=torch.float32, device=x.device)
    db_part = torch.empty((split, o), dtype=torch.float32, device=x.device)

    def wgrad_grid(meta: dict) -> tuple[int, int, int]:
        return cdiv(og, meta["BLOCK_M"]), cdiv(kg, meta["BLOCK_N"]), groups * split

    wgrad = _conv2d_wgrad_fp32 if fp32 else _conv2d_wgrad_tc
    wrap_triton(wgrad)[wgrad_grid](
        dz, x, dw_part, db_part,
        o, og, kg, r, chunk,
        cg, h, w, oh, ow,
        kh, kw, sh, sw, ph, pw, dh, dw,
        *dz.stride(), *x.stride(),
        split,
        UPCAST=DOT_UPCAST,
    )  # fmt: skip
    block = 256
    wrap_triton(_sum_rows_kernel)[(cdiv(o * kg, block),)](dw_part, dweight, split, o * kg, BLOCK=block)
    wrap_triton(_sum_rows_kernel)[(cdiv(o, block),)](db_part, dbias, split, o, BLOCK=block)
    return dx, dweight, dbias
