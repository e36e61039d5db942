"""Fully-connected layer with a fused activation: Triton kernels with the names, arguments and
checks of dlgpu.reference.linear.

    z = x W^T + b        x: [N, I], W: [O, I], b: [O]     -> z: [N, O]
    y = act(z)           act in {none, relu, leaky_relu, sigmoid, tanh}

Forward: one GEMM kernel; bias and activation are its epilogue, applied to the fp32 accumulator
before the one store, so z never goes to memory. Backward: one pass over dy (and the saved
output) writes dz = dy * act'(z) and per-row-chunk column sums of dz in fp32 (db's partials, summed
in a fixed order: deterministic); then dx = dz W and dW = dz^T x are ``matmul_nt`` on transposed
views (no copies). With activation "none" dz is dy itself and the pass only sums.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ...reference._validate import check_activation, check_same_shape, check_shape
from ...reference.linear import _check
from ._common import DOT_UPCAST, autotune_configs, cdiv, matmul_nt, prepare, prepare_optional, wrap_triton
from .activations import ACT_CODES, _act, _act_grad

# ------------------------------------------------------------------------ forward GEMM
# Napkin math: 2*N*O*I flops over (N*I + O*I + N*O) * itemsize bytes. At N = 8192, I = O = 4096
# (bf16) that is 0.27 TFLOP over 168 MB: compute-bound, ~0.4-0.5 ms on an H100 at 60-70% of the
# ~990 TFLOP/s bf16 wgmma peak; fp32 with exact products (FMA units, ~67 TFLOP/s peak) ~5-8 ms. The
# fused epilogue saves a read and a write of z (2 * N*O * itemsize) against a separate activation.
# Two config lists, one kernel: fp16/bf16 tiles feed wgmma; fp32 with exact products runs on the FMA
# units, whose dot holds (rows + cols) per thread x BLOCK_K operands in registers, so it gets BLOCK_K =
# 16 (or 64x64x32) and 8+ warps. Every config compiles for sm_90 without spills (ptxas for sm_90,
# Triton 3.9 and 3.6; the recorded launches and their 16-divisible specialisations). Dropped for
# spilling: 128x128x64 w8 (72-80 B), 128x256x64 w8 (0.8-1.5 KB), 128x64x64 / 64x128x64 with 4 warps
# (0.5-0.9 KB), 128x128x32 w8 (44 B under 3.6); fp32 64x64x32 w4 (20 B), 64x64x16 w4 (12 B).
# Worst kept: fp16/bf16 255 / 254 registers (3.9 / 3.6), fp32 200 / 230.
_TC_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 32, "GROUP_M": 8}, num_warps=8, num_stages=3),
]
_FP32_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 16, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16, "GROUP_M": 8}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 16, "GROUP_M": 8}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 8}, num_warps=8, num_stages=3),
]


@triton.jit
def _linear_fwd_kernel(
    x_ptr,  # [M, K] input rows (leading dims flattened)
    w_ptr,  # [N, K] weight, torch.nn.Linear layout (used transposed)
    b_ptr,  # [N] bias, or a dummy pointer when HAS_BIAS is False
    y_ptr,  # [M, N] output act(x W^T + b)
    M, N, K,  # rows, out_features, in_features
    stride_xm, stride_xk,  # strides of x in elements
    stride_wn, stride_wk,  # strides of W in elements
    stride_ym, stride_yn,  # strides of y in elements
    slope,  # leaky_relu's negative slope
    HAS_BIAS: tl.constexpr,  # add bias in the epilogue
    ACT: tl.constexpr,  # activation code (activations.ACT_CODES)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see _common.DOT_UPCAST)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # output tile, K step
    GROUP_M: tl.constexpr,  # row tiles per group: consecutive programs share W tiles in L2
):  # fmt: skip
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    size_m = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % size_m
    pid_n = (pid % per_group) // size_m

    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # fmt: skip
        b = tl.load(w_ptr + rn[None, :] * stride_wn + kk[:, None] * stride_wk,
                    mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)  # fmt: skip
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, b, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    y = _act(acc, slope, ACT)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :] * stride_yn, y.to(y_ptr.dtype.element_ty), mask=mask)


_linear_fwd_tc = triton.autotune(configs=autotune_configs(_TC_CONFIGS), key=["M", "N", "K"])(_linear_fwd_kernel)
_linear_fwd_fp32 = triton.autotune(configs=autotune_configs(_FP32_CONFIGS), key=["M", "N", "K"])(_linear_fwd_kernel)


# ------------------------------------------------------------------- backward: dz and db
# Napkin math: reads dy and out, writes dz (12 B/elem fp32, 6 B bf16; only dy's 4 B for "none"),
# writes splits*O fp32 partials: HBM-bound, ~0.1 ms for N*O = 2.6e7 fp32 on an H100; the two
# backward GEMMs (2 * 2*N*O*I flops) dominate.
# 4096-element tiles take 8 warps: with 4 (32 elements a thread) the act' epilogue needs 251-255
# registers and 64x64 spilled 8 B (ptxas for sm_90, Triton 3.9); now worst ~120.
_DZ_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=8),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 128}, num_warps=8),
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 256}, num_warps=8),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=4),
]
# db's row split: programs per column block, and the fewest rows worth a program.
_DB_SPLITS_MAX = 64
_DB_MIN_ROWS = 256


@triton.autotune(configs=autotune_configs(_DZ_CONFIGS), key=["M", "N"])
@triton.jit
def _linear_bwd_dz_kernel(
    dy_ptr,  # [M, N] upstream gradient, contiguous
    out_ptr,  # [M, N] the forward's output (read only when ACT is not none)
    dz_ptr,  # [M, N] dz = dy * act'(z), written only when ACT is not none
    part_ptr,  # [SPLITS, N] fp32 column sums of dz over each split's rows
    M, N,  # rows, out_features
    ROWS_PER_SPLIT,  # rows summed by one program
    slope,  # leaky_relu's negative slope
    ACT: tl.constexpr,  # activation code (activations.ACT_CODES)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,  # rows per step, columns per program
):  # fmt: skip
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row0 = split.to(tl.int64) * ROWS_PER_SPLIT
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(0, ROWS_PER_SPLIT, BLOCK_M):
        r = r0 + tl.arange(0, BLOCK_M)
        rm = row0 + r
        mask = ((rm < M) & (r < ROWS_PER_SPLIT))[:, None] & (rn < N)[None, :]
        offs = rm[:, None] * N + rn[None, :]
        g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if ACT != 0:
            o = tl.load(out_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            g = _act_grad(g, o, slope, ACT)  # 0 where masked: every act' scales g
            tl.store(dz_ptr + offs, g.to(dz_ptr.dtype.element_ty), mask=mask)
        acc += g
    tl.store(part_ptr + split.to(tl.int64) * N + rn, tl.sum(acc, axis=0), mask=rn < N)


# --------------------------------------------------------------------------- wrappers


def linear_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """y = act(x W^T + b).

    Args:
        x: [..., I] input.
        weight: [O, I] (torch.nn.Linear's layout).
        bias: [O] or None.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for x < 0.
    Returns:
        y: [..., O].
    """
    _check(x, weight, bias)
    check_activation(activation, negative_slope)
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    bias = prepare_optional(bias, "bias", x.dtype, x.device)
    (o, i), n = weight.shape, math.prod(x.shape[:-1])
    y = torch.empty(x.shape[:-1] + (o,), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    x2, y2 = x.reshape(n, i), y.view(n, o)

    def grid(meta: dict) -> tuple[int]:
        return (cdiv(n, meta["BLOCK_M"]) * cdiv(o, meta["BLOCK_N"]),)

    kernel = _linear_fwd_fp32 if x.dtype == torch.float32 else _linear_fwd_tc
    wrap_triton(kernel)[grid](
        x2, weight, bias if bias is not None else x2, y2,
        n, o, i,
        x2.stride(0), x2.stride(1), weight.stride(0), weight.stride(1), y2.stride(0), y2.stride(1),
        float(negative_slope),
        HAS_BIAS=bias is not None, ACT=ACT_CODES[activation], UPCAST=DOT_UPCAST,
    )  # fmt: skip
    return y


def linear_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of y = act(x W^T + b).

        dz = dy * act'(z)   (from the output y)
        dx = dz W           dW = dz^T x           db = sum_n dz

    Args:
        dy: [..., O] upstream gradient.
        x, weight: as in the forward.
        out: the forward's output y; required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [..., I], dweight [O, I], dbias [O]); dbias is returned even when the
        forward had no bias (the caller drops it).
    """
    _check(x, weight, None)
    check_activation(activation, negative_slope)
    out_shape = tuple(x.shape[:-1]) + (weight.shape[0],)
    check_shape(dy, out_shape, "dy", "x's leading dims, out_features")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype, x.device)
    dy = prepare(dy, "dy", x.dtype, x.device)
    (o, i), n = weight.shape, math.prod(x.shape[:-1])
    dy2, x2 = dy.reshape(n, o), x.reshape(n, i)
    if n == 0 or o == 0:
        dz2 = dy2
        db = torch.zeros(o, dtype=x.dtype, device=x.device)
    else:
        act = ACT_CODES[activation]
        out2 = prepare(out, "out", x.dtype, x.device).reshape(n, o) if act else dy2
        dz2 = torch.empty_like(dy2) if act else dy2
        splits = max(1, min(_DB_SPLITS_MAX, n // _DB_MIN_ROWS))
        rows_per_split = cdiv(n, splits)
        part = torch.empty((splits, o), dtype=torch.float32, device=x.device)

        def grid(meta: dict) -> tuple[int, int]:
            return cdiv(o, meta["BLOCK_N"]), splits

        wrap_triton(_linear_bwd_dz_kernel)[grid](
            dy2, out2, dz2, part, n, o, rows_per_split, float(negative_slope), ACT=act
        )
        db = part.sum(dim=0).to(x.dtype)  # fixed order over the splits: deterministic
    dx = matmul_nt(dz2, weight.t()).view(x.shape)  # [N, O] @ [O, I]
    dw = matmul_nt(dz2.t(), x2.t())  # [O, N] @ [N, I]
    return dx, dw, db
