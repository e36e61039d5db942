"""Regularizers and gradient clipping: the oracle.

The course lists three ways of limiting a network's capacity besides dropout, and
clipping as the cure for exploding gradients:

    L1 penalty        R(W) = lam * sum |w|             dR/dW = lam * sign(W)
    L2 penalty        R(W) = (lam / 2) * sum w^2       dR/dW = lam * W
    max-norm          w_o <- w_o * min(1, c / ||w_o||)  for every neuron o (after each update)
    clip by norm      g_i <- g_i * min(1, c / (||(g_1, ..., g_m)|| + 1e-6))
    clip by value     g <- clip(g, -c, c)

The penalties are added to the loss, so their backward returns the term added to the
weight's gradient. The 1/2 in the L2 penalty makes its gradient exactly lam * W, the
"weight decay" of torch.optim.SGD(weight_decay=lam). The projections and clips are not
differentiated through: they act on weights or gradients between steps, so each has a
forward only, and every one returns new arrays (its input is left untouched).

Every function computes in the dtype of its input; hyperparameters are cast to it. The one
exception is the Euclidean norm (max-norm's row norms, clip_grad_norm's 2-norm): it is computed
in float64 and scaled by the largest |w| before squaring (``_l2_norm``), because squaring in the
input's dtype overflows (float32 rows like [1e20, 1e20]) or underflows ([1e-30, 1e-30]) where
the norm itself is an ordinary number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validate import check_choice, check_float, check_nonnegative, check_positive, check_real

NORM_TYPES = (1.0, 2.0, float("inf"))
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds it to the total norm before dividing


def _check_grad_output(grad_output: float | np.ndarray) -> None:
    """The penalties are scalars, so their upstream gradient is a scalar too: a real number or a
    0-d array (None, a string or an object array is a TypeError, not a silent NaN)."""
    check_real(grad_output, "grad_output", "a number or a 0-d array")
    if np.ndim(grad_output) != 0:
        raise ValueError(
            f"grad_output must be a scalar (the penalty is a scalar), got shape {np.shape(grad_output)}"
        )


def _l2_norm(x: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """sqrt(sum x^2) over ``axis`` (all axes if None; kept as size-1 axes), in float64.

    Scaled: m = max |x| over ``axis``, norm = m sqrt(sum (x/m)^2), so no square overflows or
    underflows, whatever x's dtype (float64 included) -- the norm is exact to a few ulp wherever
    it is representable in float64. A zero slice has norm 0, one holding inf has norm inf, one
    holding NaN has norm NaN (as the unscaled formula).
    """
    a = np.abs(x).astype(np.float64)
    m = np.max(a, axis=axis, keepdims=True, initial=0.0)
    finite = (m > 0) & (m < np.inf)  # zero, inf and NaN slices need no scaling: their norm is m
    safe = np.where(finite, m, 1.0)
    r = a / safe  # in [0, 1]
    return np.where(finite, safe * np.sqrt(np.sum(r * r, axis=axis, keepdims=True)), m)


# ------------------------------------------------------------------------ L1 / L2


def l1_penalty_forward(weight: np.ndarray, lam: float) -> np.ndarray:
    """R = lam * sum_i |w_i|.

    Args:
        weight: any shape.
        lam: penalty strength, >= 0.
    Returns:
        penalty: 0-d array in weight's dtype.
    """
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    return np.asarray(weight.dtype.type(lam) * np.sum(np.abs(weight)), dtype=weight.dtype)


def l1_penalty_backward(weight: np.ndarray, lam: float, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
    """dW = grad_output * lam * sign(W); the subgradient at w = 0 is taken as 0 (as torch's abs).

    Args:
        weight: any shape.
        lam: penalty strength, >= 0.
        grad_output: scalar upstream gradient of the penalty (1 when it is added to the loss).
    Returns:
        dweight: weight's shape and dtype.
    """
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    coef = weight.dtype.type(grad_output) * weight.dtype.type(lam)
    return (coef * np.sign(weight)).astype(weight.dtype, copy=False)


def l2_penalty_forward(weight: np.ndarray, lam: float) -> np.ndarray:
    """R = (lam / 2) * sum_i w_i^2.

    The 1/2 is the convention that makes the gradient lam * W, i.e. classic weight decay
    (torch.optim.SGD's weight_decay=lam adds exactly lam * W to the gradient).

    Args:
        weight: any shape.
        lam: penalty strength, >= 0.
    Returns:
        penalty: 0-d array in weight's dtype.
    """
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    half_lam = weight.dtype.type(lam) / 2
    return np.asarray(half_lam * np.sum(weight * weight), dtype=weight.dtype)


def l2_penalty_backward(weight: np.ndarray, lam: float, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
    """dW = grad_output * lam * W.

    Args:
        weight: any shape.
        lam: penalty strength, >= 0.
        grad_output: scalar upstream gradient of the penalty.
    Returns:
        dweight: weight's shape and dtype.
    """
    check_float(weight, "weight")
    lam = check_nonnegative(lam, "lam")
    _check_grad_output(grad_output)
    coef = weight.dtype.type(grad_output) * weight.dtype.type(lam)
    return (coef * weight).astype(weight.dtype, copy=False)


# ----------------------------------------------------------------------- max-norm


def max_norm_forward(weight: np.ndarray, max_norm: float) -> np.ndarray:
    """Max-norm constraint: clamp every neuron's incoming weight vector to ||w_o|| <= c.

        ||w_o|| = sqrt(sum over all axes but 0 of w_o^2)
        w_o <- w_o * min(1, c / ||w_o||)

    The neuron axis is axis 0: a Linear weight [O, I] is clamped row by row, a Conv weight
    [O, C, KH, KW] filter by filter (norm over C, KH, KW). Rows with ||w_o|| <= c (a zero
    row included) are returned unchanged, bit for bit; the others are rescaled to norm c
    keeping their direction. torch.renorm(w, 2, 0, c) is the same projection but divides
    by ||w_o|| + 1e-7; this one does not.

    The norms are computed in float64, scaled so that no square overflows or underflows
    (``_l2_norm``), and a moved row is w_o * (c / ||w_o||) evaluated in float64, rounded once
    to weight's dtype: a float32 row [1e20, 1e20] is scaled to norm c (not zeroed by an
    overflowed norm), and [1e-30, 1e-30] with c = 1e-31 is scaled too (its float32 squares
    would underflow to a norm of 0).

    Args:
        weight: [O, ...], at least 2-D.
        max_norm: c > 0.
    Returns:
        projected: a new array, weight's shape and dtype.
    """
    check_float(weight, "weight")
    if weight.ndim < 2:
        raise ValueError(
            f"weight must be at least 2-D (neurons on axis 0: [O, I] or [O, C, KH, KW]), got shape {weight.shape}"
        )
    c = np.float64(weight.dtype.type(check_positive(max_norm, "max_norm")))  # rounded to the dtype
    axes = tuple(range(1, weight.ndim))
    norm = _l2_norm(weight, axes)  # O,1,... float64
    over = norm > c  # O,1,...: only these rows move; the safe denominator avoids 0/0 for zero rows
    scale = np.where(over, c / np.where(over, norm, 1), 1)  # O,1,... float64
    moved = weight * scale
    lost = ~(scale >= np.finfo(np.float64).tiny)  # c / norm underflowed: float64 rows 1e308 times c
    if lost.any():
        moved = np.where(lost, weight / np.where(lost, norm, 1) * c, moved)  # w / norm <= 1, then times c
    return np.where(over, moved.astype(weight.dtype), weight)  # unmoved rows bit for bit


# ---------------------------------------------------------------- gradient clipping


def clip_grad_norm_forward(
    grads: Sequence[np.ndarray], max_norm: float, norm_type: float = 2.0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Rescale a set of gradients so that their global norm is at most max_norm.

        total = || (||g_1||_p, ..., ||g_m||_p) ||_p     (= the p-norm of all entries together)
        scale = min(1, max_norm / (total + 1e-6))
        g_i  <- scale * g_i

    torch.nn.utils.clip_grad_norm_'s formula: the 1e-6 keeps the division finite for
    all-zero gradients and makes the clipped norm land just under max_norm. As in torch
    (error_if_nonfinite=False), a non-finite total norm is not an error: it propagates.

    One deliberate difference: the 2-norm is computed in float64, scaled so that no square
    overflows or underflows (``_l2_norm``), and only then rounded to the grads' dtype (the
    scale follows in that dtype, as torch's). torch squares in the dtype, so its float32 total
    for entries past ~1e19 is inf and every gradient is zeroed; here [1e20, 1e20] has total
    1.41e20 and is scaled to norm max_norm. A total that does not fit the dtype (a float16
    norm past 65504) is inf here too, and then scales everything to 0 as in torch. The 1- and
    inf-norms are computed in the dtype, as torch's.

    Args:
        grads: non-empty list of arrays of any shapes, all of one floating dtype.
        max_norm: > 0.
        norm_type: 2.0, 1.0 or inf.
    Returns:
        (clipped_grads, total_norm): new arrays in grads' shapes and dtype, and the total
        norm before clipping as a 0-d array in that dtype.
    """
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError("grads must be a non-empty list of arrays, got an empty list")
    for i, g in enumerate(grads):
        check_float(g, f"grads[{i}]")
        if g.dtype != grads[0].dtype:
            raise TypeError(f"grads[{i}] must have the dtype of grads[0] ({grads[0].dtype}), got {g.dtype}")
    check_choice(norm_type, NORM_TYPES, "norm_type")
    dtype = grads[0].dtype
    c = dtype.type(check_positive(max_norm, "max_norm"))
    if norm_type == np.inf:
        norms = np.array([np.max(np.abs(g), initial=0) for g in grads], dtype=dtype)  # m
        total = np.max(norms)
    elif norm_type == 1.0:
        norms = np.array([np.sum(np.abs(g)) for g in grads], dtype=dtype)  # m
        total = np.sum(norms)
    else:
        norms = np.array([_l2_norm(g).reshape(()) for g in grads])  # m, float64
        total = _l2_norm(norms).reshape(())  # = the 2-norm of all entries together
    total = np.asarray(total, dtype=dtype)
    scale = np.minimum(dtype.type(1), c / (total + dtype.type(CLIP_EPS)))
    return [(g * scale).astype(dtype, copy=False) for g in grads], total


def clip_grad_value_forward(grad: np.ndarray, clip_value: float) -> np.ndarray:
    """g <- clip(g, -c, c) elementwise (torch.nn.utils.clip_grad_value_).

    Args:
        grad: any shape.
        clip_value: c > 0.
    Returns:
        clipped: a new array, grad's shape and dtype.
    """
    check_float(grad, "grad")
    c = grad.dtype.type(check_positive(clip_value, "clip_value"))
    return np.clip(grad, -c, c).astype(grad.dtype, copy=False)
