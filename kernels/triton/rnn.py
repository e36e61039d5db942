"""Elman RNN (torch.nn.RNN, one layer) and its readout: Triton kernels.

Same functions, arguments, results and errors as ``dlgpu.reference.rnn``.

Forward: the input term has no recurrence, so x W_ih^T + b_ih + b_hh for all T steps is ONE GEMM
(``matmul_nt``, fp32 result ``xp``). For small H (``SEQUENCE_MAX_H``) the recurrence is then ONE
launch: a program per 16 batch rows owns every hidden unit and loops over the steps (a batch row
never depends on another, so a CTA barrier between steps is all the synchronisation needed).
Otherwise one launch per step: a program owns a [BLOCK_B, BLOCK_H] tile of h_t, computes its
slice of h_{t-1} W_hh^T (tl.dot over K = H), adds xp[t] and applies phi in the epilogue, and
writes h_t straight into output[t]. Nothing else is stored.

Backward (BPTT): one launch per step, t = T-1 .. 0. A program owns a tile of hidden units; its
prologue is the recurrent GEMM dh_t = dz_{t+1} W_hh for that tile (the previous launch's result,
so no separate GEMM launch per step), its epilogue adds d_output[t], multiplies by phi' (from
h_t = output[t]) and writes dz_t, plus the tile's column sums over its batch rows (fp32) for
db. After the loop: dh_0 = dz_0 W_hh, dx = dz W_ih, dW_ih = dz^T X, dW_hh = dz^T H_prev as
single ``matmul_nt`` GEMMs on strided views, and db as one column-sum over the partials.

The readout is kernels/triton/linear.py's fused linear layer on the [T*B, H] view. This file
also holds the pieces the LSTM kernels share (``_tanh``, ``_sigmoid``, the tile configs, the
column-sum kernel, the bias sum and the after-the-loop weight gradients).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...reference import rnn as _ref
from ...reference._validate import check_choice, check_float, check_ndim
from . import linear as _linear
from ._common import DOT_UPCAST, autotune_configs, cdiv, matmul_nt, next_pow2, prepare, prepare_optional, wrap_triton

NONLINEARITIES = _ref.NONLINEARITIES

# The forward runs as ONE launch (a program per 16 batch rows looping over the steps) when H is at
# most this, per storage dtype; else one launch per step. Past these sizes one SM per 16 batch rows
# is slower than a grid over the hidden units plus a launch per step (fp32's exact products run on
# FMA units, so its limit is lower).
SEQUENCE_MAX_H = {torch.float32: 128, torch.float16: 256, torch.bfloat16: 256}

# ------------------------------------------------------------------ shared pieces


@triton.jit
def _tanh(z):
    # tl has no tanh the interpreter runs (libdevice is GPU-only). (1 - e) / (1 + e) with
    # e = exp(-2|z|) never overflows; below |z| = 1/4 it would lose digits to cancellation, so
    # the odd Taylor series takes over there (its first dropped term is < 1e-8 relative).
    a = tl.abs(z)
    e = tl.exp(-2.0 * a)
    far = (1.0 - e) / (1.0 + e)
    a2 = a * a
    near = a + a * a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0))))
    y = tl.where(a < 0.25, near, far)
    return tl.where(z < 0, -y, y)


@triton.jit
def _sigmoid(z):
    # exp of -|z| only, as the reference: never overflows, and keeps full relative precision in
    # the lower tail (where 1 / (1 + exp(-z)) would round exp's huge argument first)
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return tl.where(z >= 0, r, e * r)


def block_b(batch: int) -> int:
    """Batch rows per program of the per-step kernels: about four batch blocks, 16..64 rows.

    Fixed by the wrapper (not autotuned) because the backward's per-block partial sums are laid
    out by it. 16 is tl.dot's minimum; small blocks give the latency-bound steps more programs,
    at the price of re-reading W_hh (from L2) once per batch block.
    """
    return min(64, max(16, next_pow2(cdiv(batch, 4))))


# Hidden-unit tile, K step and warps of the per-step kernels. A step is ~0.1 GFLOP at most: what
# matters is spreading it over enough SMs (B=64, H=512: 4 batch x 32 hidden tiles = 128 programs)
# without spilling. Chosen from ptxas's register counts for sm_90 (Triton 3.9 and 3.6, fp32/fp16/bf16,
# BLOCK_B = 16, 32, 64 as prune_step_configs leaves them): the LSTM's four fp32 accumulators are the
# worst case; BLOCK_K = 64 in the forward spills 32-500 B, tiles of > 2048 elements spill.
STEP_CONFIGS = [
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_H": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
]
# The backward's prologue GEMM runs over K = G*H with one accumulator: longer K steps pay there.
# Not 64x32 with 8 warps (the LSTM's fp16 step spills 8 B under Triton 3.6) nor 32x64 (8 B at
# BLOCK_B = 32 with 8 warps, 90-160 B at BLOCK_B = 64 with 4).
STEP_BWD_CONFIGS = [
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_H": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
]


def prune_step_configs(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Drop tiles wider than H needs, and tiles over 2048 elements (they spill at BLOCK_B = 64)."""
    h, bb = named_args["H"], kwargs["BLOCK_B"]
    kept = [c for c in configs if c.kwargs["BLOCK_H"] <= max(16, next_pow2(h)) and bb * c.kwargs["BLOCK_H"] <= 2048]
    return kept or configs[:1]


