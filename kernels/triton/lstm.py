"""LSTM (one layer, one direction; variants forget | no_forget | peephole): Triton kernels.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.lstm``
([T, B, (G+1)*H]: the activated gates in gate order, then c_t).

Forward: x W_ih^T + b_ih + b_hh for all T steps is ONE GEMM (``matmul_nt``, fp32 result xp).
Then, for small H (``SEQUENCE_MAX_H``), ONE launch for the whole sequence: a program per 16 batch
rows owns all hidden units and loops over the steps (rows never depend on other rows, so a CTA
barrier between steps is the only synchronisation). Otherwise one launch per step: a program
owns a [BLOCK_B, BLOCK_H] tile of hidden units and computes its slice of h_{t-1} W_hh^T for ALL
G gates (G fp32 accumulators; each h_{t-1} block is loaded once per K step and used against the
G weight tiles W_hh[g*H + j, k]), adds xp[t], and in the epilogue applies the gate
nonlinearities, peepholes (i, f see c_{t-1}; o sees c_t) and the cell update, and writes h_t
into output[t], c_t and the workspace row. No gate tensor is written except the workspace that
the backward needs. Both paths share one tile function, ``_lstm_fwd_tile``.

Precision: gate math in fp32; the cell state is carried between steps in an fp32 buffer (two
rows, ping-pong, so every launch is a pure function of its inputs, which the autotuner's
re-runs need), even for fp16/bf16 storage. The workspace's c_t, like every output, is stored in
the input dtype; c_n is the fp32 state rounded once.

Backward (BPTT): one launch per step, t = T-1 .. 0. A program owns a tile of hidden units; its
prologue is the recurrent GEMM dh_t = dz_{t+1} W_hh (K = G*H) for its tile, its epilogue
computes the G gate pre-activation gradients dz_t (written to a [T, B, G*H] buffer, the input
dtype) and dc_{t-1} (fp32 ping-pong), plus fp32 column sums over its batch rows of dz_t (for db)
and of the peephole products. After the loop dh_0 = dz_0 W_hh, dx, dW_ih, dW_hh are single
``matmul_nt`` GEMMs over all steps and db, dP one column-sum each over the partials.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...reference import lstm as _ref
from ._common import DOT_UPCAST, autotune_configs, cdiv, matmul_nt, prepare, prepare_optional, wrap_triton
from .rnn import (
    SEQ_BLOCK_B,
    SEQ_FP32_CONFIGS,
    SEQ_TC_CONFIGS,
    STEP_BWD_CONFIGS,
    STEP_CONFIGS,
    _sigmoid,
    _tanh,
    bias_sum,
    block_b,
    colsum,
    prune_step_configs,
    step_grid,
    weight_grads,
)

VARIANTS = _ref.VARIANTS
GATES = _ref.GATES

# The forward runs as ONE launch (a program per 16 batch rows looping over the steps) when H is at
# most this, per storage dtype; else one launch per step (see rnn.SEQUENCE_MAX_H: G = 4 times the
# work per step, so half the limits).
SEQUENCE_MAX_H = {torch.float32: 64, torch.float16: 128, torch.bfloat16: 128}

# ----------------------------------------------------------------------- forward
# Per step: 2*B*G*H*H flops over G*H*H weights (L2-resident after the first step: 4 MB fp32 at
# H=512) and ~(3G + 6)*B*H bytes of xp/output/workspace/state. B=64, H=512: 134 MFLOP per step;
# in bf16 that is ~1 us of tensor-core work spread over 4 x 32 programs, in exact fp32 (FMA, no
# tf32) ~2-4 us; with the launch (~5 us) a step costs ~5-10 us, i.e. ~0.5-1 ms for T=100.


@triton.jit
def _gate_dot(acc, hk, w_hh_ptr, row0, rj, kk, H, stride_wn, mj, UPCAST: tl.constexpr):
    """acc += h_{t-1}[:, kk] @ W_hh[row0 + rj, kk]^T: one gate's share of a K step."""
    w = tl.load(w_hh_ptr + (row0 + rj).to(tl.int64)[None, :] * stride_wn + kk[:, None],
                mask=(kk[:, None] < H) & mj[None, :], other=0.0)  # fmt: skip
    if UPCAST:
        w = w.to(tl.float32)
    return acc + tl.dot(hk, w, input_precision="ieee")


