"""Losses fused with their gradient: the oracle.

Every loss returns ``(loss, grad_input)`` from one call, as the GPU kernels do (the
gradient needs the same intermediate terms as the loss, so it is computed alongside):

    loss, grad_input = <name>_forward(input, target, reduction="mean", ...)
    dinput = loss_backward(grad_output, grad_input, reduction)

* ``reduction="mean"`` / ``"sum"``: ``loss`` is a 0-d array in input's dtype and
  ``grad_input`` is the gradient of that scalar (upstream gradient 1).
* ``reduction="none"``: ``loss`` holds one value per element (elementwise losses, same
  shape as input) or per row (K-class losses, shape [N]); ``grad_input`` row/element i
  is the gradient of loss i alone.
* ``"mean"`` averages over all elements for the elementwise losses and over the N rows
  for the K-class losses (as torch does).

Elementwise losses take input and target of the same (any, non-empty) shape. K-class
losses take scores input [N, K] and integer class indices target [N].

No gradient is returned with respect to the target: targets are labels or regression
values, never trained. Everything is computed in input's dtype (the target is cast to it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import (
    check_array,
    check_float,
    check_ndim,
    check_nonempty,
    check_positive,
    check_real,
    check_reduction,
    check_same_shape,
    check_shape,
)
from .activations import sigmoid_forward

# ------------------------------------------------------------------------ helpers


def _check_elementwise(input: np.ndarray, target: np.ndarray, reduction: str) -> np.ndarray:
    """Validate an elementwise loss's arguments; return target in input's dtype."""
    check_reduction(reduction)
    check_float(input, "input")
    check_float(target, "target")
    check_same_shape(input, target, "input", "target")
    check_nonempty(input, "input")
    return target.astype(input.dtype, copy=False)


def _check_classes(input: np.ndarray, target: np.ndarray, reduction: str) -> None:
    """Validate a K-class loss's arguments: scores [N, K] and int class indices [N] in [0, K)."""
    check_reduction(reduction)
    check_float(input, "input")
    check_ndim(input, 2, "input", "N, K")
    check_nonempty(input, "input")
    check_array(target, "target")
    if np.dtype(target.dtype).kind not in "iu":
        raise TypeError(f"target must have an integer dtype (class indices), got {target.dtype}")
    check_shape(target, (input.shape[0],), "target", "N class indices")
    k = input.shape[1]
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"target class indices must be in [0, {k}) (K = input.shape[1]), got values in [{lo}, {hi}]")


def _check_signs(target: np.ndarray) -> None:
    if not np.all((target == 1) | (target == -1)):
        bad = target[(target != 1) & (target != -1)].reshape(-1)[0]
        raise ValueError(f"target must contain only -1 and +1 (binary hinge labels), got {bad!r}")


def _check_unit_interval(x: np.ndarray, name: str) -> None:
    if not np.all((x >= 0) & (x <= 1)):  # NaN fails too
        bad = x[~((x >= 0) & (x <= 1))].reshape(-1)[0]
        raise ValueError(f"{name} must be in [0, 1] (probabilities), got {bad!r}")


