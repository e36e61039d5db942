"""dlgpu.nn.layers against torch.nn: state_dict exchange, forward and every gradient (input and
parameters), default initialisation, repr, Dropout's modes, and constructor checks.

Our module runs in the tested dtype; the reference is torch's module in float64 on the same
(rounded) parameter and input values, compared with dlgpu.testing's tolerance table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import dlgpu.nn.layers as L
from dlgpu.nn.layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    LocallyConnected2d,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from dlgpu.testing import assert_close, randn

DTYPES = [torch.float64, torch.float32]


def _dname(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check(ours: nn.Module, theirs: nn.Module, x: np.ndarray, dtype: torch.dtype, op: str, gen, post=None) -> None:
    """Load torch's parameters into ours (in ``dtype``), give torch (float64) the same rounded
    values, then compare the output and the gradients of the input and of every parameter."""
    theirs = theirs.double()
    ours.load_state_dict(theirs.state_dict())
    ours.to(dtype)
    theirs.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    xo = torch.tensor(x, dtype=dtype, requires_grad=True)
    xt = xo.detach().double().requires_grad_(True)
    yo, yt = ours(xo), theirs(xt)
    if post is not None:
        yt = post(yt)
    assert yo.dtype == dtype and yo.shape == yt.shape
    d = _dname(dtype)
    assert_close(yo, yt, op, d, name=f"{op} forward")
    dy = torch.tensor(randn(tuple(yt.shape), gen))
    yo.backward(dy.to(dtype))
    yt.backward(dy)
    assert_close(xo.grad, xt.grad, op, d, name=f"{op} grad input")
    params_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, params_t[name].grad, op, d, name=f"{op} grad {name}")


# ------------------------------------------------------------------ Linear


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias, dtype, gen):
    _check(Linear(11, 7, bias=bias), nn.Linear(11, 7, bias=bias), randn((3, 5, 11), gen), dtype, "linear", gen)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_linear_fused_activation(act, gen):
    post = {
        "relu": torch.relu,
        "leaky_relu": lambda y: TF.leaky_relu(y, 0.2),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[act]
    ours = Linear(11, 7, activation=act, negative_slope=0.2)
    _check(ours, nn.Linear(11, 7), randn((9, 11), gen), torch.float64, "linear", gen, post=post)


# ------------------------------------------------------------------ Conv2d

CONVS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=3, bias=False),
    dict(kernel_size=3, padding="same", groups=3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONVS, ids=["strided", "grouped-dilated-nobias", "same"])
def test_conv2d_matches_torch(cfg, dtype, gen):
    _check(Conv2d(6, 9, **cfg), nn.Conv2d(6, 9, **cfg), randn((2, 6, 9, 8), gen), dtype, "conv2d", gen)


def test_conv2d_fused_activation(gen):
    ours = Conv2d(6, 9, 3, padding=1, activation="tanh")
    _check(ours, nn.Conv2d(6, 9, 3, padding=1), randn((2, 6, 9, 8), gen), torch.float64, "conv2d", gen, post=torch.tanh)


# ------------------------------------------------------- LocallyConnected2d


class _UnfoldLC(nn.Module):
    """The unshared convolution written with torch.nn.functional.unfold (the independent check)."""

    def __init__(self, lc: LocallyConnected2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(lc.weight.detach().clone())
        self.bias = None if lc.bias is None else nn.Parameter(lc.bias.detach().clone())
        self.k, self.s, self.p = lc.kernel_size, lc.stride, lc.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        oh, ow, o = self.weight.shape[:3]
        cols = TF.unfold(x, self.k, padding=self.p, stride=self.s)  # N, C*KH*KW, OH*OW
        w = self.weight.reshape(oh * ow, o, -1)  # L, O, C*KH*KW
        y = torch.einsum("nkl,lok->nol", cols, w).reshape(x.shape[0], o, oh, ow)
        return y if self.bias is None else y + self.bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_locally_connected_matches_unfold(bias, dtype, gen):
    ours = LocallyConnected2d(3, 5, (3, 2), input_size=(7, 8), stride=(2, 1), padding=1, bias=bias)
    assert ours.output_size == (4, 9)
    assert ours.weight.shape == (4, 9, 5, 3, 3, 2)
    assert (ours.bias is None) == (not bias) and (bias is False or ours.bias.shape == (5, 4, 9))
    _check(ours, _UnfoldLC(ours), randn((2, 3, 7, 8), gen), dtype, "locally_connected2d", gen)


def test_locally_connected_rejects_other_input_size(gen):
    lc = LocallyConnected2d(3, 5, 3, input_size=7)
    with pytest.raises(ValueError, match="input must have shape"):
        lc(torch.tensor(randn((2, 3, 8, 7), gen), dtype=torch.float32))


# ----------------------------------------------------------------- pooling


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_torch(dtype, gen):
    cfg = dict(kernel_size=(3, 2), stride=(2, 1), padding=1)
    _check(MaxPool2d(**cfg), nn.MaxPool2d(**cfg), randn((2, 3, 9, 8), gen), dtype, "max_pool2d", gen)


def test_max_pool_return_indices(gen):
    x = torch.tensor(randn((2, 3, 9, 8), gen))
    y, idx = MaxPool2d(3, 2, 1, return_indices=True)(x)
    yt, idxt = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert torch.equal(y, yt) and torch.equal(idx, idxt)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pool_padding_limit_is_per_axis(cls, gen):
    """padding <= kernel_size // 2 on each axis: (0, 2) is fine for a (2, 4) window, refused for (4, 2)."""
    cfg = dict(kernel_size=(2, 4), padding=(0, 2))
    _check(cls(**cfg), getattr(nn, cls.__name__)(**cfg), randn((2, 3, 5, 7), gen), torch.float64, "pool", gen)
    with pytest.raises(ValueError, match="padding must be at most half"):
        cls(kernel_size=(4, 2), padding=(0, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_torch(include, dtype, gen):
    cfg = dict(kernel_size=3, stride=(2, 1), padding=1, count_include_pad=include)
    _check(AvgPool2d(**cfg), nn.AvgPool2d(**cfg), randn((2, 3, 9, 8), gen), dtype, "avg_pool2d", gen)


# ------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": (ReLU, nn.ReLU, {}),
    "leaky_relu": (LeakyReLU, nn.LeakyReLU, {"negative_slope": 0.2}),
    "sigmoid": (Sigmoid, nn.Sigmoid, {}),
    "tanh": (Tanh, nn.Tanh, {}),
    "softplus": (Softplus, nn.Softplus, {}),
    "softmax": (Softmax, nn.Softmax, {"dim": 1}),
    "log_softmax": (LogSoftmax, nn.LogSoftmax, {"dim": -1}),
    "flatten": (Flatten, nn.Flatten, {"start_dim": 1, "end_dim": 2}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(name, dtype, gen):
    ours, theirs, kw = ACTIVATIONS[name]
    _check(ours(**kw), theirs(**kw), randn((3, 5, 7), gen, scale=3.0), dtype, name, gen)


@pytest.mark.parametrize("cls,tcls", [(Softmax, nn.Softmax), (LogSoftmax, nn.LogSoftmax)])
def test_softmax_implicit_dim_like_torch(cls, tcls, gen):
    x = torch.tensor(randn((3, 5, 7), gen))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = cls()(x)
    with pytest.warns(UserWarning):
        yt = tcls()(x)
    assert_close(y, yt, "softmax", "float64")


# ------------------------------------------------------------------ Dropout


def test_dropout_train_and_eval(gen):
    x = torch.tensor(randn((64, 129), gen) + 5.0, requires_grad=True)  # all > 0: dropped <=> exactly 0
    m = Dropout(0.3)
    assert m.training
    y = m(x)
    kept = y != 0
    frac = kept.double().mean().item()
    sd = math.sqrt(0.3 * 0.7 / x.numel())
    assert abs(frac - 0.7) < 6 * sd, frac
    assert torch.allclose(y[kept], x.detach()[kept] / 0.7)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.double() / 0.7)  # backward regenerates the forward's mask
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(1)
    assert torch.equal(a, m(x))
    m.eval()
    assert torch.equal(m(x), x)
    m.train()
    assert not torch.equal(m(x), m(x))  # a fresh mask every call
    assert torch.equal(Dropout(0.0)(x), x)


# ------------------------------------------------------------ initialisation


@pytest.mark.parametrize(
    "make",
    [
        lambda mod: mod.Linear(37, 23),
        lambda mod: mod.Conv2d(6, 12, (3, 5), groups=3),
        lambda mod: mod.Conv2d(4, 8, 3, bias=False),
    ],
    ids=["linear", "conv-grouped", "conv-nobias"],
)
def test_init_same_stream_as_torch(make, seed):
    torch.manual_seed(seed)
    ours = make(L)
    torch.manual_seed(seed)
    theirs = make(nn)
    assert isinstance(ours, type(theirs))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert repr(ours) == repr(theirs)
    assert ours.bias is None if theirs.bias is None else ours.bias.shape == theirs.bias.shape


def _assert_uniform(t: torch.Tensor, bound: float) -> None:
    """U(-bound, bound): inside the bound, reaching near it, mean 0 and variance bound^2/3."""
    v = t.detach().double().flatten()
    n = v.numel()
    assert v.abs().max() <= bound
    assert v.abs().max() > bound * (1 - 20 / n)
    assert abs(v.mean().item()) < 6 * bound / math.sqrt(3 * n)
    assert abs(v.var().item() / (bound**2 / 3) - 1) < 6 * math.sqrt(0.8 / n)


@pytest.mark.parametrize("make,fan_in", [
    (lambda: Linear(37, 2000), 37),
    (lambda: Conv2d(6, 402, (3, 5), groups=3), 2 * 15),
    (lambda: LocallyConnected2d(4, 16, 3, input_size=(12, 10), stride=1, padding=1), 4 * 9),
    (lambda: LocallyConnected2d(3, 16, (3, 5), input_size=(12, 10), stride=1, padding=(1, 2)), 3 * 15),
], ids=["linear", "conv", "locally-connected", "locally-connected-3x5"])  # fmt: skip
def test_default_init_bounds(make, fan_in, seed):
    torch.manual_seed(seed)
    m = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias rule both give this
    _assert_uniform(m.weight, bound)
    if m.bias.numel() >= 1000:
        _assert_uniform(m.bias, bound)
    else:
        assert m.bias.abs().max() <= bound


def test_factory_kwargs_and_state_dict_round_trip():
    ours = Conv2d(3, 4, 3, dtype=torch.float64, device="cpu")
    assert ours.weight.dtype == torch.float64
    theirs = nn.Conv2d(3, 4, 3, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())  # and the other way
    assert torch.equal(theirs.weight, ours.weight)
    lc = LocallyConnected2d(2, 3, 3, 5, dtype=torch.float64)
    assert lc.weight.dtype == lc.bias.dtype == torch.float64


def test_repr():
    assert repr(Conv2d(3, 96, 11, stride=4)) == repr(nn.Conv2d(3, 96, 11, stride=4))
    assert repr(MaxPool2d(3, 2)) == repr(nn.MaxPool2d(3, 2))
    assert repr(AvgPool2d(2, padding=1)) == repr(nn.AvgPool2d(2, padding=1))
    assert repr(Dropout(0.25)) == repr(nn.Dropout(0.25))
    assert repr(LeakyReLU(0.2)) == repr(nn.LeakyReLU(0.2))
    assert repr(Linear(4, 5, activation="relu")) == "Linear(in_features=4, out_features=5, bias=True, activation=relu)"
    conv = Conv2d(1, 2, 3, activation="leaky_relu", negative_slope=0.3)
    assert repr(conv).endswith("activation=leaky_relu, negative_slope=0.3)")
    assert repr(LocallyConnected2d(3, 96, 11, 227, stride=4, bias=False, device="meta")) == (
        "LocallyConnected2d(3, 96, kernel_size=(11, 11), input_size=(227, 227), output_size=(55, 55), "
        "stride=(4, 4), bias=False)"
    )


# --------------------------------------------------------- constructor checks

BAD = [
    (lambda: Linear(0, 3), ValueError, "in_features must be >= 1"),
    (lambda: Linear(3.0, 3), TypeError, "in_features must be an int"),
    (lambda: Linear(3, 3, activation="gelu"), ValueError, "activation must be one of"),
    (lambda: Conv2d(3, 4, 3, padding_mode="reflect"), ValueError, "padding_mode must be 'zeros'"),
    (lambda: Conv2d(3, 4, 2, padding="same"), ValueError, "padding='same' needs an even total"),
    (lambda: Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "padding='same' needs stride 1"),
    (lambda: Conv2d(3, 4, 3, padding="full"), ValueError, "padding must be an int, a pair"),
    (lambda: Conv2d(3, 4, 3, groups=2), ValueError, "groups must divide"),
    (lambda: Conv2d(3, 4, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: Conv2d(3, 4, 3, stride=(1, 2, 3)), TypeError, "stride must be an int or a pair"),
    (lambda: Conv2d(3, 4, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: LocallyConnected2d(3, 4, 5, input_size=4), ValueError, "kernel_size"),
    (lambda: LocallyConnected2d(3, 4, 3, input_size=(4, 0)), ValueError, "input_size must be >= 1"),
    (lambda: MaxPool2d(3, ceil_mode=True), ValueError, "ceil_mode must be False"),
    (lambda: MaxPool2d(3, dilation=2), ValueError, "dilation must be 1"),
    (lambda: MaxPool2d(3, padding=2), ValueError, "padding must be at most half"),
    (lambda: AvgPool2d(3, divisor_override=4), ValueError, "divisor_override must be None"),
    (lambda: AvgPool2d(2, ceil_mode=True), ValueError, "ceil_mode must be False"),
    (lambda: Dropout(1.5), ValueError, "p must be in"),
    (lambda: Dropout("0.5"), TypeError, "p must be a number"),
    (lambda: Softplus(beta=2.0), ValueError, "beta must be 1"),
    (lambda: Softplus(threshold=5.0), ValueError, "threshold must be 20"),
    (lambda: LeakyReLU("x"), TypeError, "negative_slope must be a number"),
]


@pytest.mark.parametrize("make,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_constructor_args(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
