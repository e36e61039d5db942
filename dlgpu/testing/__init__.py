"""The check harness: seeded inputs, comparison reports, the tolerance table, finite differences."""

from .harness import (
    Report,
    assert_close,
    check_gradients,
    compare,
    finite_difference_grad,
    labels,
    poison,
    randn,
    rng,
    signs,
    to_numpy,
    uniform,
)
from .tolerances import DEFAULT, OVERRIDES, Tolerance, dtype_name, tolerance

__all__ = [
    "DEFAULT",
    "OVERRIDES",
    "Report",
    "Tolerance",
    "assert_close",
    "check_gradients",
    "compare",
    "dtype_name",
    "finite_difference_grad",
    "labels",
    "poison",
    "randn",
    "rng",
    "signs",
    "to_numpy",
    "tolerance",
    "uniform",
]
