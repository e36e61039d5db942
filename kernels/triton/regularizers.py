"""Regularizers and gradient clipping: Triton kernels (same API as dlgpu.reference.regularizers).

Reductions (the penalties, the clip norms) are two launches and no host synchronisation: a fixed
number of programs (a function of the size only) each sweep a grid-strided share of the tensor
into an fp32 per-lane accumulator and write one partial; one small program folds the partials in
a fixed order and writes the result in the input's dtype (and, for clip_grad_norm, the scale the
next pass reads from memory). Same inputs, same bits: no atomics. The gradients, clips and
projections are elementwise passes writing a new tensor.

Validation is the reference's (its checks and messages); hyperparameters are cast to the input's
dtype as there, and the scalar tail of each formula (norm, scale) is rounded to that dtype step by
step, so that e.g. a float16 total norm that overflows clips to zero as the reference does.

Sums of squares (the L2 penalty, clip_grad_norm's 2-norm, max-norm's row norms) accumulate in
fp64: the squares of fp32/fp16/bf16 values can neither overflow nor underflow there, so a float32
row [1e20, 1e20] has norm 1.41e20 (not inf) and [1e-30, 1e-30] has 1.41e-30 (not 0), as the
reference's scaled float64 norm. The reductions are HBM-bound and an H100 runs fp64 at half the
fp32 rate, so the fp64 adds should not show (not yet timed on a GPU); on a consumer GPU (fp64 at
1/64) they may.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from ...reference._validate import check_choice, check_float, check_nonnegative, check_positive, check_real
from ...reference.regularizers import CLIP_EPS, NORM_TYPES
from ._common import autotune_configs, cdiv, next_pow2, prepare, wrap_triton

# Reduction modes (constexpr).
SUM_ABS = tl.constexpr(0)
SUM_SQ = tl.constexpr(1)
MAX_ABS = tl.constexpr(2)
_MODES = {1.0: 0, 2.0: 1, float("inf"): 2}

# Elementwise ops (constexpr).
SCALE = tl.constexpr(0)
SIGN = tl.constexpr(1)
CLAMP = tl.constexpr(2)

# Reduction layout: fixed (not autotuned) so that the partials, hence the rounding, depend on the
# size alone. 512 programs of 2048-element steps fill an H100 (132 SMs) several times over.
_RED_BLOCK = 2048
_RED_PROGRAMS = 512
_ROW_BLOCK = 2048  # max_norm's chunk along a row
_FINISH_BLOCK = 1024  # partials per step of the fold


def _check_grad_output(grad_output) -> None:
    """The penalties are scalars, so their upstream gradient is a scalar too (the reference's check,
    without its np.shape, which cannot read a CUDA tensor): a real number or a 0-d array/tensor."""
    check_real(grad_output, "grad_output", "a number or a 0-d array")
    if np.ndim(grad_output) != 0:
        shape = tuple(grad_output.shape) if hasattr(grad_output, "shape") else np.shape(grad_output)
        raise ValueError(f"grad_output must be a scalar (the penalty is a scalar), got shape {shape}")


# ------------------------------------------------------------------ reductions
# Napkin math: one read of the tensor (4 B/elem fp32, 2 B bf16), 1-2 flops per element: HBM-bound,
# ~0.13 ms per 1e8 fp32 elements on an H100 at 3 TB/s; the fold of 512 partials is one tiny program.


@triton.jit
def _reduce_partial_kernel(
    x_ptr,  # [N] input, contiguous
    part_ptr,  # [num_programs] partials: this program's sum |x|, sum x^2 or max |x| (fp64 for SUM_SQ, else fp32)
    N,  # number of elements
    ITERS,  # grid-stride steps per program: cdiv(cdiv(N, BLOCK), num_programs)
    MODE: tl.constexpr,  # SUM_ABS, SUM_SQ or MAX_ABS
    BLOCK: tl.constexpr,  # elements per step
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ACC: tl.constexpr = part_ptr.dtype.element_ty  # the accumulator's type is the partials'
    acc = tl.zeros((BLOCK,), ACC)
    nan = tl.zeros((BLOCK,), tl.int32)
    for it in range(0, ITERS):
        offs = (it * nprog + pid).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        v = tl.abs(tl.load(x_ptr + offs, mask=offs < N, other=0.0).to(ACC))
        if MODE == SUM_ABS:
            acc += v
        elif MODE == SUM_SQ:
            acc += v * v
        else:
            acc = tl.maximum(acc, v)
            nan += (v != v).to(tl.int32)  # a GPU max may drop NaN: count them instead
    if MODE == MAX_ABS:
        r = tl.where(tl.sum(nan, axis=0) > 0, float("nan"), tl.max(acc, axis=0))
    else:
        r = tl.sum(acc, axis=0)
    tl.store(part_ptr + pid, r)


@triton.jit
def _round(v, DT: tl.constexpr):
    """fp32 ``v`` rounded to the storage dtype DT (what one operation in DT would give)."""
    return v.to(DT).to(tl.float32)


@triton.jit
def _reduce_finish_kernel(
    part_ptr,  # [P] partials (fp64 for SUM_SQ, else fp32)
    out_ptr,  # [1] result in the input's dtype: coef * (sum, sqrt(sum) or max)
    scale_ptr,  # [1] fp32: clip_grad_norm's min(1, max_norm / (total + eps)) (when CLIP)
    P,  # number of partials
    coef,  # factor of the result (lam, lam / 2 or 1), already in the input's dtype
    max_norm,  # clip_grad_norm's bound, already in the input's dtype
    eps,  # clip_grad_norm's eps, already in the input's dtype
    MODE: tl.constexpr,  # SUM_ABS, SUM_SQ or MAX_ABS
    SQRT: tl.constexpr,  # the result is sqrt(sum) (the 2-norm)
    CLIP: tl.constexpr,  # also write the clip scale
    BLOCK_P: tl.constexpr,  # partials per step
):
    offs = tl.arange(0, BLOCK_P)
    acc = tl.zeros((BLOCK_P,), part_ptr.dtype.element_ty)
    nan = tl.zeros((BLOCK_P,), tl.int32)
    for p0 in range(0, P, BLOCK_P):
        v = tl.load(part_ptr + p0 + offs, mask=p0 + offs < P, other=0.0)
        if MODE == MAX_ABS:
            acc = tl.maximum(acc, v)
            nan += (v != v).to(tl.int32)
        else:
            acc += v
    if MODE == MAX_ABS:
        r = tl.where(tl.sum(nan, axis=0) > 0, float("nan"), tl.max(acc, axis=0))
    else:
        r = tl.sum(acc, axis=0)
    DT: tl.constexpr = out_ptr.dtype.element_ty
    if SQRT:
        r = tl.sqrt(r)  # fp64 (SQRT comes with SUM_SQ): IEEE-rounded sqrt.rn.f64; inf only below, in DT
    r = _round(coef * _round(r.to(tl.float32), DT), DT)
    tl.store(out_ptr, r.to(DT))
    if CLIP:
        q = _round(max_norm / _round(r + eps, DT), DT)
        tl.store(scale_ptr, tl.where(q > 1.0, 1.0, q))  # NaN total -> NaN scale, as np.minimum


def _programs(n: int) -> int:
    """Programs (= partials) of the reduction of n elements."""
    return min(cdiv(n, _RED_BLOCK), _RED_PROGRAMS)


def _part_dtype(mode: int) -> torch.dtype:
    """The partials' (and accumulators') dtype: fp64 for sums of squares, which overflow fp32 for |x| > 1.8e19."""
    return torch.float64 if mode == SUM_SQ.value else torch.float32


def _reduce(x: torch.Tensor, mode: int, part: torch.Tensor) -> None:
    """The _programs(x.numel()) partials of ``x`` (flat, contiguous) into ``part`` (``_part_dtype(mode)``)."""
    n, progs = x.numel(), part.numel()
    if progs:
        iters = cdiv(cdiv(n, _RED_BLOCK), progs)
        wrap_triton(_reduce_partial_kernel)[(progs,)](x, part, n, iters, MODE=mode, BLOCK=_RED_BLOCK, num_warps=8)


def _finish(part, out, scale, coef: float, mode: int, sqrt: bool, max_norm: float = 1.0) -> None:
    """Fold the partials into ``out`` (and clip_grad_norm's ``scale``)."""
    eps = torch.tensor(CLIP_EPS, dtype=out.dtype).item()
    wrap_triton(_reduce_finish_kernel)[(1,)](
        part, out, scale if scale is not None else part, part.numel(), coef, max_norm, eps,
        MODE=mode, SQRT=sqrt, CLIP=scale is not None, BLOCK_P=_FINISH_BLOCK, num_warps=4,
    )  # fmt: skip


# --------------------------------------------------------------- elementwise passes
# Napkin math: read and write each element once (8 B/elem fp32): ~0.27 ms per 1e8 fp32 on an H100.
_EW_CONFIGS = [
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 2048}, num_warps=8),
    triton.Config({"BLOCK": 4096}, num_warps=8),
]


