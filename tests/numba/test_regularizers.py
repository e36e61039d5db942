"""Numba regularizers and gradient clipping against the float64 reference: penalties forward and
backward, max-norm, clipping by norm (every norm type) and by value, float32 and float64, odd and
multi-chunk shapes, NaN, views, torch tensors, mixed dtypes, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import regularizers as K
from dlgpu.reference import regularizers as R
from dlgpu.testing import assert_close, assert_ulps, max_norm_exact, randn, to_numpy
from dlgpu.testing.extremes import check_clip_grad_norm, clip_norm_cases, norm_magnitudes, norm_rows

DTYPES = [np.float32, np.float64]
OP = "regularizers"


def odd_shape(gen):
    return tuple(int(s) for s in gen.integers(1, 13, size=int(gen.integers(1, 4))))


def _rows_with_norms(shape, norms, gen):
    """A weight of ``shape`` whose slice o along axis 0 has Euclidean norm norms[o]."""
    w = randn(shape, gen)
    flat = w.reshape(shape[0], -1)
    flat *= (np.asarray(norms) / np.linalg.norm(flat, axis=1))[:, None]
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["l1", "l2"])
def test_penalties_match_reference(name, dtype, gen):
    fwd, bwd = getattr(K, f"{name}_penalty_forward"), getattr(K, f"{name}_penalty_backward")
    rfwd, rbwd = getattr(R, f"{name}_penalty_forward"), getattr(R, f"{name}_penalty_backward")
    lam, g = float(gen.uniform(0.1, 2.0)), float(gen.uniform(-2.0, 2.0))
    for shape in (odd_shape(gen), (130, 131)):  # the second spans several reduction chunks
        w = randn(shape, gen, scale=2.0, dtype=dtype)
        w.reshape(-1)[0] = 0.0  # L1's subgradient at 0
        p = fwd(w, lam)
        assert isinstance(p, np.ndarray) and p.shape == () and p.dtype == dtype
        assert_close(p, rfwd(to_numpy(w), lam), op=OP, dtype=dtype, name=f"{name} penalty")
        for grad_output in ((), (g,), (np.asarray(g),)):
            dw = bwd(w, lam, *grad_output)
            assert dw.dtype == dtype and dw.shape == w.shape
            assert_close(dw, rbwd(to_numpy(w), lam, *grad_output), op=OP, dtype=dtype, name=f"{name} dweight")
        assert bwd(w, lam).reshape(-1)[0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_matches_reference(dtype, gen):
    c = float(gen.uniform(0.5, 2.0))
    ratios = gen.permutation([0.0, 0.3, 0.7, 0.95, 1.05, 1.5, 3.0, 10.0])  # row norm / c; a zero row
    for shape in ((8, int(gen.integers(1, 30))), (8, 3, 3, 2), (8, 4100)):
        w = _rows_with_norms(shape, ratios * c, gen).astype(dtype)
        w0 = w.copy()
        out = K.max_norm_forward(w, c)
        assert out.dtype == dtype and out.shape == w.shape and out is not w
        np.testing.assert_array_equal(w, w0)  # input untouched
        want = R.max_norm_forward(to_numpy(w), c)
        assert_close(out, want, op=OP, dtype=dtype, name="max_norm")
        keep = np.linalg.norm(to_numpy(w).reshape(8, -1), axis=1) <= c * 0.99
        np.testing.assert_array_equal(out.reshape(8, -1)[keep], w.reshape(8, -1)[keep])  # bit for bit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_reference(norm_type, dtype, gen):
    shapes = [odd_shape(gen), (7,), (2, 3, 2), (150, 120)]
    grads = [randn(s, gen, scale=float(gen.uniform(0.5, 3.0)), dtype=dtype) for s in shapes]
    copies = [g.copy() for g in grads]
    total64 = np.linalg.norm(np.concatenate([to_numpy(g).ravel() for g in grads]), ord=norm_type)
    for max_norm in (total64 * gen.uniform(0.2, 0.8), total64 * gen.uniform(1.2, 3.0)):
        out, total = K.clip_grad_norm_forward(grads, max_norm, norm_type)
        want_out, want_total = R.clip_grad_norm_forward([to_numpy(g) for g in grads], max_norm, norm_type)
        assert isinstance(total, np.ndarray) and total.shape == () and total.dtype == dtype
        assert_close(total, want_total, op=OP, dtype=dtype, name="total_norm")
        for i, (o, w) in enumerate(zip(out, want_out)):
            assert o.dtype == dtype and o.shape == w.shape
            assert_close(o, w, op=OP, dtype=dtype, name=f"clipped grads[{i}]")
        for g, c in zip(grads, copies):
            np.testing.assert_array_equal(g, c)  # inputs untouched
    for o, g in zip(out, grads):  # the last max_norm does not clip: unchanged bit for bit
        np.testing.assert_array_equal(o, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_reference(dtype, gen):
    g = randn(odd_shape(gen) + (3,), gen, scale=2.0, dtype=dtype)
    g.reshape(-1)[:2] = (5.0, -5.0)  # at least one entry clipped on each side
    c = float(gen.uniform(0.3, 1.5))
    out = K.clip_grad_value_forward(g, c)
    assert out.dtype == dtype and out is not g
    assert_close(out, R.clip_grad_value_forward(to_numpy(g), c), op=OP, dtype=dtype, name="clip_grad_value")
    assert out.reshape(-1)[0] == dtype(c) and out.reshape(-1)[1] == -dtype(c)


def test_nan_propagates_like_reference(gen):
    g = randn((5, 6), gen)
    g[3, 2] = np.nan
    np.testing.assert_array_equal(np.isnan(K.clip_grad_value_forward(g, 0.5)), np.isnan(g))
    assert np.isnan(K.l1_penalty_forward(g, 0.5)) and np.isnan(K.l2_penalty_backward(g, 0.5)[3, 2])
    for norm_type in (2.0, 1.0, float("inf")):
        out, total = K.clip_grad_norm_forward([randn((4,), gen), g], 1.0, norm_type)
        want_out, want_total = R.clip_grad_norm_forward([randn((4,), gen), g], 1.0, norm_type)
        assert np.isnan(total) and np.isnan(want_total)
        np.testing.assert_array_equal(np.isnan(out[1]), np.isnan(want_out[1]))


def test_noncontiguous_torch_and_empty_inputs(gen):
    base = randn((9, 7), gen)
    w = base.T  # 7,9 view, not contiguous
    assert_close(K.max_norm_forward(w, 1.0), R.max_norm_forward(w, 1.0), op=OP)
    assert_close(K.l1_penalty_backward(w, 0.3, 2.0), R.l1_penalty_backward(w, 0.3, 2.0), op=OP)
    wt = torch.from_numpy(base).T
    assert_close(K.l2_penalty_forward(wt, 0.3), R.l2_penalty_forward(w, 0.3), op=OP)
    assert_close(K.clip_grad_value_forward(wt, 0.5), R.clip_grad_value_forward(w, 0.5), op=OP)
    grads = [wt, torch.from_numpy(randn((5,), gen))]
    out, total = K.clip_grad_norm_forward(grads, 1.0)
    want_out, want_total = R.clip_grad_norm_forward([g.numpy() for g in grads], 1.0)
    assert_close(total, want_total, op=OP)
    for o, want in zip(out, want_out):
        assert_close(o, want, op=OP)
    for norm_type in (2.0, 1.0, float("inf")):
        out, total = K.clip_grad_norm_forward([np.ones((0, 3)), np.ones(2)], 1.0, norm_type)
        assert_close(total, R.clip_grad_norm_forward([np.ones((0, 3)), np.ones(2)], 1.0, norm_type)[1], op=OP)
        assert out[0].shape == (0, 3)
    assert K.max_norm_forward(np.ones((0, 3)), 1.0).shape == (0, 3)
    assert K.l2_penalty_forward(np.ones((0,)), 1.0) == 0.0


def test_bad_input_raises_like_reference(gen):
    w = randn((4, 3), gen)
    cases = [
        lambda m: m.l1_penalty_forward(np.arange(4), 0.1),
        lambda m: m.l2_penalty_forward(w, -0.1),
        lambda m: m.l2_penalty_backward(w, 0.1, np.ones(2)),
        lambda m: m.l1_penalty_backward(w, "0.1"),
        lambda m: m.max_norm_forward(randn((5,), gen), 1.0),
        lambda m: m.max_norm_forward(w, 0.0),
        lambda m: m.clip_grad_norm_forward(w, 1.0),
        lambda m: m.clip_grad_norm_forward([], 1.0),
        lambda m: m.clip_grad_norm_forward([w, np.arange(3)], 1.0),
        lambda m: m.clip_grad_norm_forward([w], 1.0, norm_type=3.0),
        lambda m: m.clip_grad_norm_forward([w], np.inf),
        lambda m: m.clip_grad_value_forward(w, -1.0),
        lambda m: m.clip_grad_value_forward([1.0, 2.0], 1.0),
        # grad_output that is not a number: a TypeError naming it, never all-NaN gradients
        lambda m: m.l1_penalty_backward(w, 0.1, None),
        lambda m: m.l2_penalty_backward(w, 0.1, None),
        lambda m: m.l2_penalty_backward(w, 0.1, "1.0"),
        lambda m: m.l1_penalty_backward(w, 0.1, np.array(None)),
        lambda m: m.l1_penalty_backward(w, 0.1, True),
    ]
    for case in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            case(R)
        with pytest.raises(want.type) as got:
            case(K)
        assert str(got.value) == str(want.value)


def test_mixed_and_unsupported_dtypes_raise_type_error(gen):
    g32, g64 = randn((4, 3), gen, dtype=np.float32), randn((5,), gen)
    with pytest.raises(TypeError, match=r"grads\[1\] must have the dtype of grads\[0\]"):
        K.clip_grad_norm_forward([g32, g64], 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.l2_penalty_forward(g32.astype(np.float16), 0.1)


def test_penalty_backward_grad_output_kinds(gen):
    w = randn((4, 3), gen, dtype=np.float32)
    for fn in (K.l1_penalty_backward, K.l2_penalty_backward):
        with pytest.raises(TypeError, match="grad_output must be a number or a 0-d array, got NoneType"):
            fn(w, 0.5, None)
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got object"):
            fn(w, 0.5, np.array(None))
        want = fn(w, 0.5, 2.0)
        assert np.all(np.isfinite(want))
        for ok in (2, np.float32(2.0), np.int64(2), np.asarray(2.0), np.asarray(2), torch.tensor(2.0)):
            np.testing.assert_array_equal(fn(w, 0.5, ok), want)


# ------------------------------------------------------ norms at extreme magnitudes


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_rows_at_extreme_magnitudes(dtype):
    # squares of these overflow (1e20, 3e38) or underflow (1e-30) float32; float64 rows need 1e200 / 1e-200
    small = norm_magnitudes(dtype)[1]
    w = np.array(norm_rows(dtype)).astype(dtype)
    for c, rows_moved in ((1.0, [0, 3, 4]), (small / 10, [0, 1, 2, 3, 4, 5]), (0.25, [0, 3, 4, 5])):
        c_d = float(dtype(c))
        out = K.max_norm_forward(w, c)
        ref = R.max_norm_forward(to_numpy(w), c_d)
        exact = max_norm_exact(to_numpy(w), c_d)
        assert_ulps(out, exact, dtype, f"numba c={c}")
        assert_ulps(ref, exact, np.float64, f"reference c={c}", ulps=4)
        assert_ulps(R.max_norm_forward(w, c), exact, dtype, f"reference {np.dtype(dtype).name} c={c}", ulps=4)
        moved = np.isin(np.arange(6), rows_moved)
        assert np.array_equal(moved, [math.hypot(*row) > c_d for row in to_numpy(w)])
        norms = np.array([math.hypot(*row) for row in to_numpy(out)])
        np.testing.assert_allclose(norms[moved], c_d, rtol=1e-6)  # not zeroed (overflow), not left (underflow)
        np.testing.assert_array_equal(out[~moved], w[~moved])  # bit for bit


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_zero_nan_inf_rows_like_reference(dtype):
    tiny = 1e-320 if dtype == np.float64 else 1e-45
    w = np.array([[0.0, 0.0], [np.nan, 1.0], [np.inf, 1.0], [tiny, 0.0], [np.inf, np.nan], [0.0, np.nan]], dtype)
    with np.errstate(invalid="ignore"):  # inf * 0 in the inf row, as the reference's
        out, ref = K.max_norm_forward(w, 1e-3), R.max_norm_forward(w, 1e-3)
    np.testing.assert_array_equal(out, ref)
    # zero, NaN (norm NaN, not > c, also beside an inf or only zeros) and tiny rows stay
    np.testing.assert_array_equal(out[[0, 1, 3, 4, 5]], w[[0, 1, 3, 4, 5]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_at_extreme_magnitudes(dtype):
    for grads, max_norm in clip_norm_cases(dtype):
        grads = [g.astype(dtype) for g in grads]
        out, total = K.clip_grad_norm_forward(grads, max_norm, 2.0)
        check_clip_grad_norm(out, total, grads, max_norm, dtype, "numba")
        ref_out, ref_total = R.clip_grad_norm_forward(grads, max_norm, 2.0)
        check_clip_grad_norm(ref_out, ref_total, grads, max_norm, dtype, "reference", ulps=4)
