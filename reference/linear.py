"""Fully-connected layer with a fused activation: the oracle.

    z = x W^T + b        x: [N, I], W: [O, I], b: [O]     -> z: [N, O]
    y = act(z)           act in {none, relu, leaky_relu, sigmoid, tanh}

Leading dimensions of x beyond the last are flattened into N, as torch.nn.functional.linear does.
"""

from __future__ import annotations

import numpy as np

from ._validate import (
    check_activation,
    check_dtype_as,
    check_float,
    check_ndim,
    check_same_shape,
    check_shape,
)
from .activations import activation_backward, activation_forward


def _check(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> None:
    check_float(x, "x")
    check_dtype_as(weight, "weight", x.dtype)
    check_ndim(x, (1, 2, 3, 4, 5, 6), "x")
    check_ndim(weight, 2, "weight", "out_features, in_features")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x's last dimension must equal weight's in_features {weight.shape[1]}, got x shape {x.shape}"
        )
    if bias is not None:
        check_dtype_as(bias, "bias", x.dtype)
        check_shape(bias, (weight.shape[0],), "bias", "out_features")


def linear_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> np.ndarray:
    """y = act(x W^T + b).

    Args:
        x: [..., I] input.
        weight: [O, I] (torch.nn.Linear's layout).
        bias: [O] or None.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for x < 0.
    Returns:
        y: [..., O].
    """
    _check(x, weight, bias)
    check_activation(activation, negative_slope)
    z = x @ weight.T  # ...,O
    if bias is not None:
        z = z + bias
    return activation_forward(z, activation, negative_slope)


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    out: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = act(x W^T + b).

        dz = dy * act'(z)   (from the output y, see activation_backward)
        dx = dz W           dW = dz^T x           db = sum_n dz

    Args:
        dy: [..., O] upstream gradient.
        x, weight: as in the forward.
        out: the forward's output y; required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [..., I], dweight [O, I], dbias [O]); dbias is returned even when the
        forward had no bias (the caller drops it).
    """
    _check(x, weight, None)
    check_activation(activation, negative_slope)
    out_shape = x.shape[:-1] + (weight.shape[0],)
    check_dtype_as(dy, "dy", x.dtype)
    check_shape(dy, out_shape, "dy", "x's leading dims, out_features")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
        check_dtype_as(out, "out", x.dtype)
        dz = activation_backward(dy, out, activation, negative_slope)
    else:
        dz = dy
    n = int(np.prod(x.shape[:-1]))
    dz2 = dz.reshape(n, weight.shape[0])  # N,O
    x2 = x.reshape(n, weight.shape[1])  # N,I
    dx = (dz2 @ weight).reshape(x.shape)
    dw = dz2.T @ x2  # O,I
    db = dz2.sum(axis=0)  # O
    return dx, dw, db
