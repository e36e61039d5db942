"""CUDA C regularizers (regularizers.cu through ``dlgpu.ops.call(..., backend="cupy")``) at the edges the
quick cases of test_cupy_ops.py do not reach: max-norm and clip_grad_norm on rows whose float32 squares
overflow or underflow, and grad_output kinds in the penalties' backward. Each test runs on both targets
(conftest): a CUDA device (``gpu``) and the CPU through g++ (``host``)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.reference import regularizers as R


def _call(op, *args, **kwargs):
    return ops.call(op, *args, backend="cupy", **kwargs)


def _f64(x):
    return x.detach().double().cpu().numpy()


def _cast_f64(v: float, dtype: str) -> float:
    """``v`` rounded to ``dtype``, as the loaders round a hyperparameter."""
    return torch.tensor(v, dtype=getattr(torch, dtype)).double().item()


def _max_norm_exact(w, c):
    """max-norm of the rows of a 2-D float64 array: math.hypot's overflow-free norm, then each moved
    entry w c / norm in exact rational arithmetic, rounded once."""
    out = w.copy()
    for i, row in enumerate(w):
        n = math.hypot(*row)
        if n > c:
            out[i] = [float(Fraction(v) * Fraction(c) / Fraction(n)) for v in row]
    return out


def _assert_rel(got, want, dtype, name, ulps=8):
    """Within ``ulps`` ulp of ``want`` rounded to ``dtype``, or the smallest normal (a GPU may flush subnormals)."""
    got = _f64(got) if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    want = torch.tensor(np.asarray(want, np.float64)).to(getattr(torch, dtype)).double().numpy()
    fi = torch.finfo(getattr(torch, dtype))
    bad = ~(np.abs(got - want) <= ulps * fi.eps * np.abs(want) + fi.tiny)
    assert not bad.any(), f"{name}: got {got[bad][:4]}, want {want[bad][:4]}"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_max_norm_rows_at_extreme_magnitudes(target, dtype):
    # the squares of 1e20 and 3e38 overflow fp32, those of 1e-30 underflow it (bfloat16 has fp32's range)
    w = target.tensor(np.array([[1e20, 1e20, 0.0], [1e-30, 1e-30, 0.0], [1e-30, -1e-30, 1e-30], [3e38, 3e38, 0.0],
                                [1e20, 1e-30, -1e20], [0.3, 0.0, 0.4]]), dtype)  # fmt: skip
    w64 = _f64(w)
    for c, rows_moved in ((1.0, [0, 3, 4]), (1e-31, [0, 1, 2, 3, 4, 5]), (0.25, [0, 3, 4, 5])):
        c_d = _cast_f64(c, dtype)
        out = _call("max_norm_forward", w, c)
        _assert_rel(out, _max_norm_exact(w64, c_d), dtype, f"max_norm c={c}")
        moved = torch.from_numpy(np.isin(np.arange(6), rows_moved)).to(target.device)
        norms = np.array([math.hypot(*row) for row in _f64(out)])
        np.testing.assert_allclose(norms[moved.cpu().numpy()], c_d, rtol=1e-6 if dtype == "float32" else 1e-2)
        assert torch.equal(out[~moved], w[~moved])  # bit for bit
    if dtype == "float32":
        _assert_rel(_call("max_norm_forward", w, 1.0), R.max_norm_forward(w64.astype(np.float32), 1.0), dtype, "ref")


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the reference's L2 penalty in float32: inf, on purpose
def test_clip_grad_norm_at_extreme_magnitudes(target):
    for grads, max_norm in (
        ([np.array([1e20, 1e20]), np.array([3.0, 4.0])], 1.0),
        ([np.array([[1e-30, 1e-30]]), np.array([1e-30])], 1.0),
        ([np.array([1e-30, -1e-30])], 1e-31),
    ):
        gs = [target.tensor(g) for g in grads]
        out, total = _call("clip_grad_norm_forward", gs, max_norm, 2.0)
        ref_out, ref_total = R.clip_grad_norm_forward([_f64(g).astype(np.float32) for g in gs], max_norm, 2.0)
        exact = math.hypot(*np.concatenate([_f64(g).ravel() for g in gs]))
        _assert_rel(total, exact, "float32", "total")  # torch's float32 total is inf (1e20) or 0 (1e-30) here
        scale = min(1.0, _cast_f64(max_norm, "float32") / (exact + 1e-6))
        for o, r, g in zip(out, ref_out, gs):
            _assert_rel(o, _f64(g) * scale, "float32", "clipped", ulps=16)  # the scale is rounded in float32
            _assert_rel(o, r, "float32", "vs reference")
    # the L2 penalty keeps the reference's order: the float32 sum of squares (1e40) is inf before lam
    w = target.tensor(np.array([[1e20, 1e20]]))
    assert _call("l2_penalty_forward", w, 1e-10).item() == R.l2_penalty_forward(_f64(w).astype(np.float32), 1e-10)
    assert _call("l1_penalty_forward", w, 1e-10).item() == pytest.approx(2e10, rel=1e-6)


def test_penalty_backward_grad_output_kinds(target):
    w = target.tensor(np.linspace(-1.0, 2.0, 12).reshape(3, 4))
    for op in ("l1_penalty_backward", "l2_penalty_backward"):
        for bad, what in ((None, "got NoneType"), ("1.0", "got str"), (True, "got bool")):
            with pytest.raises(TypeError, match=f"grad_output must be a number or a 0-d array, {what}"):
                _call(op, w, 0.5, bad)
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got object"):
            _call(op, w, 0.5, np.array(None))
        want = _call(op, w, 0.5, 2.0)
        assert torch.all(torch.isfinite(want))
        for ok in (2, np.float32(2.0), np.int64(2), torch.tensor(2.0, device=target.device)):
            assert torch.equal(_call(op, w, 0.5, ok), want)
