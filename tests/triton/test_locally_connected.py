"""Triton locally connected (unshared) 2-D layer against the float64 reference: fp32/fp16/bf16, strided
and channels-last inputs, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import locally_connected as K
from dlgpu.reference import locally_connected as LC
from dlgpu.testing import assert_close, randn

LOW = [torch.float16, torch.bfloat16]

# (N, C, H, W, O, kernel, stride, padding, with bias): small odd shapes (the interpreter runs one
# program per output position / input pixel), each row a different corner of the index arithmetic.
GRID = [
    (2, 3, 6, 5, 4, 3, 1, 1, True),  # "same" padding: every border window is partly padding
    (1, 2, 7, 6, 5, (3, 2), 2, 1, False),  # non-square kernel, strided
    (3, 4, 3, 5, 3, 1, 1, 0, True),  # 1x1: a per-pixel fully connected layer
    (2, 3, 9, 5, 2, (5, 3), (2, 1), (1, 2), True),  # asymmetric everything
    (1, 2, 5, 6, 3, (5, 6), 1, 0, True),  # window = input: an ordinary FC layer, 1x1 output
    (2, 2, 8, 7, 3, 2, 3, 0, True),  # stride > kernel: input pixels no window covers (dx = 0)
    (3, 2, 5, 7, 3, (2, 4), (1, 3), (2, 0), False),  # padding as large as the kernel: all-zero windows
    (2, 3, 6, 5, 17, (4, 2), 1, 1, True),  # O > 16: the flattened (i, j, o) reduction spans chunks
]


def _ids(case: tuple) -> str:
    return "-".join(str(v) for v in case)


def _low(a: np.ndarray | None, dtype: torch.dtype) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """a cast to dtype, and the cast values back in float64 for the reference."""
    if a is None:
        return None, None
    t = torch.from_numpy(a).to(dtype)
    return t, t.double().numpy()


def _check_case(case: tuple, dtype: torch.dtype, gen: np.random.Generator, channels_last: bool = False) -> None:
    """Forward and backward of one configuration against the reference run in float64."""
    n, c, h, w, o, k, stride, padding, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    oh, ow = LC.locally_connected2d_output_shape((n, c, h, w), k, stride, padding)
    dname = str(dtype).replace("torch.", "")
    x, x64 = _low(randn((n, c, h, w), gen), dtype)
    wt, w64 = _low(randn((oh, ow, o, c, kh, kw), gen, scale=0.5), dtype)
    b, b64 = _low(randn((o, oh, ow), gen) if bias else None, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        assert not x.is_contiguous() or c == 1 or h * w == 1
    y = K.locally_connected2d_forward(x, wt, b, stride, padding)
    assert y.dtype == dtype and y.is_contiguous()
    assert_close(y, LC.locally_connected2d_forward(x64, w64, b64, stride, padding), "locally_connected", dname,
                 name="y")  # fmt: skip
    dy, dy64 = _low(randn((n, o, oh, ow), gen), dtype)
    if channels_last:
        dy = dy.to(memory_format=torch.channels_last)
    grads = K.locally_connected2d_backward(dy, x, wt, stride, padding)
    refs = LC.locally_connected2d_backward(dy64, x64, w64, stride, padding)
    for got, want, name in zip(grads, refs, ("dx", "dweight", "dbias")):
        assert got.dtype == dtype and got.is_contiguous()
        assert_close(got, want, "locally_connected", dname, name=name)


@pytest.mark.parametrize("case", GRID, ids=_ids)
def test_locally_connected_float32_matches_reference(case, gen):
    _check_case(case, torch.float32, gen)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", [GRID[0], GRID[3]], ids=_ids)
def test_locally_connected_half_precision(case, dtype, gen):
    _check_case(case, dtype, gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_locally_connected_channels_last(dtype, gen):
    _check_case(GRID[1], dtype, gen, channels_last=True)


def test_locally_connected_strided_views(gen):
    x64 = randn((2, 3, 6, 5), gen)
    x = torch.from_numpy(x64).float().transpose(2, 3)  # [2, 3, 5, 6], a view
    oh, ow = LC.locally_connected2d_output_shape(x.shape, 3, 2, 1)
    w64 = randn((oh, ow, 4, 3, 3, 3), gen)
    y = K.locally_connected2d_forward(x, torch.from_numpy(w64).float(), None, 2, 1)
    assert_close(y, LC.locally_connected2d_forward(x.double().numpy(), w64, None, 2, 1), "locally_connected",
                 "float32", name="y")  # fmt: skip
    dy64 = randn((2, 4, oh, ow), gen)
    dy = torch.from_numpy(dy64).float().transpose(0, 1).contiguous().transpose(0, 1)
    got = K.locally_connected2d_backward(dy, x, torch.from_numpy(w64).float(), 2, 1)
    want = LC.locally_connected2d_backward(dy64, x.double().numpy(), w64, 2, 1)
    for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert_close(g, r, "locally_connected", "float32", name=name)


def test_output_shape_is_the_references():
    assert K.locally_connected2d_output_shape is LC.locally_connected2d_output_shape


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_bad_input_raises_like_reference(gen):
    t = lambda *s: torch.from_numpy(randn(s, gen)).float()  # noqa: E731
    x, w = t(2, 3, 6, 5), t(4, 3, 2, 3, 3, 3)
    fwd, bwd = K.locally_connected2d_forward, K.locally_connected2d_backward
    _same_error(fwd, LC.locally_connected2d_forward, x, t(4, 3, 2, 2, 3, 3))  # wrong in_channels
    _same_error(fwd, LC.locally_connected2d_forward, x, w, None, 2)  # OH, OW do not match the stride
    _same_error(fwd, LC.locally_connected2d_forward, x, w, t(2, 3, 4))  # bias shape
    _same_error(fwd, LC.locally_connected2d_forward, x, w, padding=-1)
    _same_error(bwd, LC.locally_connected2d_backward, t(2, 2, 4, 4), x, w)  # dy shape


def test_non_tensor_and_bad_dtypes_raise_type_error(gen):
    x64, w64 = randn((2, 3, 6, 5), gen), randn((4, 3, 2, 3, 3, 3), gen)
    x, w = torch.from_numpy(x64).float(), torch.from_numpy(w64).float()
    with pytest.raises(TypeError, match="torch tensor"):
        K.locally_connected2d_forward(x64, w64)
    with pytest.raises(TypeError, match="floating-point"):
        K.locally_connected2d_forward(x.long(), w)
    with pytest.raises(TypeError, match=r"weight must have the dtype of x \(float32\)"):
        K.locally_connected2d_forward(x, w.bfloat16())
    with pytest.raises(TypeError, match="dy must have dtype torch.float32"):
        K.locally_connected2d_backward(torch.ones(2, 2, 4, 3, dtype=torch.float16), x, w)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_locally_connected_cuda_realistic(dtype, gen):
    # a face-model-sized layer (DeepFace L4-like, shrunk) on the GPU: compiled code, every config
    dname = str(dtype).replace("torch.", "")
    n, c, h, w, o, k, stride, padding = 16, 16, 31, 29, 32, 3, 1, 1
    oh, ow = LC.locally_connected2d_output_shape((n, c, h, w), k, stride, padding)
    x, x64 = _low(randn((n, c, h, w), gen), dtype)
    wt, w64 = _low(randn((oh, ow, o, c, k, k), gen, scale=0.1), dtype)
    b, b64 = _low(randn((o, oh, ow), gen), dtype)
    x = x.cuda().to(memory_format=torch.channels_last)
    y = K.locally_connected2d_forward(x, wt.cuda(), b.cuda(), stride, padding)
    assert_close(y, LC.locally_connected2d_forward(x64, w64, b64, stride, padding), "locally_connected", dname,
                 name="y")  # fmt: skip
    dy, dy64 = _low(randn((n, o, oh, ow), gen), dtype)
    got = K.locally_connected2d_backward(dy.cuda(), x, wt.cuda(), stride, padding)
    want = LC.locally_connected2d_backward(dy64, x64, w64, stride, padding)
    for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert_close(g, r, "locally_connected", dname, name=name)
