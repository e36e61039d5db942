"""Array-level ops: every forward/backward pair of the reference, dispatched to a backend.

``dlgpu.ops.conv2d_forward(x, w, stride=2)`` has the reference's signature and docstring plus a
keyword-only ``backend=`` (see ``dlgpu.ops._dispatch`` for how a backend is chosen). Inputs may be
numpy arrays, torch tensors (CPU; CUDA for the GPU backends) or cupy arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._dispatch import (
    BACKENDS,
    OPS,
    BackendError,
    BackendStatus,
    backend_module,
    backends,
    call,
    get_backend,
    implements,
    op_table,
    resolve,
    set_backend,
    use_backend,
)


def _make(op: str) -> Callable[..., Any]:
    def op_fn(*args: Any, backend: str | None = None, **kwargs: Any) -> Any:
        return call(op, *args, backend=backend, **kwargs)

    ref = backend_module("numpy", OPS[op])
    ref_fn = getattr(ref, op, None) if ref is not None else None
    if ref_fn is not None:
        op_fn = functools.wraps(ref_fn)(op_fn)
        op_fn.__doc__ = (ref_fn.__doc__ or "") + "\n\nDispatched: pass backend= to pick one (see dlgpu.ops)."
    op_fn.__name__ = op_fn.__qualname__ = op
    op_fn.__module__ = __name__
    return op_fn


for _op in OPS:
    globals()[_op] = _make(_op)
del _op

__all__ = [
    "BACKENDS",
    "OPS",
    "BackendError",
    "BackendStatus",
    "backends",
    "call",
    "get_backend",
    "implements",
    "op_table",
    "resolve",
    "set_backend",
    "use_backend",
    *OPS,
]
