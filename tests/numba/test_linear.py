"""Numba fused linear layer against the float64 reference: every activation, with and without bias,
float32 and float64, odd shapes and leading dims, views, torch tensors, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import linear as K
from dlgpu.reference import linear as L
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]


def layer(gen, lead, i, o, dtype=np.float64):
    """x, weight (scaled as torch initialises it, so z = x W^T is O(1)), bias, dy."""
    x = randn(lead + (i,), gen, dtype=dtype)
    w = randn((o, i), gen, dtype=dtype, scale=1 / np.sqrt(i))
    return x, w, randn((o,), gen, dtype=dtype), randn(lead + (o,), gen, dtype=dtype)


def check_layer(x, w, b, dy, activation, slope, dtype):
    y = K.linear_forward(x, w, b, activation, slope)
    assert y.dtype == dtype
    assert_close(
        y, L.linear_forward(to_numpy(x), to_numpy(w), to_numpy(b), activation, slope), op="linear", dtype=dtype
    )
    grads = K.linear_backward(dy, x, w, y, activation, slope)
    want = L.linear_backward(to_numpy(dy), to_numpy(x), to_numpy(w), to_numpy(y), activation, slope)
    for got, ref, name in zip(grads, want, ("dx", "dweight", "dbias")):
        assert got.dtype == dtype
        assert_close(got, ref, op="linear", dtype=dtype, name=f"{activation} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_reference(activation, dtype, gen):
    lead = tuple(int(s) for s in gen.integers(1, 12, size=int(gen.integers(0, 3))))  # () gives a 1-D x
    i, o = (int(s) for s in gen.integers(1, 80, size=2))
    x, w, b, dy = layer(gen, lead, i, o, dtype)
    slope = float(gen.uniform(0.01, 0.5))
    check_layer(x, w, b, dy, activation, slope, dtype)
    check_layer(x, w, None, dy, activation, slope, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_rows_uneven_chunks(dtype, gen):
    # enough rows that db is summed over several row chunks of unequal length
    x, w, b, dy = layer(gen, (3, 211), 37, 45, dtype)
    check_layer(x, w, b, dy, "sigmoid", 0.01, dtype)
    check_layer(x, w, b, dy, "none", 0.01, dtype)


def test_backward_without_out_for_no_activation(gen):
    x, w, _, dy = layer(gen, (6,), 5, 7)
    for got, ref in zip(K.linear_backward(dy, x, w), L.linear_backward(dy, x, w)):
        assert_close(got, ref, op="linear")


def test_zero_rows(gen):
    x, w, b, dy = layer(gen, (0,), 5, 3)
    y = K.linear_forward(x, w, b, "tanh")
    assert y.shape == (0, 3)
    dx, dw, db = K.linear_backward(dy, x, w, y, "tanh")
    assert dx.shape == (0, 5) and np.all(dw == 0) and dw.shape == (3, 5) and np.all(db == 0)


def test_noncontiguous_and_torch_inputs(gen):
    x = randn((19, 70), gen).T  # 70,19 view, not contiguous
    w = randn((19, 13), gen).T  # 13,19
    b, dy = randn((13,), gen), randn((70, 13), gen)
    check_layer(x, w, b, dy, "leaky_relu", 0.2, np.float64)
    xt, wt, bt, dyt = (torch.from_numpy(np.asarray(a)) for a in (x, w, b, dy))
    y = K.linear_forward(xt, wt, bt, "relu")
    assert_close(y, L.linear_forward(x, w, b, "relu"), op="linear")
    got = K.linear_backward(dyt, xt, wt, torch.from_numpy(y), "relu")
    for g, r in zip(got, L.linear_backward(dy, x, w, y, "relu")):
        assert_close(g, r, op="linear")


def test_bad_input_raises_like_reference(gen):
    x, w, dy = randn((4, 5), gen), randn((3, 5), gen), randn((4, 3), gen)
    cases = [
        lambda m: m.linear_forward(randn((4, 6), gen), w),
        lambda m: m.linear_forward(x, randn((3, 5, 1), gen)),
        lambda m: m.linear_forward(x, w, randn((4,), gen)),
        lambda m: m.linear_forward(x, w, activation="gelu"),
        lambda m: m.linear_forward(np.ones((4, 5), dtype=np.int64), w),
        lambda m: m.linear_backward(dy, x, w, None, "relu"),
        lambda m: m.linear_backward(randn((4, 4), gen), x, w),
        lambda m: m.linear_backward(dy, x, w, randn((4, 2), gen), "tanh"),
    ]
    for case in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            case(L)
        with pytest.raises(want.type) as got:
            case(K)
        assert str(got.value) == str(want.value)


def test_mixed_dtypes_raise_type_error(gen):
    x, w, b, dy = layer(gen, (4,), 5, 3)
    x32, w32, dy32 = x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32)
    for case in (
        lambda: K.linear_forward(x32, w),
        lambda: K.linear_forward(x32, w32, b),
        lambda: K.linear_backward(dy, x32, w32),
        lambda: K.linear_backward(dy32, x32, w32, K.linear_forward(x, w, b, "relu"), "relu"),
    ):
        with pytest.raises(TypeError, match="must have (the )?dtype"):
            case()
