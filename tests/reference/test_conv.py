"""Reference conv2d with fused activation: finite differences, torch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import conv as C
from dlgpu.testing import assert_close, check_gradients, randn

ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]
TORCH_ACT = {
    "none": lambda t: t,
    "relu": F.relu,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def _draw_config(gen: np.random.Generator) -> dict:
    """Random hyperparameters for a tiny odd-shaped conv (kernel 3x2 on 7x5)."""
    strides = [1, 2, (1, 2), (2, 1), (3, 2)]
    paddings = [0, 1, (1, 0), (0, 2), (2, 1)]
    dilations = [1, 2, (2, 1), (1, 2)]
    c = int(gen.choice([4, 6]))
    groups = int(gen.choice([g for g in (1, 2, 3, 6) if c % g == 0]))
    return {
        "c": c,
        "stride": strides[gen.integers(len(strides))],
        "padding": paddings[gen.integers(len(paddings))],
        "dilation": dilations[gen.integers(len(dilations))],
        "groups": groups,
    }


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("draw", range(2))
def test_conv2d_finite_differences(activation, draw, gen):
    cfg = _draw_config(gen)
    c, g = cfg.pop("c"), cfg["groups"]
    x = randn((2, c, 7, 5), gen)
    w = randn((6, c // g, 3, 2), gen)
    b = randn((6,), gen)
    kw = dict(cfg, activation=activation, negative_slope=0.1)
    y = C.conv2d_forward(x, w, b, **kw)
    assert y.shape == C.conv2d_output_shape(x.shape, w.shape, **cfg)
    dy = randn(y.shape, gen)
    dx, dw, db = C.conv2d_backward(dy, x, w, out=y, **kw)
    check_gradients(
        lambda: C.conv2d_forward(x, w, b, **kw),
        {"x": x, "weight": w, "bias": b},
        {"x": dx, "weight": dw, "bias": db},
        dy,
    )


# (N, C, H, W, O, KH, KW, stride, padding, dilation, groups)
TORCH_GRID = [
    (2, 3, 9, 9, 5, 3, 3, 1, 0, 1, 1),
    (2, 3, 9, 9, 5, 3, 3, 1, 1, 1, 1),  # "same" conv, f=3 s=1 p=1
    (1, 4, 11, 7, 6, 3, 3, 2, 1, 1, 2),
    (3, 2, 7, 13, 3, 1, 1, 1, 0, 1, 1),  # 1x1
    (2, 3, 13, 11, 4, 5, 3, (2, 1), (1, 2), 1, 1),  # non-square kernel, asymmetric stride/padding
    (2, 6, 10, 9, 6, 2, 3, (1, 3), (0, 1), (2, 1), 3),
    (1, 4, 9, 8, 8, 3, 2, 2, 2, (1, 3), 4),  # depthwise-multiplier: groups = C, O = 2C
    (2, 5, 7, 7, 5, 3, 3, 1, 1, 1, 5),  # depthwise
    (1, 3, 6, 5, 2, 6, 5, 1, 0, 1, 1),  # window exactly the input: 1x1 output
    (1, 2, 4, 3, 3, 3, 3, 3, (1, 2), 2, 1),  # dilated window of 5 fits the padded 6 x 7
    (2, 3, 12, 12, 4, 4, 4, 3, 0, 1, 1),  # stride leaves input rows unread
]


@pytest.mark.parametrize("case", TORCH_GRID, ids=lambda c: "-".join(str(v) for v in c))
def test_conv2d_matches_torch(case, gen):
    n, c, h, wd, o, kh, kw, stride, padding, dilation, groups = case
    x, w, b = randn((n, c, h, wd), gen), randn((o, c // groups, kh, kw), gen), randn((o,), gen)
    cfg = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, **cfg)
    dy = randn(tuple(yt.shape), gen)
    yt.backward(torch.tensor(dy))
    assert C.conv2d_output_shape(x.shape, w.shape, **cfg) == tuple(yt.shape)
    assert_close(C.conv2d_forward(x, w, b, **cfg), yt, "conv2d", name="y")
    dx, dw, db = C.conv2d_backward(dy, x, w, **cfg)
    for got, want, name in ((dx, xt.grad, "dx"), (dw, wt.grad, "dweight"), (db, bt.grad, "dbias")):
        assert_close(got, want, "conv2d", name=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_conv2d_fused_activation_matches_torch(activation, gen):
    x, w, b = randn((2, 4, 9, 7), gen), randn((6, 2, 3, 2), gen), randn((6,), gen)
    cfg = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TORCH_ACT[activation](F.conv2d(xt, wt, bt, **cfg))
    dy = randn(tuple(yt.shape), gen)
    yt.backward(torch.tensor(dy))
    y = C.conv2d_forward(x, w, b, activation=activation, negative_slope=0.1, **cfg)
    assert_close(y, yt, "conv2d", name="y")
    dx, dw, db = C.conv2d_backward(dy, x, w, out=y, activation=activation, negative_slope=0.1, **cfg)
    for got, want, name in ((dx, xt.grad, "dx"), (dw, wt.grad, "dweight"), (db, bt.grad, "dbias")):
        assert_close(got, want, "conv2d", name=name)


def test_conv2d_output_shape_course_examples():
    # AlexNet conv1: 227x227x3, 96 filters of 11x11, s=4, p=0 -> 55x55x96
    assert C.conv2d_output_shape((1, 3, 227, 227), (96, 3, 11, 11), stride=4) == (1, 96, 55, 55)
    # 7x7 input, 3x3 filter: 5x5 at stride 1, 3x3 at stride 2
    assert C.conv2d_output_shape((1, 1, 7, 7), (1, 1, 3, 3)) == (1, 1, 5, 5)
    assert C.conv2d_output_shape((1, 1, 7, 7), (1, 1, 3, 3), stride=2) == (1, 1, 3, 3)
    # 32x32x3, 3x3 filter, s=2, p=1, 5 filters -> 16x16x5
    assert C.conv2d_output_shape((1, 3, 32, 32), (5, 3, 3, 3), stride=2, padding=1) == (1, 5, 16, 16)
    # dilation 2 makes a 3-tap kernel span 5
    assert C.conv2d_output_shape((2, 4, 9, 6), (8, 2, 3, 2), (1, 2), (0, 1), 2, 2) == (2, 8, 5, 3)


def test_float32_in_float32_out(gen):
    x, w, b = randn((2, 4, 7, 5), gen, np.float32), randn((6, 2, 3, 2), gen, np.float32), randn((6,), gen, np.float32)
    y = C.conv2d_forward(x, w, b, stride=2, padding=1, groups=2, activation="tanh")
    assert y.dtype == np.float32
    dx, dw, db = C.conv2d_backward(randn(y.shape, gen, np.float32), x, w, 2, 1, 1, 2, out=y, activation="tanh")
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (6,)
    assert_close(y, C.conv2d_forward(*(a.astype(np.float64) for a in (x, w, b)), 2, 1, 1, 2, "tanh"), "conv2d",
                 "float32")


def test_bad_input(gen):
    x, w = randn((2, 4, 7, 5), gen), randn((6, 2, 3, 2), gen)
    ok = dict(groups=2)
    with pytest.raises(ValueError, match="x must be 4-D"):
        C.conv2d_forward(randn((4, 7, 5), gen), w, **ok)
    with pytest.raises(ValueError, match="weight must be 4-D"):
        C.conv2d_forward(x, randn((6, 2, 3), gen), **ok)
    with pytest.raises(ValueError, match=r"channels C=4 must equal weight.shape\[1\] \* groups"):
        C.conv2d_forward(x, randn((6, 3, 3, 2), gen), groups=2)
    with pytest.raises(ValueError, match=r"channels C=4 must equal weight.shape\[1\] \* groups"):
        C.conv2d_forward(x, w)  # groups=1 but weight holds C/2 channels
    with pytest.raises(ValueError, match="groups must divide x's channels"):
        C.conv2d_forward(x, randn((6, 1, 3, 2), gen), groups=3)
    with pytest.raises(ValueError, match="groups must divide weight's out_channels"):
        C.conv2d_forward(x, randn((5, 1, 3, 2), gen), groups=4)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        C.conv2d_forward(x, w, groups=0)
    with pytest.raises(TypeError, match="groups must be a positive int"):
        C.conv2d_forward(x, w, groups=2.0)
    for bad in (0, -1, (1, 0)):
        with pytest.raises(ValueError, match="stride must be >= 1"):
            C.conv2d_forward(x, w, stride=bad, **ok)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        C.conv2d_forward(x, w, padding=(0, -1), **ok)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        C.conv2d_forward(x, w, dilation=0, **ok)
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        C.conv2d_forward(x, w, stride=(1, 2, 3), **ok)
    with pytest.raises(ValueError, match="weight: the window spans 9 along height"):
        C.conv2d_forward(x, w, dilation=4, **ok)  # 3 taps dilated by 4 > 7 rows
    with pytest.raises(ValueError, match="window spans 6 along width"):
        C.conv2d_forward(x, randn((6, 2, 3, 6), gen), **ok)
    C.conv2d_forward(x, randn((6, 2, 3, 6), gen), padding=(0, 1), **ok)  # fits once padded
    with pytest.raises(ValueError, match="bias must have shape"):
        C.conv2d_forward(x, w, randn((5,), gen), **ok)
    with pytest.raises(ValueError, match="activation must be one of"):
        C.conv2d_forward(x, w, activation="gelu", **ok)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        C.conv2d_forward(np.ones((2, 4, 7, 5), dtype=np.int64), w, **ok)
    y = C.conv2d_forward(x, w, activation="relu", **ok)
    with pytest.raises(ValueError, match="dy must have shape"):
        C.conv2d_backward(randn((2, 6, 5, 3), gen), x, w, **ok)
    with pytest.raises(TypeError, match=r"dy must have the dtype of x \(float64\), got float32"):
        C.conv2d_backward(y.astype(np.float32), x, w, **ok)
    with pytest.raises(ValueError, match="out .* is required"):
        C.conv2d_backward(randn(y.shape, gen), x, w, activation="relu", **ok)
    with pytest.raises(ValueError, match="out must have the same shape"):
        C.conv2d_backward(randn(y.shape, gen), x, w, out=y[:1], activation="relu", **ok)
    with pytest.raises(ValueError, match="activation must be one of"):
        C.conv2d_backward(randn(y.shape, gen), x, w, out=y, activation="swish", **ok)
    with pytest.raises(ValueError, match="x must be 4-D"):
        C.conv2d_output_shape((4, 7, 5), (6, 4, 3, 3))
    with pytest.raises(ValueError, match="weight must have every dimension >= 1"):
        C.conv2d_output_shape((2, 4, 7, 5), (6, 4, 0, 3))
