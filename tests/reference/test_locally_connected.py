"""Reference locally connected (unshared) 2-D layer: finite differences, torch via unfold, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlgpu.reference import conv as C
from dlgpu.reference import locally_connected as LC
from dlgpu.testing import assert_close, check_gradients, randn


def _torch_lc(xt: torch.Tensor, wt: torch.Tensor, bt: torch.Tensor | None, stride, padding) -> torch.Tensor:
    """The layer's equation in torch ops: im2col columns, then one dot product per output position."""
    oh, ow, o, c, kh, kw = wt.shape
    cols = F.unfold(xt, (kh, kw), padding=padding, stride=stride)  # N, C*KH*KW, OH*OW  (c, u, v order)
    y = torch.einsum("nkl,lok->nol", cols, wt.reshape(oh * ow, o, c * kh * kw))  # N, O, OH*OW
    y = y.reshape(xt.shape[0], o, oh, ow)
    return y if bt is None else y + bt


def _weight_shape(x_shape, o, k, stride, padding):
    kh, kw = (k, k) if isinstance(k, int) else k
    oh, ow = LC.locally_connected2d_output_shape(x_shape, (kh, kw), stride, padding)
    return (oh, ow, o, x_shape[1], kh, kw)


@pytest.mark.parametrize("draw", range(4))
def test_locally_connected_finite_differences(draw, gen):
    strides = [1, 2, (2, 1), (1, 3)]
    paddings = [0, 1, (1, 0), (0, 2)]
    stride, padding = strides[gen.integers(4)], paddings[gen.integers(4)]
    x = randn((2, 2, 7, 5), gen)
    w = randn(_weight_shape(x.shape, 2, (3, 2), stride, padding), gen)
    b = randn((2,) + w.shape[:2], gen)
    y = LC.locally_connected2d_forward(x, w, b, stride, padding)
    assert y.shape == (2, 2) + w.shape[:2]
    dy = randn(y.shape, gen)
    dx, dw, db = LC.locally_connected2d_backward(dy, x, w, stride, padding)
    check_gradients(
        lambda: LC.locally_connected2d_forward(x, w, b, stride, padding),
        {"x": x, "weight": w, "bias": b},
        {"x": dx, "weight": dw, "bias": db},
        dy,
    )


# (N, C, H, W, O, kernel, stride, padding, with bias)
TORCH_GRID = [
    (2, 3, 9, 9, 4, 3, 1, 0, True),
    (2, 3, 9, 9, 4, 3, 1, 1, True),
    (1, 2, 11, 7, 5, (3, 2), 2, 1, False),
    (3, 4, 7, 13, 3, 1, 1, 0, True),  # 1x1: a per-pixel fully connected layer
    (2, 3, 13, 11, 2, (5, 3), (2, 1), (1, 2), True),  # asymmetric everything
    (1, 2, 5, 6, 3, (5, 6), 1, 0, True),  # window = input: an ordinary FC layer, 1x1 output
    (2, 2, 12, 12, 3, 4, 3, 0, True),  # stride leaves input rows unread
]


@pytest.mark.parametrize("case", TORCH_GRID, ids=lambda c: "-".join(str(v) for v in c))
def test_locally_connected_matches_torch_unfold(case, gen):
    n, c, h, wd, o, k, stride, padding, with_bias = case
    x = randn((n, c, h, wd), gen)
    w = randn(_weight_shape(x.shape, o, k, stride, padding), gen)
    b = randn((o,) + w.shape[:2], gen) if with_bias else None
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if with_bias else None
    yt = _torch_lc(xt, wt, bt, stride, padding)
    dy = randn(tuple(yt.shape), gen)
    yt.backward(torch.tensor(dy))
    assert_close(LC.locally_connected2d_forward(x, w, b, stride, padding), yt, "locally_connected", name="y")
    dx, dw, db = LC.locally_connected2d_backward(dy, x, w, stride, padding)
    assert_close(dx, xt.grad, "locally_connected", name="dx")
    assert_close(dw, wt.grad, "locally_connected", name="dweight")
    if with_bias:
        assert_close(db, bt.grad, "locally_connected", name="dbias")
    else:
        assert_close(db, dy.sum(axis=0), "locally_connected", name="dbias")


def test_shared_weights_reduce_to_conv2d(gen):
    """Tiling one conv filter bank over every position gives conv2d, and the per-position
    weight gradients sum to conv2d's weight gradient (parameter sharing)."""
    x, wc, bc = randn((2, 3, 10, 9), gen), randn((4, 3, 3, 2), gen), randn((4,), gen)
    stride, padding = (2, 1), (1, 0)
    _, _, oh, ow = C.conv2d_output_shape(x.shape, wc.shape, stride, padding)
    w = np.broadcast_to(wc, (oh, ow) + wc.shape).copy()  # OH,OW,O,C,KH,KW
    b = np.broadcast_to(bc[:, None, None], (4, oh, ow)).copy()
    y = LC.locally_connected2d_forward(x, w, b, stride, padding)
    assert_close(y, C.conv2d_forward(x, wc, bc, stride, padding), "conv2d", name="y")
    dy = randn(y.shape, gen)
    dx, dw, db = LC.locally_connected2d_backward(dy, x, w, stride, padding)
    dxc, dwc, dbc = C.conv2d_backward(dy, x, wc, stride, padding)
    assert_close(dx, dxc, "conv2d", name="dx")
    assert_close(dw.sum(axis=(0, 1)), dwc, "conv2d", name="dweight")
    assert_close(db.sum(axis=(1, 2)), dbc, "conv2d", name="dbias")


