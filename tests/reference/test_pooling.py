"""Reference max/avg pooling: finite differences, torch, ties and NaN, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import pooling as P
from dlgpu.testing import assert_close, check_gradients, randn


def _config(gen: np.random.Generator, max_k: int = 4) -> dict:
    """Random kernel/stride/padding: non-square, often overlapping (stride < kernel)."""
    kh, kw = (int(v) for v in gen.integers(1, max_k + 1, size=2))
    sh, sw = (int(v) for v in gen.integers(1, 4, size=2))
    ph, pw = int(gen.integers(0, kh // 2 + 1)), int(gen.integers(0, kw // 2 + 1))
    return {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}


# Fixed configs so the cases that matter are always covered, whatever the seed draws.
FIXED = [
    {"kernel_size": 2, "stride": None, "padding": 0},  # the classic 2x2/2
    {"kernel_size": 3, "stride": 2, "padding": 1},  # overlapping, padded
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 1)},  # non-square, stride < kernel
    {"kernel_size": (1, 4), "stride": (2, 1), "padding": (0, 2)},  # padding = kernel/2 exactly
]


def _distinct(shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
    """Distinct values 0.25 apart (never 0): no tie can flip inside a finite-difference step."""
    n = int(np.prod(shape))
    return ((gen.permutation(n) - n / 2 + 0.5) * 0.25).reshape(shape)


def _torch_kwargs(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if v is not None}


# ------------------------------------------------------------- finite differences


@pytest.mark.parametrize("case", range(len(FIXED) + 3))
def test_max_pool_finite_differences(case, gen):
    cfg = FIXED[case] if case < len(FIXED) else _config(gen)
    x = _distinct((2, 3, 7, 5), gen)
    y, idx = P.max_pool2d_forward(x, **cfg)
    dy = randn(y.shape, gen)
    dx = P.max_pool2d_backward(dy, idx, x.shape)
    check_gradients(lambda: P.max_pool2d_forward(x, **cfg)[0], {"x": x}, {"x": dx}, dy)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", range(len(FIXED) + 2))
def test_avg_pool_finite_differences(case, count_include_pad, gen):
    cfg = FIXED[case] if case < len(FIXED) else _config(gen)
    x = randn((2, 3, 5, 7), gen)
    y = P.avg_pool2d_forward(x, **cfg, count_include_pad=count_include_pad)
    dy = randn(y.shape, gen)
    dx = P.avg_pool2d_backward(dy, x.shape, **cfg, count_include_pad=count_include_pad)
    check_gradients(
        lambda: P.avg_pool2d_forward(x, **cfg, count_include_pad=count_include_pad), {"x": x}, {"x": dx}, dy
    )


# ------------------------------------------------------------------------- torch


@pytest.mark.parametrize("case", range(len(FIXED) + 4))
def test_max_pool_matches_torch(case, gen):
    cfg = FIXED[case] if case < len(FIXED) else _config(gen, max_k=5)
    x = randn((3, 2, 13, 11), gen)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = F.max_pool2d(xt, **_torch_kwargs(cfg), return_indices=True)
    dy = randn(tuple(yt.shape), gen)
    yt.backward(torch.tensor(dy))
    y, idx = P.max_pool2d_forward(x, **cfg)
    assert idx.dtype == np.int64
    assert P.pool2d_output_shape(x.shape, **cfg) == tuple(yt.shape)
    assert_close(y, yt, "max_pool2d", name="y")
    assert_close(idx, it.numpy(), "max_pool2d", name="indices")  # integer: exact
    assert_close(P.max_pool2d_backward(dy, idx, x.shape), xt.grad, "max_pool2d", name="dx")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", range(len(FIXED) + 4))
def test_avg_pool_matches_torch(case, count_include_pad, gen):
    cfg = FIXED[case] if case < len(FIXED) else _config(gen, max_k=5)
    x = randn((3, 2, 11, 13), gen)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.avg_pool2d(xt, **_torch_kwargs(cfg), count_include_pad=count_include_pad)
    dy = randn(tuple(yt.shape), gen)
    yt.backward(torch.tensor(dy))
    y = P.avg_pool2d_forward(x, **cfg, count_include_pad=count_include_pad)
    dx = P.avg_pool2d_backward(dy, x.shape, **cfg, count_include_pad=count_include_pad)
    assert_close(y, yt, "avg_pool2d", name="y")
    assert_close(dx, xt.grad, "avg_pool2d", name="dx")


def test_count_include_pad_changes_the_border(gen):
    # guards against the two settings silently computing the same thing
    x = randn((1, 1, 5, 5), gen)
    a = P.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)
    b = P.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)
    assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1], "avg_pool2d")  # interior: full windows
    assert_close(a[0, 0, 0, 0] * 9 / 4, b[0, 0, 0, 0], "avg_pool2d")  # corner: 4 real of 9


# ------------------------------------------------------------------ ties and NaN


def test_ties_pick_the_first_in_scan_order():
    x = np.ones((1, 1, 4, 4))
    y, idx = P.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(y, np.ones((1, 1, 2, 2)))
    # overlapping windows with padding: the first REAL element of each window
    _, idx = P.max_pool2d_forward(x, 3, 1, 1)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])
    _, it = F.max_pool2d(torch.tensor(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(idx, it.numpy())
    # a later equal maximum inside the window does not replace an earlier one
    x = np.array([[[[1.0, 3.0, 2.0], [3.0, 0.5, 3.0]]]])
    _, idx = P.max_pool2d_forward(x, (2, 3))
    assert idx.item() == 1


def test_all_minus_inf_window_reports_first_real_element():
    x = np.full((1, 1, 3, 3), -np.inf)
    y, idx = P.max_pool2d_forward(x, 3, 1, 1)
    _, it = F.max_pool2d(torch.tensor(x), 3, 1, 1, return_indices=True)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_nan_propagates_like_torch(gen):
    x = randn((2, 2, 6, 6), gen)
    x[0, 1, 2, 3] = np.nan  # one NaN: its window(s) give NaN and point at it
    x[1, 0, 0, 0] = x[1, 0, 1, 1] = np.nan  # two NaNs in one window: torch reports the last
    y, idx = P.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 1, 1, 1]) and idx[0, 1, 1, 1] == 2 * 6 + 3
    assert np.isnan(y[1, 0, 0, 0]) and idx[1, 0, 0, 0] == 1 * 6 + 1
    assert np.isnan(y).sum() == 2
    for cfg in FIXED:
        y, idx = P.max_pool2d_forward(x, **cfg)
        yt, it = F.max_pool2d(torch.tensor(x), **_torch_kwargs(cfg), return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())  # NaN == NaN here
        np.testing.assert_array_equal(idx, it.numpy())


# ----------------------------------------------------------------- misc properties


def test_backward_accumulates_overlapping_windows():
    # a 3x3 plane with its maximum in the centre: every 2x2/1 window picks it
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    x[0, 0, 1, 1] = 100.0
    y, idx = P.max_pool2d_forward(x, 2, 1)
    assert np.all(idx == 4)
    dx = P.max_pool2d_backward(np.full(y.shape, 0.5), idx, x.shape)
    assert dx[0, 0, 1, 1] == 2.0 and dx.sum() == 2.0


def test_output_shape(gen):
    assert P.pool2d_output_shape((2, 3, 7, 5), 2) == (2, 3, 3, 2)
    assert P.pool2d_output_shape((2, 3, 7, 5), (3, 2), (2, 1), (1, 1)) == (2, 3, 4, 6)
    assert P.pool2d_output_shape([1, 1, 4, 4], 4) == (1, 1, 1, 1)


def test_float32_in_float32_out(gen):
    x = randn((2, 3, 7, 5), gen, dtype=np.float32)
    y, idx = P.max_pool2d_forward(x, 3, 2, 1)
    assert y.dtype == np.float32 and idx.dtype == np.int64
    assert P.max_pool2d_backward(y, idx, x.shape).dtype == np.float32
    for cip in (True, False):
        ya = P.avg_pool2d_forward(x, 3, 2, 1, count_include_pad=cip)
        assert ya.dtype == np.float32
        assert P.avg_pool2d_backward(ya, x.shape, 3, 2, 1, count_include_pad=cip).dtype == np.float32
    ref = P.avg_pool2d_forward(x.astype(np.float64), 3, 2, 1, count_include_pad=False)
    assert_close(ya, ref, "avg_pool2d", "float32")


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fwd", [P.max_pool2d_forward, P.avg_pool2d_forward])
def test_bad_input(fwd, gen):
    x = randn((1, 2, 5, 5), gen)
    with pytest.raises(ValueError, match="x must be 4-D"):
        fwd(randn((2, 5, 5), gen), 2)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        fwd(np.ones((1, 1, 4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        fwd(x, 0)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        fwd(x, (2, 0))
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        fwd(x, (2, 2, 2))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        fwd(x, 2, 0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        fwd(x, 3, 1, -1)
    with pytest.raises(ValueError, match="padding must be at most half"):
        fwd(x, 3, 1, 2)
    with pytest.raises(ValueError, match="padding must be at most half"):
        fwd(x, (4, 2), 1, (2, 2))  # width: 2 > 2 // 2
    with pytest.raises(ValueError, match="kernel_size: the window spans 6 along height"):
        fwd(x, (6, 2))
    with pytest.raises(ValueError, match="kernel_size: the window spans 7 along width"):
        fwd(x, (2, 7), 1, (0, 0))
    with pytest.raises(ValueError, match="x must have every size >= 1"):
        fwd(np.ones((0, 2, 5, 5)), 2)


def test_bad_backward_input(gen):
    x = randn((1, 2, 5, 5), gen)
    y, idx = P.max_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match="x_shape must be a 4-tuple"):
        P.max_pool2d_backward(y, idx, (2, 5, 5))
    with pytest.raises(ValueError, match="indices must have shape"):
        P.max_pool2d_backward(y, idx[..., :1], x.shape)
    with pytest.raises(ValueError, match="dy must have shape"):
        P.max_pool2d_backward(y, idx, (1, 3, 5, 5))
    with pytest.raises(ValueError, match="dy must be 4-D"):
        P.max_pool2d_backward(y[0], idx[0], x.shape)
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        P.max_pool2d_backward(y, idx.astype(np.float64), x.shape)
    with pytest.raises(ValueError, match="indices must lie in"):
        P.max_pool2d_backward(y, idx + 25, x.shape)
    past = idx.copy()
    past[0, 1, 1, 0] = 25  # exactly H*W, the only bad index: one past the plane's end
    with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\) = \[0, 25\), got \[\d+, 25\]"):
        P.max_pool2d_backward(y, past, x.shape)
    ya = P.avg_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match="dy must have shape"):
        P.avg_pool2d_backward(ya, x.shape, 3)
    with pytest.raises(ValueError, match="padding must be at most half"):
        P.avg_pool2d_backward(ya, x.shape, 2, 2, 2)
    with pytest.raises(ValueError, match="x_shape must be a 4-tuple"):
        P.pool2d_output_shape((5, 5), 2)
