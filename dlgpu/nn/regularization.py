"""Regularisation for a whole model: L1/L2 penalties, the max-norm constraint, gradient clipping.

Which parameters count as *weights*: every parameter whose own name (the last dotted part)
does not start with ``bias`` (``weight``, ``weight_ih_l0``, ... are weights; ``bias``,
``bias_hh_l0`` are biases). Penalties skip biases unless ``include_bias=True``; the max-norm
constraint never touches biases (nor any 1-D parameter, which has no incoming vectors).

A training step with all of them::

    reg = Regularizer(model, l2=1e-4, max_norm=3.0, clip_norm=5.0)
    loss = loss_fn(model(x), y) + reg.penalty()
    optimizer.zero_grad(); loss.backward()
    reg.clip()            # after backward, before the step
    optimizer.step()
    reg.constrain()       # after the step
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from .. import functional as F
from ..functional import clip_grad_norm_, clip_grad_value_
from ..reference._validate import check_nonnegative, check_positive
from .layers import LocallyConnected2d

__all__ = [
    "MaxNorm",
    "Regularizer",
    "clip_grad_norm_",
    "clip_grad_value_",
    "l1_penalty",
    "l2_penalty",
]

ModuleOrParams = nn.Module | Tensor | Iterable[Tensor]


def _is_bias(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("bias")


def _penalised(target: ModuleOrParams, include_bias: bool) -> list[Tensor]:
    """The tensors a penalty sums over: a module's weights (and biases if asked), or the given tensors."""
    if isinstance(target, nn.Module):
        return [p for n, p in target.named_parameters() if include_bias or not _is_bias(n)]
    if isinstance(target, Tensor):
        return [target]
    params = list(target)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params must be tensors; element {i} is a {type(p).__name__}")
    return params


def _penalty(kind: str, target: ModuleOrParams, lam: float, include_bias: bool) -> Tensor:
    lam = check_nonnegative(lam, "lam")
    if not isinstance(target, (nn.Module, Tensor, Iterable)):
        raise TypeError(f"module must be an nn.Module, a tensor or an iterable of tensors, got {type(target).__name__}")
    fn = F.l1_penalty if kind == "l1" else F.l2_penalty
    terms = [fn(p, lam) for p in _penalised(target, include_bias) if p.numel()]
    if not terms:
        raise ValueError("module has no parameters to penalise")
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]


def l1_penalty(module: ModuleOrParams, lam: float, include_bias: bool = False) -> Tensor:
    """lam * sum |w| over the module's weights (a scalar tensor, differentiable; add it to the loss).

    Args:
        module: an nn.Module (its weights; biases too if include_bias), or a tensor / an iterable
            of tensors (all of them, as given).
        lam: >= 0.
    Returns:
        a 0-D tensor in the parameters' dtype.
    """
    return _penalty("l1", module, lam, include_bias)


def l2_penalty(module: ModuleOrParams, lam: float, include_bias: bool = False) -> Tensor:
    """(lam / 2) * sum w^2 over the module's weights (its gradient lam * w is weight decay).

    Arguments and result as l1_penalty.
    """
    return _penalty("l2", module, lam, include_bias)


