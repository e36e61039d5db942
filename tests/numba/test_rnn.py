"""Numba Elman RNN (tanh, relu) and its readout against the float64 reference: output, h_n and
every gradient in float32 and float64, with and without biases, None arguments, odd shapes and
T = 1, several input-projection blocks, saturation, views, torch tensors, torch.nn.RNN, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import rnn as K
from dlgpu.reference import rnn as R
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]
NONLINEARITIES = ["tanh", "relu"]
GRAD_NAMES = ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


def params(gen, t, b, i, h, dtype=np.float64):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh."""
    return (
        randn((t, b, i), gen, dtype),
        randn((b, h), gen, dtype),
        randn((h, i), gen, dtype, scale=0.5),
        randn((h, h), gen, dtype, scale=0.5),
        randn((h,), gen, dtype, scale=0.5),
        randn((h,), gen, dtype, scale=0.5),
    )


def check(nl, dtype, gen, dims, h0=True, bias=(True, True), d_out=True, d_hn=True, scale=1.0):
    """Forward and backward on dtype inputs against the reference on float64 copies of them."""
    x, h_0, w_ih, w_hh, b_ih, b_hh = params(gen, *dims, dtype)
    x = (x * scale).astype(dtype)
    h_0 = h_0 if h0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    args = (x, h_0, w_ih, w_hh, b_ih, b_hh)
    out, h_n = K.rnn_forward(*args, nl)
    ref = R.rnn_forward(*(to_numpy(a) for a in args), nl)
    for got, want, name in zip((out, h_n), ref, ("output", "h_n")):
        assert got.dtype == dtype, name
        assert_close(got, want, op="rnn", dtype=dtype, name=f"{nl} {name}")
    d_output = randn(out.shape, gen, dtype) if d_out else None
    d_h_n = randn(h_n.shape, gen, dtype) if d_hn else None
    bargs = (d_output, d_h_n, x, h_0, w_ih, w_hh, out)
    grads = K.rnn_backward(*bargs, nl)
    ref_grads = R.rnn_backward(*(to_numpy(a) for a in bargs), nl)
    for got, want, name in zip(grads, ref_grads, GRAD_NAMES):
        assert got.dtype == dtype, name
        assert_close(got, want, op="rnn", dtype=dtype, name=f"{nl} {name}")
    return grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nl", NONLINEARITIES)
def test_matches_reference(nl, dtype, bias, gen):
    dims = tuple(int(gen.integers(lo, hi)) for lo, hi in ((2, 9), (1, 6), (1, 10), (1, 20)))
    check(nl, dtype, gen, dims, bias=(bias, bias))


@pytest.mark.parametrize(
    "dims", [(5, 3, 7, 6), (1, 2, 3, 4), (2, 3, 4, 5), (1, 1, 1, 1)], ids=["5x3x7x6", "T1", "T2", "ones"]
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nl", NONLINEARITIES)
def test_odd_shapes(nl, dtype, dims, gen):
    check(nl, dtype, gen, dims)


@pytest.mark.parametrize("nl", NONLINEARITIES)
def test_none_arguments(nl, gen):
    """h0, each bias, d_output and d_h_n None: as in the reference (zeros)."""
    dims = (4, 3, 5, 6)
    check(nl, np.float64, gen, dims, h0=False)
    check(nl, np.float32, gen, dims, h0=False)
    check(nl, np.float64, gen, dims, bias=(True, False))
    check(nl, np.float64, gen, dims, bias=(False, True))
    check(nl, np.float64, gen, dims, d_out=False)
    check(nl, np.float32, gen, dims, d_hn=False)
    grads = check(nl, np.float64, gen, dims, d_out=False, d_hn=False)
    assert all(np.all(g == 0) for g in grads)


def test_several_projection_blocks(gen, monkeypatch):
    """The input projection in blocks of 3 steps (the last one partial), H not a multiple of 16."""
    t, b, i, h = 7, 2, 3, 21
    monkeypatch.setattr(K, "_XW_BLOCK_BYTES", 3 * b * h * 8)
    assert K.block_steps(t, b, h, 8) == 3
    for nl in NONLINEARITIES:
        check(nl, np.float64, gen, (t, b, i, h))
        check(nl, np.float32, gen, (t, b, i, h))


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturated_tanh(dtype, gen):
    grads = check("tanh", dtype, gen, (3, 2, 5, 4), scale=1e3)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_views_and_torch_tensors(gen):
    """Non-contiguous views (transposed storage) and torch CPU tensors give the same results."""
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 4, 3, 5, 6, np.float32)
    d_out = randn((4, 3, 6), gen, np.float32)
    want = K.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    want_g = K.rnn_backward(d_out, None, x, h0, w_ih, w_hh, want[0])

    x_v = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)  # T,B,I view of B,T,I storage
    w_ih_v, w_hh_v, h0_v = (np.ascontiguousarray(a.T).T for a in (w_ih, w_hh, h0))
    assert not any(a.flags.c_contiguous for a in (x_v, w_ih_v, w_hh_v, h0_v))
    got = K.rnn_forward(x_v, h0_v, w_ih_v, w_hh_v, b_ih, b_hh)
    got_g = K.rnn_backward(d_out, None, x_v, h0_v, w_ih_v, w_hh_v, got[0])
    for a, b in zip(got + got_g, want + want_g):
        np.testing.assert_array_equal(a, b)

    tt = [torch.from_numpy(a) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    got = K.rnn_forward(*tt)
    got_g = K.rnn_backward(torch.from_numpy(d_out), None, *tt[:4], torch.from_numpy(got[0]))
    for a, b in zip(got + got_g, want + want_g):
        assert isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nl", NONLINEARITIES)
def test_matches_torch_nn_rnn(nl, gen):
    t, b, i, h = 6, 3, 5, 7
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, t, b, i, h, np.float32)
    rnn = torch.nn.RNN(i, h, nonlinearity=nl)
    with torch.no_grad():
        for prm, a in zip(rnn.parameters(), (w_ih, w_hh, b_ih, b_hh)):
            prm.copy_(torch.from_numpy(a))
        out_t, hn_t = rnn(torch.from_numpy(x), torch.from_numpy(h0)[None])
    out, h_n = K.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nl)
    assert_close(out, out_t, op="rnn", dtype=np.float32, name="output")
    assert_close(h_n, hn_t[0], op="rnn", dtype=np.float32, name="h_n")


