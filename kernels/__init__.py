"""Backend kernels, one subpackage per backend, the same function names as dlgpu.reference."""
