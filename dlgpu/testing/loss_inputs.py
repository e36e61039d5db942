"""Inputs for the loss tests of every backend: one maker per loss family and the table of losses.

Each maker takes (shape, generator) and returns (input, target, hyperparameters) in float64
(int64 class indices), every input at least 0.05 away from the loss's kinks, so that rounding
to float32/float16/bfloat16 cannot flip a subgradient; ``kink_inputs`` puts terms exactly on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .harness import labels, randn, signs, uniform

Inputs = tuple[np.ndarray, np.ndarray, dict[str, Any]]


def hinge_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Labels in {-1, +1} and scores with the margin 1 - y t at least 0.05 from 0."""
    t = signs(shape, gen)
    z = randn(shape, gen, min_abs=0.05)  # z = 1 - y t
    return (1 - z) * t, t, {}


def bce_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Probabilities in [0.05, 0.95] and soft targets in [0, 1]."""
    return uniform(shape, gen, 0.05, 0.95), uniform(shape, gen, 0.0, 1.0), {}


def logit_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Logits (scale 3) and soft targets in [0, 1]."""
    return randn(shape, gen, scale=3.0), uniform(shape, gen, 0.0, 1.0), {}


def margin_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Scores [N, K] and class indices with every margin 1 - (y_t - y_j) at least 0.05 from 0."""
    n, k = shape
    t = labels(n, k, gen)
    base = randn((n, 1), gen, scale=2.0)
    y = base - 1 + randn((n, k), gen, min_abs=0.05)  # z_j = 1 - (y_t - y_j), |z_j| >= 0.05
    y[np.arange(n), t] = base[:, 0]
    return y, t, {}


def logits_classes(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Logits [N, K] (scale 3) and class indices."""
    return randn(shape, gen, scale=3.0), labels(shape[0], shape[1], gen), {}


def regression_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Predictions at least 0.05 from their targets (away from L1's kink)."""
    t = randn(shape, gen)
    return t + randn(shape, gen, min_abs=0.05), t, {}  # |y - t| >= 0.05: away from l1's kink


def huber_inputs(shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Regression inputs and a random delta in [0.3, 3]."""
    y, t, _ = regression_inputs(shape, gen)
    return y, t, {"delta": float(gen.uniform(0.3, 3.0))}


# The losses whose gradient has a kink, where each backend must take the documented subgradient 0
# (as torch's relu and sign do); squared hinge is continuous there and needs no such test.
KINKED = ("hinge", "multiclass_hinge", "l1")


def kink_inputs(name: str, shape: tuple[int, ...], gen: np.random.Generator) -> Inputs:
    """Inputs of a KINKED loss with many terms exactly on the kink (1 - y t = 0, 1 - (y_t - y_j) = 0,
    y = t) and the others at least 0.5 from it: small multiples of 1/4, exact in every float dtype, so
    the margin computed in any of them is exactly 0 there."""
    if name == "multiclass_hinge":
        n, k = shape
        y = gen.integers(-2, 3, size=(n, k)).astype(np.float64)  # integer margins: 0 wherever y_t - y_j = 1
        return y, labels(n, k, gen), {}
    on = gen.random(shape) < 0.5
    off = gen.choice([-1.5, -0.5, 0.5, 1.5], size=shape)
    if name == "hinge":
        t = signs(shape, gen)
        return (1 - np.where(on, 0.0, off)) * t, t, {}  # the margin z = 1 - y t is 0 or off
    if name == "l1":
        t = np.round(randn(shape, gen) * 4) / 4
        return t + np.where(on, 0.0, off), t, {}
    raise ValueError(f"no kink inputs for loss {name!r}; KINKED = {KINKED}")


# name: (the backends' forward function, input maker, K-class?)
LOSSES = {
    "hinge": ("hinge_loss_forward", hinge_inputs, False),
    "squared_hinge": ("squared_hinge_loss_forward", hinge_inputs, False),
    "binary_cross_entropy": ("binary_cross_entropy_forward", bce_inputs, False),
    "binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits_forward", logit_inputs, False),
    "multiclass_hinge": ("multiclass_hinge_loss_forward", margin_inputs, True),
    "multiclass_squared_hinge": ("multiclass_squared_hinge_loss_forward", margin_inputs, True),
    "cross_entropy": ("cross_entropy_forward", logits_classes, True),
    "mse": ("mse_loss_forward", regression_inputs, False),
    "l1": ("l1_loss_forward", regression_inputs, False),
    "pseudo_huber": ("pseudo_huber_loss_forward", huber_inputs, False),
}
