"""The ``target`` fixture: where the cupy backend's CUDA C kernels run in a test.

* ``gpu``: on a CUDA device through CuPy, on torch CUDA tensors and cupy arrays (marked ``gpu``:
  skipped without a device, selected by ``-m gpu``).
* ``host``: the same ``.cu`` sources compiled with g++ and run on the CPU (kernels/cuda/_host.py),
  on torch CPU tensors and NumPy arrays standing in for the device arrays. Skipped without a C++
  compiler. Every test written against ``target`` therefore runs the real kernels on a machine with
  no GPU as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from dlgpu.testing.cases import torch_inputs


@dataclass
class Target:
    """Where the kernels run: ``device`` for torch tensors, ``xp`` the array module (cupy or numpy)."""

    name: str
    device: str
    xp: ModuleType

    def tensor(self, a: Any, dtype: str = "float32") -> torch.Tensor:
        """A torch tensor on the target from a NumPy array (float arrays in ``dtype``)."""
        return torch_inputs(dtype, self.device)(np.asarray(a))

    def array(self, a: np.ndarray) -> Any:
        """An array of the target's array module (a cupy array on the GPU) from a NumPy array."""
        return self.xp.asarray(a)

    def to_host(self, a: Any) -> np.ndarray:
        """A NumPy copy of one of the target's arrays."""
        return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.gpu), "host"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Each test twice: on the GPU, and on the CPU through the host-compiled CUDA C."""
    if request.param == "gpu":
        yield Target("gpu", "cuda", pytest.importorskip("cupy"))
        return
    from dlgpu.kernels.cuda import _host

    why = _host.reason()
    if why is not None:
        pytest.skip(why)
    with _host.host_run():  # dlgpu.ops.call(..., backend="cupy") takes CPU arrays in here
        yield Target("host", "cpu", np)