class MaxNorm:
    """Max-norm constraint: after each optimizer step, rescale every neuron's incoming weight
    vector to norm <= max_norm (vectors already inside the ball stay bit for bit).

    The convention is dlgpu.functional.max_norm_'s: the neuron axis is axis 0, so a Linear weight
    [O, I] is bounded row by row, a Conv2d weight [O, C, KH, KW] filter by filter, a recurrent
    weight [G*H, I] per gate unit. A LocallyConnected2d weight [OH, OW, O, C, KH, KW] (when given
    as a module) is bounded per output unit, i.e. each of its OH*OW*O filters of C*KH*KW taps.
    Biases and other 1-D parameters are never touched.
    """

    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_positive(max_norm, "max_norm")

    def _targets(self, target: ModuleOrParams) -> Iterator[Tensor]:
        if isinstance(target, nn.Module):
            for mod in target.modules():
                for name, p in mod.named_parameters(recurse=False):
                    if _is_bias(name) or p.ndim < 2:
                        continue
                    if isinstance(mod, LocallyConnected2d) and p is mod.weight:
                        # one filter per (i, j, o): the neuron axis is the first three together
                        yield p.view(-1, p.shape[3] * p.shape[4] * p.shape[5])  # OH*OW*O, C*KH*KW
                    else:
                        yield p
        else:
            for p in _penalised(target, include_bias=True):
                if p.ndim >= 2:
                    yield p

    @torch.no_grad()
    def apply(self, module_or_params: ModuleOrParams) -> None:
        """Project the weights in place (call after ``optimizer.step()``).

        Args:
            module_or_params: an nn.Module (all its weights, LocallyConnected2d handled per unit),
                or a tensor / an iterable of tensors (each one with >= 2 dims, neuron axis 0;
                1-D tensors are skipped).
        """
        if not isinstance(module_or_params, (nn.Module, Tensor, Iterable)):
            raise TypeError(
                f"module_or_params must be an nn.Module, a tensor or an iterable of tensors, "
                f"got {type(module_or_params).__name__}"
            )
        for w in self._targets(module_or_params):
            F.max_norm_(w, self.max_norm)

    __call__ = apply

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm})"


class Regularizer:
    """Bundles a model's regularisers for a training loop (any of them may be off).

    Args:
        module: the model.
        l1, l2: penalty strengths (0 = off); see l1_penalty / l2_penalty.
        max_norm: max-norm radius or None.
        clip_norm: global gradient-norm bound (clip_grad_norm_) or None.
        clip_value: elementwise gradient bound (clip_grad_value_) or None.
        include_bias: also penalise biases.
    """

    def __init__(
        self,
        module: nn.Module,
        l1: float = 0.0,
        l2: float = 0.0,
        max_norm: float | None = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        include_bias: bool = False,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        self.l1 = check_nonnegative(l1, "l1")
        self.l2 = check_nonnegative(l2, "l2")
        self.max_norm = None if max_norm is None else MaxNorm(max_norm)
        self.clip_norm = None if clip_norm is None else check_positive(clip_norm, "clip_norm")
        self.clip_value = None if clip_value is None else check_positive(clip_value, "clip_value")
        self.include_bias = include_bias

    def penalty(self) -> Tensor:
        """l1_penalty + l2_penalty of the module (a 0-D tensor; zero when both are off)."""
        total = None
        if self.l1:
            total = l1_penalty(self.module, self.l1, self.include_bias)
        if self.l2:
            p2 = l2_penalty(self.module, self.l2, self.include_bias)
            total = p2 if total is None else total + p2
        if total is None:
            p = next(self.module.parameters(), None)
            return torch.zeros((), dtype=p.dtype, device=p.device) if p is not None else torch.zeros(())
        return total

    def clip(self) -> Tensor | None:
        """Clip the gradients in place (after backward); returns the pre-clip total norm if clip_norm."""
        norm = None
        if self.clip_value is not None:
            clip_grad_value_(self.module.parameters(), self.clip_value)
        if self.clip_norm is not None:
            norm = clip_grad_norm_(self.module.parameters(), self.clip_norm)
        return norm

    def constrain(self) -> None:
        """Apply the max-norm constraint in place (after the optimizer step)."""
        if self.max_norm is not None:
            self.max_norm.apply(self.module)

    def __repr__(self) -> str:
        on = [f"{k}={v}" for k, v in (("l1", self.l1), ("l2", self.l2)) if v]
        on += [f"{k}={v}" for k, v in (("clip_norm", self.clip_norm), ("clip_value", self.clip_value)) if v]
        if self.max_norm is not None:
            on.append(f"max_norm={self.max_norm.max_norm}")
        return f"Regularizer({', '.join(on)})"
