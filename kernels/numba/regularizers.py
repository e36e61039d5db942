"""Regularizers and gradient clipping: Numba CPU kernels (same API as dlgpu.reference.regularizers).

Each function is one or two parallel passes: the penalties and norms are chunked
reductions (float64 partial sums, so float32 weights lose nothing to a long float32
sum), the gradients and projections are elementwise passes writing a new array.
Validation is the reference's (its checks and messages); hyperparameters are cast to
the input's dtype as there.

Euclidean norms (max-norm's rows, clip_grad_norm's 2-norm) square in float64, so a float32
input can neither overflow nor underflow them; a float64 input whose float64 sum of squares
did (not finite, or under 1e-290) is summed again scaled by its largest |w| (``_norm2``), as the
reference always does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from ...reference._validate import check_choice, check_float, check_nonnegative, check_positive
from ...reference.regularizers import CLIP_EPS, NORM_TYPES, _check_grad_output
from ._common import JIT, SERIAL_BELOW_CHEAP, pjit, prepare

_CHUNK = 16384  # elements per parallel work item of a reduction


# ------------------------------------------------------------------ reductions


# Sums only: 'reassoc' lets LLVM split the float64 sum into vector lanes (a pairwise-like
# order, as numpy's sum); nothing else in these functions could be reordered.
_SUM_JIT = dict(JIT, fastmath={"reassoc"})


@njit(**_SUM_JIT)
def _sum_abs(x):
    s = 0.0
    for j in range(x.size):
        s += abs(float(x[j]))
    return s


@njit(**_SUM_JIT)
def _sum_sq(x):
    s = 0.0
    for j in range(x.size):
        a = np.float64(x[j])  # squared in float64: float(x) of a float32 stays float32 in numba
        s += a * a
    return s


# Under this a float64 sum of squares may have lost squares to underflow (each below 2.2e-308):
# so little next to 1e-290 that any larger sum is exact to rounding.
_SQ_TINY = 1e-290
_F64_TINY = float(np.finfo(np.float64).tiny)  # the smallest normal float64


@njit(**_SUM_JIT)
def _sum_sq_scaled(x, m):
    """sum (x/m)^2 in float64, for m = max |x| > 0: every term in [0, 1]."""
    s = 0.0
    for j in range(x.size):
        a = np.float64(x[j]) / m
        s += a * a
    return s


@njit(**JIT)
def _max_abs64(x):
    """max |x| in float64 (0 for an empty x); NaN if x holds one."""
    m = 0.0
    for j in range(x.size):
        a = abs(np.float64(x[j]))
        if a > m or a != a:
            m = a
            if a != a:
                break
    return m


@njit(**JIT)
def _norm2(x):
    """sqrt(sum x^2) of a flat array in float64, free of overflow and underflow: the plain float64
    sum (always safe for float32 x) unless it left [1e-290, inf), then the sum scaled by max |x|."""
    s = _sum_sq(x)
    if s >= _SQ_TINY and s < np.inf:
        return np.sqrt(s)
    m = _max_abs64(x)
    if not (m > 0.0 and m < np.inf):  # zero (norm 0), inf (inf), NaN (NaN): no scaling needed
        return m
    return m * np.sqrt(_sum_sq_scaled(x, m))


@pjit()
def _sum_abs_pow_kernel(x, square):
    """sum |x| (square False) or sum x^2 (square True) of a flat array, in float64."""
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    for c in prange(nch):
        xc = x[c * _CHUNK : min(n, (c + 1) * _CHUNK)]
        part[c] = _sum_sq(xc) if square else _sum_abs(xc)
    return part.sum()


@pjit()
def _sum_sq_scaled_kernel(x, m):
    """sum (x/m)^2 of a flat array in float64 (the scaled fallback of a 2-norm)."""
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    for c in prange(nch):
        part[c] = _sum_sq_scaled(x[c * _CHUNK : min(n, (c + 1) * _CHUNK)], m)
    return part.sum()


@pjit()
def _max_abs_kernel(x):
    """max |x| of each chunk of a flat array; NaN in a chunk gives NaN there.

    The chunk maxima are combined by np.max outside: parallel=True turns an np.max here into
    a parfor max-reduction, which drops NaN."""
    n = x.size
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch, x.dtype)
    for c in prange(nch):
        m = x.dtype.type(0.0)
        for j in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            a = abs(x[j])
            if a > m or a != a:  # once NaN, m stays NaN: every compare with it is False
                m = a
        part[c] = m
    return part


# --------------------------------------------------------------- elementwise passes


@pjit(SERIAL_BELOW_CHEAP)
def _scale_kernel(x, coef, out):
    for i in prange(x.size):
        out[i] = x[i] * coef


@pjit(SERIAL_BELOW_CHEAP)
def _l1_penalty_bwd_kernel(w, coef, out):
    zero = w.dtype.type(0.0)
    for i in prange(w.size):
        v = w[i]
        out[i] = coef if v > zero else (-coef if v < zero else v * coef)  # sign(0) = 0; NaN kept


@pjit()
def _max_norm_fwd_kernel(w, c, out):
    # w, out [O, F]: one neuron per row; c float64 (max_norm rounded to w's dtype); the norm, the
    # scale and each product are float64, the product rounded once to w's dtype (as the reference)
    o, f = w.shape
    for i in prange(o):
        norm = _norm2(w[i])
        if norm > c:
            s = c / norm
            if s >= _F64_TINY:
                for j in range(f):
                    out[i, j] = np.float64(w[i, j]) * s
            else:  # c / norm underflowed (float64 rows 1e308 times c): w / norm <= 1, then times c
                for j in range(f):
                    out[i, j] = np.float64(w[i, j]) / norm * c
        else:  # unchanged bit for bit
            for j in range(f):
                out[i, j] = w[i, j]


@pjit()
def _clip_grad_value_fwd_kernel(g, c, out):
    for i in prange(g.size):
        v = g[i]
        if v > c:
            v = c
        elif v < -c:
            v = -c
        out[i] = v  # NaN kept, as np.clip


# ------------------------------------------------------------------ L1 / L2


def l1_penalty_forward(weight: np.ndarray, lam: float) -> np.ndarray:
    """R = lam * sum_i |w_i| (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    w = prepare(weight, "weight")
    return np.asarray(w.dtype.type(lam) * w.dtype.type(_sum_abs_pow_kernel(w.reshape(-1), False)), dtype=w.dtype)


def l1_penalty_backward(weight: np.ndarray, lam: float, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
    """dW = grad_output * lam * sign(W), 0 at w = 0 (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    w = prepare(weight, "weight")
    dt = w.dtype.type
    out = np.empty(w.shape, w.dtype)
    _l1_penalty_bwd_kernel(w.reshape(-1), dt(np.asarray(grad_output)) * dt(lam), out.reshape(-1))
    return out


def l2_penalty_forward(weight: np.ndarray, lam: float) -> np.ndarray:
    """R = (lam / 2) * sum_i w_i^2 (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    w = prepare(weight, "weight")
    half_lam = w.dtype.type(lam) / 2
    return np.asarray(half_lam * w.dtype.type(_sum_abs_pow_kernel(w.reshape(-1), True)), dtype=w.dtype)


def l2_penalty_backward(weight: np.ndarray, lam: float, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
    """dW = grad_output * lam * W (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    w = prepare(weight, "weight")
    dt = w.dtype.type
    out = np.empty(w.shape, w.dtype)
    _scale_kernel(w.reshape(-1), dt(np.asarray(grad_output)) * dt(lam), out.reshape(-1))
    return out


# ----------------------------------------------------------------------- max-norm


def max_norm_forward(weight: np.ndarray, max_norm: float) -> np.ndarray:
    """Clamp every neuron's (axis 0) weight vector to ||w_o|| <= max_norm (see dlgpu.reference.regularizers)."""
    check_float(weight, "weight")
    if weight.ndim < 2:
        raise ValueError(
            f"weight must be at least 2-D (neurons on axis 0: [O, I] or [O, C, KH, KW]), got shape {weight.shape}"
        )
    c = check_positive(max_norm, "max_norm")
    w = prepare(weight, "weight")
    out = np.empty(w.shape, w.dtype)
    rows = (w.shape[0], math.prod(w.shape[1:]))  # O,F (explicit: -1 is ambiguous for an empty weight)
    w2, out2 = w.reshape(rows), out.reshape(rows)
    _max_norm_fwd_kernel(w2, np.float64(w.dtype.type(c)), out2)
    return out


# ---------------------------------------------------------------- gradient clipping


def clip_grad_norm_forward(
    grads: Sequence[np.ndarray], max_norm: float, norm_type: float = 2.0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Rescale grads so that their global p-norm is at most max_norm (see dlgpu.reference.regularizers)."""
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError("grads must be a non-empty list of arrays, got an empty list")
    for i, g in enumerate(grads):
        check_float(g, f"grads[{i}]")
        if g.dtype != grads[0].dtype:
            raise TypeError(f"grads[{i}] must have the dtype of grads[0] ({grads[0].dtype}), got {g.dtype}")
    check_choice(norm_type, NORM_TYPES, "norm_type")
    c = check_positive(max_norm, "max_norm")
    gs = [prepare(g, f"grads[{i}]") for i, g in enumerate(grads)]
    dtype = gs[0].dtype
    flat = [g.reshape(-1) for g in gs]
    if norm_type == np.inf:
        total = np.max([np.max(_max_abs_kernel(g), initial=0) for g in flat])
    elif norm_type == 1.0:
        total = np.sum([_sum_abs_pow_kernel(g, False) for g in flat])
    else:
        sq = np.sum([_sum_abs_pow_kernel(g, True) for g in flat])  # sum ||g_i||^2 in float64
        total = np.sqrt(sq)
        # float64 squares of float32 values can neither overflow nor underflow; those of float64 ones can
        if dtype == np.float64 and not (_SQ_TINY <= sq < np.inf):
            m = float(np.max([np.max(_max_abs_kernel(g), initial=0.0) for g in flat]))  # NaN wins
            if 0.0 < m < np.inf:  # else the norm is 0, inf or NaN as it stands
                total = m * np.sqrt(np.sum([_sum_sq_scaled_kernel(g, m) for g in flat]))
    total = np.asarray(total, dtype=dtype)
    scale = dtype.type(np.minimum(dtype.type(1), dtype.type(c) / (total + dtype.type(CLIP_EPS))))
    out = []
    for g in gs:
        o = np.empty(g.shape, dtype)
        _scale_kernel(g.reshape(-1), scale, o.reshape(-1))
        out.append(o)
    return out, total


def clip_grad_value_forward(grad: np.ndarray, clip_value: float) -> np.ndarray:
    """g <- clip(g, -c, c) elementwise (see dlgpu.reference.regularizers)."""
    check_float(grad, "grad")
    c = check_positive(clip_value, "clip_value")
    g = prepare(grad, "grad")
    out = np.empty(g.shape, g.dtype)
    _clip_grad_value_fwd_kernel(g.reshape(-1), g.dtype.type(c), out.reshape(-1))
    return out
