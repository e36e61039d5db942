"""Numba GRU (cudnn and cho) against the float64 reference: output, h_n, workspace and every
gradient in float32 and float64, with and without biases, None arguments, odd shapes and T = 1,
saturated gates, views, torch tensors, torch.nn.GRU, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import gru as K
from dlgpu.reference import gru as R
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]
VARIANTS = ["cudnn", "cho"]
NAMES = ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


def params(gen, t, b, i, h, dtype=np.float64):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh (weights scaled so the gates stay unsaturated)."""
    return (
        randn((t, b, i), gen, dtype),
        randn((b, h), gen, dtype),
        randn((3 * h, i), gen, dtype, scale=0.5),
        randn((3 * h, h), gen, dtype, scale=0.5),
        randn((3 * h,), gen, dtype, scale=0.5),
        randn((3 * h,), gen, dtype, scale=0.5),
    )


def check(variant, dtype, gen, dims, h0=True, bias=(True, True), d_out=True, d_hn=True):
    """Forward and backward on dtype inputs against the reference on float64 copies of them."""
    x, h_0, w_ih, w_hh, b_ih, b_hh = params(gen, *dims, dtype)
    h_0 = h_0 if h0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    out, h_n, ws = K.gru_forward(x, h_0, w_ih, w_hh, b_ih, b_hh, variant)
    ref = R.gru_forward(*(to_numpy(a) for a in (x, h_0, w_ih, w_hh, b_ih, b_hh)), variant)
    for got, want, name in zip((out, h_n, ws), ref, ("output", "h_n", "workspace")):
        assert got.dtype == dtype, name
        assert_close(got, want, op="gru", dtype=dtype, name=f"{variant} {name}")
    d_output = randn(out.shape, gen, dtype) if d_out else None
    d_h_n = randn(h_n.shape, gen, dtype) if d_hn else None
    grads = K.gru_backward(d_output, d_h_n, x, h_0, w_ih, w_hh, out, ws, variant)
    ref_grads = R.gru_backward(*(to_numpy(a) for a in (d_output, d_h_n, x, h_0, w_ih, w_hh, out, ws)), variant)
    for got, want, name in zip(grads, ref_grads, NAMES):
        assert got.dtype == dtype, name
        assert_close(got, want, op="gru", dtype=dtype, name=f"{variant} {name}")
    return grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(variant, dtype, bias, gen):
    dims = tuple(int(gen.integers(lo, hi)) for lo, hi in ((2, 9), (1, 6), (1, 10), (1, 10)))
    check(variant, dtype, gen, dims, bias=(bias, bias))


@pytest.mark.parametrize("dims", [(5, 3, 7, 6), (1, 2, 3, 4), (1, 1, 1, 1)], ids=["5x3x7x6", "T1", "ones"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_odd_shapes(variant, dtype, dims, gen):
    check(variant, dtype, gen, dims)


@pytest.mark.parametrize("variant", VARIANTS)
def test_none_arguments(variant, gen):
    """h0, each bias, d_output and d_h_n None: as in the reference (zeros)."""
    dims = (4, 3, 5, 6)
    check(variant, np.float64, gen, dims, h0=False)
    check(variant, np.float64, gen, dims, bias=(True, False))
    check(variant, np.float64, gen, dims, bias=(False, True))
    check(variant, np.float64, gen, dims, d_out=False)
    check(variant, np.float32, gen, dims, d_hn=False)
    grads = check(variant, np.float64, gen, dims, h0=False, d_out=False, d_hn=False)
    assert all(np.all(g == 0) for g in grads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_saturated_gates(variant, dtype, gen):
    """Pre-activations of +-1e3 and beyond: the polynomial exp must neither overflow nor lose the sign."""
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 3, 2, 5, 4, dtype)
    x = (x * 1e3).astype(dtype)
    out, h_n, ws = K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)
    ref = R.gru_forward(*(to_numpy(a) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)), variant)
    for got, want in zip((out, h_n, ws), ref):
        assert_close(got, want, op="gru", dtype=dtype)
    d_out = np.ones_like(out)
    grads = K.gru_backward(d_out, None, x, h0, w_ih, w_hh, out, ws, variant)
    ref_grads = R.gru_backward(*(to_numpy(a) for a in (d_out, None, x, h0, w_ih, w_hh, out, ws)), variant)
    for got, want, name in zip(grads, ref_grads, NAMES):
        assert np.all(np.isfinite(got)), name
        assert_close(got, want, op="gru", dtype=dtype, name=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_views_and_torch_tensors(variant, gen):
    """Non-contiguous views (transposed storage) and torch CPU tensors give the same results."""
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 4, 3, 5, 6, np.float32)
    d_out = randn((4, 3, 6), gen, np.float32)
    want = K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)
    want_g = K.gru_backward(d_out, None, x, h0, w_ih, w_hh, want[0], want[2], variant)

    x_v = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)  # T,B,I view of B,T,I storage
    w_ih_v, w_hh_v = np.ascontiguousarray(w_ih.T).T, np.ascontiguousarray(w_hh.T).T
    assert not (x_v.flags.c_contiguous or w_ih_v.flags.c_contiguous or w_hh_v.flags.c_contiguous)
    got = K.gru_forward(x_v, h0, w_ih_v, w_hh_v, b_ih, b_hh, variant)
    got_g = K.gru_backward(d_out, None, x_v, h0, w_ih_v, w_hh_v, got[0], got[2], variant)
    for a, b in zip(got + got_g, want + want_g):
        np.testing.assert_array_equal(a, b)

    t = [torch.from_numpy(a) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    got = K.gru_forward(*t, variant=variant)
    tw = [torch.from_numpy(a) for a in (d_out, x, h0, w_ih, w_hh, got[0], got[2])]
    got_g = K.gru_backward(tw[0], None, *tw[1:], variant=variant)
    for a, b in zip(got + got_g, want + want_g):
        assert isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, b)


