"""The harness is itself tested against known-wrong answers: a checker that cannot fail is worthless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.testing import (
    Tolerance,
    assert_close,
    check_gradients,
    compare,
    dtype_name,
    finite_difference_grad,
    poison,
    randn,
    tolerance,
)


def test_randn_has_no_zeros_and_is_seeded(gen):
    x = randn((13, 33), gen, min_abs=0.05)
    assert np.all(np.abs(x) >= 0.05)
    a = randn((5,), np.random.default_rng(3))
    b = randn((5,), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_exact_and_float32_rounded_pass(gen):
    ref = randn((7, 13), gen)
    assert compare(ref.copy(), ref, dtype="float64").ok
    rep = compare(ref.astype(np.float32), ref, dtype="float32")
    assert rep.ok and rep.max_rel_err < 1e-7


def test_float16_result_fails_float32_tolerance(gen):
    ref = randn((7, 13), gen)
    rep = compare(ref.astype(np.float16), ref, dtype="float32")
    assert not rep.ok and rep.n_mismatch > 0
    assert "FAIL" in str(rep)


def test_nan_never_passes(gen):
    ref = randn((4, 5), gen)
    out = ref.copy()
    out[2, 3] = np.nan
    rep = compare(out, ref, dtype="float16")  # even with the loosest tolerance
    assert not rep.ok and rep.n_nan == 1 and rep.worst[0][0] == (2, 3)
    both = ref.copy()
    both[0, 0] = np.nan
    assert not compare(both, both, dtype="float64").ok


def test_poisoned_output_fails():
    ref = np.ones((3, 3))
    assert not compare(poison((3, 3), np.float32), ref, dtype="float32").ok


def test_inf_where_reference_finite_fails(gen):
    ref = randn((6,), gen)
    out = ref.copy()
    out[1] = np.inf
    rep = compare(out, ref)
    assert not rep.ok and "inf" in rep.reason


def test_zeros_and_wrong_shape_fail(gen):
    ref = randn((5, 7), gen)
    assert not compare(np.zeros_like(ref), ref).ok
    rep = compare(ref.T, ref)
    assert not rep.ok and "shape" in rep.reason


def test_single_wrong_element_is_found(gen):
    ref = randn((9, 11), gen)
    out = ref.copy()
    out[4, 6] *= 1.001
    rep = compare(out, ref, dtype="float32")
    assert rep.n_mismatch == 1 and rep.worst[0][0] == (4, 6)


def test_integer_outputs_must_match_exactly():
    ref = np.arange(10)
    out = ref.copy()
    out[3] = 4
    rep = compare(out, ref)
    assert not rep.ok and rep.n_mismatch == 1


def test_accepts_torch_bf16(gen):
    ref = randn((4, 4), gen)
    t = torch.tensor(ref).to(torch.bfloat16)
    assert compare(t, ref, dtype=torch.bfloat16).ok
    assert not compare(t, ref, dtype="float32").ok


def test_assert_close_raises_with_report(gen):
    ref = randn((3,), gen)
    with pytest.raises(AssertionError, match="FAIL"):
        assert_close(ref + 1, ref, "relu", "float32")


def test_tolerance_table():
    assert tolerance("lstm", "float32").rtol > tolerance("relu", "float32").rtol
    assert tolerance("conv2d", torch.float16) == tolerance("conv2d", "fp16")
    assert dtype_name(np.float32) == "float32"
    with pytest.raises(ValueError, match="dtype must be one of"):
        tolerance("relu", "int8")
    assert tolerance("x", "float32").rtol <= 1e-4


def test_finite_differences_catch_a_wrong_gradient(gen):
    x = randn((3, 4), gen)
    dy = randn((3, 4), gen)
    f = lambda: np.sin(x)
    num = finite_difference_grad(f, x, dy)
    assert compare(num, np.cos(x) * dy, op="finite_difference").ok
    check_gradients(f, {"x": x}, {"x": np.cos(x) * dy}, dy)
    with pytest.raises(AssertionError, match="x"):
        check_gradients(f, {"x": x}, {"x": 1.0001 * np.cos(x) * dy}, dy)


def test_finite_differences_need_float64(gen):
    x = randn((3,), gen, dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        finite_difference_grad(lambda: x, x, np.ones(3))


def test_explicit_tolerance_overrides_table(gen):
    ref = randn((5,), gen)
    assert compare(ref * 1.01, ref, tol=Tolerance(0.02, 0.0)).ok
