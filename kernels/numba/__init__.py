"""Numba CPU kernels: the same function names and arguments as dlgpu.reference."""
