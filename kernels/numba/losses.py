"""Losses fused with their gradient: Numba CPU kernels (same API as dlgpu.reference.losses).

Every ``*_forward`` makes one parallel pass over its input that writes the gradient and
the per-term loss together; ``reduction="mean"|"sum"`` folds the loss into per-chunk
float64 partial sums instead of writing it out (so the reduced loss is at least as
accurate as the reference's, then cast to input's dtype). Validation is the reference's
own: its private checks are imported, and the value checks (labels in {-1, +1},
probabilities in [0, 1]) are counted inside the loss pass and re-run by the reference
only when the count says one failed, so a valid call reads its target once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ...reference._validate import check_array, check_float, check_positive, check_real, check_reduction
from ...reference.losses import _check_classes, _check_elementwise, _check_signs, _check_unit_interval
from ._common import JIT, SERIAL_BELOW_CHEAP, SERIAL_BELOW_HEAVY, pjit, prepare
from ._math import _exp, _log, _log1p, _log1p_unit

_CHUNK = 8192  # elements per parallel work item: a chunk's loss buffer stays in L2


def _as_numpy(x: Any) -> Any:
    """numpy view of an array-like (a torch CPU tensor); anything else is left for the checks to reject."""
    return np.asarray(x) if all(hasattr(x, a) for a in ("shape", "ndim", "dtype")) else x


# ------------------------------------------------------------------ shared helpers


@njit(**JIT)
def _chunk_buffer(loss, lo, hi, write_loss, like):
    """Where a chunk's per-element losses go: the output for "none", else a scratch buffer to be summed."""
    if write_loss:
        return loss[lo:hi]
    return np.empty(hi - lo, like.dtype)


# Sums only: 'reassoc' lets LLVM split the float64 sum into vector lanes (a pairwise-like
# order, as numpy's sum); nothing else in these functions could be reordered.
_SUM_JIT = dict(JIT, fastmath={"reassoc"})


@njit(**_SUM_JIT)
def _sum64(a):
    s = 0.0
    for j in range(a.size):
        s += a[j]
    return s


@njit(**JIT)
def _row_max(a):
    # eight scalar chains: LLVM vectorizes these, not a one-variable max loop (no fast-math needed)
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = a[0]
    k8 = a.size - a.size % 8
    for j in range(0, k8, 8):
        m0 = a[j] if a[j] > m0 else m0
        m1 = a[j + 1] if a[j + 1] > m1 else m1
        m2 = a[j + 2] if a[j + 2] > m2 else m2
        m3 = a[j + 3] if a[j + 3] > m3 else m3
        m4 = a[j + 4] if a[j + 4] > m4 else m4
        m5 = a[j + 5] if a[j + 5] > m5 else m5
        m6 = a[j + 6] if a[j + 6] > m6 else m6
        m7 = a[j + 7] if a[j + 7] > m7 else m7
    for j in range(k8, a.size):
        m0 = a[j] if a[j] > m0 else m0
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(**_SUM_JIT)
def _shifted_exp(yr, m, out):
    """out = exp(yr - m) and return its float64 sum (the vectorizable exp of ``_math``: 0 for -inf,
    NaN for NaN)."""
    t = 0.0
    for j in range(yr.size):
        e = _exp(yr[j] - m)
        out[j] = e
        t += e
    return t


# ------------------------------------------------------------ elementwise kernels
# Flat contiguous y, t, grad; loss is the flat output for "none" (write_loss) and unused
# otherwise. Each returns (sum of the per-element losses in float64, count of invalid targets).


@pjit()
def _hinge_fwd_kernel(y, t, loss, grad, scale, write_loss, squared):
    n = y.size
    zero, one = y.dtype.type(0.0), y.dtype.type(1.0)
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    nbad = 0
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        bad = 0
        for j in range(hi - lo):
            tj = tc[j]
            z = one - yc[j] * tj
            h = zero if z <= zero else z  # NaN stays NaN, as np.maximum
            if squared:
                lb[j] = h * h
                gc[j] = -(tj + tj) * h * scale
            else:
                lb[j] = h
                gc[j] = -tj * scale if z > zero else zero
            bad += not (tj == one or tj == -one)
        if not write_loss:
            part[c] = _sum64(lb)
        nbad += bad
    return part.sum(), nbad


