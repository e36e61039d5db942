"""Helpers shared by the torch custom ops (one place, not copied per op).

Every dlgpu op is registered twice (``dlgpu_op``):

- ``dlgpu::<name>``, a ``torch.library.custom_op`` that runs whichever backend the dispatch picks
  (numba for CPU tensors). ``torch.compile`` treats it as opaque.
- ``dlgpu_triton::<name>``, a ``torch.library.triton_op`` running the same code on the triton
  backend. Its launches go through ``wrap_triton``, so ``torch.compile`` traces into the Triton
  kernels themselves (Inductor schedules them with the rest of the graph).

A call goes to the triton twin for CUDA tensors when the backend in force is ``auto`` or
``triton``, and to the custom op otherwise (CPU tensors, or another backend asked for).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..ops import call
from ..ops._dispatch import _status, get_backend
from ..reference._validate import pair

TRITON_NAMESPACE = "dlgpu_triton"


@torch.compiler.assume_constant_result
def _triton_in_force(device_type: str) -> bool:
    # a constant for torch.compile: the backend choice is made once, when the graph is traced
    if device_type != "cuda":
        return False
    return get_backend() in ("auto", "triton") and _status("triton").available


def _device_type(args: tuple) -> str:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device.type
    return "cpu"


def _on_triton(fn: Callable[..., Any]) -> Callable[..., Any]:
    from ..ops import use_backend

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        with use_backend("triton"):
            return fn(*args, **kwargs)

    # annotations resolved in fn's module: torch infers the twin's schema from them
    body.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return body


class DualOp:
    """One dlgpu op as a custom op (any backend) and a Triton ``triton_op`` twin; see the module doc.

    ``.custom`` and ``.triton`` are the two registered ops (``.triton`` is None where triton
    cannot be imported). Calling a DualOp picks one of them from the first tensor's device.
    """

    def __init__(self, name: str, fn: Callable[..., Any], mutates_args: Iterable[str] | str) -> None:
        self.name = name
        self.custom = torch.library.custom_op(f"dlgpu::{name}", fn, mutates_args=mutates_args)
        self.triton = None
        if _status("triton").reason.startswith("triton cannot be imported"):
            return
        self.triton = torch.library.triton_op(f"{TRITON_NAMESPACE}::{name}", _on_triton(fn), mutates_args=mutates_args)

    def register_fake(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Fake kernel of the custom op (the triton twin traces its own body on fake tensors)."""
        self.custom.register_fake(fn)
        return fn

    def register_autograd(self, backward: Callable[..., Any], *, setup_context: Callable[..., Any]) -> None:
        """The same backward for both registrations (it calls DualOps, which pick again)."""
        self.custom.register_autograd(backward, setup_context=setup_context)
        if self.triton is not None:
            self.triton.register_autograd(backward, setup_context=setup_context)

    def __call__(self, *args: Any) -> Any:
        if self.triton is not None and _triton_in_force(_device_type(args)):
            return self.triton(*args)
        return self.custom(*args)

    def __repr__(self) -> str:
        return f"DualOp(dlgpu::{self.name}, {TRITON_NAMESPACE}::{self.name})"


def dlgpu_op(name: str, *, mutates_args: Iterable[str] | str = ()) -> Callable[[Callable[..., Any]], DualOp]:
    """Decorator: register ``fn`` as ``dlgpu::<name>`` and its Triton twin ``dlgpu_triton::<name>``."""

    def decorate(fn: Callable[..., Any]) -> DualOp:
        return DualOp(name, fn, mutates_args)

    return decorate


_PLAIN = (torch.Tensor, torch.nn.Parameter)  # the eager types: neither fake nor functional wrappers


def _storage_key(t: torch.Tensor) -> int:
    if type(t) in _PLAIN and not torch._is_functional_tensor(t):  # eager: skip is_fake's 1.3 us
        return t.untyped_storage().data_ptr()
    from torch._subclasses.fake_tensor import is_fake

    if is_fake(t):  # fake/functional tensors have no data pointer; their storages still tell aliases
        return t.untyped_storage()._cdata
    return t.untyped_storage().data_ptr()


def run(op: str, *args: Any, **kwargs: Any) -> Any:
    """Call a dlgpu op through the dispatch and hand back fresh tensors.

    A custom op's outputs may not alias its inputs, so an output that shares storage with
    an input (an identity op, say) is cloned.
    """
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    inputs += [a for a in kwargs.values() if isinstance(a, torch.Tensor)]
    ptrs = {_storage_key(t) for t in inputs if t.numel()}

    def fresh(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            return o.clone() if o.numel() and _storage_key(o) in ptrs else o
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


# torch's autocast casts only these (float64 stays float64)
_AUTOCAST_ELIGIBLE = (torch.float16, torch.bfloat16, torch.float32)


def autocast(policy: str, *tensors: Any, devices: tuple[str, ...] = ("cpu", "cuda")) -> tuple:
    """``tensors`` as torch's autocast hands them to an op of ``policy`` inside an autocast region:
    ``"lower"`` (the matmul-like ops: linear, conv, the recurrent layers) casts them to the region's
    dtype, ``"float32"`` (softmax, log_softmax, softplus, the losses) to float32, as torch does for its
    own ops of those kinds; ``devices`` limits the policy to the devices where torch has it (torch's
    CPU autocast leaves softmax in the input dtype, its CUDA autocast computes it in float32). Only
    float16/bfloat16/float32 tensors are cast (float64 and integer tensors stay); None and non-tensors
    pass through. Outside a region the tensors come back unchanged. The cast is differentiable:
    gradients reach float32 parameters as float32."""
    dev = next((t.device.type for t in tensors if isinstance(t, torch.Tensor)), None)
    if dev not in devices or not torch.is_autocast_enabled(dev):
        return tensors
    return tuple(t.to(autocast_dtype(policy, t, devices)) if isinstance(t, torch.Tensor) else t for t in tensors)


def autocast_dtype(policy: str, t: torch.Tensor, devices: tuple[str, ...] = ("cpu", "cuda")) -> torch.dtype:
    """The dtype ``autocast(policy, t, devices=devices)`` gives ``t``, without casting it."""
    dev = t.device.type
    if dev not in devices or t.dtype not in _AUTOCAST_ELIGIBLE or not torch.is_autocast_enabled(dev):
        return t.dtype
    return torch.get_autocast_dtype(dev) if policy == "lower" else torch.float32


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
