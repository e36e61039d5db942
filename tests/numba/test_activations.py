"""Numba activations against the float64 reference: every op forward and backward, float32 and
float64, odd shapes and random axes/slopes, extreme inputs, views, torch tensors, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import activations as K
from dlgpu.reference import activations as A
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]
# name: does the backward take the forward's output (else its input)?
FROM_OUTPUT = {
    "relu": False,
    "leaky_relu": False,
    "sigmoid": True,
    "tanh": True,
    "softplus": False,
    "softmax": True,
    "log_softmax": True,
}
ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]


def hyper(name, gen, ndim):
    if name == "leaky_relu":
        return {"negative_slope": float(gen.uniform(0.01, 0.5))}
    if name in ("softmax", "log_softmax"):
        return {"axis": int(gen.integers(-ndim, ndim))}
    return {}


def check_op(name, x, dy, kw, dtype):
    """Forward and backward of ``name`` on ``x`` (cast to dtype) against the float64 reference."""
    fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
    rfwd, rbwd = getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")
    x, dy = x.astype(dtype), dy.astype(dtype)
    y = fwd(x, **kw)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, rfwd(to_numpy(x), **kw), op=name, dtype=dtype)
    saved = rfwd(to_numpy(x), **kw).astype(dtype) if FROM_OUTPUT[name] else x
    dx = bwd(dy, saved, **kw)
    assert dx.dtype == dtype
    assert_close(dx, rbwd(to_numpy(dy), to_numpy(saved), **kw), op=name, dtype=dtype, name=f"{name} dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(FROM_OUTPUT))
def test_matches_reference(name, dtype, gen):
    shape = tuple(int(s) for s in gen.integers(1, 40, size=int(gen.integers(1, 4))))
    x, dy = randn(shape, gen, scale=3.0), randn(shape, gen)
    check_op(name, x, dy, hyper(name, gen, len(shape)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "softmax", "log_softmax"])
def test_stable_for_extreme_inputs(name, dtype, gen):
    x = np.array([[-1e4, 0.5, 1e4], [800.0, -800.0, 3.0], [-1e4, -1e4, -1e4], [50.0, -50.0, 1e-3]])
    check_op(name, x, randn(x.shape, gen), {}, dtype)
    assert np.all(np.isfinite(getattr(K, f"{name}_forward")(x.astype(dtype))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_row_maximum_anywhere_in_a_long_row(name, dtype, gen):
    # rows of 19 (two blocks of 8 lanes and a tail of 3) with one huge logit at each position in turn:
    # the row maximum that keeps exp's argument <= 0 must see every lane and every tail element
    x = randn((19, 19), gen)
    x[np.arange(19), np.arange(19)] = 1e4
    check_op(name, x, randn(x.shape, gen), {}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_gradient_at_the_kink_like_reference(name, dtype, gen):
    x = np.where(gen.random((5, 7)) < 0.5, 0.0, randn((5, 7), gen))  # x = 0: relu' = 0, leaky_relu' = slope
    x[0, :2] = [0.0, -0.0]
    check_op(name, x, randn(x.shape, gen), hyper(name, gen, 2), dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_backward(activation, gen):
    slope = float(gen.uniform(0.01, 0.5))
    for dtype in DTYPES:
        z, dy = randn((9, 31), gen, dtype=dtype, scale=2.0), randn((9, 31), gen, dtype=dtype)
        y = K.activation_forward(z, activation, slope)
        assert y.dtype == dtype
        assert_close(y, A.activation_forward(to_numpy(z), activation, slope), op=activation, dtype=dtype)
        dz = K.activation_backward(dy, y, activation, slope)
        want = A.activation_backward(to_numpy(dy), to_numpy(y), activation, slope)
        assert_close(dz, want, op=activation, dtype=dtype, name=f"{activation} dz")


def test_noncontiguous_and_torch_inputs(gen):
    base = randn((23, 17, 5), gen)
    x = base.transpose(2, 0, 1)  # 5,23,17 view, not contiguous
    dy = randn(x.shape, gen)
    for axis in (0, 1, -1):
        y = K.softmax_forward(x, axis=axis)
        assert_close(y, A.softmax_forward(x, axis=axis), op="softmax")
        assert_close(K.softmax_backward(dy, y, axis=axis), A.softmax_backward(dy, y, axis=axis), op="softmax")
    assert_close(K.tanh_forward(x), A.tanh_forward(x), op="tanh")
    xt, dyt = torch.from_numpy(base).permute(2, 0, 1), torch.from_numpy(dy)
    assert_close(K.log_softmax_forward(xt, 1), A.log_softmax_forward(x, 1), op="log_softmax")
    assert_close(K.relu_backward(dyt, xt), A.relu_backward(dy, x), op="relu")
    assert_close(K.sigmoid_forward(xt.float()), A.sigmoid_forward(x.astype(np.float32)), op="sigmoid", dtype="float32")


def test_empty_arrays_match_reference():
    for name, shape in (("relu", (0,)), ("softplus", (2, 0)), ("softmax", (0, 4)), ("log_softmax", (3, 0, 2))):
        x = np.ones(shape)
        assert getattr(K, f"{name}_forward")(x).shape == getattr(A, f"{name}_forward")(x).shape == shape
    empty_axis = np.ones((3, 0))
    assert K.softmax_backward(empty_axis, empty_axis).shape == (3, 0)


def test_bad_input_raises_like_reference(gen):
    x, short = randn((4, 5), gen), randn((4, 4), gen)
    cases = [
        lambda m: m.relu_forward(np.arange(4)),  # integer dtype
        lambda m: m.sigmoid_backward(short, x),  # shape mismatch
        lambda m: m.leaky_relu_backward(x, short),
        lambda m: m.activation_forward(x, "gelu"),
        lambda m: m.activation_backward(x, x, "swish"),
        lambda m: m.softmax_forward(x, axis=2),
        lambda m: m.log_softmax_forward(np.ones((3, 0))),  # softmax over an empty axis
        lambda m: m.tanh_forward([1.0, 2.0]),  # not an array
    ]
    for case in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            case(A)
        with pytest.raises(want.type) as got:
            case(K)
        assert str(got.value) == str(want.value)


def test_mixed_and_unsupported_dtypes_raise_type_error(gen):
    x32, x64 = randn((4, 5), gen, dtype=np.float32), randn((4, 5), gen)
    for case in (
        lambda: K.relu_backward(x32, x64),
        lambda: K.tanh_backward(x64, x32),
        lambda: K.softmax_backward(x32, x64),
        lambda: K.activation_backward(x64, x32, "sigmoid"),
    ):
        with pytest.raises(TypeError, match="must have dtype"):
            case()
    with pytest.raises(TypeError, match="float32 or float64"):
        K.sigmoid_forward(x32.astype(np.float16))
