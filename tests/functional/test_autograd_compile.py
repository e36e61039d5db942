"""gradcheck (float64) for every differentiable op, opcheck for every custom op, torch.compile,
and bad input."""

from __future__ import annotations

import importlib

import pytest
import torch

import dlgpu.functional as D

# the modules (dlgpu.functional.linear and .dropout are shadowed by the functions of that name)
activations, conv, dropout, linear, losses, pooling, recurrent, regularizers = (
    importlib.import_module(f"dlgpu.functional.{m}")
    for m in ("activations", "conv", "dropout", "linear", "losses", "pooling", "recurrent", "regularizers")
)

F64 = dict(dtype=torch.float64)


def _r(*shape, scale=1.0):
    return (torch.randn(*shape, **F64) * scale).requires_grad_()


def _gradcheck_cases():
    torch.manual_seed(0)
    T, B, I, H = 3, 2, 4, 3
    x4 = _r(2, 4, 6, 5)
    t_idx = torch.randint(0, 5, (4,))
    tpm = torch.where(torch.rand(4, 5) < 0.5, -1.0, 1.0).double()
    seq, h0, c0 = _r(T, B, I), _r(B, H, scale=0.5), _r(B, H, scale=0.5)

    def w(g):
        return [_r(g * H, I, scale=0.5), _r(g * H, H, scale=0.5), _r(g * H, scale=0.5), _r(g * H, scale=0.5)]

    def lstm(variant, g, peep):
        wp = [_r(3, H)] if peep else []

        def f(x, h, c, *ws):
            o, (hn, cn) = D.lstm(x, (h, c), *ws[:4], ws[4] if peep else None, variant=variant)
            return o, hn, cn

        return f, (seq, h0, c0, *w(g), *wp)

    return {
        "relu": (D.relu, (_r(4, 5),)),
        "softplus": (D.softplus, (_r(4, 5),)),
        "log_softmax": (lambda x: D.log_softmax(x, 0), (_r(4, 5),)),
        "linear_sigmoid": (lambda *a: D.linear(*a, activation="sigmoid"), (_r(4, 5), _r(3, 5), _r(3))),
        "conv2d": (lambda *a: D.conv2d(*a, stride=2, padding=1, groups=2), (x4, _r(4, 2, 3, 3), _r(4))),
        "locally_connected2d": (
            lambda *a: D.locally_connected2d(*a, padding=1),
            (x4, _r(6, 5, 3, 4, 3, 3), _r(3, 6, 5)),
        ),
        "max_pool2d": (lambda a: D.max_pool2d(a, 3, 2, 1), (x4,)),
        "avg_pool2d": (lambda a: D.avg_pool2d(a, 2, 1, 1, count_include_pad=False), (x4,)),
        "dropout": (lambda a: D.dropout(a, 0.4, seed=3), (_r(4, 5),)),
        "hinge": (lambda a: D.hinge_loss(a, tpm), (_r(4, 5, scale=0.3),)),
        "squared_hinge": (lambda a: D.squared_hinge_loss(a, tpm, "none"), (_r(4, 5, scale=0.3),)),
        "multiclass_hinge": (lambda a: D.multiclass_hinge_loss(a, t_idx, "sum"), (_r(4, 5, scale=0.3),)),
        "multiclass_sq_hinge": (lambda a: D.multiclass_squared_hinge_loss(a, t_idx), (_r(4, 5, scale=0.3),)),
        "pseudo_huber": (lambda a: D.pseudo_huber_loss(a, torch.zeros(4, 5, **F64), 0.7), (_r(4, 5),)),
        "l1_penalty": (lambda a: D.l1_penalty(a, 0.3), (_r(4, 5),)),
        "l2_penalty": (lambda a: D.l2_penalty(a, 0.3), (_r(4, 5),)),
        "rnn": (lambda x, h, *ws: D.rnn(x, h, *ws, nonlinearity="tanh"), (seq, h0, *w(1))),
        "lstm_forget": lstm("forget", 4, False),
        "lstm_no_forget": lstm("no_forget", 3, False),
        "lstm_peephole": lstm("peephole", 4, True),
        "gru_cudnn": (lambda x, h, *ws: D.gru(x, h, *ws, variant="cudnn"), (seq, h0, *w(3))),
        "gru_cho": (lambda x, h, *ws: D.gru(x, h, *ws, variant="cho"), (seq, h0, *w(3))),
        "mgu": (lambda x, h, *ws: D.mgu(x, h, *ws), (seq, h0, *w(2))),
    }


