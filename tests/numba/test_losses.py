"""Numba losses against the float64 reference: every loss and loss_backward, every reduction,
float32 and float64, odd and multi-chunk shapes, extreme logits, edges, views, torch tensors,
mixed dtypes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import losses as K
from dlgpu.reference import losses as R
from dlgpu.testing import assert_close, assert_ulps, labels, randn, signs, to_numpy, uniform
from dlgpu.testing.extremes import HUBER_D, HUBER_DELTA, HUBER_KNOWN
from dlgpu.testing.loss_inputs import KINKED, LOSSES, kink_inputs, logits_classes, regression_inputs

DTYPES = [np.float32, np.float64]
REDUCTIONS = ("mean", "sum", "none")
OP = "losses"


def cast(t, dtype):
    return t.astype(dtype) if t.dtype.kind == "f" else t


def check_loss(name, y, t, hyper, dtype, gen, reductions=REDUCTIONS):
    """Forward (loss and gradient) and loss_backward of ``name`` in ``dtype`` against the float64 reference."""
    fn = LOSSES[name][0]
    fwd, rfwd = getattr(K, fn), getattr(R, fn)
    y, t = y.astype(dtype), cast(t, dtype)
    for reduction in reductions:
        loss, grad = fwd(y, t, reduction, **hyper)
        want_loss, want_grad = rfwd(to_numpy(y), cast(t, np.float64), reduction, **hyper)
        assert loss.dtype == grad.dtype == dtype and loss.shape == want_loss.shape
        assert grad.shape == y.shape and grad.flags.c_contiguous
        assert_close(loss, want_loss, op=OP, dtype=dtype, name=f"{name} {reduction} loss")
        assert_close(grad, want_grad, op=OP, dtype=dtype, name=f"{name} {reduction} dinput")
        g = randn(loss.shape, gen) if reduction == "none" else np.asarray(gen.uniform(-2.0, 2.0))
        d = K.loss_backward(g.astype(dtype), grad, reduction)
        assert d.dtype == dtype
        want = R.loss_backward(to_numpy(g.astype(dtype)), to_numpy(grad), reduction)
        assert_close(d, want, op=OP, dtype=dtype, name=f"{name} {reduction} loss_backward")


# --------------------------------------------------------------------- reference


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_reference(name, dtype, gen):
    _, make, k_class = LOSSES[name]
    if k_class:  # rows not a multiple of the 16-row work item, K not of the 8 lanes
        shapes = [(int(gen.integers(1, 40)), int(gen.integers(1, 60))), (37, 1003)]
    else:  # odd shapes, and one spanning several 8192-element chunks
        shapes = [tuple(int(s) for s in gen.integers(1, 12, size=int(gen.integers(1, 4)))), (3, 5507)]
    for shape in shapes:
        y, t, hyper = make(shape, gen)
        check_loss(name, y, t, hyper, dtype, gen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", KINKED)
def test_subgradient_on_the_kink_like_reference(name, dtype, gen):
    y, t, hyper = kink_inputs(name, (7, 9), gen)  # many terms exactly on the kink: subgradient 0
    check_loss(name, y, t, hyper, dtype, gen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_row_maximum_anywhere_in_a_long_row(dtype, gen):
    # rows of 19 (two blocks of 8 lanes and a tail of 3) with one huge logit at each position in turn:
    # the row maximum that keeps exp's argument <= 0 must see every lane and every tail element
    y = randn((19, 19), gen)
    y[np.arange(19), np.arange(19)] = 1e4
    check_loss("cross_entropy", y, labels(19, 19, gen), {}, dtype, gen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_and_wide_logits(dtype, gen):
    y = np.array([[1e4, -1e4, 0.5], [-1e4, 1e4, 1e4], [3.0, -1e4, 1e4], [1e4, 2.0, -3.0], [-1e4, -1e4, -1e4]])
    t = np.array([1, 2, 0, 0, 2])
    check_loss("cross_entropy", y, t, {}, dtype, gen)
    masked = np.array([[-np.inf, 2.0, 1.0], [0.5, -np.inf, -np.inf]])  # masked-out classes: exp(-inf) = 0
    check_loss("cross_entropy", masked, np.array([1, 0]), {}, dtype, gen)
    loss, grad = K.cross_entropy_forward(y.astype(dtype), t, "none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and loss.max() >= 1e4
    # shifted logits across exp's whole range, down through float32's and float64's underflow
    wide = gen.uniform(-800.0, 0.0, (9, 301))
    wide[:, :40] = gen.uniform(-90.0, -80.0, (9, 40))
    wide[:, 0] = 0.0
    check_loss("cross_entropy", wide, labels(9, 301, gen), {}, dtype, gen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_logit_and_probability_edges(dtype, gen):
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1e-30])
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.7, 1.0, 1.0])
    check_loss("binary_cross_entropy", y, t, {}, dtype, gen)
    assert K.binary_cross_entropy_forward(y.astype(dtype), t.astype(dtype), "none")[0].max() == 100.0
    x = np.array([[1e4, -1e4, 1e4], [-1e4, 0.5, -2.0]])
    q = np.array([[0.0, 1.0, 1.0], [0.25, 1.0, 0.0]])
    check_loss("binary_cross_entropy_with_logits", x, q, {}, dtype, gen)


def test_nan_propagates_like_reference(gen):
    y, t, _ = logits_classes((4, 7), gen)
    y[1, 3] = np.nan
    loss, grad = K.cross_entropy_forward(y, t, "none")
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[[0, 2, 3]]))
    x, r, _ = regression_inputs((3, 4), gen)
    x[2, 1] = np.nan
    for fn in ("mse_loss_forward", "l1_loss_forward", "pseudo_huber_loss_forward"):
        loss, grad = getattr(K, fn)(x, r, "none")
        want_loss, want_grad = getattr(R, fn)(x, r, "none")
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(want_loss))
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(want_grad))
        assert np.isnan(getattr(K, fn)(x, r, "mean")[0])


# ------------------------------------------------------------- layouts and types


def test_noncontiguous_torch_and_mixed_dtype_inputs(gen):
    base, target = randn((11, 6), gen), randn((6, 11), gen)
    y = base.T  # 6,11 view, not contiguous
    want = R.mse_loss_forward(y, target, "none")
    for got in (K.mse_loss_forward(y, target, "none"), K.mse_loss_forward(torch.from_numpy(base).T, target, "none")):
        assert_close(got[0], want[0], op=OP)
        assert_close(got[1], want[1], op=OP)
    logits, t, _ = logits_classes((7, 5), gen)
    got = K.cross_entropy_forward(torch.from_numpy(logits), torch.from_numpy(t).int(), "sum")
    want = R.cross_entropy_forward(logits, t, "sum")
    assert_close(got[0], want[0], op=OP)
    assert_close(got[1], want[1], op=OP)
    g = randn((7,), gen)
    assert_close(K.loss_backward(torch.from_numpy(g), got[1], "none"), R.loss_backward(g, want[1], "none"), op=OP)
    # as the reference: the target (and grad_output) are cast to the input's dtype
    for name in ("hinge", "binary_cross_entropy", "pseudo_huber"):
        fn = LOSSES[name][0]
        y, t, hyper = LOSSES[name][1]((5, 9), gen)
        loss, grad = getattr(K, fn)(y.astype(np.float32), t, "mean", **hyper)
        want_loss, want_grad = getattr(R, fn)(y.astype(np.float32), t, "mean", **hyper)
        assert loss.dtype == grad.dtype == np.float32
        assert_close(loss, want_loss, op=OP, dtype="float32")
        assert_close(grad, want_grad, op=OP, dtype="float32")
    d = K.loss_backward(np.float64(0.5), grad, "sum")
    assert d.dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        K.mse_loss_forward(y.astype(np.float16), t)


# -------------------------------------------------------------------- bad input


def _raises_like_reference(case):
    with pytest.raises((ValueError, TypeError)) as want:
        case(R)
    with pytest.raises(want.type) as got:
        case(K)
    assert str(got.value) == str(want.value)


def test_bad_input_raises_like_reference(gen):
    y, t = randn((4, 3), gen), signs((4, 3), gen)
    p, q = uniform((4, 3), gen, 0.1, 0.9), uniform((4, 3), gen, 0.1, 0.9)
    logits, c = randn((4, 3), gen), labels(4, 3, gen)
    near = np.where(np.arange(12).reshape(4, 3) == 7, 1 + 1e-12, t)  # rounds onto +1 in float32
    cases = [
        lambda m: m.mse_loss_forward(y, t, "avg"),
        lambda m: m.l1_loss_forward(y, t[:-1]),
        lambda m: m.mse_loss_forward(np.ones((4, 3), dtype=np.int64), t),
        lambda m: m.mse_loss_forward(y, np.ones((4, 3), dtype=np.int64)),
        lambda m: m.mse_loss_forward(y[:0], t[:0]),
        lambda m: m.mse_loss_forward([1.0, 2.0], [1.0, 2.0]),
        lambda m: m.hinge_loss_forward(y, np.where(np.arange(12).reshape(4, 3) == 5, 0.5, t)),
        lambda m: m.squared_hinge_loss_forward(y, np.where(np.arange(12).reshape(4, 3) == 9, np.nan, t)),
        lambda m: m.hinge_loss_forward(y.astype(np.float32), near),
        lambda m: m.binary_cross_entropy_forward(np.where(p > 0.5, 1.5, p), np.where(q > 0.5, -0.1, q)),
        lambda m: m.binary_cross_entropy_forward(p, np.where(q > 0.5, np.nan, q)),
        lambda m: m.binary_cross_entropy_with_logits_forward(y, np.where(q > 0.5, 1.5, q)),
        lambda m: m.binary_cross_entropy_with_logits_forward(y.astype(np.float32), np.where(q > 0.5, -1e-50, q)),
        lambda m: m.pseudo_huber_loss_forward(y, y + 1, delta=0.0),
        lambda m: m.pseudo_huber_loss_forward(y, y + 1, delta="1"),
        lambda m: m.pseudo_huber_loss_forward(y, y[:2], delta=-1.0),  # the shape is checked first
        lambda m: m.cross_entropy_forward(randn((4, 3, 2), gen), c),
        lambda m: m.cross_entropy_forward(logits, c[:, None]),
        lambda m: m.cross_entropy_forward(logits, c.astype(np.float64)),
        lambda m: m.multiclass_hinge_loss_forward(logits, np.where(np.arange(4) == 2, 3, c)),
        lambda m: m.multiclass_squared_hinge_loss_forward(logits, np.where(np.arange(4) == 1, -1, c)),
        lambda m: m.loss_backward(randn((4,), gen), logits, "mean"),
        lambda m: m.loss_backward(randn((3,), gen), logits, "none"),
        lambda m: m.loss_backward(randn((4, 1, 3), gen), logits, "none"),
        lambda m: m.loss_backward(1.0, logits, "avg"),
        lambda m: m.loss_backward(1.0, c, "sum"),
        # grad_output that is not a number: a TypeError naming it, never all-NaN gradients
        lambda m: m.loss_backward(None, logits, "mean"),
        lambda m: m.loss_backward("1.0", logits, "sum"),
        lambda m: m.loss_backward(True, logits, "sum"),
        lambda m: m.loss_backward(np.array(None), logits, "mean"),
        lambda m: m.loss_backward(None, logits, "none"),
        lambda m: m.loss_backward(np.full((4, 3), None), logits, "none"),
        lambda m: m.loss_backward(np.full((4,), "a"), logits, "none"),
    ]
    for case in cases:
        _raises_like_reference(case)


def test_loss_backward_grad_output_kinds(gen):
    grad = randn((4, 3), gen, dtype=np.float32)
    with pytest.raises(TypeError, match="grad_output must be a number or a 0-d array, got NoneType"):
        K.loss_backward(None, grad, "mean")
    with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got object"):
        K.loss_backward(np.full((4, 3), None), grad, "none")
    # legal: Python and numpy numbers, 0-d arrays and tensors (integer or float); arrays for "none"
    for ok in (2, 2.0, np.float32(2.0), np.int64(2), np.asarray(2.0), np.asarray(2), torch.tensor(2.0)):
        for reduction in ("mean", "sum"):
            np.testing.assert_array_equal(K.loss_backward(ok, grad, reduction), 2 * grad)
    for ok in (np.full((4,), 2), torch.full((4, 3), 2.0), np.full((4, 3), 2.0)):
        np.testing.assert_array_equal(K.loss_backward(ok, grad, "none"), 2 * grad)


# ---------------------------------------------------------------- extreme values


@pytest.mark.parametrize("dtype", DTYPES)
def test_pseudo_huber_extreme_values(dtype):
    # the float64 reference (checked against exact decimal arithmetic in tests/reference) on the same
    # values, rounded to dtype: (d/delta)^2 over- or underflows in most pairs, as does float64's at 1e300
    d = np.array(HUBER_D + ((1e300, -1e-300) if dtype == np.float64 else ()), dtype=dtype)
    for delta in HUBER_DELTA + ((1e-300, 1e300) if dtype == np.float64 else ()):
        delta_d = float(dtype(delta))  # what the kernel computes with
        with np.errstate(over="ignore"):  # the float64 reference's own overflow at 1e300 x 1e300 (inf)
            want_loss, want_grad = R.pseudo_huber_loss_forward(to_numpy(d), np.zeros(d.size), "none", delta=delta_d)
        loss, grad = K.pseudo_huber_loss_forward(d, np.zeros_like(d), "none", delta=delta_d)
        assert_ulps(loss, want_loss, dtype, f"loss delta={delta}")
        assert_ulps(grad, want_grad, dtype, f"grad delta={delta}")
        assert grad[14] == dtype(delta_d) and grad[15] == -dtype(delta_d)  # d = +-inf: the slope +-delta
        fin = d[np.isfinite(d)]
        with np.errstate(over="ignore"):  # a float32 sum past 3.4e38 is inf: both warn in the cast
            want_sum = R.pseudo_huber_loss_forward(to_numpy(fin), np.zeros(fin.size), "sum", delta=delta_d)[0]
            got_sum = K.pseudo_huber_loss_forward(fin, np.zeros_like(fin), "sum", delta=delta_d)[0]
        assert_ulps(got_sum, want_sum, dtype, f"sum delta={delta}")
    # the cases the textbook form got wrong in float32 (NaN loss, 0 gradient)
    one = np.ones(1, dtype)
    for dv, delta, want_loss, want_grad in HUBER_KNOWN:
        loss, grad = K.pseudo_huber_loss_forward(one * dtype(dv), 0 * one, "none", delta=delta)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_infinite_logits(dtype, gen):
    x = np.array([np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf, 3.0, -1e4, np.nan], dtype)
    t = np.array([0.0, 1.0, 0.3, 0.0, 1.0, 0.3, 0.5, 1.0, 0.0], dtype)
    loss, grad = K.binary_cross_entropy_with_logits_forward(x, t, "none")
    # (1 - t) x at +inf, -t x at -inf: inf unless the weight is 0, never inf - inf = NaN
    np.testing.assert_array_equal(loss[:6], np.array([np.inf, 0.0, np.inf, 0.0, np.inf, np.inf], dtype))
    np.testing.assert_array_equal(grad[:6], np.array([1.0, 0.0, 1.0, 0.0, -1.0, 0.0], dtype) - [0, 0, t[2], 0, 0, t[5]])
    assert np.isnan(loss[8]) and np.isnan(grad[8])
    want_loss, want_grad = R.binary_cross_entropy_with_logits_forward(to_numpy(x), to_numpy(t), "none")
    assert_ulps(loss, want_loss, dtype, "loss", ulps=64)  # -1e4 t: the reference's own rounding
    assert_ulps(grad, want_grad, dtype, "grad")
    for reduction in ("sum", "mean"):
        assert K.binary_cross_entropy_with_logits_forward(x[:8], t[:8], reduction)[0] == np.inf
        got = K.binary_cross_entropy_with_logits_forward(x[[1, 3, 6]], t[[1, 3, 6]], reduction)[0]
        want = R.binary_cross_entropy_with_logits_forward(to_numpy(x[[1, 3, 6]]), to_numpy(t[[1, 3, 6]]), reduction)[0]
        assert np.isfinite(got)
        assert_close(got, want, op=OP, dtype=dtype)
