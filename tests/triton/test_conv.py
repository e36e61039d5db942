"""Triton conv2d (implicit GEMM, fused bias/activation; dgrad, split-K wgrad) against the float64
reference: stride/padding/dilation/groups, every activation, fp32/fp16/bf16, channels-last, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import conv as K
from dlgpu.reference import conv as C
from dlgpu.testing import assert_close, randn

ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]
LOW = [torch.float16, torch.bfloat16]

# (N, C, H, W, O, KH, KW, stride, padding, dilation, groups, activation): small odd shapes (the
# interpreter is slow), each row a different corner of the index arithmetic.
GRID = [
    (2, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, "relu"),  # "same" 3x3
    (2, 4, 9, 7, 6, 3, 3, 2, 1, 1, 2, "tanh"),  # strided, grouped: dgrad's divisibility masks
    (3, 4, 5, 7, 6, 1, 1, 1, 0, 1, 2, "none"),  # 1x1
    (2, 3, 9, 7, 4, 5, 3, (2, 1), (1, 2), 1, 1, "sigmoid"),  # non-square kernel, asymmetric stride/padding
    (2, 6, 8, 7, 6, 2, 3, (1, 3), (0, 1), (2, 1), 3, "leaky_relu"),  # dilated and strided
    (1, 4, 7, 8, 8, 3, 2, 2, 2, (1, 3), 4, "relu"),  # depthwise with multiplier: groups = C, O = 2C
    (1, 3, 6, 5, 2, 6, 5, 1, 0, 1, 1, "tanh"),  # window = input: a 1x1 output
    (1, 2, 4, 3, 3, 3, 3, 3, (1, 2), 2, 1, "none"),  # dilated window of 5 fits the padded 6 x 7
    (2, 3, 8, 8, 4, 3, 3, 3, 0, 1, 1, "sigmoid"),  # stride leaves input rows unread (dx = 0 there)
    (1, 2, 5, 5, 3, 2, 2, 3, 2, 1, 1, "leaky_relu"),  # padding > kernel: outputs that see only zeros
]


def _ids(case: tuple) -> str:
    return "-".join(str(v) for v in case)


def _low(a: np.ndarray | None, dtype: torch.dtype) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """a cast to dtype, and the cast values back in float64 for the reference."""
    if a is None:
        return None, None
    t = torch.from_numpy(a).to(dtype)
    return t, t.double().numpy()


def _check_case(case: tuple, dtype: torch.dtype, gen: np.random.Generator, activation: str | None = None,
                bias: bool = True, channels_last: bool = False) -> None:  # fmt: skip
    """Forward and backward of one configuration against the reference run in float64."""
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups, act = case
    act = activation or act
    cfg = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    acts = dict(activation=act, negative_slope=0.1)
    dname = str(dtype).replace("torch.", "")
    x, x64 = _low(randn((n, c, h, w), gen), dtype)
    wt, w64 = _low(randn((o, c // groups, kh, kw), gen, scale=0.5), dtype)
    b, b64 = _low(randn((o,), gen) if bias else None, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        assert not x.is_contiguous() and K._prepare_strided(x, "x") is x  # used as it is: no copy
    y = K.conv2d_forward(x, wt, b, **cfg, **acts)
    assert y.dtype == dtype and y.is_contiguous()
    assert_close(y, C.conv2d_forward(x64, w64, b64, **cfg, **acts), "conv2d", dname, name="y")
    dy, dy64 = _low(randn(tuple(y.shape), gen), dtype)
    if channels_last:
        dy = dy.to(memory_format=torch.channels_last)
    grads = K.conv2d_backward(dy, x, wt, **cfg, out=y, **acts)
    refs = C.conv2d_backward(dy64, x64, w64, **cfg, out=y.double().numpy(), **acts)
    for got, want, name in zip(grads, refs, ("dx", "dweight", "dbias")):
        assert got.dtype == dtype and got.is_contiguous()
        assert_close(got, want, "conv2d", dname, name=name)


@pytest.mark.parametrize("case", GRID, ids=_ids)
def test_conv2d_float32_matches_reference(case, gen):
    _check_case(case, torch.float32, gen, bias=case[0] != 1)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_conv2d_every_activation(activation, gen):
    _check_case(GRID[1], torch.float32, gen, activation=activation)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", [GRID[0], GRID[4]], ids=_ids)
def test_conv2d_half_precision(case, dtype, gen):
    _check_case(case, dtype, gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [GRID[1], GRID[3]], ids=_ids)
def test_conv2d_channels_last(case, dtype, gen):
    _check_case(case, dtype, gen, channels_last=True)


def test_conv2d_strided_views(gen):
    # any strides: x a permuted view (C, N and H, W swapped), dy and out non-contiguous
    x64, w64 = randn((3, 2, 7, 6), gen), randn((4, 3, 3, 2), gen)
    x = torch.from_numpy(x64).float().permute(1, 0, 3, 2)  # [2, 3, 6, 7]
    xr = x.double().numpy()
    cfg = dict(stride=(2, 1), padding=1, dilation=(1, 2), activation="sigmoid")
    y = K.conv2d_forward(x, torch.from_numpy(w64).float(), **cfg)
    assert_close(y, C.conv2d_forward(xr, w64, **cfg), "conv2d", "float32", name="y")
    dy64 = randn(tuple(y.shape), gen)
    dy = torch.from_numpy(dy64).float().transpose(2, 3).contiguous().transpose(2, 3)
    out = y.transpose(2, 3).contiguous().transpose(2, 3)
    got = K.conv2d_backward(dy, x, torch.from_numpy(w64).float(), out=out, **cfg)
    want = C.conv2d_backward(dy64, xr, w64, out=y.double().numpy(), **cfg)
    for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert_close(g, r, "conv2d", "float32", name=name)


def test_conv2d_split_k_wgrad_is_deterministic(gen, monkeypatch):
    # small split chunks: the pixel reduction runs in several splits summed in a fixed order
    monkeypatch.setattr(K, "_SPLIT_MIN_CHUNK", 64)
    case = GRID[0]
    assert K._wgrad_split(1, case[0] * case[2] * case[3], torch.device("cpu"))[0] > 1
    _check_case(case, torch.float32, gen, activation="tanh")
    x, wt, dy = (torch.from_numpy(randn(s, gen)).float() for s in ((2, 3, 7, 7), (5, 3, 3, 3), (2, 5, 7, 7)))
    first = K.conv2d_backward(dy, x, wt, padding=1)
    second = K.conv2d_backward(dy, x, wt, padding=1)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_output_shape_is_the_references(gen):
    assert K.conv2d_output_shape is C.conv2d_output_shape
    x, w = (torch.from_numpy(randn(s, gen)).float() for s in ((2, 4, 9, 6), (8, 2, 3, 2)))
    cfg = dict(stride=(1, 2), padding=(0, 1), dilation=2, groups=2)
    assert tuple(K.conv2d_forward(x, w, **cfg).shape) == K.conv2d_output_shape(x.shape, w.shape, **cfg)


def _same_error(ours, ref, *args, **kwargs) -> None:  # noqa: ANN001
    """Both calls raise the same exception type with the same message."""
    with pytest.raises((ValueError, TypeError)) as want:
        ref(*args, **kwargs)
    with pytest.raises(want.type) as got:
        ours(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_bad_input_raises_like_reference(gen):
    t = lambda *s: torch.from_numpy(randn(s, gen)).float()  # noqa: E731
    x, w = t(2, 4, 7, 5), t(6, 2, 3, 2)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, t(6, 3, 3, 2), groups=2)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2, dilation=4)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, t(5), groups=2)
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2, activation="gelu")
    _same_error(K.conv2d_forward, C.conv2d_forward, x, w, groups=2.0)
    _same_error(K.conv2d_backward, C.conv2d_backward, t(2, 6, 5, 3), x, w, groups=2)
    _same_error(K.conv2d_backward, C.conv2d_backward, t(2, 6, 7, 4), x, w, groups=2, activation="relu")


def test_non_tensor_and_bad_dtypes_raise_type_error(gen):
    x64, w64 = randn((2, 4, 7, 5), gen), randn((6, 4, 3, 2), gen)
    x, w = torch.from_numpy(x64).float(), torch.from_numpy(w64).float()
    with pytest.raises(TypeError, match="torch tensor"):
        K.conv2d_forward(x64, w64)
    with pytest.raises(TypeError, match="floating-point"):
        K.conv2d_forward(x.int(), w)
    with pytest.raises(TypeError, match=r"weight must have the dtype of x \(float32\)"):
        K.conv2d_forward(x, w.half())
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        K.conv2d_forward(x.double(), w.double())
    y = K.conv2d_forward(x, w, activation="tanh")
    with pytest.raises(TypeError, match="dy must have dtype torch.float32"):
        K.conv2d_backward(y.half(), x, w, out=y, activation="tanh")
    with pytest.raises(TypeError, match="out must have dtype torch.float32"):
        K.conv2d_backward(y, x, w, out=y.half(), activation="tanh")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_conv2d_cuda_realistic(dtype, gen):
    # a ResNet-style layer (and a strided grouped one, channels-last) on the GPU: compiled code,
    # every autotune config, split-K wgrad
    dname = str(dtype).replace("torch.", "")
    for (n, c, h, w, o, k, stride, pad, groups, act), cl in [
        ((8, 32, 28, 28, 64, 3, 1, 1, 1, "relu"), False),
        ((4, 64, 29, 27, 96, 3, 2, 1, 4, "leaky_relu"), True),
    ]:
        cfg = dict(stride=stride, padding=pad, groups=groups, activation=act)
        x, x64 = _low(randn((n, c, h, w), gen), dtype)
        wt, w64 = _low(randn((o, c // groups, k, k), gen, scale=0.1), dtype)
        b, b64 = _low(randn((o,), gen), dtype)
        x, wt, b = x.cuda(), wt.cuda(), b.cuda()
        if cl:
            x = x.to(memory_format=torch.channels_last)
        y = K.conv2d_forward(x, wt, b, **cfg)
        assert_close(y, C.conv2d_forward(x64, w64, b64, **cfg), "conv2d", dname, name="y")
        dy, dy64 = _low(randn(tuple(y.shape), gen), dtype)
        got = K.conv2d_backward(dy.cuda(), x, wt, out=y, **cfg)
        want = C.conv2d_backward(dy64, x64, w64, out=y.double().cpu().numpy(), **cfg)
        for g, r, name in zip(got, want, ("dx", "dweight", "dbias")):
            assert_close(g, r, "conv2d", dname, name=name)
