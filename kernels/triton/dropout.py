"""Inverted dropout: Triton kernels, same API as dlgpu.reference.dropout.

    y = x * m / (1 - p)        dx = dy * m / (1 - p)        m = keep-mask (True = keep)

With a ``seed`` the mask comes from Triton's counter-based Philox generator and is never stored:
element ``i`` (its flat C-order index) is kept when

    tl.rand(seed, i) >= p        (Philox4x32-10 keyed by the seed, counter i; float32 in [0, 1))

so the forward draws it, the backward regenerates the same mask from the same seed, and it does
not depend on the block size or the launch. ``dropout_mask(shape, p, seed)`` returns exactly this
mask (for tests). Seeds are taken mod 2**64. This seed -> mask map is Triton's Philox: it differs
from the reference's (NumPy's ``default_rng``) and the Numba backend's (SplitMix64), so backends
are compared through an explicit ``mask``, never through a seed.

With an explicit ``mask`` (a bool tensor) the kernel reads it instead; the product is the
reference's ``x * (m * scale)`` with scale = 1 / (1 - p) in x's dtype (0 for p == 1), so a
dropped NaN/inf still gives NaN and a dropped negative gives -0.0, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from ...reference._validate import check_array, check_float, check_probability, check_same_shape
from ._common import INTERPRET, autotune_configs, cdiv, prepare, wrap_triton

_MASK64 = (1 << 64) - 1

# Napkin math: read x (and a 1-byte mask when given), write y: 8-9 B/elem fp32, 4-5 B bf16, so
# ~0.27 ms per 1e8 fp32 elements of HBM traffic on an H100. The Philox draw (10 rounds, ~80 integer
# instructions per element; tl.rand keeps one of the four words a counter yields) is ~0.5 ms per
# 1e8 at ~15 T int32 ops/s: the seeded path is bound by the RNG, the explicit-mask path by memory.
_CONFIGS = [
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 2048}, num_warps=8),
    triton.Config({"BLOCK": 4096}, num_warps=8),
]


@triton.jit
def _keep(seed, offs, p):
    # offs are int64 whatever the size, so the Philox counter (lo, hi words) of element i is
    # always (i mod 2^32, i >> 32): the same mask for any block size
    return tl.rand(seed, offs) >= p


@triton.autotune(configs=autotune_configs(_CONFIGS), key=["N"])
@triton.jit(do_not_specialize=["seed"])
def _dropout_kernel(
    x_ptr,  # [N] input (x forward, dy backward), contiguous
    mask_ptr,  # [N] uint8 keep-mask (read when HAS_MASK), or a dummy pointer
    y_ptr,  # [N] output, x's dtype
    N,  # number of elements
    p,  # drop probability (fp32)
    seed,  # Philox key (when HAS_MASK is False)
    keep_scale,  # factor for kept elements: 1 / (1 - p) rounded to x's dtype (0 for p == 1)
    drop_scale,  # factor for dropped ones: 0 * keep_scale (NaN if the scale overflowed, as the reference)
    HAS_MASK: tl.constexpr,  # read the mask instead of drawing it
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < N
    if HAS_MASK:
        keep = tl.load(mask_ptr + offs, mask=inb, other=0) != 0
    else:
        keep = _keep(seed, offs, p)
    x = tl.load(x_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    y = x * tl.where(keep, keep_scale, drop_scale)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=inb)


@triton.autotune(configs=autotune_configs(_CONFIGS), key=["N"])
@triton.jit(do_not_specialize=["seed"])
def _dropout_mask_kernel(
    m_ptr,  # [N] uint8 output, 1 = keep
    N,  # number of elements
    p,  # drop probability (fp32)
    seed,  # Philox key
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    tl.store(m_ptr + offs, _keep(seed, offs, p).to(tl.uint8), mask=offs < N)


# ------------------------------------------------------------------------ public


def _check_seed(seed) -> int:
    """The seed as the kernels take it (reference's checks and messages), mod 2**64."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed) & _MASK64


def _grid(n: int):
    return lambda meta: (cdiv(n, meta["BLOCK"]),)


def dropout_mask(shape: Sequence[int], p: float, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """mask[i] = tl.rand(seed, i) >= p: bool, True = keep (probability 1 - p).

    The draw is Triton's Philox (see the module docstring), not the reference's ``default_rng``:
    the same seed gives a different mask than the reference.

    Args:
        shape: the shape of the tensor to drop from.
        p: drop probability in [0, 1].
        seed: non-negative int (taken mod 2**64).
        device: where to put the mask; default CUDA when there is one, else the CPU (interpreter).
    Returns:
        mask: bool tensor of ``shape``; element i of its C-order flattening uses counter i.
    """
    p = check_probability(p, "p")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    ok = isinstance(shape, (tuple, list, torch.Size)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape
    )
    if not ok:
        raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    seed = _check_seed(seed)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda" and not INTERPRET:
        raise ValueError("device must be a CUDA device for the triton backend (or set TRITON_INTERPRET=1)")
    out = torch.empty(tuple(int(s) for s in shape), dtype=torch.bool, device=device)
    if out.numel():
        wrap_triton(_dropout_mask_kernel)[_grid(out.numel())](out.view(torch.uint8), out.numel(), p, seed)
    return out


def _apply(x, name: str, p: float, mask, seed) -> torch.Tensor:
    """x * (m * scale) with the given mask or the one drawn from ``seed``; checks as the reference."""
    if (mask is None) == (seed is None):
        given = "both" if mask is not None else "neither"
        raise ValueError(f"exactly one of mask or seed must be given, got {given}")
    if mask is None:
        seed = _check_seed(seed)
    else:
        check_array(mask, "mask")
        is_bool = mask.dtype == torch.bool if isinstance(mask, torch.Tensor) else np.dtype(mask.dtype) == np.bool_
        if not is_bool:
            dtype = str(mask.dtype).removeprefix("torch.")  # the reference's message for either kind
            raise TypeError(f"mask must have dtype bool (True = keep), got {dtype}")
        check_same_shape(x, mask, name, "mask")
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch tensor for the triton backend, got {type(mask).__name__}")
    x = prepare(x, name)
    if mask is not None and mask.device != x.device:
        raise ValueError(f"mask must be on {x.device} like {name}, got {mask.device}")
    # the reference's per-element factor m * scale in x's dtype: scale, or 0 * scale
    keep_scale = torch.tensor(0.0 if p == 1.0 else 1.0 / (1.0 - p), dtype=x.dtype).item()
    drop_scale = 0.0 * keep_scale
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    if mask is None:
        wrap_triton(_dropout_kernel)[_grid(n)](x, x, out, n, p, seed, keep_scale, drop_scale, HAS_MASK=False)
    else:
        m = mask.contiguous().view(torch.uint8)
        wrap_triton(_dropout_kernel)[_grid(n)](x, m, out, n, p, 0, keep_scale, drop_scale, HAS_MASK=True)
    return out


def dropout_forward(
    x: torch.Tensor, p: float = 0.5, mask: torch.Tensor | None = None, seed: int | None = None
) -> torch.Tensor:
    """y = x * m / (1 - p)  (inverted dropout).

    Args:
        x: input of any shape.
        p: drop probability in [0, 1]; p == 1 gives zeros, p == 0 the identity.
        mask: bool keep-mask with x's shape (True = keep), or None to draw it from ``seed``.
        seed: seed of ``dropout_mask(x.shape, p, seed)`` (Triton's Philox); exactly one of mask or seed.
    Returns:
        y: x's shape and dtype.
    """
    check_float(x, "x")
    p = check_probability(p, "p")
    return _apply(x, "x", p, mask, seed)


def dropout_backward(
    dy: torch.Tensor, p: float = 0.5, mask: torch.Tensor | None = None, seed: int | None = None
) -> torch.Tensor:
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
