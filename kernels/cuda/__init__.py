"""CUDA C kernels launched through CuPy: the same function names and arguments as dlgpu.reference."""