@pjit()
def _binary_cross_entropy_fwd_kernel(y, t, loss, grad, scale, write_loss):
    n = y.size
    dt = y.dtype.type
    zero, one, floor, tiny = dt(0.0), dt(1.0), dt(-100.0), dt(1e-12)
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    nbad = 0
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        bad = 0
        for j in range(hi - lo):
            p, tj = yc[j], tc[j]
            log_p = max(_log(p), floor)  # torch's clamp: y = 0 or 1 costs at most 100
            log_q = max(_log1p(-p), floor)
            lb[j] = -(tj * log_p + (one - tj) * log_q)
            gc[j] = (p - tj) / max(p * (one - p), tiny) * scale
            bad += not (p >= zero and p <= one and tj >= zero and tj <= one)
        if not write_loss:
            part[c] = _sum64(lb)
        nbad += bad
    return part.sum(), nbad


@pjit()
def _binary_cross_entropy_with_logits_fwd_kernel(y, t, loss, grad, scale, write_loss):
    n = y.size
    zero, one = y.dtype.type(0.0), y.dtype.type(1.0)
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    nbad = 0
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        bad = 0
        for j in range(hi - lo):
            x, tj = yc[j], tc[j]
            e = _exp(-abs(x))  # in [0, 1]: finite for any x, shared by loss and sigmoid
            # max(x, 0) - x t as |x| (1 - t) or |x| t: non-negative, no cancellation in float32; a zero
            # weight gives 0 even at x = +-inf (the limit), not inf * 0 = NaN
            w = one - tj if x > zero else tj
            lb[j] = (zero if w == zero else abs(x)) * w + _log1p_unit(e)
            s = one / (one + e) if x >= zero else e / (one + e)
            gc[j] = (s - tj) * scale
            bad += not (tj >= zero and tj <= one)
        if not write_loss:
            part[c] = _sum64(lb)
        nbad += bad
    return part.sum(), nbad


@pjit()
def _mse_loss_fwd_kernel(y, t, loss, grad, scale, write_loss):
    n = y.size
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        for j in range(hi - lo):
            d = yc[j] - tc[j]
            lb[j] = d * d
            gc[j] = (d + d) * scale
        if not write_loss:
            part[c] = _sum64(lb)
    return part.sum(), 0


@pjit()
def _l1_loss_fwd_kernel(y, t, loss, grad, scale, write_loss):
    n = y.size
    zero, one = y.dtype.type(0.0), y.dtype.type(1.0)
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        for j in range(hi - lo):
            d = yc[j] - tc[j]
            lb[j] = abs(d)
            gc[j] = (one if d > zero else (-one if d < zero else d)) * scale  # sign; 0 at d = 0; NaN kept
        if not write_loss:
            part[c] = _sum64(lb)
    return part.sum(), 0


@pjit()
def _pseudo_huber_loss_fwd_kernel(y, t, loss, grad, scale, write_loss, delta):
    # the reference's overflow-free form: u = min(a, delta) / max(a, delta) <= 1, a = |d|, never (d/delta)^2
    n = y.size
    zero, one = y.dtype.type(0.0), y.dtype.type(1.0)
    nch = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nch)
    for c in prange(nch):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        lb = _chunk_buffer(loss, lo, hi, write_loss, y)
        yc, tc, gc = y[lo:hi], t[lo:hi], grad[lo:hi]  # 0-based chunk views: the loop vectorizes
        for j in range(hi - lo):
            d = yc[j] - tc[j]
            a = abs(d)
            small = a <= delta  # False for NaN: the second branch, NaN throughout
            mn = a if small else delta
            u = mn / (delta if small else a)  # the divisor is >= delta > 0
            s = np.sqrt(one + u * u)
            lb[j] = mn * (a / (s + (one if small else u)))  # a (a / (1 + s)) or delta (a / (s + u))
            g = mn / s  # |d| / s or delta / s, signed as d (d itself at 0 and NaN)
            gc[j] = (g if d > zero else (-g if d < zero else d)) * scale
        if not write_loss:
            part[c] = _sum64(lb)
    return part.sum(), 0


# -------------------------------------------------------------- K-class kernels
# y [N, K], t [N] int64, grad [N, K]; rows[N] gets each row's loss in input's dtype.


@pjit()
def _cross_entropy_fwd_kernel(y, t, rows, grad, scale):
    n, k = y.shape
    for i in prange(n):
        yr, g = y[i], grad[i]
        m = _row_max(yr)
        s = _shifted_exp(yr, m, g)  # g = exp(y - m), the row still in L1 for the next pass
        inv = y.dtype.type(scale / s)
        for j in range(k):
            g[j] *= inv
        ti = t[i]
        g[ti] -= scale
        rows[i] = np.log(s) - (yr[ti] - m)


