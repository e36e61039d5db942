"""Numba conv2d (fused activation) against the float64 reference: every path, both dtypes, bad input."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from dlgpu.kernels.numba import conv as K
from dlgpu.reference import conv as C
from dlgpu.testing import assert_close, randn

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]

# (N, C, H, W, O, KH, KW, stride, padding, dilation, groups): each row pins down one kernel path.
GRID = [
    (2, 3, 9, 9, 5, 3, 3, 1, 1, 1, 1),  # "same" 3x3: the stride-1 pitch path (copy padded rows once)
    (2, 4, 11, 7, 6, 3, 3, 2, 1, 1, 2),  # strided, grouped: the gather path
    (3, 4, 7, 13, 6, 1, 1, 1, 0, 1, 2),  # 1x1, stride 1, no padding: x is its own column matrix
    (2, 3, 13, 11, 4, 5, 3, (2, 1), (1, 2), 1, 1),  # non-square kernel, asymmetric stride/padding
    (2, 6, 10, 9, 6, 2, 3, (1, 3), (0, 1), (2, 1), 3),  # dilated and strided
    (2, 4, 9, 17, 4, 3, 3, 1, (2, 1), (1, 3), 2),  # dilated, stride 1: pitch path with dilation
    (1, 4, 9, 8, 8, 3, 2, 2, 2, (1, 3), 4),  # depthwise with multiplier: groups = C, O = 2C
    (2, 5, 7, 7, 5, 3, 3, 1, 1, 1, 5),  # depthwise
    (1, 3, 6, 5, 2, 6, 5, 1, 0, 1, 1),  # window = input: a 1x1 output
    (1, 2, 4, 3, 3, 3, 3, 3, (1, 2), 2, 1),  # dilated window of 5 fits the padded 6 x 7
    (2, 3, 12, 12, 4, 4, 4, 3, 0, 1, 1),  # stride leaves input rows unread
    (1, 3, 13, 12, 4, 3, 3, 1, 1, 1, 1),  # one image, one group: output rows split across threads
    (1, 4, 7, 9, 6, 1, 1, 1, 0, 1, 1),  # 1x1 on one image, one group: rows split, so NOT x as its own columns
]


def _draw(gen: np.random.Generator) -> tuple:
    """A random small odd-shaped configuration (a GRID row)."""
    c = int(gen.choice([3, 4, 6]))
    groups = int(gen.choice([g for g in (1, 2, 3, 6) if c % g == 0]))
    o = groups * int(gen.integers(1, 4))
    kh, kw = (int(v) for v in gen.integers(1, 4, size=2))
    stride = (int(gen.integers(1, 3)), int(gen.integers(1, 3)))
    padding = (int(gen.integers(0, 3)), int(gen.integers(0, 3)))
    dilation = (int(gen.integers(1, 3)), int(gen.integers(1, 3)))
    return (int(gen.integers(1, 4)), c, 9, 8, o, kh, kw, stride, padding, dilation, groups)


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _check_case(case: tuple, dtype, activation: str, gen: np.random.Generator, bias: bool = True) -> None:
    """Forward and backward of one configuration against the reference run in float64."""
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups = case
    cfg = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    act = dict(activation=activation, negative_slope=0.1)
    x, wt = randn((n, c, h, w), gen, dtype), randn((o, c // groups, kh, kw), gen, dtype)
    b = randn((o,), gen, dtype) if bias else None
    y = K.conv2d_forward(x, wt, b, **cfg, **act)
    y_ref = C.conv2d_forward(*_f64(x, wt), None if b is None else _f64(b)[0], **cfg, **act)
    assert y.dtype == dtype
    assert_close(y, y_ref, "conv2d", dtype, name="y")
    dy = randn(y.shape, gen, dtype)
    grads = K.conv2d_backward(dy, x, wt, **cfg, out=y, **act)
    refs = C.conv2d_backward(*_f64(dy, x, wt), **cfg, out=y_ref, **act)
    for got, want, name in zip(grads, refs, ("dx", "dweight", "dbias")):
        assert got.dtype == dtype
        assert_close(got, want, "conv2d", dtype, name=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(str(v) for v in c))
def test_conv2d_grid_matches_reference(case, dtype, gen):
    _check_case(case, dtype, str(gen.choice(ACTIVATIONS)), gen, bias=bool(gen.integers(2)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_conv2d_random_config_every_activation(activation, dtype, gen):
    _check_case(_draw(gen), dtype, activation, gen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_several_row_blocks(dtype, gen, monkeypatch):
    # a tiny column budget forces several row blocks per image: dW accumulates across blocks and
    # col2im adds the overlapping halo rows of consecutive blocks, in both column paths
    monkeypatch.setattr(K, "_COLS_BYTES", 64)
    for case in (GRID[0], GRID[1], GRID[5], GRID[2]):  # GRID[2]: a 1x1 kernel, in blocks: not the direct path
        _check_case(case, dtype, "tanh", gen)


class _NaNScratch:
    """numpy, except that ``empty`` hands out NaN-filled arrays: scratch that a kernel reads before
    writing it (an unzeroed pad or junk column) then poisons the results instead of passing by luck."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float) -> np.ndarray:  # noqa: ANN001
        return np.full(shape, np.nan, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_never_reads_uninitialised_scratch(dtype, gen, monkeypatch):
    # the pitch path's padded input rows and their slack, the junk columns, the gather path's padding:
    # every scratch buffer of the wrappers (and y, dx) starts as NaN, and nothing of it may leak out
    for case in (GRID[0], GRID[1], GRID[5]):
        _check_case(case, dtype, "tanh", gen)  # compiled before numpy is swapped (the kernels keep theirs)
    monkeypatch.setattr(K, "np", _NaNScratch())
    for case in (GRID[0], GRID[1], GRID[5]):
        _check_case(case, dtype, "tanh", gen)
    monkeypatch.setattr(K, "_COLS_BYTES", 64)  # and in row blocks, whose halo rows overlap
    _check_case(GRID[0], dtype, "tanh", gen)


def test_conv2d_without_settable_blas_threads(gen, monkeypatch):
    # a BLAS whose thread count cannot be set: numba runs single-threaded, BLAS keeps its threads
    monkeypatch.setitem(K._blas_state, "api", None)
    monkeypatch.setitem(K._blas_state, "probed", True)
    before = numba.get_num_threads()
    _check_case(GRID[0], np.float64, "relu", gen)
    assert numba.get_num_threads() == before  # numba's own thread count is restored after the call


def test_blas_thread_count_restored(gen):
    api = K._blas_thread_api()
    before = api[0]() if api else None
    x, w = randn((2, 3, 8, 7), gen), randn((4, 3, 3, 3), gen)
    K.conv2d_backward(randn((2, 4, 8, 7), gen), x, w, padding=1)
    with K.serial_blas():
        with K.serial_blas():  # nested or concurrent users: only the last one out restores
            if api:
                assert api[0]() == 1
        if api:
            assert api[0]() == 1
    assert (api[0]() if api else None) == before


def test_noncontiguous_and_torch_inputs(gen):
    x = randn((2, 3, 7, 9), gen).transpose(0, 1, 3, 2)  # a transposed view: [2, 3, 9, 7], not contiguous
    assert not x.flags.c_contiguous
    w, b = randn((4, 3, 3, 2), gen), randn((4,), gen)
    cfg = dict(stride=(2, 1), padding=1, dilation=(1, 2), activation="sigmoid")
    y = K.conv2d_forward(x, w, b, **cfg)
    assert_close(y, C.conv2d_forward(x, w, b, **cfg), "conv2d", np.float64, name="y")
    xt, wt, bt = (torch.from_numpy(np.ascontiguousarray(a)).float() for a in (x, w, b))
    yt = K.conv2d_forward(xt, wt, bt, **cfg)
    assert yt.dtype == np.float32
    assert_close(yt, C.conv2d_forward(x, w, b, **cfg), "conv2d", np.float32, name="y (torch input)")
    dy = randn(y.shape, gen).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)  # non-contiguous dy
    got = K.conv2d_backward(dy, x, w, stride=(2, 1), padding=1, dilation=(1, 2), out=y, activation="sigmoid")
    want = C.conv2d_backward(dy, x, w, stride=(2, 1), padding=1, dilation=(1, 2), out=y, activation="sigmoid")
    for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert_close(g, r, "conv2d", np.float64, name=name)


