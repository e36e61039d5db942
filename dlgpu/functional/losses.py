"""The losses as one torch custom op: the kernel returns the loss and its gradient in one pass,
so backward only scales the saved gradient (no second read of the scores)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference._validate import check_positive, check_reduction
from ._common import autocast, check_tensor, dlgpu_op, run

ELEMENTWISE = (
    "hinge_loss",
    "squared_hinge_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "l1_loss",
    "pseudo_huber_loss",
)
K_CLASS = ("multiclass_hinge_loss", "multiclass_squared_hinge_loss", "cross_entropy")


@dlgpu_op("loss", mutates_args=())
def _loss(name: str, input: Tensor, target: Tensor, reduction: str, delta: float) -> tuple[Tensor, Tensor]:
    extra = {"delta": delta} if name == "pseudo_huber_loss" else {}
    return run(f"{name}_forward", input, target, reduction, **extra)


@_loss.register_fake
def _(name, input, target, reduction, delta):  # noqa: ANN001, ANN202
    if reduction != "none":
        shape = ()
    elif name in K_CLASS:
        shape = (input.shape[0],)
    else:
        shape = tuple(input.shape)
    return input.new_empty(shape), input.new_empty(input.shape)


@dlgpu_op("loss_backward", mutates_args=())
def _loss_backward(grad_output: Tensor, grad_input: Tensor, reduction: str) -> Tensor:
    return run("loss_backward", grad_output, grad_input, reduction)


@_loss_backward.register_fake
def _(grad_output, grad_input, reduction):  # noqa: ANN001, ANN202
    return grad_input.new_empty(grad_input.shape)


def _setup(ctx, inputs, output):  # noqa: ANN001
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])
    ctx.reduction = inputs[3]


def _backward(ctx, d_loss, _d_grad):  # noqa: ANN001, ANN202
    if torch.is_grad_enabled():  # backward(create_graph=True): the saved gradient is a constant here
        raise RuntimeError(
            "dlgpu losses have no second derivative: the gradient they return under create_graph=True "
            "would be detached from input (a gradient penalty would silently lose its term); use torch's loss"
        )
    (grad_input,) = ctx.saved_tensors
    return None, _loss_backward(d_loss.contiguous(), grad_input, ctx.reduction), None, None, None


_loss.register_autograd(_backward, setup_context=_setup)


def _apply(name: str, input: Tensor, target: Tensor, reduction: str, delta: float = 1.0) -> Tensor:
    check_tensor(input, "input")
    check_tensor(target, "target")
    check_reduction(reduction)
    input, target = autocast("float32", input, target)
    if target.requires_grad:
        raise ValueError(f"target must not require grad: {name} has no gradient with respect to target")
    if input.dim() >= 1 and input.shape[0] == 0:  # an empty batch, as torch: nan mean, zero sum, empty 'none'
        return _empty_batch(name, input, target, reduction)
    return _loss(name, input, target, reduction, float(delta))[0]


def _empty_batch(name: str, input: Tensor, target: Tensor, reduction: str) -> Tensor:
    """The loss of N = 0 samples, attached to input's graph (its gradient is empty); shapes still checked."""
    k_class = name in K_CLASS
    if k_class and (input.dim() != 2 or target.dim() != 1 or target.shape[0] != 0):
        raise ValueError(f"input must be [N, K] and target [N], got {tuple(input.shape)} and {tuple(target.shape)}")
    if not k_class and target.shape != input.shape:
        raise ValueError(f"target must have input's shape {tuple(input.shape)}, got {tuple(target.shape)}")
    flat = input.reshape(-1)[:0]
    if reduction == "none":
        return flat.reshape((0,) if k_class else input.shape)
    total = flat.sum()
    return total / 0 if reduction == "mean" else total


def cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """-log softmax(input)_target per row, stable for extreme logits. input [N, K], target [N] int64."""
    return _apply("cross_entropy", input, target, reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """-(t log y + (1 - t) log(1 - y)) on probabilities y (logs clamped at -100, as torch)."""
    return _apply("binary_cross_entropy", input, target, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits: max(x, 0) - x t + log1p(exp(-|x|))."""
    return _apply("binary_cross_entropy_with_logits", input, target, reduction)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """(y - t)^2, the L2 loss."""
    return _apply("mse_loss", input, target, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """|y - t|, the L1 loss."""
    return _apply("l1_loss", input, target, reduction)


def pseudo_huber_loss(input: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1): quadratic near 0, linear far away."""
    return _apply("pseudo_huber_loss", input, target, reduction, check_positive(delta, "delta"))


def hinge_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Binary hinge max(0, 1 - y t) with targets t in {-1, +1}."""
    return _apply("hinge_loss", input, target, reduction)


def squared_hinge_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Binary squared hinge max(0, 1 - y t)^2 with targets t in {-1, +1}."""
    return _apply("squared_hinge_loss", input, target, reduction)


def multiclass_hinge_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """K-class hinge sum_{j != t} max(0, 1 - (y_t - y_j)) (torch's multi_margin_loss times K)."""
    return _apply("multiclass_hinge_loss", input, target, reduction)


def multiclass_squared_hinge_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """K-class squared hinge sum_{j != t} max(0, 1 - (y_t - y_j))^2."""
    return _apply("multiclass_squared_hinge_loss", input, target, reduction)
