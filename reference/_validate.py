"""Argument checks shared by the reference and every backend.

Every check raises ``ValueError`` (wrong value or shape) or ``TypeError`` (wrong
kind of object) with a message that names the argument and says what was
expected, so that bad input never reaches a kernel. Pure Python/NumPy: the
array arguments only need ``.shape``, ``.ndim`` and ``.dtype``, so the same
checks serve numpy arrays, torch tensors and cupy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh")
REDUCTIONS = ("mean", "sum", "none")


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def check_array(x: Any, name: str) -> None:
    """Raise TypeError unless ``x`` looks like an array (has shape, ndim and dtype)."""
    if type(x) is np.ndarray:  # the common case, on every call of every kernel: skip the attribute probes
        return
    if not all(hasattr(x, a) for a in ("shape", "ndim", "dtype")):
        raise TypeError(f"{name} must be an array or tensor, got {type(x).__name__}")


def check_float(x: Any, name: str) -> None:
    """Raise TypeError unless ``x`` is a floating-point array."""
    if type(x) is np.ndarray:
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
        return
    check_array(x, name)
    kind = getattr(x.dtype, "is_floating_point", None)
    if kind is None:  # numpy / cupy dtype
        ok = np.dtype(x.dtype).kind == "f"
    else:  # torch dtype: .is_floating_point is a property
        ok = bool(kind)
    if not ok:
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")


def check_ndim(x: Any, ndim: int | Sequence[int], name: str, layout: str = "") -> None:
    """Raise ValueError unless ``x.ndim`` is ``ndim`` (or one of them)."""
    check_array(x, name)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(str(a) for a in allowed)
        lay = f" ({layout})" if layout else ""
        raise ValueError(f"{name} must be {want}-D{lay}, got shape {_shape(x)}")


def check_shape(x: Any, shape: Sequence[int | None], name: str, what: str = "") -> None:
    """Raise ValueError unless ``x.shape`` matches ``shape`` (None matches any size)."""
    check_array(x, name)
    got = _shape(x)
    if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {want}{extra}, got {got}")


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ValueError unless two arrays have identical shapes."""
    check_array(a, name_a)
    check_array(b, name_b)
    if _shape(a) != _shape(b):
        raise ValueError(f"{name_b} must have the same shape as {name_a} {_shape(a)}, got {_shape(b)}")


def check_nonempty(x: Any, name: str) -> None:
    """Raise ValueError if ``x`` has no elements."""
    if int(np.prod(_shape(x))) == 0:
        raise ValueError(f"{name} must not be empty, got shape {_shape(x)}")


def check_choice(value: Any, choices: Iterable[Any], name: str) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def check_activation(activation: str, negative_slope: float = 0.01) -> float:
    """Check a fused epilogue's activation and, for leaky_relu, its slope; return the slope as float.

    ValueError for an activation name no fused epilogue knows, or a leaky_relu slope that is
    negative or not finite: the fused backward takes the derivative from the sign of the output,
    which tells x > 0 from x < 0 only when the slope is >= 0 (the standalone leaky_relu, which
    keeps x, takes any slope). TypeError for a slope that is not a number.
    """
    check_choice(activation, ACTIVATIONS, "activation")
    slope = check_number(negative_slope, "negative_slope")
    if activation == "leaky_relu" and not (np.isfinite(slope) and slope >= 0):
        raise ValueError(
            f"negative_slope of a fused leaky_relu must be a finite number >= 0, got {slope} (the backward "
            "recovers the derivative from the output's sign; use leaky_relu_forward/backward for other slopes)"
        )
    return slope


def check_reduction(reduction: str) -> None:
    """Raise ValueError for an unknown loss reduction."""
    check_choice(reduction, REDUCTIONS, "reduction")


def check_probability(p: float, name: str = "p", allow_one: bool = True) -> float:
    """Return ``p`` as float; ValueError unless 0 <= p <= 1 (or < 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(p).__name__}")
    p = float(p)
    hi_ok = p <= 1.0 if allow_one else p < 1.0
    if not (p >= 0.0 and hi_ok):
        raise ValueError(f"{name} must be in [0, 1{']' if allow_one else ')'}, got {p}")
    return p


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as float; ValueError unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def check_nonnegative(value: float, name: str) -> float:
    """Return ``value`` as float; ValueError unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a non-negative number, got {type(value).__name__}")
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value}")
    return value


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as int; TypeError for a non-int (or a bool), ValueError below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(value: Any, name: str) -> float:
    """Return ``value`` as float; TypeError unless it is a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` as a non-negative index into ``ndim`` dimensions (negative counts from the
    end); TypeError for a non-int (or a bool), ValueError when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for a {ndim}-D array, got {axis}")
    return int(axis) % ndim


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` as bool; TypeError unless it is a bool (or a numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def pair(value: int | Sequence[int], name: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or a pair of ints (height, width); ValueError below ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """floor((w + 2p - d(f-1) - 1)/s) + 1: output length of a sliding window."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def window_output_hw(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    name: str = "kernel_size",
) -> tuple[int, int]:
    """Output (height, width) of a 2-D window op; ValueError if the (dilated) window
    is larger than the padded input, so no output position would exist."""
    out = []
    for axis, (w, f, s, p, d) in enumerate(zip(hw, kernel, stride, padding, dilation)):
        span = d * (f - 1) + 1
        if span > w + 2 * p:
            dim = "height" if axis == 0 else "width"
            raise ValueError(
                f"{name}: the window spans {span} along {dim} but the padded input is only "
                f"{w + 2 * p} ({w} + 2*{p}); expected a window no larger than the padded input"
            )
        out.append(conv_output_size(w, f, s, p, d))
    return out[0], out[1]


