"""Reference inverted dropout: finite differences, mask statistics, torch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import dropout as D
from dlgpu.testing import assert_close, check_gradients, randn, uniform


def _p(gen: np.random.Generator) -> float:
    return float(gen.uniform(0.1, 0.9))


def test_forward_finite_differences(gen):
    p = _p(gen)
    x = randn((7, 5, 3), gen)
    mask = gen.random(x.shape) >= p
    dy = randn(x.shape, gen)
    dx = D.dropout_backward(dy, p, mask=mask)
    check_gradients(lambda: D.dropout_forward(x, p, mask=mask), {"x": x}, {"x": dx}, dy)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.8])
def test_mask_keep_fraction(p, seed):
    shape = (301, 333)  # ~1e5 draws: std of the keep fraction <= 0.0016
    mask = D.dropout_mask(shape, p, seed)
    assert mask.dtype == np.bool_ and mask.shape == shape
    assert abs(mask.mean() - (1 - p)) < 0.01  # > 6 sigma, yet p and 1 - p are >= 0.4 apart
    assert np.array_equal(mask, np.random.default_rng(seed).random(shape) >= p)  # the documented draw


def test_same_seed_same_mask_different_seed_different_mask(seed):
    a = D.dropout_mask((13, 17), 0.5, seed)
    assert np.array_equal(a, D.dropout_mask((13, 17), 0.5, seed))
    assert not np.array_equal(a, D.dropout_mask((13, 17), 0.5, seed + 1))
    x = np.ones((13, 17))
    assert np.array_equal(D.dropout_forward(x, 0.5, seed=seed), D.dropout_forward(x, 0.5, mask=a))
    assert np.array_equal(D.dropout_backward(x, 0.5, seed=seed), D.dropout_backward(x, 0.5, mask=a))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.75])
def test_expectation_preserved(p, gen):
    x = uniform((317, 311), gen, 1.0, 2.0)  # mean 1.5; without the 1/(1-p) rescale mean(y) = 1.5 (1-p)
    # not the fixture's seed: default_rng(seed) is gen's own stream, so the mask would copy x's draws
    y = D.dropout_forward(x, p, seed=int(gen.integers(2**31)))
    # std of mean(y) ~ 1.5 sqrt(p / (1-p)) / sqrt(1e5) <= 0.009; the bound is > 5 sigma
    assert abs(y.mean() - x.mean()) < 0.05
    kept = y != 0
    assert_close(y[kept], x[kept] / (1 - p), "dropout")
    assert abs(kept.mean() - (1 - p)) < 0.01


def test_p_zero_identity_p_one_zeros(gen, seed):
    x = randn((5, 7), gen)
    assert np.array_equal(D.dropout_forward(x, 0.0, seed=seed), x)
    assert np.array_equal(D.dropout_backward(x, 0.0, seed=seed), x)
    assert D.dropout_mask(x.shape, 0.0, seed).all()
    assert not D.dropout_mask(x.shape, 1.0, seed).any()
    with np.errstate(divide="raise", invalid="raise"):
        y = D.dropout_forward(x, 1.0, seed=seed)
        dx = D.dropout_backward(x, 1, mask=np.ones(x.shape, dtype=bool))  # even an all-keep mask: no 1/0
    assert np.all(y == 0) and np.all(dx == 0)


def test_backward_is_mask_over_keep_probability(gen):
    p = _p(gen)
    dy = randn((13, 11), gen)
    mask = gen.random(dy.shape) >= p
    assert_close(D.dropout_backward(dy, p, mask=mask), np.where(mask, dy / (1 - p), 0.0), "dropout")
    x = randn(dy.shape, gen)
    assert_close(D.dropout_forward(x, p, mask=mask), np.where(mask, x / (1 - p), 0.0), "dropout")


def test_matches_torch_given_its_mask(gen, seed):
    # torch draws its own mask; read it off the output (x has no zeros) and replay it here
    p = _p(gen)
    x = randn((37, 29), gen)
    dy = randn(x.shape, gen)
    torch.manual_seed(seed)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.dropout(xt, p, training=True)
    yt.backward(torch.tensor(dy))
    mask = yt.detach().numpy() != 0
    assert 0 < mask.mean() < 1
    assert_close(D.dropout_forward(x, p, mask=mask), yt, "dropout", name="y")
    assert_close(D.dropout_backward(dy, p, mask=mask), xt.grad, "dropout", name="dx")


def test_float32_in_float32_out(gen, seed):
    x = randn((4, 9), gen, dtype=np.float32)
    for p in (0.0, 0.3, 1.0):
        assert D.dropout_forward(x, p, seed=seed).dtype == np.float32
        assert D.dropout_backward(x, p, seed=seed).dtype == np.float32


def test_bad_input(gen):
    x = randn((3, 4), gen)
    mask = np.ones(x.shape, dtype=bool)
    for fn in (D.dropout_forward, D.dropout_backward):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            fn(x, 1.5, seed=0)
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            fn(x, -0.1, mask=mask)
        with pytest.raises(ValueError, match="exactly one of mask or seed .* both"):
            fn(x, 0.5, mask=mask, seed=0)
        with pytest.raises(ValueError, match="exactly one of mask or seed .* neither"):
            fn(x, 0.5)
        with pytest.raises(ValueError, match="mask must have the same shape"):
            fn(x, 0.5, mask=np.ones((4, 3), dtype=bool))
        with pytest.raises(TypeError, match="mask must have dtype bool"):
            fn(x, 0.5, mask=np.ones(x.shape))
        with pytest.raises(TypeError, match="must have a floating-point dtype"):
            fn(np.ones((3, 4), dtype=np.int32), 0.5, seed=0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        D.dropout_mask((3,), 2.0, 0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        D.dropout_mask((3,), 0.5, -1)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        D.dropout_mask((3,), 0.5, 1.5)
    with pytest.raises(ValueError, match="shape must be a tuple of non-negative ints"):
        D.dropout_mask((3, -1), 0.5, 0)
