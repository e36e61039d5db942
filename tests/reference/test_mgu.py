"""Reference MGU (minimal gated unit): finite differences, torch equations, None arguments, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.reference import mgu as M
from dlgpu.testing import assert_close, check_gradients, randn

NAMES = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _dims(gen: np.random.Generator) -> tuple[int, int, int, int]:
    """Random tiny (T, B, I, H): finite differences cost two forwards per element."""
    t, b, i, h = (int(gen.choice(c)) for c in ((3, 4, 5), (2, 3), (3, 5, 7), (3, 4, 5)))
    return t, b, i, h


def _params(gen, t, b, i, h, dtype=np.float64):
    """x, h0, weight_ih, weight_hh, bias_ih, bias_hh (weights scaled so the gates stay unsaturated)."""
    return (
        randn((t, b, i), gen, dtype),
        randn((b, h), gen, dtype),
        randn((2 * h, i), gen, dtype, scale=0.5),
        randn((2 * h, h), gen, dtype, scale=0.5),
        randn((2 * h,), gen, dtype, scale=0.5),
        randn((2 * h,), gen, dtype, scale=0.5),
    )


def _torch_mgu(x, h0, w_ih, w_hh, b_ih, b_hh):
    """The MGU equations written with torch ops (torch has no MGU)."""
    h = w_hh.shape[1]
    hs, ws = [], []
    h_prev = h0
    for t in range(x.shape[0]):
        f = torch.sigmoid(x[t] @ w_ih[:h].T + b_ih[:h] + h_prev @ w_hh[:h].T + b_hh[:h])
        h_cand = torch.tanh(x[t] @ w_ih[h:].T + b_ih[h:] + (f * h_prev) @ w_hh[h:].T + b_hh[h:])
        h_prev = (1 - f) * h_prev + f * h_cand
        hs.append(h_prev)
        ws.append(torch.cat([f, h_cand], dim=-1))
    return torch.stack(hs), h_prev, torch.stack(ws)


# ------------------------------------------------------------ finite differences


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_mgu_finite_differences(bias, gen):
    t, b, i, h = _dims(gen)
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    if not bias:  # the backward must still return the gradient w.r.t. a bias sitting at 0
        b_ih, b_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    fb_ih, fb_hh = (b_ih, b_hh) if bias else (None, None)
    out, h_n, ws = M.mgu_forward(x, h0, w_ih, w_hh, fb_ih, fb_hh)
    assert ws.shape == (t, b, 2 * h)
    d_out, d_hn = randn(out.shape, gen), randn(h_n.shape, gen)
    analytic = dict(zip(NAMES, M.mgu_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws)))
    for name, arr in zip(NAMES, (x, h0, w_ih, w_hh, b_ih, b_hh)):
        assert analytic[name].shape == arr.shape, name
    check_gradients(
        lambda: M.mgu_forward(x, h0, w_ih, w_hh, fb_ih, fb_hh)[:2],
        {"x": x, "h0": h0, "weight_ih": w_ih, "weight_hh": w_hh},
        analytic,
        (d_out, d_hn),
    )
    check_gradients(
        lambda: M.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh)[:2],
        {"bias_ih": b_ih, "bias_hh": b_hh},
        analytic,
        (d_out, d_hn),
    )


# ------------------------------------------------------------------------ torch


@pytest.mark.parametrize("t", [1, 6])
def test_mgu_matches_torch_equations(t, gen):
    """Output, h_n, workspace and every gradient against the equations in torch ops (autograd)."""
    b, i, h = 3, 7, 5
    arrays = _params(gen, t, b, i, h)
    d_out, d_hn = randn((t, b, h), gen), randn((b, h), gen)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_t, hn_t, ws_t = _torch_mgu(*ts)
    ((out_t * torch.tensor(d_out)).sum() + (hn_t * torch.tensor(d_hn)).sum()).backward()

    x, h0, w_ih, w_hh, b_ih, b_hh = arrays
    out, h_n, ws = M.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    assert_close(out, out_t, "mgu", name="output")
    assert_close(h_n, hn_t, "mgu", name="h_n")
    assert_close(ws, ws_t, "mgu", name="workspace")
    grads = M.mgu_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws)
    for got, want, name in zip(grads, ts, NAMES):
        assert_close(got, want.grad, "mgu", name=f"d{name}")


# ---------------------------------------------------------------- None arguments


def test_none_arguments_mean_zeros(gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    zeros_h, zeros_b = np.zeros((b, h)), np.zeros(2 * h)
    # h0 None == zeros, forward and backward
    out, h_n, ws = M.mgu_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    out0, h_n0, ws0 = M.mgu_forward(x, zeros_h, w_ih, w_hh, b_ih, b_hh)
    for got, want in ((out, out0), (h_n, h_n0), (ws, ws0)):
        np.testing.assert_array_equal(got, want)
    d_out, d_hn = randn(out.shape, gen), randn(h_n.shape, gen)
    g = M.mgu_backward(d_out, d_hn, x, None, w_ih, w_hh, out, ws)
    g0 = M.mgu_backward(d_out, d_hn, x, zeros_h, w_ih, w_hh, out, ws)
    for got, want in zip(g, g0):
        np.testing.assert_array_equal(got, want)
    # bias None == zero bias (each bias on its own)
    ref = M.mgu_forward(x, h0, w_ih, w_hh, zeros_b, zeros_b)
    for bi, bh in ((None, None), (None, zeros_b), (zeros_b, None)):
        for got, want in zip(M.mgu_forward(x, h0, w_ih, w_hh, bi, bh), ref):
            np.testing.assert_array_equal(got, want)
    # d_output / d_h_n None == zeros
    out, h_n, ws = M.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    for d_o, d_h, d_o0, d_h0 in (
        (None, d_hn, np.zeros_like(d_out), d_hn),
        (d_out, None, d_out, np.zeros_like(d_hn)),
        (None, None, np.zeros_like(d_out), np.zeros_like(d_hn)),
    ):
        g = M.mgu_backward(d_o, d_h, x, h0, w_ih, w_hh, out, ws)
        g0 = M.mgu_backward(d_o0, d_h0, x, h0, w_ih, w_hh, out, ws)
        for got, want in zip(g, g0):
            np.testing.assert_array_equal(got, want)
    assert all(np.all(a == 0) for a in M.mgu_backward(None, None, x, h0, w_ih, w_hh, out, ws))


# ----------------------------------------------------------------- dtype, range


def test_float32_in_float32_out(gen):
    arrays = _params(gen, 5, 3, 7, 4)
    x, h0, w_ih, w_hh, b_ih, b_hh = (a.astype(np.float32) for a in arrays)
    out, h_n, ws = M.mgu_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    d_out, d_hn = randn(out.shape, gen, np.float32), randn(h_n.shape, gen, np.float32)
    grads = M.mgu_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, ws)
    assert all(a.dtype == np.float32 for a in (out, h_n, ws, *grads))
    x6, h06, w_ih6, w_hh6, b_ih6, b_hh6 = (a.astype(np.float64) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))
    out6, h_n6, ws6 = M.mgu_forward(x6, h06, w_ih6, w_hh6, b_ih6, b_hh6)
    assert_close(out, out6, "mgu", "float32", name="output")
    d_out6, d_hn6 = d_out.astype(np.float64), d_hn.astype(np.float64)
    grads6 = M.mgu_backward(d_out6, d_hn6, x6, h06, w_ih6, w_hh6, out6, ws6)
    for got, want in zip(grads, grads6):
        assert_close(got, want, "mgu", "float32")


def test_saturated_gates_stay_finite(gen):
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, 3, 2, 5, 4)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        out, h_n, ws = M.mgu_forward(1e4 * x, h0, 100 * w_ih, w_hh, b_ih, b_hh)
        grads = M.mgu_backward(np.ones_like(out), None, 1e4 * x, h0, 100 * w_ih, w_hh, out, ws)
    assert all(np.all(np.isfinite(a)) for a in (out, h_n, ws, *grads))
    assert np.all(np.abs(out) <= 1 + np.abs(h0).max())


# -------------------------------------------------------------------- bad input


def test_bad_input(gen):
    t, b, i, h = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, t, b, i, h)
    fwd = M.mgu_forward
    with pytest.raises(ValueError, match="x must be 3-D"):
        fwd(x[0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"x must have at least one time step"):
        fwd(x[:0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"h0 must have shape \(3, 4\)"):
        fwd(x, randn((b, h + 1), gen), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"weight_hh must have shape"):
        fwd(x, h0, w_ih, randn((3 * h, h), gen))
    with pytest.raises(ValueError, match="weight_hh must be 2-D"):
        fwd(x, h0, w_ih, w_hh[None])
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(8, 5\) .*input_size of x"):
        fwd(x, h0, randn((2 * h, i + 2), gen), w_hh)
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(8, 5\)"):
        fwd(x, h0, randn((3 * h, i), gen), w_hh)
    with pytest.raises(ValueError, match=r"bias_ih must have shape \(8\)"):
        fwd(x, h0, w_ih, w_hh, randn((3 * h,), gen), b_hh)
    with pytest.raises(ValueError, match=r"bias_hh must have shape \(8\)"):
        fwd(x, h0, w_ih, w_hh, b_ih, randn((h,), gen))
    with pytest.raises(TypeError, match="weight_ih must have a floating-point dtype"):
        fwd(x, h0, np.ones((2 * h, i), dtype=np.int32), w_hh)

    out, h_n, ws = fwd(x, h0, w_ih, w_hh, b_ih, b_hh)
    bwd = M.mgu_backward
    with pytest.raises(ValueError, match=r"d_output must have shape \(4, 3, 4\)"):
        bwd(out[:, :2], h_n, x, h0, w_ih, w_hh, out, ws)
    with pytest.raises(ValueError, match=r"d_h_n must have shape \(3, 4\)"):
        bwd(out, h_n[:2], x, h0, w_ih, w_hh, out, ws)
    with pytest.raises(ValueError, match=r"output must have shape \(4, 3, 4\)"):
        bwd(out, h_n, x, h0, w_ih, w_hh, out[:3], ws)
    with pytest.raises(ValueError, match=r"workspace must have shape \(4, 3, 8\)"):
        bwd(out, h_n, x, h0, w_ih, w_hh, out, ws[..., :h])
    with pytest.raises(ValueError, match=r"weight_hh must have shape"):
        bwd(out, h_n, x, h0, w_ih, w_hh[:h], out, ws)