@pytest.mark.parametrize("activation", ["none", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_readout_matches_reference(activation, dtype, gen):
    t, b, h, o = (int(gen.integers(1, 8)) for _ in range(4))
    out, w, bias = randn((t, b, h), gen, dtype), randn((o, h), gen, dtype), randn((o,), gen, dtype)
    y = K.rnn_readout_forward(out, w, bias, activation)
    assert y.dtype == dtype
    want = R.rnn_readout_forward(to_numpy(out), to_numpy(w), to_numpy(bias), activation)
    assert_close(y, want, op="linear", dtype=dtype)
    dy = randn(y.shape, gen, dtype)
    grads = K.rnn_readout_backward(dy, out, w, y, activation)
    ref_grads = R.rnn_readout_backward(to_numpy(dy), to_numpy(out), to_numpy(w), to_numpy(y), activation)
    for got, want, name in zip(grads, ref_grads, ("doutput", "dweight", "dbias")):
        assert got.dtype == dtype, name
        assert_close(got, want, op="linear", dtype=dtype, name=name)


def raises_like_reference(fn, *args, **kw):
    """Our function raises the reference's exception type with the reference's message."""
    with pytest.raises((ValueError, TypeError)) as want:
        getattr(R, fn)(*args, **kw)
    with pytest.raises(want.type) as got:
        getattr(K, fn)(*args, **kw)
    assert str(got.value) == str(want.value)


def test_bad_input(gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, t, b, i, h)
    raises_like_reference("rnn_forward", x[0], h0, w_ih, w_hh)
    raises_like_reference("rnn_forward", x[:0], h0, w_ih, w_hh)
    raises_like_reference("rnn_forward", x, h0.T, w_ih, w_hh)
    raises_like_reference("rnn_forward", x, h0, w_ih[:, 1:], w_hh)
    raises_like_reference("rnn_forward", x, h0, w_ih, w_hh[:, 1:])
    raises_like_reference("rnn_forward", x, h0, w_ih, w_hh, b_ih[1:], b_hh)
    raises_like_reference("rnn_forward", x, h0, w_ih, w_hh, nonlinearity="sigmoid")
    raises_like_reference("rnn_forward", x.astype(np.int64), h0, w_ih, w_hh)
    raises_like_reference("rnn_forward", x.tolist(), h0, w_ih, w_hh)
    out, h_n = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    raises_like_reference("rnn_backward", out[1:], h_n, x, h0, w_ih, w_hh, out)
    raises_like_reference("rnn_backward", out, out, x, h0, w_ih, w_hh, out)
    raises_like_reference("rnn_backward", out, h_n, x, h0, w_ih, w_hh, out[:, 1:])
    raises_like_reference("rnn_backward", out, h_n, x, h0, w_ih, w_hh, out, "Tanh")
    raises_like_reference("rnn_readout_forward", out[0], randn((2, h), gen))
    raises_like_reference("rnn_readout_backward", randn((t, b, 2), gen), out.astype(np.int32), randn((2, h), gen))


def test_mixed_dtypes_raise_type_error(gen):
    """Like the reference: a TypeError that names the argument whose dtype differs from x's."""
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 3, 2, 4, 5, np.float32)
    for k, name in ((3, "weight_hh"), (1, "h0"), (4, "bias_ih")):
        args = [x, h0, w_ih, w_hh, b_ih, b_hh]
        args[k] = args[k].astype(np.float64)
        with pytest.raises(TypeError, match=f"{name} must have the dtype of x"):
            K.rnn_forward(*args)
        raises_like_reference("rnn_forward", *args)
    out, h_n = K.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="d_output must have the dtype of x"):
        K.rnn_backward(out.astype(np.float64), h_n, x, h0, w_ih, w_hh, out)
    raises_like_reference("rnn_backward", out, h_n, x, h0, w_ih, w_hh, out.astype(np.float64))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        K.rnn_forward(*(a.astype(np.float16) for a in (x, h0, w_ih, w_hh)))
