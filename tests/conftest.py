"""Shared fixtures: every test gets its own logged seed.

The seed is derived from the test's node id and ``DLGPU_SEED`` (default 0), so a run is
reproducible, a failing test can be re-run alone with the same inputs, and setting
``DLGPU_SEED`` draws fresh inputs for the whole suite.
"""

from __future__ import annotations

import hashlib
import os

# the tests' shapes are tiny: a threaded BLAS only adds contention with numba's and torch's pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dlgpu  # noqa: F401 -- first: it sets OMP_WAIT_POLICY before torch loads OpenMP (see dlgpu/__init__.py)

# isort: split
import numpy as np
import pytest
import torch

# Without a GPU the Triton kernels run on CPU tensors under Triton's interpreter; the variable
# must be set before any kernel module is imported (triton.jit reads it when decorating).
CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

BASE_SEED = int(os.environ.get("DLGPU_SEED", "0"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"dlgpu: DLGPU_SEED={BASE_SEED} (set DLGPU_SEED to draw other inputs)"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """Per-test seed; printed, so it shows in the report of a failing test."""
    digest = hashlib.sha256(f"{BASE_SEED}:{request.node.nodeid}".encode()).digest()
    s = int.from_bytes(digest[:4], "little")
    print(f"seed={s} (DLGPU_SEED={BASE_SEED}, test={request.node.nodeid})")
    return s


@pytest.fixture
def gen(seed: int) -> np.random.Generator:
    """NumPy generator seeded with the test's seed."""
    return np.random.default_rng(seed)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need a CUDA device; without one they are skipped, saying why."""
    if CUDA:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
