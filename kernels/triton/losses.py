"""Losses fused with their gradient: Triton kernels, same API as dlgpu.reference.losses.

Every ``*_forward`` is one pass over its input that writes the gradient (already scaled for
the reduction) and the loss together; no second kernel reads the scores again.

* Elementwise losses (hinge, squared hinge, BCE, BCE with logits, mse, l1, pseudo-Huber): one
  kernel, the loss picked by a constexpr switch. For "none" it writes the per-element loss;
  for "mean"/"sum" each program writes the float32 sum of its block to a partials buffer
  (a fixed block: the reduction tree, and so every bit of the loss, is the same on every call
  and in every process), summed by torch in float32 (a few thousand numbers).
* K-class losses (cross-entropy, multiclass hinge and squared hinge): a tile of rows per
  program, each row in chunks of at most 4096 classes. Cross-entropy keeps a running max and
  rescaled sum (online logsumexp), so logits of any finite size (|y| = 1e4) stay finite;
  a row that fits one chunk is read once, a longer one twice (the second read from L2).
* Validation is the reference's own private checks, given shape/dtype stand-ins for the
  tensors. The value checks (labels in {-1, +1}, probabilities in [0, 1]) are counted inside
  the loss pass -- on the target as given, before its cast to input's dtype, as the
  reference -- and only when the count is non-zero does the reference's check run on a
  host copy to raise its message: a valid call reads its data once (at the cost of one
  host sync for the four losses that have such checks).

The target may be any float dtype (float64 included) and is cast to input's dtype inside the
kernel, as the reference casts it; arithmetic is float32; outputs are in input's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from ...reference._validate import check_array, check_float, check_positive, check_real, check_reduction
from ...reference.losses import _check_classes, _check_elementwise, _check_signs, _check_unit_interval
from ._common import autotune_configs, cdiv, has_data, next_pow2, prepare, wrap_triton

# ------------------------------------------------------------------------ stand-ins
# The reference's checks read .shape, .ndim and .dtype (numpy dtypes), min() and max();
# these stand-ins give them that without copying a device tensor to the host.


class _Spec:
    """Shape and dtype of an array for ``_check_elementwise`` (whose final cast is a no-op here)."""

    def __init__(self, x: Any) -> None:
        self.shape, self.ndim, self.dtype = tuple(int(s) for s in x.shape), x.ndim, x.dtype

    def astype(self, *args: Any, **kwargs: Any) -> _Spec:
        return self


class _Labels(_Spec):
    """Class indices for ``_check_classes``: numpy dtype, and min/max reduced on the device."""

    def __init__(self, t: torch.Tensor) -> None:
        super().__init__(t)
        try:
            self.dtype = np.dtype(str(t.dtype).removeprefix("torch."))
        except TypeError:  # bfloat16 and other types without a numpy twin: the check names torch's
            pass
        self._t, self._range = t, None

    def _minmax(self) -> tuple[int, int]:
        if self._range is None and not has_data(self._t):
            self._range = (0, 0)  # traced: no data to check here; the kernel NaNs a bad label
        if self._range is None:  # one reduction and one host sync for both bounds
            lo, hi = torch.aminmax(self._t)
            self._range = (int(lo.item()), int(hi.item()))
        return self._range

    def min(self) -> int:
        return self._minmax()[0]

    def max(self) -> int:
        return self._minmax()[1]


def _spec(x: Any) -> Any:
    return _Spec(x) if all(hasattr(x, a) for a in ("shape", "ndim", "dtype")) else x


def _host(x: torch.Tensor) -> np.ndarray:
    """A numpy copy for the reference's value checks (bfloat16 widened: numpy has none)."""
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


