"""Triton GPU kernels: the same function names and arguments as dlgpu.reference."""
