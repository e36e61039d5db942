"""Numba max/avg pooling against the float64 reference: values, indices (ties, NaN, -inf), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import pooling as K
from dlgpu.reference import pooling as P
from dlgpu.testing import assert_close, randn, to_numpy

DTYPES = [np.float32, np.float64]

# Fixed configs so the cases that matter are always covered, whatever the seed draws.
FIXED = [
    {"kernel_size": 2, "stride": None, "padding": 0},  # the classic 2x2/2
    {"kernel_size": 3, "stride": 2, "padding": 1},  # overlapping, padded
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 1)},  # non-square, stride < kernel
    {"kernel_size": (1, 4), "stride": (2, 1), "padding": (0, 2)},  # padding = kernel/2 exactly
]


def _config(gen: np.random.Generator, max_k: int = 5) -> dict:
    """Random kernel/stride/padding: non-square, often overlapping (stride < kernel)."""
    kh, kw = (int(v) for v in gen.integers(1, max_k + 1, size=2))
    sh, sw = (int(v) for v in gen.integers(1, 4, size=2))
    ph, pw = int(gen.integers(0, kh // 2 + 1)), int(gen.integers(0, kw // 2 + 1))
    return {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}


def _cfg(case: int, gen: np.random.Generator) -> dict:
    return FIXED[case] if case < len(FIXED) else _config(gen)


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


# ------------------------------------------------------------------------ max pool


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(FIXED) + 3))
def test_max_pool_matches_reference(case, dtype, gen):
    cfg = _cfg(case, gen)
    x = randn((3, 2, 13, 11), gen, dtype=dtype)
    y, idx = K.max_pool2d_forward(x, **cfg)
    y_ref, idx_ref = P.max_pool2d_forward(to_numpy(x), **cfg)
    assert y.dtype == dtype and idx.dtype == np.int64
    assert_close(y, y_ref, "max_pool2d", dtype, name="y")
    assert_close(idx, idx_ref, "max_pool2d", dtype, name="indices")  # integer: exact
    dy = randn(y.shape, gen, dtype=dtype)
    dx = K.max_pool2d_backward(dy, idx, x.shape)
    assert dx.dtype == dtype
    assert_close(dx, P.max_pool2d_backward(to_numpy(dy), idx_ref, x.shape), "max_pool2d", dtype, name="dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(FIXED) + 2))
def test_max_pool_ties_nan_and_inf_like_reference(case, dtype, gen):
    # few distinct values: ties everywhere (first maximum wins); sprinkled NaN (last NaN wins)
    # and -inf (all -inf windows report their first real element); overlapping windows then
    # send several gradients to one element, which the backward must accumulate
    cfg = _cfg(case, gen)
    x = gen.integers(-2, 3, size=(2, 3, 9, 10)).astype(dtype)
    x[gen.random(x.shape) < 0.05] = np.nan
    x[gen.random(x.shape) < 0.3] = -np.inf
    x[1, 2] = -np.inf  # one whole plane of -inf
    y, idx = K.max_pool2d_forward(x, **cfg)
    y_ref, idx_ref = P.max_pool2d_forward(to_numpy(x), **cfg)
    np.testing.assert_array_equal(y, y_ref)  # NaN == NaN here
    np.testing.assert_array_equal(idx, idx_ref)
    dy = randn(y.shape, gen, dtype=dtype)
    dx = K.max_pool2d_backward(dy, idx, x.shape)
    assert_close(dx, P.max_pool2d_backward(to_numpy(dy), idx_ref, x.shape), "max_pool2d", dtype, name="dx")


def test_documented_ties_and_nan():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    _, idx = K.max_pool2d_forward(x, 3, 1, 1)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])
    x = np.array([[[[1.0, 3.0, 2.0], [3.0, 0.5, 3.0]]]])
    assert K.max_pool2d_forward(x, (2, 3))[1].item() == 1  # a later equal maximum does not replace it
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]])
    y, idx = K.max_pool2d_forward(x, 2)
    assert np.isnan(y.item()) and idx.item() == 2  # NaN wins; the last NaN is reported
    x = np.full((1, 1, 3, 3), -np.inf)
    y, idx = K.max_pool2d_forward(x, 3, 1, 1)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_max_pool_backward_int32_indices_and_overlap():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    x[0, 0, 1, 1] = 100.0  # every 2x2/1 window picks the centre
    y, idx = K.max_pool2d_forward(x, 2, 1)
    assert np.all(idx == 4)
    dx = K.max_pool2d_backward(np.full(y.shape, 0.5), idx.astype(np.int32), x.shape)
    assert dx[0, 0, 1, 1] == 2.0 and dx.sum() == 2.0


# ------------------------------------------------------------------------ avg pool


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(FIXED) + 3))
def test_avg_pool_matches_reference(case, dtype, count_include_pad, gen):
    cfg = dict(_cfg(case, gen), count_include_pad=count_include_pad)
    x = randn((2, 3, 11, 14), gen, dtype=dtype)
    y = K.avg_pool2d_forward(x, **cfg)
    assert y.dtype == dtype
    assert_close(y, P.avg_pool2d_forward(to_numpy(x), **cfg), "avg_pool2d", dtype, name="y")
    dy = randn(y.shape, gen, dtype=dtype)
    dx = K.avg_pool2d_backward(dy, x.shape, **cfg)
    assert dx.dtype == dtype
    assert_close(dx, P.avg_pool2d_backward(to_numpy(dy), x.shape, **cfg), "avg_pool2d", dtype, name="dx")


def test_count_include_pad_changes_the_border(gen):
    x = randn((1, 1, 5, 5), gen)
    a = K.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)
    b = K.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)
    assert_close(a[0, 0, 0, 0] * 9 / 4, b[0, 0, 0, 0], "avg_pool2d")  # corner: 4 real of 9
    assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1], "avg_pool2d")  # interior: full windows


# ------------------------------------------------------------------ inputs and errors


def test_non_contiguous_and_torch_inputs(gen):
    cfg = {"kernel_size": 3, "stride": 2, "padding": 1}
    base = randn((2, 3, 9, 12), gen, dtype=np.float32)
    x = base.transpose(0, 1, 3, 2)  # N,C,12,9 view, not C-contiguous
    assert not x.flags.c_contiguous
    y, idx = K.max_pool2d_forward(x, **cfg)
    y_ref, idx_ref = P.max_pool2d_forward(to_numpy(x), **cfg)
    assert_close(y, y_ref, "max_pool2d", np.float32)
    np.testing.assert_array_equal(idx, idx_ref)
    dy = randn(y.shape, gen, dtype=np.float32)
    dx = K.max_pool2d_backward(np.asfortranarray(dy), idx, x.shape)
    assert_close(dx, P.max_pool2d_backward(to_numpy(dy), idx_ref, x.shape), "max_pool2d", np.float32)
    xt = torch.from_numpy(base)
    ya = K.avg_pool2d_forward(np.asarray(xt), **cfg, count_include_pad=False)
    assert_close(ya, P.avg_pool2d_forward(to_numpy(base), **cfg, count_include_pad=False), "avg_pool2d", np.float32)
    dyt = torch.from_numpy(randn(ya.shape, gen, dtype=np.float32)).transpose(2, 3).contiguous().transpose(2, 3)
    dxa = K.avg_pool2d_backward(np.asarray(dyt), base.shape, **cfg)
    assert_close(dxa, P.avg_pool2d_backward(to_numpy(dyt.numpy()), base.shape, **cfg), "avg_pool2d", np.float32)
    assert K.pool2d_output_shape(base.shape, **cfg) == P.pool2d_output_shape(base.shape, **cfg) == (2, 3, 5, 6)


def test_bad_input_same_errors_as_reference(gen):
    x = randn((1, 2, 5, 5), gen)
    for fwd, ref in ((K.max_pool2d_forward, P.max_pool2d_forward), (K.avg_pool2d_forward, P.avg_pool2d_forward)):
        _same_error(fwd, ref, x[0], 2)  # not 4-D
        _same_error(fwd, ref, np.ones((1, 1, 4, 4), dtype=np.int64), 2)
        _same_error(fwd, ref, x, 3, 1, 2)  # padding over half the kernel
        _same_error(fwd, ref, x, (6, 2))  # window larger than the input
        _same_error(fwd, ref, x, (2, 2, 2))
    y, idx = P.max_pool2d_forward(x, 2)
    _same_error(K.max_pool2d_backward, P.max_pool2d_backward, y, idx + 25, x.shape)  # indices out of range
    neg = idx.copy()
    neg[0, 1, 0, 1] = -1
    _same_error(K.max_pool2d_backward, P.max_pool2d_backward, y, neg, x.shape)
    past = idx.copy()
    past[0, 1, 1, 0] = 5 * 5  # exactly H*W: one past the plane's last element, the only bad index
    _same_error(K.max_pool2d_backward, P.max_pool2d_backward, y, past, x.shape)
    _same_error(K.max_pool2d_backward, P.max_pool2d_backward, y, idx.astype(np.float64), x.shape)
    _same_error(K.max_pool2d_backward, P.max_pool2d_backward, y, idx[..., :1], x.shape)
    _same_error(K.avg_pool2d_backward, P.avg_pool2d_backward, y, x.shape, 3)  # dy not the output shape
    _same_error(K.avg_pool2d_backward, P.avg_pool2d_backward, y, (2, 5, 5), 2)


def test_float16_is_refused(gen):
    # the numba kernels compute in float32/float64 only (the reference would take float16)
    x = randn((1, 2, 4, 4), gen, dtype=np.float16)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        K.max_pool2d_forward(x, 2)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        K.avg_pool2d_backward(x[..., :2, :2], x.shape, 2)
