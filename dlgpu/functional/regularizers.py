"""Regularisers: L1/L2 penalties (differentiable custom ops), the max-norm constraint and
gradient clipping (in-place updates, like torch.nn.utils)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..reference._validate import check_nonnegative
from ._common import check_tensor, dlgpu_op, run


@dlgpu_op("penalty", mutates_args=())
def _penalty(kind: str, weight: Tensor, lam: float) -> Tensor:
    return run(f"{kind}_penalty_forward", weight, lam)


@_penalty.register_fake
def _(kind, weight, lam):  # noqa: ANN001, ANN202
    return weight.new_empty(())


@dlgpu_op("penalty_backward", mutates_args=())
def _penalty_backward(kind: str, weight: Tensor, lam: float, grad_output: Tensor) -> Tensor:
    return run(f"{kind}_penalty_backward", weight, lam, grad_output)


@_penalty_backward.register_fake
def _(kind, weight, lam, grad_output):  # noqa: ANN001, ANN202
    return weight.new_empty(weight.shape)


def _setup(ctx, inputs, output):  # noqa: ANN001
    ctx.kind, weight, ctx.lam = inputs
    ctx.save_for_backward(weight)


def _backward(ctx, d):  # noqa: ANN001, ANN202
    (weight,) = ctx.saved_tensors
    return None, _penalty_backward(ctx.kind, weight, ctx.lam, d.contiguous()), None


_penalty.register_autograd(_backward, setup_context=_setup)


def l1_penalty(weight: Tensor, lam: float) -> Tensor:
    """lam * sum |w| (its gradient lam * sign(w) drives weights to exactly zero)."""
    check_tensor(weight, "weight")
    return _penalty("l1", weight, check_nonnegative(lam, "lam"))


def l2_penalty(weight: Tensor, lam: float) -> Tensor:
    """(lam / 2) * sum w^2 (its gradient lam * w is classic weight decay)."""
    check_tensor(weight, "weight")
    return _penalty("l2", weight, check_nonnegative(lam, "lam"))


@dlgpu_op("max_norm_", mutates_args=("weight",))
def _max_norm_(weight: Tensor, max_norm: float) -> None:
    weight.copy_(run("max_norm_forward", weight.detach(), max_norm))


@_max_norm_.register_fake
def _(weight, max_norm):  # noqa: ANN001, ANN202
    return None


def max_norm_(weight: Tensor, max_norm: float) -> Tensor:
    """In place: clamp every neuron's incoming weight vector (axis 0) to norm <= max_norm.

    Call it after the optimizer step; returns ``weight``.
    """
    check_tensor(weight, "weight")
    with torch.no_grad():
        _max_norm_(weight, float(max_norm))
    return weight


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale the gradients of ``parameters`` in place so their global norm is <= max_norm.

    Like torch.nn.utils.clip_grad_norm_; returns the total norm before clipping.
    """
    params = _grads(parameters)
    if not params:
        return torch.tensor(0.0)
    with torch.no_grad():
        clipped, total = run("clip_grad_norm_forward", [p.grad for p in params], max_norm, float(norm_type))
        for p, g in zip(params, clipped):
            p.grad.copy_(g)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp the gradients of ``parameters`` in place to [-clip_value, clip_value]."""
    with torch.no_grad():
        for p in _grads(parameters):
            p.grad.copy_(run("clip_grad_value_forward", p.grad, clip_value))
