"""Inverted dropout: Numba CPU kernels, same API as dlgpu.reference.dropout.

    y = x * m / (1 - p)        dx = dy * m / (1 - p)        m = keep-mask (True = keep)

With an explicit ``mask`` the results equal the reference's exactly (same product
``x * (m * scale)`` in x's dtype, scale = 1 / (1 - p), or 0 for p == 1).

With a ``seed`` the mask comes from a counter-based RNG, never stored: element ``i`` (its
flat C-order index in x) is kept when

    key  = mix64(seed mod 2**64  XOR  0x6A09E667F3BCC909)
    bits = mix64(key + i * 0x9E3779B97F4A7C15 mod 2**64) >> 11          (53 random bits)
    u    = bits / 2**53  in [0, 1)          keep  <=>  u >= p

where ``mix64`` is the SplitMix64 finaliser (z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31, all mod 2**64). Each element's draw
depends on (seed, i) alone, so the mask is the same for any thread count or chunking, the
forward never writes it out, and the backward regenerates it from the same seed.
``dropout_mask(shape, p, seed)`` returns exactly this mask.

The seed -> mask map is this backend's own: it differs from the reference's (NumPy's
``default_rng``) and from the GPU backends' (Philox), as each backend has its own RNG.
Compare backends through an explicit ``mask``, never through a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from ...reference._validate import check_array, check_float, check_probability, check_same_shape
from ._common import JIT, SERIAL_BELOW_CHEAP, pjit, prepare

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (2**64 / golden ratio, odd)
_SALT = 0x6A09E667F3BCC909  # keeps seed 0 away from key mix64(0) = 0
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_MASK64 = (1 << 64) - 1

# ------------------------------------------------------------------------ RNG


@njit(**JIT, inline="always")
def _mix64(z):  # noqa: ANN001, ANN202
    # uint64 constants throughout: numba turns uint64-with-int64 arithmetic into float64
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**JIT, inline="always")
def _keep(key, i, threshold):  # noqa: ANN001, ANN202
    # bits >= ceil(p * 2**53) is exactly u = bits / 2**53 >= p, without an int -> float conversion
    return (_mix64(key + np.uint64(i) * _GAMMA) >> _S11) >= threshold


def _seed_key(seed: int) -> np.uint64:
    """The per-seed key of the hash (seed checked with the reference's messages)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    # np.uint64 again: a bare int would be typed int64 by the kernels when it fits
    return np.uint64(_mix64(np.uint64((int(seed) & _MASK64) ^ _SALT)))


def _threshold(p: float) -> np.uint64:
    """ceil(p * 2**53): p * 2**53 is exact in float64, so keep <=> bits >= it <=> u >= p."""
    return np.uint64(int(np.ceil(p * 2.0**53)))


# ------------------------------------------------------------------------ kernels


@pjit()
def _dropout_mask_kernel(key, threshold, out):  # noqa: ANN001, ANN202
    for i in prange(out.size):
        out[i] = _keep(key, i, threshold)


@pjit()
def _dropout_seed_kernel(x, key, threshold, keep_scale, drop_scale, out):  # noqa: ANN001, ANN202
    # mask drawn and applied in one pass, never stored; forward and backward share this kernel
    for i in prange(x.size):
        out[i] = x[i] * (keep_scale if _keep(key, i, threshold) else drop_scale)


@pjit(SERIAL_BELOW_CHEAP)
def _dropout_mask_apply_kernel(x, mask, keep_scale, drop_scale, out):  # noqa: ANN001, ANN202
    for i in prange(x.size):
        out[i] = x[i] * (keep_scale if mask[i] else drop_scale)


# ------------------------------------------------------------------------ public


def dropout_mask(shape: Sequence[int], p: float, seed: int) -> np.ndarray:
    """mask[i] = hash(seed, i) / 2**53 >= p: bool, True = keep (probability 1 - p).

    The hash is this module's counter-based RNG (see the module docstring), not the
    reference's ``default_rng``: the same seed gives a different mask than the reference.

    Args:
        shape: the shape of the tensor to drop from.
        p: drop probability in [0, 1].
        seed: non-negative int (taken mod 2**64).
    Returns:
        mask: bool array of ``shape``; element i of its C-order flattening uses counter i.
    """
    p = check_probability(p, "p")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    ok = isinstance(shape, (tuple, list)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape
    )
    if not ok:
        raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    key = _seed_key(seed)
    out = np.empty(tuple(int(s) for s in shape), dtype=np.bool_)
    _dropout_mask_kernel(key, _threshold(p), out.reshape(-1))
    return out


def _apply(x: np.ndarray, name: str, p: float, mask: np.ndarray | None, seed: int | None) -> np.ndarray:
    """x * (m * scale) with the given mask or the one hashed from ``seed``; checks as the reference."""
    if (mask is None) == (seed is None):
        given = "both" if mask is not None else "neither"
        raise ValueError(f"exactly one of mask or seed must be given, got {given}")
    if mask is None:
        key = _seed_key(seed)
    else:
        check_array(mask, "mask")
        if np.dtype(mask.dtype) != np.bool_:
            raise TypeError(f"mask must have dtype bool (True = keep), got {mask.dtype}")
        check_same_shape(x, mask, name, "mask")
    x = prepare(x, name)
    # the reference's per-element factor m * scale in x's dtype: scale or 0 * scale (NaN if
    # scale overflowed to inf), so every product rounds exactly as the reference's
    scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    keep_scale, drop_scale = scale, x.dtype.type(0) * scale
    out = np.empty_like(x)
    if mask is None:
        _dropout_seed_kernel(x.reshape(-1), key, _threshold(p), keep_scale, drop_scale, out.reshape(-1))
    else:
        m = np.ascontiguousarray(mask).reshape(-1)
        _dropout_mask_apply_kernel(x.reshape(-1), m, keep_scale, drop_scale, out.reshape(-1))
    return out


def dropout_forward(
    x: np.ndarray, p: float = 0.5, mask: np.ndarray | None = None, seed: int | None = None
) -> np.ndarray:
    """y = x * m / (1 - p)  (inverted dropout).

    Args:
        x: input of any shape.
        p: drop probability in [0, 1]; p == 1 gives zeros, p == 0 the identity.
        mask: bool keep-mask with x's shape (True = keep), or None to hash it from ``seed``.
        seed: seed of ``dropout_mask(x.shape, p, seed)`` (this backend's RNG); exactly one of mask or seed.
    Returns:
        y: x's shape and dtype.
    """
    check_float(x, "x")
    p = check_probability(p, "p")
    return _apply(x, "x", p, mask, seed)


def dropout_backward(
    dy: np.ndarray, p: float = 0.5, mask: np.ndarray | None = None, seed: int | None = None
) -> np.ndarray:
    """dx = dy * m / (1 - p), with the forward's mask (or the mask regenerated from the same seed).

    Args:
        dy: upstream gradient, the forward input's shape.
        p, mask, seed: exactly as given to the forward.
    Returns:
        dx: dy's shape and dtype.
    """
    check_float(dy, "dy")
    p = check_probability(p, "p")
    return _apply(dy, "dy", p, mask, seed)
