"""Functional tests run on each CPU backend: the reference itself and the Numba kernels."""

from __future__ import annotations

import pytest

import dlgpu

CPU_BACKENDS = ("numpy", "numba")


@pytest.fixture(params=CPU_BACKENDS)
def backend(request: pytest.FixtureRequest):
    """Run the test body with ``dlgpu.use_backend(<param>)``."""
    with dlgpu.use_backend(request.param):
        yield request.param