@triton.jit
def _lstm_fwd_tile(
    xp_ptr, h_prev_ptr, c_prev_ptr, w_hh_ptr, peep_ptr, h_ptr, c_ptr, ws_ptr,  # see _lstm_fwd_kernel
    rb, rj,  # the tile: batch rows (int64) and hidden units
    B, H, stride_xb, stride_pb, stride_cpb, stride_hb, stride_cb, stride_wsb, stride_wn,
    NO_FORGET: tl.constexpr, PEEPHOLE: tl.constexpr, RECUR: tl.constexpr, HAS_CPREV: tl.constexpr,
    UPCAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """One step for the tile: every gate's slice of h_{t-1} W_hh^T, then the fused gate math."""
    G: tl.constexpr = 3 if NO_FORGET else 4
    GG: tl.constexpr = G - 2  # block index of g (then o); i is block 0, f block 1
    mb, mj = rb < B, rj < H
    mask = mb[:, None] & mj[None, :]
    acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if RECUR:
        rk = tl.arange(0, BLOCK_K)
        for k0 in range(0, H, BLOCK_K):
            kk = k0 + rk
            hk = tl.load(h_prev_ptr + rb[:, None] * stride_pb + kk[None, :],
                         mask=mb[:, None] & (kk[None, :] < H), other=0.0)  # fmt: skip
            if UPCAST:
                hk = hk.to(tl.float32)
            acc_i = _gate_dot(acc_i, hk, w_hh_ptr, 0, rj, kk, H, stride_wn, mj, UPCAST)
            if not NO_FORGET:
                acc_f = _gate_dot(acc_f, hk, w_hh_ptr, H, rj, kk, H, stride_wn, mj, UPCAST)
            acc_g = _gate_dot(acc_g, hk, w_hh_ptr, GG * H, rj, kk, H, stride_wn, mj, UPCAST)
            acc_o = _gate_dot(acc_o, hk, w_hh_ptr, (GG + 1) * H, rj, kk, H, stride_wn, mj, UPCAST)
    xrow = xp_ptr + rb[:, None] * stride_xb + rj[None, :]
    zi = acc_i + tl.load(xrow, mask=mask, other=0.0)
    zg = acc_g + tl.load(xrow + GG * H, mask=mask, other=0.0)
    zo = acc_o + tl.load(xrow + (GG + 1) * H, mask=mask, other=0.0)
    c_prev = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if HAS_CPREV:
        c_prev = tl.load(c_prev_ptr + rb[:, None] * stride_cpb + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    if PEEPHOLE:
        zi += tl.load(peep_ptr + rj, mask=mj, other=0.0).to(tl.float32)[None, :] * c_prev
    i = _sigmoid(zi)
    g = _tanh(zg)
    if NO_FORGET:
        c = c_prev + i * g
    else:
        zf = acc_f + tl.load(xrow + H, mask=mask, other=0.0)
        if PEEPHOLE:
            zf += tl.load(peep_ptr + H + rj, mask=mj, other=0.0).to(tl.float32)[None, :] * c_prev
        f = _sigmoid(zf)
        c = f * c_prev + i * g
    if PEEPHOLE:
        zo += tl.load(peep_ptr + 2 * H + rj, mask=mj, other=0.0).to(tl.float32)[None, :] * c
    o = _sigmoid(zo)
    h = o * _tanh(c)
    dt = ws_ptr.dtype.element_ty
    tl.store(h_ptr + rb[:, None] * stride_hb + rj[None, :], h.to(dt), mask=mask)
    tl.store(c_ptr + rb[:, None] * stride_cb + rj[None, :], c, mask=mask)
    wrow = ws_ptr + rb[:, None] * stride_wsb + rj[None, :]
    tl.store(wrow, i.to(dt), mask=mask)
    if not NO_FORGET:
        tl.store(wrow + H, f.to(dt), mask=mask)
    tl.store(wrow + GG * H, g.to(dt), mask=mask)
    tl.store(wrow + (GG + 1) * H, o.to(dt), mask=mask)
    tl.store(wrow + G * H, c.to(dt), mask=mask)




@triton.autotune(
    configs=autotune_configs(STEP_CONFIGS), key=["B", "H", "BLOCK_B", "NO_FORGET", "RECUR"],
    prune_configs_by={"early_config_prune": prune_step_configs},
)  # fmt: skip
@triton.jit
def _lstm_fwd_kernel(
    xp_ptr,  # [B, G*H] fp32: x_t W_ih^T + b_ih + b_hh, gate blocks in gate order
    h_prev_ptr,  # [B, H] h_{t-1} (output[t-1] or h0); not read when RECUR is False
    c_prev_ptr,  # [B, H] c_{t-1} (fp32 state, or c0 in the input dtype); not read when HAS_CPREV is False
    w_hh_ptr,  # [G*H, H] W_hh, row-major
    peep_ptr,  # [3, H] rows p_i, p_f, p_o (PEEPHOLE only)
    h_ptr,  # [B, H] out: h_t, i.e. output[t]
    c_ptr,  # [B, H] fp32 out: c_t (the other ping-pong row)
    ws_ptr,  # [B, (G+1)*H] out: workspace[t] = [gates | c_t]
    B, H,  # batch, hidden size
    stride_xb, stride_pb, stride_cpb, stride_hb, stride_cb, stride_wsb,  # row strides (unit columns)
    stride_wn,  # row stride of W_hh
    NO_FORGET: tl.constexpr,  # gates i, g, o (G = 3) instead of i, f, g, o (G = 4)
    PEEPHOLE: tl.constexpr,  # diagonal peepholes p_i, p_f (on c_{t-1}) and p_o (on c_t)
    RECUR: tl.constexpr,  # h_{t-1} is nonzero (False at t = 0 without h0: skip the GEMM)
    HAS_CPREV: tl.constexpr,  # c_{t-1} is nonzero (False at t = 0 without c0)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    _lstm_fwd_tile(xp_ptr, h_prev_ptr, c_prev_ptr, w_hh_ptr, peep_ptr, h_ptr, c_ptr, ws_ptr, rb, rj,
                   B, H, stride_xb, stride_pb, stride_cpb, stride_hb, stride_cb, stride_wsb, stride_wn,
                   NO_FORGET, PEEPHOLE, RECUR, HAS_CPREV, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip


# The whole sequence in one launch, for small H (SEQUENCE_MAX_H): per step the program re-reads
# W_hh (G*H*H, from L2) and does 2*16*G*H*H flops; at H=128 in bf16 that is 128 KB and 2 MFLOP,
# ~1-2 us on one SM, less than one launch of the per-step path. Only cdiv(B, 16) SMs work.
@triton.jit
def _lstm_fwd_seq_kernel(
    xp_ptr,  # [T, B, G*H] fp32: x_t W_ih^T + b_ih + b_hh
    h0_ptr,  # [B, H] h0; read when HAS_H0
    c0_ptr,  # [B, H] c0; read when HAS_C0
    w_hh_ptr,  # [G*H, H] W_hh, row-major
    peep_ptr,  # [3, H] rows p_i, p_f, p_o (PEEPHOLE only)
    out_ptr,  # [T, B, H] out: h_1..h_T
    c_ptr,  # [2, B, H] fp32 out: the cell state, c_t in row (t + 1) % 2
    ws_ptr,  # [T, B, (G+1)*H] out: the workspace
    T, B, H,  # steps, batch, hidden size
    stride_wn,  # row stride of W_hh
    NO_FORGET: tl.constexpr,  # gates i, g, o (G = 3) instead of i, f, g, o (G = 4)
    PEEPHOLE: tl.constexpr,  # diagonal peepholes
    HAS_H0: tl.constexpr,  # h0 given (else zeros: step 0 skips the GEMM)
    HAS_C0: tl.constexpr,  # c0 given (else zeros)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # One program owns all hidden units of its batch rows, and those rows depend on no others:
    # no grid-wide dependency, only this CTA's own stores of step t-1 to wait for (the barrier).
    G: tl.constexpr = 3 if NO_FORGET else 4
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.arange(0, BLOCK_H)
    bh = B * H  # elements of one [B, H] step (well under 2^31)
    for j0 in range(0, H, BLOCK_H):
        _lstm_fwd_tile(xp_ptr, h0_ptr, c0_ptr, w_hh_ptr, peep_ptr, out_ptr, c_ptr + bh, ws_ptr, rb, j0 + rh,
                       B, H, G * H, H, H, H, H, (G + 1) * H, stride_wn,
                       NO_FORGET, PEEPHOLE, HAS_H0, HAS_C0, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip
    for t in range(1, T):
        tl.debug_barrier()  # h_{t-1} and c_{t-1}, stored by every warp of this program, are read below
        t64 = tl.cast(t, tl.int64)
        for j0 in range(0, H, BLOCK_H):
            _lstm_fwd_tile(xp_ptr + t64 * (G * bh), out_ptr + (t64 - 1) * bh, c_ptr + (t % 2) * bh, w_hh_ptr,
                           peep_ptr, out_ptr + t64 * bh, c_ptr + ((t + 1) % 2) * bh, ws_ptr + t64 * ((G + 1) * bh),
                           rb, j0 + rh, B, H, G * H, H, H, H, H, (G + 1) * H, stride_wn,
                           NO_FORGET, PEEPHOLE, True, True, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)  # fmt: skip


_SEQ_KEY = ["B", "H", "NO_FORGET", "PEEPHOLE"]
_lstm_fwd_seq_tc = triton.autotune(configs=autotune_configs(SEQ_TC_CONFIGS), key=_SEQ_KEY)(_lstm_fwd_seq_kernel)
_lstm_fwd_seq_fp32 = triton.autotune(configs=autotune_configs(SEQ_FP32_CONFIGS), key=_SEQ_KEY)(_lstm_fwd_seq_kernel)


# ---------------------------------------------------------------------- backward
# Per step: 2*B*G*H*H flops (dz_{t+1} W_hh, the prologue, K = G*H) and ~(2G + 6)*B*H bytes;
# latency-bound like the forward step. The partials add (G [+3])*H fp32 per batch block.


@triton.autotune(
    configs=autotune_configs(STEP_BWD_CONFIGS), key=["B", "H", "BLOCK_B", "NO_FORGET", "RECUR"],
    prune_configs_by={"early_config_prune": prune_step_configs},
)  # fmt: skip
@triton.jit
def _lstm_bwd_kernel(
    dz_next_ptr,  # [B, G*H] dz_{t+1}; read when RECUR
    w_hh_ptr,  # [G*H, H] W_hh, row-major
    dh_n_ptr,  # [B, H] d_h_n; read when not RECUR and HAS_DHN (the last step)
    d_out_ptr,  # [B, H] d_output[t]; read when HAS_DOUT
    dc_ptr,  # [B, H] dc_t flowing back (fp32 state, or d_c_n); read when HAS_DC
    ws_ptr,  # [B, (G+1)*H] workspace[t] = [gates | c_t]
    c_prev_ptr,  # [B, H] c_{t-1} (workspace[t-1]'s c block, or c0); read when HAS_CPREV
    peep_ptr,  # [3, H] rows p_i, p_f, p_o (PEEPHOLE only)
    dz_ptr,  # [B, G*H] out: dz_t, the gate pre-activation gradients in gate order
    dc_prev_ptr,  # [B, H] fp32 out: dc_{t-1} (the other ping-pong row)
    part_ptr,  # [G*H (+3*H)] fp32 out: this batch block's sums over b of dz_t (then dz_i c_{t-1},
    #            dz_f c_{t-1}, dz_o c_t for the peephole gradients)
    B, H,  # batch, hidden size
    stride_nb, stride_db, stride_ob, stride_dcb, stride_wsb, stride_cpb, stride_zb, stride_dpb,  # row strides
    stride_wn,  # row stride of W_hh
    stride_pb,  # stride between the partial rows of consecutive batch blocks
    NO_FORGET: tl.constexpr,  # gates i, g, o (G = 3) instead of i, f, g, o (G = 4)
    PEEPHOLE: tl.constexpr,  # diagonal peepholes
    RECUR: tl.constexpr,  # dh comes from dz_{t+1} W_hh (False at t = T-1: from d_h_n)
    HAS_DHN: tl.constexpr,  # d_h_n given
    HAS_DOUT: tl.constexpr,  # d_output given
    HAS_DC: tl.constexpr,  # dc_t is nonzero (False at t = T-1 without d_c_n)
    HAS_CPREV: tl.constexpr,  # c_{t-1} is nonzero (False at t = 0 without c0)
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    G: tl.constexpr = 3 if NO_FORGET else 4
    GG: tl.constexpr = G - 2  # block index of g (then o)
    pid_b = tl.program_id(0)
    rb = pid_b.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mj = rb < B, rj < H
    mask = mb[:, None] & mj[None, :]
    dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if RECUR:
        rk = tl.arange(0, BLOCK_K)
        for k0 in range(0, G * H, BLOCK_K):
            kk = k0 + rk
            a = tl.load(dz_next_ptr + rb[:, None] * stride_nb + kk[None, :],
                        mask=mb[:, None] & (kk[None, :] < G * H), other=0.0)  # fmt: skip
            w = tl.load(w_hh_ptr + kk.to(tl.int64)[:, None] * stride_wn + rj[None, :],
                        mask=(kk[:, None] < G * H) & mj[None, :], other=0.0)  # fmt: skip
            if UPCAST:
                a = a.to(tl.float32)
                w = w.to(tl.float32)
            dh += tl.dot(a, w, input_precision="ieee")
    elif HAS_DHN:
        dh += tl.load(dh_n_ptr + rb[:, None] * stride_db + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_DOUT:
        dh += tl.load(d_out_ptr + rb[:, None] * stride_ob + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    dc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if HAS_DC:
        dc += tl.load(dc_ptr + rb[:, None] * stride_dcb + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    c_prev = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if HAS_CPREV:
        c_prev = tl.load(c_prev_ptr + rb[:, None] * stride_cpb + rj[None, :], mask=mask, other=0.0).to(tl.float32)
    wrow = ws_ptr + rb[:, None] * stride_wsb + rj[None, :]
    i = tl.load(wrow, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(wrow + GG * H, mask=mask, other=0.0).to(tl.float32)
    o = tl.load(wrow + (GG + 1) * H, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(wrow + G * H, mask=mask, other=0.0).to(tl.float32)
    tc = _tanh(c)
    dzo = dh * tc * o * (1.0 - o)
    dc += dh * o * (1.0 - tc * tc)
    if PEEPHOLE:
        dc += dzo * tl.load(peep_ptr + 2 * H + rj, mask=mj, other=0.0).to(tl.float32)[None, :]
    dzi = dc * g * i * (1.0 - i)
    dzg = dc * i * (1.0 - g * g)
    zrow = dz_ptr + rb[:, None] * stride_zb + rj[None, :]
    prow = part_ptr + pid_b * stride_pb + rj
    dt = dz_ptr.dtype.element_ty
    if NO_FORGET:
        dc_prev = dc
    else:
        f = tl.load(wrow + H, mask=mask, other=0.0).to(tl.float32)
        dzf = tl.where(mask, dc * c_prev * f * (1.0 - f), 0.0)
        dc_prev = dc * f
        tl.store(zrow + H, dzf.to(dt), mask=mask)
        tl.store(prow + H, tl.sum(dzf, axis=0), mask=mj)
    dzi = tl.where(mask, dzi, 0.0)  # padding rows must not reach the partial sums
    dzg = tl.where(mask, dzg, 0.0)
    dzo = tl.where(mask, dzo, 0.0)
    if PEEPHOLE:
        dc_prev += dzi * tl.load(peep_ptr + rj, mask=mj, other=0.0).to(tl.float32)[None, :]
        dc_prev += dzf * tl.load(peep_ptr + H + rj, mask=mj, other=0.0).to(tl.float32)[None, :]
        tl.store(prow + G * H, tl.sum(dzi * c_prev, axis=0), mask=mj)
        tl.store(prow + (G + 1) * H, tl.sum(dzf * c_prev, axis=0), mask=mj)
        tl.store(prow + (G + 2) * H, tl.sum(dzo * c, axis=0), mask=mj)
    tl.store(zrow, dzi.to(dt), mask=mask)
    tl.store(zrow + GG * H, dzg.to(dt), mask=mask)
    tl.store(zrow + (GG + 1) * H, dzo.to(dt), mask=mask)
    tl.store(prow, tl.sum(dzi, axis=0), mask=mj)
    tl.store(prow + GG * H, tl.sum(dzg, axis=0), mask=mj)
    tl.store(prow + (GG + 1) * H, tl.sum(dzo, axis=0), mask=mj)
    tl.store(dc_prev_ptr + rb[:, None] * stride_dpb + rj[None, :], dc_prev, mask=mask)


# ---------------------------------------------------------------------- wrappers


def lstm_forward(
    x: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
    weight_peephole: torch.Tensor | None = None,
    variant: str = "forget",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the LSTM over the sequence (equations in dlgpu.reference.lstm).

    Returns (output [T, B, H], h_n [B, H], c_n [B, H], workspace [T, B, (G+1)*H]).
    """
    T, B, I, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole, variant)
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    h0, c0 = prepare_optional(h0, "h0", dt, dev), prepare_optional(c0, "c0", dt, dev)
    peep = prepare_optional(weight_peephole, "weight_peephole", dt, dev)
    bias = bias_sum(prepare_optional(bias_ih, "bias_ih", dt, dev), prepare_optional(bias_hh, "bias_hh", dt, dev))
    xp = torch.empty((T, B, G * H), dtype=torch.float32, device=dev)  # fp32: pre-activations round once
    matmul_nt(x.view(T * B, I), w_ih, bias, out=xp.view(T * B, G * H))
    output = torch.empty((T, B, H), dtype=dt, device=dev)
    workspace = torch.empty((T, B, (G + 1) * H), dtype=dt, device=dev)
    c_state = torch.empty((2, B, H), dtype=torch.float32, device=dev)  # c_t in row (t+1) % 2
    no_forget, peephole = variant == "no_forget", variant == "peephole"
    if H <= SEQUENCE_MAX_H.get(dt, 0):
        seq = _lstm_fwd_seq_fp32 if dt == torch.float32 else _lstm_fwd_seq_tc
        wrap_triton(seq)[(cdiv(B, SEQ_BLOCK_B),)](
            xp, h0 if h0 is not None else xp, c0 if c0 is not None else xp, w_hh, peep if peep is not None else xp,
            output, c_state, workspace,
            T, B, H, w_hh.stride(0),
            NO_FORGET=no_forget, PEEPHOLE=peephole, HAS_H0=h0 is not None, HAS_C0=c0 is not None,
            UPCAST=DOT_UPCAST, BLOCK_B=SEQ_BLOCK_B,
        )  # fmt: skip
        return output, output[-1].clone(), c_state[T % 2].to(dt, copy=True), workspace
    bb = block_b(B)
    grid = step_grid(B, H, bb)
    for t in range(T):
        h_prev = h0 if t == 0 else output[t - 1]
        c_prev = c0 if t == 0 else c_state[t % 2]
        wrap_triton(_lstm_fwd_kernel)[grid](
            xp[t], h_prev if h_prev is not None else xp[t], c_prev if c_prev is not None else xp[t], w_hh,
            peep if peep is not None else xp[t],
            output[t], c_state[(t + 1) % 2], workspace[t],
            B, H,
            G * H, H, H, H, H, (G + 1) * H, w_hh.stride(0),
            NO_FORGET=no_forget, PEEPHOLE=peephole,
            RECUR=h_prev is not None, HAS_CPREV=c_prev is not None, UPCAST=DOT_UPCAST, BLOCK_B=bb,
        )  # fmt: skip
    return output, output[-1].clone(), c_state[T % 2].to(dt, copy=True), workspace


def lstm_backward(
    d_output: torch.Tensor | None,
    d_h_n: torch.Tensor | None,
    d_c_n: torch.Tensor | None,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    output: torch.Tensor,
    workspace: torch.Tensor,
    weight_peephole: torch.Tensor | None = None,
    variant: str = "forget",
) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None,
]:
    """Backpropagation through time for ``lstm_forward`` (equations in dlgpu.reference.lstm).

    Returns (dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, dweight_peephole or None).
    """
    T, B, _, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, None, None, weight_peephole, variant)
    _ref._check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _ref._check_saved(workspace, (T, B, (G + 1) * H), "workspace", x.dtype, f"T, B, ({G}+1)*hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    _ref._check_grad(d_c_n, (B, H), "d_c_n", x.dtype, "B, hidden_size")
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    output, workspace = prepare(output, "output", dt, dev), prepare(workspace, "workspace", dt, dev)
    h0, c0 = prepare_optional(h0, "h0", dt, dev), prepare_optional(c0, "c0", dt, dev)
    peep = prepare_optional(weight_peephole, "weight_peephole", dt, dev)
    d_output = prepare_optional(d_output, "d_output", dt, dev)
    d_h_n, d_c_n = prepare_optional(d_h_n, "d_h_n", dt, dev), prepare_optional(d_c_n, "d_c_n", dt, dev)
    peephole = variant == "peephole"
    bb = block_b(B)
    nb = cdiv(B, bb)
    n_part = (G + 3) * H if peephole else G * H  # db blocks, then dp_i, dp_f, dp_o
    dz = torch.empty((T, B, G * H), dtype=dt, device=dev)
    part = torch.empty((T, nb, n_part), dtype=torch.float32, device=dev)
    dc_state = torch.empty((2, B, H), dtype=torch.float32, device=dev)  # dc_{t-1} in row t % 2
    grid = step_grid(B, H, bb)
    for t in range(T - 1, -1, -1):
        recur = t < T - 1
        dc_in = d_c_n if not recur else dc_state[(t + 1) % 2]
        c_prev = c0 if t == 0 else workspace[t - 1, :, G * H :]
        wrap_triton(_lstm_bwd_kernel)[grid](
            dz[t + 1] if recur else dz[t], w_hh,
            d_h_n if d_h_n is not None else dz[t], d_output[t] if d_output is not None else dz[t],
            dc_in if dc_in is not None else dz[t], workspace[t], c_prev if c_prev is not None else dz[t],
            peep if peep is not None else dz[t],
            dz[t], dc_state[t % 2], part[t],
            B, H,
            G * H, H, H, H, (G + 1) * H, H if t == 0 else (G + 1) * H, G * H, H,
            w_hh.stride(0), n_part,
            NO_FORGET=variant == "no_forget", PEEPHOLE=peephole, RECUR=recur,
            HAS_DHN=d_h_n is not None, HAS_DOUT=d_output is not None, HAS_DC=dc_in is not None,
            HAS_CPREV=c_prev is not None, UPCAST=DOT_UPCAST, BLOCK_B=bb,
        )  # fmt: skip
    dh0 = matmul_nt(dz[0], w_hh.t())  # B,GH @ GH,H
    dc0 = dc_state[0].to(dt, copy=True)
    dx, dw_ih, dw_hh = weight_grads(dz, x, h0, output, w_ih)
    part2 = part.view(T * nb, n_part)
    db = colsum(part2[:, : G * H], dt)
    dp = colsum(part2[:, G * H :], dt).view(3, H) if peephole else None
    return dx, dh0, dc0, dw_ih, dw_hh, db, db.clone(), dp
