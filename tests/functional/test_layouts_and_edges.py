"""The custom ops under torch.compile with non-contiguous inputs (their fake kernels must promise the
layout the real ones return: contiguous), 0-d tensors, inputs torch.nn takes (unbatched (C, H, W),
an empty batch), and a second derivative the losses cannot give (an error, not a wrong gradient)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import dlgpu.functional as DF
import dlgpu.nn as dnn


def _t(gen: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy(gen.standard_normal(shape)).to(torch.float64)


def _grads(fn, *inputs):  # noqa: ANN001, ANN202
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*xs)
    out.sum().backward() if out.dim() else out.backward()
    return out.detach(), [x.grad for x in xs]


CASES = {
    "relu of x.t()": (lambda x: DF.relu(x.t()) * 2, lambda x: torch.relu(x.t()) * 2, ((5, 7),)),
    "sigmoid of x.t()": (lambda x: DF.sigmoid(x.t()), lambda x: torch.sigmoid(x.t()), ((5, 7),)),
    "softmax of x.t()": (lambda x: DF.softmax(x.t(), 0), lambda x: torch.softmax(x.t(), 0), ((5, 7),)),
    "linear of x.t()": (lambda x, w: DF.linear(x.t(), w), lambda x, w: x.t() @ w.t(), ((5, 7), (3, 5))),
    "mse of x.t()": (lambda x: DF.mse_loss(x.t(), torch.zeros(7, 5, dtype=x.dtype)),
                     lambda x: torch.nn.functional.mse_loss(x.t(), torch.zeros(7, 5, dtype=x.dtype)), ((5, 7),)),
    "conv2d channels_last": (
        lambda x, w: DF.conv2d(x.to(memory_format=torch.channels_last), w, padding=1),
        lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), ((2, 3, 6, 5), (4, 3, 3, 3))),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_ops_take_non_contiguous_inputs(backend, gen, case):
    mine, theirs, shapes = CASES[case]
    inputs = [_t(gen, *s) for s in shapes]
    want, want_grads = _grads(theirs, *inputs)
    got, got_grads = _grads(torch.compile(mine, fullgraph=True, dynamic=False), *inputs)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_zero_d_tensors_round_trip_with_gradients(backend):
    x = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    y = DF.relu(x) * 2 + DF.tanh(x)
    assert y.shape == ()
    y.backward()
    assert x.grad.shape == () and x.grad.item() == pytest.approx(2 + 1 - np.tanh(1.5) ** 2)
    loss = DF.mse_loss(x, torch.tensor(0.5, dtype=torch.float64), reduction="none")
    assert loss.shape == ()


@pytest.mark.parametrize("loss", ["cross_entropy", "mse_loss"])
def test_a_second_derivative_through_a_loss_is_an_error_not_a_wrong_gradient(backend, gen, loss):
    x = _t(gen, 4, 3).requires_grad_()
    target = torch.tensor([0, 2, 1, 1]) if loss == "cross_entropy" else _t(gen, 4, 3)
    value = getattr(DF, loss)(x, target)
    with pytest.raises(RuntimeError, match="dlgpu losses have no second derivative"):
        torch.autograd.grad(value, x, create_graph=True)
    (g,) = torch.autograd.grad(getattr(DF, loss)(x, target), x)  # first order is unaffected
    torch.testing.assert_close(g, torch.autograd.grad(getattr(torch.nn.functional, loss)(x, target), x)[0])


LAYERS = {
    "Conv2d": dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    "MaxPool2d": dict(kernel_size=2),
    "AvgPool2d": dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("shape", [(3, 7, 6), (0, 3, 7, 6)], ids=["unbatched", "empty batch"])
def test_layers_take_what_torch_nn_takes(backend, gen, name, shape):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(**LAYERS[name]).double()
    mine = getattr(dnn, name)(**LAYERS[name]).double()
    mine.load_state_dict(theirs.state_dict())
    x = _t(gen, *shape)
    want, (want_dx,) = _grads(theirs, x)
    got, (got_dx,) = _grads(mine, x)
    assert got.shape == want.shape and got_dx.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_dx, want_dx, rtol=1e-12, atol=1e-12)


def test_max_pool_indices_for_unbatched_and_empty_inputs(backend, gen):
    for shape in ((3, 6, 6), (0, 3, 6, 6)):
        x = _t(gen, *shape)
        y, idx = DF.max_pool2d(x, 2, return_indices=True)
        ty, tidx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
        assert torch.equal(y, ty) and torch.equal(idx, tidx) and idx.dtype == torch.int64
    with pytest.raises(ValueError, match="kernel_size: the window spans 9"):
        DF.max_pool2d(_t(gen, 0, 3, 6, 6), 9)
    with pytest.raises(TypeError, match="count_include_pad must be True or False"):
        DF.avg_pool2d(_t(gen, 1, 3, 6, 6), 2, count_include_pad="no")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "cross_entropy"])
def test_losses_of_an_empty_batch_are_torch_s(backend, loss, reduction):
    """N = 0: torch gives nan for 'mean' (0/0), 0 for 'sum', an empty tensor for 'none', and an empty gradient."""
    x = torch.zeros(0, 4, dtype=torch.float64)
    target = torch.zeros(0, dtype=torch.int64) if loss == "cross_entropy" else torch.zeros(0, 4, dtype=torch.float64)
    got, (gx,) = _grads(lambda x: getattr(DF, loss)(x, target, reduction=reduction), x)
    with warnings.catch_warnings():  # torch warns about the mean of nothing
        warnings.simplefilter("ignore")
        want, (wx,) = _grads(lambda x: getattr(torch.nn.functional, loss)(x, target, reduction=reduction), x)
    assert got.shape == want.shape and gx.shape == wx.shape == x.shape
    torch.testing.assert_close(got, want, equal_nan=True)
    with pytest.raises(ValueError, match="target must have input's shape"):
        DF.mse_loss(x, torch.zeros(0, 3, dtype=torch.float64), reduction=reduction)


def test_an_output_aliasing_an_input_is_cloned(backend, gen, monkeypatch):
    """A custom op's output may not share storage with an input: an identity kernel's result is copied."""
    from dlgpu import ops

    monkeypatch.setattr(ops.backend_module(backend, "activations"), "relu_forward", lambda x: x)
    x = _t(gen, 4, 3)
    y = DF.relu(x)
    assert torch.equal(y, x) and y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    y.add_(1.0)  # so writing into the result leaves the input alone
    assert not torch.equal(y, x)


def test_pooling_stride_empty_list_means_kernel_size(backend, gen):
    x = _t(gen, 2, 3, 7, 6)
    for ours, theirs in ((DF.max_pool2d, torch.nn.functional.max_pool2d),
                         (DF.avg_pool2d, torch.nn.functional.avg_pool2d)):  # fmt: skip
        torch.testing.assert_close(ours(x, 2, stride=[]), theirs(x, 2, stride=[]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_of_a_0d_tensor_as_torch(dim):
    # a 0-d input is a one-element vector: softmax 1, log_softmax 0, gradient 0
    for ours, theirs in ((DF.softmax, torch.softmax), (DF.log_softmax, torch.log_softmax)):
        xo, xt = (torch.tensor(2.5, dtype=torch.float64, requires_grad=True) for _ in range(2))
        yo, yt = ours(xo, dim), theirs(xt, dim)
        assert yo.shape == () and torch.equal(yo, yt)
        yo.backward()
        yt.backward()
        assert torch.equal(xo.grad, xt.grad)
    with pytest.raises(ValueError, match=r"dim must be in \[-1, 0\]"):
        DF.softmax(torch.tensor(1.0), 1)
    with pytest.raises(TypeError, match="dim must be an int"):
        DF.softmax(torch.ones(3), 0.0)
