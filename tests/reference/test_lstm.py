"""Reference LSTM (forget, no_forget, peephole): finite differences, torch, None arguments, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.reference import lstm as L
from dlgpu.testing import assert_close, check_gradients, randn

VARIANTS = ["forget", "no_forget", "peephole"]
GRAD_NAMES = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_peephole")


def _sizes(gen):
    """Tiny random sizes (T, B, I, H): finite differences cost two forwards per element."""
    return int(gen.integers(2, 6)), int(gen.integers(1, 4)), int(gen.integers(2, 6)), int(gen.integers(2, 5))


def _params(gen, variant, T, B, I, H, bias=True, dtype=np.float64):
    G = L.GATES[variant]
    x = randn((T, B, I), gen, dtype)
    h0 = randn((B, H), gen, dtype)
    c0 = randn((B, H), gen, dtype)
    w_ih = randn((G * H, I), gen, dtype, scale=0.5)
    w_hh = randn((G * H, H), gen, dtype, scale=0.5)
    b_ih = randn((G * H,), gen, dtype, scale=0.5) if bias else None
    b_hh = randn((G * H,), gen, dtype, scale=0.5) if bias else None
    p = randn((3, H), gen, dtype, scale=0.5) if variant == "peephole" else None
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, p


def _torch_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, p, variant):
    """The module docstring's equations in torch ops: (output, h_n, c_n, workspace)."""
    H = w_hh.shape[1]
    h, c, hs, ws = h0, c0, [], []
    for t in range(x.shape[0]):
        z = x[t] @ w_ih.T + h @ w_hh.T
        if b_ih is not None:
            z = z + b_ih + b_hh
        zs = list(z.split(H, dim=1))
        if variant == "no_forget":
            i, g, o = torch.sigmoid(zs[0]), torch.tanh(zs[1]), torch.sigmoid(zs[2])
            c = c + i * g
            gates = [i, g, o]
        else:
            zi, zf, zg, zo = zs
            if variant == "peephole":
                zi, zf = zi + p[0] * c, zf + p[1] * c
            i, f, g = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg)
            c = f * c + i * g
            o = torch.sigmoid(zo + p[2] * c if variant == "peephole" else zo)
            gates = [i, f, g, o]
        h = o * torch.tanh(c)
        hs.append(h)
        ws.append(torch.cat(gates + [c], dim=1))
    return torch.stack(hs), h, c, torch.stack(ws)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_finite_differences(variant, bias, gen):
    T, B, I, H = _sizes(gen)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = _params(gen, variant, T, B, I, H, bias)
    G = L.GATES[variant]
    # without biases, the returned bias gradients are checked against a zero bias
    bi = b_ih if bias else np.zeros(G * H)
    bh = b_hh if bias else np.zeros(G * H)
    out, h_n, c_n, ws = L.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, p, variant)
    d_out, d_hn, d_cn = randn(out.shape, gen), randn(h_n.shape, gen), randn(c_n.shape, gen)
    grads = L.lstm_backward(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, out, ws, p, variant)
    inputs = dict(zip(GRAD_NAMES, (x, h0, c0, w_ih, w_hh, bi, bh, p)))
    analytic = dict(zip(GRAD_NAMES, grads))
    if variant != "peephole":
        assert analytic.pop("weight_peephole") is None and inputs.pop("weight_peephole") is None
    check_gradients(
        lambda: L.lstm_forward(x, h0, c0, w_ih, w_hh, bi, bh, p, variant)[:3],
        inputs,
        analytic,
        (d_out, d_hn, d_cn),
    )


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_forget_matches_torch_nn_lstm(bias, gen):
    T, B, I, H = 7, 3, 5, 6
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = _params(gen, "forget", T, B, I, H, bias)
    d_out, d_hn, d_cn = randn((T, B, H), gen), randn((B, H), gen), randn((B, H), gen)
    m = torch.nn.LSTM(I, H, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor(w_ih))
        m.weight_hh_l0.copy_(torch.tensor(w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.tensor(b_ih))
            m.bias_hh_l0.copy_(torch.tensor(b_hh))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)  # torch: [layers, B, H]
    c0t = torch.tensor(c0[None], requires_grad=True)
    out_t, (hn_t, cn_t) = m(xt, (h0t, c0t))
    loss = (out_t * torch.tensor(d_out)).sum() + (hn_t[0] * torch.tensor(d_hn)).sum()
    (loss + (cn_t[0] * torch.tensor(d_cn)).sum()).backward()

    out, h_n, c_n, ws = L.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    assert_close(out, out_t, "lstm", name="output")
    assert_close(h_n, hn_t[0], "lstm", name="h_n")
    assert_close(c_n, cn_t[0], "lstm", name="c_n")
    grads = L.lstm_backward(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, out, ws)
    want = [xt.grad, h0t.grad[0], c0t.grad[0], m.weight_ih_l0.grad, m.weight_hh_l0.grad]
    if bias:
        want += [m.bias_ih_l0.grad, m.bias_hh_l0.grad]
    for got, w, n in zip(grads, want, GRAD_NAMES):
        assert_close(got, w, "lstm", name=f"d{n}")
    assert grads[-1] is None


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_matches_torch_equations(variant, bias, gen):
    """Every variant (workspace layout included) against the equations written in torch ops."""
    T, B, I, H = 6, 3, 5, 7
    arrays = _params(gen, variant, T, B, I, H, bias)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = arrays
    d_out, d_hn, d_cn = randn((T, B, H), gen), randn((B, H), gen), randn((B, H), gen)
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out_t, hn_t, cn_t, ws_t = _torch_lstm(*ts, variant)
    loss = (out_t * torch.tensor(d_out)).sum() + (hn_t * torch.tensor(d_hn)).sum()
    (loss + (cn_t * torch.tensor(d_cn)).sum()).backward()

    out, h_n, c_n, ws = L.lstm_forward(*arrays, variant)
    assert ws.shape == (T, B, (L.GATES[variant] + 1) * H)
    for got, want, n in ((out, out_t, "output"), (h_n, hn_t, "h_n"), (c_n, cn_t, "c_n"), (ws, ws_t, "workspace")):
        assert_close(got, want, "lstm", name=n)
    grads = L.lstm_backward(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, out, ws, p, variant)
    for got, tt, n in zip(grads, ts, GRAD_NAMES):
        if tt is None:  # no bias / no peephole
            assert n in ("bias_ih", "bias_hh") or got is None
            continue
        assert_close(got, tt.grad, "lstm", name=f"d{n}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_none_arguments_mean_zeros(variant, gen):
    T, B, I, H = 4, 3, 5, 4
    G = L.GATES[variant]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = _params(gen, variant, T, B, I, H)
    z, zb = np.zeros((B, H)), np.zeros(G * H)

    def fwd(h, c, bi, bh):
        return L.lstm_forward(x, h, c, w_ih, w_hh, bi, bh, p, variant)

    def same(a, b):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)

    # h0 / c0 None == zeros; bias None == zero bias
    same(fwd(None, c0, b_ih, b_hh), fwd(z, c0, b_ih, b_hh))
    same(fwd(h0, None, b_ih, b_hh), fwd(h0, z, b_ih, b_hh))
    same(fwd(h0, c0, None, b_hh), fwd(h0, c0, zb, b_hh))
    same(fwd(h0, c0, b_ih, None), fwd(h0, c0, b_ih, zb))
    out, h_n, c_n, ws = fwd(h0, c0, b_ih, b_hh)
    d_out, d_hn, d_cn = randn(out.shape, gen), randn((B, H), gen), randn((B, H), gen)

    def bwd(do, dh, dc, h=h0, c=c0, o=out, w=ws):
        return L.lstm_backward(do, dh, dc, x, h, c, w_ih, w_hh, o, w, p, variant)

    # each upstream gradient None == zeros
    same(bwd(None, d_hn, d_cn), bwd(0 * d_out, d_hn, d_cn))
    same(bwd(d_out, None, d_cn), bwd(d_out, z, d_cn))
    same(bwd(d_out, d_hn, None), bwd(d_out, d_hn, z))
    assert np.any(bwd(None, d_hn, d_cn)[0] != 0)  # not two zero arrays compared
    # h0 / c0 None == zeros in the backward too
    o0, _, _, w0 = fwd(None, None, b_ih, b_hh)
    same(bwd(d_out, d_hn, d_cn, None, None, o0, w0), bwd(d_out, d_hn, d_cn, z, z, o0, w0))
    # all upstream gradients None: every gradient is zero
    for g in bwd(None, None, None):
        assert g is None or not np.any(g)


