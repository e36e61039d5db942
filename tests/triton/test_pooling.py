"""Triton max/avg pooling against the float64 reference: values, indices (ties, NaN, -inf),
gradients, float32/float16/bfloat16, bad input. Runs under TRITON_INTERPRET=1 without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import pooling as K
from dlgpu.reference import pooling as P
from dlgpu.testing import assert_close, randn, to_numpy

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Fixed configs so the cases that matter are always covered, whatever the seed draws.
FIXED = [
    {"kernel_size": 2, "stride": None, "padding": 0},  # the classic 2x2/2
    {"kernel_size": 3, "stride": 2, "padding": 1},  # overlapping, padded
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 1)},  # non-square, stride < kernel
    {"kernel_size": (1, 4), "stride": (2, 1), "padding": (0, 2)},  # padding = kernel/2 exactly
    {"kernel_size": (2, 3), "stride": (3, 4), "padding": (1, 0)},  # stride > kernel: gaps between windows
]


def _config(gen: np.random.Generator, max_k: int = 5) -> dict:
    """Random kernel/stride/padding: non-square, often overlapping (stride < kernel)."""
    kh, kw = (int(v) for v in gen.integers(1, max_k + 1, size=2))
    sh, sw = (int(v) for v in gen.integers(1, 4, size=2))
    ph, pw = int(gen.integers(0, kh // 2 + 1)), int(gen.integers(0, kw // 2 + 1))
    return {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}


def _cfg(case: int, gen: np.random.Generator) -> dict:
    return FIXED[case] if case < len(FIXED) else _config(gen)


def _dev(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """a cast to ``dtype`` on the test device."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=DEVICE, dtype=dtype)


def _check_max(x: torch.Tensor, cfg: dict, dname: str, gen: np.random.Generator) -> None:
    y, idx = K.max_pool2d_forward(x, **cfg)
    y_ref, idx_ref = P.max_pool2d_forward(to_numpy(x), **cfg)
    assert y.dtype == x.dtype and idx.dtype == torch.int64
    assert_close(y, y_ref, "max_pool2d", dname, name="y")
    assert_close(idx, idx_ref, "max_pool2d", dname, name="indices")  # integer: exact
    dy = _dev(randn(y.shape, gen), x.dtype)
    dx = K.max_pool2d_backward(dy, idx, tuple(x.shape))
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert_close(dx, P.max_pool2d_backward(to_numpy(dy), idx_ref, x.shape), "max_pool2d", dname, name="dx")


def _check_avg(x: torch.Tensor, cfg: dict, dname: str, gen: np.random.Generator) -> None:
    y = K.avg_pool2d_forward(x, **cfg)
    assert y.dtype == x.dtype
    assert_close(y, P.avg_pool2d_forward(to_numpy(x), **cfg), "avg_pool2d", dname, name="y")
    dy = _dev(randn(y.shape, gen), x.dtype)
    dx = K.avg_pool2d_backward(dy, tuple(x.shape), **cfg)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert_close(dx, P.avg_pool2d_backward(to_numpy(dy), x.shape, **cfg), "avg_pool2d", dname, name="dx")


