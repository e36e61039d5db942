"""Reference losses: finite differences, torch (float64), extreme logits, loss_backward, bad input."""

from __future__ import annotations

import decimal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import losses as Lo
from dlgpu.testing import Tolerance, assert_close, assert_ulps, check_gradients, randn, signs, uniform
from dlgpu.testing.extremes import HUBER_D_FINITE, HUBER_DELTA, HUBER_KNOWN
from dlgpu.testing.loss_inputs import (
    KINKED,
    bce_inputs,
    hinge_inputs,
    huber_inputs,
    kink_inputs,
    logit_inputs,
    logits_classes,
    margin_inputs,
    regression_inputs,
)

REDUCTIONS = ("mean", "sum", "none")

# --------------------------------------------------------------- torch versions


def _torch_reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _t_hinge(y, t, r):  # F.hinge_embedding_loss is a different loss: the formula in torch ops
    return _torch_reduce(F.relu(1 - y * t), r)


def _t_squared_hinge(y, t, r):
    return _torch_reduce(F.relu(1 - y * t) ** 2, r)


def _t_pseudo_huber(y, t, r, delta):
    return _torch_reduce(delta**2 * (torch.sqrt(1 + ((y - t) / delta) ** 2) - 1), r)


def _t_multi_margin(p):
    return lambda y, t, r: F.multi_margin_loss(y, t, p=p, reduction=r) * y.shape[1]  # torch divides by K


LOSSES = {
    # name: (our forward, torch version (input, target, reduction, **hyper), input maker, K-class?)
    "hinge": (Lo.hinge_loss_forward, _t_hinge, hinge_inputs, False),
    "squared_hinge": (Lo.squared_hinge_loss_forward, _t_squared_hinge, hinge_inputs, False),
    "binary_cross_entropy": (
        Lo.binary_cross_entropy_forward,
        lambda y, t, r: F.binary_cross_entropy(y, t, reduction=r),
        bce_inputs,
        False,
    ),
    "binary_cross_entropy_with_logits": (
        Lo.binary_cross_entropy_with_logits_forward,
        lambda y, t, r: F.binary_cross_entropy_with_logits(y, t, reduction=r),
        logit_inputs,
        False,
    ),
    "multiclass_hinge": (Lo.multiclass_hinge_loss_forward, _t_multi_margin(1), margin_inputs, True),
    "multiclass_squared_hinge": (Lo.multiclass_squared_hinge_loss_forward, _t_multi_margin(2), margin_inputs, True),
    "cross_entropy": (
        Lo.cross_entropy_forward,
        lambda y, t, r: F.cross_entropy(y, t, reduction=r),
        logits_classes,
        True,
    ),
    "mse": (Lo.mse_loss_forward, lambda y, t, r: F.mse_loss(y, t, reduction=r), regression_inputs, False),
    "l1": (Lo.l1_loss_forward, lambda y, t, r: F.l1_loss(y, t, reduction=r), regression_inputs, False),
    "pseudo_huber": (Lo.pseudo_huber_loss_forward, _t_pseudo_huber, huber_inputs, False),
}


def _loss_shape(shape, k_class):
    return shape[:1] if k_class else shape


# ------------------------------------------------------------ finite differences


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_differences(name, reduction, gen):
    fwd, _, make, k_class = LOSSES[name]
    shape = (5, 7) if k_class else (3, 5)
    y, t, hyper = make(shape, gen)
    loss, grad = fwd(y, t, reduction, **hyper)
    assert grad.shape == y.shape
    if reduction == "none":
        assert loss.shape == _loss_shape(shape, k_class)
        g = randn(loss.shape, gen)
        analytic = Lo.loss_backward(g, grad, "none")
    else:
        assert loss.shape == ()
        g, analytic = 1.0, grad
    check_gradients(lambda: fwd(y, t, reduction, **hyper)[0], {"input": y}, {"input": analytic}, g)


# ----------------------------------------------------------------------- torch


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_torch(name, reduction, gen):
    fwd, tfn, make, k_class = LOSSES[name]
    shape = (13, 7) if k_class else (3, 11, 5)
    y, t, hyper = make(shape, gen)
    loss, grad = fwd(y, t, reduction, **hyper)
    # a random upstream gradient, through loss_backward on our side and autograd on torch's
    g = randn(loss.shape, gen) if reduction == "none" else np.asarray(gen.uniform(0.5, 2.0))
    yt = torch.tensor(y, requires_grad=True)
    lt = tfn(yt, torch.tensor(t), reduction, **hyper)
    lt.backward(torch.tensor(g))
    assert_close(loss, lt, name, "float64", name=f"{name} loss")
    assert_close(Lo.loss_backward(g, grad, reduction), yt.grad, name, "float64", name=f"{name} dinput")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", KINKED)
