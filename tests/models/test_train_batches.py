"""dlgpu.models.train's minibatches: a lone last training sample joins the batch before it, so models with
batch normalisation train on any dataset size, and every sample is still used once per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlgpu.models import cnn
from dlgpu.models.data import load_digits
from dlgpu.models.train import _batches, _num_train_batches, fit, fit_autoencoder
from dlgpu.nn.layers import Linear


def test_batches_merge_a_lone_last_sample(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed % 1000)
    for n in range(1, 40):
        for b in range(1, 12):
            batches = _batches(n, b, gen, merge_single=True)
            assert torch.equal(torch.cat(batches).sort().values, torch.arange(n)), (n, b)
            assert len(batches) == _num_train_batches(n, b)
            sizes = [len(i) for i in batches]
            if n % b == 1 and n > b:  # k * b + 1, k >= 1: the lone sample joins the last full batch
                assert sizes == [b] * (n // b - 1) + [b + 1], (n, b)
            else:
                assert sizes == [len(i) for i in _batches(n, b, None)], (n, b)
            assert min(sizes) >= 2 or b == 1 or n == 1
    assert [len(i) for i in _batches(13, 4, None)] == [4, 4, 4, 1]  # evaluation's batches are unchanged


class Recorder(nn.Module):
    """A BatchNorm classifier that records the indices of every training batch it sees."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.net = nn.Sequential(Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), Linear(16, k))
        self.seen: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x[:, -1].round().long().tolist())  # the last feature is the sample's index
        return self.net(x)


@pytest.mark.parametrize("batch_size", [2, 4, 7])
def test_fit_batch_norm_on_k_batches_plus_one(batch_size: int, seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    k = int(gen.integers(1, 4))
    n = k * batch_size + 1
    x = torch.from_numpy(gen.standard_normal((n, 5))).float()
    x = torch.cat([x, torch.arange(n, dtype=torch.float32)[:, None]], dim=1)
    y = torch.from_numpy(gen.integers(0, 3, n))
    model = Recorder(6, 3)
    hist = fit(model, x, y, epochs=2, batch_size=batch_size, seed=seed, progress=True, log=None)
    assert len(model.seen) == 2 * k
    for epoch in (model.seen[:k], model.seen[k:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(n))  # every sample, once
        assert min(len(batch) for batch in epoch) >= 2
    assert all(np.isfinite(hist["loss"]))


def test_fit_autoencoder_merges_too(gen: np.random.Generator) -> None:
    x = torch.from_numpy(gen.standard_normal((9, 4))).float()
    model = nn.Sequential(Linear(4, 3), nn.BatchNorm1d(3), Linear(3, 4))
    hist = fit_autoencoder(model, x, epochs=2, batch_size=4, progress=False, log=None)  # 4 + (4 + 1)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))


def test_resnet18_small_on_digits_with_a_lone_last_sample(seed: int) -> None:
    """The reported case: ResNet-18 small at 8x8 (1x1 maps in stage 4) on N = 4 * k + 1 digits."""
    torch.manual_seed(seed)
    data = load_digits(seed=seed % 1000, scaling="standard")
    model = cnn.resnet18(10, 1, small=True, input_size=8)
    x, y = data.x_train[:17], data.y_train[:17]
    hist = fit(model, x, y, epochs=1, batch_size=4, seed=seed, progress=False, log=None)
    assert np.isfinite(hist["loss"][0])


def test_fit_rejects_single_sample_batches_with_batch_norm(gen: np.random.Generator) -> None:
    x = torch.from_numpy(gen.standard_normal((6, 5))).float()
    y = torch.from_numpy(gen.integers(0, 3, 6))
    model = nn.Sequential(Linear(5, 8), nn.BatchNorm1d(8), Linear(8, 3))
    with pytest.raises(ValueError, match=r"batch_size and the number of training samples must be >= 2 .*batch_size=1"):
        fit(model, x, y, batch_size=1, progress=False, log=None)
    with pytest.raises(ValueError, match=r"got batch_size=4 and 1 samples"):
        fit(model, x[:1], y[:1], batch_size=4, progress=False, log=None)
    plain = nn.Sequential(Linear(5, 8), Linear(8, 3))  # no batch norm: one-sample batches are fine
    assert len(fit(plain, x, y, batch_size=1, epochs=1, progress=False, log=None)["loss"]) == 1
