"""Numba locally connected (unshared) 2-D layer against the float64 reference: both dtypes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import conv
from dlgpu.kernels.numba import locally_connected as K
from dlgpu.reference import locally_connected as LC
from dlgpu.testing import assert_close, randn

DTYPES = [np.float32, np.float64]

# (N, C, H, W, O, kernel, stride, padding, with bias)
GRID = [
    (2, 3, 9, 9, 4, 3, 1, 1, True),  # "same" padding: every border window is partly padding
    (1, 2, 11, 7, 5, (3, 2), 2, 1, False),  # non-square kernel, strided
    (3, 4, 7, 13, 3, 1, 1, 0, True),  # 1x1: a per-pixel fully connected layer
    (2, 3, 13, 11, 2, (5, 3), (2, 1), (1, 2), True),  # asymmetric everything
    (1, 2, 5, 6, 3, (5, 6), 1, 0, True),  # window = input: an ordinary FC layer, 1x1 output
    (2, 2, 12, 12, 3, 4, 3, 0, True),  # stride leaves input rows unread
    (3, 2, 8, 7, 3, (2, 4), (1, 3), (2, 0), False),  # padding as large as the kernel: all-zero windows
    (2, 3, 10, 9, 2, (4, 2), (1, 1), (1, 1), True),  # stride 1 < KH: four phases of output rows in the backward
]


def _draw(gen: np.random.Generator) -> tuple:
    """A random small odd-shaped configuration (a GRID row)."""
    kh, kw = (int(v) for v in gen.integers(1, 5, size=2))
    stride = (int(gen.integers(1, 4)), int(gen.integers(1, 4)))
    padding = (int(gen.integers(0, kh)), int(gen.integers(0, kw)))
    n, c, o = (int(v) for v in gen.integers(1, 5, size=3))
    return (n, c, 9, 11, o, (kh, kw), stride, padding, bool(gen.integers(2)))


def _f64(*arrays):  # noqa: ANN002, ANN202
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def _check_case(case: tuple, dtype, gen: np.random.Generator) -> None:
    """Forward and backward of one configuration against the reference run in float64."""
    n, c, h, w, o, k, stride, padding, has_bias = case
    x = randn((n, c, h, w), gen, dtype)
    oh, ow = LC.locally_connected2d_output_shape(x.shape, k, stride, padding)
    kh, kw = (k, k) if isinstance(k, int) else k
    wt = randn((oh, ow, o, c, kh, kw), gen, dtype)
    b = randn((o, oh, ow), gen, dtype) if has_bias else None
    y = K.locally_connected2d_forward(x, wt, b, stride, padding)
    assert y.dtype == dtype
    y_ref = LC.locally_connected2d_forward(*_f64(x, wt, b), stride, padding)
    assert_close(y, y_ref, "locally_connected", dtype, name="y")
    dy = randn(y.shape, gen, dtype)
    grads = K.locally_connected2d_backward(dy, x, wt, stride, padding)
    refs = LC.locally_connected2d_backward(*_f64(dy, x, wt), stride, padding)
    for got, want, name in zip(grads, refs, ("dx", "dweight", "dbias")):
        assert got.dtype == dtype
        assert_close(got, want, "locally_connected", dtype, name=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(str(v) for v in c))
def test_locally_connected_grid_matches_reference(case, dtype, gen):
    _check_case(case, dtype, gen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("draw", range(4))
def test_locally_connected_random_config(draw, dtype, gen):
    _check_case(_draw(gen), dtype, gen)


def test_locally_connected_without_settable_blas_threads(gen, monkeypatch):
    # a BLAS whose thread count cannot be set: numba runs single-threaded, BLAS keeps its threads
    monkeypatch.setitem(conv._blas_state, "api", None)
    monkeypatch.setitem(conv._blas_state, "probed", True)
    _check_case(GRID[0], np.float64, gen)


def test_noncontiguous_and_torch_inputs(gen):
    x = randn((2, 3, 8, 9), gen).transpose(0, 1, 3, 2)  # a transposed view: [2, 3, 9, 8], not contiguous
    assert not x.flags.c_contiguous
    oh, ow = LC.locally_connected2d_output_shape(x.shape, (3, 2), 2, 1)
    w, b = randn((oh, ow, 4, 3, 3, 2), gen), randn((4, oh, ow), gen)
    y = K.locally_connected2d_forward(x, w, b, 2, 1)
    assert_close(y, LC.locally_connected2d_forward(x, w, b, 2, 1), "locally_connected", np.float64, name="y")
    xt, wt, bt = (torch.from_numpy(np.ascontiguousarray(a)).float() for a in (x, w, b))
    yt = K.locally_connected2d_forward(xt, wt, bt, 2, 1)
    assert yt.dtype == np.float32
    assert_close(yt, LC.locally_connected2d_forward(x, w, b, 2, 1), "locally_connected", np.float32, name="y (torch)")
    dy = randn(y.shape, gen)[:, :, ::-1]  # a reversed view: negative strides
    got = K.locally_connected2d_backward(dy, x, w, 2, 1)
    want = LC.locally_connected2d_backward(dy, x, w, 2, 1)
    for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert_close(g, r, "locally_connected", np.float64, name=name)


def test_output_shape_is_the_references():
    assert K.locally_connected2d_output_shape((1, 3, 227, 227), 11, 4) == (55, 55)
    assert K.locally_connected2d_output_shape((2, 3, 13, 11), (5, 3), (2, 1), (1, 2)) == (6, 13)


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_bad_input_raises_like_reference(gen):
    x = randn((2, 3, 7, 5), gen)
    w = randn((5, 4, 2, 3, 3, 2), gen)  # OH, OW = 5, 4 for kernel 3x2, stride 1, no padding
    fwd, ref_fwd = K.locally_connected2d_forward, LC.locally_connected2d_forward
    _same_error(fwd, ref_fwd, x, randn((5, 4, 2, 2, 3, 2), gen))  # in_channels mismatch
    _same_error(fwd, ref_fwd, x, w, stride=2)  # weight no longer has the output size
    _same_error(fwd, ref_fwd, x, w, randn((2, 5, 5), gen))  # bias shape
    _same_error(fwd, ref_fwd, x, w, padding=-1)
    _same_error(fwd, ref_fwd, randn((3, 7, 5), gen), w)
    _same_error(K.locally_connected2d_backward, LC.locally_connected2d_backward, randn((2, 2, 5, 3), gen), x, w)


def test_mixed_dtypes_raise_type_error(gen):
    x, w, b = randn((2, 3, 7, 5), gen), randn((5, 4, 2, 3, 3, 2), gen), randn((2, 5, 4), gen)
    with pytest.raises(TypeError, match=r"weight must have the dtype of x \(float64\)"):
        K.locally_connected2d_forward(x, w.astype(np.float32), b)
    with pytest.raises(TypeError, match=r"bias must have the dtype of x \(float32\)"):
        K.locally_connected2d_forward(x.astype(np.float32), w.astype(np.float32), b)
    with pytest.raises(TypeError, match="dy must have dtype float64"):
        K.locally_connected2d_backward(randn((2, 2, 5, 4), gen, np.float32), x, w)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.locally_connected2d_forward(x.astype(np.float16), w.astype(np.float16))
