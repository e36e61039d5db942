"""Launch helpers shared by every Numba kernel file (one place, not copied per op).

Numba kernels take C-contiguous float32/float64 arrays; the public wrappers call
``prepare`` on every array argument, which checks the dtype and copies only when the
input is non-contiguous (torch CPU tensors arrive as zero-copy numpy views).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
from numba import njit

from ...reference._validate import check_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# One decorator configuration for every kernel: compiled once per dtype signature and cached
# on disk, fastmath off so float32 results stay within rounding of the float64 reference.
JIT = dict(cache=True, nogil=True)
PJIT = dict(JIT, parallel=True)

# ------------------------------------------------------------------ parallel or serial, by size
# Waking numba's thread pool has a fixed cost, paid by every parallel call (more so with the
# OMP_WAIT_POLICY=PASSIVE that dlgpu sets, see dlgpu/__init__.py): on a 2-core VM a relu of
# 33k floats took 62 us with two threads and 10 us with one in one process (11-12 us both in
# another: it depends on whether the pool is still spinning), and two threads win only past ~10^6
# elements for relu, ~3x10^5 for sigmoid (time_cpu, numba's omp layer). So the elementwise, loss,
# pooling, dropout and regulariser kernels are compiled twice, and a call whose largest array is
# smaller than the kernel's threshold runs the serial twin: the same code with prange as range,
# and the same results (their reductions sum fixed chunks, whatever the threads). On `dlgpu bench
# --quick` (arrays of 33k-65k elements) that made those rows 1.4x faster (geometric mean).
# The GEMM-like kernels (conv, linear, locally connected) stay parallel: their work is not their
# arrays' size. The recurrent kernels' per-step passes are serial for the same reason (rnn.py).
SERIAL_BELOW = 1 << 18  # elements; kernels with a few flops per element (exp, log, rows)
SERIAL_BELOW_CHEAP = 1 << 20  # a compare or a multiply per element: memory-bound, the pool pays later
SERIAL_BELOW_HEAVY = 1 << 15  # many loads per element (a 3x3 max-pool window, a K-class row's margins)
_forced: list[int | None] = [None]  # parallel_threshold's override


class ParallelKernel:
    """A prange kernel as a parallel and a serial numba dispatcher, picked per call by the size of
    its largest array argument. Called like the kernel; only from Python (njit code calls njit code)."""

    def __init__(self, fn: Any, serial_below: int, options: dict[str, Any]) -> None:
        self.parallel = njit(**dict(PJIT, **options))(fn)
        # error_model: numba compiles a prange body with numpy's (x / 0 is inf, no check); the
        # default python model's zero-division test keeps a loop with a division from vectorising
        # (pseudo-Huber's serial twin ran 5x slower than the parallel code on one thread)
        self.serial = njit(**dict(JIT, error_model="numpy", **options))(_twin(fn, "_serial"))
        self.serial_below = serial_below
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        n = 0
        for a in args:
            if isinstance(a, np.ndarray) and a.size > n:
                n = a.size
        limit = self.serial_below if _forced[0] is None else _forced[0]
        return (self.serial if n < limit else self.parallel)(*args)


def _twin(fn: Any, suffix: str) -> Any:
    """A copy of ``fn`` under another qualified name: numba names its disk cache by the function,
    and the two compilations of one function must not share (or overwrite) an entry."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    twin.__qualname__, twin.__module__ = fn.__qualname__ + suffix, fn.__module__
    return twin


def pjit(serial_below: int = SERIAL_BELOW, **options: Any) -> Any:
    """Decorator: ``fn`` as a ``ParallelKernel`` (``options`` are numba's, e.g. ``fastmath``)."""
    return lambda fn: ParallelKernel(fn, serial_below, options)


@contextlib.contextmanager
def parallel_threshold(elements: int) -> Iterator[None]:
    """Inside the block every ParallelKernel runs serially below ``elements`` (0: always in parallel;
    the tests use it to check the parallel code at small sizes)."""
    _forced[0] = int(elements)
    try:
        yield
    finally:
        _forced[0] = None


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
