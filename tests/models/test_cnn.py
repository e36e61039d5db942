"""dlgpu.models.cnn and dlgpu.models.registry: every model builds, runs forward and backward with finite
gradients, and the full-size configurations have the published shapes and parameter counts (counted on
the meta device: no memory, no compute)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.models import cnn, registry
from dlgpu.nn.layers import LocallyConnected2d

CASE_STUDIES = ("lenet5", "alexnet", "zfnet", "vgg11", "vgg16", "googlenet", "resnet18")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_out * c_in * k * k + c_out


def fc_params(d_in: int, d_out: int) -> int:
    return d_out * d_in + d_out


def check_forward_backward(model: torch.nn.Module, x: torch.Tensor, classes: int) -> None:
    out = model(x)
    assert out.shape == (x.shape[0], classes)
    assert torch.isfinite(out).all()
    grad = torch.from_numpy(np.random.default_rng(x.shape[0]).standard_normal(out.shape)).float()
    out.backward(grad)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


# ----------------------------------------------------------- small configurations


@pytest.mark.parametrize("name", CASE_STUDIES)
def test_small_case_study_on_digit_sized_input(name: str, seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    classes = int(gen.integers(2, 12))
    model = getattr(cnn, name)(classes, 1, small=True, input_size=8)
    model.train()
    x = torch.from_numpy(gen.standard_normal((3, 1, 8, 8))).float()
    check_forward_backward(model, x, classes)
    assert model.summary().total_params == n_params(model)


def test_mlp_shapes_counts_and_training_mode(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    d, h1, h2, k = 37, 23, 11, 5
    model = cnn.mlp(d, (h1, h2), k, activation="tanh", dropout=0.3)
    assert n_params(model) == fc_params(d, h1) + fc_params(h1, h2) + fc_params(h2, k)
    x = torch.from_numpy(gen.standard_normal((7, d))).float()
    check_forward_backward(model, x, k)
    model.eval()  # dropout off: deterministic
    assert torch.equal(model(x), model(x))
    one = cnn.mlp(d, 9, k)
    assert n_params(one) == fc_params(d, 9) + fc_params(9, k)


def test_convnet_pattern_and_hand_count(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    model = cnn.convnet((2, 12, 12), 7, n=2, m=2, k=1, widths=(5, 9), fc_widths=13)
    # [[CONV -> RELU]*2 -> POOL]*2 -> FC -> RELU -> FC: 12 -> 6 -> 3
    expected = conv_params(2, 5, 3) + conv_params(5, 5, 3) + conv_params(5, 9, 3) + conv_params(9, 9, 3)
    expected += fc_params(9 * 3 * 3, 13) + fc_params(13, 7)
    assert n_params(model) == expected
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "Conv2d", "MaxPool2d", "Conv2d", "Conv2d", "MaxPool2d", "Flatten", "Linear", "Linear"]
    assert all(m.activation == "relu" for m in model if type(m).__name__ == "Conv2d")  # the fused CONV -> RELU
    check_forward_backward(model, torch.from_numpy(gen.standard_normal((4, 2, 12, 12))).float(), 7)
    no_pool = cnn.convnet((1, 5, 5), 3, n=1, m=3, k=0, widths=4, pool=False)
    assert [type(m).__name__ for m in no_pool].count("MaxPool2d") == 0
    assert n_params(no_pool) == conv_params(1, 4, 3) + 2 * conv_params(4, 4, 3) + fc_params(4 * 25, 3)


def test_blocks(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    block = cnn.InceptionBlock(6, 3, 2, 4, 2, 5, 3)
    x = torch.from_numpy(gen.standard_normal((2, 6, 7, 5))).float()
    assert block(x).shape == (2, 3 + 4 + 5 + 3, 7, 5)
    same = cnn.BasicBlock(6, 6, 1)
    assert isinstance(same.shortcut, torch.nn.Identity)
    down = cnn.BasicBlock(6, 10, 2, batch_norm=False)
    assert not isinstance(down.shortcut, torch.nn.Identity)
    assert same(x).shape == (2, 6, 7, 5)
    assert down(x).shape == (2, 10, 4, 3)
    plain = cnn.resnet18(4, 1, small=True, input_size=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    check_forward_backward(plain, torch.from_numpy(gen.standard_normal((2, 1, 8, 8))).float(), 4)


# ------------------------------------------------------ full size, on the meta device


def test_alexnet_conv1_and_totals() -> None:
    with torch.device("meta"):
        net = cnn.alexnet()
        grouped = cnn.alexnet(grouped=True)
        unshared = cnn.alexnet(unshared_conv1=True)
    rows = net.summary().rows
    assert rows[0].output_shape == (96, 55, 55)  # 55x55x96 from 227x227x3
    assert rows[0].volume == "55x55x96"
    assert rows[0].params == 96 * 11 * 11 * 3 + 96 == 34_944
    assert [r.volume for r in rows if r.type == "MaxPool2d"] == ["27x27x96", "13x13x256", "6x6x256"]
    assert n_params(net) == 62_378_344
    assert n_params(grouped) == 60_965_224  # the paper's two-GPU count (without LRN)
    lc = unshared[0]
    assert isinstance(lc, LocallyConnected2d)
    assert lc.output_size == (55, 55)
    assert sum(p.numel() for p in lc.parameters()) == 55 * 55 * 96 * (11 * 11 * 3 + 1) == 105_705_600
    assert unshared.summary().rows[0].output_shape == (96, 55, 55)


def test_lenet5_hand_count() -> None:
    with torch.device("meta"):
        net = cnn.lenet5()
    rows = net.summary().rows
    assert [r.volume for r in rows[:5]] == ["28x28x6", "14x14x6", "10x10x16", "5x5x16", "1x1x120"]
    own = [r.params for r in rows if r.params]
    assert own == [conv_params(1, 6, 5), conv_params(6, 16, 5), conv_params(16, 120, 5), fc_params(120, 84),
                   fc_params(84, 10)]  # fmt: skip
    assert own == [156, 2_416, 48_120, 10_164, 850]
    assert n_params(net) == 61_706


def test_zfnet_vgg_googlenet_resnet_full_size() -> None:
    with torch.device("meta"):
        zf, v11, v16 = cnn.zfnet(), cnn.vgg11(), cnn.vgg16()
        g, r = cnn.googlenet(small=False), cnn.resnet18()
    zrows = zf.summary().rows
    assert [r_.volume for r_ in zrows[:4]] == ["110x110x96", "55x55x96", "26x26x256", "13x13x256"]
    assert zrows[0].params == conv_params(3, 96, 7)
    assert n_params(zf) == 62_378_344 - conv_params(3, 96, 11) + conv_params(3, 96, 7)
    assert n_params(v11) == 132_863_336  # torchvision's vgg11 / vgg16 (no batch norm)
    assert n_params(v16) == 138_357_544
    assert sum(type(m).__name__ in ("Conv2d", "Linear") for m in v16) == 16
    assert v16.summary().rows[-6].volume == "25088"  # 7x7x512 flattened
    inc3a = g[5]
    assert isinstance(inc3a, cnn.InceptionBlock)
    hand = (conv_params(192, 64, 1) + conv_params(192, 96, 1) + conv_params(96, 128, 3) + conv_params(192, 16, 1)
            + conv_params(16, 32, 5) + conv_params(192, 32, 1))  # fmt: skip
    assert n_params(inc3a) == hand == 163_696
    grows = g.summary().rows
    assert grows[-1].output_shape == (1000,)
    assert any(r_.name == "16" and r_.volume == "1x1x1024" for r_ in grows)
    assert n_params(r) == 11_689_512  # torchvision's resnet18, batch-norm affine parameters included


# ------------------------------------------------------------------ bad input


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="input_size too small"):
        cnn.vgg16(small=False, input_size=16)
    with pytest.raises(ValueError, match="widths must be an int or a sequence of 2"):
        cnn.convnet((1, 8, 8), 10, m=2, widths=(4, 5, 6))
    with pytest.raises(ValueError, match="in_shape must be"):
        cnn.convnet((8, 8), 10)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        cnn.convnet((1, 8, 8), 10, kernel_size=2)
    with pytest.raises(ValueError, match="activation must be one of"):
        cnn.mlp(4, 3, 2, activation="swish")
    with pytest.raises(ValueError, match="dropout must be in"):
        cnn.mlp(4, 3, 2, dropout=1.0)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        cnn.lenet5(2.5)
    with pytest.raises(ValueError, match="pool must be 'max' or 'avg'"):
        cnn.lenet5(pool="min")


# --------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", registry.names())
def test_registry_example_trains(name: str, seed: int) -> None:
    ex = registry.example(name, batch_size=3, seed=seed % 1000)
    assert ex.name == name
    loss = ex.loss(ex.model(*ex.inputs), ex.target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in ex.model.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_registry_covers_every_family_and_checks_names() -> None:
    names = registry.names()
    for expected in ("mlp", "convnet", *CASE_STUDIES, "linear_ae", "deep_ae", "sparse_ae", "denoising_ae", "vae",
                     "gan", "lstm_classifier", "gru_classifier", "rnn_classifier", "mgu_classifier"):  # fmt: skip
        assert expected in names
    a, b = registry.example("alexnet", 2, seed=5), registry.example("alexnet", 2, seed=5)
    assert torch.equal(a.inputs[0], b.inputs[0])
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    with pytest.raises(ValueError, match="name must be one of the registered models"):
        registry.example("alexnet2")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        registry.example("mlp", batch_size=0)
