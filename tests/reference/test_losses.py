"""Reference losses: finite differences, torch (float64), extreme logits, loss_backward, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import losses as Lo
from dlgpu.testing import Tolerance, assert_close, check_gradients, randn, signs, uniform
from dlgpu.testing.loss_inputs import (
    bce_inputs,
    hinge_inputs,
    huber_inputs,
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
