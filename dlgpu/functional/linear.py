"""Fully-connected layer with a fused activation, as a torch custom op with autograd."""

from __future__ import annotations

from torch import Tensor

from ..reference._validate import check_activation
from ._common import autocast, check_same_dtype, check_tensor, dlgpu_op, run


@dlgpu_op("linear", mutates_args=())
def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str, negative_slope: float) -> Tensor:
    return run("linear_forward", x, weight, bias, activation, negative_slope)


@_linear.register_fake
def _(x, weight, bias, activation, negative_slope):  # noqa: ANN001, ANN202
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@dlgpu_op("linear_backward", mutates_args=())
def _linear_backward(
    dy: Tensor, x: Tensor, weight: Tensor, out: Tensor, activation: str, negative_slope: float
) -> tuple[Tensor, Tensor, Tensor]:
    # out is only read for a fused activation; for "none" it is the forward output all the same.
    return run("linear_backward", dy, x, weight, out, activation, negative_slope)


@_linear_backward.register_fake
def _(dy, x, weight, out, activation, negative_slope):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],))


def _setup(ctx, inputs, output):  # noqa: ANN001
    x, weight, bias, activation, negative_slope = inputs
    ctx.save_for_backward(x, weight, output)
    ctx.has_bias = bias is not None
    ctx.activation, ctx.negative_slope = activation, negative_slope


def _backward(ctx, dy):  # noqa: ANN001, ANN202
    x, weight, out = ctx.saved_tensors
    dx, dw, db = _linear_backward(dy.contiguous(), x, weight, out, ctx.activation, ctx.negative_slope)
    return dx, dw, (db if ctx.has_bias else None), None, None


_linear.register_autograd(_backward, setup_context=_setup)


def linear(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> Tensor:
    """act(input @ weight.T + bias), like torch.nn.functional.linear plus a fused activation.

    Args:
        input: [..., in_features].
        weight: [out_features, in_features].
        bias: [out_features] or None.
        activation: none | relu | leaky_relu | sigmoid | tanh, applied in the kernel's epilogue.
        negative_slope: leaky_relu's slope.
    """
    check_tensor(input, "input")
    check_tensor(weight, "weight")
    if bias is not None:
        check_tensor(bias, "bias")
    input, weight, bias = autocast("lower", input, weight, bias)
    check_same_dtype(input=input, weight=weight, bias=bias)
    check_activation(activation, negative_slope)
    return _linear(input, weight, bias, activation, float(negative_slope))