@triton.autotune(configs=autotune_configs(_EW_CONFIGS), key=["N"])
@triton.jit
def _elementwise_kernel(
    x_ptr,  # [N] input, contiguous
    y_ptr,  # [N] output, x's dtype
    coef_ptr,  # [1] fp32 factor read from memory (when COEF_FROM_PTR), or a dummy pointer
    N,  # number of elements
    coef,  # SCALE / SIGN: the factor, in x's dtype; times *coef_ptr rounded, when COEF_FROM_PTR
    c,  # CLAMP: the bound, in x's dtype
    OP: tl.constexpr,  # SCALE: coef * x; SIGN: coef * sign(x); CLAMP: clip(x, -c, c)
    COEF_FROM_PTR: tl.constexpr,  # the factor is (*coef_ptr in x's dtype) * coef, computed on the GPU
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    DT: tl.constexpr = y_ptr.dtype.element_ty
    k = coef
    if COEF_FROM_PTR:
        k = _round(_round(tl.load(coef_ptr), DT) * coef, DT)
    if OP == SCALE:
        y = x * k
    elif OP == SIGN:
        y = tl.where(x > 0, k, tl.where(x < 0, -k, x * k))  # sign(0) = 0; NaN stays NaN
    else:
        y = tl.where(x > c, c, tl.where(x < -c, -c, x))  # NaN kept, as np.clip
    tl.store(y_ptr + offs, y.to(DT), mask=mask)


@triton.jit
def _max_norm_kernel(
    w_ptr,  # [O, F] weight, one neuron per row, contiguous
    out_ptr,  # [O, F] projected weight
    F,  # elements per row
    c,  # max_norm, in w's dtype
    BLOCK: tl.constexpr,  # elements per step along the row
):
    # Napkin math: reads each row twice (the second time mostly from L2) and writes it once:
    # ~8-12 B/elem fp32, HBM-bound; one program per neuron, so O >= ~500 rows fill an H100.
    # The norm, the scale and each moved product are fp64, as the reference's (its norm is float64):
    # fp32 squares overflow past |w| = 1.8e19 and underflow below 1e-19 (a zeroed or untouched row).
    row = tl.program_id(0).to(tl.int64) * F
    DT: tl.constexpr = out_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK,), tl.float64)
    for f0 in range(0, F, BLOCK):
        offs = f0 + tl.arange(0, BLOCK)
        v = tl.load(w_ptr + row + offs, mask=offs < F, other=0.0).to(tl.float64)
        acc += v * v
    norm = tl.sqrt(tl.sum(acc, axis=0))  # fp64: IEEE-rounded (PTX has no approximate fp64 sqrt)
    over = norm > c
    scale = tl.where(over, c / tl.where(over, norm, 1.0), 1.0)  # fp64
    for f0 in range(0, F, BLOCK):
        offs = f0 + tl.arange(0, BLOCK)
        v = tl.load(w_ptr + row + offs, mask=offs < F, other=0.0)
        y = tl.where(over, (v.to(tl.float64) * scale).to(tl.float32).to(DT), v)  # rows within the bound: bit for bit
        tl.store(out_ptr + row + offs, y, mask=offs < F)