@pjit(SERIAL_BELOW_HEAVY)
def _multiclass_hinge_fwd_kernel(y, t, rows, grad, scale, squared):
    n, k = y.shape
    zero, one = y.dtype.type(0.0), y.dtype.type(1.0)
    for i in prange(n):
        yr, g = y[i], grad[i]
        ti = t[i]
        yt = yr[ti]
        acc_l = 0.0
        acc_g = 0.0
        for j in range(k):
            h = one - (yt - yr[j])
            h = zero if h <= zero else h  # NaN stays NaN, as np.maximum
            if j == ti:
                h = zero  # the sum runs over j != t
            if squared:
                acc_l += h * h
                gj = h + h
            else:
                acc_l += h
                gj = one if h > zero else zero
            acc_g += gj
            g[j] = gj * scale
        g[ti] = y.dtype.type(-acc_g) * scale  # y_t enters every term with sign -1
        rows[i] = acc_l


# ------------------------------------------------------------------- wrappers


def _reduced(total: float, n: int, reduction: str, dtype: np.dtype) -> np.ndarray:
    return np.asarray(total / n if reduction == "mean" else total, dtype=dtype)


def _elementwise(kernel, input, target, reduction, check=None, hyper=()):
    """Validate as the reference, run one fused kernel pass, apply the reduction."""
    y, t_raw = _as_numpy(input), _as_numpy(target)
    t = _check_elementwise(y, t_raw, reduction)  # the reference's checks; target cast to input's dtype
    y = prepare(y, "input")
    t = np.ascontiguousarray(t)
    if check is not None and t.dtype != t_raw.dtype:
        check(y, t_raw)  # the cast could round an invalid value onto a valid one: check before it
    dt = y.dtype
    write = reduction == "none"
    loss = np.empty(y.shape if write else 0, dt)
    grad = np.empty(y.shape, dt)
    scale = dt.type(1.0 / y.size) if reduction == "mean" else dt.type(1.0)
    total, nbad = kernel(y.reshape(-1), t.reshape(-1), loss.reshape(-1), grad.reshape(-1), scale, write, *hyper)
    if nbad:
        check(y, t_raw)  # raises the reference's message
    return (loss if write else _reduced(total, y.size, reduction, dt)), grad


def _classes(input, target, reduction):
    """Validate a K-class call as the reference; return (y, int64 t, rows, grad, scale)."""
    y, t = _as_numpy(input), _as_numpy(target)
    _check_classes(y, t, reduction)
    y = prepare(y, "input")
    dt = y.dtype
    scale = dt.type(1.0 / y.shape[0]) if reduction == "mean" else dt.type(1.0)
    t = np.ascontiguousarray(t, dtype=np.int64)
    return y, t, np.empty(y.shape[0], dt), np.empty(y.shape, dt), scale


def _classes_result(rows, grad, reduction):
    if reduction == "none":
        return rows, grad
    return _reduced(float(rows.sum(dtype=np.float64)), rows.size, reduction, rows.dtype), grad


def _signs_ok(y, t):
    _check_signs(t)


def _probabilities_ok(y, t):
    _check_unit_interval(y, "input")
    _check_unit_interval(t, "target")


def _targets_ok(y, t):
    _check_unit_interval(t, "target")


# ------------------------------------------------------------------ backward


@pjit(SERIAL_BELOW_CHEAP)
def _loss_bwd_scalar_kernel(grad_input, g, out):
    for i in prange(grad_input.size):
        out[i] = grad_input[i] * g


@pjit(SERIAL_BELOW_CHEAP)
def _loss_bwd_elementwise_kernel(grad_input, g, out):
    for i in prange(grad_input.size):
        out[i] = grad_input[i] * g[i]


@pjit(SERIAL_BELOW_CHEAP)
def _loss_bwd_rows_kernel(grad_input, g, out):
    n, k = grad_input.shape
    for i in prange(n):
        gi = g[i]
        for j in range(k):
            out[i, j] = grad_input[i, j] * gi


