"""Activations as torch custom ops with autograd (names follow torch.nn.functional)."""

from __future__ import annotations

import numbers
from collections.abc import Callable

from torch import Tensor

from ._common import autocast, check_tensor, dlgpu_op, run

# ------------------------------------------------------------------------- relu


@dlgpu_op("relu", mutates_args=())
def _relu(x: Tensor) -> Tensor:
    return run("relu_forward", x)


@dlgpu_op("relu_backward", mutates_args=())
def _relu_backward(dy: Tensor, x: Tensor) -> Tensor:
    return run("relu_backward", dy, x)


# ------------------------------------------------------------------ leaky relu


@dlgpu_op("leaky_relu", mutates_args=())
def _leaky_relu(x: Tensor, negative_slope: float) -> Tensor:
    return run("leaky_relu_forward", x, negative_slope)


@dlgpu_op("leaky_relu_backward", mutates_args=())
def _leaky_relu_backward(dy: Tensor, x: Tensor, negative_slope: float) -> Tensor:
    return run("leaky_relu_backward", dy, x, negative_slope)


# -------------------------------------------------- sigmoid, tanh (from output)


@dlgpu_op("sigmoid", mutates_args=())
def _sigmoid(x: Tensor) -> Tensor:
    return run("sigmoid_forward", x)


@dlgpu_op("sigmoid_backward", mutates_args=())
def _sigmoid_backward(dy: Tensor, y: Tensor) -> Tensor:
    return run("sigmoid_backward", dy, y)


@dlgpu_op("tanh", mutates_args=())
def _tanh(x: Tensor) -> Tensor:
    return run("tanh_forward", x)


@dlgpu_op("tanh_backward", mutates_args=())
def _tanh_backward(dy: Tensor, y: Tensor) -> Tensor:
    return run("tanh_backward", dy, y)


@dlgpu_op("softplus", mutates_args=())
def _softplus(x: Tensor) -> Tensor:
    return run("softplus_forward", x)


@dlgpu_op("softplus_backward", mutates_args=())
def _softplus_backward(dy: Tensor, x: Tensor) -> Tensor:
    return run("softplus_backward", dy, x)


# ------------------------------------------------------ softmax, log_softmax


@dlgpu_op("softmax", mutates_args=())
def _softmax(x: Tensor, dim: int) -> Tensor:
    return run("softmax_forward", x, dim)


@dlgpu_op("softmax_backward", mutates_args=())
def _softmax_backward(dy: Tensor, y: Tensor, dim: int) -> Tensor:
    return run("softmax_backward", dy, y, dim)


@dlgpu_op("log_softmax", mutates_args=())
def _log_softmax(x: Tensor, dim: int) -> Tensor:
    return run("log_softmax_forward", x, dim)


@dlgpu_op("log_softmax_backward", mutates_args=())
def _log_softmax_backward(dy: Tensor, y: Tensor, dim: int) -> Tensor:
    return run("log_softmax_backward", dy, y, dim)


# Every op here keeps its input's shape and dtype: one fake implementation serves all.
for _op in (
    _relu, _relu_backward, _leaky_relu, _leaky_relu_backward, _sigmoid, _sigmoid_backward, _tanh,
    _tanh_backward, _softplus, _softplus_backward, _softmax, _softmax_backward, _log_softmax,
    _log_softmax_backward,
):  # fmt: skip
    _op.register_fake(lambda first, *rest: first.new_empty(first.shape))


def _save_input(ctx, inputs, output):  # noqa: ANN001
    ctx.save_for_backward(inputs[0])
    ctx.extra = inputs[1:]


def _save_output(ctx, inputs, output):  # noqa: ANN001
    ctx.save_for_backward(output)
    ctx.extra = inputs[1:]


def _grad(backward_op, n_extra: int):  # noqa: ANN001, ANN202
    def backward(ctx, dy):  # noqa: ANN001, ANN202
        (saved,) = ctx.saved_tensors
        return (backward_op(dy.contiguous(), saved, *ctx.extra), *([None] * n_extra))

    return backward


_relu.register_autograd(_grad(_relu_backward, 0), setup_context=_save_input)
_leaky_relu.register_autograd(_grad(_leaky_relu_backward, 1), setup_context=_save_input)
_sigmoid.register_autograd(_grad(_sigmoid_backward, 0), setup_context=_save_output)
_tanh.register_autograd(_grad(_tanh_backward, 0), setup_context=_save_output)
_softplus.register_autograd(_grad(_softplus_backward, 0), setup_context=_save_input)
_softmax.register_autograd(_grad(_softmax_backward, 1), setup_context=_save_output)
_log_softmax.register_autograd(_grad(_log_softmax_backward, 1), setup_context=_save_output)


# ------------------------------------------------------------------ public API


def relu(input: Tensor) -> Tensor:
    """max(0, x), like torch.nn.functional.relu."""
    check_tensor(input, "input")
    return _relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x, like torch.nn.functional.leaky_relu."""
    check_tensor(input, "input")
    return _leaky_relu(input, float(negative_slope))


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), stable for large |x|."""
    check_tensor(input, "input")
    return _sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    """tanh(x)."""
    check_tensor(input, "input")
    return _tanh(input)


def softplus(input: Tensor) -> Tensor:
    """log(1 + exp(x)), stable for large |x| (torch's beta=1; no threshold switch)."""
    check_tensor(input, "input")
    (input,) = autocast("float32", input, devices=("cuda",))
    return _softplus(input)


def _dim(input: Tensor, dim: int | None) -> int:
    if dim is None:
        raise ValueError("dim must be given (an int axis), got None")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    lo, hi = (-1, 0) if input.ndim == 0 else (-input.ndim, input.ndim - 1)  # a 0-d input has dim 0 or -1, as torch
    if not lo <= dim <= hi:
        raise ValueError(f"dim must be in [{lo}, {hi}] for a {input.ndim}-D input, got {dim}")
    return int(dim)


def _along(op: Callable[[Tensor, int], Tensor], input: Tensor, dim: int | None) -> Tensor:
    """``op`` along ``dim``; a 0-d input as the one-element vector it is (torch: softmax 1, log_softmax 0)."""
    d = _dim(input, dim)
    if input.ndim == 0:
        return op(input.reshape(1), 0).reshape(())
    return op(input, d)


def softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """exp(x - max) / sum exp(x - max) along ``dim``, like torch.nn.functional.softmax."""
    check_tensor(input, "input")
    (input,) = autocast("float32", input, devices=("cuda",))
    return _along(_softmax, input, dim)


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """x - max - log sum exp(x - max) along ``dim``, like torch.nn.functional.log_softmax."""
    check_tensor(input, "input")
    (input,) = autocast("float32", input, devices=("cuda",))
    return _along(_log_softmax, input, dim)
