"""Reference GRU (cudnn and cho variants): finite differences, torch, None arguments, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.reference import gru as G
from dlgpu.testing import assert_close, check_gradients, randn

VARIANTS = ("cudnn", "cho")
WS = {"cudnn": 4, "cho": 3}


def _dims(gen: np.random.Generator) -> tuple[int, int, int, int]:
    """Random tiny (T, B, I, H): finite differences cost two forwards per element."""
    t, b, i, h = (int(gen.choice(c)) for c in ((3, 4, 5), (2, 3), (3, 5, 7), (3, 4, 5)))
    return t, b, i, h


def _params(gen, t, b, i, h, dtype=np.float64):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh (weights scaled so the gates stay unsaturated)."""
    return (
        randn((t, b, i), gen, dtype),
        randn((b, h), gen, dtype),
        randn((3 * h, i), gen, dtype, scale=0.5),
        randn((3 * h, h), gen, dtype, scale=0.5),
        randn((3 * h,), gen, dtype, scale=0.5),
        randn((3 * h,), gen, dtype, scale=0.5),
    )


def _torch_gru(x, h0, w_ih, w_hh, b_ih, b_hh, variant):
    """The GRU equations written with torch ops (the second opinion for cho, and for the workspace)."""
    h = w_hh.shape[1]
    hs, ws = [], []
    h_prev = h0
    for t in range(x.shape[0]):
        gx = x[t] @ w_ih.T + (b_ih if b_ih is not None else 0)
        bh = b_hh if b_hh is not None else torch.zeros(3 * h, dtype=x.dtype)
        r = torch.sigmoid(gx[:, :h] + h_prev @ w_hh[:h].T + bh[:h])
        z = torch.sigmoid(gx[:, h : 2 * h] + h_prev @ w_hh[h : 2 * h].T + bh[h : 2 * h])
        if variant == "cudnn":
            hn = h_prev @ w_hh[2 * h :].T + bh[2 * h :]
            n = torch.tanh(gx[:, 2 * h :] + r * hn)
            h_prev = (1 - z) * n + z * h_prev
            ws.append(torch.cat([r, z, n, hn], dim=-1))
        else:
            n = torch.tanh(gx[:, 2 * h :] + (r * h_prev) @ w_hh[2 * h :].T + bh[2 * h :])
            h_prev = (1 - z) * h_prev + z * n
            ws.append(torch.cat([r, z, n], dim=-1))
        hs.append(h_prev)
    return torch.stack(hs), h_prev, torch.stack(ws)


# ------------------------------------------------------------ finite differences


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gru_finite_differences(variant, bias, gen):
    t, b, i, h = _dims(gen)
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    if not bias:  # the backward must still return the gradient w.r.t. a bias sitting at 0
        b_ih, b_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    fb_ih, fb_hh = (b_ih, b_hh) if bias else (None, None)
    out, h_n, ws = G.gru_forward(x, h0, w_ih, w_hh, fb_ih, fb_hh, variant)
    assert ws.shape == (t, b, WS[variant] * h)
    d_out, d_hn = randn(out.shape, gen), randn(h_n.shape, gen)
    grads = G.gru_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws, variant)
    names = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    analytic = dict(zip(names, grads))
    for name, got in analytic.items():
        assert got.shape == {"x": x, "h0": h0, "weight_ih": w_ih, "weight_hh": w_hh}.get(name, b_ih).shape, name
    check_gradients(
        lambda: G.gru_forward(x, h0, w_ih, w_hh, fb_ih, fb_hh, variant)[:2],
        {"x": x, "h0": h0, "weight_ih": w_ih, "weight_hh": w_hh},
        analytic,
        (d_out, d_hn),
    )
    check_gradients(
        lambda: G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)[:2],
        {"bias_ih": b_ih, "bias_hh": b_hh},
        analytic,
        (d_out, d_hn),
    )


# ------------------------------------------------------------------------ torch


