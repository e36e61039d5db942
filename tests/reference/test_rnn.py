"""Reference Elman RNN and its readout: finite differences, torch.nn.RNN, None arguments, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import rnn as R
from dlgpu.testing import assert_close, check_gradients, randn


def _sizes(gen):
    """Tiny random sizes (T, B, I, H): finite differences cost two forwards per element."""
    return int(gen.integers(2, 6)), int(gen.integers(1, 4)), int(gen.integers(2, 6)), int(gen.integers(2, 5))


def _params(gen, T, B, I, H, bias=True, dtype=np.float64):
    x = randn((T, B, I), gen, dtype)
    h0 = randn((B, H), gen, dtype)
    w_ih = randn((H, I), gen, dtype, scale=0.5)
    w_hh = randn((H, H), gen, dtype, scale=0.5)
    b_ih = randn((H,), gen, dtype, scale=0.5) if bias else None
    b_hh = randn((H,), gen, dtype, scale=0.5) if bias else None
    return x, h0, w_ih, w_hh, b_ih, b_hh


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_finite_differences(nonlinearity, bias, gen):
    T, B, I, H = _sizes(gen)
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H, bias)
    # without biases, the returned bias gradients are checked against a zero bias
    bi = b_ih if bias else np.zeros(H)
    bh = b_hh if bias else np.zeros(H)
    out, h_n = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    d_out, d_hn = randn(out.shape, gen), randn(h_n.shape, gen)
    grads = R.rnn_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, nonlinearity)
    names = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    check_gradients(
        lambda: R.rnn_forward(x, h0, w_ih, w_hh, bi, bh, nonlinearity),
        dict(zip(names, (x, h0, w_ih, w_hh, bi, bh))),
        dict(zip(names, grads)),
        (d_out, d_hn),
    )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_matches_torch(nonlinearity, bias, gen):
    T, B, I, H = 7, 3, 5, 6
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H, bias)
    d_out, d_hn = randn((T, B, H), gen), randn((B, H), gen)
    m = torch.nn.RNN(I, H, nonlinearity=nonlinearity, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor(w_ih))
        m.weight_hh_l0.copy_(torch.tensor(w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.tensor(b_ih))
            m.bias_hh_l0.copy_(torch.tensor(b_hh))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)  # torch: [layers, B, H]
    out_t, hn_t = m(xt, h0t)
    ((out_t * torch.tensor(d_out)).sum() + (hn_t[0] * torch.tensor(d_hn)).sum()).backward()

    out, h_n = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    assert_close(out, out_t, "rnn", name="output")
    assert_close(h_n, hn_t[0], "rnn", name="h_n")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = R.rnn_backward(d_out, d_hn, x, h0, w_ih, w_hh, out, nonlinearity)
    assert_close(dx, xt.grad, "rnn", name="dx")
    assert_close(dh0, h0t.grad[0], "rnn", name="dh0")
    assert_close(dw_ih, m.weight_ih_l0.grad, "rnn", name="dweight_ih")
    assert_close(dw_hh, m.weight_hh_l0.grad, "rnn", name="dweight_hh")
    if bias:
        assert_close(db_ih, m.bias_ih_l0.grad, "rnn", name="dbias_ih")
        assert_close(db_hh, m.bias_hh_l0.grad, "rnn", name="dbias_hh")


def test_rnn_none_arguments_mean_zeros(gen):
    T, B, I, H = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H)
    z = np.zeros((B, H))
    # h0 None == zeros
    out_a, hn_a = R.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    out_b, hn_b = R.rnn_forward(x, z, w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(hn_a, hn_b)
    # bias None == zero bias (each bias on its own)
    zb = np.zeros(H)
    for a, b in (((None, b_hh), (zb, b_hh)), ((b_ih, None), (b_ih, zb))):
        np.testing.assert_array_equal(R.rnn_forward(x, h0, w_ih, w_hh, *a)[0], R.rnn_forward(x, h0, w_ih, w_hh, *b)[0])
    # d_output / d_h_n None == zeros; h0 None == zeros in the backward too
    out, _ = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    d_out, d_hn = randn(out.shape, gen), randn((B, H), gen)
    for (da, dha), (db, dhb) in (((None, d_hn), (0 * d_out, d_hn)), ((d_out, None), (d_out, z))):
        ga = R.rnn_backward(da, dha, x, h0, w_ih, w_hh, out)
        gb = R.rnn_backward(db, dhb, x, h0, w_ih, w_hh, out)
        for a, b in zip(ga, gb):
            np.testing.assert_array_equal(a, b)
    assert np.any(ga[0] != 0)  # the comparison above is not between two zero arrays
    out0, _ = R.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    for a, b in zip(
        R.rnn_backward(d_out, d_hn, x, None, w_ih, w_hh, out0), R.rnn_backward(d_out, d_hn, x, z, w_ih, w_hh, out0)
    ):
        np.testing.assert_array_equal(a, b)
    # all upstream gradients None: every gradient is zero
    for g in R.rnn_backward(None, None, x, h0, w_ih, w_hh, out):
        assert not np.any(g)


@pytest.mark.parametrize("activation", ["none", "tanh", "sigmoid"])
def test_readout_finite_differences(activation, gen):
    T, B, _, H = _sizes(gen)
    O = int(gen.integers(2, 6))
    h, w, b = randn((T, B, H), gen), randn((O, H), gen), randn((O,), gen)
    y = R.rnn_readout_forward(h, w, b, activation)
    assert y.shape == (T, B, O)
    dy = randn(y.shape, gen)
    dh, dw, db = R.rnn_readout_backward(dy, h, w, y, activation)
    check_gradients(
        lambda: R.rnn_readout_forward(h, w, b, activation),
        {"output": h, "weight": w, "bias": b},
        {"output": dh, "weight": dw, "bias": db},
        dy,
    )


def test_readout_matches_torch(gen):
    h, w, b = randn((5, 3, 7), gen), randn((4, 7), gen), randn((4,), gen)
    dy = randn((5, 3, 4), gen)
    ht, wt, bt = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    yt = torch.tanh(F.linear(ht, wt, bt))
    yt.backward(torch.tensor(dy))
    y = R.rnn_readout_forward(h, w, b, "tanh")
    assert_close(y, yt, "linear", name="y")
    for got, want, n in zip(R.rnn_readout_backward(dy, h, w, y, "tanh"), (ht.grad, wt.grad, bt.grad), "hwb"):
        assert_close(got, want, "linear", name=f"d{n}")


def test_rnn_end_to_end_with_readout_matches_torch(gen):
    """The two pieces chained: BPTT fed by the readout's doutput."""
    T, B, I, H, O = 5, 3, 4, 6, 3
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H)
    w, b, dy = randn((O, H), gen), randn((O,), gen), randn((T, B, O), gen)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, h0, w_ih, w_hh, b_ih, b_hh, w, b)]
    hs, h = [], ts[1]
    for t in range(T):
        h = torch.tanh(ts[0][t] @ ts[2].T + ts[4] + h @ ts[3].T + ts[5])
        hs.append(h)
    yt = F.linear(torch.stack(hs), ts[6], ts[7])
    yt.backward(torch.tensor(dy))
    out, _ = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    y = R.rnn_readout_forward(out, w, b)
    assert_close(y, yt, "rnn", name="y")
    d_out, dw, db = R.rnn_readout_backward(dy, out, w)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = R.rnn_backward(d_out, None, x, h0, w_ih, w_hh, out)
    for got, tt, n in zip((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dw, db), ts, range(8)):
        assert_close(got, tt.grad, "rnn", name=f"grad {n}")


