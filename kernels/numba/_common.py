"""Launch helpers shared by every Numba kernel file (one place, not copied per op).

Numba kernels take C-contiguous float32/float64 arrays; the public wrappers call
``prepare`` on every array argument, which checks the dtype and copies only when the
input is non-contiguous (torch CPU tensors arrive as zero-copy numpy views).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ...reference._validate import check_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# One decorator configuration for every kernel: compiled once per dtype signature and cached
# on disk, fastmath off so float32 results stay within rounding of the float64 reference.
JIT = dict(cache=True, nogil=True)
PJIT = dict(JIT, parallel=True)

# ------------------------------------------------------------------ the disk cache
# numba keys a cached kernel on its own file's content only, but our kernels inline helpers from
# sibling files (_math.py, rnn.py, activations.py): after a change to one of those (a git pull, a
# branch switch in an editable install) the cache would hand back machine code built from the old
# helper, silently. So for the files of this folder the stamp is the hash of every source file in
# it: any edit here recompiles every kernel here once. Other code's numba caches are left alone.
_HERE = os.path.dirname(os.path.abspath(__file__))


def _folder_stamp() -> str:
    """sha256 over the names and contents of this folder's .py files."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


_FOLDER_STAMP = _folder_stamp()


def _install_cache_locators() -> bool:
    """Put folder-stamped versions of numba's file-backed cache locators first in its search list
    (they decline files outside this folder). False, and numba's own behaviour, where numba's
    caching internals are not the ones this was written against (numba 0.68)."""
    try:
        from numba.core import caching

        def find(name: str) -> Any:  # older numba spells these with a leading underscore
            return getattr(caching, name, None) or getattr(caching, "_" + name)

        bases = tuple(find(n) for n in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"))
        classes = find("CacheImpl")._locator_classes
    except (ImportError, AttributeError):
        return False
    if any(getattr(c, "_dlgpu", False) for c in classes):
        return True
    ours = []
    for base in bases:

        class Locator(base):
            _dlgpu = True

            def get_source_stamp(self) -> Any:
                return (super().get_source_stamp(), _FOLDER_STAMP)

            @classmethod
            def from_function(cls, py_func: Any, py_file: str) -> Any:
                if os.path.dirname(os.path.abspath(py_file)) != _HERE:
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = Locator.__qualname__ = "Dlgpu" + base.__name__
        ours.append(Locator)
    classes[:0] = ours
    return True


CACHE_STAMPED = _install_cache_locators()


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
    out = np.ascontiguousarray(a)
    return out if out.ndim == a.ndim else out.reshape(a.shape)  # ascontiguousarray makes 0-d arrays 1-d


def prepare_optional(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray | None:
    """``prepare`` for an argument that may be None."""
    return None if x is None else prepare(x, name, dtype)