GRADCHECK = _gradcheck_cases()


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck(name, backend):
    fn, inputs = GRADCHECK[name]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def _opcheck_cases():
    torch.manual_seed(1)
    x = torch.randn(3, 4, **F64, requires_grad=True)
    x4 = torch.randn(2, 4, 6, 5, **F64, requires_grad=True)
    t = torch.randint(0, 4, (3,))
    seq, h0, c0 = torch.randn(3, 2, 4, **F64), torch.randn(2, 3, **F64), torch.randn(2, 3, **F64)

    def w(g):
        return [torch.randn(g * 3, 4, **F64), torch.randn(g * 3, 3, **F64), torch.randn(g * 3, **F64), None]

    return [
        (activations._relu, (x,)),
        (activations._leaky_relu, (x, 0.1)),
        (activations._sigmoid, (x,)),
        (activations._tanh, (x,)),
        (activations._softplus, (x,)),
        (activations._softmax, (x, 1)),
        (activations._log_softmax, (x, 0)),
        (linear._linear, (x, torch.randn(5, 4, **F64, requires_grad=True), None, "relu", 0.01)),
        (conv._conv2d, (x4, torch.randn(6, 2, 3, 3, **F64, requires_grad=True), None, [1, 2], [1, 0], [1, 1], 2,
                        "tanh", 0.01)),
        (conv._conv2d, (x4, torch.randn(4, 4, 3, 2, **F64, requires_grad=True), torch.randn(4, **F64), [1, 1], [0, 1],
                        [2, 3], 1, "none", 0.01)),  # dilation in the fake kernel's shape
        (conv._lc2d, (x4, torch.randn(4, 3, 2, 4, 3, 3, **F64, requires_grad=True), None, [1, 1], [0, 0])),
        (pooling._max_pool2d, (x4, [2, 2], [2, 1], [1, 0])),
        (pooling._avg_pool2d, (x4, [3, 3], [2, 2], [1, 1], False)),
        (dropout._dropout, (x, 0.25, 9)),
        (losses._loss, ("cross_entropy", x, t, "mean", 1.0)),
        (losses._loss, ("multiclass_hinge_loss", x, t, "none", 1.0)),
        (losses._loss, ("pseudo_huber_loss", x, torch.randn(3, 4, **F64), "none", 0.5)),
        (regularizers._penalty, ("l2", x, 0.1)),
        (regularizers._max_norm_, (torch.randn(3, 4, **F64), 1.0)),
        (recurrent._rnn, (seq, h0, *w(1), "relu")),
        (recurrent._lstm, (seq, h0, c0, *w(3), None, "no_forget")),
        (recurrent._gated, ("gru", seq, h0, *w(3), "cudnn")),
        (recurrent._gated, ("gru", seq, h0, *w(3), "cho")),
        (recurrent._gated, ("mgu", seq, h0, *w(2), "")),
        # with gradients, so the backward's fake kernel is checked too (the peephole's gradient included)
        (recurrent._lstm, (seq.clone().requires_grad_(), h0, c0, *(t.requires_grad_() for t in w(4)[:3]), None,
                           torch.randn(3, 3, **F64, requires_grad=True), "peephole")),
    ]


@pytest.mark.parametrize("case", range(len(_opcheck_cases())))
def test_opcheck(case, backend):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op.custom, args)  # the triton twins: tests/triton/test_triton_ops.py


class _SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(6, 1, 3, 3, generator=g) * 0.3)
        self.b1 = torch.nn.Parameter(torch.zeros(6))
        self.w2 = torch.nn.Parameter(torch.randn(10, 6 * 4 * 4, generator=g) * 0.1)
        self.b2 = torch.nn.Parameter(torch.zeros(10))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = D.conv2d(x, self.w1, self.b1, padding=1, activation="relu")
        h = D.max_pool2d(h, 2)
        h = D.linear(h.flatten(1), self.w2, self.b2)
        return D.cross_entropy(h, t)


def test_small_model_under_torch_compile_fullgraph(backend):
    model = _SmallCNN()
    x, t = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    eager = model(x, t)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)  # inductor: C++ codegen around our opaque ops
    loss = compiled(x, t)
    loss.backward()
    torch.testing.assert_close(loss, eager)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


def test_recurrent_under_torch_compile_fullgraph(backend):
    seq, h0 = torch.randn(4, 2, 3), torch.zeros(2, 5)
    w = [torch.randn(15, 3) * 0.3, torch.randn(15, 5) * 0.3, torch.zeros(15), torch.zeros(15)]

    def f(x):
        out, hn = D.gru(x, h0, *w)
        return out.sum() + hn.sum()

    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(seq), f(seq))


def test_bad_input():
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        D.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="floating-point"):
        D.relu(torch.arange(4))
    with pytest.raises(ValueError, match="channels"):
        D.conv2d(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        D.conv2d(x, torch.randn(4, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding"):
        D.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="window"):
        D.avg_pool2d(x, 7)
    with pytest.raises(ValueError, match="reduction must be one of"):
        D.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="variant must be one of"):
        D.lstm(torch.randn(3, 2, 4), None, torch.randn(12, 4), torch.randn(12, 3), variant="gated")
    with pytest.raises(ValueError, match="input must be 3-D"):
        D.gru(torch.randn(2, 4), None, torch.randn(9, 4), torch.randn(9, 3))
    with pytest.raises(ValueError, match="h0"):
        D.rnn(torch.randn(3, 2, 4), torch.randn(2, 5), torch.randn(3, 4), torch.randn(3, 3))
    with pytest.raises(TypeError, match="dtype"):
        D.linear(torch.randn(3, 4), torch.randn(2, 4, dtype=torch.float64))


def test_noncontiguous_input_works(backend):
    x = torch.randn(7, 5, dtype=torch.float64).t()  # a transposed view
    w = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(D.linear(x, w), x @ w.t())
    torch.testing.assert_close(D.relu(x), torch.relu(x))


def test_empty_batch_is_a_clear_error_or_correct(backend):
    x = torch.randn(0, 3, 5, 5)
    w = torch.randn(4, 3, 3, 3)
    try:
        y = D.conv2d(x, w, padding=1)
    except ValueError as e:
        assert "empty" in str(e) or "x" in str(e)
    else:
        assert y.shape == (0, 4, 5, 5)
    y = D.relu(torch.randn(0, 4))
    assert y.shape == (0, 4)