def test_output_shape_is_the_references(gen):
    assert K.conv2d_output_shape((1, 3, 227, 227), (96, 3, 11, 11), stride=4) == (1, 96, 55, 55)
    x, w = randn((2, 4, 9, 6), gen), randn((8, 2, 3, 2), gen)
    cfg = dict(stride=(1, 2), padding=(0, 1), dilation=2, groups=2)
    assert K.conv2d_forward(x, w, **cfg).shape == K.conv2d_output_shape(x.shape, w.shape, **cfg) == (2, 8, 5, 3)


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_bad_input_raises_like_reference(gen):
    x, w = randn((2, 4, 7, 5), gen), randn((6, 2, 3, 2), gen)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, randn((6, 3, 3, 2), gen), groups=2)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2, dilation=4)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, randn((5,), gen), groups=2)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2, activation="gelu")
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2.0)
    y = C.conv2d_forward(x, w, groups=2, activation="relu")
    _same_error(K.conv2d_backward, C.conv2d_backward, randn((2, 6, 5, 3), gen), x, w, groups=2)
    _same_error(K.conv2d_backward, C.conv2d_backward, randn(y.shape, gen), x, w, groups=2, activation="relu")


def test_mixed_dtypes_raise_type_error(gen):
    x, w, b = randn((2, 4, 7, 5), gen), randn((6, 4, 3, 2), gen), randn((6,), gen)
    with pytest.raises(TypeError, match=r"weight must have the dtype of x \(float64\)"):
        K.conv2d_forward(x, w.astype(np.float32), b)
    with pytest.raises(TypeError, match=r"bias must have the dtype of x \(float32\)"):
        K.conv2d_forward(x.astype(np.float32), w.astype(np.float32), b)
    y = K.conv2d_forward(x, w, b, activation="tanh")
    with pytest.raises(TypeError, match="dy must have dtype float64"):
        K.conv2d_backward(y.astype(np.float32), x, w, out=y, activation="tanh")
    with pytest.raises(TypeError, match="out must have dtype float64"):
        K.conv2d_backward(y, x, w, out=y.astype(np.float32), activation="tanh")
    with pytest.raises(TypeError, match="float32 or float64"):
        K.conv2d_forward(x.astype(np.float16), w.astype(np.float16))