def _reduce(loss: np.ndarray, grad: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the reduction to the per-term losses and their per-term gradients.

    ``loss`` has one entry per term (element or row), so "mean" divides by loss.size in
    both cases: all elements for elementwise losses, the N rows for K-class losses.
    """
    dtype = grad.dtype
    if reduction == "none":
        return loss, grad
    if reduction == "sum":
        return np.asarray(loss.sum(), dtype=dtype), grad
    return np.asarray(loss.mean(), dtype=dtype), (grad / loss.size).astype(dtype, copy=False)


def loss_backward(grad_output: Any, grad_input: np.ndarray, reduction: str) -> np.ndarray:
    """dinput = grad_output * grad_input: chain the upstream gradient through any loss.

    Args:
        grad_output: d(outer)/d(loss). For "mean"/"sum" a scalar (Python number or 0-d
            array). For "none" an array with the loss's shape: input's shape for the
            elementwise losses, [N] for the K-class losses (broadcast over the K classes).
            A [N] grad_output with a 2-D grad_input is always taken as per-row. Integer or
            floating-point values, cast to grad_input's dtype; anything else (None, a string,
            a bool, an object array) is a TypeError naming grad_output.
        grad_input: the gradient a ``*_forward`` call returned with the same reduction.
        reduction: mean|sum|none, as in the forward.
    Returns:
        dinput with grad_input's shape and dtype.
    """
    check_reduction(reduction)
    check_float(grad_input, "grad_input")
    dtype = grad_input.dtype
    if reduction != "none":
        check_real(grad_output, "grad_output", "a number or a 0-d array")  # None would become NaN
        g = np.asarray(grad_output)
        if g.ndim != 0:
            raise ValueError(
                f"grad_output must be a scalar (0-d) for reduction={reduction!r}, got shape {g.shape}"
            )
        return grad_input * g.astype(dtype)
    check_array(grad_output, "grad_output")
    check_real(grad_output, "grad_output")  # an object array would fail in astype, unnamed
    g = grad_output.astype(dtype, copy=False)
    if g.shape == grad_input.shape:  # elementwise loss: one gradient per element
        return grad_input * g
    if grad_input.ndim == 2 and g.shape == grad_input.shape[:1]:  # K-class loss: one per row
        return grad_input * g[:, None]  # N,K
    raise ValueError(
        f"grad_output must have the loss's shape for reduction='none': {tuple(grad_input.shape)} "
        f"(elementwise) or {tuple(grad_input.shape[:1])} (K-class, input [N, K]), got {tuple(g.shape)}"
    )


# ------------------------------------------------------------ binary classification


def hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = max(0, 1 - y t), t in {-1, +1}.

        dL/dy = -t  where 1 - y t > 0, else 0 (the subgradient at the kink 1 - y t = 0 is 0)

    Not torch's hinge_embedding_loss (which is y for t = 1 and max(0, 1 - y) for t = -1).

    Args:
        input: scores y, any shape.
        target: labels t in {-1, +1}, input's shape (floating dtype).
        reduction: mean (over all elements) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or input's shape for "none"; grad_input input's shape.
    """
    t = _check_elementwise(input, target, reduction)
    _check_signs(target)  # before the cast, which could round a near-miss onto +-1
    z = 1 - input * t  # the margin violation
    loss = np.maximum(z, 0)
    grad = np.where(z > 0, -t, 0).astype(input.dtype, copy=False)
    return _reduce(loss, grad, reduction)


def squared_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = max(0, 1 - y t)^2, t in {-1, +1}.

        dL/dy = -2 t max(0, 1 - y t)   (continuous: no kink)

    Args, returns: as hinge_loss_forward.
    """
    t = _check_elementwise(input, target, reduction)
    _check_signs(target)  # before the cast, which could round a near-miss onto +-1
    h = np.maximum(1 - input * t, 0)
    loss = h * h
    grad = -2 * t * h
    return _reduce(loss, grad, reduction)


def binary_cross_entropy_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = -(t log y + (1 - t) log(1 - y)), y a probability in [0, 1], t in [0, 1].

    Matches torch.nn.functional.binary_cross_entropy at the edges:
      * each log is clamped at >= -100, so y = 0 or 1 gives a finite loss (at most 100);
      * dL/dy = (y - t) / max(y (1 - y), 1e-12), so y = 0 or 1 gives a finite gradient
        (this is the exact derivative wherever no clamp is active, and torch's choice where one is).
        torch's constant is the float32 1e-12 (= 9.99999996e-13) in every dtype; here it is 1e-12
        in input's dtype, a 4e-9 relative difference in the clamped gradient only.

    Args:
        input: probabilities y in [0, 1], any shape (e.g. a sigmoid's output).
        target: t in [0, 1], input's shape.
        reduction: mean (over all elements) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or input's shape for "none"; grad_input input's shape.
    """
    t = _check_elementwise(input, target, reduction)
    _check_unit_interval(input, "input")
    _check_unit_interval(target, "target")
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped on the next lines
        log_y = np.maximum(np.log(input), -100)
        log_1my = np.maximum(np.log1p(-input), -100)  # log1p: exact for small y
    loss = -(t * log_y + (1 - t) * log_1my)
    grad = (input - t) / np.maximum(input * (1 - input), 1e-12)
    return _reduce(loss, grad, reduction)


