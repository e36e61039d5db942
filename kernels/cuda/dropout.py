"""Inverted dropout through CUDA C (dropout.cu): same API as dlgpu.reference.dropout.

With a ``seed`` the keep-mask comes from Philox4x32-10 keyed by the seed (mod 2**64) and counted by
the element's flat index (see dropout.cu); it is never stored, and the backward regenerates it from
the same seed. ``dropout_mask`` returns exactly that mask (on the device), ``dropout_mask_host`` the
same with NumPy. This seed -> mask map is this backend's
own (the reference uses NumPy's default_rng, Triton its tl.rand), so backends are compared through
an explicit ``mask``. Inputs: cupy arrays or torch CUDA tensors (float32, float16, bfloat16 on
torch); a mask is a bool array of the same kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...reference._validate import check_array, check_float, check_probability, check_same_shape
from ._common import CTYPES, FLOAT_DTYPES, Call, Module, cdiv, dtype_name, f32, i64, ptr, round_to_dtype, u64

_MASK64 = (1 << 64) - 1

NAME_EXPRESSIONS: tuple[str, ...] = (
    *(f"dropout_kernel<{CTYPES[d]}, {m}>" for d in FLOAT_DTYPES for m in ("false", "true")),
    "dropout_mask_kernel",
)
MODULE = Module("dropout", NAME_EXPRESSIONS)

THREADS = 256
MAX_BLOCKS = 65536


def grid(n: int) -> tuple[int]:
    """Blocks for the grid-stride kernels (4 elements per thread and step)."""
    return (max(1, min(cdiv(cdiv(n, 4), THREADS), MAX_BLOCKS)),)


def _check_seed(seed: Any) -> int:
    """The reference's seed checks and messages; the seed mod 2**64."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed) & _MASK64


def scale_in(dtype: str, p: float) -> float:
    """1 / (1 - p) rounded to ``dtype`` (0 for p == 1), as the reference's ``dtype.type(...)``."""
    return round_to_dtype(0.0 if p == 1.0 else 1.0 / (1.0 - p), dtype)


def dropout_mask(shape: Sequence[int], p: float, seed: int, like: Any | None = None) -> Any:
    """mask[i] = u(seed, i) >= p: the bool keep-mask the seeded kernels draw (True = keep).

    Args:
        shape: the shape of the tensor to drop from.
        p: drop probability in [0, 1].
        seed: non-negative int (taken mod 2**64).
        like: an array whose kind (cupy / torch) and device the mask gets; default a cupy array on
            the current device.
    Returns:
        mask: bool array of ``shape``.
    """
    p = check_probability(p, "p")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    ok = isinstance(shape, (tuple, list)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape
    )
    if not ok:
        raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    seed = _check_seed(seed)
    if like is None:
        import cupy

        like = cupy.empty(0, dtype=np.float32)
    call = Call(like=like)
    out = call.empty(tuple(int(s) for s in shape), "bool")
    n = math.prod(out.shape)
    if n:
        call.launch(MODULE, "dropout_mask_kernel", grid(n), (THREADS,), (ptr(out), i64(n), f32(p), u64(seed)))
    return out


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 on the host (NumPy), as common.cuh: counter [..., 4] uint32 words, key (k0, k1);
    returns [..., 4] uint32. Matches Random123's known-answer vectors (see the tests)."""
    m32 = np.uint64(0xFFFFFFFF)
    c = [np.asarray(counter[..., i], dtype=np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0] & 0xFFFFFFFF), np.uint64(key[1] & 0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]  # < 2^64: exact
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & m32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & m32]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m32, (k1 + np.uint64(0xBB67AE85)) & m32
    return np.stack(c, axis=-1).astype(np.uint32)


def dropout_mask_host(shape: Sequence[int], p: float, seed: int) -> np.ndarray:
    """The keep-mask of ``dropout_mask`` computed on the host with NumPy (bool array of ``shape``):
    element i is word i % 4 of Philox(counter = i // 4, key = seed), its top 24 bits / 2^24 >= p."""
    p = check_probability(p, "p")
    seed = _check_seed(seed)
    n = math.prod(int(s) for s in shape)
    groups = np.arange(cdiv(n, 4), dtype=np.uint64)
    ctr = np.zeros((groups.size, 4), dtype=np.uint64)
    ctr[:, 0], ctr[:, 1] = groups & np.uint64(0xFFFFFFFF), groups >> np.uint64(32)
    words = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]
    u = (words >> np.uint32(8)).astype(np.float64) / 16777216.0  # exact, as the kernel's float
    return (u >= float(np.float32(p))).reshape(tuple(int(s) for s in shape))


def _apply(x: Any, name: str, p: float, mask: Any | None, seed: int | None) -> Any:
    """x * (m * scale) with the given mask or the one drawn from ``seed``; checks as the reference."""
    if (mask is None) == (seed is None):
        given = "both" if mask is not None else "neither"
        raise ValueError(f"exactly one of mask or seed must be given, got {given}")
    if mask is None:
        seed = _check_seed(seed)
    else:
        check_array(mask, "mask")
        if dtype_name(mask.dtype) != "bool":
            raise TypeError(f"mask must have dtype bool (True = keep), got {dtype_name(mask.dtype)}")
        check_same_shape(x, mask, name, "mask")
    call = Call(**{name: x, "mask": mask})
    x = call.prepare(x, name)
    if mask is not None:
        mask = call.prepare(mask, "mask", dtypes=("bool",))
    dt = dtype_name(x.dtype)
    out = call.empty(x.shape, dt)
    n = math.prod(x.shape)
    if n:
        kern = f"dropout_kernel<{CTYPES[dt]}, {'false' if mask is None else 'true'}>"
        args = (ptr(x), ptr(mask), ptr(out), i64(n), f32(p), u64(seed or 0), f32(scale_in(dt, p)))
        call.launch(MODULE, kern, grid(n), (THREADS,), args)
    return out


def dropout_forward(x: Any, p: float = 0.5, mask: Any | None = None, seed: int | None = None) -> Any:
    """y = x * m / (1 - p) (inverted dropout).

    Args:
        x: any shape; p: drop probability in [0, 1]; mask: bool keep-mask of x's shape, or None to
            draw it from ``seed`` (Philox, see the module docstring); exactly one of mask or seed.
    Returns:
        y: x's shape, dtype and kind.
    """
    check_float(x, "x")
    p = check_probability(p, "p")
    return _apply(x, "x", p, mask, seed)


def dropout_backward(dy: Any, p: float = 0.5, mask: Any | None = None, seed: int | None = None) -> Any:
    """dx = dy * m / (1 - p), with the forward's mask or the mask regenerated from the same seed.

    Returns:
        dx: dy's shape, dtype and kind.
    """
    check_float(dy, "dy")
    p = check_probability(p, "p")
    return _apply(dy, "dy", p, mask, seed)