@pytest.mark.parametrize("t", [1, 7])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gru_cudnn_matches_torch_nn_gru(bias, t, gen):
    b, i, h = 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    d_out, d_hn = randn((t, b, h), gen), randn((b, h), gen)
    gru = torch.nn.GRU(i, h, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.tensor(w_ih))
        gru.weight_hh_l0.copy_(torch.tensor(w_hh))
        if bias:
            gru.bias_ih_l0.copy_(torch.tensor(b_ih))
            gru.bias_hh_l0.copy_(torch.tensor(b_hh))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    out_t, hn_t = gru(xt, h0t)
    ((out_t * torch.tensor(d_out)).sum() + (hn_t[0] * torch.tensor(d_hn)).sum()).backward()

    fb_ih, fb_hh = (b_ih, b_hh) if bias else (None, None)
    out, h_n, ws = G.gru_forward(x, h0, w_ih, w_hh, fb_ih, fb_hh, "cudnn")
    assert_close(out, out_t, "gru", name="output")
    assert_close(h_n, hn_t[0], "gru", name="h_n")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = G.gru_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws, "cudnn")
    assert_close(dx, xt.grad, "gru", name="dx")
    assert_close(dh0, h0t.grad[0], "gru", name="dh0")
    assert_close(dw_ih, gru.weight_ih_l0.grad, "gru", name="dweight_ih")
    assert_close(dw_hh, gru.weight_hh_l0.grad, "gru", name="dweight_hh")
    if bias:
        assert_close(db_ih, gru.bias_ih_l0.grad, "gru", name="dbias_ih")
        assert_close(db_hh, gru.bias_hh_l0.grad, "gru", name="dbias_hh")


@pytest.mark.parametrize("variant", VARIANTS)
def test_gru_matches_torch_equations(variant, gen):
    """Both variants against the equations in torch ops: output, h_n, workspace and every gradient."""
    t, b, i, h = 6, 3, 7, 5
    arrays = _params(gen, t, b, i, h)
    d_out, d_hn = randn((t, b, h), gen), randn((b, h), gen)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_t, hn_t, ws_t = _torch_gru(*ts, variant)
    ((out_t * torch.tensor(d_out)).sum() + (hn_t * torch.tensor(d_hn)).sum()).backward()

    x, h0, w_ih, w_hh, b_ih, b_hh = arrays
    out, h_n, ws = G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)
    assert_close(out, out_t, "gru", name="output")
    assert_close(h_n, hn_t, "gru", name="h_n")
    assert_close(ws, ws_t, "gru", name="workspace")
    grads = G.gru_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws, variant)
    for got, want, name in zip(grads, ts, ("dx", "dh0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")):
        assert_close(got, want.grad, "gru", name=f"{variant} {name}")


def test_variants_differ(gen):
    """The variant argument is honoured: same weights, different cells."""
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, 3, 2, 5, 4)
    a = G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, "cudnn")[0]
    c = G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, "cho")[0]
    assert np.max(np.abs(a - c)) > 1e-3


# ---------------------------------------------------------------- None arguments


@pytest.mark.parametrize("variant", VARIANTS)
def test_none_arguments_mean_zeros(variant, gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    zeros_h, zeros_b = np.zeros((b, h)), np.zeros(3 * h)
    # h0 None == zeros, forward and backward
    out, h_n, ws = G.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh, variant)
    out0, h_n0, ws0 = G.gru_forward(x, zeros_h, w_ih, w_hh, b_ih, b_hh, variant)
    for got, want in ((out, out0), (h_n, h_n0), (ws, ws0)):
        np.testing.assert_array_equal(got, want)
    d_out, d_hn = randn(out.shape, gen), randn(h_n.shape, gen)
    g = G.gru_backward(d_out, d_hn, x, None, w_ih, w_hh, out, ws, variant)
    g0 = G.gru_backward(d_out, d_hn, x, zeros_h, w_ih, w_hh, out, ws, variant)
    for got, want in zip(g, g0):
        np.testing.assert_array_equal(got, want)
    # bias None == zero bias (each bias on its own)
    ref = G.gru_forward(x, h0, w_ih, w_hh, zeros_b, zeros_b, variant)
    for bi, bh in ((None, None), (None, zeros_b), (zeros_b, None)):
        for got, want in zip(G.gru_forward(x, h0, w_ih, w_hh, bi, bh, variant), ref):
            np.testing.assert_array_equal(got, want)
    # d_output / d_h_n None == zeros
    out, h_n, ws = G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)
    for d_o, d_h, d_o0, d_h0 in (
        (None, d_hn, np.zeros_like(d_out), d_hn),
        (d_out, None, d_out, np.zeros_like(d_hn)),
        (None, None, np.zeros_like(d_out), np.zeros_like(d_hn)),
    ):
        g = G.gru_backward(d_o, d_h, x, h0, w_ih, w_hh, out, ws, variant)
        g0 = G.gru_backward(d_o0, d_h0, x, h0, w_ih, w_hh, out, ws, variant)
        for got, want in zip(g, g0):
            np.testing.assert_array_equal(got, want)
    assert all(np.all(a == 0) for a in G.gru_backward(None, None, x, h0, w_ih, w_hh, out, ws, variant))