def test_float32_in_float32_out(gen):
    T, B, I, H = 4, 3, 5, 4
    for variant in VARIANTS:
        arrays = _params(gen, variant, T, B, I, H, dtype=np.float32)
        x, h0, c0, w_ih, w_hh, _, _, p = arrays
        out, h_n, c_n, ws = L.lstm_forward(*arrays, variant)
        assert all(a.dtype == np.float32 for a in (out, h_n, c_n, ws))
        grads = L.lstm_backward(out, h_n, c_n, x, h0, c0, w_ih, w_hh, out, ws, p, variant)
        assert all(g is None or g.dtype == np.float32 for g in grads)
        # and float32 stays close to the float64 oracle
        a64 = [None if a is None else a.astype(np.float64) for a in arrays]
        out64, hn64, cn64, ws64 = L.lstm_forward(*a64, variant)
        assert_close(out, out64, "lstm", "float32")
        assert_close(ws, ws64, "lstm", "float32")
        x6, h6, c6, wi6, wh6, _, _, p6 = a64
        grads64 = L.lstm_backward(out64, hn64, cn64, x6, h6, c6, wi6, wh6, out64, ws64, p6, variant)
        for g, g64 in zip(grads, grads64):
            if g is not None:
                assert_close(g, g64, "lstm", "float32")
    with pytest.raises(TypeError, match="c0 must have the dtype of x"):
        L.lstm_forward(x, h0, c0.astype(np.float64), w_ih, w_hh, weight_peephole=p, variant="peephole")


