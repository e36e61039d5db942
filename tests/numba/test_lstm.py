"""Numba LSTM (forget, no_forget, peephole) against the float64 reference: output, h_n, c_n, the
workspace and every gradient in float32 and float64, with and without biases, None arguments,
odd shapes and T = 1, several input-projection blocks, saturated gates, views, torch tensors,
torch.nn.LSTM, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import lstm as K
from dlgpu.kernels.numba import rnn as KR
from dlgpu.reference import lstm as R
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]
VARIANTS = ["forget", "no_forget", "peephole"]
OUT_NAMES = ("output", "h_n", "c_n", "workspace")
GRAD_NAMES = ("dx", "dh0", "dc0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh", "dweight_peephole")


def params(gen, variant, t, b, i, h, dtype=np.float64):
    """x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole (None unless peephole)."""
    g = R.GATES[variant]
    return (
        randn((t, b, i), gen, dtype),
        randn((b, h), gen, dtype),
        randn((b, h), gen, dtype),
        randn((g * h, i), gen, dtype, scale=0.5),
        randn((g * h, h), gen, dtype, scale=0.5),
        randn((g * h,), gen, dtype, scale=0.5),
        randn((g * h,), gen, dtype, scale=0.5),
        randn((3, h), gen, dtype, scale=0.5) if variant == "peephole" else None,
    )


def check(variant, dtype, gen, dims, h0=True, c0=True, bias=(True, True), d_out=True, d_hn=True, d_cn=True, scale=1.0):
    """Forward and backward on dtype inputs against the reference on float64 copies of them."""
    x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, p = params(gen, variant, *dims, dtype)
    x = (x * scale).astype(dtype)
    h_0, c_0 = h_0 if h0 else None, c_0 if c0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    args = (x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, p)
    outs = K.lstm_forward(*args, variant)
    ref = R.lstm_forward(*(to_numpy(a) for a in args), variant)
    for got, want, name in zip(outs, ref, OUT_NAMES):
        assert got.dtype == dtype, name
        assert_close(got, want, op="lstm", dtype=dtype, name=f"{variant} {name}")
    out, h_n, c_n, ws = outs
    d_output = randn(out.shape, gen, dtype) if d_out else None
    d_h_n = randn(h_n.shape, gen, dtype) if d_hn else None
    d_c_n = randn(c_n.shape, gen, dtype) if d_cn else None
    bargs = (d_output, d_h_n, d_c_n, x, h_0, c_0, w_ih, w_hh, out, ws, p)
    grads = K.lstm_backward(*bargs, variant)
    ref_grads = R.lstm_backward(*(to_numpy(a) for a in bargs), variant)
    for got, want, name in zip(grads, ref_grads, GRAD_NAMES):
        if want is None:  # dweight_peephole without peepholes
            assert got is None, name
            continue
        assert got.dtype == dtype, name
        assert_close(got, want, op="lstm", dtype=dtype, name=f"{variant} {name}")
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
    """h0, c0, each bias, d_output, d_h_n and d_c_n None: as in the reference (zeros)."""
    dims = (4, 3, 5, 6)
    check(variant, np.float64, gen, dims, h0=False)
    check(variant, np.float64, gen, dims, c0=False)
    check(variant, np.float32, gen, dims, h0=False, c0=False)
    check(variant, np.float64, gen, dims, bias=(True, False))
    check(variant, np.float64, gen, dims, bias=(False, True))
    check(variant, np.float64, gen, dims, d_out=False)
    check(variant, np.float32, gen, dims, d_hn=False)
    check(variant, np.float64, gen, dims, d_cn=False)
    grads = check(variant, np.float64, gen, dims, d_out=False, d_hn=False, d_cn=False)
    assert all(g is None or np.all(g == 0) for g in grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_several_projection_blocks(variant, gen, monkeypatch):
    """The input projection in blocks of 2 steps (the last one partial), and G*H not a multiple
    of 16 (the per-step transpose's tail)."""
    t, b, i, h = 5, 3, 4, 9
    g = R.GATES[variant]
    monkeypatch.setattr(KR, "_XW_BLOCK_BYTES", 2 * b * g * h * 8)
    assert KR.block_steps(t, b, g * h, 8) == 2
    check(variant, np.float64, gen, (t, b, i, h))
    check(variant, np.float32, gen, (t, b, i, h))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_saturated_gates(variant, dtype, gen):
    """Pre-activations of +-1e3 and beyond: the polynomial exp must neither overflow nor lose the sign."""
    grads = check(variant, dtype, gen, (3, 2, 5, 4), scale=1e3)
    assert all(g is None or np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_views_and_torch_tensors(variant, gen):
    """Non-contiguous views (transposed storage) and torch CPU tensors give the same results."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = params(gen, variant, 4, 3, 5, 6, np.float32)
    d_out = randn((4, 3, 6), gen, np.float32)
    want = K.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, p, variant)
    want_g = K.lstm_backward(d_out, None, None, x, h0, c0, w_ih, w_hh, want[0], want[3], p, variant)

    x_v = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)  # T,B,I view of B,T,I storage
    w_ih_v, w_hh_v, c0_v = (np.ascontiguousarray(a.T).T for a in (w_ih, w_hh, c0))
    assert not any(a.flags.c_contiguous for a in (x_v, w_ih_v, w_hh_v, c0_v))
    got = K.lstm_forward(x_v, h0, c0_v, w_ih_v, w_hh_v, b_ih, b_hh, p, variant)
    got_g = K.lstm_backward(d_out, None, None, x_v, h0, c0_v, w_ih_v, w_hh_v, got[0], got[3], p, variant)
    for a, b in zip(got + got_g, want + want_g):
        np.testing.assert_array_equal(a, b)

    tt = [None if a is None else torch.from_numpy(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh, p)]
    got = K.lstm_forward(*tt, variant=variant)
    tb = [torch.from_numpy(a) for a in (d_out, got[0], got[3])]
    got_g = K.lstm_backward(tb[0], None, None, *tt[:5], tb[1], tb[2], tt[7], variant)
    for a, b in zip(got + got_g, want + want_g):
        assert b is None or isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, b)


def test_forget_matches_torch_nn_lstm(gen):
    t, b, i, h = 6, 3, 5, 7
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = params(gen, "forget", t, b, i, h, np.float32)
    lstm = torch.nn.LSTM(i, h)
    with torch.no_grad():
        for prm, a in zip(lstm.parameters(), (w_ih, w_hh, b_ih, b_hh)):
            prm.copy_(torch.from_numpy(a))
        out_t, (hn_t, cn_t) = lstm(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    out, h_n, c_n, _ = K.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    assert_close(out, out_t, op="lstm", dtype=np.float32, name="output")
    assert_close(h_n, hn_t[0], op="lstm", dtype=np.float32, name="h_n")
    assert_close(c_n, cn_t[0], op="lstm", dtype=np.float32, name="c_n")


def raises_like_reference(fn, *args, **kw):
    """Our function raises the reference's exception type with the reference's message."""
    with pytest.raises((ValueError, TypeError)) as want:
        getattr(R, fn)(*args, **kw)
    with pytest.raises(want.type) as got:
        getattr(K, fn)(*args, **kw)
    assert str(got.value) == str(want.value)


def test_bad_input(gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = params(gen, "forget", t, b, i, h)
    p = randn((3, h), gen)
    raises_like_reference("lstm_forward", x[0], h0, c0, w_ih, w_hh)
    raises_like_reference("lstm_forward", x[:0], h0, c0, w_ih, w_hh)
    raises_like_reference("lstm_forward", x, h0, c0.T, w_ih, w_hh)
    raises_like_reference("lstm_forward", x, h0, c0, w_ih, w_hh, variant="no_forget")  # forget-shaped weights
    raises_like_reference("lstm_forward", x, h0, c0, w_ih, w_hh, b_ih[1:], b_hh)
    raises_like_reference("lstm_forward", x, h0, c0, w_ih, w_hh, variant="peephole")  # no weight_peephole
    raises_like_reference("lstm_forward", x, h0, c0, w_ih, w_hh, weight_peephole=p)  # peephole for "forget"
    raises_like_reference("lstm_forward", x, h0, c0, w_ih, w_hh, variant="coupled")
    raises_like_reference("lstm_forward", x.astype(np.int64), h0, c0, w_ih, w_hh)
    raises_like_reference("lstm_forward", x.tolist(), h0, c0, w_ih, w_hh)
    out, h_n, c_n, ws = R.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    raises_like_reference("lstm_backward", out[1:], h_n, c_n, x, h0, c0, w_ih, w_hh, out, ws)
    raises_like_reference("lstm_backward", out, h_n, c_n, x, h0, c0, w_ih, w_hh, out, ws[..., : 4 * h])
    raises_like_reference("lstm_backward", out, h_n, c_n.T, x, h0, c0, w_ih, w_hh, out, ws)
    raises_like_reference("lstm_backward", out, h_n, c_n, x, h0, c0, w_ih, w_hh, out, ws, variant="peephole")


def test_mixed_dtypes_raise_type_error(gen):
    """Like the reference: a TypeError that names the argument whose dtype differs from x's."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = params(gen, "peephole", 3, 2, 4, 5, np.float32)
    for k, name in ((4, "weight_hh"), (2, "c0"), (6, "bias_hh"), (7, "weight_peephole")):
        args = [x, h0, c0, w_ih, w_hh, b_ih, b_hh, p]
        args[k] = args[k].astype(np.float64)
        with pytest.raises(TypeError, match=f"{name} must have the dtype of x"):
            K.lstm_forward(*args, "peephole")
        raises_like_reference("lstm_forward", *args, "peephole")
    out, h_n, c_n, ws = K.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, p, "peephole")
    with pytest.raises(TypeError, match="workspace must have the dtype of x"):
        K.lstm_backward(out, h_n, c_n, x, h0, c0, w_ih, w_hh, out, ws.astype(np.float64), p, "peephole")
    d_c_n = c_n.astype(np.float64)
    raises_like_reference("lstm_backward", out, h_n, d_c_n, x, h0, c0, w_ih, w_hh, out, ws, p, "peephole")
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        K.lstm_forward(*(a.astype(np.float16) for a in (x, h0, c0, w_ih, w_hh)))