# ----------------------------------------------------------------- dtype, range


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_in_float32_out(variant, gen):
    arrays = _params(gen, 5, 3, 7, 4)
    x, h0, w_ih, w_hh, b_ih, b_hh = (a.astype(np.float32) for a in arrays)
    out, h_n, ws = G.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, variant)
    d_out, d_hn = randn(out.shape, gen, np.float32), randn(h_n.shape, gen, np.float32)
    grads = G.gru_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws, variant)
    assert all(a.dtype == np.float32 for a in (out, h_n, ws, *grads))
    x6, h06, w_ih6, w_hh6, b_ih6, b_hh6 = (a.astype(np.float64) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))
    out6, h_n6, ws6 = G.gru_forward(x6, h06, w_ih6, w_hh6, b_ih6, b_hh6, variant)
    assert_close(out, out6, "gru", "float32", name="output")
    d_out6, d_hn6 = d_out.astype(np.float64), d_hn.astype(np.float64)
    grads6 = G.gru_backward(d_out6, d_hn6, x6, h06, w_ih6, w_hh6, out6, ws6, variant)
    for got, want in zip(grads, grads6):
        assert_close(got, want, "gru", "float32")


@pytest.mark.parametrize("variant", VARIANTS)
def test_saturated_gates_stay_finite(variant, gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, 3, 2, 5, 4)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        out, h_n, ws = G.gru_forward(1e4 * x, h0, 100 * w_ih, w_hh, b_ih, b_hh, variant)
        grads = G.gru_backward(np.ones_like(out), None, 1e4 * x, h0, 100 * w_ih, w_hh, out, ws, variant)
    assert all(np.all(np.isfinite(a)) for a in (out, h_n, ws, *grads))
    assert np.all(np.abs(out) <= 1 + np.abs(h0).max())


# -------------------------------------------------------------------- bad input


def test_bad_input(gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    fwd = G.gru_forward
    with pytest.raises(ValueError, match="x must be 3-D"):
        fwd(x[0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"x must have at least one time step"):
        fwd(x[:0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"h0 must have shape \(3, 4\)"):
        fwd(x, randn((b, h + 1), gen), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"h0 must have shape \(3, 4\)"):
        fwd(x, randn((b + 1, h), gen), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"weight_hh must have shape"):
        fwd(x, h0, w_ih, randn((4 * h, h), gen))
    with pytest.raises(ValueError, match="weight_hh must be 2-D"):
        fwd(x, h0, w_ih, w_hh[None])
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(12, 5\) .*input_size of x"):
        fwd(x, h0, randn((3 * h, i + 1), gen), w_hh)
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(12, 5\)"):
        fwd(x, h0, randn((2 * h, i), gen), w_hh)
    with pytest.raises(ValueError, match=r"bias_ih must have shape \(12\)"):
        fwd(x, h0, w_ih, w_hh, randn((2 * h,), gen), b_hh)
    with pytest.raises(ValueError, match=r"bias_hh must have shape \(12\)"):
        fwd(x, h0, w_ih, w_hh, b_ih, b_hh[None])
    with pytest.raises(ValueError, match="variant must be one of 'cudnn', 'cho'; got 'lstm'"):
        fwd(x, h0, w_ih, w_hh, variant="lstm")
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        fwd(np.ones((t, b, i), dtype=np.int64), h0, w_ih, w_hh)

    out, h_n, ws = fwd(x, h0, w_ih, w_hh, b_ih, b_hh, "cudnn")
    bwd = G.gru_backward
    with pytest.raises(ValueError, match="variant must be one of"):
        bwd(out, h_n, x, h0, w_ih, w_hh, out, ws, "Cho")
    with pytest.raises(ValueError, match=r"d_output must have shape \(4, 3, 4\)"):
        bwd(out[1:], h_n, x, h0, w_ih, w_hh, out, ws)
    with pytest.raises(ValueError, match=r"d_h_n must have shape \(3, 4\)"):
        bwd(out, out, x, h0, w_ih, w_hh, out, ws)
    with pytest.raises(ValueError, match=r"output must have shape \(4, 3, 4\)"):
        bwd(out, h_n, x, h0, w_ih, w_hh, ws, ws)
    with pytest.raises(ValueError, match=r"workspace must have shape \(4, 3, 12\)"):
        bwd(out, h_n, x, h0, w_ih, w_hh, out, ws, "cho")  # a cudnn workspace handed to cho
    with pytest.raises(ValueError, match="h0 must have shape"):
        bwd(out, h_n, x, h0.T, w_ih, w_hh, out, ws)
