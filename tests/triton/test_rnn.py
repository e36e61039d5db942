"""Triton RNN (tanh, relu) and readout against the float64 reference: output, h_n and every
gradient in float32, bfloat16 and float16 (the reference computed from the cast inputs), with and
without biases, None arguments, T = 1, several batch/hidden tiles, saturation, views, bad input;
and on CUDA a realistic T=100, B=64, H=512."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import rnn as K
from dlgpu.reference import rnn as R
from dlgpu.testing import assert_close, randn, to_numpy

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
NONLIN = ["tanh", "relu"]
NAMES = ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


@pytest.fixture(params=["sequence", "per_step"])
def path(request, monkeypatch):
    """The forward's two paths: one launch for the whole sequence (small H), one per step."""
    limit = 1 << 30 if request.param == "sequence" else 0
    monkeypatch.setattr(K, "SEQUENCE_MAX_H", dict.fromkeys(DTYPES, limit))
    return request.param


def tt(a, dtype, device=DEV):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)


def params(gen, t, b, i, h, scale=0.5):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh in float64."""
    return (
        randn((t, b, i), gen),
        randn((b, h), gen),
        randn((h, i), gen, scale=scale),
        randn((h, h), gen, scale=scale),
        randn((h,), gen, scale=0.5),
        randn((h,), gen, scale=0.5),
    )


def check(gen, dims, dtype, nonlinearity, h0=True, bias=(True, True), d_out=True, d_hn=True, scale=0.5, device=DEV):
    """Forward and backward on ``dtype`` tensors against the reference on float64 copies of them;
    the backward reference runs on the kernel's own (upcast) output, so each pass is judged alone."""
    x, h_0, w_ih, w_hh, b_ih, b_hh = params(gen, *dims, scale=scale)
    h_0 = h_0 if h0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    args = [tt(a, dtype, device) for a in (x, h_0, w_ih, w_hh, b_ih, b_hh)]
    out, h_n = K.rnn_forward(*args, nonlinearity=nonlinearity)
    ref = R.rnn_forward(*(to_numpy(a) for a in args), nonlinearity=nonlinearity)
    for got, want, name in zip((out, h_n), ref, ("output", "h_n")):
        assert got.dtype == dtype and got.device.type == torch.device(device).type, name
        assert_close(got, want, op="rnn", dtype=dtype, name=f"{nonlinearity} {name}")
    d_output = tt(randn(out.shape, gen), dtype, device) if d_out else None
    d_h_n = tt(randn(h_n.shape, gen), dtype, device) if d_hn else None
    bwd = (d_output, d_h_n, args[0], args[1], args[2], args[3], out)
    grads = K.rnn_backward(*bwd, nonlinearity=nonlinearity)
    ref_grads = R.rnn_backward(*(to_numpy(a) for a in bwd), nonlinearity=nonlinearity)
    for got, want, name in zip(grads, ref_grads, NAMES):
        assert got.dtype == dtype, name
        assert_close(got, want, op="rnn", dtype=dtype, name=f"{nonlinearity} {name}")
    return grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_matches_reference(nonlinearity, dtype, bias, path, gen):
    check(gen, (3, 3, 5, 6), dtype, nonlinearity, bias=(bias, bias))


@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_several_tiles(nonlinearity, path, gen):
    """B = 17 and H = 37: two batch blocks, three hidden tiles, a K loop of two ragged steps."""
    check(gen, (2, 17, 5, 37), torch.float32, nonlinearity, scale=0.2)


@pytest.mark.parametrize("dims", [(1, 2, 3, 4), (1, 1, 1, 1), (4, 1, 2, 3)], ids=["T1", "ones", "B1"])
def test_odd_shapes(dims, gen):
    check(gen, dims, torch.float32, "tanh")


def test_none_arguments(path, gen):
    """h0, either bias, d_output and d_h_n None: as the reference (zeros)."""
    dims = (4, 3, 5, 6)
    check(gen, dims, torch.float32, "tanh", h0=False)
    check(gen, dims, torch.float32, "relu", bias=(True, False))
    check(gen, dims, torch.float32, "tanh", bias=(False, True))
    check(gen, dims, torch.float32, "tanh", d_out=False)
    check(gen, dims, torch.bfloat16, "relu", d_hn=False)
    check(gen, (1, 2, 3, 4), torch.float32, "tanh", h0=False)  # T = 1 without h0: dW_hh is all zeros
    grads = check(gen, dims, torch.float32, "tanh", h0=False, d_out=False, d_hn=False)
    assert all(torch.all(g == 0) for g in grads)


def test_saturated(gen):
    """Pre-activations of +-1e3: tanh saturates without overflow, relu passes them through."""
    x, h0, w_ih, w_hh, b_ih, b_hh = (tt(a, torch.float32) for a in params(gen, 3, 2, 5, 4))
    for nl in NONLIN:
        out, h_n = K.rnn_forward(x * 1e3, h0, w_ih, w_hh, b_ih, b_hh, nl)
        ref = R.rnn_forward(*(to_numpy(a) for a in (x * 1e3, h0, w_ih, w_hh, b_ih, b_hh)), nl)
        assert torch.all(torch.isfinite(out))
        assert_close(out, ref[0], op="rnn", dtype="float32")
        grads = K.rnn_backward(torch.ones_like(out), None, x * 1e3, h0, w_ih, w_hh, out, nl)
        ref_grads = R.rnn_backward(np.ones(out.shape), None, *(to_numpy(a) for a in (x * 1e3, h0, w_ih, w_hh, out)), nl)
        for got, want, name in zip(grads, ref_grads, NAMES):
            assert_close(got, want, op="rnn", dtype="float32", name=f"{nl} {name}")


