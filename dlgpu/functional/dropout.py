"""Inverted dropout as a torch custom op: the mask is regenerated from a seed in backward,
never stored."""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference._validate import check_probability
from ._common import check_tensor, dlgpu_op, run


@dlgpu_op("dropout", mutates_args=())
def _dropout(x: Tensor, p: float, seed: int) -> Tensor:
    return run("dropout_forward", x, p, seed=seed)


@_dropout.register_fake
def _(x, p, seed):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape)


@dlgpu_op("dropout_backward", mutates_args=())
def _dropout_backward(dy: Tensor, p: float, seed: int) -> Tensor:
    return run("dropout_backward", dy, p, seed=seed)


@_dropout_backward.register_fake
def _(dy, p, seed):  # noqa: ANN001, ANN202
    return dy.new_empty(dy.shape)


def _setup(ctx, inputs, output):  # noqa: ANN001
    _, ctx.p, ctx.seed = inputs


def _backward(ctx, dy):  # noqa: ANN001, ANN202
    return _dropout_backward(dy.contiguous(), ctx.p, ctx.seed), None, None


_dropout.register_autograd(_backward, setup_context=_setup)


def dropout(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, seed: int | None = None
) -> Tensor:
    """Inverted dropout like torch.nn.functional.dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p).

    The mask comes from ``seed`` through the backend's own counter-based RNG; with seed=None a
    seed is drawn from torch's generator, so ``torch.manual_seed`` makes runs reproducible.
    ``inplace`` is accepted for drop-in use but the result is always a new tensor.
    """
    check_tensor(input, "input")
    p = check_probability(p, "p")
    if not training or p == 0.0:
        return input
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return _dropout(input, p, int(seed))
