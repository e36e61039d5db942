"""Triton fused linear layer against the float64 reference: every activation, with and without
bias, float32, float16 and bfloat16, odd shapes and leading dims, several db row splits, views,
empty batches, bad input. Without CUDA the kernels run under Triton's interpreter (conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import linear as K
from dlgpu.reference import linear as L
from dlgpu.testing import assert_close, randn, to_numpy

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]


def tt(a, dtype: str, device: str = DEVICE):
    if a is None:
        return None
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device=device, dtype=DTYPES[dtype])


def layer(gen, lead, i, o):
    """x, weight (scaled as torch initialises it, so z = x W^T is O(1)), bias, dy; float64 numpy."""
    x = randn(lead + (i,), gen)
    w = randn((o, i), gen, scale=1 / np.sqrt(i))
    return x, w, randn((o,), gen), randn(lead + (o,), gen)


def check_layer(x, w, b, dy, activation, slope, dtype):
    """Forward and backward on the cast inputs against the reference on the same values in float64."""
    xt, wt, bt, dyt = tt(x, dtype), tt(w, dtype), tt(b, dtype), tt(dy, dtype)
    y = K.linear_forward(xt, wt, bt, activation, slope)
    assert y.dtype == DTYPES[dtype] and y.shape == dyt.shape
    assert_close(
        y, L.linear_forward(to_numpy(xt), to_numpy(wt), to_numpy(bt), activation, slope), op="linear", dtype=dtype
    )
    grads = K.linear_backward(dyt, xt, wt, y, activation, slope)
    want = L.linear_backward(to_numpy(dyt), to_numpy(xt), to_numpy(wt), to_numpy(y), activation, slope)
    for got, ref, name in zip(grads, want, ("dx", "dweight", "dbias")):
        assert got.dtype == DTYPES[dtype] and tuple(got.shape) == ref.shape
        assert_close(got, ref, op="linear", dtype=dtype, name=f"{activation} {name}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_reference(activation, dtype, gen):
    lead = tuple(int(s) for s in gen.integers(1, 12, size=int(gen.integers(0, 3))))  # () gives a 1-D x
    i, o = (int(s) for s in gen.integers(1, 80, size=2))
    x, w, b, dy = layer(gen, lead, i, o)
    slope = float(gen.uniform(0.01, 0.5))
    check_layer(x, w, b, dy, activation, slope, dtype)
    check_layer(x, w, None, dy, activation, slope, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_many_rows_several_db_splits(dtype, gen):
    # 633 rows: 2 row splits of 317 (not a multiple of the row block) for db's partial sums
    x, w, b, dy = layer(gen, (3, 211), 37, 45)
    check_layer(x, w, b, dy, "sigmoid", 0.01, dtype)
    check_layer(x, w, b, dy, "none", 0.01, dtype)


def test_backward_without_out_for_no_activation(gen):
    x, w, _, dy = layer(gen, (6,), 5, 7)
    xt, wt, dyt = tt(x, "float32"), tt(w, "float32"), tt(dy, "float32")
    for got, ref in zip(K.linear_backward(dyt, xt, wt), L.linear_backward(to_numpy(dyt), to_numpy(xt), to_numpy(wt))):
        assert_close(got, ref, op="linear", dtype="float32")


def test_zero_rows_and_empty_features(gen):
    x, w, b, dy = layer(gen, (0,), 5, 3)
    xt, wt, bt, dyt = tt(x, "float32"), tt(w, "float32"), tt(b, "float32"), tt(dy, "float32")
    y = K.linear_forward(xt, wt, bt, "tanh")
    assert y.shape == (0, 3)
    dx, dw, db = K.linear_backward(dyt, xt, wt, y, "tanh")
    assert dx.shape == (0, 5) and dw.shape == (3, 5) and bool((dw == 0).all()) and bool((db == 0).all())
    # in_features = 0: y = act(b)
    x0, w0 = torch.ones((4, 0), device=DEVICE), torch.ones((3, 0), device=DEVICE)
    want = L.linear_forward(np.ones((4, 0)), np.ones((3, 0)), to_numpy(bt), "sigmoid")
    assert_close(K.linear_forward(x0, w0, bt, "sigmoid"), want, op="linear", dtype="float32")


def test_noncontiguous_inputs(gen):
    x = tt(randn((19, 70), gen), "float32").t()  # 70,19 view, not contiguous
    w = tt(randn((19, 13), gen, scale=0.3), "float32").t()  # 13,19
    b, dy = tt(randn((13,), gen), "float32"), tt(randn((13, 70), gen), "float32").t()
    y = K.linear_forward(x, w, b, "leaky_relu", 0.2)
    assert_close(
        y, L.linear_forward(to_numpy(x), to_numpy(w), to_numpy(b), "leaky_relu", 0.2), op="linear", dtype="float32"
    )
    grads = K.linear_backward(dy, x, w, y, "leaky_relu", 0.2)
    want = L.linear_backward(to_numpy(dy), to_numpy(x), to_numpy(w), to_numpy(y), "leaky_relu", 0.2)
    for got, ref in zip(grads, want):
        assert_close(got, ref, op="linear", dtype="float32")


def test_bad_input_raises_like_reference(gen):
    x, w, b, dy = layer(gen, (4,), 5, 3)
    xt, wt, bt, dyt = (tt(a, "float32") for a in (x, w, b, dy))
    cases = [  # (reference call, triton call): same exception type and message
        (lambda: L.linear_forward(x, w, b, "gelu"), lambda: K.linear_forward(xt, wt, bt, "gelu")),
        (lambda: L.linear_forward(x, w, b[:2]), lambda: K.linear_forward(xt, wt, bt[:2])),
        (lambda: L.linear_forward(x, w[None]), lambda: K.linear_forward(xt, wt[None])),
        (lambda: L.linear_backward(dy, x, w, None, "relu"), lambda: K.linear_backward(dyt, xt, wt, None, "relu")),
        (lambda: L.linear_backward(dy[:2], x, w), lambda: K.linear_backward(dyt[:2], xt, wt)),
        (lambda: L.linear_backward(dy, x, w, dy[:2], "tanh"), lambda: K.linear_backward(dyt, xt, wt, dyt[:2], "tanh")),
    ]
    for ref, ours in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            ref()
        with pytest.raises(want.type) as got:
            ours()
        assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match="last dimension"):
        K.linear_forward(xt, wt.t())


def test_numpy_int_and_mixed_dtypes_raise_type_error(gen):
    x, w, b, dy = layer(gen, (4,), 5, 3)
    xt, wt, bt = tt(x, "float32"), tt(w, "float32"), tt(b, "float32")
    for case in (
        lambda: K.linear_forward(x, w, b),  # numpy arrays
        lambda: K.linear_forward(xt.to(torch.int32), wt),
        lambda: K.linear_forward(xt, wt.half()),
        lambda: K.linear_forward(xt, wt, bt.bfloat16()),
        lambda: K.linear_forward(xt.double(), wt.double()),
        lambda: K.linear_backward(tt(dy, "float16"), xt, wt),
    ):
        with pytest.raises(TypeError):
            case()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("activation", ["none", "tanh"])
def test_gpu_realistic_shapes(activation, dtype, gen):
    x, w, b, dy = layer(gen, (16, 257), 1024, 767)
    check_layer(x, w, b, dy, activation, 0.01, dtype)
