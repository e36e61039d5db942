"""The check harness shared by the tests and the bench tool.

* inputs come from a seed (``rng``, ``randn``, ``uniform``, ``labels``), in odd shapes,
  never containing zeros;
* outputs are poisoned (NaN) before a kernel writes them (``poison``);
* ``compare`` returns a ``Report``: relative errors, mismatch count, the worst elements,
  and whether NaN/inf turned up; NaN never passes;
* ``finite_difference_grad`` gives central differences in float64 for backward checks.

No torch import at module level: torch tensors are accepted duck-typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tolerances import Tolerance, dtype_name, tolerance

# ------------------------------------------------------------------------ inputs


def rng(seed: int) -> np.random.Generator:
    """A NumPy generator for ``seed`` (the one source of randomness in checks)."""
    return np.random.default_rng(seed)


def randn(
    shape: Sequence[int],
    gen: np.random.Generator,
    dtype: Any = np.float64,
    scale: float = 1.0,
    min_abs: float = 1e-2,
) -> np.ndarray:
    """Standard normal * scale, with every |value| >= min_abs * scale (no zeros, so a
    kernel that forgets to write an element, or writes 0, is caught)."""
    x = gen.standard_normal(tuple(shape))
    small = np.abs(x) < min_abs
    x[small] = np.where(x[small] < 0, -1.0, 1.0) * min_abs * (1 + gen.random(int(small.sum())))
    return (x * scale).astype(dtype)


def uniform(
    shape: Sequence[int], gen: np.random.Generator, low: float, high: float, dtype: Any = np.float64
) -> np.ndarray:
    """Uniform in [low, high) (choose low > 0 or high < 0 to keep zeros out)."""
    return gen.uniform(low, high, tuple(shape)).astype(dtype)


def labels(n: int, k: int, gen: np.random.Generator) -> np.ndarray:
    """n class indices in [0, k), int64."""
    return gen.integers(0, k, size=n, dtype=np.int64)


def signs(shape: Sequence[int], gen: np.random.Generator, dtype: Any = np.float64) -> np.ndarray:
    """Targets in {-1, +1} for the binary hinge losses."""
    return np.where(gen.random(tuple(shape)) < 0.5, -1.0, 1.0).astype(dtype)


def poison(shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """An output buffer full of NaN, so an element a kernel never writes cannot pass."""
    return np.full(tuple(shape), np.nan, dtype=dtype)


# -------------------------------------------------------------------- comparison


def to_numpy(x: Any) -> np.ndarray | None:
    """numpy view/copy of a numpy array, torch tensor (any device, any float dtype,
    bf16 included) or cupy array, as float64 for floating types; None stays None (an absent bias)."""
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch
        x = x.detach()
        if x.is_floating_point():
            x = x.double()
        x = x.cpu().numpy()
    elif hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        x = x.get()
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind == "f" else x


@dataclass
class Report:
    """The outcome of one comparison; ``str(report)`` is the human summary."""

    name: str
    dtype: str
    tol: Tolerance
    ok: bool
    shape: tuple[int, ...]
    n_total: int = 0
    n_mismatch: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    rel_l2_err: float = 0.0
    n_nan: int = 0
    n_inf: int = 0
    worst: list[tuple[tuple[int, ...], float, float]] = field(default_factory=list)
    reason: str = ""

    def __str__(self) -> str:
        head = (
            f"{self.name} [{self.dtype}] {'PASS' if self.ok else 'FAIL'}: "
            f"rel_l2={self.rel_l2_err:.3e} max_rel={self.max_rel_err:.3e} max_abs={self.max_abs_err:.3e} "
            f"mismatch={self.n_mismatch}/{self.n_total} (rtol={self.tol.rtol:g}, atol={self.tol.atol:g}*max|ref|)"
        )
        if self.n_nan or self.n_inf:
            head += f" nan={self.n_nan} inf={self.n_inf}"
        if self.reason:
            head += f"\n  reason: {self.reason}"
        for idx, o, r in self.worst:
            head += f"\n  at {idx}: got {o!r}, expected {r!r}"
        return head


def compare(
    out: Any,
    ref: Any,
    op: str = "",
    dtype: Any = "float64",
    name: str | None = None,
    tol: Tolerance | None = None,
    n_worst: int = 5,
) -> Report:
    """Compare a kernel's output with the reference (ideally computed in float64).

    ``op`` and ``dtype`` pick the tolerance from the table (``tol`` overrides it).
    Fails on a shape mismatch, on any NaN in ``out``, on inf where the reference has
    none, and on any element outside ``rtol * |ref| + atol * max|ref|``.
    """
    dname = dtype_name(dtype)
    tol = tol if tol is not None else tolerance(op, dname)
    label = name or op or "output"
    if out is None or ref is None:  # a missing output, or one the reference does not have, fails
        if out is None and ref is None:
            return Report(label, dname, tol, True, ())
        what = "no output (None)" if out is None else "an output where the reference has none (None)"
        return Report(label, dname, tol, False, (), reason=what)
    o, r = to_numpy(out), to_numpy(ref)
    if o.shape != r.shape:
        return Report(label, dname, tol, False, o.shape, reason=f"shape {o.shape} != reference {r.shape}")
    n = int(o.size)
    rep = Report(label, dname, tol, True, o.shape, n_total=n)
    if n == 0:
        return rep
    if o.dtype.kind != "f" or r.dtype.kind != "f":  # integer outputs (indices) must match exactly
        bad = o != r
        rep.n_mismatch = int(bad.sum())
        rep.ok = rep.n_mismatch == 0
        for flat in np.flatnonzero(bad)[:n_worst]:
            idx = np.unravel_index(flat, o.shape)
            rep.worst.append((tuple(int(i) for i in idx), o[idx].item(), r[idx].item()))
        return rep
    nan = np.isnan(o)
    inf_bad = np.isinf(o) & ~(np.isinf(r) & (np.sign(o) == np.sign(r)))
    rep.n_nan, rep.n_inf = int(nan.sum()), int(np.isinf(o).sum())
    finite = np.isfinite(o) & np.isfinite(r)
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked out by finite
        diff = np.where(finite, np.abs(o - r), 0.0)
    scale = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0)) or 1.0
    allowed = tol.rtol * np.abs(np.where(finite, r, 0.0)) + tol.atol * scale
    bad = nan | inf_bad | (diff > allowed) | (np.isnan(r) & ~nan)
    rep.n_mismatch = int(bad.sum())
    rep.max_abs_err = float(diff.max())
    rel = diff / np.maximum(np.abs(np.where(finite, r, 1.0)), tol.atol * scale if tol.atol else 1e-300)
    rep.max_rel_err = float(rel.max())
    rf = np.where(finite, r, 0.0)
    rep.rel_l2_err = float(np.linalg.norm(diff) / (np.linalg.norm(rf) or 1.0))
    rep.ok = rep.n_mismatch == 0
    if rep.n_nan:
        rep.reason = "NaN in output"
    elif inf_bad.any():
        rep.reason = "inf in output where the reference is finite"
    # worst first: NaN/inf, then by excess over the allowed error
    excess = np.where(bad, np.where(np.isfinite(diff), diff - allowed, np.inf), -np.inf)
    excess[nan | inf_bad] = np.inf
    order = np.argsort(excess, axis=None)[::-1][:n_worst]
    for flat in order:
        idx = np.unravel_index(flat, o.shape)
        if not bad[idx]:
            break
        rep.worst.append((tuple(int(i) for i in idx), float(o[idx]), float(r[idx])))
    return rep


def assert_close(
    out: Any,
    ref: Any,
    op: str = "",
    dtype: Any = "float64",
    name: str | None = None,
    tol: Tolerance | None = None,
) -> Report:
    """``compare`` and raise AssertionError with the report when it fails."""
    rep = compare(out, ref, op=op, dtype=dtype, name=name, tol=tol)
    if not rep.ok:
        raise AssertionError(str(rep))
    return rep


# -------------------------------------------------------------- finite differences


def finite_difference_grad(
    f: Callable[[], Any], x: np.ndarray, grad_output: Any, eps: float = 1e-6
) -> np.ndarray:
    """Central differences of L = sum(f() * grad_output) with respect to ``x`` (float64).

    ``f`` closes over ``x`` and is re-evaluated after each in-place nudge of one element,
    so any function of several inputs is handled one input at a time. ``grad_output``
    may be a tuple matching a tuple-valued f (e.g. (output_sequence, final_state)).
    """
    if x.dtype != np.float64:
        raise TypeError(f"x must be float64 for finite differences, got {x.dtype}")

    def loss() -> float:
        outs = f()
        if not isinstance(outs, tuple):
            return float(np.sum(np.asarray(outs) * grad_output))
        return float(sum(np.sum(np.asarray(o) * g) for o, g in zip(outs, grad_output) if g is not None))

    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        h = eps * max(1.0, abs(old))
        flat[i] = old + h
        lp = loss()
        flat[i] = old - h
        lm = loss()
        flat[i] = old
        gflat[i] = (lp - lm) / (2 * h)
    return grad


def check_gradients(
    f: Callable[[], Any],
    inputs: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    grad_output: Any,
    eps: float = 1e-6,
    tol: Tolerance | None = None,
) -> list[Report]:
    """Compare analytic gradients with central differences for each named input.

    Raises AssertionError listing every failing input; returns the reports otherwise.
    """
    reports = []
    for key, x in inputs.items():
        num = finite_difference_grad(f, x, grad_output, eps)
        reports.append(compare(analytic[key], num, op="finite_difference", dtype="float64", name=key, tol=tol))
    failed = [r for r in reports if not r.ok]
    if failed:
        raise AssertionError("\n".join(str(r) for r in failed))
    return reports
