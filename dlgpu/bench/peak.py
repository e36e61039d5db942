"""The device's attainable peaks, measured at start-up: the denominators of the '% of peak' columns.

* bandwidth: a large copy (read + write, so bytes = 2 * size): ``torch.Tensor.copy_`` of 256 MiB
  on CUDA (5x the H100's 50 MB L2), ``numpy.copyto`` of 128 MiB on the CPU;
* throughput: a large square matmul in the dtype being benchmarked (torch.mm: cuBLAS on CUDA,
  oneDNN/MKL on the CPU), flops = 2 n^3. On CUDA float32 matmul runs in true fp32 unless
  torch.backends.cuda.matmul.allow_tf32 is set (torch's default: not set).

These are what the machine attains here and now, not datasheet numbers: a kernel at 0.9 of the
measured copy bandwidth is near the best any memory-bound kernel can do on this device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .timing import time_cpu, time_cuda


@dataclass(frozen=True)
class Peaks:
    """Measured copy bandwidth (bytes/s) and matmul throughput (flop/s) of one device and dtype."""

    device: str
    dtype: str
    bandwidth: float
    flops: float
    how: str

    def __str__(self) -> str:
        return (f"{self.device}: copy {self.bandwidth / 1e9:.1f} GB/s, {self.dtype} matmul "
                f"{self.flops / 1e9:.1f} GFLOP/s ({self.how})")  # fmt: skip


@cache
def measure_peaks(device: str = "cpu", dtype: str = "float32", small: bool = False) -> Peaks:
    """Measure the copy bandwidth and the matmul rate of ``device`` ('cpu' or 'cuda') in ``dtype``.

    ``small`` shrinks both problems (8 MiB copy, n = 256 matmul) for tests; the numbers are
    then not peaks. Cached per (device, dtype, small): measured once per process.
    """
    import torch

    tdt = getattr(torch, dtype)
    if device == "cuda":
        nbytes, n = (8 << 20, 256) if small else (256 << 20, 8192)
        a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        b = torch.empty_like(a)
        t_copy = time_cuda(lambda: b.copy_(a)).median_s
        m = torch.randn(n, n, device="cuda").to(tdt)
        t_mm = time_cuda(lambda: m @ m).median_s
        how = f"copy of {nbytes >> 20} MiB, {n}^3 matmul, do_bench medians"
    elif device == "cpu":
        nbytes, n = (8 << 20, 256) if small else (128 << 20, 2048)
        src = np.ones(nbytes // 8)
        dst = np.empty_like(src)
        t_copy = time_cpu({"copy": lambda: np.copyto(dst, src)}, rep_time=0.3, min_reps=5)["copy"].median_s
        # CPUs have no fp16/bf16 matmul units worth the name (torch's fp16 mm here: 0.3 GFLOP/s, 3 min
        # for the measurement): the CPU kernels compute in float32, so float32 is their peak
        low = dtype in ("float16", "bfloat16")
        m = torch.randn(n, n).to(torch.float32 if low else tdt)
        t_mm = time_cpu({"mm": lambda: torch.mm(m, m)}, rep_time=0.5, min_reps=3)["mm"].median_s
        how = f"copy of {nbytes >> 20} MiB, {n}^3 matmul on {torch.get_num_threads()} threads, medians"
        how += f"; the CPU computes {dtype} in float32" if low else ""
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    mm_dtype = "float32" if device == "cpu" and dtype in ("float16", "bfloat16") else dtype
    return Peaks(device, mm_dtype, 2 * nbytes / t_copy, 2 * n**3 / t_mm, how)