def _prepare_target(t: Any, like: torch.Tensor, integer: bool) -> torch.Tensor:
    """The target as a contiguous tensor on input's device; any float (or, K-class, integer) dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"target must be a torch tensor for the triton backend, got {type(t).__name__}")
    if not integer and t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"target must be float16, bfloat16, float32 or float64 for the triton backend, got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"target must be on {like.device} like input, got {t.device}")
    return t.contiguous()


# ------------------------------------------------------------------ elementwise kernel

# the LOSS switch (constexpr globals, which a kernel may read); the wrappers pass their .value
HINGE, SQUARED_HINGE, BCE, BCE_LOGITS, MSE, L1, PSEUDO_HUBER = (tl.constexpr(i) for i in range(7))
_CHECKED = (HINGE.value, SQUARED_HINGE.value, BCE.value, BCE_LOGITS.value)  # values the reference checks

# A fixed launch shape (no autotuning) so that the partial sums, hence the loss's bits, never
# depend on which config a process picked; 4096 elements x 8 warps keep enough bytes in flight
# to saturate HBM in a one-pass streaming kernel.
_EW_BLOCK, _EW_WARPS = 4096, 8


@triton.jit
def _log1p(x):
    """log(1 + x) to a few ulp for small x (Kahan: the rounding of 1 + x cancels in the ratio)."""
    u = 1.0 + x
    one = u == 1.0
    return tl.where(one, x, tl.log(u) * (x / tl.where(one, 1.0, u - 1.0)))  # no 0/0 in the branch not taken


# Napkin math: reads input and target, writes the gradient (and the loss for "none"): 12 B
# per fp32 element (16 with "none"), ~20 flops. At 2^26 elements: 0.8 GB -> ~0.27 ms at 3 TB/s.
@triton.jit
def _elementwise_loss_fwd_kernel(
    y_ptr,  # [n] input (scores, probabilities, logits or predictions)
    t_ptr,  # [n] target in its own float dtype, cast to input's inside
    loss_ptr,  # [n] per-element loss (WRITE_LOSS) -- else unused
    grad_ptr,  # [n] dloss/dinput, times scale
    part_ptr,  # [programs] float32 sum of each program's losses (not WRITE_LOSS) -- else unused
    bad_ptr,  # [1] int32 count of invalid values (CHECK) -- else unused
    n,  # elements
    scale,  # 1/n for "mean", else 1: the reduction folded into the gradient
    delta,  # pseudo-Huber's delta (float32), unused by the other losses
    LOSS: tl.constexpr,  # which loss: HINGE ... PSEUDO_HUBER
    WRITE_LOSS: tl.constexpr,  # reduction "none": store per-element losses instead of a partial sum
    CHECK: tl.constexpr,  # count invalid targets (and, for BCE, inputs)
    BLOCK: tl.constexpr,  # elements per program
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    y = tl.load(y_ptr + offs, mask=m, other=0.5).to(tl.float32)  # 0.5: harmless for every loss
    t_raw = tl.load(t_ptr + offs, mask=m, other=0.5)
    t = t_raw.to(y_ptr.dtype.element_ty).to(tl.float32)  # the reference's cast to input's dtype
    if LOSS == HINGE or LOSS == SQUARED_HINGE:
        z = 1.0 - y * t  # the margin violation
        h = tl.where(z <= 0.0, 0.0, z)  # max(z, 0) that keeps NaN, as np.maximum
        if LOSS == HINGE:
            loss = h
            grad = tl.where(z > 0.0, -t, 0.0)
        else:
            loss = h * h
            grad = -2.0 * t * h
        bad = (t_raw != 1.0) & (t_raw != -1.0)
    elif LOSS == BCE:
        log_p = tl.maximum(tl.log(y), -100.0)  # torch's clamp: y = 0 or 1 costs at most 100
        log_q = tl.maximum(_log1p(-y), -100.0)
        loss = -(t * log_p + (1.0 - t) * log_q)
        grad = (y - t) / tl.maximum(y * (1.0 - y), 1e-12)
        bad = ~((y >= 0.0) & (y <= 1.0) & (t_raw >= 0.0) & (t_raw <= 1.0))  # NaN is bad too
    elif LOSS == BCE_LOGITS:
        e = tl.exp(-tl.abs(y))  # in [0, 1]: finite for any logit, shared by loss and sigmoid
        # max(x, 0) - x t as |x| (1 - t) or |x| t: non-negative, no cancellation; a zero weight gives 0
        # even at x = +-inf (the limit), not inf * 0 = NaN
        w = tl.where(y > 0.0, 1.0 - t, t)
        loss = tl.where(w == 0.0, 0.0, tl.abs(y)) * w + _log1p(e)
        grad = tl.where(y >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e)) - t
        bad = ~((t_raw >= 0.0) & (t_raw <= 1.0))
    elif LOSS == MSE:
        d = y - t
        loss = d * d
        grad = 2.0 * d
    elif LOSS == L1:
        d = y - t
        loss = tl.abs(d)
        grad = tl.where(d > 0.0, 1.0, tl.where(d < 0.0, -1.0, d))  # sign: 0 at d = 0, NaN kept
    else:  # PSEUDO_HUBER: the reference's overflow-free form, u = min(a, delta) / max(a, delta) <= 1
        d = y - t
        a = tl.abs(d)
        small = a <= delta  # False for NaN: the second branch, NaN throughout
        mn = tl.where(small, a, delta)
        u = mn / tl.where(small, delta, a)  # the divisor is >= delta > 0
        s = tl.sqrt(1.0 + u * u)
        loss = mn * (a / (s + tl.where(small, 1.0, u)))  # a (a / (1 + s)) or delta (a / (s + u))
        g = mn / s  # |d| / s or delta / s, signed as d (d itself at 0 and NaN)
        grad = tl.where(d > 0.0, g, tl.where(d < 0.0, -g, d))
    tl.store(grad_ptr + offs, (grad * scale).to(grad_ptr.dtype.element_ty), mask=m)
    if WRITE_LOSS:
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=m)
    else:
        tl.store(part_ptr + tl.program_id(0), tl.sum(tl.where(m, loss, 0.0)))
    if CHECK:
        tl.atomic_add(bad_ptr, tl.sum((m & bad).to(tl.int32)), sem="relaxed")  # integers: order-free


# ------------------------------------------------------------------ K-class kernels
# y [N, K] row-major, t [N] (any integer dtype), grad [N, K]; rows [N] gets each row's loss
# (input's dtype for "none", float32 to be summed otherwise). A tile is [BLOCK_N rows,
# BLOCK_K classes]; ONE_CHUNK when K <= BLOCK_K. Labels are validated before the launch.
# Napkin math: y read once (twice for cross-entropy rows over 4096 classes, the second time
# from L2), grad written once: 8 B per fp32 element plus ~10 flops (one exp for cross-entropy).
# N = 4096, K = 32000 (a language-model head): 1 GB -> ~0.35 ms at 3 TB/s.


@triton.jit
def _row_tile(N, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    return rows, rows < N, tl.arange(0, BLOCK_K)


@triton.jit
def _cross_entropy_fwd_kernel(
    y_ptr,  # [N, K] logits
    t_ptr,  # [N] class indices in [0, K)
    rows_ptr,  # [N] per-row loss
    grad_ptr,  # [N, K] (softmax - onehot) * scale
    N, K,  # rows, classes
    scale,  # 1/N for "mean", else 1
    ONE_CHUNK: tl.constexpr,  # K <= BLOCK_K: the row stays in registers between max, sum and gradient
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile
):  # fmt: skip
    rows, rmask, cols = _row_tile(N, BLOCK_N, BLOCK_K)
    t = tl.load(t_ptr + rows, mask=rmask, other=0).to(tl.int64)
    # labels are range-checked on the host before launch; a traced graph (torch.compile) skips
    # that check, so a label outside [0, K) reads nothing and makes its row's loss NaN
    yt = tl.load(y_ptr + rows * K + t, mask=rmask & (t >= 0) & (t < K), other=float("nan")).to(tl.float32)
    base = y_ptr + rows[:, None] * K
    if ONE_CHUNK:
        msk = rmask[:, None] & (cols < K)[None, :]
        x = tl.load(base + cols[None, :], mask=msk, other=float("-inf")).to(tl.float32)
        m = tl.max(x, axis=1)
        shift = tl.where(m == float("-inf"), 0.0, m)  # rows past N (all -inf) give 0, not NaN
        e = tl.exp(x - shift[:, None])  # every argument <= 0: no overflow
        s = tl.where(rmask, tl.sum(e, axis=1), 1.0)  # rows past N: no 0/0
        grad = (e / s[:, None] - (cols[None, :] == t[:, None]).to(tl.float32)) * scale
        tl.store(grad_ptr + rows[:, None] * K + cols[None, :], grad.to(grad_ptr.dtype.element_ty), mask=msk)
    else:
        # online logsumexp: s is the sum of exp(y - m) for the running max m, rescaled when m grows
        m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_N,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + cols
            msk = rmask[:, None] & (kk < K)[None, :]
            x = tl.load(base + kk[None, :], mask=msk, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=1))
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: exp(-inf - 0) = 0, no NaN
            s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
            m = m_new
        shift = tl.where(m == float("-inf"), 0.0, m)
        s = tl.where(rmask, s, 1.0)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + cols
            msk = rmask[:, None] & (kk < K)[None, :]
            x = tl.load(base + kk[None, :], mask=msk, other=float("-inf")).to(tl.float32)
            grad = (tl.exp(x - shift[:, None]) / s[:, None] - (kk[None, :] == t[:, None]).to(tl.float32)) * scale
            tl.store(grad_ptr + rows[:, None] * K + kk[None, :], grad.to(grad_ptr.dtype.element_ty), mask=msk)
    tl.store(rows_ptr + rows, (tl.log(s) - (yt - m)).to(rows_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _multiclass_hinge_fwd_kernel(
    y_ptr,  # [N, K] scores
    t_ptr,  # [N] class indices in [0, K)
    rows_ptr,  # [N] per-row loss
    grad_ptr,  # [N, K] gradient times scale
    N, K,  # rows, classes
    scale,  # 1/N for "mean", else 1
    SQUARED: tl.constexpr,  # max(0, .)^2 terms instead of max(0, .)
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile
):  # fmt: skip
    rows, rmask, cols = _row_tile(N, BLOCK_N, BLOCK_K)
    t = tl.load(t_ptr + rows, mask=rmask, other=0).to(tl.int64)
    # labels are range-checked on the host before launch; a traced graph (torch.compile) skips
    # that check, so a label outside [0, K) reads nothing and makes its row's loss NaN
    yt = tl.load(y_ptr + rows * K + t, mask=rmask & (t >= 0) & (t < K), other=float("nan")).to(tl.float32)
    loss = tl.zeros((BLOCK_N,), tl.float32)
    g_sum = tl.zeros((BLOCK_N,), tl.float32)  # what y_t loses: it enters every term with sign -1
    for k0 in range(0, K, BLOCK_K):  # one iteration when K <= BLOCK_K
        kk = k0 + cols
        msk = rmask[:, None] & (kk < K)[None, :]
        y = tl.load(y_ptr + rows[:, None] * K + kk[None, :], mask=msk, other=0.0).to(tl.float32)
        not_t = kk[None, :] != t[:, None]
        z = 1.0 - (yt[:, None] - y)
        h = tl.where(msk & not_t, tl.where(z <= 0.0, 0.0, z), 0.0)  # the sum runs over j != t; NaN kept
        if SQUARED:
            loss += tl.sum(h * h, axis=1)
            g = 2.0 * h
        else:
            loss += tl.sum(h, axis=1)
            g = tl.where(h > 0.0, 1.0, 0.0)
        g_sum += tl.sum(g, axis=1)
        # column t is left to the store below: two stores to one address need not land in program order
        tl.store(grad_ptr + rows[:, None] * K + kk[None, :], (g * scale).to(grad_ptr.dtype.element_ty),
                 mask=msk & not_t)  # fmt: skip
    tl.store(grad_ptr + rows * K + t, (-g_sum * scale).to(grad_ptr.dtype.element_ty), mask=rmask)
    tl.store(rows_ptr + rows, loss.to(rows_ptr.dtype.element_ty), mask=rmask)


# ------------------------------------------------------------------ backward kernel

_BWD_CONFIGS = [
    triton.Config({"BLOCK": 2048}, num_warps=8),
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 4096}, num_warps=8),
]


# Napkin math: read grad_input, write dinput (and read grad_output per element): 8-12 B per fp32
# element, 1 flop; bandwidth-bound. No reduction, so autotuning cannot change a result.
@triton.autotune(configs=autotune_configs(_BWD_CONFIGS), key=["n", "MODE"])
@triton.jit
def _loss_bwd_kernel(
    gin_ptr,  # [n] grad_input from a *_forward
    g_ptr,  # grad_output: [1] (MODE 0), [n] (MODE 1) or [n // K] (MODE 2), grad_input's dtype
    out_ptr,  # [n] dinput
    n, K,  # elements; classes per row (MODE 2)
    MODE: tl.constexpr,  # 0: one scalar, 1: per element, 2: per row of K
    BLOCK: tl.constexpr,  # elements per program
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    gin = tl.load(gin_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if MODE == 0:
        g = tl.load(g_ptr).to(tl.float32)
    elif MODE == 1:
        g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    else:
        g = tl.load(g_ptr + offs // K, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (gin * g).to(out_ptr.dtype.element_ty), mask=m)


def loss_backward(grad_output: Any, grad_input: torch.Tensor, reduction: str) -> torch.Tensor:
    """dinput = grad_output * grad_input (see dlgpu.reference.losses.loss_backward).

    grad_output: a scalar (Python number or 0-d tensor) for "mean"/"sum"; for "none" a tensor
    of the loss's shape (input's shape, or [N] for a K-class loss: one factor per row).
    """
    check_reduction(reduction)
    check_float(grad_input, "grad_input")
    gin = prepare(grad_input, "grad_input")
    dt = gin.dtype
    out = torch.empty_like(gin)
    if reduction != "none":
        check_real(grad_output, "grad_output", "a number or a 0-d array")
        g = grad_output if isinstance(grad_output, torch.Tensor) else torch.as_tensor(np.asarray(grad_output))
        if g.ndim != 0:
            raise ValueError(
                f"grad_output must be a scalar (0-d) for reduction={reduction!r}, got shape {tuple(g.shape)}"
            )
        g, mode = g.to(device=gin.device, dtype=dt).reshape(1), 0  # rounded to dtype first, as the reference
    else:
        check_array(grad_output, "grad_output")
        check_float(grad_output, "grad_output")
        if not isinstance(grad_output, torch.Tensor):
            raise TypeError(
                f"grad_output must be a torch tensor for the triton backend, got {type(grad_output).__name__}"
            )
        if grad_output.device != gin.device:
            raise ValueError(f"grad_output must be on {gin.device} like grad_input, got {grad_output.device}")
        g = grad_output.to(dt).contiguous()
        if g.shape == gin.shape:  # elementwise loss: one gradient per element
            mode = 1
        elif gin.ndim == 2 and g.shape == gin.shape[:1]:  # K-class loss: one per row
            mode = 2
        else:
            raise ValueError(
                f"grad_output must have the loss's shape for reduction='none': {tuple(gin.shape)} "
                f"(elementwise) or {tuple(gin.shape[:1])} (K-class, input [N, K]), got {tuple(g.shape)}"
            )
    n = gin.numel()
    if n:
        k = gin.shape[-1] if mode == 2 else 1
        wrap_triton(_loss_bwd_kernel)[lambda meta: (cdiv(n, meta["BLOCK"]),)](gin, g, out, n, k, MODE=mode)
    return out


# ------------------------------------------------------------------- wrappers


def _raise_invalid_values(loss: int, y: torch.Tensor, t: torch.Tensor) -> None:
    """The reference's value checks for ``loss``, on host copies, once the kernel counted a bad value."""
    if loss in (HINGE.value, SQUARED_HINGE.value):
        _check_signs(_host(t))
    elif loss == BCE.value:
        _check_unit_interval(_host(y), "input")
        _check_unit_interval(_host(t), "target")
    else:
        _check_unit_interval(_host(t), "target")


