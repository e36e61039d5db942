"""Launch helpers shared by every Numba kernel file (one place, not copied per op).

Numba kernels take C-contiguous float32/float64 arrays; the public wrappers call
``prepare`` on every array argument, which checks the dtype and copies only when the
input is non-contiguous (torch CPU tensors arrive as zero-copy numpy views).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...reference._validate import check_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# One decorator configuration for every kernel: compiled once per dtype signature and cached
# on disk, fastmath off so float32 results stay within rounding of the float64 reference.
JIT = dict(cache=True, nogil=True)
PJIT = dict(JIT, parallel=True)


def prepare(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a C-contiguous numpy array of a float dtype supported by the Numba kernels.

    With ``dtype``, ``x`` must already have that dtype (no silent casts between arguments).
    """
    check_array(x, name)
    a = np.asarray(x)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64 for the numba backend, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} like the other inputs, got {a.dtype}")
    return np.ascontiguousarray(a)


def prepare_optional(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray | None:
    """``prepare`` for an argument that may be None."""
    return None if x is None else prepare(x, name, dtype)
