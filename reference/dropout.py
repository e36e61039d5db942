"""Inverted dropout: the oracle.

During training each element is kept with probability 1 - p and zeroed otherwise; the
kept ones are scaled by 1 / (1 - p) so that E[y] = x and inference needs no rescaling:

    m ~ Bernoulli(1 - p)  (True = keep)         y = x * m / (1 - p)         dx = dy * m / (1 - p)

p == 1 drops everything (y = 0; the scale is taken as 0, never 1 / 0); p == 0 is the identity.
Like torch, the mask enters as a multiplication, so a NaN or inf in a dropped position still
gives NaN (x * 0), and a dropped negative element gives -0.0.

The seed -> mask map is backend-specific: here ``dropout_mask`` draws from NumPy's
``default_rng(seed)``, while the GPU backends draw from their own counter-based RNG (Philox),
so the same seed gives a different mask on each backend. Backends are therefore compared with
an explicit ``mask`` passed to both sides, never through a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import check_array, check_float, check_probability, check_same_shape


def dropout_mask(shape: Sequence[int], p: float, seed: int) -> np.ndarray:
    """mask = default_rng(seed).random(shape) >= p: bool, True = keep (probability 1 - p).

    Args:
        shape: the shape of the tensor to drop from.
        p: drop probability in [0, 1].
        seed: non-negative int for np.random.default_rng.
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
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed)).random(tuple(int(s) for s in shape)) >= p


def _resolve_mask(x: np.ndarray, name: str, p: float, mask: np.ndarray | None, seed: int | None) -> np.ndarray:
    """The keep-mask for ``x``: the given one (checked) or the one drawn from ``seed``."""
    if (mask is None) == (seed is None):
        given = "both" if mask is not None else "neither"
        raise ValueError(f"exactly one of mask or seed must be given, got {given}")
    if mask is None:
        return dropout_mask(x.shape, p, seed)
    check_array(mask, "mask")
    if np.dtype(mask.dtype) != np.bool_:
        raise TypeError(f"mask must have dtype bool (True = keep), got {mask.dtype}")
    check_same_shape(x, mask, name, "mask")
    return mask


def _scale(p: float, dtype: np.dtype) -> np.generic:
    """1 / (1 - p), or 0 for p == 1 (every element dropped: no division by zero)."""
    return dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))


def dropout_forward(
    x: np.ndarray, p: float = 0.5, mask: np.ndarray | None = None, seed: int | None = None
) -> np.ndarray:
    """y = x * m / (1 - p)  (inverted dropout).

    Args:
        x: input of any shape.
        p: drop probability in [0, 1]; p == 1 gives zeros, p == 0 the identity.
        mask: bool keep-mask with x's shape (True = keep), or None to draw it from ``seed``.
        seed: seed for ``dropout_mask(x.shape, p, seed)``; exactly one of mask or seed.
    Returns:
        y: x's shape and dtype.
    """
    check_float(x, "x")
    p = check_probability(p, "p")
    m = _resolve_mask(x, "x", p, mask, seed)
    keep = m.astype(x.dtype) * _scale(p, x.dtype)  # 0 or 1/(1-p) per element
    return x * keep


def dropout_backward(
    dy: np.ndarray, p: float = 0.5, mask: np.ndarray | None = None, seed: int | None = None
) -> np.ndarray:
    """dx = dy * m / (1 - p), with the forward's mask (or the same seed).

    Args:
        dy: upstream gradient, the forward input's shape.
        p, mask, seed: exactly as given to the forward.
    Returns:
        dx: dy's shape and dtype.
    """
    check_float(dy, "dy")
    p = check_probability(p, "p")
    m = _resolve_mask(dy, "dy", p, mask, seed)
    keep = m.astype(dy.dtype) * _scale(p, dy.dtype)  # 0 or 1/(1-p) per element
    return dy * keep