def test_float32_in_float32_out(gen):
    T, B, I, H = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H, dtype=np.float32)
    x64, h064, wi64, wh64, bi64, bh64 = (a.astype(np.float64) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))
    for nl in ("tanh", "relu"):
        out, h_n = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nl)
        assert out.dtype == np.float32 and h_n.dtype == np.float32
        grads = R.rnn_backward(out, h_n, x, h0, w_ih, w_hh, out, nl)
        assert all(g.dtype == np.float32 for g in grads)
        # and float32 stays close to the float64 oracle
        out64, _ = R.rnn_forward(x64, h064, wi64, wh64, bi64, bh64, nl)
        assert_close(out, out64, "rnn", "float32")
        grads64 = R.rnn_backward(out64, out64[-1], x64, h064, wi64, wh64, out64, nl)
        for g, g64 in zip(grads, grads64):
            assert_close(g, g64, "rnn", "float32")
    y = R.rnn_readout_forward(out, randn((2, H), gen, np.float32), activation="sigmoid")
    assert y.dtype == np.float32
    with pytest.raises(TypeError, match="weight_hh must have the dtype of x"):
        R.rnn_forward(x, h0, w_ih, wh64)


def test_bad_input(gen):
    T, B, I, H = 4, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _params(gen, T, B, I, H)
    out, _ = R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="x must be 3-D"):
        R.rnn_forward(x[0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match="x must have at least one time step"):
        R.rnn_forward(x[:0], h0, w_ih, w_hh)
    with pytest.raises(ValueError, match="h0 must have shape"):
        R.rnn_forward(x, randn((B, H + 1), gen), w_ih, w_hh)
    with pytest.raises(ValueError, match="h0 must have shape"):
        R.rnn_forward(x, randn((B + 1, H), gen), w_ih, w_hh)
    with pytest.raises(ValueError, match="weight_hh must have shape"):
        R.rnn_forward(x, h0, w_ih, randn((H, H + 1), gen))
    with pytest.raises(ValueError, match="weight_hh must be 2-D"):
        R.rnn_forward(x, h0, w_ih, randn((H, H, 1), gen))
    with pytest.raises(ValueError, match="weight_ih must have shape .*input_size"):
        R.rnn_forward(x, h0, randn((H, I + 1), gen), w_hh)
    with pytest.raises(ValueError, match="weight_ih must have shape"):
        R.rnn_forward(x, h0, randn((H + 1, I), gen), w_hh)
    with pytest.raises(ValueError, match="bias_ih must have shape"):
        R.rnn_forward(x, h0, w_ih, w_hh, randn((H + 1,), gen), b_hh)
    with pytest.raises(ValueError, match="bias_hh must have shape"):
        R.rnn_forward(x, h0, w_ih, w_hh, b_ih, randn((H, 1), gen))
    with pytest.raises(ValueError, match="nonlinearity must be one of 'tanh', 'relu'"):
        R.rnn_forward(x, h0, w_ih, w_hh, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        R.rnn_backward(out, None, x, h0, w_ih, w_hh, out, nonlinearity="gelu")
    with pytest.raises(ValueError, match="d_output must have shape"):
        R.rnn_backward(out[:-1], None, x, h0, w_ih, w_hh, out)
    with pytest.raises(ValueError, match="d_h_n must have shape"):
        R.rnn_backward(None, out, x, h0, w_ih, w_hh, out)
    with pytest.raises(ValueError, match="output must have shape"):
        R.rnn_backward(None, None, x, h0, w_ih, w_hh, out[1:])
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        R.rnn_forward(np.ones((T, B, I), dtype=np.int64), h0, w_ih, w_hh)
    with pytest.raises(ValueError, match="output must be 3-D"):
        R.rnn_readout_forward(out[0], randn((2, H), gen))
    with pytest.raises(ValueError, match="in_features"):
        R.rnn_readout_forward(out, randn((2, H + 1), gen))
    with pytest.raises(ValueError, match="activation must be one of"):
        R.rnn_readout_forward(out, randn((2, H), gen), activation="softmax")
    with pytest.raises(ValueError, match="out .* is required"):
        R.rnn_readout_backward(randn((T, B, 2), gen), out, randn((2, H), gen), None, "tanh")
