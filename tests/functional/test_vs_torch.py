"""dlgpu.functional against torch.nn.functional on CPU (float64 and float32), forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlgpu.functional as D
from dlgpu.testing import assert_close, randn


def _t(a: np.ndarray, grad: bool = True) -> torch.Tensor:
    return torch.tensor(a, requires_grad=grad)


def _both(fn_ours, fn_torch, inputs, gen, op, dtype=torch.float64):
    """Run both, backprop the same random upstream gradient, compare outputs and input grads."""
    ours = [x.detach().to(dtype).requires_grad_(x.requires_grad) for x in inputs]
    theirs = [x.detach().to(dtype).requires_grad_(x.requires_grad) for x in inputs]
    yo, yt = fn_ours(*ours), fn_torch(*theirs)
    dname = str(dtype).replace("torch.", "")
    assert_close(yo, yt, op, dname, name=f"{op} forward")
    dy = torch.tensor(randn(tuple(yt.shape), gen)).to(dtype)
    yo.backward(dy)
    yt.backward(dy)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if b.requires_grad:
            assert_close(a.grad, b.grad, op, dname, name=f"{op} grad input {i}")


ACTS = {
    "relu": (D.relu, F.relu),
    "leaky_relu": (lambda x: D.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2)),
    "sigmoid": (D.sigmoid, torch.sigmoid),
    "tanh": (D.tanh, torch.tanh),
    "softplus": (D.softplus, F.softplus),
    "softmax": (lambda x: D.softmax(x, 1), lambda x: F.softmax(x, 1)),
    "log_softmax": (lambda x: D.log_softmax(x, -1), lambda x: F.log_softmax(x, -1)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(ACTS))
def test_activations(name, dtype, backend, gen):
    ours, theirs = ACTS[name]
    _both(ours, theirs, [_t(randn((7, 13), gen, scale=3.0))], gen, name, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, dtype, backend, gen):
    x, w, b = _t(randn((3, 5, 11), gen)), _t(randn((7, 11), gen)), _t(randn((7,), gen))
    if bias:
        _both(D.linear, F.linear, [x, w, b], gen, "linear", dtype)
    else:
        _both(D.linear, F.linear, [x, w], gen, "linear", dtype)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_linear_fused_activation(act, backend, gen):
    x, w, b = _t(randn((9, 11), gen)), _t(randn((7, 11), gen)), _t(randn((7,), gen))
    tfn = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": F.leaky_relu}[act]
    _both(lambda *a: D.linear(*a, activation=act), lambda *a: tfn(F.linear(*a)), [x, w, b], gen, "linear")


CONVS = [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=0, dilation=1, groups=2),
    dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=1),
    dict(stride=1, padding="same", dilation=1, groups=6),
    dict(stride=1, padding="same", dilation=(2, 1), groups=1),  # 'same' pads dilation * (k - 1) / 2
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv2d(cfg, dtype, backend, gen):
    g = cfg["groups"]
    x, w, b = _t(randn((2, 6, 9, 8), gen)), _t(randn((12, 6 // g, 3, 3), gen)), _t(randn((12,), gen))
    _both(lambda *a: D.conv2d(*a, **cfg), lambda *a: F.conv2d(*a, **cfg), [x, w, b], gen, "conv2d", dtype)


def test_conv2d_fused_relu(backend, gen):
    x, w, b = _t(randn((2, 3, 7, 7), gen)), _t(randn((5, 3, 3, 3), gen)), _t(randn((5,), gen))
    _both(
        lambda *a: D.conv2d(*a, padding=1, activation="relu"),
        lambda *a: F.relu(F.conv2d(*a, padding=1)),
        [x, w, b], gen, "conv2d",
    )  # fmt: skip


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pooling(k, s, p, backend, gen):
    x = _t(randn((2, 3, 9, 8), gen))
    _both(lambda a: D.max_pool2d(a, k, s, p), lambda a: F.max_pool2d(a, k, s, p), [x], gen, "max_pool2d")
    for cip in (True, False):
        _both(
            lambda a, _c=cip: D.avg_pool2d(a, k, s, p, count_include_pad=_c),
            lambda a, _c=cip: F.avg_pool2d(a, k, s, p, count_include_pad=_c),
            [x], gen, "avg_pool2d",
        )  # fmt: skip
    yo, io = D.max_pool2d(x, k, s, p, return_indices=True)
    yt, it = F.max_pool2d(x, k, s, p, return_indices=True)
    assert torch.equal(io, it)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_torch_has(reduction, backend, gen):
    n, k = 9, 5
    y = _t(randn((n, k), gen, scale=2.0))
    t_idx = torch.tensor(gen.integers(0, k, n))
    prob = _t(gen.uniform(0.05, 0.95, (n, k)))
    t01 = torch.tensor(gen.uniform(0, 1, (n, k)))
    tgt = torch.tensor(randn((n, k), gen))
    r = dict(reduction=reduction)
    _both(lambda a: D.cross_entropy(a, t_idx, **r), lambda a: F.cross_entropy(a, t_idx, **r), [y], gen, "cross_entropy")
    _both(lambda a: D.binary_cross_entropy(a, t01, **r), lambda a: F.binary_cross_entropy(a, t01, **r), [prob], gen,
          "binary_cross_entropy")  # fmt: skip
    _both(lambda a: D.binary_cross_entropy_with_logits(a, t01, **r),
          lambda a: F.binary_cross_entropy_with_logits(a, t01, **r), [y], gen, "bce_logits")  # fmt: skip
    _both(lambda a: D.mse_loss(a, tgt, **r), lambda a: F.mse_loss(a, tgt, **r), [y], gen, "mse_loss")
    _both(lambda a: D.l1_loss(a, tgt, **r), lambda a: F.l1_loss(a, tgt, **r), [y], gen, "l1_loss")
    for p in (1, 2):
        ours = D.multiclass_hinge_loss if p == 1 else D.multiclass_squared_hinge_loss
        _both(lambda a, _o=ours: _o(a, t_idx, **r), lambda a, _p=p: F.multi_margin_loss(a, t_idx, p=_p, **r) * k,
              [y], gen, "multiclass_hinge")  # fmt: skip


def test_cross_entropy_extreme_logits(backend):
    y = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1, 1])
    loss = D.cross_entropy(y, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(y.grad).all()
    assert_close(loss, F.cross_entropy(y.detach(), t), "cross_entropy")


def _copy_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in module.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_recurrent_vs_torch_nn(cell, dtype, backend, gen):
    T, B, I, H = 5, 3, 7, 6
    torch.manual_seed(int(gen.integers(1 << 30)))
    if cell.startswith("rnn"):
        mod = torch.nn.RNN(I, H, nonlinearity=cell[4:])
    else:
        mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H)
    mod = mod.to(dtype)
    x = torch.tensor(randn((T, B, I), gen)).to(dtype).requires_grad_()
    h0 = torch.tensor(randn((B, H), gen, scale=0.5)).to(dtype).requires_grad_()
    c0 = torch.tensor(randn((B, H), gen, scale=0.5)).to(dtype).requires_grad_()
    w = _copy_weights(mod)
    xo, ho, co = (t.detach().clone().requires_grad_() for t in (x, h0, c0))
    if cell == "lstm":
        yt, (hn_t, cn_t) = mod(x, (h0[None], c0[None]))
        yo, (hn_o, cn_o) = D.lstm(xo, (ho, co), *w)
        outs = [(yo, yt), (hn_o, hn_t[0]), (cn_o, cn_t[0])]
    else:
        yt, hn_t = mod(x, h0[None])
        fn = D.gru if cell == "gru" else (lambda *a: D.rnn(*a, nonlinearity=cell[4:]))
        yo, hn_o = fn(xo, ho, *w)
        outs = [(yo, yt), (hn_o, hn_t[0])]
    dname = str(dtype).replace("torch.", "")
    op = cell.split("_")[0]
    loss_o = loss_t = 0
    for i, (a, b) in enumerate(outs):
        assert_close(a, b, op, dname, name=f"{cell} output {i}")
        g = torch.tensor(randn(tuple(b.shape), gen)).to(dtype)
        loss_o, loss_t = loss_o + (a * g).sum(), loss_t + (b * g).sum()
    loss_o.backward()
    loss_t.backward()
    pairs = [(xo.grad, x.grad, "x"), (ho.grad, h0.grad, "h0")] + [
        (a.grad, b.grad, n) for a, (n, b) in zip(w, mod.named_parameters())
    ]
    if cell == "lstm":
        pairs.append((co.grad, c0.grad, "c0"))
    for a, b, n in pairs:
        assert_close(a, b, op, dname, name=f"{cell} grad {n}")


@pytest.mark.parametrize("norm_type", [1.0, float("inf")])
def test_clip_grad_norm_other_norms_vs_torch(norm_type, backend, gen):
    grads = [randn((4, 3), gen, scale=3.0), randn((5,), gen, scale=3.0)]
    ps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    qs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ps, qs, grads):
        p.grad, q.grad = torch.tensor(g), torch.tensor(g)
    total = D.clip_grad_norm_(ps, 1.5, norm_type=norm_type)
    assert_close(total, torch.nn.utils.clip_grad_norm_(qs, 1.5, norm_type=norm_type), "clip_grad_norm")
    for p, q in zip(ps, qs):
        assert_close(p.grad, q.grad, "clip_grad_norm")


def test_clipping_takes_a_single_tensor_like_torch(backend, gen):
    g = randn((4, 3), gen, scale=3.0)
    p, q = (torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64)) for _ in range(2))
    p.grad, q.grad = torch.tensor(g), torch.tensor(g)
    assert_close(D.clip_grad_norm_(p, 1.0), torch.nn.utils.clip_grad_norm_(q, 1.0), "clip_grad_norm")
    assert_close(p.grad, q.grad, "clip_grad_norm")
    p.grad, q.grad = torch.tensor(g), torch.tensor(g)
    D.clip_grad_value_(p, 0.5)
    torch.nn.utils.clip_grad_value_(q, 0.5)
    assert_close(p.grad, q.grad, "clip_grad_value")


def test_dropout_statistics_and_reproducibility(backend, gen):
    x = torch.ones(200, 300, dtype=torch.float64)
    y1 = D.dropout(x, 0.3, seed=11)
    y2 = D.dropout(x, 0.3, seed=11)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, D.dropout(x, 0.3, seed=12))
    keep = (y1 != 0).double().mean().item()
    assert abs(keep - 0.7) < 0.01
    assert torch.allclose(y1[y1 != 0], torch.tensor(1 / 0.7, dtype=torch.float64))
    assert D.dropout(x, 0.3, training=False) is x
    xg = x.clone().requires_grad_()
    D.dropout(xg, 0.3, seed=5).sum().backward()
    assert torch.equal(xg.grad, D.dropout(x, 0.3, seed=5))  # same mask regenerated in backward
    torch.manual_seed(0)
    a = D.dropout(x, 0.5)
    torch.manual_seed(0)
    assert torch.equal(a, D.dropout(x, 0.5))


def test_regularizers_vs_torch(backend, gen):
    w = torch.tensor(randn((6, 5), gen, scale=2.0))
    ours, theirs = w.clone(), w.clone()
    D.max_norm_(ours, 1.5)
    torch.renorm(theirs, 2, 0, 1.5, out=theirs)
    assert_close(ours, theirs, "max_norm", tol=None, dtype="float32")
    ps = [torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64)) for _ in range(2)]
    qs = [torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64)) for _ in range(2)]
    for p, q in zip(ps, qs):
        p.grad = torch.tensor(randn((4, 3), gen, scale=3.0))
        q.grad = p.grad.clone()
    tn_o = D.clip_grad_norm_(ps, 1.0)
    tn_t = torch.nn.utils.clip_grad_norm_(qs, 1.0)
    assert_close(tn_o, tn_t, "clip_grad_norm")
    for p, q in zip(ps, qs):
        assert_close(p.grad, q.grad, "clip_grad_norm")
    D.clip_grad_value_(ps, 0.1)
    torch.nn.utils.clip_grad_value_(qs, 0.1)
    for p, q in zip(ps, qs):
        assert_close(p.grad, q.grad, "clip_grad_value")
