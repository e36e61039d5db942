"""Triton MGU against the float64 reference: output, h_n, workspace and every gradient in float32,
float16 and bfloat16 (the reference computed from the cast inputs), with and without biases, None
arguments, both paths (one fused launch per step and two launches) on shapes spanning several
tiles, bad input; a GPU check at T=100, B=64, H=512."""

from __future__ import annotations

import pytest
import torch

from dlgpu.kernels.triton import gru as G
from dlgpu.kernels.triton import mgu as K
from dlgpu.reference import mgu as R
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAMES = ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")
TINY = (3, 3, 5, 6)  # T, B, I, H


def tensor(a, dtype, device="cpu"):
    return None if a is None else torch.from_numpy(a).to(device=device, dtype=dtype)


def params(gen, t, b, i, h):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh in float64, weights at torch's init scale 1/sqrt(H)
    (larger ones amplify the rounding of the stored low-precision state beyond the bf16 tolerance)."""
    scale = h**-0.5
    return (
        randn((t, b, i), gen),
        randn((b, h), gen),
        randn((2 * h, i), gen, scale=scale),
        randn((2 * h, h), gen, scale=scale),
        randn((2 * h,), gen, scale=scale),
        randn((2 * h,), gen, scale=scale),
    )


def check(dtype, gen, dims, h0=True, bias=(True, True), d_out=True, d_hn=True, device="cpu"):
    """Forward and backward on dtype tensors against the float64 reference on the same (cast) values;
    the backward of both gets the kernel's own output and workspace."""
    x, h_0, w_ih, w_hh, b_ih, b_hh = params(gen, *dims)
    h_0 = h_0 if h0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    args = [tensor(a, dtype, device) for a in (x, h_0, w_ih, w_hh, b_ih, b_hh)]
    got = K.mgu_forward(*args)
    want = R.mgu_forward(*(to_numpy(a) for a in args))
    for g, w, name in zip(got, want, ("output", "h_n", "workspace")):
        assert g.dtype == dtype and g.device.type == device, name
        assert_close(g, w, op="mgu", dtype=dtype, name=name)
    out, h_n, ws = got
    d_output = tensor(randn(out.shape, gen), dtype, device) if d_out else None
    d_h_n = tensor(randn(h_n.shape, gen), dtype, device) if d_hn else None
    bwd = (d_output, d_h_n, args[0], args[1], args[2], args[3], out, ws)
    grads = K.mgu_backward(*bwd)
    want_grads = R.mgu_backward(*(to_numpy(a) for a in bwd))
    for g, w, name in zip(grads, want_grads, NAMES):
        assert g.dtype == dtype and g.device.type == device, name
        assert_close(g, w, op="mgu", dtype=dtype, name=name)
    return got, grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(dtype, bias, gen):
    check(dtype, gen, TINY, bias=(bias, bias))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_launch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_paths(fused, dtype, gen, monkeypatch):
    """Both paths (the switch lives in gru.py, whose kernels the MGU runs on), on a shape with two
    batch blocks, two hidden tiles and two K chunks."""
    monkeypatch.setattr(G, "_FUSED_MAX_H", 10**9 if fused else 0)
    check(dtype, gen, (2, 17, 3, 40))


def test_paths_agree(gen, monkeypatch):
    args = [tensor(a, torch.float32) for a in params(gen, 3, 5, 4, 7)]
    d_out = tensor(randn((3, 5, 7), gen), torch.float32)
    results = []
    for limit in (10**9, 0):
        monkeypatch.setattr(G, "_FUSED_MAX_H", limit)
        out, h_n, ws = K.mgu_forward(*args)
        grads = K.mgu_backward(d_out, None, *args[:4], out, ws)
        results.append((out, h_n, ws, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_none_arguments(gen):
    """h0, each bias, d_output and d_h_n None: as in the reference (zeros)."""
    dims = (2, 3, 4, 5)
    check(torch.float32, gen, dims, h0=False)
    check(torch.float32, gen, dims, bias=(True, False), d_out=False)
    check(torch.float32, gen, dims, bias=(False, True), d_hn=False)
    _, grads = check(torch.float32, gen, dims, h0=False, d_out=False, d_hn=False)
    assert all(torch.all(g == 0) for g in grads)


def test_t1_and_single_unit(gen):
    check(torch.float32, gen, (1, 2, 3, 4))
    check(torch.float32, gen, (1, 1, 1, 1))


def raises_like_reference(fn, *args, **kw):
    """Our function raises the reference's exception type with the reference's message."""
    with pytest.raises((ValueError, TypeError)) as want:
        getattr(R, fn)(*(to_numpy(a) if isinstance(a, torch.Tensor) else a for a in args), **kw)
    with pytest.raises(want.type) as got:
        getattr(K, fn)(*args, **kw)
    assert str(got.value) == str(want.value)


def test_bad_input(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = (tensor(a, torch.float32) for a in params(gen, 3, 2, 4, 3))
    raises_like_reference("mgu_forward", x[0], h0, w_ih, w_hh)
    raises_like_reference("mgu_forward", x, h0.T, w_ih, w_hh)
    raises_like_reference("mgu_forward", x, h0, w_ih, w_hh, b_ih[1:], b_hh)
    raises_like_reference("mgu_forward", x, h0, tensor(randn((9, 4), gen), torch.float32), w_hh)  # a GRU's W_ih
    out, h_n, ws = K.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    raises_like_reference("mgu_backward", out, out, x, h0, w_ih, w_hh, out, ws)
    raises_like_reference("mgu_backward", out, h_n, x, h0, w_ih, w_hh, out, out)


def test_type_errors(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = (tensor(a, torch.float32) for a in params(gen, 3, 2, 4, 3))
    with pytest.raises(TypeError, match="x must be a torch tensor"):
        K.mgu_forward(x.numpy(), h0, w_ih, w_hh)
    with pytest.raises(TypeError, match="weight_hh must have a floating-point dtype"):
        K.mgu_forward(x, h0, w_ih, w_hh.to(torch.int64))
    with pytest.raises(TypeError, match="bias_hh must have (the )?dtype"):
        K.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh.bfloat16())
    out, h_n, ws = K.mgu_forward(x, h0, w_ih, w_hh)
    with pytest.raises(TypeError, match="workspace must be a torch tensor"):
        K.mgu_backward(None, h_n, x, h0, w_ih, w_hh, out, ws.numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_launch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_realistic(dtype, fused, gen, monkeypatch):
    """T=100, B=64, H=512 on CUDA, both paths (the default at this H is two launches)."""
    monkeypatch.setattr(G, "_FUSED_MAX_H", 10**9 if fused else 0)
    check(dtype, gen, (100, 64, 256, 512), device="cuda")
