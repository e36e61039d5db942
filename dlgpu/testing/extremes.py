"""Checks at extreme magnitudes, shared by every backend's tests: where the rounding of a few ops is
judged in ulps of the exact answer rather than by the tolerance table.

* ``assert_ulps``: every element within a few ulp of the float64 answer rounded to the dtype under
  test, NaN and inf exactly where the rounded answer has them;
* ``round_to``: float64 values rounded through a dtype (bfloat16 too) and back to float64;
* ``max_norm_exact``: the max-norm constraint in exact rational arithmetic (no overflow, no underflow);
* ``HUBER_*``: pseudo-Huber differences and deltas across float32's range, and the cases the
  textbook formula got wrong;
* ``norm_rows`` / ``clip_norm_cases`` / ``check_clip_grad_norm``: inputs whose squares overflow or
  underflow the dtype, and the check of a clip_grad_norm result against the exact norm.

No torch import at module level: torch tensors are accepted duck-typed, and torch is imported only
to round to bfloat16 (numpy has no bfloat16).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from .harness import to_numpy
from .tolerances import dtype_name

# ------------------------------------------------------------------------ inputs

# |d| = |y - t| across float32's range (near max, subnormal, both signs, zero) for the pseudo-Huber
# loss: with the deltas below, the textbook (d/delta)^2 overflows or underflows in most pairs
_HUBER_D_COMMON = (1e20, -1e20, 3e38, -3e38, 1.0, -1.0, 0.5, -7.25, 1e-20, -1e-20, 1e-38, 1e-44, 0.0)
# the backends' values: NaN propagates, d = +-inf (indices 14 and 15) has the slope +-delta
HUBER_D = _HUBER_D_COMMON + (np.nan, np.inf, -np.inf)
# finite values only (negative zero instead of NaN and inf), for the exact decimal arithmetic of
# the reference's check
HUBER_D_FINITE = _HUBER_D_COMMON + (-0.0,)
HUBER_DELTA = (1.0, 1e-20, 1e30, 0.7, 1e-30, 1e20, 3e38)
# (d, delta, loss, gradient) the textbook form got wrong in float32 (NaN losses, zero gradients):
# the linear regime (loss delta |d|, gradient delta), a tiny delta, the quadratic regime (d^2 / 2, d)
HUBER_KNOWN = ((1e20, 1.0, 1e20, 1.0), (1.0, 1e-20, 1e-20, 1e-20), (1.0, 1e30, 0.5, 1.0))



def norm_magnitudes(dtype: Any) -> tuple[float, float]:
    """(big, small): magnitudes whose squares overflow / underflow ``dtype`` (1e20 / 1e-30 in float32,
    1e200 / 1e-200 in float64)."""
    return (1e200, 1e-200) if dtype_name(dtype) == "float64" else (1e20, 1e-30)


def norm_rows(dtype: Any) -> list[list[float]]:
    """Rows [6, 3] for max_norm: squares that overflow or underflow, near float32's max, mixed, and an
    ordinary row (norm 0.5)."""
    big, small = norm_magnitudes(dtype)
    return [[big, big, 0.0], [small, small, 0.0], [small, -small, small], [3e38, 3e38, 0.0], [big, small, -big],
            [0.3, 0.0, 0.4]]  # fmt: skip


def clip_norm_cases(dtype: Any) -> list[tuple[list[np.ndarray], float]]:
    """(float64 gradients, max_norm) for clip_grad_norm whose total norm's square overflows or underflows
    ``dtype``; convert the arrays to the backend's kind and dtype."""
    big, small = norm_magnitudes(dtype)
    return [
        ([np.array([big, big]), np.array([3.0, 4.0])], 1.0),
        ([np.array([[small, small]]), np.array([small])], 1.0),
        ([np.array([small, -small])], small / 10),
    ]


# ----------------------------------------------------------------------- rounding


def round_to(values: Any, dtype: Any) -> np.ndarray:
    """``values`` (numbers, a list, a NumPy array or a torch tensor) as float64, rounded to ``dtype``
    ('float64', 'float32', 'float16', 'bfloat16', or a NumPy or torch dtype) and back to float64;
    values past the dtype's range become inf, as a kernel's output would. Returns an array of the
    values' shape (0-d for a number)."""
    name = _float_name(dtype)
    x = np.asarray(to_numpy(values), dtype=np.float64)
    if name == "bfloat16":
        import torch

        return torch.tensor(x).to(torch.bfloat16).double().numpy()
    with np.errstate(over="ignore"):  # overflow -> inf, as the kernel's
        return x.astype(name).astype(np.float64)


def _float_name(dtype: Any) -> str:
    name = dtype_name(dtype)
    if name == "tf32":
        raise ValueError("dtype must be a storage type (float64, float32, float16, bfloat16); got 'tf32'")
    return name