def _ew(x: torch.Tensor, op, coef: float = 1.0, c: float = 0.0, coef_ptr: torch.Tensor | None = None):
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        wrap_triton(_elementwise_kernel)[lambda meta: (cdiv(n, meta["BLOCK"]),)](
            x, y, coef_ptr if coef_ptr is not None else x, n, coef, c,
            OP=op, COEF_FROM_PTR=coef_ptr is not None,
        )  # fmt: skip
    return y


def _cast(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (the reference's dtype.type(value))."""
    return torch.tensor(value, dtype=dtype).item()


# ------------------------------------------------------------------ L1 / L2


def _penalty_forward(weight, lam: float, mode: int) -> torch.Tensor:
    w = prepare(weight, "weight")
    part = torch.empty(max(1, _programs(w.numel())), dtype=_part_dtype(mode), device=w.device)  # empty w: one 0
    out = torch.empty((), dtype=w.dtype, device=w.device)
    _reduce(w.reshape(-1), mode, part)
    lam_d = _cast(lam, w.dtype)
    _finish(part, out, None, lam_d if mode == 0 else _cast(lam_d / 2, w.dtype), mode, False)
    return out


def _penalty_backward(weight, lam: float, grad_output, op) -> torch.Tensor:
    w = prepare(weight, "weight")
    lam_d = _cast(lam, w.dtype)
    if isinstance(grad_output, torch.Tensor):  # read on the GPU: no host synchronisation
        go = grad_output.to(device=w.device, dtype=torch.float32).reshape(1)
        return _ew(w, op, lam_d, coef_ptr=go)
    coef = (torch.tensor(float(np.asarray(grad_output)), dtype=w.dtype) * torch.tensor(lam_d, dtype=w.dtype)).item()
    return _ew(w, op, coef)


def l1_penalty_forward(weight: torch.Tensor, lam: float) -> torch.Tensor:
    """R = lam * sum_i |w_i| (see dlgpu.reference.regularizers); a 0-d tensor in weight's dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    return _penalty_forward(weight, lam, 0)


def l1_penalty_backward(weight: torch.Tensor, lam: float, grad_output: float | torch.Tensor = 1.0) -> torch.Tensor:
    """dW = grad_output * lam * sign(W), 0 at w = 0 (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    return _penalty_backward(weight, lam, grad_output, SIGN)


def l2_penalty_forward(weight: torch.Tensor, lam: float) -> torch.Tensor:
    """R = (lam / 2) * sum_i w_i^2 (see dlgpu.reference.regularizers); a 0-d tensor in weight's dtype."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    return _penalty_forward(weight, lam, 1)


def l2_penalty_backward(weight: torch.Tensor, lam: float, grad_output: float | torch.Tensor = 1.0) -> torch.Tensor:
    """dW = grad_output * lam * W (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    return _penalty_backward(weight, lam, grad_output, SCALE)


# ----------------------------------------------------------------------- max-norm


def max_norm_forward(weight: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Clamp every neuron's (axis 0) weight vector to ||w_o|| <= max_norm (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    if weight.ndim < 2:
        raise ValueError(
            "weight must be at least 2-D (neurons on axis 0: [O, I] or [O, C, KH, KW]), "
            f"got shape {tuple(weight.shape)}"
        )
    c = check_positive(max_norm, "max_norm")
    w = prepare(weight, "weight")
    out = torch.empty_like(w)
    o, f = w.shape[0], w[0].numel() if w.shape[0] else 0
    if o and f:
        block = min(_ROW_BLOCK, next_pow2(f))
        wrap_triton(_max_norm_kernel)[(o,)](w, out, f, _cast(c, w.dtype), BLOCK=block, num_warps=4)
    return out


# ---------------------------------------------------------------- gradient clipping


def clip_grad_norm_forward(
    grads: Sequence[torch.Tensor], max_norm: float, norm_type: float = 2.0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Rescale grads so that their global p-norm is at most max_norm (see dlgpu.reference.regularizers).

    Per-gradient partials go to one buffer, one program folds them into the total norm and the
    scale, and one pass per gradient applies the scale (read from memory: no host synchronisation).
    """
    if isinstance(grads, (np.ndarray, torch.Tensor)) or not isinstance(grads, Sequence):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError("grads must be a non-empty list of arrays, got an empty list")
    for i, g in enumerate(grads):
        check_float(g, f"grads[{i}]")
        if g.dtype != grads[0].dtype:
            raise TypeError(f"grads[{i}] must have the dtype of grads[0] ({grads[0].dtype}), got {g.dtype}")
    check_choice(norm_type, NORM_TYPES, "norm_type")
    c = check_positive(max_norm, "max_norm")
    gs = [prepare(grads[0], "grads[0]")]
    gs += [prepare(g, f"grads[{i}]", gs[0].dtype, gs[0].device) for i, g in enumerate(grads) if i]
    dtype, device = gs[0].dtype, gs[0].device
    mode = _MODES[float(norm_type)]
    progs = [_programs(g.numel()) for g in gs]  # one slice of partials per gradient
    part = torch.empty(max(1, sum(progs)), dtype=_part_dtype(mode), device=device)
    if sum(progs) == 0:
        part.zero_()
    for g, chunk in zip(gs, torch.split(part[: sum(progs)], progs)):
        _reduce(g.reshape(-1), mode, chunk)
    total = torch.empty((), dtype=dtype, device=device)
    scale = torch.empty(1, dtype=torch.float32, device=device)
    _finish(part, total, scale, 1.0, mode, mode == 1, _cast(c, dtype))
    return [_ew(g, SCALE, 1.0, coef_ptr=scale) for g in gs], total


def clip_grad_value_forward(grad: torch.Tensor, clip_value: float) -> torch.Tensor:
    """g <- clip(g, -c, c) elementwise (see dlgpu.reference.regularizers)."""
    check_float(grad, "grad")
    c = check_positive(clip_value, "clip_value")
    g = prepare(grad, "grad")
    return _ew(g, CLAMP, c=_cast(c, g.dtype))
