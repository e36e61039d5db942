"""GRU (one layer, one direction; variants cudnn | cho): Triton kernels.

Same functions, arguments, results, errors and workspace layouts as ``dlgpu.reference.gru``
(cudnn [T, B, 4H] = r, z, n, hn; cho [T, B, 3H] = r, z, n along the last axis).

Forward. x W_ih^T + b_ih for all steps is one GEMM up front (``matmul_nt``, fp32 result xp
[T, B, G*H] so low-precision inputs lose nothing before the gates). Then per step:

* cudnn: ONE launch. A program owns BLOCK_H hidden units of a BLOCK_B batch block, runs the
  recurrent GEMM h_{t-1} W_hh^T for its units of all three gates (three accumulators sharing each
  h_{t-1} chunk) and finishes the step in the epilogue: b_hh, xp[t], r, z, hn, n, h_t, workspace.
* cho (and the MGU, ``mgu.py``: the same "reset-gated" cell with one gate in both roles): the
  candidate needs W_hn (r * h_{t-1}), which depends on r from the first product. Two launches
  (gates and r * h_{t-1} to a [B, H] scratch; then candidate and h_t), or for H <= _FUSED_MAX_H
  ONE: a program owns a batch block and ALL hidden units, loops over them for the gates, barriers
  (its r * h rows are then visible to all its threads) and loops again for the candidate. Batch
  rows are independent, so no grid-wide sync is needed; the limit is throughput (B / BLOCK_B
  programs only), not correctness.

Backward (BPTT). Per step one launch (cho/MGU: two, or one fused as above) computes dL/dh_t =
d_output[t] + carry + (step t+1's gate gradients) W_hh in its prologue -- step t+1's recurrent
GEMM fused with step t's gate math -- and writes step t's pre-activation gradients into one
[T, B, .] buffer and the elementwise part of dL/dh_{t-1} (fp32) into a ping-pong carry. After the
loop: dh0 (one small launch); dx = dpre W_ih, dW_ih = dpre^T X, dW_hh = dpre^T [h0; output[:-1]]
(cho/MGU candidate rows: against r * h_{t-1}, saved per step) as single GEMMs over all T*B rows;
the bias gradients as column sums. Per-step kernels only read what earlier launches wrote, so
the autotuner may re-run any of them. fp16/bf16 storage, fp32 accumulation and gate math; fp32
inputs use exact IEEE products.

Napkin math, H100, T = 100, B = 64, I = 256, H = 512, bf16: a cudnn step does 2*B*3H*H = 0.1 GFLOP
(~0.2 us of tensor cores) and reads W_hh (1.5 MB, L2-resident after step 0) once per batch block:
~1-2 us of L2 traffic, so a step costs its launch latency (~3-5 us, or the host's ~5-10 us per
Triton launch if that is slower): ~0.5-1 ms forward, ~1-2 ms backward (cho two-launch: x2). The
GEMMs over all steps (2*T*B*3H*I = 5 GFLOP, 2*T*B*3H*H = 10 GFLOP) take ~10-30 us each.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...reference import gru as _ref
from ...reference._validate import check_choice
from ._common import DOT_UPCAST, INTERPRET, autotune_configs, cdiv, matmul_nt, prepare, prepare_optional, wrap_triton

VARIANTS = _ref.VARIANTS
GATES = _ref.GATES
WORKSPACE_GATES = _ref.WORKSPACE_GATES

# Largest H for which the reset-gated cells (cho, MGU) take the one-launch-per-step path. Above
# it the B / BLOCK_B programs of that path leave most SMs idle and two launches of
# (B / BLOCK_B) * (H / BLOCK_H) programs are faster. Private: the tests monkeypatch it to force a path.
_FUSED_MAX_H = 256

# Tiles of the per-step kernels, each free of register spills for sm_90 in its dtypes (ptxas for
# sm_90, Triton 3.9 and 3.6; the recorded launches plus 16-divisible B, H). fp32 uses exact products:
# an FMA dot holding (rows + cols) per thread x BLOCK_K operands in registers, next to the gate math.
# The cudnn cell's kernels and dh0 (three accumulators at most): one list for every dtype; dropped
# 64x32x64 w4 (0.2-1 KB fp32, 56 B fp16), 16x64x64 w4 (0.2-0.4 KB fp32) and 32x32x64 w8 (Triton
# 3.6 holds its fp32 backward at 64 registers and spills 4 B once B and H are 16-divisible; with
# maxnreg=255 it and the forward spill 64-104 B at 255). Worst kept 255 / 255 registers (3.9 / 3.6),
# the fp32 64x64x16 bwd tile.
_STEP_CONFIGS = [
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 32, "BLOCK_K": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_B": 32, "BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 32, "BLOCK_H": 64, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 64, "BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 64, "BLOCK_H": 64, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
]
# The reset-gated kernels (cho, MGU) keep the gates, the candidate and their operands of a fused
# step live at once: 16x32x32 with 4 warps (the old first config) spilled 16-40 B in fp32, anything
# wider or with 64-wide K steps 0.1-1.7 KB, in fp16/bf16 too. fp16/bf16 (wgmma) keep BLOCK_K = 32/64
# with 8 warps above 16x32, worst 253 / 238 registers; fp32 only BLOCK_K = 16, worst 254 / 249.
_RESET_TC_CONFIGS = [
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 32, "BLOCK_K": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_B": 32, "BLOCK_H": 32, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 64, "BLOCK_K": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_B": 32, "BLOCK_H": 32, "BLOCK_K": 64}, num_warps=8, num_stages=3),
]
_RESET_FP32_CONFIGS = [
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 32, "BLOCK_K": 16}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_B": 32, "BLOCK_H": 32, "BLOCK_K": 16}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_B": 16, "BLOCK_H": 64, "BLOCK_K": 16}, num_warps=8, num_stages=2),
]


# ----------------------------------------------------------------- tile helpers


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))  # exp overflows to inf for x << 0: 1 / inf = 0, no NaN


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]: never overflows
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _ld(ptr, rb, rh, stride, B, H):
    """[BLOCK_B, BLOCK_H] fp32 tile of a row-major [B, stride] matrix at rows rb, columns rh < H."""
    mask = (rb[:, None] < B) & (rh[None, :] < H)
    return tl.load(ptr + rb[:, None] * stride + rh[None, :], mask=mask, other=0.0).to(tl.float32)


# Triton 3.9's interpreter converts fp32 -> bf16 by truncation (the GPU rounds to nearest even):
# a biased error of up to 1 ulp in every stored bf16 value. Under the interpreter, _cvt rounds first.
_ROUND_BF16 = tl.constexpr(INTERPRET)


@triton.jit
def _cvt(val, ptr):
    """val (fp32) in ptr's element type, rounded to nearest even."""
    if _ROUND_BF16:
        if ptr.dtype.element_ty == tl.bfloat16:
            bits = val.to(tl.uint32, bitcast=True)
            bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
            val = tl.where(val == val, bits.to(tl.float32, bitcast=True), val)  # NaN stays NaN
    return val.to(ptr.dtype.element_ty)


