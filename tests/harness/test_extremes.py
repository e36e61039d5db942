"""The ulp check and the exact max-norm of dlgpu.testing.extremes, against known-wrong answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlgpu.testing import assert_ulps, max_norm_exact, randn, round_to


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assert_ulps_passes_within_and_fails_beyond(dtype, gen):
    want = randn((7, 5), gen, scale=1e3)
    got = want.astype(dtype)
    assert_ulps(got, want, dtype, "rounded")
    eps = float(np.finfo(dtype).eps)
    assert_ulps(round_to(want, dtype) * (1 + 6 * eps), want, dtype, "6 ulps", ulps=8)
    off = got.astype(np.float64)
    off[3, 2] *= 1 + 100 * eps  # 100 ulps off
    with pytest.raises(AssertionError, match=r"off: 1 element\(s\) beyond 8 ulp"):
        assert_ulps(off, want, dtype, "off")
    assert_ulps(off, want, dtype, "off", ulps=128)


def test_assert_ulps_nan_and_inf_must_match(gen):
    want = randn((9,), gen)
    got = want.astype(np.float32)
    got[4] = np.nan  # NaN where a number is expected
    with pytest.raises(AssertionError, match="nan: NaN positions differ at"):
        assert_ulps(got, want, np.float32, "nan")
    with pytest.raises(AssertionError, match="NaN positions"):  # and a number where NaN is expected
        assert_ulps(want, np.where(np.arange(9) == 2, np.nan, want), np.float32, "number")
    want[1], want[6] = 1e39, -np.inf  # 1e39 rounds to inf in float32
    got = round_to(want, np.float32)
    assert_ulps(got, want, np.float32, "inf")
    got[6] = np.inf
    with pytest.raises(AssertionError, match="inf"):
        assert_ulps(got, want, np.float32, "inf")
    got[6] = -3e38  # finite where inf is expected
    with pytest.raises(AssertionError, match="inf"):
        assert_ulps(got, want, np.float32, "inf")
    got[6], got[2] = -np.inf, np.inf  # inf where a number is expected
    with pytest.raises(AssertionError, match="beyond"):
        assert_ulps(got, want, np.float32, "inf")


def test_assert_ulps_subnormal_floor_and_bfloat16():
    want = np.array([1e-40, 1.0])  # 1e-40 is subnormal in float32
    got = np.array([0.0, 1.0])  # flushed to zero
    with pytest.raises(AssertionError, match="beyond"):
        assert_ulps(got, want, np.float32, "subnormal")
    assert_ulps(got, want, np.float32, "flushed", flush_subnormals=True)
    # bfloat16 (8 significant bits) through torch tensors: 1/3 rounds to 0.333984375
    third = torch.tensor([1 / 3, 2.0], dtype=torch.bfloat16)
    assert_ulps(third, [1 / 3, 2.0], "bfloat16", "bf16", ulps=1)
    one_off = third.float() * (1 + 2**-7)  # 1 ulp of bfloat16 off
    assert_ulps(one_off, [1 / 3, 2.0], torch.bfloat16, "1 ulp", ulps=2)
    with pytest.raises(AssertionError, match="beyond"):
        assert_ulps(one_off, [1 / 3, 2.0], torch.bfloat16, "1 ulp", ulps=0.5)


def test_assert_ulps_bad_arguments():
    with pytest.raises(AssertionError, match="shape"):
        assert_ulps(np.ones(3), np.ones(4), np.float32, "shape")
    assert_ulps(np.ones(3), 1.0, np.float32, "scalar want")  # a 0-d side broadcasts
    with pytest.raises(ValueError, match="dtype must be"):
        assert_ulps(np.ones(3), np.ones(3), "tf32", "tf32")
    with pytest.raises(ValueError, match="dtype must be"):
        round_to(np.ones(3), np.int32)


def test_max_norm_exact(gen):
    w = np.concatenate([randn((4, 5), gen), [[1e200, 1e200, 0, 0, 0], [1e-200, -1e-200, 0, 0, 0]]])
    c = 0.8
    out = max_norm_exact(w, c)
    norms = np.array([math.hypot(*row) for row in w])
    moved = norms > c
    assert moved[4] and not moved[5]  # the squares of 1e200 overflow float64: not zeroed
    np.testing.assert_array_equal(out[~moved], w[~moved])
    np.testing.assert_allclose([math.hypot(*row) for row in out[moved]], c, rtol=1e-15)
    np.testing.assert_allclose(out[moved], w[moved] * (c / norms[moved][:, None]), rtol=1e-15)
    assert max_norm_exact(w, 1e-300)[5, 0] == pytest.approx(1e-300 * math.sqrt(0.5), rel=1e-15)  # no underflow