# ------------------------------------------------------------ recurrent layers


def check_dtype_as(a: Any, name: str, dtype: Any, like: str = "x") -> None:
    """TypeError unless ``a`` is a float array of exactly ``dtype`` (the dtype of ``like``)."""
    check_float(a, name)
    # compared by name, so numpy and torch dtypes of the same kind agree (the backends then
    # say which array kind they take)
    got, want = str(a.dtype).replace("torch.", ""), str(dtype).replace("torch.", "")
    if got != want:
        raise TypeError(f"{name} must have the dtype of {like} ({want}), got {got}")


def check_recurrent(
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any | None,
    bias_hh: Any | None,
    gates: int,
) -> tuple[int, int, int, int]:
    """Check a recurrent layer's arguments (``gates`` row blocks in torch.nn's weight shapes,
    time-major x [T, B, I], h0 [B, H]); return (T, B, I, H). Shared by every recurrent family."""
    check_float(x, "x")
    check_ndim(x, 3, "x", "T, B, input_size")
    T, B, I = (int(s) for s in x.shape)
    if T < 1 or B < 1:
        raise ValueError(f"x must have at least one time step and one batch row (T >= 1, B >= 1), got {tuple(x.shape)}")
    check_dtype_as(weight_hh, "weight_hh", x.dtype)
    check_ndim(weight_hh, 2, "weight_hh", f"{gates}*hidden_size, hidden_size")
    H = int(weight_hh.shape[1])
    if H < 1:
        raise ValueError(f"weight_hh must have hidden_size >= 1 columns, got shape {tuple(weight_hh.shape)}")
    if weight_hh.shape[0] != gates * H:
        raise ValueError(
            f"weight_hh must have shape ({gates}*hidden_size, hidden_size) = ({gates * H}, {H}), "
            f"got {tuple(weight_hh.shape)}"
        )
    check_dtype_as(weight_ih, "weight_ih", x.dtype)
    check_shape(weight_ih, (gates * H, I), "weight_ih", f"{gates}*hidden_size, input_size of x")
    if h0 is not None:
        check_dtype_as(h0, "h0", x.dtype)
        check_shape(h0, (B, H), "h0", "batch of x, hidden_size of weight_hh")
    for b, name in ((bias_ih, "bias_ih"), (bias_hh, "bias_hh")):
        if b is not None:
            check_dtype_as(b, name, x.dtype)
            check_shape(b, (gates * H,), name, f"{gates}*hidden_size")
    return T, B, I, H


def check_saved(d: Any, shape: tuple[int, ...], name: str, dtype: Any, what: str) -> None:
    """Check a tensor the forward saved for the backward (required): dtype of x and ``shape``."""
    if d is None:
        raise TypeError(f"{name} (saved by the forward) is required, got None")
    check_optional(d, shape, name, dtype, what)


def check_optional(d: Any | None, shape: tuple[int, ...], name: str, dtype: Any, what: str) -> None:
    """Check an optional array (an upstream gradient, a saved tensor): dtype of x and ``shape``."""
    if d is not None:
        check_dtype_as(d, name, dtype)
        check_shape(d, shape, name, what)


# ------------------------------------------------------------ upstream gradients


def _real_dtype(dtype: Any) -> bool:
    """True for an integer or floating-point dtype (numpy, cupy or torch; bool and complex excluded)."""
    if hasattr(dtype, "is_floating_point"):  # torch dtype: no numpy twin for bfloat16
        return bool(dtype.is_floating_point) or (not dtype.is_complex and str(dtype) != "torch.bool")
    try:
        return np.dtype(dtype).kind in "iuf"
    except TypeError:
        return False


def check_real(value: Any, name: str, expected: str = "a number or a 0-d array") -> None:
    """Raise TypeError unless ``value`` is a real number (int or float, not a bool) or an array/tensor
    of an integer or floating-point dtype. ``expected`` says what was wanted in the message (e.g.
    "a number or a 0-d array"); shapes are left to the caller. Catches None, strings and object
    arrays, which np.asarray would otherwise turn into silent NaN or an unrelated error."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return
    if not all(hasattr(value, a) for a in ("shape", "ndim", "dtype")):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    if not _real_dtype(value.dtype):
        raise TypeError(f"{name} must have an integer or floating-point dtype, got {value.dtype}")
