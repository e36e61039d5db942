"""Helpers shared by the torch custom ops (one place, not copied per op)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..ops import call
from ..reference._validate import pair


def run(op: str, *args: Any, **kwargs: Any) -> Any:
    """Call a dlgpu op through the dispatch and hand back fresh tensors.

    A custom op's outputs may not alias its inputs, so an output that shares storage with
    an input (an identity op, say) is cloned.
    """
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    inputs += [a for a in kwargs.values() if isinstance(a, torch.Tensor)]
    ptrs = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}

    def fresh(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            return o.clone() if o.numel() and o.untyped_storage().data_ptr() in ptrs else o
        if isinstance(o, (list, tuple)):
            return type(o)(fresh(x) for x in o)
        return o

    return fresh(call(op, *args, **kwargs))


def as_pair(value: int | Sequence[int], name: str, minimum: int = 1) -> list[int]:
    """An int or a pair as the two-element list a custom op's schema takes."""
    return list(pair(value, name, minimum))


def zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Autograd passes None for outputs that did not reach the loss; kernels want zeros."""
    return torch.zeros_like(like) if grad is None else grad.contiguous()


def check_tensor(x: Any, name: str) -> None:
    """TypeError unless ``x`` is a torch tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_same_dtype(**tensors: torch.Tensor | None) -> None:
    """TypeError unless every given (non-None) tensor has the dtype of the first one."""
    items = [(k, t) for k, t in tensors.items() if t is not None]
    if not items:
        return
    name0, t0 = items[0]
    for k, t in items[1:]:
        if t.dtype != t0.dtype:
            raise TypeError(f"{k} must have the dtype of {name0} ({t0.dtype}), got {t.dtype}")