def test_bad_input(gen):
    T, B, I, H = 4, 3, 5, 4
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = _params(gen, "forget", T, B, I, H)
    p = randn((3, H), gen)
    out, _, _, ws = L.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    raises = lambda match: pytest.raises(ValueError, match=match)
    with raises("x must be 3-D"):
        L.lstm_forward(x[0], h0, c0, w_ih, w_hh)
    with raises("x must have at least one time step"):
        L.lstm_forward(x[:0], h0, c0, w_ih, w_hh)
    with raises("h0 must have shape"):
        L.lstm_forward(x, randn((B, H + 1), gen), c0, w_ih, w_hh)
    with raises("c0 must have shape"):
        L.lstm_forward(x, h0, randn((B + 1, H), gen), w_ih, w_hh)
    with raises(r"weight_hh must have shape \(4\*hidden_size, hidden_size\)"):
        L.lstm_forward(x, h0, c0, w_ih, randn((4 * H, H + 1), gen))
    with raises(r"weight_hh must have shape \(3\*hidden_size"):  # forget-shaped weights, no_forget variant
        L.lstm_forward(x, h0, c0, w_ih, w_hh, variant="no_forget")
    with raises("weight_hh must be 2-D"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh[None])
    with raises("weight_ih must have shape .*input_size"):
        L.lstm_forward(x, h0, c0, randn((4 * H, I + 1), gen), w_hh)
    with raises("weight_ih must have shape"):
        L.lstm_forward(x, h0, c0, randn((3 * H, I), gen), w_hh)
    with raises("bias_ih must have shape"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, randn((H,), gen), b_hh)
    with raises("bias_hh must have shape"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, randn((4 * H + 1,), gen))
    with raises("weight_peephole .* is required for variant='peephole'"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, variant="peephole")
    with raises("weight_peephole must have shape"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, weight_peephole=randn((4, H), gen), variant="peephole")
    with raises("weight_peephole must have shape"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, weight_peephole=randn((3, H + 1), gen), variant="peephole")
    with raises("weight_peephole must be None for variant='forget'"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, weight_peephole=p)
    with raises("weight_peephole must be None for variant='no_forget'"):
        L.lstm_forward(x, h0, c0, w_ih[: 3 * H], w_hh[: 3 * H], weight_peephole=p, variant="no_forget")
    with raises("variant must be one of 'forget', 'no_forget', 'peephole'"):
        L.lstm_forward(x, h0, c0, w_ih, w_hh, variant="coupled")
    # the backward checks its arguments too
    with raises("variant must be one of"):
        L.lstm_backward(out, None, None, x, h0, c0, w_ih, w_hh, out, ws, variant="gru")
    with raises("weight_peephole .* is required"):
        L.lstm_backward(out, None, None, x, h0, c0, w_ih, w_hh, out, ws, variant="peephole")
    with raises("workspace must have shape"):
        L.lstm_backward(out, None, None, x, h0, c0, w_ih, w_hh, out, ws[..., : 4 * H])
    with raises("output must have shape"):
        L.lstm_backward(out, None, None, x, h0, c0, w_ih, w_hh, out[:, :1], ws)
    with raises("d_output must have shape"):
        L.lstm_backward(out[1:], None, None, x, h0, c0, w_ih, w_hh, out, ws)
    with raises("d_h_n must have shape"):
        L.lstm_backward(None, out, None, x, h0, c0, w_ih, w_hh, out, ws)
    with raises("d_c_n must have shape"):
        L.lstm_backward(None, None, c0.T, x, h0, c0, w_ih, w_hh, out, ws)
    with raises("c0 must have shape"):
        L.lstm_backward(out, None, None, x, h0, c0[:1], w_ih, w_hh, out, ws)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        L.lstm_forward(np.ones((T, B, I), dtype=np.int32), h0, c0, w_ih, w_hh)


def test_long_sequence_stays_finite(gen):
    """Large pre-activations saturate the gates without overflow (sigma is the stable one)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, p = _params(gen, "peephole", 50, 2, 3, 5)
    with np.errstate(over="raise", invalid="raise"):
        out, h_n, c_n, ws = L.lstm_forward(100 * x, h0, c0, 10 * w_ih, w_hh, b_ih, b_hh, p, "peephole")
        grads = L.lstm_backward(out, h_n, c_n, 100 * x, h0, c0, 10 * w_ih, w_hh, out, ws, p, "peephole")
    assert np.all(np.isfinite(out)) and all(np.all(np.isfinite(g)) for g in grads)