@triton.jit
def _st(ptr, val, rb, rh, stride, B, H):
    mask = (rb[:, None] < B) & (rh[None, :] < H)
    tl.store(ptr + rb[:, None] * stride + rh[None, :], _cvt(val, ptr), mask=mask)


@triton.jit
def _bias(ptr, rh, H):
    return tl.load(ptr + rh, mask=rh < H, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _tile_mm(acc, a_ptr, stride_a, w_ptr, stride_wk, stride_wn, rb, rn, B, N, K,
             UPCAST: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """acc + A[rb, :K] @ W[:K, rn]; A row-major with row stride stride_a, W given by strides
    (stride_wk = 1, stride_wn = K reads a row-major [N, K] weight transposed)."""
    rk = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(a_ptr + rb[:, None] * stride_a + kk[None, :], mask=(rb[:, None] < B) & (kk[None, :] < K), other=0.0)
        w = tl.load(w_ptr + kk[:, None] * stride_wk + rn[None, :] * stride_wn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)  # fmt: skip
        if UPCAST:
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc += tl.dot(a, w, input_precision="ieee")
    return acc


@triton.jit
def _recurrent_grad(d_ptr, stride_d, w_ptr, rb, rh, B, H, NG: tl.constexpr, SHIFT: tl.constexpr, UPCAST: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """Columns rh of sum_g d_g W_hh[g*H:(g+1)*H] over the first NG gate blocks of d; gate 2 sits at
    column (2 + SHIFT) H (the cudnn gradient buffer keeps da_n before dhn)."""
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for gi in tl.static_range(NG):
        col = (gi + (gi // 2) * SHIFT) * H
        acc = _tile_mm(acc, d_ptr + col, stride_d, w_ptr + gi * H * H, H, 1, rb, rh, B, H, H, UPCAST, BLOCK_K)
    return acc


# ----------------------------------------------------------------- cudnn forward
# Per step: 2*B*3H*H flops, W_hh (3H^2 elements) from L2, B*(3H fp32 + 5H) elements of I/O.


@triton.autotune(configs=autotune_configs(_STEP_CONFIGS), key=["B", "H"])
@triton.jit
def _gru_fwd_kernel(
    xp_ptr,  # [B, 3H] fp32: x_t W_ih^T + b_ih
    hprev_ptr,  # [B, H] h_{t-1}
    w_ptr,  # [3H, H] weight_hh (W_hr; W_hz; W_hn)
    bhh_ptr,  # [3H] bias_hh, or a dummy when HAS_BHH is False
    out_ptr,  # [B, H] out: h_t
    ws_ptr,  # [B, 4H] out: r, z, n, hn
    B, H,  # batch, hidden size
    HAS_BHH: tl.constexpr,  # add bias_hh
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    rk = tl.arange(0, BLOCK_K)
    acc_r = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    acc_z = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    acc_n = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):  # one h_{t-1} chunk feeds all three gates
        kk = k0 + rk
        a = tl.load(hprev_ptr + rb[:, None] * H + kk[None, :], mask=(rb[:, None] < B) & (kk[None, :] < H), other=0.0)
        w_p = w_ptr + rh[None, :] * H + kk[:, None]  # W^T tile [BLOCK_K, BLOCK_H]
        w_m = (kk[:, None] < H) & (rh[None, :] < H)
        w_r = tl.load(w_p, mask=w_m, other=0.0)
        w_z = tl.load(w_p + H * H, mask=w_m, other=0.0)
        w_n = tl.load(w_p + 2 * H * H, mask=w_m, other=0.0)
        if UPCAST:
            a, w_r, w_z, w_n = a.to(tl.float32), w_r.to(tl.float32), w_z.to(tl.float32), w_n.to(tl.float32)
        acc_r += tl.dot(a, w_r, input_precision="ieee")
        acc_z += tl.dot(a, w_z, input_precision="ieee")
        acc_n += tl.dot(a, w_n, input_precision="ieee")
    if HAS_BHH:
        acc_r += _bias(bhh_ptr, rh, H)
        acc_z += _bias(bhh_ptr + H, rh, H)
        acc_n += _bias(bhh_ptr + 2 * H, rh, H)
    r = _sigmoid(_ld(xp_ptr, rb, rh, 3 * H, B, H) + acc_r)
    z = _sigmoid(_ld(xp_ptr + H, rb, rh, 3 * H, B, H) + acc_z)
    n = _tanh(_ld(xp_ptr + 2 * H, rb, rh, 3 * H, B, H) + r * acc_n)
    hp = _ld(hprev_ptr, rb, rh, H, B, H)
    _st(out_ptr, n + z * (hp - n), rb, rh, H, B, H)
    _st(ws_ptr, r, rb, rh, 4 * H, B, H)
    _st(ws_ptr + H, z, rb, rh, 4 * H, B, H)
    _st(ws_ptr + 2 * H, n, rb, rh, 4 * H, B, H)
    _st(ws_ptr + 3 * H, acc_n, rb, rh, 4 * H, B, H)


# ------------------------------------------------------ reset-gated (cho, MGU) forward
# NG sigmoid gates (cho: r, z; MGU: f) then the candidate; gate 0 multiplies h_{t-1} before the
# candidate's product, gate U interpolates h_t = h + u (c - h). Per step 2*B*(NG+1)H*H flops.


@triton.jit
def _reset_fwd_kernel(
    xp_ptr,  # [B, (NG+1)H] fp32: x_t W_ih^T + b_ih
    hprev_ptr,  # [B, H] h_{t-1}
    w_ptr,  # [(NG+1)H, H] weight_hh
    bhh_ptr,  # [(NG+1)H] bias_hh, or a dummy when HAS_BHH is False
    ws_ptr,  # [B, (NG+1)H] out: the gate blocks (phase 1), the candidate block (phase 2)
    qh_ptr,  # [B, H] q * h_{t-1}: out of phase 1, in of phase 2
    out_ptr,  # [B, H] out: h_t
    B, H,  # batch, hidden size
    NG: tl.constexpr,  # number of sigmoid gates (cho 2, MGU 1)
    U: tl.constexpr,  # index of the gate interpolating h_t (cho 1, MGU 0)
    PHASE: tl.constexpr,  # 1: gates of tile program_id(0); 2: its candidate; 0: both, every tile (fused)
    HAS_BHH: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row = (NG + 1) * H  # row stride of xp and the workspace
    if PHASE == 0:
        # One program = one batch block, all hidden units: its qh rows and gates are complete
        # after the barrier, so the dependent second product needs no second launch.
        lo = 0
        hi = tl.cdiv(H, BLOCK_H)
    else:
        lo = tl.program_id(0)
        hi = lo + 1
    if PHASE != 2:  # the sigmoid gates, and q * h_{t-1} (q = gate 0)
        for pid_h in range(lo, hi):
            rh = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
            for gi in tl.static_range(NG):
                acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
                acc = _tile_mm(acc, hprev_ptr, H, w_ptr + gi * H * H, 1, H, rb, rh, B, H, H, UPCAST, BLOCK_K)
                if HAS_BHH:
                    acc += _bias(bhh_ptr + gi * H, rh, H)
                gate = _sigmoid(_ld(xp_ptr + gi * H, rb, rh, row, B, H) + acc)
                _st(ws_ptr + gi * H, gate, rb, rh, row, B, H)
                if gi == 0:
                    _st(qh_ptr, gate * _ld(hprev_ptr, rb, rh, H, B, H), rb, rh, H, B, H)
    if PHASE == 0:
        tl.debug_barrier()
    if PHASE != 1:  # c = tanh(xp_c + (q h) W_hc^T + b_hc), h_t = h + u (c - h)
        for pid_h in range(lo, hi):
            rh = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
            acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
            acc = _tile_mm(acc, qh_ptr, H, w_ptr + NG * H * H, 1, H, rb, rh, B, H, H, UPCAST, BLOCK_K)
            if HAS_BHH:
                acc += _bias(bhh_ptr + NG * H, rh, H)
            c = _tanh(_ld(xp_ptr + NG * H, rb, rh, row, B, H) + acc)
            u = _ld(ws_ptr + U * H, rb, rh, row, B, H)
            hp = _ld(hprev_ptr, rb, rh, H, B, H)
            _st(ws_ptr + NG * H, c, rb, rh, row, B, H)
            _st(out_ptr, hp + u * (c - hp), rb, rh, H, B, H)


_reset_fwd_tc = triton.autotune(configs=autotune_configs(_RESET_TC_CONFIGS), key=["B", "H", "NG", "PHASE"])(
    _reset_fwd_kernel
)
_reset_fwd_fp32 = triton.autotune(configs=autotune_configs(_RESET_FP32_CONFIGS), key=["B", "H", "NG", "PHASE"])(
    _reset_fwd_kernel
)


# ----------------------------------------------------------------- cudnn backward
# Per step: 2*B*3H*H flops (step t+1's gradients times W_hh), B*(4H in + 4H out + 4H) elements.


@triton.autotune(configs=autotune_configs(_STEP_CONFIGS), key=["B", "H"])
@triton.jit
def _gru_bwd_kernel(
    dout_ptr,  # [B, H] d_output[t], or a dummy when HAS_DOUT is False
    carry_ptr,  # [B, H] fp32: the part of dL/dh_t not through W_hh (d_h_n at t = T-1)
    dnext_ptr,  # [B, 4H] step t+1's (da_r, da_z, da_n, dhn), or a dummy when HAS_NEXT is False
    w_ptr,  # [3H, H] weight_hh
    ws_ptr,  # [B, 4H] step t's r, z, n, hn
    hprev_ptr,  # [B, H] h_{t-1}
    dgate_ptr,  # [B, 4H] out: step t's (da_r, da_z, da_n, dhn)
    carry_out_ptr,  # [B, H] fp32 out: dh_t z, the elementwise part of dL/dh_{t-1}
    B, H,  # batch, hidden size
    HAS_DOUT: tl.constexpr, HAS_NEXT: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    g = _ld(carry_ptr, rb, rh, H, B, H)
    if HAS_DOUT:
        g += _ld(dout_ptr, rb, rh, H, B, H)
    if HAS_NEXT:  # (da_r, da_z, dhn)_{t+1} W_hh: skip the da_n block
        g += _recurrent_grad(dnext_ptr, 4 * H, w_ptr, rb, rh, B, H, 3, 1, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)
    r = _ld(ws_ptr, rb, rh, 4 * H, B, H)
    z = _ld(ws_ptr + H, rb, rh, 4 * H, B, H)
    n = _ld(ws_ptr + 2 * H, rb, rh, 4 * H, B, H)
    hn = _ld(ws_ptr + 3 * H, rb, rh, 4 * H, B, H)
    hp = _ld(hprev_ptr, rb, rh, H, B, H)
    da_n = (g - g * z) * (1.0 - n * n)
    _st(dgate_ptr, da_n * hn * r * (1.0 - r), rb, rh, 4 * H, B, H)
    _st(dgate_ptr + H, g * (hp - n) * z * (1.0 - z), rb, rh, 4 * H, B, H)
    _st(dgate_ptr + 2 * H, da_n, rb, rh, 4 * H, B, H)
    _st(dgate_ptr + 3 * H, da_n * r, rb, rh, 4 * H, B, H)
    _st(carry_out_ptr, g * z, rb, rh, H, B, H)


# -------------------------------------------------------- reset-gated backward
# Phase 1 (candidate): dh_t, da_c, the update gate's gradient. Phase 2 (reset gate): d(q h) =
# da_c W_hc needs every unit's da_c. Per step 2*B*(NG+1)H*H flops, as in the forward.


@triton.jit
def _reset_bwd_kernel(
    dout_ptr,  # [B, H] d_output[t], or a dummy when HAS_DOUT is False
    carry_ptr,  # [B, H] fp32: the part of dL/dh_t not through W_hh (d_h_n at t = T-1)
    dnext_ptr,  # [B, (NG+1)H] step t+1's pre-activation gradients, or a dummy when HAS_NEXT is False
    w_ptr,  # [(NG+1)H, H] weight_hh
    ws_ptr,  # [B, (NG+1)H] step t's gates and candidate
    hprev_ptr,  # [B, H] h_{t-1}
    dpre_ptr,  # [B, (NG+1)H] out: da_c and (U > 0) da_u in phase 1, da_q in phase 2 (which reads all da_c)
    dpart_ptr,  # [B, H] fp32 (U == 0): dh_t (c - h_{t-1}), the interpolation part of du, phase 1 -> 2
    mid_ptr,  # [B, H] fp32: dh_t (1 - u), phase 1 -> 2
    carry_out_ptr,  # [B, H] fp32 out: the part of dL/dh_{t-1} not through W_hh
    qh_ptr,  # [B, H] out: q * h_{t-1}, the operand of dW_hc
    B, H,  # batch, hidden size
    NG: tl.constexpr, U: tl.constexpr,  # as in _reset_fwd_kernel
    PHASE: tl.constexpr,  # 1: candidate part of tile program_id(0); 2: reset-gate part; 0: both, every tile
    HAS_DOUT: tl.constexpr, HAS_NEXT: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row = (NG + 1) * H
    if PHASE == 0:
        lo = 0
        hi = tl.cdiv(H, BLOCK_H)
    else:
        lo = tl.program_id(0)
        hi = lo + 1
    if PHASE != 2:  # dh_t, da_c, the update gate's gradient
        for pid_h in range(lo, hi):
            rh = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
            g = _ld(carry_ptr, rb, rh, H, B, H)
            if HAS_DOUT:
                g += _ld(dout_ptr, rb, rh, H, B, H)
            if HAS_NEXT:  # step t+1's sigmoid-gate gradients times their W_hh rows
                g += _recurrent_grad(dnext_ptr, row, w_ptr, rb, rh, B, H, NG, 0, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)
            u = _ld(ws_ptr + U * H, rb, rh, row, B, H)
            c = _ld(ws_ptr + NG * H, rb, rh, row, B, H)
            hp = _ld(hprev_ptr, rb, rh, H, B, H)
            _st(dpre_ptr + NG * H, g * u * (1.0 - c * c), rb, rh, row, B, H)
            du = g * (c - hp)
            if U == 0:  # u is also the reset gate: phase 2 adds its d(q h) part
                _st(dpart_ptr, du, rb, rh, H, B, H)
            else:
                _st(dpre_ptr + U * H, du * u * (1.0 - u), rb, rh, row, B, H)
            _st(mid_ptr, g - g * u, rb, rh, H, B, H)
    if PHASE == 0:
        tl.debug_barrier()  # this block's da_c rows complete before d(q h) reads them
    if PHASE != 1:  # d(q h) = da_c W_hc (every unit's da_c), da_q, the rest of dL/dh_{t-1}
        for pid_h in range(lo, hi):
            rh = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
            drh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
            drh = _tile_mm(drh, dpre_ptr + NG * H, row, w_ptr + NG * H * H, H, 1, rb, rh, B, H, H, UPCAST, BLOCK_K)
            q = _ld(ws_ptr, rb, rh, row, B, H)
            hp = _ld(hprev_ptr, rb, rh, H, B, H)
            dq = drh * hp
            if U == 0:
                dq += _ld(dpart_ptr, rb, rh, H, B, H)
            _st(dpre_ptr, dq * q * (1.0 - q), rb, rh, row, B, H)
            _st(carry_out_ptr, _ld(mid_ptr, rb, rh, H, B, H) + drh * q, rb, rh, H, B, H)
            _st(qh_ptr, q * hp, rb, rh, H, B, H)


_reset_bwd_tc = triton.autotune(configs=autotune_configs(_RESET_TC_CONFIGS), key=["B", "H", "NG", "PHASE"])(
    _reset_bwd_kernel
)
_reset_bwd_fp32 = triton.autotune(configs=autotune_configs(_RESET_FP32_CONFIGS), key=["B", "H", "NG", "PHASE"])(
    _reset_bwd_kernel
)


# ------------------------------------------------------------ after the time loop


@triton.autotune(configs=autotune_configs(_STEP_CONFIGS), key=["B", "H", "NG"])
@triton.jit
def _dh0_kernel(
    carry_ptr,  # [B, H] fp32: the elementwise part of dL/dh0
    d_ptr,  # [B, stride_d] step 0's pre-activation gradients
    w_ptr,  # [G*H, H] weight_hh
    dh0_ptr,  # [B, H] out: dL/dh0
    B, H, stride_d,  # batch, hidden size, row stride of d
    NG: tl.constexpr, SHIFT: tl.constexpr,  # gate blocks through W_hh, and where gate 2 sits (_recurrent_grad)
    UPCAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rb = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    g = _ld(carry_ptr, rb, rh, H, B, H)
    g += _recurrent_grad(d_ptr, stride_d, w_ptr, rb, rh, B, H, NG, SHIFT, UPCAST, BLOCK_B, BLOCK_H, BLOCK_K)
    _st(dh0_ptr, g, rb, rh, H, B, H)


# Column sums (bias gradients): a pass of fp32 partial sums over ROWS-row slabs, then one over
# the partials. Memory-bound: T*B*G*H elements read once (26 MB at T=100, B=64, 4H=2048 bf16: ~10 us).
_SUM_BLOCK_M, _SUM_BLOCK_N, _SUM_ROWS = 32, 64, 1024


@triton.jit
def _colsum_kernel(
    a_ptr,  # [M, N] rows to sum, unit column stride
    out_ptr,  # [cdiv(M, ROWS), N] out: the sum of each ROWS-row slab
    M, N, stride_am,  # sizes, row stride of A
    ROWS,  # rows per program (a multiple of BLOCK_M)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(1)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pid_m.to(tl.int64) * ROWS + tl.arange(0, BLOCK_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for m0 in range(0, ROWS, BLOCK_M):
        rows = rm + m0
        acc += tl.load(a_ptr + rows[:, None] * stride_am + rn[None, :],
                       mask=(rows[:, None] < M) & (rn[None, :] < N), other=0.0).to(tl.float32)  # fmt: skip
    tl.store(out_ptr + pid_m * N + rn, _cvt(tl.sum(acc, axis=0), out_ptr), mask=rn < N)


def colsum(a: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Column sums of a 2-D tensor with unit column stride, fp32-accumulated, as ``dtype``."""
    m, n = a.shape
    slabs = cdiv(m, _SUM_ROWS)
    part = torch.empty((slabs, n), dtype=torch.float32, device=a.device)
    out = torch.empty((n,), dtype=dtype, device=a.device)
    cols = cdiv(n, _SUM_BLOCK_N)
    colsum = wrap_triton(_colsum_kernel)
    colsum[(cols, slabs)](a, part, m, n, a.stride(0), _SUM_ROWS, BLOCK_M=_SUM_BLOCK_M, BLOCK_N=_SUM_BLOCK_N)
    rows = cdiv(slabs, _SUM_BLOCK_M) * _SUM_BLOCK_M
    colsum[(cols, 1)](part, out, slabs, n, n, rows, BLOCK_M=_SUM_BLOCK_M, BLOCK_N=_SUM_BLOCK_N)
    return out


# ------------------------------------------------------------------ wrappers


def _step_grid(b: int, h: int):
    return lambda meta: (cdiv(h, meta["BLOCK_H"]), cdiv(b, meta["BLOCK_B"]))


def _fused_grid(b: int):
    return lambda meta: (1, cdiv(b, meta["BLOCK_B"]))


def prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, dims):
    """Contiguous tensors of x's dtype and device, after the reference's checks (h0 None -> zeros)."""
    b, h = dims
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    h0 = torch.zeros((b, h), dtype=dt, device=dev) if h0 is None else prepare(h0, "h0", dt, dev)
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    b_ih, b_hh = prepare_optional(bias_ih, "bias_ih", dt, dev), prepare_optional(bias_hh, "bias_hh", dt, dev)
    return x, h0, w_ih, w_hh, b_ih, b_hh


def prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace):
    """Backward arguments prepared like the forward's; d_output / d_h_n / h0 may stay None."""
    x = prepare(x, "x")
    dt, dev = x.dtype, x.device
    d_output, d_h_n = prepare_optional(d_output, "d_output", dt, dev), prepare_optional(d_h_n, "d_h_n", dt, dev)
    w_ih, w_hh = prepare(weight_ih, "weight_ih", dt, dev), prepare(weight_hh, "weight_hh", dt, dev)
    output, workspace = prepare(output, "output", dt, dev), prepare(workspace, "workspace", dt, dev)
    return d_output, d_h_n, x, prepare_optional(h0, "h0", dt, dev), w_ih, w_hh, output, workspace


def _input_projection(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None) -> torch.Tensor:
    """x W_ih^T + b_ih for all steps: one GEMM, fp32 result [T, B, G*H]."""
    t, b, i = x.shape
    xp = torch.empty((t, b, w_ih.shape[0]), dtype=torch.float32, device=x.device)
    matmul_nt(x.view(t * b, i), w_ih, b_ih, out=xp.view(t * b, -1))
    return xp


def _backward_setup(d_h_n, h0, output):
    """h_{t-1} for every step ([h0 or 0; output[:-1]], the operand of dW_hh) and the fp32 ping-pong
    carry, its first half holding d_h_n (or 0)."""
    t, b, h = output.shape
    hprev = torch.empty_like(output)
    if h0 is None:
        hprev[0].zero_()
    else:
        hprev[0].copy_(h0)
    hprev[1:].copy_(output[:-1])
    carry = torch.zeros((2, b, h), dtype=torch.float32, device=output.device)
    if d_h_n is not None:
        carry[0].copy_(d_h_n)
    return hprev, carry


def _dh0(carry, d0, w_hh, ng, shift, dtype):
    b, h = carry.shape
    dh0 = torch.empty((b, h), dtype=dtype, device=carry.device)
    wrap_triton(_dh0_kernel)[_step_grid(b, h)](
        carry, d0, w_hh, dh0, b, h, d0.stride(0), NG=ng, SHIFT=shift, UPCAST=DOT_UPCAST
    )
    return dh0


def _mm_tn(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a^T @ b over all T*B rows (the weight gradients)."""
    return matmul_nt(a.t(), b.t(), out=out)


def _cudnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    t_len, b, _ = x.shape
    h = w_hh.shape[1]
    xp = _input_projection(x, w_ih, b_ih)
    out = torch.empty((t_len, b, h), dtype=x.dtype, device=x.device)
    ws = torch.empty((t_len, b, 4 * h), dtype=x.dtype, device=x.device)
    grid = _step_grid(b, h)
    for t in range(t_len):
        h_prev = h0 if t == 0 else out[t - 1]
        wrap_triton(_gru_fwd_kernel)[grid](xp[t], h_prev, w_hh, w_hh if b_hh is None else b_hh, out[t], ws[t], b, h,
                              HAS_BHH=b_hh is not None, UPCAST=DOT_UPCAST)  # fmt: skip
    return out, out[-1].clone(), ws


def _cudnn_backward(d_out, d_h_n, x, h0, w_ih, w_hh, output, ws):
    t_len, b, i = x.shape
    h = w_hh.shape[1]
    hprev, carry = _backward_setup(d_h_n, h0, output)
    dgate = torch.empty((t_len, b, 4 * h), dtype=x.dtype, device=x.device)  # da_r, da_z, da_n, dhn
    grid = _step_grid(b, h)
    for t in reversed(range(t_len)):
        c_in, c_out = carry[(t_len - 1 - t) % 2], carry[(t_len - t) % 2]
        has_next = t < t_len - 1
        wrap_triton(_gru_bwd_kernel)[grid](
            c_in if d_out is None else d_out[t], c_in, dgate[t + 1] if has_next else dgate[t],
            w_hh, ws[t], hprev[t], dgate[t], c_out, b, h,
            HAS_DOUT=d_out is not None, HAS_NEXT=has_next, UPCAST=DOT_UPCAST,
        )  # fmt: skip
    dh0 = _dh0(carry[t_len % 2], dgate[0], w_hh, 3, 1, x.dtype)
    d2 = dgate.view(t_len * b, 4 * h)
    d_ih = d2[:, : 3 * h]  # (da_r, da_z, da_n): the gradient of x W_ih^T + b_ih
    dx = matmul_nt(d_ih, w_ih.t()).view(t_len, b, i)
    dw_ih = _mm_tn(d_ih, x.view(t_len * b, i))
    dw_hh = torch.empty_like(w_hh)
    h2 = hprev.view(t_len * b, h)
    _mm_tn(d2[:, : 2 * h], h2, out=dw_hh[: 2 * h])
    _mm_tn(d2[:, 3 * h :], h2, out=dw_hh[2 * h :])
    sums = colsum(d2, x.dtype)
    return dx, dh0, dw_ih, dw_hh, sums[: 3 * h].clone(), torch.cat([sums[: 2 * h], sums[3 * h :]])


def reset_forward(x, h0, w_ih, w_hh, b_ih, b_hh, update_gate):
    """Forward of a reset-gated cell (cho GRU: update_gate 1; MGU: 0): (output, h_n, workspace)."""
    t_len, b, _ = x.shape
    h = w_hh.shape[1]
    ng = w_hh.shape[0] // h - 1
    xp = _input_projection(x, w_ih, b_ih)
    out = torch.empty((t_len, b, h), dtype=x.dtype, device=x.device)
    ws = torch.empty((t_len, b, (ng + 1) * h), dtype=x.dtype, device=x.device)
    qh = torch.empty((b, h), dtype=x.dtype, device=x.device)  # q * h_{t-1}, the second product's operand
    bias = w_hh if b_hh is None else b_hh
    fused = h <= _FUSED_MAX_H
    grid = _fused_grid(b) if fused else _step_grid(b, h)
    step = _reset_fwd_fp32 if x.dtype == torch.float32 else _reset_fwd_tc
    for t in range(t_len):
        h_prev = h0 if t == 0 else out[t - 1]
        for phase in (0,) if fused else (1, 2):
            wrap_triton(step)[grid](
                xp[t], h_prev, w_hh, bias, ws[t], qh, out[t], b, h,
                NG=ng, U=update_gate, PHASE=phase, HAS_BHH=b_hh is not None, UPCAST=DOT_UPCAST,
            )  # fmt: skip
    return out, out[-1].clone(), ws


def reset_backward(d_out, d_h_n, x, h0, w_ih, w_hh, output, ws, update_gate):
    """BPTT of a reset-gated cell: (dx, dh0, dW_ih, dW_hh, db), db the bias gradient (the same
    for bias_ih and bias_hh: both add to every pre-activation)."""
    t_len, b, i = x.shape
    h = w_hh.shape[1]
    ng = w_hh.shape[0] // h - 1
    hprev, carry = _backward_setup(d_h_n, h0, output)
    dpre = torch.empty((t_len, b, (ng + 1) * h), dtype=x.dtype, device=x.device)  # gates', then candidate's
    qh = torch.empty((t_len, b, h), dtype=x.dtype, device=x.device)  # q_t h_{t-1}, for dW_hc
    mid = torch.empty((b, h), dtype=torch.float32, device=x.device)
    dpart = torch.empty((b, h), dtype=torch.float32, device=x.device) if update_gate == 0 else mid
    fused = h <= _FUSED_MAX_H
    grid = _fused_grid(b) if fused else _step_grid(b, h)
    step = _reset_bwd_fp32 if x.dtype == torch.float32 else _reset_bwd_tc
    for t in reversed(range(t_len)):
        c_in, c_out = carry[(t_len - 1 - t) % 2], carry[(t_len - t) % 2]
        has_next = t < t_len - 1
        for phase in (0,) if fused else (1, 2):
            wrap_triton(step)[grid](
                c_in if d_out is None else d_out[t], c_in, dpre[t + 1] if has_next else dpre[t], w_hh, ws[t],
                hprev[t], dpre[t], dpart, mid, c_out, qh[t], b, h, NG=ng, U=update_gate, PHASE=phase,
                HAS_DOUT=d_out is not None, HAS_NEXT=has_next, UPCAST=DOT_UPCAST,
            )  # fmt: skip
    dh0 = _dh0(carry[t_len % 2], dpre[0], w_hh, ng, 0, x.dtype)
    d2 = dpre.view(t_len * b, (ng + 1) * h)
    dx = matmul_nt(d2, w_ih.t()).view(t_len, b, i)
    dw_ih = _mm_tn(d2, x.view(t_len * b, i))
    dw_hh = torch.empty_like(w_hh)
    _mm_tn(d2[:, : ng * h], hprev.view(t_len * b, h), out=dw_hh[: ng * h])
    _mm_tn(d2[:, ng * h :], qh.view(t_len * b, h), out=dw_hh[ng * h :])
    return dx, dh0, dw_ih, dw_hh, colsum(d2, x.dtype)


def gru_forward(
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
    variant: str = "cudnn",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a GRU over a sequence; returns (output [T, B, H], h_n [B, H], workspace
    (cudnn [T, B, 4H] = r, z, n, hn; cho [T, B, 3H] = r, z, n)). See dlgpu.reference.gru."""
    check_choice(variant, VARIANTS, "variant")
    _, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    args = prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, (b, h))
    return _cudnn_forward(*args) if variant == "cudnn" else reset_forward(*args, 1)


def gru_backward(
    d_output: torch.Tensor | None,
    d_h_n: torch.Tensor | None,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    output: torch.Tensor,
    workspace: torch.Tensor,
    variant: str = "cudnn",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backpropagation through time for ``gru_forward``; returns (dx [T, B, I], dh0 [B, H],
    dweight_ih [3H, I], dweight_hh [3H, H], dbias_ih [3H], dbias_hh [3H]). See dlgpu.reference.gru."""
    check_choice(variant, VARIANTS, "variant")
    t, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    _ref._check_backward_args(d_output, d_h_n, output, workspace, t, b, h, WORKSPACE_GATES[variant])
    args = prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace)
    if variant == "cudnn":
        return _cudnn_backward(*args)
    dx, dh0, dw_ih, dw_hh, db = reset_backward(*args, 1)
    return dx, dh0, dw_ih, dw_hh, db, db.clone()