# The single-launch forward (see SEQUENCE_MAX_H): one program per 16 batch rows owns every hidden
# unit, so its steps need only a CTA barrier between them. Only cdiv(B, 16) programs run, so
# occupancy is moot and every config lets ptxas use all 255 registers (maxnreg): without it ptxas
# 12.8/13 trades a few spilled values for occupancy (4-64 B at 64-186 registers, in fp32 and fp16).
# Per dtype: the LSTM's fp32 step keeps four accumulators and 32-wide K steps of operands, which
# spill at BLOCK_H = 32 (44-68 B at 255 registers) even so. All clean for sm_90, Triton 3.9 and 3.6.
SEQ_TC_CONFIGS = [
    triton.Config({"BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=2, maxnreg=255),
    triton.Config({"BLOCK_H": 64, "BLOCK_K": 32}, num_warps=8, num_stages=2, maxnreg=255),
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=8, num_stages=2, maxnreg=255),
]
SEQ_FP32_CONFIGS = [
    triton.Config({"BLOCK_H": 32, "BLOCK_K": 16}, num_warps=8, num_stages=2, maxnreg=255),
    triton.Config({"BLOCK_H": 16, "BLOCK_K": 32}, num_warps=8, num_stages=2, maxnreg=255),
]
SEQ_BLOCK_B = 16


# Column sums of a [R, N] matrix in fp32 (db and the peephole gradients from the per-step partials).
# Napkin math: memory-bound, R*N*itemsize bytes once; after an LSTM at T=100, B=64, H=512 the
# partials are 400 x 2048 fp32 = 3.3 MB: a few microseconds.
@triton.jit
def _colsum_kernel(
    x_ptr,  # [R, N] input, any float dtype, any strides
    out_ptr,  # [N] output (its dtype is the result's)
    R, N,  # sizes
    stride_r, stride_n,  # strides of x in elements
    BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        mask = (rr[:, None] < R) & (rn[None, :] < N)
        acc += tl.load(x_ptr + rr[:, None] * stride_r + rn[None, :] * stride_n, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + rn, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=rn < N)


def colsum(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x.sum(0) for a 2-D x (any strides), fp32 accumulation, result in ``dtype``."""
    r, n = x.shape
    out = torch.empty((n,), dtype=dtype, device=x.device)
    if n:
        wrap_triton(_colsum_kernel)[(cdiv(n, 64),)](x, out, r, n, x.stride(0), x.stride(1), BLOCK_R=32, BLOCK_N=64)
    return out


def bias_sum(bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None) -> torch.Tensor | None:
    """b_ih + b_hh in fp32 (the one bias the input-projection GEMM adds), or None without biases."""
    biases = [b.float() for b in (bias_ih, bias_hh) if b is not None]
    return None if not biases else biases[0] if len(biases) == 1 else biases[0] + biases[1]


def weight_grads(
    dz: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, output: torch.Tensor, w_ih: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The non-recurrent BPTT products, each one GEMM over all T*B rows: (dx, dW_ih, dW_hh).

    Transposes are strided views (matmul_nt takes any strides), never copies. Without h0 the
    step-0 term of dW_hh vanishes and dz[1:]^T output[:-1] needs no shifted copy of the states.
    """
    T, B, GH = dz.shape
    I, H = x.shape[2], output.shape[2]
    dz2 = dz.view(T * B, GH)
    dx = matmul_nt(dz2, w_ih.t()).view(T, B, I)  # TB,GH @ GH,I
    dw_ih = matmul_nt(dz2.t(), x.view(T * B, I).t())  # GH,TB @ TB,I
    if h0 is None:
        dw_hh = matmul_nt(dz[1:].reshape((T - 1) * B, GH).t(), output[:-1].reshape((T - 1) * B, H).t())
    else:
        h_prev = torch.cat([h0[None], output[:-1]], dim=0).view(T * B, H)  # T,B,H: [h0, h_1..h_{T-1}]
        dw_hh = matmul_nt(dz2.t(), h_prev.t())
    return dx, dw_ih, dw_hh


# ----------------------------------------------------------------------- forward
# Per step: 2*B*H*H flops (the recurrent GEMM) over H*H weights (L2-resident after step 0:
# 1 MB fp32 at H=512) plus 3*B*H activations. At B=64, H=512 that is 34 MFLOP per step, far too
# little to fill an H100: the step is latency-bound (launch ~5 us, a K loop of H/BLOCK_K
# dependent iterations), ~5-10 us per step; the fp32 path uses exact FMA products (no tf32).


@triton.jit
def _rnn_fwd_tile(
    xp_ptr, h_prev_ptr, w_hh_ptr, h_ptr,  # this step's xp, h_{t-1}, W_hh, h_t (see _rnn_fwd_kernel)
    rb, rj,  # the tile: batch rows (int64) and hidden units
    B, H, stride_xb, stride_pb, stride_hb, stride_wn,
    RELU: tl.constexpr, RECUR: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """h_t[rb, rj] = phi(xp[rb, rj] + h_{t-1}[rb, :] @ W_hh[rj, :]^T): one tile of one step."""
    mb, mj = rb < B, rj < H
    mask = mb[:, None] & mj[None, :]
    z = tl.load(xp_ptr + rb[:, None] * stride_xb + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    if RECUR:
        rk = tl.arange(0, BLOCK_K)
        w_rows = w_hh_ptr + rj.to(tl.int64)[None, :] * stride_wn  # W_hh[j, :] as columns
        for k0 in range(0, H, BLOCK_K):
            kk = k0 + rk
            hk = tl.load(h_prev_ptr + rb[:, None] * stride_pb + kk[None, :],
                         mask=mb[:, None] & (kk[None, :] < H), other=0.0)  # fmt: skip
            w = tl.load(w_rows + kk[:, None], mask=(kk[:, None] < H) & mj[None, :], other=0.0)
            if UPCAST:
                hk = hk.to(tl.float32)
                w = w.to(tl.float32)
            z += tl.dot(hk, w, input_precision="ieee")
    if RELU:
        h = tl.where(z < 0, 0.0, z)  # NaN propagates, as np.maximum's does
    else:
        h = _tanh(z)
    tl.store(h_ptr + rb[:, None] * stride_hb + rj[None, :], h.to(h_ptr.dtype.element_ty), mask=mask)


@triton.autotune(
    configs=autotune_configs(STEP_CONFIGS), key=["B", "H", "BLOCK_B", "RECUR"],
    prune_configs_by={"early_config_prune": prune_step_configs},
)  # fmt: skip
@triton.jit
def _rnn_fwd_kernel(
    xp_ptr,  # [B, H] fp32: x_t W_ih^T + b_ih + b_hh
    h_prev_ptr,  # [B, H] h_{t-1} (output[t-1] or h0); not read when RECUR is False
    w_hh_ptr,  # [H, H] W_hh, row-major
    h_ptr,  # [B, H] out: h_t, i.e. output[t]
    B, H,  # batch, hidden size
    stride_xb, stride_pb, stride_hb,  # row strides of xp, h_prev, h (unit column strides)
    stride_wn,  # row stride of W_hh
    RELU: tl.constexpr,  # phi = relu (else tanh)
    RECUR: tl.constexpr,  # h_{t-1} is nonzero (False at t = 0 without h0: skip the GEMM)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    _rnn_fwd_tile(xp_ptr, h_prev_ptr, w_hh_ptr, h_ptr, rb, rj, B, H, stride_xb, stride_pb, stride_hb, stride_wn,
                  RELU, RECUR, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip


# The whole sequence in one launch, for small H (SEQUENCE_MAX_H): per step the program re-reads
# W_hh (H*H, from L2) and does 2*16*H*H flops; at H=256 in bf16 that is 128 KB and 2 MFLOP, ~1-2 us
# on one SM, against ~5+ us of launch per step for the per-step path. Only cdiv(B, 16) SMs work.
@triton.jit
def _rnn_fwd_seq_kernel(
    xp_ptr,  # [T, B, H] fp32: x_t W_ih^T + b_ih + b_hh
    h0_ptr,  # [B, H] h0; read when HAS_H0
    w_hh_ptr,  # [H, H] W_hh, row-major
    out_ptr,  # [T, B, H] out: h_1..h_T
    T, B, H,  # steps, batch, hidden size
    stride_wn,  # row stride of W_hh
    RELU: tl.constexpr,  # phi = relu (else tanh)
    HAS_H0: tl.constexpr,  # h0 given (else zeros: step 0 skips the GEMM)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # One program owns all hidden units of its batch rows, and h_t's rows depend on no other rows:
    # no grid-wide dependency, only this CTA's own writes of h_{t-1} to wait for (the barrier).
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.arange(0, BLOCK_H)
    step = B * H  # elements per step (one step's [B, H] is well under 2^31)
    for j0 in range(0, H, BLOCK_H):
        _rnn_fwd_tile(xp_ptr, h0_ptr, w_hh_ptr, out_ptr, rb, j0 + rh, B, H, H, H, H, stride_wn,
                      RELU, HAS_H0, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip
    for t in range(1, T):
        tl.debug_barrier()  # h_{t-1}, stored by every warp of this program, is read whole below
        off = tl.cast(t, tl.int64) * step
        for j0 in range(0, H, BLOCK_H):
            _rnn_fwd_tile(xp_ptr + off, out_ptr + (off - step), w_hh_ptr, out_ptr + off, rb, j0 + rh,
                          B, H, H, H, H, stride_wn, RELU, True, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip


_rnn_fwd_seq_tc = triton.autotune(configs=autotune_configs(SEQ_TC_CONFIGS), key=["B", "H"])(_rnn_fwd_seq_kernel)
_rnn_fwd_seq_fp32 = triton.autotune(configs=autotune_configs(SEQ_FP32_CONFIGS), key=["B", "H"])(_rnn_fwd_seq_kernel)


# ---------------------------------------------------------------------- backward
# Per step: 2*B*H*H flops (dz_{t+1} W_hh, the prologue) and ~4*B*H activations; latency-bound
# like the forward step.


@triton.autotune(
    configs=autotune_configs(STEP_BWD_CONFIGS), key=["B", "H", "BLOCK_B", "RECUR"],
    prune_configs_by={"early_config_prune": prune_step_configs},
)  # fmt: skip
@triton.jit
def _rnn_bwd_kernel(
    dz_next_ptr,  # [B, H] dz_{t+1}; read when RECUR
    w_hh_ptr,  # [H, H] W_hh, row-major
    dh_n_ptr,  # [B, H] d_h_n; read when not RECUR and HAS_DHN (the last step)
    d_out_ptr,  # [B, H] d_output[t]; read when HAS_DOUT
    h_ptr,  # [B, H] h_t = output[t] (phi' from the output)
    dz_ptr,  # [B, H] out: dz_t
    part_ptr,  # [H] out: this batch block's row of the db partials, sum_b dz_t[b, :] in fp32
    B, H,  # batch, hidden size
    stride_nb, stride_wn, stride_db, stride_ob, stride_hb, stride_zb,  # row strides (unit columns)
    stride_pb,  # stride between the partial rows of consecutive batch blocks
    RELU: tl.constexpr,  # phi = relu (else tanh)
    RECUR: tl.constexpr,  # dh comes from dz_{t+1} W_hh (False at t = T-1: from d_h_n)
    HAS_DHN: tl.constexpr,  # d_h_n given
    HAS_DOUT: tl.constexpr,  # d_output given
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    rb = pid_b.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mj = rb < B, rj < H
    mask = mb[:, None] & mj[None, :]
    dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if RECUR:
        rk = tl.arange(0, BLOCK_K)
        for k0 in range(0, H, BLOCK_K):
            kk = k0 + rk
            a = tl.load(dz_next_ptr + rb[:, None] * stride_nb + kk[None, :],
                        mask=mb[:, None] & (kk[None, :] < H), other=0.0)  # fmt: skip
            w = tl.load(w_hh_ptr + kk.to(tl.int64)[:, None] * stride_wn + rj[None, :],
                        mask=(kk[:, None] < H) & mj[None, :], other=0.0)  # fmt: skip
            if UPCAST:
                a = a.to(tl.float32)
                w = w.to(tl.float32)
            dh += tl.dot(a, w, input_precision="ieee")
    elif HAS_DHN:
        dh += tl.load(dh_n_ptr + rb[:, None] * stride_db + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_DOUT:
        dh += tl.load(d_out_ptr + rb[:, None] * stride_ob + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    h = tl.load(h_ptr + rb[:, None] * stride_hb + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    if RELU:
        dz = tl.where(h > 0, dh, 0.0)
    else:
        dz = dh * (1.0 - h * h)
    dz = tl.where(mask, dz, 0.0)
    tl.store(dz_ptr + rb[:, None] * stride_zb + rj[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
    tl.store(part_ptr + pid_b * stride_pb + rj, tl.sum(dz, axis=0), mask=mj)


# ---------------------------------------------------------------------- wrappers


def step_grid(batch: int, hidden: int, bb: int):
    """The per-step kernels' grid: batch blocks of ``bb`` rows x hidden tiles of the config's BLOCK_H."""

    def grid(meta: dict) -> tuple[int, int]:
        return cdiv(batch, bb), cdiv(hidden, meta["BLOCK_H"])

    return grid


def rnn_forward(
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
    nonlinearity: str = "tanh",
) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), t = 1..T (torch.nn.RNN).

    Returns (output [T, B, H] = h_1..h_T, h_n [B, H] = h_T); see dlgpu.reference.rnn.
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, I, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, 1)
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    h0 = prepare_optional(h0, "h0", dt, dev)
    bias = bias_sum(prepare_optional(bias_ih, "bias_ih", dt, dev), prepare_optional(bias_hh, "bias_hh", dt, dev))
    xp = torch.empty((T, B, H), dtype=torch.float32, device=dev)  # fp32: the pre-activation rounds once
    matmul_nt(x.view(T * B, I), w_ih, bias, out=xp.view(T * B, H))
    output = torch.empty((T, B, H), dtype=dt, device=dev)
    relu = nonlinearity == "relu"
    if H <= SEQUENCE_MAX_H.get(dt, 0):
        seq = _rnn_fwd_seq_fp32 if dt == torch.float32 else _rnn_fwd_seq_tc
        wrap_triton(seq)[(cdiv(B, SEQ_BLOCK_B),)](
            xp, h0 if h0 is not None else xp, w_hh, output, T, B, H, w_hh.stride(0),
            RELU=relu, HAS_H0=h0 is not None, UPCAST=DOT_UPCAST, BLOCK_B=SEQ_BLOCK_B,
        )  # fmt: skip
        return output, output[-1].clone()
    bb = block_b(B)
    grid = step_grid(B, H, bb)
    for t in range(T):
        h_prev = h0 if t == 0 else output[t - 1]
        wrap_triton(_rnn_fwd_kernel)[grid](
            xp[t], h_prev if h_prev is not None else xp[t], w_hh, output[t],
            B, H,
            xp.stride(1), H, output.stride(1), w_hh.stride(0),
            RELU=relu, RECUR=h_prev is not None, UPCAST=DOT_UPCAST, BLOCK_B=bb,
        )  # fmt: skip
    return output, output[-1].clone()


def rnn_backward(
    d_output: torch.Tensor | None,
    d_h_n: torch.Tensor | None,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    output: torch.Tensor,
    nonlinearity: str = "tanh",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backpropagation through time for ``rnn_forward``.

    Returns (dx [T, B, I], dh0 [B, H], dweight_ih [H, I], dweight_hh [H, H], dbias_ih [H],
    dbias_hh [H]); see dlgpu.reference.rnn.
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, 1)
    _ref._check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    output = prepare(output, "output", dt, dev)
    h0 = prepare_optional(h0, "h0", dt, dev)
    d_output = prepare_optional(d_output, "d_output", dt, dev)
    d_h_n = prepare_optional(d_h_n, "d_h_n", dt, dev)
    bb = block_b(B)
    nb = cdiv(B, bb)
    dz = torch.empty((T, B, H), dtype=dt, device=dev)
    part = torch.empty((T, nb, H), dtype=torch.float32, device=dev)  # per step and batch block: sum_b dz
    grid = step_grid(B, H, bb)
    for t in range(T - 1, -1, -1):
        recur = t < T - 1
        wrap_triton(_rnn_bwd_kernel)[grid](
            dz[t + 1] if recur else dz[t], w_hh,
            d_h_n if d_h_n is not None else dz[t], d_output[t] if d_output is not None else dz[t],
            output[t], dz[t], part[t],
            B, H,
            H, w_hh.stride(0), H, H, H, H, H,
            RELU=nonlinearity == "relu", RECUR=recur, HAS_DHN=d_h_n is not None,
            HAS_DOUT=d_output is not None, UPCAST=DOT_UPCAST, BLOCK_B=bb,
        )  # fmt: skip
    dh0 = matmul_nt(dz[0], w_hh.t())  # B,H @ H,H
    dx, dw_ih, dw_hh = weight_grads(dz, x, h0, output, w_ih)
    db = colsum(part.view(T * nb, H), dt)
    return dx, dh0, dw_ih, dw_hh, db, db.clone()


# ----------------------------------------------------------------------- readout
# A linear layer along the sequence: kernels/triton/linear.py (bias and activation fused into the
# GEMM's epilogue; its backward one dz pass with fp32 column-sum partials, then two GEMMs) on the
# [T*B, H] view of output.


def rnn_readout_forward(
    output: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "none",
) -> torch.Tensor:
    """y_t = psi(W h_t + b) for every step: [T, B, H] -> [T, B, O]; see dlgpu.reference.rnn."""
    check_float(output, "output")
    check_ndim(output, 3, "output", "T, B, hidden_size")
    return _linear.linear_forward(output, weight, bias, activation)


def rnn_readout_backward(
    dy: torch.Tensor,
    output: torch.Tensor,
    weight: torch.Tensor,
    y: torch.Tensor | None = None,
    activation: str = "none",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(doutput [T, B, H], dweight [O, H], dbias [O]) of the readout; see dlgpu.reference.rnn."""
    check_float(output, "output")
    check_ndim(output, 3, "output", "T, B, hidden_size")
    return _linear.linear_backward(dy, output, weight, y, activation)