def _elementwise(which: tl.constexpr, input: Any, target: Any, reduction: str, delta: float = 1.0):
    """Validate as the reference, run the fused pass, apply the reduction."""
    loss = which.value
    _check_elementwise(_spec(input), _spec(target), reduction)  # the reference's checks, in its order
    if loss == PSEUDO_HUBER.value:
        delta = check_positive(delta, "delta")
    y = prepare(input, "input")
    t = _prepare_target(target, y, integer=False)
    n, dt, none = y.numel(), y.dtype, reduction == "none"
    block = min(_EW_BLOCK, max(128, next_pow2(n)))
    programs = cdiv(n, block)
    grad = torch.empty_like(y)
    out = torch.empty_like(y) if none else torch.empty(programs, dtype=torch.float32, device=y.device)
    check = loss in _CHECKED
    bad = torch.zeros(1, dtype=torch.int32, device=y.device) if check else out
    wrap_triton(_elementwise_loss_fwd_kernel)[(programs,)](
        y, t, out, grad, out, bad, n, 1.0 / n if reduction == "mean" else 1.0, delta,
        LOSS=loss, WRITE_LOSS=none, CHECK=check, BLOCK=block, num_warps=_EW_WARPS,
    )  # fmt: skip
    # one host sync; the reference's check raises its own message (a traced graph has no data to check)
    if check and has_data(bad) and bad.item():
        _raise_invalid_values(loss, y, target)  # target as given: checked before its cast
        raise ValueError(f"{int(bad.item())} invalid target (or input) values")  # unreachable: same predicates
    if none:
        return out, grad
    total = out.sum()
    return (total / n if reduction == "mean" else total).to(dt), grad