def loss_backward(grad_output: Any, grad_input: np.ndarray, reduction: str) -> np.ndarray:
    """dinput = grad_output * grad_input (see dlgpu.reference.losses.loss_backward)."""
    check_reduction(reduction)
    check_float(grad_input, "grad_input")
    gin = prepare(grad_input, "grad_input")
    dt = gin.dtype
    out = np.empty(gin.shape, dt)
    if reduction != "none":
        check_real(grad_output, "grad_output", "a number or a 0-d array")  # None would become NaN
        g = np.asarray(grad_output)
        if g.ndim != 0:
            raise ValueError(f"grad_output must be a scalar (0-d) for reduction={reduction!r}, got shape {g.shape}")
        _loss_bwd_scalar_kernel(gin.reshape(-1), dt.type(g), out.reshape(-1))
        return out
    check_array(grad_output, "grad_output")
    check_real(grad_output, "grad_output")
    g = np.ascontiguousarray(np.asarray(grad_output), dtype=dt)
    if g.shape == gin.shape:  # elementwise loss: one gradient per element
        _loss_bwd_elementwise_kernel(gin.reshape(-1), g.reshape(-1), out.reshape(-1))
        return out
    if gin.ndim == 2 and g.shape == gin.shape[:1]:  # K-class loss: one per row
        _loss_bwd_rows_kernel(gin, g, out)
        return out
    raise ValueError(
        f"grad_output must have the loss's shape for reduction='none': {tuple(gin.shape)} "
        f"(elementwise) or {tuple(gin.shape[:1])} (K-class, input [N, K]), got {tuple(g.shape)}"
    )


# ------------------------------------------------------------ binary classification


def hinge_loss_forward(input: np.ndarray, target: np.ndarray, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """L = max(0, 1 - y t), t in {-1, +1} (see dlgpu.reference.losses)."""
    return _elementwise(_hinge_fwd_kernel, input, target, reduction, _signs_ok, (False,))


def squared_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = max(0, 1 - y t)^2, t in {-1, +1} (see dlgpu.reference.losses)."""
    return _elementwise(_hinge_fwd_kernel, input, target, reduction, _signs_ok, (True,))


def binary_cross_entropy_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = -(t log y + (1 - t) log(1 - y)), torch's clamps (see dlgpu.reference.losses)."""
    return _elementwise(_binary_cross_entropy_fwd_kernel, input, target, reduction, _probabilities_ok)


def binary_cross_entropy_with_logits_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L = max(x, 0) - x t + log1p(exp(-|x|)), dL/dx = sigmoid(x) - t (see dlgpu.reference.losses)."""
    return _elementwise(_binary_cross_entropy_with_logits_fwd_kernel, input, target, reduction, _targets_ok)


# ----------------------------------------------------------- K-class classification


def multiclass_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j)) (see dlgpu.reference.losses)."""
    y, t, rows, grad, scale = _classes(input, target, reduction)
    _multiclass_hinge_fwd_kernel(y, t, rows, grad, scale, False)
    return _classes_result(rows, grad, reduction)


def multiclass_squared_hinge_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = sum_{j != t_n} max(0, 1 - (y_t - y_j))^2 (see dlgpu.reference.losses)."""
    y, t, rows, grad, scale = _classes(input, target, reduction)
    _multiclass_hinge_fwd_kernel(y, t, rows, grad, scale, True)
    return _classes_result(rows, grad, reduction)


def cross_entropy_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """L_n = logsumexp(y_n) - y_{n,t_n}, dL_n/dy_n = softmax(y_n) - onehot(t_n) (see dlgpu.reference.losses)."""
    y, t, rows, grad, scale = _classes(input, target, reduction)
    _cross_entropy_fwd_kernel(y, t, rows, grad, scale)
    return _classes_result(rows, grad, reduction)


# ---------------------------------------------------------------------- regression


def mse_loss_forward(input: np.ndarray, target: np.ndarray, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """L = (y - t)^2;  dL/dy = 2 (y - t) (see dlgpu.reference.losses)."""
    return _elementwise(_mse_loss_fwd_kernel, input, target, reduction)


def l1_loss_forward(input: np.ndarray, target: np.ndarray, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """L = |y - t|;  dL/dy = sign(y - t), 0 at y = t (see dlgpu.reference.losses)."""
    return _elementwise(_l1_loss_fwd_kernel, input, target, reduction)


def pseudo_huber_loss_forward(
    input: np.ndarray, target: np.ndarray, reduction: str = "mean", delta: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """L = delta^2 (sqrt(1 + ((y - t)/delta)^2) - 1) (see dlgpu.reference.losses)."""
    y, t = _as_numpy(input), _as_numpy(target)
    _check_elementwise(y, t, reduction)  # the reference checks the arguments before delta
    d = check_positive(delta, "delta")
    dt = np.dtype(y.dtype).type
    return _elementwise(_pseudo_huber_loss_fwd_kernel, y, t, reduction, hyper=(dt(d),))
