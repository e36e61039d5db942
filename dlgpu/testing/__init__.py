"""The check harness: seeded inputs, comparison reports, the tolerance table, finite differences,
and ulp checks at extreme magnitudes."""

from .extremes import assert_ulps, max_norm_exact, round_to
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
    "assert_ulps",
    "check_gradients",
    "compare",
    "dtype_name",
    "finite_difference_grad",
    "labels",
    "max_norm_exact",
    "poison",
    "randn",
    "rng",
    "round_to",
    "signs",
    "to_numpy",
    "tolerance",
    "uniform",
]
