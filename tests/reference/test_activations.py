"""Reference activations and the fused linear layer: finite differences, torch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import activations as A
from dlgpu.reference import linear as L
from dlgpu.testing import assert_close, check_gradients, randn

ELEMENTWISE = {
    # name: (forward, backward, backward takes output?, torch function)
    "relu": (A.relu_forward, A.relu_backward, False, F.relu),
    "leaky_relu": (
        lambda x: A.leaky_relu_forward(x, 0.1),
        lambda dy, x: A.leaky_relu_backward(dy, x, 0.1),
        False,
        lambda t: F.leaky_relu(t, 0.1),
    ),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, True, torch.sigmoid),
    "tanh": (A.tanh_forward, A.tanh_backward, True, torch.tanh),
    "softplus": (A.softplus_forward, A.softplus_backward, False, F.softplus),
    "softmax": (A.softmax_forward, A.softmax_backward, True, lambda t: F.softmax(t, -1)),
    "log_softmax": (A.log_softmax_forward, A.log_softmax_backward, True, lambda t: F.log_softmax(t, -1)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_activation_finite_differences(name, gen):
    fwd, bwd, from_output, _ = ELEMENTWISE[name]
    x = randn((7, 13), gen, min_abs=0.05)  # away from relu's kink at 0
    dy = randn((7, 13), gen)
    y = fwd(x)
    dx = bwd(dy, y if from_output else x)
    check_gradients(lambda: fwd(x), {"x": x}, {"x": dx}, dy)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_activation_matches_torch(name, gen):
    fwd, bwd, from_output, tfn = ELEMENTWISE[name]
    x = randn((5, 33), gen, scale=3.0)
    dy = randn((5, 33), gen)
    xt = torch.tensor(x, requires_grad=True)
    yt = tfn(xt)
    yt.backward(torch.tensor(dy))
    y = fwd(x)
    assert_close(y, yt, name, "float64")
    assert_close(bwd(dy, y if from_output else x), xt.grad, name, "float64", name=f"{name} dx")


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_gradient_at_the_kink_matches_torch(name, gen):
    # x = +-0 exactly (kept away from above): relu's subgradient there is 0, leaky_relu's is the slope
    _, bwd, _, tfn = ELEMENTWISE[name]
    x = np.where(gen.random((4, 9)) < 0.5, 0.0, randn((4, 9), gen))
    x[0, :2] = [0.0, -0.0]
    dy = randn(x.shape, gen)
    xt = torch.tensor(x, requires_grad=True)
    tfn(xt).backward(torch.tensor(dy))
    assert_close(bwd(dy, x), xt.grad, name, "float64", name=f"{name} dx")


@pytest.mark.parametrize("fwd", [A.softmax_forward, A.log_softmax_forward, A.sigmoid_forward, A.softplus_forward])
def test_stable_for_extreme_inputs(fwd):
    x = np.array([[-1e4, 0.5, 1e4], [800.0, -800.0, 3.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = fwd(x)
    assert np.all(np.isfinite(y))


def test_float32_in_float32_out(gen):
    x = randn((4, 9), gen, dtype=np.float32)
    for fwd in (A.relu_forward, A.sigmoid_forward, A.tanh_forward, A.softmax_forward, A.log_softmax_forward):
        assert fwd(x).dtype == np.float32


@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_linear_finite_differences(activation, gen):
    x, w, b = randn((7, 5), gen), randn((3, 5), gen), randn((3,), gen)
    y = L.linear_forward(x, w, b, activation)
    dy = randn(y.shape, gen)
    dx, dw, db = L.linear_backward(dy, x, w, y, activation)
    check_gradients(
        lambda: L.linear_forward(x, w, b, activation),
        {"x": x, "weight": w, "bias": b},
        {"x": dx, "weight": dw, "bias": db},
        dy,
    )


def test_linear_matches_torch_with_leading_dims(gen):
    x, w, b = randn((2, 3, 11), gen), randn((13, 11), gen), randn((13,), gen)
    dy = randn((2, 3, 13), gen)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.linear(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    assert_close(L.linear_forward(x, w, b), yt, "linear")
    dx, dw, db = L.linear_backward(dy, x, w)
    for got, want, n in ((dx, xt.grad, "dx"), (dw, wt.grad, "dw"), (db, bt.grad, "db")):
        assert_close(got, want, "linear", name=n)


def test_bad_input(gen):
    x, w = randn((4, 5), gen), randn((3, 5), gen)
    with pytest.raises(ValueError, match="in_features"):
        L.linear_forward(randn((4, 6), gen), w)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        L.linear_forward(x, randn((3, 5, 1), gen))
    with pytest.raises(ValueError, match="bias must have shape"):
        L.linear_forward(x, w, randn((4,), gen))
    with pytest.raises(ValueError, match="activation must be one of"):
        L.linear_forward(x, w, activation="gelu")
    with pytest.raises(ValueError, match="out .* is required"):
        L.linear_backward(randn((4, 3), gen), x, w, None, "relu")
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        A.relu_forward(np.arange(4))
    with pytest.raises(ValueError, match="dy must have the same shape"):
        A.relu_backward(randn((3,), gen), randn((4,), gen))