def test_cudnn_matches_torch_nn_gru(gen):
    t, b, i, h = 6, 3, 5, 7
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, t, b, i, h, np.float32)
    gru = torch.nn.GRU(i, h)
    with torch.no_grad():
        for p, a in zip(gru.parameters(), (w_ih, w_hh, b_ih, b_hh)):
            p.copy_(torch.from_numpy(a))
        out_t, hn_t = gru(torch.from_numpy(x), torch.from_numpy(h0)[None])
    out, h_n, _ = K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    assert_close(out, out_t, op="gru", dtype=np.float32, name="output")
    assert_close(h_n, hn_t[0], op="gru", dtype=np.float32, name="h_n")


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
    raises_like_reference("gru_forward", x[0], h0, w_ih, w_hh)
    raises_like_reference("gru_forward", x[:0], h0, w_ih, w_hh)
    raises_like_reference("gru_forward", x, h0.T, w_ih, w_hh)
    raises_like_reference("gru_forward", x, h0, w_ih[:, 1:], w_hh)
    raises_like_reference("gru_forward", x, h0, w_ih, w_hh, b_ih[1:], b_hh)
    raises_like_reference("gru_forward", x, h0, w_ih, w_hh, variant="lstm")
    raises_like_reference("gru_forward", x.astype(np.int64), h0, w_ih, w_hh)
    raises_like_reference("gru_forward", x.tolist(), h0, w_ih, w_hh)
    out, h_n, ws = R.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    raises_like_reference("gru_backward", out[1:], h_n, x, h0, w_ih, w_hh, out, ws)
    raises_like_reference("gru_backward", out, out, x, h0, w_ih, w_hh, out, ws)
    raises_like_reference("gru_backward", out, h_n, x, h0, w_ih, w_hh, out, ws, "cho")  # cudnn workspace
    raises_like_reference("gru_backward", out, h_n, x, h0, w_ih, w_hh, out, ws, "Cho")


def test_mixed_dtypes_raise_type_error(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 3, 2, 4, 5, np.float32)
    with pytest.raises(TypeError, match="weight_hh must have the dtype of x"):
        K.gru_forward(x, h0, w_ih, w_hh.astype(np.float64))
    with pytest.raises(TypeError, match="bias_hh must have (the )?dtype"):
        K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh.astype(np.float64), "cho")
    out, h_n, ws = K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="d_output must have (the )?dtype"):
        K.gru_backward(out.astype(np.float64), None, x, h0, w_ih, w_hh, out, ws)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        K.gru_forward(*(a.astype(np.float16) for a in (x, h0, w_ih, w_hh)))