def _same_error(ours, ref, ours_args, ref_args, same_message=True) -> None:  # noqa: ANN001
    """Both calls raise the same exception type (and message)."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*ref_args)
    with pytest.raises(want.type) as got:
        ours(*ours_args)
    if same_message:
        assert str(got.value) == str(want.value)


# ------------------------------------------------------------------------ max pool


@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("case", range(len(FIXED) + 2))
def test_max_pool_matches_reference(case, dname, gen):
    # low precision rounds neighbouring values together: ties the reference resolves the same way
    _check_max(_dev(randn((3, 2, 13, 11), gen), DTYPES[dname]), _cfg(case, gen), dname, gen)


@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", range(3))
def test_max_pool_ties_nan_and_inf_like_reference(case, dname, gen):
    # few distinct values: ties everywhere (first maximum wins); sprinkled NaN (last NaN wins)
    # and -inf (all -inf windows report their first real element); overlapping windows then
    # send several gradients to one element, which the backward must accumulate
    cfg = _cfg(case + 1, gen)
    a = gen.integers(-2, 3, size=(2, 3, 9, 10)).astype(np.float64)
    a[gen.random(a.shape) < 0.05] = np.nan
    a[gen.random(a.shape) < 0.3] = -np.inf
    a[1, 2] = -np.inf  # one whole plane of -inf
    x = _dev(a, DTYPES[dname])
    y, idx = K.max_pool2d_forward(x, **cfg)
    y_ref, idx_ref = P.max_pool2d_forward(a, **cfg)
    np.testing.assert_array_equal(to_numpy(y), y_ref)  # NaN == NaN here
    np.testing.assert_array_equal(idx.cpu().numpy(), idx_ref)
    dy = _dev(randn(y.shape, gen), x.dtype)
    dx = K.max_pool2d_backward(dy, idx, x.shape)
    assert_close(dx, P.max_pool2d_backward(to_numpy(dy), idx_ref, x.shape), "max_pool2d", dname, name="dx")


def test_documented_ties_and_nan():
    x = torch.ones((1, 1, 4, 4), device=DEVICE)
    _, idx = K.max_pool2d_forward(x, 3, 1, 1)
    np.testing.assert_array_equal(idx[0, 0].cpu(), [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])
    x = torch.tensor([[[[1.0, 3.0, 2.0], [3.0, 0.5, 3.0]]]], device=DEVICE)
    assert K.max_pool2d_forward(x, (2, 3))[1].item() == 1  # a later equal maximum does not replace it
    x = torch.tensor([[[[1.0, float("nan")], [float("nan"), 5.0]]]], device=DEVICE)
    y, idx = K.max_pool2d_forward(x, 2)
    assert torch.isnan(y).item() and idx.item() == 2  # NaN wins; the last NaN is reported
    x = torch.full((1, 1, 3, 3), -float("inf"), device=DEVICE)
    y, idx = K.max_pool2d_forward(x, 3, 1, 1)
    assert torch.all(y == -float("inf"))
    np.testing.assert_array_equal(idx[0, 0].cpu(), [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_max_pool_backward_int32_indices_overlap_and_determinism(gen):
    x = torch.arange(1.0, 10.0, device=DEVICE).reshape(1, 1, 3, 3)
    x[0, 0, 1, 1] = 100.0  # every 2x2/1 window picks the centre
    y, idx = K.max_pool2d_forward(x, 2, 1)
    assert torch.all(idx == 4)
    dx = K.max_pool2d_backward(torch.full(y.shape, 0.5, device=DEVICE), idx.int(), x.shape)
    assert dx[0, 0, 1, 1].item() == 2.0 and dx.sum().item() == 2.0
    # a 5x5/1 window on a peaked plane: up to 25 gradients meet at one pixel; same bits every call
    a = randn((2, 3, 12, 12), gen)
    a[:, :, 5, 5] = 10.0
    xt = _dev(a, torch.float32)
    y, idx = K.max_pool2d_forward(xt, 5, 1, 2)
    dy = _dev(randn(y.shape, gen), torch.float32)
    first = K.max_pool2d_backward(dy, idx, xt.shape)
    assert torch.equal(first, K.max_pool2d_backward(dy, idx, xt.shape))
    assert_close(first, P.max_pool2d_backward(to_numpy(dy), idx.cpu().numpy(), xt.shape), "max_pool2d", "float32")


# ------------------------------------------------------------------------ avg pool


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("case", range(len(FIXED) + 1))
def test_avg_pool_matches_reference(case, dname, count_include_pad, gen):
    cfg = dict(_cfg(case, gen), count_include_pad=count_include_pad)
    _check_avg(_dev(randn((2, 3, 11, 14), gen), DTYPES[dname]), cfg, dname, gen)


def test_count_include_pad_changes_the_border(gen):
    x = _dev(randn((1, 1, 5, 5), gen), torch.float32)
    a = K.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)
    b = K.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)
    assert_close(a[0, 0, 0, 0] * 9 / 4, b[0, 0, 0, 0], "avg_pool2d", "float32")  # corner: 4 real of 9
    assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1], "avg_pool2d", "float32")  # interior: full windows


# ------------------------------------------------------------------ inputs and errors


def test_views_many_small_planes_and_output_shape(gen):
    cfg = {"kernel_size": 3, "stride": 2, "padding": 1}
    base = _dev(randn((2, 3, 9, 12), gen), torch.float32)
    x = base.transpose(2, 3)  # N,C,12,9 view, not contiguous
    _check_max(x, cfg, "float32", gen)
    _check_avg(x, dict(cfg, count_include_pad=False), "float32", gen)
    # 3x3 planes -> 2x2 outputs: one tile spans many planes
    small = _dev(randn((5, 37, 3, 3), gen), torch.float32)
    _check_max(small, {"kernel_size": 2, "stride": 1}, "float32", gen)
    _check_avg(small, {"kernel_size": 3, "padding": 1, "stride": 2}, "float32", gen)
    assert K.pool2d_output_shape(base.shape, **cfg) == P.pool2d_output_shape(tuple(base.shape), **cfg) == (2, 3, 5, 6)


def test_bad_input_same_errors_as_reference(gen):
    a = randn((1, 2, 5, 5), gen)
    x = _dev(a, torch.float32)
    for fwd, ref in ((K.max_pool2d_forward, P.max_pool2d_forward), (K.avg_pool2d_forward, P.avg_pool2d_forward)):
        _same_error(fwd, ref, (x[0], 2), (a[0], 2))  # not 4-D
        _same_error(fwd, ref, (x, 3, 1, 2), (a, 3, 1, 2))  # padding over half the kernel
        _same_error(fwd, ref, (x, (6, 2)), (a, (6, 2)))  # window larger than the input
        _same_error(fwd, ref, (x, (2, 2, 2)), (a, (2, 2, 2)))
        ints = np.ones((1, 1, 4, 4), dtype=np.int64)
        _same_error(fwd, ref, (torch.from_numpy(ints).to(DEVICE), 2), (ints, 2), same_message=False)
        with pytest.raises(TypeError, match="torch tensor"):
            fwd(a.astype(np.float32), 2)  # numpy arrays are not for the GPU backend
    y_ref, idx_ref = P.max_pool2d_forward(a, 2)
    y, idx = _dev(y_ref, torch.float32), torch.from_numpy(idx_ref).to(DEVICE)
    bwd, rbwd = K.max_pool2d_backward, P.max_pool2d_backward
    _same_error(bwd, rbwd, (y, idx + 25, x.shape), (y_ref, idx_ref + 25, a.shape))  # indices out of range
    neg, neg_ref = idx.clone(), idx_ref.copy()
    neg[0, 1, 0, 1] = neg_ref[0, 1, 0, 1] = -1
    _same_error(bwd, rbwd, (y, neg, x.shape), (y_ref, neg_ref, a.shape))
    _same_error(bwd, rbwd, (y, idx.double(), x.shape), (y_ref, idx_ref.astype(np.float64), a.shape), False)
    _same_error(bwd, rbwd, (y, idx[..., :1], x.shape), (y_ref, idx_ref[..., :1], a.shape))
    abwd, rabwd = K.avg_pool2d_backward, P.avg_pool2d_backward
    _same_error(abwd, rabwd, (y, x.shape, 3), (y_ref, a.shape, 3))  # dy not the output shape
    _same_error(abwd, rabwd, (y, (2, 5, 5), 2), (y_ref, (2, 5, 5), 2))
    with pytest.raises(TypeError, match="torch tensor"):
        K.avg_pool2d_backward(y_ref, a.shape, 2)


# ------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
def test_realistic_shapes_on_gpu(dname, gen):
    # a ResNet stem (3x3/2 pad 1 max pool of 112x112 maps) and a 2x2/2 average pool
    x = _dev(randn((16, 64, 112, 112), gen), DTYPES[dname])
    _check_max(x, {"kernel_size": 3, "stride": 2, "padding": 1}, dname, gen)
    _check_avg(x, {"kernel_size": 2}, dname, gen)
    _check_avg(x[:, :8], {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, dname, gen)