def test_subgradient_on_the_kink_matches_torch(name, reduction, gen):
    # the inputs above keep away from the kinks; here many terms sit exactly on one, where the
    # documented subgradient is 0 (torch's relu' and sign at 0 too), not the one-sided derivative
    fwd, tfn, _, k_class = LOSSES[name]
    y, t, _ = kink_inputs(name, (6, 5), gen)
    if name == "multiclass_hinge":
        kink = 1 - (y[np.arange(len(t)), t][:, None] - y)  # N,K margins (1 at j = t)
    else:
        kink = 1 - y * t if name == "hinge" else y - t
    assert np.any(kink == 0)  # the kink is really hit
    loss, grad = fwd(y, t, reduction)
    g = randn(loss.shape, gen) if reduction == "none" else np.asarray(gen.uniform(0.5, 2.0))
    yt = torch.tensor(y, requires_grad=True)
    tfn(yt, torch.tensor(t), reduction).backward(torch.tensor(g))
    assert_close(Lo.loss_backward(g, grad, reduction), yt.grad, name, "float64", name=f"{name} dinput")


def test_binary_cross_entropy_edges_match_torch():
    # y = 0 or 1 exactly: torch clamps each log at -100 and the gradient's denominator at 1e-12
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1e-30])
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.7, 1.0, 1.0])
    loss, grad = Lo.binary_cross_entropy_forward(y, t, "none")
    yt = torch.tensor(y, requires_grad=True)
    lt = F.binary_cross_entropy(yt, torch.tensor(t), reduction="none")
    lt.backward(torch.ones_like(lt))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert loss.max() == 100.0
    assert_close(loss, lt, name="bce edge loss")
    # torch's gradient clamp is the float32 constant 1e-12 (9.99999996e-13) even in float64; ours is 1e-12
    assert_close(grad, yt.grad, name="bce edge dinput", tol=Tolerance(1e-8, 0.0))
    assert grad[1] == -1e12 and grad[0] == 0.0  # (0 - 1) / 1e-12 and (0 - 0) / 1e-12


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits"])
def test_extreme_logits(name, reduction, gen):
    fwd, tfn, _, k_class = LOSSES[name]
    if k_class:
        y = np.array([[1e4, -1e4, 0.5], [-1e4, 1e4, 1e4], [3.0, -1e4, 1e4], [1e4, 2.0, -3.0]])
        t = np.array([1, 2, 0, 0])
    else:
        y = np.array([[1e4, -1e4, 1e4], [-1e4, 0.5, -2.0]])
        t = np.array([[0.0, 1.0, 1.0], [0.25, 1.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, grad = fwd(y, t, reduction)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert float(np.max(fwd(y, t, "none")[0])) >= 1e4  # a confidently wrong logit costs ~|y|: not 0, not inf
    yt = torch.tensor(y, requires_grad=True)
    lt = tfn(yt, torch.tensor(t), reduction)
    lt.backward(torch.ones_like(lt))
    assert_close(loss, lt, name, name=f"{name} loss")
    assert_close(grad, yt.grad, name, name=f"{name} dinput")


# ----------------------------------------------------------------- loss_backward


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_backward_scales_saved_gradient(reduction, gen):
    y, t, _ = logits_classes((5, 3), gen)
    _, grad = Lo.cross_entropy_forward(y, t, reduction)
    if reduction == "none":
        g = randn((5,), gen)
        want = grad * g[:, None]  # broadcast over the class axis
    else:
        g = float(gen.uniform(-2.0, 2.0))
        want = g * grad
    got = Lo.loss_backward(g, grad, reduction)
    assert got.shape == grad.shape
    assert_close(got, want, name="K-class")
    x, r, _ = regression_inputs((3, 4), gen)
    _, grad = Lo.mse_loss_forward(x, r, reduction)
    g = randn((3, 4), gen) if reduction == "none" else np.asarray(gen.uniform(-2.0, 2.0))
    assert_close(Lo.loss_backward(g, grad, reduction), g * grad, name="elementwise")


def test_loss_backward_bad_input(gen):
    grad = randn((4, 3), gen)
    with pytest.raises(ValueError, match="grad_output must be a scalar"):
        Lo.loss_backward(randn((4,), gen), grad, "mean")
    with pytest.raises(ValueError, match="grad_output must have the loss's shape"):
        Lo.loss_backward(randn((3,), gen), grad, "none")
    with pytest.raises(ValueError, match="grad_output must have the loss's shape"):
        Lo.loss_backward(randn((4, 1, 3), gen), grad, "none")
    with pytest.raises(ValueError, match="reduction must be one of"):
        Lo.loss_backward(1.0, grad, "avg")


# ------------------------------------------------------------------------ dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_in_float32_out(name, reduction, gen):
    fwd, _, make, k_class = LOSSES[name]
    y, t, hyper = make((6, 5), gen)
    loss64, grad64 = fwd(y, t, reduction, **hyper)
    # target stays float64 (or int64 for K-class): the input's dtype decides
    loss, grad = fwd(y.astype(np.float32), t, reduction, **hyper)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    assert loss.shape == loss64.shape and grad.shape == grad64.shape
    assert_close(loss, loss64, name, "float32", name=f"{name} loss")
    assert_close(grad, grad64, name, "float32", name=f"{name} dinput")
    g = np.ones(loss.shape, np.float32) if reduction == "none" else np.float32(2.0)
    assert Lo.loss_backward(g, grad, reduction).dtype == np.float32


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_common_bad_input(name, gen):
    fwd, _, make, k_class = LOSSES[name]
    y, t, hyper = make((4, 3), gen)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fwd(y, t, "avg", **hyper)
    with pytest.raises(ValueError, match="target must have"):  # shape mismatch
        fwd(y, t[:-1], **hyper)
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        fwd(np.ones((4, 3), dtype=np.int64), t, **hyper)
    with pytest.raises(ValueError, match="input must not be empty"):
        fwd(y[:0], t[:0], **hyper)
    if k_class:
        with pytest.raises(ValueError, match=r"input must be 2-D \(N, K\)"):
            fwd(randn((4, 3, 2), gen), t, **hyper)
        with pytest.raises(ValueError, match=r"input must be 2-D \(N, K\)"):
            fwd(randn((4,), gen), t, **hyper)
        with pytest.raises(ValueError, match="target must have shape"):
            fwd(y, t[:, None], **hyper)
        with pytest.raises(TypeError, match="target must have an integer dtype"):
            fwd(y, t.astype(np.float64), **hyper)
        for bad in (3, -1):
            with pytest.raises(ValueError, match=r"target class indices must be in \[0, 3\)"):
                fwd(y, np.where(np.arange(4) == 2, bad, t), **hyper)
    else:
        with pytest.raises(TypeError, match="target must have a floating-point dtype"):
            fwd(y, np.ones((4, 3), dtype=np.int64), **hyper)


def test_specific_bad_input(gen):
    y, t = randn((3, 4), gen), signs((3, 4), gen)
    for fwd in (Lo.hinge_loss_forward, Lo.squared_hinge_loss_forward):
        for bad in (0.0, 2.0, 0.5):
            with pytest.raises(ValueError, match=r"target must contain only -1 and \+1"):
                fwd(y, np.where(np.arange(12).reshape(3, 4) == 5, bad, t))
    p, q = uniform((3, 4), gen, 0.1, 0.9), uniform((3, 4), gen, 0.1, 0.9)
    for bad in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"input must be in \[0, 1\]"):
            Lo.binary_cross_entropy_forward(np.where(p > 0.5, bad, p), q)
        with pytest.raises(ValueError, match=r"target must be in \[0, 1\]"):
            Lo.binary_cross_entropy_forward(p, np.where(q > 0.5, bad, q))
        with pytest.raises(ValueError, match=r"target must be in \[0, 1\]"):
            Lo.binary_cross_entropy_with_logits_forward(y, np.where(q > 0.5, bad, q))
    for delta in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="delta must be a positive"):
            Lo.pseudo_huber_loss_forward(y, y + 1, delta=delta)
    with pytest.raises(TypeError, match="delta must be a positive number"):
        Lo.pseudo_huber_loss_forward(y, y + 1, delta="1")


# ------------------------------------------------- pseudo-Huber at extreme values


def _huber_exact(d: float, delta: float) -> tuple[float, float]:
    """Loss and gradient of one element in 60-digit decimal arithmetic (no overflow, no underflow),
    rounded to float64: L = d^2 / (h + 1) (= delta^2 (h - 1) without its cancellation), dL/dd = d / h,
    h = sqrt(1 + (d/delta)^2)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        dd, dl = decimal.Decimal(d), decimal.Decimal(delta)
        h = (1 + (dd / dl) ** 2).sqrt()
        return float(dd * dd / (h + 1)), float(dd / h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pseudo_huber_extreme_values_match_exact(dtype):
    # |d| across float32's range (subnormal to near max, both signs, zero) against deltas from 1e-30 to
    # 3e38: the textbook (d/delta)^2 overflows or underflows in most of these pairs
    d = np.array(HUBER_D_FINITE, dtype=dtype)
    for delta in HUBER_DELTA:
        delta_d = float(dtype(delta))  # the loss computes with delta in input's dtype
        exact = [_huber_exact(float(v), delta_d) for v in d]
        # no 0/0, inf/inf or inf - inf inside; overflow only where the loss itself exceeds float32 (3e38 x 1e20)
        with np.errstate(over="ignore" if delta_d * 3e38 > 3e38 else "raise", invalid="raise", divide="raise"):
            loss, grad = Lo.pseudo_huber_loss_forward(d, np.zeros_like(d), "none", delta=delta_d)
        assert loss.dtype == grad.dtype == dtype
        assert_ulps(loss, [e[0] for e in exact], dtype, f"loss delta={delta}", ulps=4)
        assert_ulps(grad, [e[1] for e in exact], dtype, f"grad delta={delta}", ulps=4)
        assert np.all(loss >= 0)


def test_pseudo_huber_known_asymptotics():
    # the cases the textbook form got wrong in float32 (NaN loss, 0 gradient)
    one = np.ones(1, np.float32)
    for d, delta, want_loss, want_grad in HUBER_KNOWN:  # linear regime, tiny delta, quadratic regime
        loss, grad = Lo.pseudo_huber_loss_forward(one * np.float32(d), 0 * one, "none", delta=delta)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6)


def test_pseudo_huber_random_magnitudes_float64(gen):
    # log-uniform |d| and delta over most of float64's range, both branches and the switch between them
    d = np.concatenate([np.exp(gen.uniform(-600, 600, 150)), gen.uniform(0.2, 5.0, 50)])
    d *= gen.choice([-1.0, 1.0], d.size)
    delta = np.concatenate([np.exp(gen.uniform(-300, 300, 150)), gen.uniform(0.2, 5.0, 50)])
    for dl in (float(delta[0]), float(delta[-1])):
        exact = np.array([_huber_exact(float(v), dl) for v in d])
        loss, grad = Lo.pseudo_huber_loss_forward(d, np.zeros_like(d), "none", delta=dl)
        assert_ulps(loss, exact[:, 0], np.float64, "loss", ulps=4)
        assert_ulps(grad, exact[:, 1], np.float64, "grad", ulps=4)
    # the two branches meet at |d| = delta: continuous across the switch
    for dl in delta[:20]:
        near = np.array([dl, np.nextafter(dl, np.inf), np.nextafter(dl, 0), -dl, 0.999 * dl, 1.001 * dl])
        exact = np.array([_huber_exact(float(v), float(dl)) for v in near])
        loss, grad = Lo.pseudo_huber_loss_forward(near, np.zeros_like(near), "none", delta=float(dl))
        assert_ulps(loss, exact[:, 0], np.float64, f"loss near delta={dl}", ulps=4)
        assert_ulps(grad, exact[:, 1], np.float64, f"grad near delta={dl}", ulps=4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pseudo_huber_nan_and_inf(dtype):
    y = np.array([np.nan, np.inf, -np.inf, 2.0, -3.0], dtype)
    t = np.array([0.0, 0.0, 0.0, np.nan, 1.0], dtype)
    loss, grad = Lo.pseudo_huber_loss_forward(y, t, "none", delta=0.5)
    np.testing.assert_array_equal(np.isnan(loss), [True, False, False, True, False])
    np.testing.assert_array_equal(np.isnan(grad), [True, False, False, True, False])
    np.testing.assert_array_equal(loss[1:3], [np.inf, np.inf])
    np.testing.assert_array_equal(grad[1:3], [0.5, -0.5])  # +-delta, the slope of the linear regime
    assert np.isnan(Lo.pseudo_huber_loss_forward(y, t, "mean", delta=0.5)[0])
    assert np.isinf(Lo.pseudo_huber_loss_forward(y[1:3], t[1:3], "sum", delta=0.5)[0])


# ------------------------------------------------------- BCE with infinite logits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_infinite_logits_take_the_limit(dtype):
    x = np.array([np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf, np.inf], dtype)
    t = np.array([0.0, 1.0, 0.3, 0.0, 1.0, 0.3, 1e-3], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no inf - inf, no inf * 0 inside
        loss, grad = Lo.binary_cross_entropy_with_logits_forward(x, t, "none")
    # (1 - t) x at +inf, -t x at -inf: inf unless the weight is 0
    np.testing.assert_array_equal(loss, np.array([np.inf, 0.0, np.inf, 0.0, np.inf, np.inf, np.inf], dtype))
    np.testing.assert_array_equal(grad, np.array([1.0, 0.0, 0.7, 0.0, -1.0, -0.3, 1 - 1e-3], dtype) - 0 * t)
    assert loss.dtype == grad.dtype == dtype
    for reduction, want in (("sum", np.inf), ("mean", np.inf)):
        assert Lo.binary_cross_entropy_with_logits_forward(x, t, reduction)[0] == want
    # only the zero-weight limits: a finite total
    z, zt = x[[1, 3]], t[[1, 3]]
    assert Lo.binary_cross_entropy_with_logits_forward(z, zt, "sum")[0] == 0.0
    nan_loss, nan_grad = Lo.binary_cross_entropy_with_logits_forward(np.array([np.nan, np.nan], dtype),
                                                                      np.array([0.0, 1.0], dtype), "none")
    assert np.all(np.isnan(nan_loss)) and np.all(np.isnan(nan_grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_finite_logits_unchanged(dtype, gen):
    # the textbook evaluation, bit for bit, wherever the logit is finite (1e4 and float max included)
    x = randn((7, 9), gen, dtype=dtype, scale=5.0)
    x[0, :4] = [1e4, -1e4, np.finfo(dtype).max, -np.finfo(dtype).max]
    t = uniform((7, 9), gen, 0.0, 1.0).astype(dtype)
    t[1, :3] = [0.0, 1.0, 0.5]
    with np.errstate(over="ignore"):
        want = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    loss, grad = Lo.binary_cross_entropy_with_logits_forward(x, t, "none")
    np.testing.assert_array_equal(loss, want)
    np.testing.assert_array_equal(grad, Lo.sigmoid_forward(x) - t)


# ------------------------------------------------------------ grad_output kinds


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_backward_rejects_non_numbers(reduction, gen):
    grad = randn((4, 3), gen)
    for bad, what in ((None, "got NoneType"), ("1.0", "got str"), (True, "got bool"), ([1.0], "got list")):
        with pytest.raises(TypeError, match=f"grad_output must be a number or a 0-d array, {what}"):
            Lo.loss_backward(bad, grad, reduction)
    for bad in (np.array(None), np.array("1.0"), np.array(True), np.array(1 + 2j)):
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype"):
            Lo.loss_backward(bad, grad, reduction)
    # what stays legal: Python and numpy numbers, 0-d arrays and tensors, integer or float
    for ok in (2, 2.0, np.float32(2.0), np.int64(2), np.asarray(2.0), np.asarray(2), torch.tensor(2.0)):
        np.testing.assert_array_equal(Lo.loss_backward(ok, grad, reduction), 2 * grad)


def test_loss_backward_none_rejects_non_numeric_arrays(gen):
    grad = randn((4, 3), gen)
    with pytest.raises(TypeError, match="grad_output must be an array or tensor, got NoneType"):
        Lo.loss_backward(None, grad, "none")
    for bad in (np.full((4, 3), None), np.full((4,), "a"), np.ones((4, 3), bool)):
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype"):
            Lo.loss_backward(bad, grad, "none")
    np.testing.assert_array_equal(Lo.loss_backward(np.full((4,), 3), grad, "none"), 3 * grad)  # integer: cast