def _classes(kernel: Any, input: Any, target: Any, reduction: str, **flags: Any):
    """Validate a K-class call as the reference, run the fused per-row pass, reduce."""
    _check_classes(input, _Labels(target) if isinstance(target, torch.Tensor) else target, reduction)
    y = prepare(input, "input")
    t = _prepare_target(target, y, integer=True)
    n, k = y.shape
    block_k = min(next_pow2(k), 4096)
    block_n = min(max(1, 2048 // block_k), next_pow2(n))  # several short rows per program
    grad = torch.empty_like(y)
    rows = torch.empty(n, dtype=y.dtype if reduction == "none" else torch.float32, device=y.device)
    scale = 1.0 / n if reduction == "mean" else 1.0
    if kernel is _cross_entropy_fwd_kernel:
        flags["ONE_CHUNK"] = k <= block_k
    warps = 4 if block_n * block_k <= 2048 else 8
    wrap_triton(kernel)[(cdiv(n, block_n),)](y, t, rows, grad, n, k, scale, BLOCK_N=block_n, BLOCK_K=block_k,
                                num_warps=warps, **flags)  # fmt: skip
    if reduction == "none":
        return rows, grad
    total = rows.sum()
    return (total / n if reduction == "mean" else total).to(y.dtype), grad


# ------------------------------------------------------------ binary classification


def hinge_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = max(0, 1 - y t), t in {-1, +1} (see dlgpu.reference.losses)."""
    return _elementwise(HINGE, input, target, reduction)


def squared_hinge_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = max(0, 1 - y t)^2, t in {-1, +1} (see dlgpu.reference.losses)."""
    return _elementwise(SQUARED_HINGE, input, target, reduction)


def binary_cross_entropy_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = -(t log y + (1 - t) log(1 - y)), torch's clamps (see dlgpu.reference.losses)."""
    return _elementwise(BCE, input, target, reduction)


def binary_cross_entropy_with_logits_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = max(x, 0) - x t + log1p(exp(-|x|)), dL/dx = sigmoid(x) - t (see dlgpu.reference.losses)."""
    return _elementwise(BCE_LOGITS, input, target, reduction)


# ----------------------------------------------------------- K-class classification


def multiclass_hinge_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j)) (see dlgpu.reference.losses)."""
    return _classes(_multiclass_hinge_fwd_kernel, input, target, reduction, SQUARED=False)


def multiclass_squared_hinge_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j))^2 (see dlgpu.reference.losses)."""
    return _classes(_multiclass_hinge_fwd_kernel, input, target, reduction, SQUARED=True)


def cross_entropy_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_n = logsumexp(y_n) - y_{n,t_n}, dL_n/dy_n = softmax(y_n) - onehot(t_n) (see dlgpu.reference.losses)."""
    return _classes(_cross_entropy_fwd_kernel, input, target, reduction)


# ---------------------------------------------------------------------- regression


def mse_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = (y - t)^2;  dL/dy = 2 (y - t) (see dlgpu.reference.losses)."""
    return _elementwise(MSE, input, target, reduction)


def l1_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = |y - t|;  dL/dy = sign(y - t), 0 at y = t (see dlgpu.reference.losses)."""
    return _elementwise(L1, input, target, reduction)


def pseudo_huber_loss_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", delta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1) (see dlgpu.reference.losses)."""
    return _elementwise(PSEUDO_HUBER, input, target, reduction, delta)
