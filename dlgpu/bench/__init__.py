"""dlgpu bench / profile / kernels: verify, time and explain every kernel."""
