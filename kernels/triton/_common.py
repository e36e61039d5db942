"""Launch helpers shared by every Triton kernel file (one place, not copied per op), and the one
GEMM kernel the other families build on (input projections of the recurrent cells, linear).

Tensors are torch tensors on a CUDA device, or on the CPU when TRITON_INTERPRET=1 (how CI runs
the kernels without a GPU). Storage dtypes: float32, float16, bfloat16; accumulation is float32.
float32 GEMMs use exact IEEE fp32 products unless ``allow_tf32=True`` is asked for.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl

from ...reference._validate import check_array

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Triton 3.x's interpreter computes tl.dot on bfloat16 blocks wrongly (garbage, not rounding):
# under the interpreter, kernels upcast both operands to fp32 before tl.dot. The compiled path
# keeps native bf16 tensor-core dots.
DOT_UPCAST = INTERPRET


class _FakeLaunch:
    """Stands in for an interpreted kernel while torch runs a wrapper on fake tensors (the fake
    kernel of a ``triton_op``): outputs are allocated before the launch, so their shapes are all a
    fake run needs. Anything else that traces (torch.compile's functionalisation, make_fx) would
    need the launch in its graph, which the interpreter cannot give: that is an error, not garbage."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def __getitem__(self, grid: Any) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        from torch._subclasses.fake_tensor import FakeTensor

        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if tensors and all(isinstance(t, FakeTensor) for t in tensors):
            return
        raise RuntimeError(
            "dlgpu: Triton kernels cannot be traced by torch.compile/export under TRITON_INTERPRET=1 "
            "(the interpreter needs real CPU data); use the numba backend for CPU tensors"
        )


def wrap_triton(kernel: Any) -> Any:
    """The launchable form of ``kernel``: the kernel itself when torch is not tracing (no per-launch
    overhead), ``torch.library.wrap_triton(kernel)`` under a dispatch mode (torch.compile's
    functionalisation, make_fx, fake tensors), so the launch lands in the traced graph. Named like
    torch's helper so ``torch.library.triton_op``'s source scan finds the kernels it wraps."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    if _get_current_dispatch_mode() is None:
        return kernel
    if INTERPRET:
        return _FakeLaunch(kernel)
    return torch.library.wrap_triton(kernel)


def has_data(t: torch.Tensor) -> bool:
    """False for the fake/functional tensors of a trace (torch.compile, opcheck): value checks that
    read a tensor on the host (labels in range, indices in bounds) run only where this is True; a
    traced graph relies on the kernels' own guards instead."""
    from torch._subclasses.fake_tensor import is_fake

    return not is_fake(t)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b)."""
    return (a + b - 1) // b


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (Triton block shapes must be powers of two)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def prepare(x: Any, name: str, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a contiguous torch tensor the Triton kernels can take.

    TypeError for a non-tensor or an unsupported dtype (or a dtype other than ``dtype``),
    ValueError for a CPU tensor without the interpreter or a device other than ``device``.
    """
    check_array(x, name)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor for the triton backend, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16 for the triton backend, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} like the other inputs, got {x.dtype}")
    if x.device.type != "cuda" and not INTERPRET:
        raise ValueError(f"{name} must be on a CUDA device for the triton backend (or set TRITON_INTERPRET=1)")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {x.device}")
    return x.contiguous()


def prepare_optional(x: Any, name: str, dtype: torch.dtype | None = None, device: torch.device | None = None):
    """``prepare`` for an argument that may be None."""
    return None if x is None else prepare(x, name, dtype, device)


def autotune_configs(configs: list[triton.Config]) -> list[triton.Config]:
    """The configs to autotune over: all on a GPU, only the first under the interpreter
    (which would otherwise run every config, and gains nothing from it)."""
    return configs[:1] if INTERPRET else configs


