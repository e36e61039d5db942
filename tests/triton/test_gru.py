"""Triton GRU (cudnn and cho) against the float64 reference: output, h_n, workspace and every
gradient in float32, float16 and bfloat16 (the reference computed from the cast inputs), with and
without biases, None arguments, both cho paths (one fused launch per step and two launches) on
shapes spanning several tiles, torch.nn.GRU, bad input; a GPU check at T=100, B=64, H=512."""

from __future__ import annotations

import pytest
import torch

from dlgpu.kernels.triton import gru as K
from dlgpu.reference import gru as R
from dlgpu.testing import assert_close, randn, to_numpy

VARIANTS = ["cudnn", "cho"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAMES = ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")
TINY = (3, 3, 5, 6)  # T, B, I, H


def tensor(a, dtype, device="cpu"):
    return None if a is None else torch.from_numpy(a).to(device=device, dtype=dtype)


def params(gen, t, b, i, h, scale=None):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh in float64. Weights at torch's init scale 1/sqrt(H):
    larger ones give the recurrence a gain > 1 that amplifies the unavoidable rounding of the stored
    low-precision state beyond the bf16 tolerance within a few steps."""
    scale = h**-0.5 if scale is None else scale
    return (
        randn((t, b, i), gen),
        randn((b, h), gen),
        randn((3 * h, i), gen, scale=scale),
        randn((3 * h, h), gen, scale=scale),
        randn((3 * h,), gen, scale=scale),
        randn((3 * h,), gen, scale=scale),
    )


def check(variant, dtype, gen, dims, h0=True, bias=(True, True), d_out=True, d_hn=True, device="cpu", scale=None):
    """Forward and backward on dtype tensors against the float64 reference on the same (cast) values;
    the backward of both gets the kernel's own output and workspace."""
    x, h_0, w_ih, w_hh, b_ih, b_hh = params(gen, *dims, scale=scale)
    h_0 = h_0 if h0 else None
    b_ih, b_hh = (b if use else None for b, use in zip((b_ih, b_hh), bias))
    args = [tensor(a, dtype, device) for a in (x, h_0, w_ih, w_hh, b_ih, b_hh)]
    got = K.gru_forward(*args, variant=variant)
    want = R.gru_forward(*(to_numpy(a) for a in args), variant)
    for g, w, name in zip(got, want, ("output", "h_n", "workspace")):
        assert g.dtype == dtype and g.device.type == device, name
        assert_close(g, w, op="gru", dtype=dtype, name=f"{variant} {name}")
    out, h_n, ws = got
    d_output = tensor(randn(out.shape, gen), dtype, device) if d_out else None
    d_h_n = tensor(randn(h_n.shape, gen), dtype, device) if d_hn else None
    bwd = (d_output, d_h_n, args[0], args[1], args[2], args[3], out, ws)
    grads = K.gru_backward(*bwd, variant=variant)
    want_grads = R.gru_backward(*(to_numpy(a) for a in bwd), variant)
    for g, w, name in zip(grads, want_grads, NAMES):
        assert g.dtype == dtype and g.device.type == device, name
        assert_close(g, w, op="gru", dtype=dtype, name=f"{variant} {name}")
    return got, grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(variant, dtype, bias, gen):
    check(variant, dtype, gen, TINY, bias=(bias, bias))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_launch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cho_paths(fused, dtype, gen, monkeypatch):
    """Both cho paths, on a shape with two batch blocks, two hidden tiles and two K chunks."""
    monkeypatch.setattr(K, "_FUSED_MAX_H", 10**9 if fused else 0)
    check("cho", dtype, gen, (2, 17, 3, 40))


def test_cho_paths_agree(gen, monkeypatch):
    args = [tensor(a, torch.float32) for a in params(gen, 3, 5, 4, 7)]
    d_out = tensor(randn((3, 5, 7), gen), torch.float32)
    results = []
    for limit in (10**9, 0):
        monkeypatch.setattr(K, "_FUSED_MAX_H", limit)
        out, h_n, ws = K.gru_forward(*args, variant="cho")
        grads = K.gru_backward(d_out, None, *args[:4], out, ws, variant="cho")
        results.append((out, h_n, ws, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_cudnn_multi_tile(gen):
    check("cudnn", torch.float32, gen, (2, 17, 3, 40))


@pytest.mark.parametrize("variant", VARIANTS)
def test_none_arguments(variant, gen):
    """h0, each bias, d_output and d_h_n None: as in the reference (zeros)."""
    dims = (2, 3, 4, 5)
    check(variant, torch.float32, gen, dims, h0=False)
    check(variant, torch.float32, gen, dims, bias=(True, False), d_out=False)
    check(variant, torch.float32, gen, dims, bias=(False, True), d_hn=False)
    _, grads = check(variant, torch.float32, gen, dims, h0=False, d_out=False, d_hn=False)
    assert all(torch.all(g == 0) for g in grads)


def test_t1_and_single_unit(gen):
    check("cudnn", torch.float32, gen, (1, 2, 3, 4))
    check("cho", torch.float32, gen, (1, 1, 1, 1))


def test_cudnn_matches_torch_nn_gru(gen):
    t, b, i, h = 4, 3, 5, 7
    args = [tensor(a, torch.float32) for a in params(gen, t, b, i, h)]
    gru = torch.nn.GRU(i, h)
    with torch.no_grad():
        for p, a in zip(gru.parameters(), (args[2], args[3], args[4], args[5])):
            p.copy_(a)
        out_t, hn_t = gru(args[0], args[1][None])
    out, h_n, _ = K.gru_forward(*args)
    assert_close(out, out_t, op="gru", dtype="float32", name="output")
    assert_close(h_n, hn_t[0], op="gru", dtype="float32", name="h_n")


def raises_like_reference(fn, *args, **kw):
    """Our function raises the reference's exception type with the reference's message."""
    with pytest.raises((ValueError, TypeError)) as want:
        getattr(R, fn)(*(to_numpy(a) if isinstance(a, torch.Tensor) else a for a in args), **kw)
    with pytest.raises(want.type) as got:
        getattr(K, fn)(*args, **kw)
    assert str(got.value) == str(want.value)


def test_bad_input(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = (tensor(a, torch.float32) for a in params(gen, 3, 2, 4, 3))
    raises_like_reference("gru_forward", x[0], h0, w_ih, w_hh)
    raises_like_reference("gru_forward", x, h0.T, w_ih, w_hh)
    raises_like_reference("gru_forward", x, h0, w_ih[:, 1:], w_hh)
    raises_like_reference("gru_forward", x, h0, w_ih, w_hh, b_ih[1:], b_hh)
    raises_like_reference("gru_forward", x, h0, w_ih, w_hh, variant="lstm")
    out, h_n, ws = K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    raises_like_reference("gru_backward", out[1:], h_n, x, h0, w_ih, w_hh, out, ws)
    raises_like_reference("gru_backward", out, h_n, x, h0, w_ih, w_hh, out, ws, "cho")  # a cudnn workspace


def test_type_errors(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = (tensor(a, torch.float32) for a in params(gen, 3, 2, 4, 3))
    with pytest.raises(TypeError, match="x must be a torch tensor"):
        K.gru_forward(x.numpy(), h0, w_ih, w_hh)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        K.gru_forward(x.to(torch.int32), h0, w_ih, w_hh)
    with pytest.raises(TypeError, match="x must be float32, float16 or bfloat16"):
        K.gru_forward(x.double(), h0.double(), w_ih.double(), w_hh.double())
    with pytest.raises(TypeError, match="bias_hh must have (the )?dtype"):
        K.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh.half(), "cho")
    out, h_n, ws = K.gru_forward(x, h0, w_ih, w_hh)
    with pytest.raises(TypeError, match="d_output must have dtype torch.float32"):
        K.gru_backward(out.bfloat16(), None, x, h0, w_ih, w_hh, out, ws)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("variant,fused", [("cudnn", None), ("cho", True), ("cho", False)],
                         ids=["cudnn", "cho_fused", "cho_two_launch"])  # fmt: skip
def test_gpu_realistic(variant, fused, dtype, gen, monkeypatch):
    """T=100, B=64, H=512 on CUDA; cho on both paths (the default at this H is two launches)."""
    if fused is not None:
        monkeypatch.setattr(K, "_FUSED_MAX_H", 10**9 if fused else 0)
    check(variant, dtype, gen, (100, 64, 256, 512), device="cuda")
