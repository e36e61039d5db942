"""CUDA C regularizers (regularizers.cu through ``dlgpu.ops.call(..., backend="cupy")``) at the edges the
quick cases of test_cupy_ops.py do not reach: max-norm and clip_grad_norm on rows whose float32 squares
overflow or underflow, and grad_output kinds in the penalties' backward. Each test runs on both targets
(conftest): a CUDA device (``gpu``) and the CPU through g++ (``host``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.reference import regularizers as R
from dlgpu.testing import assert_close, assert_ulps, max_norm_exact, round_to, to_numpy
from dlgpu.testing.extremes import check_clip_grad_norm, clip_norm_cases


def _call(op, *args, **kwargs):
    return ops.call(op, *args, backend="cupy", **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_max_norm_rows_at_extreme_magnitudes(target, dtype):
    # the squares of 1e20 and 3e38 overflow fp32, those of 1e-30 underflow it (bfloat16 has fp32's range)
    w = target.tensor(np.array([[1e20, 1e20, 0.0], [1e-30, 1e-30, 0.0], [1e-30, -1e-30, 1e-30], [3e38, 3e38, 0.0],
                                [1e20, 1e-30, -1e20], [0.3, 0.0, 0.4]]), dtype)  # fmt: skip
    w64 = to_numpy(w)
    for c, rows_moved in ((1.0, [0, 3, 4]), (1e-31, [0, 1, 2, 3, 4, 5]), (0.25, [0, 3, 4, 5])):
        c_d = float(round_to(c, dtype))  # as the loaders round a hyperparameter
        out = _call("max_norm_forward", w, c)
        assert_ulps(out, max_norm_exact(w64, c_d), dtype, f"max_norm c={c}", flush_subnormals=True)
        moved = torch.from_numpy(np.isin(np.arange(6), rows_moved)).to(target.device)
        norms = np.array([math.hypot(*row) for row in to_numpy(out)])
        np.testing.assert_allclose(norms[moved.cpu().numpy()], c_d, rtol=1e-6 if dtype == "float32" else 1e-2)
        assert torch.equal(out[~moved], w[~moved])  # bit for bit
    if dtype == "float32":
        want = R.max_norm_forward(w64.astype(np.float32), 1.0)
        assert_ulps(_call("max_norm_forward", w, 1.0), want, dtype, "ref", flush_subnormals=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the reference's L2 penalty in float32: inf, on purpose
def test_clip_grad_norm_at_extreme_magnitudes(target):
    for grads, max_norm in clip_norm_cases("float32"):  # torch's float32 total is inf (1e20) or 0 (1e-30) here
        gs = [target.tensor(g) for g in grads]
        out, total = _call("clip_grad_norm_forward", gs, max_norm, 2.0)
        check_clip_grad_norm(out, total, gs, max_norm, "float32", "cuda", flush_subnormals=True)
        ref_out, _ = R.clip_grad_norm_forward([to_numpy(g).astype(np.float32) for g in gs], max_norm, 2.0)
        for o, r in zip(out, ref_out):
            assert_ulps(o, r, "float32", "vs reference", flush_subnormals=True)
    # the L2 penalty keeps the reference's order: the float32 sum of squares (1e40) is inf before lam
    w = target.tensor(np.array([[1e20, 1e20]]))
    assert _call("l2_penalty_forward", w, 1e-10).item() == R.l2_penalty_forward(to_numpy(w).astype(np.float32), 1e-10)
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


def test_l1_penalty_backward_subgradient_is_0_at_0(target):
    """sign(0) = 0 (torch's abs), for +0 and -0; NaN stays NaN. The quick cases have no zero weight."""
    w = target.tensor(np.array([[0.0, -0.0, 1.5], [-2.0, 0.0, np.nan]]))
    got = _call("l1_penalty_backward", w, 0.5, 2.0)
    want = R.l1_penalty_backward(to_numpy(w).astype(np.float32), 0.5, 2.0)
    np.testing.assert_array_equal(to_numpy(got), want)  # NaN == NaN here
    np.testing.assert_array_equal(to_numpy(got)[:, :2], [[0.0, 0.0], [-1.0, 0.0]])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_clip_grad_norm_1_and_inf_norms(target, gen, dtype):
    """norm_type 1.0 and inf (the quick case and the extremes above use 2.0): sums of |g| and the
    largest |g| over several grads, one of 5000 entries (two partial blocks), so the finish kernel
    combines several partials; max_norm both above and below the total."""
    shapes = (((50, 100), 1.0), ((7,), 9.0), ((3, 4), 0.1))
    grads = [target.tensor(gen.standard_normal(s) * sc, dtype) for s, sc in shapes]
    g64 = [to_numpy(g) for g in grads]
    for norm_type in (1.0, float("inf")):
        for max_norm in (0.5, 1e5):
            out, total = _call("clip_grad_norm_forward", grads, max_norm, norm_type)
            want_out, want_total = R.clip_grad_norm_forward(g64, max_norm, norm_type)
            name = f"clip_grad_norm p={norm_type} c={max_norm}"
            assert_close(total, want_total, op="clip_grad_norm", dtype=dtype, name=name)
            for o, w in zip(out, want_out):
                assert_close(o, w, op="clip_grad_norm", dtype=dtype, name=name)