def binary_cross_entropy_with_logits_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = -(t log s(x) + (1 - t) log(1 - s(x))), s the sigmoid, from logits x.

    Evaluated as max(x, 0) - x t + log1p(exp(-|x|)): algebraically equal, and exp's
    argument is <= 0, so any finite x (|x| ~ 1e4 included) gives a finite loss.
    An infinite logit takes the limit of the loss, which is linear in x there:
    (1 - t) x at x = +inf (+inf for t < 1, 0 for t = 1) and -t x at x = -inf (+inf for
    t > 0, 0 for t = 0), never inf - inf = NaN. NaN logits give NaN.

        dL/dx = s(x) - t   (s computed without overflow, see sigmoid_forward; 1 - t at
                            x = +inf, -t at x = -inf)

    Args:
        input: logits x, any shape.
        target: t in [0, 1], input's shape.
        reduction: mean (over all elements) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or input's shape for "none"; grad_input input's shape.
    """
    t = _check_elementwise(input, target, reduction)
    _check_unit_interval(target, "target")
    inf = np.isinf(input)
    x = np.where(inf, 0, input)  # the formula on finite logits only: no inf - inf, no warning
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    # the limits: (1 - t) x at +inf, -t x at -inf, with 0 x = 0 where that weight vanishes
    weight = np.where(input > 0, 1 - t, t)
    loss = np.where(inf, np.where(weight > 0, np.inf, 0), loss).astype(input.dtype, copy=False)
    grad = sigmoid_forward(input) - t
    return _reduce(loss, grad, reduction)


# ----------------------------------------------------------- K-class classification


def _multiclass_margins(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(0, 1 - (y_t - y_j)) for every class j, with the j = t entry set to 0; and rows."""
    rows = np.arange(input.shape[0])
    y_t = input[rows, target][:, None]  # N,1
    h = np.maximum(1 - (y_t - input), 0)  # N,K
    h[rows, target] = 0  # the sum runs over j != t
    return h, rows


def multiclass_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_{n,t_n} - y_{n,j})).

        dL_n/dy_j   = [1 - (y_t - y_j) > 0]          for j != t (subgradient 0 at the kink)
        dL_n/dy_t   = -sum_{j != t} [1 - (y_t - y_j) > 0]

    The course's sum: torch's multi_margin_loss(p=1) divides each L_n by K, so
    this loss is K times torch's.

    Args:
        input: scores y [N, K].
        target: class indices t [N], integer dtype, in [0, K).
        reduction: mean (over the N rows) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or [N] for "none"; grad_input [N, K].
    """
    _check_classes(input, target, reduction)
    h, rows = _multiclass_margins(input, target)  # N,K
    loss = h.sum(axis=1)  # N
    grad = (h > 0).astype(input.dtype)  # N,K
    grad[rows, target] = -grad.sum(axis=1)  # y_t enters every term with sign -1
    return _reduce(loss, grad, reduction)


def multiclass_squared_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_{n,t_n} - y_{n,j}))^2.

        dL_n/dy_j = 2 max(0, 1 - (y_t - y_j))   for j != t
        dL_n/dy_t = -sum_{j != t} 2 max(0, 1 - (y_t - y_j))

    K times torch's multi_margin_loss(p=2), which divides by K.

    Args, returns: as multiclass_hinge_loss_forward.
    """
    _check_classes(input, target, reduction)
    h, rows = _multiclass_margins(input, target)  # N,K
    loss = (h * h).sum(axis=1)  # N
    grad = 2 * h  # N,K
    grad[rows, target] = -grad.sum(axis=1)
    return _reduce(loss, grad, reduction)