# ------------------------------------------------------------------------ GEMM
# C[M, N] = A[M, K] @ B[N, K]^T (+ bias[N]); B is given row-major [N, K] as torch.nn weights are.
# Napkin math: 2*M*N*K flops over (M*K + N*K + M*N) * itemsize bytes; at the recurrent input
# projection (M = T*B = 3200, N = 4H = 1024, K = 128) that is 0.84 GFLOP, compute-bound on a GPU.

# Two config lists, one kernel (as linear.py): fp16/bf16 tiles feed wgmma; fp32 with exact IEEE
# products lowers to an FMA dot whose operands sit in registers ((rows + cols) per thread x BLOCK_K),
# so it takes BLOCK_K = 16 or 64x64x32 tiles with 8+ warps. Every config below compiles for sm_90
# without spills (ptxas for sm_90, Triton 3.9 and 3.6, the recorded launches plus their 16-divisible
# specialisations): fp32 worst 172 / 172 registers, fp16/bf16 worst 231 / 239. Dropped for spilling:
# 128x64x64 and 64x128x64 with 4 warps (0.5-1.4 KB in every dtype), 128x128x64 with 8 warps (8-160 B
# fp16), 128x128x32 with 8 warps (fp32, 16-56 B), 64x64x32 with 4 warps (fp32, 16 B), 128x256 tiles.
_MM_TC_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=8, num_stages=4),
]
_MM_FP32_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 16}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=16, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=8, num_stages=3),
]


@triton.jit
def _matmul_nt_kernel(
    a_ptr,  # [M, K] left operand, row-major
    b_ptr,  # [N, K] right operand, row-major (used transposed)
    bias_ptr,  # [N] added to every row, or a dummy pointer when HAS_BIAS is False
    c_ptr,  # [M, N] output
    M, N, K,  # problem sizes
    stride_am, stride_ak,  # strides of A in elements
    stride_bn, stride_bk,  # strides of B in elements
    stride_cm, stride_cn,  # strides of C in elements
    HAS_BIAS: tl.constexpr,  # add bias[N] in the epilogue
    ALLOW_TF32: tl.constexpr,  # fp32 inputs: tf32 tensor cores instead of exact fp32 products
    UPCAST: tl.constexpr,  # interpreter workaround: dot in fp32 (see DOT_UPCAST)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(a_ptr + rm[:, None] * stride_am + kk[None, :] * stride_ak,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # fmt: skip
        b = tl.load(b_ptr + rn[None, :] * stride_bn + kk[:, None] * stride_bk,
                    mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)  # fmt: skip
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if ALLOW_TF32:
            acc += tl.dot(a, b, input_precision="tf32")
        else:
            acc += tl.dot(a, b, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty), mask=mask)


_matmul_nt_tc = triton.autotune(configs=autotune_configs(_MM_TC_CONFIGS), key=["M", "N", "K"])(_matmul_nt_kernel)
_matmul_nt_fp32 = triton.autotune(configs=autotune_configs(_MM_FP32_CONFIGS), key=["M", "N", "K"])(_matmul_nt_kernel)


def matmul_nt(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    allow_tf32: bool = False,
) -> torch.Tensor:
    """C = A @ B^T (+ bias), fp32 accumulation, output in A's dtype (or written into ``out``).

    A: [M, K], B: [N, K] (any strides), bias: [N]. The building block for linear layers and the
    recurrent cells' input projections.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"matmul_nt needs A [M, K] and B [N, K], got {tuple(a.shape)} and {tuple(b.shape)}")
    m, k = a.shape
    n = b.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        return out.zero_() if bias is None else out.copy_(bias.expand(m, n))

    def grid(meta: dict) -> tuple[int, int]:
        return cdiv(m, meta["BLOCK_M"]), cdiv(n, meta["BLOCK_N"])

    kernel = _matmul_nt_fp32 if a.dtype == torch.float32 else _matmul_nt_tc
    wrap_triton(kernel)[grid](
        a, b, bias if bias is not None else a, out,
        m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        HAS_BIAS=bias is not None, ALLOW_TF32=allow_tf32, UPCAST=DOT_UPCAST,
    )  # fmt: skip
    return out