def test_views(gen):
    """Non-contiguous inputs (transposed storage) give the same results as contiguous ones."""
    x, h0, w_ih, w_hh, b_ih, b_hh = (tt(a, torch.float32) for a in params(gen, 4, 3, 5, 6))
    want = K.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    x_v = x.transpose(0, 1).contiguous().transpose(0, 1)
    w_ih_v, w_hh_v = w_ih.t().contiguous().t(), w_hh.t().contiguous().t()
    assert not (x_v.is_contiguous() or w_ih_v.is_contiguous() or w_hh_v.is_contiguous())
    got = K.rnn_forward(x_v, h0, w_ih_v, w_hh_v, b_ih, b_hh)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    d_out = torch.ones_like(want[0]).transpose(0, 1).contiguous().transpose(0, 1)
    got_g = K.rnn_backward(d_out, None, x_v, h0, w_ih_v, w_hh_v, got[0])
    want_g = K.rnn_backward(torch.ones_like(want[0]), None, x, h0, w_ih, w_hh, want[0])
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------- readout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_readout(activation, dtype, gen):
    T, B, H, O = 3, 2, 5, 7
    h, w, b = (tt(a, dtype) for a in (randn((T, B, H), gen), randn((O, H), gen), randn((O,), gen)))
    for bias in (b, None):
        y = K.rnn_readout_forward(h, w, bias, activation)
        y_ref = R.rnn_readout_forward(to_numpy(h), to_numpy(w), to_numpy(bias), activation)
        assert y.dtype == dtype
        assert_close(y, y_ref, op="linear", dtype=dtype, name=f"readout {activation} y")
        dy = tt(randn(y.shape, gen), dtype)
        got = K.rnn_readout_backward(dy, h, w, y, activation)
        want = R.rnn_readout_backward(to_numpy(dy), to_numpy(h), to_numpy(w), to_numpy(y), activation)
        for g, r, name in zip(got, want, ("doutput", "dweight", "dbias")):
            assert g.dtype == dtype
            assert_close(g, r, op="linear", dtype=dtype, name=f"readout {activation} {name}")


# --------------------------------------------------------------------- bad input


def _same_error(kernel_call, reference_call):
    """The kernel raises what the reference raises (the message up to its "got ...", which prints
    torch.Size where the reference, given numpy arrays, prints a tuple; dtypes without "torch.")."""
    with pytest.raises((ValueError, TypeError)) as want:
        reference_call()
    with pytest.raises(want.type) as got:
        kernel_call()
    def norm(e):
        return str(e.value).replace("torch.", "").split("got")[0]

    assert norm(got) == norm(want)


def test_bad_input_matches_reference(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = params(gen, 3, 2, 5, 4)
    n = [a.astype(np.float32) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    t = [tt(a, torch.float32) for a in n]
    d = n[0][..., :4]  # a [T, B, H] array
    _same_error(lambda: K.rnn_forward(*t, nonlinearity="gelu"), lambda: R.rnn_forward(*n, nonlinearity="gelu"))
    _same_error(lambda: K.rnn_forward(*t[:3], t[3][:, :3]), lambda: R.rnn_forward(*n[:3], n[3][:, :3]))
    _same_error(lambda: K.rnn_forward(t[0], t[1][:1], *t[2:4]), lambda: R.rnn_forward(n[0], n[1][:1], *n[2:4]))
    _same_error(lambda: K.rnn_forward(t[0], t[1].double(), *t[2:4]),
                lambda: R.rnn_forward(n[0], n[1].astype(np.float64), *n[2:4]))  # fmt: skip
    _same_error(lambda: K.rnn_backward(tt(d, torch.float32)[:2], None, *t[:4], tt(d, torch.float32)),
                lambda: R.rnn_backward(d[:2], None, *n[:4], d))  # fmt: skip
    _same_error(lambda: K.rnn_readout_forward(t[0], t[3][:, :2]), lambda: R.rnn_readout_forward(n[0], n[3][:, :2]))
    _same_error(lambda: K.rnn_readout_backward(tt(d, torch.float32), tt(d, torch.float32), t[3], None, "relu"),
                lambda: R.rnn_readout_backward(d, d, n[3], None, "relu"))  # fmt: skip


def test_type_errors(gen):
    x, h0, w_ih, w_hh, _, _ = params(gen, 3, 2, 5, 4)
    t = [tt(a, torch.float32) for a in (x, h0, w_ih, w_hh)]
    with pytest.raises(TypeError):
        K.rnn_forward(x.astype(np.float32), None, *(a.astype(np.float32) for a in (w_ih, w_hh)))  # numpy arrays
    with pytest.raises(TypeError):
        K.rnn_forward(t[0].to(torch.int32), None, t[2], t[3])
    with pytest.raises(TypeError):
        K.rnn_forward(*(a.double() for a in t))  # float64: not a triton storage dtype
    with pytest.raises(TypeError):
        K.rnn_readout_forward(t[0].to(torch.int64), t[2])


# --------------------------------------------------------------------------- gpu


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_realistic_cuda(nonlinearity, dtype, path, gen):
    """T=100, B=64, I=128, H=512 on the GPU (weights ~ 0.5/sqrt(H): a contracting recurrence,
    as trained nets have, so rounding does not grow over the 100 steps)."""
    check(gen, (100, 64, 128, 512), dtype, nonlinearity, scale=0.5 / np.sqrt(512), device="cuda")
