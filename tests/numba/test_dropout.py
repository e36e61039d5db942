"""Numba inverted dropout: explicit-mask parity with the reference, the counter-based mask
(documented hash, reproducible, thread-count independent, statistics), bad input."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import dropout as K
from dlgpu.reference import dropout as R
from dlgpu.testing import assert_close, randn

DTYPES = [np.float32, np.float64]
_M64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _documented_bits(i: int, seed: int) -> int:
    """The module docstring's 53 random bits of element i, in plain Python integers."""
    key = _mix64((seed & _M64) ^ 0x6A09E667F3BCC909)
    return _mix64((key + i * 0x9E3779B97F4A7C15) & _M64) >> 11


def _documented_mask(n: int, p: float, seed: int) -> np.ndarray:
    """The module docstring's formula: keep element i where bits / 2**53 >= p."""
    return np.array([_documented_bits(i, seed) / 2**53 >= p for i in range(n)])


def _p(gen: np.random.Generator) -> float:
    return float(gen.uniform(0.1, 0.9))


@pytest.mark.parametrize("dtype", DTYPES)
def test_explicit_mask_matches_reference(dtype, gen):
    p = _p(gen)
    x = randn((7, 13, 5), gen, dtype=dtype)
    x[0, 0, :3] = [np.nan, np.inf, -np.inf]  # dropped or kept, they go through x * factor as in the reference
    dy = randn(x.shape, gen, dtype=dtype)
    mask = gen.random(x.shape) >= p
    mask[0, 0, :3] = [False, False, True]
    y, dx = K.dropout_forward(x, p, mask=mask), K.dropout_backward(dy, p, mask=mask)
    assert y.dtype == dtype and dx.dtype == dtype
    with np.errstate(invalid="ignore"):  # the reference's inf * 0
        y_same = R.dropout_forward(x, p, mask=mask)
        y_ref = R.dropout_forward(x.astype(np.float64), p, mask=mask)
    np.testing.assert_array_equal(y, y_same)  # same dtype: identical rounding, NaN where the reference has it
    np.testing.assert_array_equal(dx, R.dropout_backward(dy, p, mask=mask))
    fin = np.isfinite(x)
    assert_close(y[fin], y_ref[fin], "dropout", dtype, name="y")
    assert_close(dx, R.dropout_backward(dy.astype(np.float64), p, mask=mask), "dropout", dtype, name="dx")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_is_the_documented_hash(p, seed):
    shape = (9, 14)
    mask = K.dropout_mask(shape, p, seed)
    assert mask.dtype == np.bool_ and mask.shape == shape
    np.testing.assert_array_equal(mask.reshape(-1), _documented_mask(mask.size, p, seed))
    big = 2**64 + seed  # seeds are taken mod 2**64
    np.testing.assert_array_equal(K.dropout_mask(shape, p, big), mask)
    np.testing.assert_array_equal(K.dropout_mask(5, p, 2**63 + seed).reshape(-1), _documented_mask(5, p, 2**63 + seed))


def test_mask_decides_exactly_at_the_draw():
    # p a half step of 2**-53 above element 0's draw u drops it, p = u keeps it (u >= p): the
    # threshold is ceil(p * 2**53) exactly, off by one nowhere (random p land on the edge with odds 2**-53)
    seed = next(s for s in range(64) if _documented_bits(0, s) < 2**52)  # room for the half step in p
    bits = _documented_bits(0, seed)
    assert not K.dropout_mask(1, (bits + 0.5) / 2**53, seed)[0]
    assert K.dropout_mask(1, bits / 2**53, seed)[0]
    assert K.dropout_mask(1, (bits - 0.5) / 2**53, seed)[0]


def test_seed_reproducible_different_seeds_differ_thread_count_free(seed):
    shape = (31, 1001)
    a = K.dropout_mask(shape, 0.5, seed)
    np.testing.assert_array_equal(a, K.dropout_mask(shape, 0.5, seed))
    assert (a != K.dropout_mask(shape, 0.5, seed + 1)).mean() > 0.4  # independent masks differ in ~half
    x = np.ones(shape, dtype=np.float32)
    y = K.dropout_forward(x, 0.5, seed=seed)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(K.dropout_mask(shape, 0.5, seed), a)
        np.testing.assert_array_equal(K.dropout_forward(x, 0.5, seed=seed), y)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction_and_independence(p, seed):
    shape = (1000, 1000)  # 1e6 draws: std of the keep fraction <= 5e-4
    m = K.dropout_mask(shape, p, seed).reshape(-1)
    q = 1 - p
    assert abs(m.mean() - q) < 0.003  # 6 sigma
    # neighbouring counters independent: P(keep i and keep i+1) = q**2 (std <= 5.6e-4)
    assert abs((m[:-1] & m[1:]).mean() - q * q) < 0.003
    # no drift along the counter: each tenth of the array alone (std <= 1.6e-3)
    assert np.all(np.abs(m.reshape(10, -1).mean(axis=1) - q) < 0.01)