def cross_entropy_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = -log softmax(y_n)_{t_n} = log sum_k exp(y_nk - m_n) - (y_{n,t_n} - m_n), m_n = max_k y_nk.

    The shift by the row maximum changes nothing mathematically and keeps every exp's
    argument <= 0, so logits of any finite size (|y| ~ 1e4) give a finite loss and gradient.

        dL_n/dy_n = softmax(y_n) - onehot(t_n)

    Only class-index targets (torch's probability targets, label smoothing and
    class weights are not supported).

    Args:
        input: logits y [N, K].
        target: class indices t [N], integer dtype, in [0, K).
        reduction: mean (over the N rows) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or [N] for "none"; grad_input [N, K].
    """
    _check_classes(input, target, reduction)
    rows = np.arange(input.shape[0])
    z = input - input.max(axis=1, keepdims=True)  # N,K
    e = np.exp(z)  # N,K
    s = e.sum(axis=1)  # N
    loss = np.log(s) - z[rows, target]  # N
    grad = e / s[:, None]  # N,K softmax
    grad[rows, target] -= 1
    return _reduce(loss, grad, reduction)


# ---------------------------------------------------------------------- regression


def mse_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = (y - t)^2;  dL/dy = 2 (y - t).

    Args:
        input: predictions y, any shape.
        target: t, input's shape.
        reduction: mean (over all elements) | sum | none.
    Returns:
        (loss, grad_input): loss 0-d, or input's shape for "none"; grad_input input's shape.
    """
    t = _check_elementwise(input, target, reduction)
    d = input - t
    loss = d * d
    grad = 2 * d
    return _reduce(loss, grad, reduction)


def l1_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = |y - t|;  dL/dy = sign(y - t), with the subgradient 0 at y = t (as torch).

    Args, returns: as mse_loss_forward.
    """
    t = _check_elementwise(input, target, reduction)
    d = input - t
    loss = np.abs(d)
    grad = np.sign(d)
    return _reduce(loss, grad, reduction)


def pseudo_huber_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean", delta: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """L = delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1);  dL/dy = (y - t) / sqrt(1 + ((y - t)/delta)^2).

    Quadratic ((y - t)^2 / 2) near y = t, linear (delta |y - t|) far from it.
    Not torch's huber_loss (the piecewise Huber loss).

    Evaluated without overflow, underflow or cancellation for any d = y - t and delta, with
    a = |d| and the ratio u = min(a, delta) / max(a, delta) <= 1, s = sqrt(1 + u^2):

        a <= delta (u = a/delta):   L = a (a / (1 + s)),       dL/dy = d / s
        a >  delta (u = delta/a):   L = delta (a / (s + u)),   dL/dy = sign(d) delta / s

    both algebraically equal to the formula above (L = delta^2 (h - 1), h = sqrt(1 + (a/delta)^2)
    is s in the first case and s/u in the second); neither squares d/delta, which overflows
    (d = 1e20, delta = 1: the textbook form gives NaN in float32) or underflows, nor subtracts
    1 from h. So d = +-inf gives L = inf and dL/dy = +-delta; NaN gives NaN for both.

    Args:
        input: predictions y, any shape.
        target: t, input's shape.
        reduction: mean (over all elements) | sum | none.
        delta: the scale where the loss turns from quadratic to linear, > 0.
    Returns:
        (loss, grad_input): loss 0-d, or input's shape for "none"; grad_input input's shape.
    """
    t = _check_elementwise(input, target, reduction)
    delta = check_positive(delta, "delta")
    dl = input.dtype.type(delta)
    d = input - t
    a = np.abs(d)
    small = a <= dl  # False for NaN: the second branch, whose every term is NaN then
    lo = np.where(small, a, dl)  # min(a, delta)
    u = lo / np.where(small, dl, a)  # divides by max(a, delta) >= delta > 0: never 0/0 nor inf/inf
    s = np.sqrt(1 + u * u)
    loss = lo * (a / (s + np.where(small, 1, u)))
    # d / s = sign(d) a / s in the first case; copysign keeps NaN, and the sign of d = -0
    grad = np.copysign(lo / s, d)
    return _reduce(loss, grad, reduction)
