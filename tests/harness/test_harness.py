"""The harness is itself tested against known-wrong answers: a checker that cannot fail is worthless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.testing import (
    DEFAULT,
    OVERRIDES,
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
    out = poison((2, 5), np.float16)
    assert out.shape == (2, 5) and out.dtype == np.float16 and np.isnan(out).all()  # NaN, not zeros


def test_a_number_where_the_reference_is_nan_fails(gen):
    ref = randn((4, 5), gen)
    ref[1, 2] = np.nan
    out = np.where(np.isnan(ref), 0.5, ref)
    rep = compare(out, ref, dtype="float16")
    assert not rep.ok and rep.n_mismatch == 1 and rep.worst[0][0] == (1, 2)


def test_inf_must_have_the_reference_s_sign(gen):
    ref = randn((6,), gen)
    ref[2], ref[4] = np.inf, -np.inf
    assert compare(ref.copy(), ref).ok
    out = ref.copy()
    out[4] = np.inf
    rep = compare(out, ref, dtype="float16")
    assert not rep.ok and rep.n_mismatch == 1 and rep.worst[0][0] == (4,)


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


def test_a_missing_output_fails_with_a_reason(gen):
    ref = randn((5, 7), gen)
    rep = compare(None, ref, name="db")
    assert not rep.ok and "no output" in rep.reason and "FAIL" in str(rep)
    assert not compare(ref, None).ok
    assert compare(None, None).ok  # nothing on either side: nothing to compare


def test_single_wrong_element_is_found(gen):
    ref = randn((9, 11), gen)
    out = ref.copy()
    out[4, 6] *= 1.001
    rep = compare(out, ref, dtype="float32")
    assert rep.n_mismatch == 1 and rep.worst[0][0] == (4, 6)


def test_error_is_judged_relative_to_each_element(gen):
    """rtol applies to |ref| of the element itself: a small element off by 2e-4 of its value fails float32,
    although that error is tiny next to the largest element (atol only covers 2e-6 of max|ref|)."""
    ref = np.full((4, 6), 0.25)
    ref[0, 0] = 4.0
    out = ref.copy()
    out[2, 3] *= 1 + 2e-4
    rep = compare(out, ref, dtype="float32")
    assert not rep.ok and rep.n_mismatch == 1 and rep.worst[0][0] == (2, 3)
    out[1, 1] = 1e6  # a wild element fails on its own and widens nothing for the others
    assert compare(out, ref, dtype="float32").n_mismatch == 2


@pytest.mark.parametrize("op,dtype", sorted({*OVERRIDES, *((op, d) for op in ("relu", "conv2d") for d in DEFAULT)}))
def test_every_tolerance_rejects_a_coarser_dtype(op, dtype, gen):
    """No entry is loose enough to pass a result computed in the next coarser precision: float16 for the
    float32 entries (recurrent ones included), float32 for float64; a 1e-4 error for the finite
    differences, and 4% errors (beyond any 8-bit rounding) for the tf32, float16 and bfloat16 entries."""
    ref = randn((16, 16), gen)
    coarser = {"float64": np.float32, "float32": np.float16}.get(dtype)
    if op == "finite_difference":
        out = ref * (1 + 1e-4 * np.sign(randn((16, 16), gen)))
    elif coarser is not None:
        out = ref.astype(coarser)
    else:
        out = ref * (1 + 0.04 * np.sign(randn((16, 16), gen)))
    assert not compare(out, ref, op=op, dtype=dtype).ok


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