def test_alexnet_conv1_unshared_parameter_count():
    # x [1, 3, 227, 227], K=96 filters, f=11, s=4, p=0: shapes only, the 105M weights are never allocated
    x_shape, k, f, s, p = (1, 3, 227, 227), 96, 11, 4, 0
    oh, ow = LC.locally_connected2d_output_shape(x_shape, f, s, p)
    assert (oh, ow, k) == (55, 55, 96)
    weight_shape = (oh, ow, k, x_shape[1], f, f)
    bias_shape = (k, oh, ow)
    assert math.prod(weight_shape) == 55 * 55 * 96 * 363 == 290_400 * 363
    assert math.prod(weight_shape) + math.prod(bias_shape) == 105_705_600
    # with parameter sharing (conv2d) the same layer has 96 * (363 + 1) parameters
    assert C.conv2d_output_shape(x_shape, (k, 3, f, f), s, p) == (1, 96, 55, 55)
    assert k * (3 * f * f + 1) == 34_944


def test_output_shape_helper():
    assert LC.locally_connected2d_output_shape((2, 3, 7, 7), 3) == (5, 5)
    assert LC.locally_connected2d_output_shape((2, 3, 7, 7), 3, 2) == (3, 3)
    assert LC.locally_connected2d_output_shape((1, 1, 13, 11), (5, 3), (2, 1), (1, 2)) == (6, 13)
    with pytest.raises(ValueError, match="x must be 4-D"):
        LC.locally_connected2d_output_shape((3, 7, 7), 3)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        LC.locally_connected2d_output_shape((2, 3, 7, 7), 0)
    with pytest.raises(ValueError, match="kernel_size: the window spans 8 along height"):
        LC.locally_connected2d_output_shape((2, 3, 7, 7), (8, 3))


def test_float32_in_float32_out(gen):
    x = randn((2, 3, 7, 5), gen, np.float32)
    w = randn(_weight_shape(x.shape, 4, (3, 2), 2, 1), gen, np.float32)
    b = randn((4,) + w.shape[:2], gen, np.float32)
    y = LC.locally_connected2d_forward(x, w, b, 2, 1)
    assert y.dtype == np.float32
    dx, dw, db = LC.locally_connected2d_backward(randn(y.shape, gen, np.float32), x, w, 2, 1)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    y64 = LC.locally_connected2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 2, 1)
    assert_close(y, y64, "locally_connected", "float32")


def test_bad_input(gen):
    x = randn((2, 3, 7, 5), gen)
    w = randn(_weight_shape(x.shape, 4, (3, 2), 1, 0), gen)  # 5, 4, 4, 3, 3, 2
    with pytest.raises(ValueError, match="x must be 4-D"):
        LC.locally_connected2d_forward(randn((3, 7, 5), gen), w)
    with pytest.raises(ValueError, match="weight must be 6-D"):
        LC.locally_connected2d_forward(x, randn((4, 3, 3, 2), gen))
    with pytest.raises(ValueError, match=r"weight's in_channels .* must equal x's channels C=3"):
        LC.locally_connected2d_forward(x, randn((5, 4, 4, 2, 3, 2), gen))
    with pytest.raises(
        ValueError, match=r"weight's first two dimensions must be the output size \(OH, OW\) = \(5, 4\)"
    ):
        LC.locally_connected2d_forward(x, randn((4, 4, 4, 3, 3, 2), gen))
    with pytest.raises(ValueError, match=r"weight's first two dimensions .* = \(3, 2\)"):
        LC.locally_connected2d_forward(x, w, stride=2)  # weight sized for stride 1
    with pytest.raises(ValueError, match="bias must have shape"):
        LC.locally_connected2d_forward(x, w, randn((4,), gen))
    with pytest.raises(ValueError, match="bias must have shape"):
        LC.locally_connected2d_forward(x, w, randn((4, 4, 5), gen))  # OH, OW swapped
    for bad in (0, -2, (2, 0)):
        with pytest.raises(ValueError, match="stride must be >= 1"):
            LC.locally_connected2d_forward(x, w, stride=bad)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        LC.locally_connected2d_forward(x, w, padding=-1)
    with pytest.raises(ValueError, match="weight: the window spans 6 along width"):
        LC.locally_connected2d_forward(x, randn((1, 1, 4, 3, 3, 6), gen))
    with pytest.raises(TypeError, match="weight must have a floating-point dtype"):
        LC.locally_connected2d_forward(x, np.ones(w.shape, dtype=np.int32))
    with pytest.raises(ValueError, match="dy must have shape"):
        LC.locally_connected2d_backward(randn((2, 4, 4, 5), gen), x, w)
    with pytest.raises(ValueError, match="weight's in_channels"):
        LC.locally_connected2d_backward(randn((2, 4, 5, 4), gen), randn((2, 2, 7, 5), gen), w)
