"""dlgpu.nn.network: the layer table's shapes and exact parameter counts (AlexNet's conv1, shared
and unshared), summary() on arbitrary modules, and Network as a Sequential."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from dlgpu.nn.layers import Conv2d, Flatten, Linear, LocallyConnected2d, MaxPool2d, ReLU
from dlgpu.nn.network import Network, Summary, summary
from dlgpu.testing import randn


def test_alexnet_conv1_table(capsys):
    net = Network(Conv2d(3, 96, 11, stride=4), ReLU(), MaxPool2d(3, 2), input_shape=(3, 227, 227))
    s = net.summary()
    assert isinstance(s, Summary)
    assert [(r.name, r.type, r.output_shape, r.params) for r in s.rows] == [
        ("0", "Conv2d", (96, 55, 55), 34_944),
        ("1", "ReLU", (96, 55, 55), 0),
        ("2", "MaxPool2d", (96, 27, 27), 0),
    ]
    assert [r.volume for r in s.rows] == ["55x55x96", "55x55x96", "27x27x96"]
    assert s.total_params == s.trainable_params == 34_944 == 96 * (11 * 11 * 3 + 1)
    print(s)
    out = capsys.readouterr().out
    assert "Input: 227x227x3" in out
    assert "Conv2d      55x55x96   34,944" in out
    assert out.rstrip().endswith("Total params: 34,944 (trainable 34,944)")


def test_alexnet_conv1_unshared_count():
    # 105.7M parameters: built on the meta device (no memory, the pass runs the op's fake kernel)
    lc = LocallyConnected2d(3, 96, 11, input_size=227, stride=4, device="meta")
    s = Network(lc, ReLU(), input_shape=(3, 227, 227)).summary()
    assert lc.output_size == (55, 55)
    assert s.rows[0].volume == "55x55x96"
    assert s.rows[0].params == s.total_params == 105_705_600 == 55 * 55 * 96 * (11 * 11 * 3 + 1)
    assert "105,705,600" in str(s)


def test_unshared_count_on_cpu():
    lc = LocallyConnected2d(3, 8, 5, input_size=(17, 15), stride=2, padding=1)
    s = summary(nn.Sequential(lc, Flatten(), Linear(8 * 7 * 8, 4)), (3, 17, 15))
    assert lc.output_size == (8, 7)
    assert [r.output_shape for r in s.rows] == [(8, 8, 7), (448,), (4,)]
    assert [r.volume for r in s.rows] == ["8x7x8", "448", "4"]  # H x W x C
    assert [r.params for r in s.rows] == [8 * 7 * 8 * (3 * 25 + 1), 0, 448 * 4 + 4]
    assert s.total_params == sum(p.numel() for p in lc.parameters()) + 448 * 4 + 4


class _Block(nn.Module):
    """A module with a parameter of its own, children, and a child used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.shared = Linear(3, 3)
        self.head = Linear(3, 2, bias=False)
        self.frozen = Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.shared(self.frozen(self.shared(x * self.scale))))


def test_summary_any_module():
    model = nn.Sequential(OrderedDict(features=nn.Sequential(Conv2d(2, 4, 3), ReLU()), flat=Flatten(), block=None))
    model.block = nn.Sequential(Linear(4 * 5 * 4, 3), _Block())
    model.train()
    rng = torch.get_rng_state()
    s = summary(model, (2, 7, 6))
    assert torch.equal(torch.get_rng_state(), rng)  # private generator
    assert model.training and all(p.grad is None for p in model.parameters())
    rows = [(r.name, r.output_shape, r.params) for r in s.rows]
    assert rows == [
        ("features.0", (4, 5, 4), 4 * 2 * 9 + 4),
        ("features.1", (4, 5, 4), 0),
        ("flat", (80,), 0),
        ("block.0", (3,), 80 * 3 + 3),
        ("block.1", (2,), 3),  # its own `scale`; listed before its children
        ("block.1.shared", (3,), 12),  # called twice, listed once
        ("block.1.frozen", (3,), 12),
        ("block.1.head", (2,), 6),
    ]
    assert s.total_params == sum(p.numel() for p in model.parameters()) == 76 + 243 + 3 + 12 + 12 + 6
    assert s.trainable_params == s.total_params - 12


def test_summary_module_called_twice_keeps_its_first_output():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(x).flatten(1))

    s = summary(Twice(), (2, 3, 4))
    assert [(r.name, r.output_shape) for r in s.rows] == [("act", (2, 3, 4))]


def test_summary_probe_has_no_zeros():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["x"] = x.clone()
            return x

    summary(Probe(), (5, 4), dtype=torch.float64)
    x = seen["x"]
    assert x.shape == (1, 5, 4) and x.dtype == torch.float64
    assert x.abs().min() >= 0.1 and (x > 0).any() and (x < 0).any()


def test_network_is_a_sequential(gen):
    layers = [Conv2d(2, 3, 3, padding=1), ReLU(), Flatten(), Linear(3 * 5 * 4, 2)]
    net = Network(*layers, input_shape=(2, 5, 4))
    seq = nn.Sequential(*layers)
    x = torch.tensor(randn((3, 2, 5, 4), gen), dtype=torch.float32)
    assert isinstance(net, nn.Sequential) and len(net) == 4 and net[0] is layers[0]
    assert torch.equal(net(x), seq(x))
    assert net.state_dict().keys() == seq.state_dict().keys()
    assert repr(net).startswith("Network(\n  input_shape=(2, 5, 4)\n  (0): Conv2d(2, 3")
    named = Network(OrderedDict(conv=Conv2d(2, 3, 3), act=ReLU()), input_shape=[2, 5, 4])
    assert [r.name for r in named.summary().rows] == ["conv", "act"]
    mlp = Network(Linear(6, 4), ReLU(), Linear(4, 1), input_shape=(6,))
    assert [r.volume for r in mlp.summary().rows] == ["4", "4", "1"]
    assert mlp.summary().total_params == 6 * 4 + 4 + 4 + 1


def test_network_bad_args():
    with pytest.raises(ValueError, match="input_shape must be given"):
        Network(ReLU()).summary()
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple of positive ints"):
        Network(ReLU(), input_shape=(3, 0, 4))
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple"):
        summary(ReLU(), ())
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        summary("net", (3,))