@pytest.mark.parametrize("dtype", DTYPES)
def test_seeded_forward_backward_use_dropout_mask(dtype, gen, seed):
    p = _p(gen)
    x = randn((37, 29), gen, dtype=dtype)
    dy = randn(x.shape, gen, dtype=dtype)
    mask = K.dropout_mask(x.shape, p, seed)
    y = K.dropout_forward(x, p, seed=seed)
    dx = K.dropout_backward(dy, p, seed=seed)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    assert_close(y, np.where(mask, x64 / (1 - p), 0.0), "dropout", dtype, name="y")
    assert_close(dx, np.where(mask, dy64 / (1 - p), 0.0), "dropout", dtype, name="dx")
    np.testing.assert_array_equal(y, K.dropout_forward(x, p, mask=mask))
    np.testing.assert_array_equal(dx, K.dropout_backward(dy, p, mask=mask))
    assert 0 < mask.mean() < 1


def test_p_zero_identity_p_one_zeros(gen, seed):
    x = randn((5, 7), gen, dtype=np.float32)
    np.testing.assert_array_equal(K.dropout_forward(x, 0.0, seed=seed), x)
    np.testing.assert_array_equal(K.dropout_backward(x, 0, seed=seed), x)
    assert K.dropout_mask(x.shape, 0.0, seed).all()
    assert not K.dropout_mask(x.shape, 1.0, seed).any()
    with np.errstate(divide="raise", invalid="raise"):
        y = K.dropout_forward(x, 1.0, seed=seed)
        dx = K.dropout_backward(x, 1, mask=np.ones(x.shape, dtype=bool))  # even an all-keep mask: no 1/0
    assert np.all(y == 0) and np.all(dx == 0)


def test_non_contiguous_torch_and_odd_shapes(gen, seed):
    base = randn((6, 11), gen)
    x = base.T  # (11, 6) view; counter i is the element's index in x's own C order
    y = K.dropout_forward(x, 0.3, seed=seed)
    np.testing.assert_array_equal(
        y, R.dropout_forward(np.ascontiguousarray(x), 0.3, mask=K.dropout_mask(x.shape, 0.3, seed))
    )
    mask = np.asfortranarray(gen.random(x.shape) >= 0.3)
    np.testing.assert_array_equal(K.dropout_backward(x, 0.3, mask=mask), R.dropout_backward(x, 0.3, mask=mask))
    xt = torch.from_numpy(base.astype(np.float32))
    np.testing.assert_array_equal(
        K.dropout_forward(np.asarray(xt), 0.3, seed=seed), K.dropout_forward(base.astype(np.float32), 0.3, seed=seed)
    )
    assert K.dropout_forward(np.zeros((0, 3)), 0.5, seed=seed).shape == (0, 3)
    s = np.array(2.5)  # 0-d
    assert K.dropout_forward(s, 0.5, seed=seed).item() == (5.0 if K.dropout_mask((), 0.5, seed) else 0.0)


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_bad_input_same_errors_as_reference(gen):
    x = randn((3, 4), gen)
    mask = np.ones(x.shape, dtype=bool)
    for ours, ref in ((K.dropout_forward, R.dropout_forward), (K.dropout_backward, R.dropout_backward)):
        _same_error(ours, ref, x, 1.5, seed=0)
        _same_error(ours, ref, x, -0.1, mask=mask)
        _same_error(ours, ref, x, 0.5, mask=mask, seed=0)
        _same_error(ours, ref, x, 0.5)
        _same_error(ours, ref, x, 0.5, mask=np.ones((4, 3), dtype=bool))
        _same_error(ours, ref, x, 0.5, mask=np.ones(x.shape))
        _same_error(ours, ref, np.ones((3, 4), dtype=np.int32), 0.5, seed=0)
        _same_error(ours, ref, x, 0.5, seed=-1)
        _same_error(ours, ref, x, "0.5", seed=1)
    _same_error(K.dropout_mask, R.dropout_mask, (3,), 2.0, 0)
    _same_error(K.dropout_mask, R.dropout_mask, (3,), 0.5, 1.5)
    _same_error(K.dropout_mask, R.dropout_mask, (3, -1), 0.5, 0)
    _same_error(K.dropout_mask, R.dropout_mask, (3,), 0.5, True)
    with pytest.raises(TypeError, match="x must be float32 or float64"):  # numba computes in float32/64 only
        K.dropout_forward(x.astype(np.float16), 0.5, seed=0)
