"""dlgpu: hand-written kernels for the building blocks of deep networks.

Importing ``dlgpu`` is cheap: torch, numba and triton load only when a submodule that
needs them is first used, so ``dlgpu.reference`` stays a pure-NumPy package.

    dlgpu.backends()            # which backends can run here, and why not
    dlgpu.set_backend("numba")  # or: with dlgpu.use_backend("numpy"): ...; or DLGPU_BACKEND=...
    dlgpu.ops.conv2d_forward(x, w, stride=2)   # array level, any backend
    dlgpu.functional.conv2d(x, w, stride=2)    # torch custom op with autograd
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Numba's OpenMP workers and torch's spin-wait for work by default, and on a machine with few
# cores each pool's spinning starves the other: a small CPU training step measured 159 ms instead of
# 3 ms. Sleeping idle workers cost little here. Set before either runtime starts, unless the user chose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "backends": "dlgpu.ops._dispatch",
    "set_backend": "dlgpu.ops._dispatch",
    "get_backend": "dlgpu.ops._dispatch",
    "use_backend": "dlgpu.ops._dispatch",
    "BackendError": "dlgpu.ops._dispatch",
}
_SUBMODULES = ("ops", "functional", "nn", "models", "reference", "kernels", "testing", "bench")

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"dlgpu.{name}")
    raise AttributeError(f"module 'dlgpu' has no attribute {name!r}")