def _finfo(name: str) -> tuple[float, float, float]:
    """(eps, smallest normal, smallest subnormal) of the float type ``name``."""
    if name == "bfloat16":  # float32's exponent range with 8 significant bits
        eps, tiny = 2.0**-7, float(np.finfo(np.float32).tiny)
        return eps, tiny, eps * tiny
    fi = np.finfo(name)
    return float(fi.eps), float(fi.tiny), float(fi.smallest_subnormal)


# --------------------------------------------------------------------- comparison


def assert_ulps(
    got: Any, want: Any, dtype: Any, name: str, ulps: float = 8, flush_subnormals: bool = False
) -> None:
    """Assert that ``got`` (a kernel's output in ``dtype``) is within ``ulps`` ulp of ``want``.

    ``want`` is the float64 answer (exact, or the float64 reference's); it is rounded to ``dtype``
    first (``round_to``), as the kernel's output is. NaN must be exactly where the rounded ``want``
    has NaN, inf exactly (sign included) where it has inf, and every other element must satisfy
    ``|got - want| <= ulps * eps * |want| + floor``, where ``floor`` is 4 subnormals of ``dtype``,
    or its smallest normal number with ``flush_subnormals`` (a GPU may flush subnormals to zero).
    ``got`` and ``want`` are numbers, lists, NumPy arrays or torch tensors of the same shape (or
    one of them 0-d). ``name`` labels the failure. Raises AssertionError on the first failed rule.
    """
    fname = _float_name(dtype)
    g = np.asarray(to_numpy(got), dtype=np.float64)
    w = round_to(want, fname)
    if g.shape != w.shape and g.ndim and w.ndim:
        raise AssertionError(f"{name}: shape {g.shape} != expected {w.shape}")
    g, w = np.broadcast_arrays(g, w)
    nan = np.isnan(w)
    if not np.array_equal(np.isnan(g), nan):
        where = np.flatnonzero(np.isnan(g) != nan)[:5]
        raise AssertionError(f"{name}: NaN positions differ at {where}: got {g.flat[where]}, want {w.flat[where]}")
    inf = np.isinf(w)
    if not np.array_equal(g[inf], w[inf]):
        raise AssertionError(f"{name}: inf: got {g[inf][:5]}, want {w[inf][:5]}")
    fin = ~nan & ~inf
    eps, tiny, subnormal = _finfo(fname)
    floor = tiny if flush_subnormals else 4 * subnormal
    allowed = ulps * eps * np.abs(w[fin]) + floor
    bad = ~(np.abs(g[fin] - w[fin]) <= allowed)  # inf where got is inf: fails
    if bad.any():
        raise AssertionError(
            f"{name}: {int(bad.sum())} element(s) beyond {ulps} ulp of {fname}: "
            f"got {g[fin][bad][:5]}, want {w[fin][bad][:5]}"
        )


# ------------------------------------------------------------------ exact answers


def max_norm_exact(w: np.ndarray, c: float) -> np.ndarray:
    """The max-norm constraint on the rows of a 2-D float64 array ``w`` [rows, n], computed exactly:
    each row's norm by math.hypot (no overflow of the squares), then each entry of a row whose norm
    exceeds ``c`` scaled to ``w c / norm`` in exact rational arithmetic (no underflow of c / norm),
    rounded once. Returns a new float64 array of ``w``'s shape; rows within the bound are copied."""
    out = w.copy()
    for i, row in enumerate(w):
        n = math.hypot(*row)
        if n > c:
            out[i] = [float(Fraction(v) * Fraction(c) / Fraction(n)) for v in row]
    return out


def check_clip_grad_norm(
    out: Any, total: Any, grads: Any, max_norm: float, dtype: Any, name: str, ulps: int = 8,
    flush_subnormals: bool = False,
) -> None:
    """A clip_grad_norm result (clipped ``out``, ``total`` norm) against the exact answer: the total
    within ``ulps`` of math.hypot over every element of ``grads``, each clipped gradient within 16 ulp
    of g * min(1, max_norm / (total + 1e-6)) (the scale itself is rounded in ``dtype``)."""
    exact = math.hypot(*np.concatenate([to_numpy(g).astype(np.float64).ravel() for g in grads]))
    assert_ulps(total, exact, dtype, f"{name} total", ulps=ulps, flush_subnormals=flush_subnormals)
    scale = min(1.0, float(round_to(max_norm, dtype)) / (exact + 1e-6))
    for o, g in zip(out, grads):
        want = to_numpy(g).astype(np.float64) * scale
        assert_ulps(o, want, dtype, f"{name} clipped", ulps=max(ulps, 16), flush_subnormals=flush_subnormals)
