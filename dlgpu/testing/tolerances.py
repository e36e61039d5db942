"""The one tolerance table: per op, per dtype.

An element passes when ``|out - ref| <= rtol * |ref| + atol * max|ref|``: ``rtol`` is the
relative error allowed where the reference is large, and ``atol`` is relative to the
reference's largest magnitude so that elements which cancel to ~0 inside a long sum
(a conv output, a GEMM) are judged on the scale of the terms, not of their tiny sum.
Both are unit-free, so one entry serves every shape.

The reference is always computed in float64. The dtype is the one the kernel computed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Relative tolerance pair, see the module docstring."""

    rtol: float
    atol: float


# Defaults per dtype. float32 rounding is 6e-8 per op; 2e-5 leaves room for long sums
# (K ~ 1e3 terms) and still lands far under the 1e-4 the library promises.
DEFAULT: dict[str, Tolerance] = {
    "float64": Tolerance(1e-9, 1e-11),
    "float32": Tolerance(2e-5, 2e-6),
    "tf32": Tolerance(3e-3, 3e-4),
    "float16": Tolerance(1e-2, 2e-3),
    "bfloat16": Tolerance(2e-2, 8e-3),
}

# Per-op overrides, only where an op's arithmetic needs it; each with its reason.
OVERRIDES: dict[tuple[str, str], Tolerance] = {
    # T sequential steps compound rounding through the recurrence (and its transpose in BPTT).
    ("rnn", "float32"): Tolerance(1e-4, 1e-5),
    ("lstm", "float32"): Tolerance(1e-4, 1e-5),
    ("gru", "float32"): Tolerance(1e-4, 1e-5),
    ("mgu", "float32"): Tolerance(1e-4, 1e-5),
    # Central differences in float64 with h ~ 1e-6 carry ~1e-9 truncation + rounding error.
    ("finite_difference", "float64"): Tolerance(1e-6, 1e-7),
}

DTYPE_ALIASES = {
    "fp64": "float64",
    "double": "float64",
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}


def dtype_name(dtype: object) -> str:
    """Canonical dtype name ('float32', 'bfloat16', ...) for numpy/torch dtypes and strings."""
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__.startswith("torch"):
        name = str(dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(dtype).name  # numpy scalar types and dtypes
        except TypeError:
            name = str(dtype)
    name = DTYPE_ALIASES.get(name, name)
    if name not in DEFAULT:
        raise ValueError(f"dtype must be one of {', '.join(DEFAULT)}; got {dtype!r}")
    return name


def tolerance(op: str, dtype: object) -> Tolerance:
    """The tolerance for ``op`` computed in ``dtype`` (family name, e.g. 'conv2d', 'lstm')."""
    name = dtype_name(dtype)
    return OVERRIDES.get((op, name), DEFAULT[name])
