"""dlgpu: hand-written kernels for the building blocks of deep networks.

Importing ``dlgpu`` is cheap: torch, numba and triton load only when a submodule that
needs them is first used, so ``dlgpu.reference`` stays a pure-NumPy package.
"""

from __future__ import annotations

__version__ = "0.1.0"
