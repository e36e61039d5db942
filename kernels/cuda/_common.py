"""Loader machinery shared by every CUDA C family (kernels/cuda/<family>.cu + <family>.py).

API (stable; the recurrent families use it too)
------------------------------------------------
Each loader ``<family>.py`` defines ``NAME_EXPRESSIONS: tuple[str, ...]`` and
``MODULE = Module("<family>", NAME_EXPRESSIONS)`` at module level (``_resources.py`` reads them), and
launches only names from that tuple. Headers: ``common.cuh`` (conversions to_f32/from_f32<T>, ACT_*
activations act_fwd/act_bwd, warp/block reductions, Philox) and ``gemm.cuh`` (the tiled GEMM:
``gemm_tile`` with loader/epilogue functors and the ready ``gemm_kernel``; see its header comment).

Module(family, name_expressions)
    The compiled ``<family>.cu``. ``name_expressions`` is the loader's NAME_EXPRESSIONS tuple: every
    template instantiation it may launch, e.g. ``"relu_fwd<float>"`` or
    ``"gemm_kernel<__half, __half, true, false, 0>"``. Compiled with ``cupy.RawModule(code=...,
    options=module.options, name_expressions=...)`` once per process and device, on first launch
    (CuPy's disk cache keeps the cubin across processes); the options are NVRTC_OPTIONS, -I for each
    directory in $DLGPU_CUDA_INCLUDE, and for a cooperative module -DDLGPU_PERSISTENT. ``#include
    "x.cuh"`` lines are inlined by ``Module.source`` before compiling, so a changed header changes the
    hashed source.
    ``_resources.py`` compiles exactly these names with nvcc, so the table cannot drift.

Call(**arrays)                          one op invocation: device, array kind (torch|cupy), stream
    .prepare(x, name, dtypes=FLOAT_DTYPES, dtype=None) -> contiguous array; TypeError for a wrong
        kind/dtype (``dtype`` forces one dtype, naming the array it must match), ValueError for a
        CPU array or another device; a non-contiguous input is copied to a contiguous one.
    .empty(shape, dtype) / .zeros(shape, dtype)   -> new array of the call's kind on its device
    .astype(x, dtype) -> contiguous copy in another dtype          .contiguous(x)
    .launch(module, name, grid, block, args, shared_mem=0)   (name must be in module's list)
    .item(x) -> Python number (one host sync)     .to_numpy(x) -> host copy (bf16 widened)
ptr(x) -> np.uint64 device pointer (0 for None)       i64(v), i32(v), f32(v), u64(v): kernel scalars
is_device_array(x) -> bool, round_to_dtype(v, dtype) -> float (v rounded as dtype.type(v) would)
ctype(dtype) -> C type ("float", "__half", "__nv_bfloat16"), dtype_name(dtype) -> "float32", ...
cdiv(a, b), ACTIVATION_CODES {"none": 0, ...} (the ACT_* codes of common.cuh)
dry_run(runner=None) -> context manager recording launches instead of running them (tests without a
    GPU); ``_host.host_run()`` is the dry run whose launches also execute on the CPU (g++);
    host_executing() -> True inside host_run()
GEMM_THREADS (256), gemm_tiles(rows, cols) -> 64x64 tile counts, split_k(k, tiles) -> (splits, chunk)

Arrays: cupy arrays, or torch CUDA tensors used in place through ``data_ptr()`` (no copy); outputs
have the inputs' kind. A call on torch tensors runs on torch's current stream of the tensors'
device (``cupy.cuda.ExternalStream``); a call on cupy arrays on CuPy's current stream. Mixing torch
and cupy arrays in one call is a TypeError.

bfloat16: cupy has no bfloat16 dtype, so bf16 works on torch tensors only: the kernels get the raw
pointer and the ``__nv_bfloat16`` template instantiation; outputs are allocated by torch.

Every kernel argument is a NumPy scalar of the exact C type: pointers ``np.uint64`` (``T*``),
``long long`` -> ``np.int64``, ``int`` -> ``np.int32``, ``float`` -> ``np.float32``,
``unsigned long long`` -> ``np.uint64``. Sizes and offsets are ``long long`` everywhere.

Without cupy this module imports (cupy is imported inside the functions that need it), so the
argument checking, grids and template names of every loader are testable without a device: under
``dry_run()`` torch CPU tensors stand in for torch CUDA tensors and NumPy arrays for cupy arrays,
allocation uses torch/NumPy, and ``launch`` appends a ``Launch`` record instead of running.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

KERNEL_DIR = Path(__file__).resolve().parent

FLOAT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")

CTYPES: dict[str, str] = {
    "float32": "float",
    "float16": "__half",
    "bfloat16": "__nv_bfloat16",
    "float64": "double",
    "int64": "long long",
    "int32": "int",
    "uint8": "unsigned char",
    "bool": "bool",
}

# ACT_* in common.cuh
ACTIVATION_CODES: dict[str, int] = {"none": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

# CuPy bundles its own cuda_fp16.h while cuda_bf16.h comes from the toolkit; these two defines
# decouple them (the kernels only use explicit conversion intrinsics, so nothing is lost).
NVRTC_OPTIONS: tuple[str, ...] = (
    "-std=c++17",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
)



# Defined only for a cooperative module: the .cu files compile their persistent kernels (and include
# cooperative_groups.h, which pulls in CCCL's libcu++) under it, so a header problem there cannot take
# the per-step kernels down with it.
PERSISTENT_DEFINE = "-DDLGPU_PERSISTENT"


def nvrtc_options() -> tuple[str, ...]:
    """NVRTC_OPTIONS plus ``-I`` for every directory in $DLGPU_CUDA_INCLUDE (os.pathsep-separated):
    where CuPy does not find the toolkit's cuda_bf16.h / mma.h by itself (it adds its CUDA path)."""
    extra = [d for d in os.environ.get("DLGPU_CUDA_INCLUDE", "").split(os.pathsep) if d]
    return (*NVRTC_OPTIONS, *(f"-I{d}" for d in extra))


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for non-negative ints."""
    return -(-int(a) // int(b))


def i64(v: int) -> np.int64:
    """A ``long long`` kernel argument."""
    return np.int64(v)


def i32(v: int) -> np.int32:
    """An ``int`` kernel argument."""
    return np.int32(v)


def f32(v: float) -> np.float32:
    """A ``float`` kernel argument."""
    return np.float32(v)


def u64(v: int) -> np.uint64:
    """An ``unsigned long long`` kernel argument."""
    return np.uint64(int(v) & 0xFFFFFFFFFFFFFFFF)


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', 'int64', ... for a numpy/cupy or torch dtype."""
    if type(dtype).__module__.startswith("torch"):
        return str(dtype).replace("torch.", "")
    return np.dtype(dtype).name


def ctype(dtype: Any) -> str:
    """The C type of a storage dtype (a name or a dtype object), for template name expressions."""
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name not in CTYPES:
        raise TypeError(f"no CUDA C type for dtype {name}")
    return CTYPES[name]


# ------------------------------------------------------------------ dry run (tests without a GPU)


@dataclass
class Launch:
    """One recorded kernel launch (dry run)."""

    family: str
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple
    shared_mem: int


_DRY: list[tuple[list[Launch], Callable[[Module, Launch], None] | None]] = []


@contextlib.contextmanager
def dry_run(runner: Callable[[Module, Launch], None] | None = None) -> Iterator[list[Launch]]:
    """Record launches instead of running them; torch CPU tensors and NumPy arrays stand in for
    device arrays. Yields the list the launches are appended to. ``runner(module, launch)``, when
    given, is called on each launch as it is recorded (``_host.host_run`` executes it on the CPU)."""
    log: list[Launch] = []
    _DRY.append((log, runner))
    try:
        yield log
    finally:
        _DRY.pop()


def _dry() -> list[Launch] | None:
    return _DRY[-1][0] if _DRY else None


def host_executing() -> bool:
    """True inside ``_host.host_run()``: launches execute on the CPU, so the loaders' results are real
    (``dlgpu.ops`` then lets the cupy backend take CPU arrays)."""
    return bool(_DRY) and _DRY[-1][1] is not None


# ------------------------------------------------------------------ modules


def expand_includes(path: Path, seen: set[Path] | None = None) -> str:
    """The text of ``path`` with every ``#include "x.cuh"`` replaced by that file (once each)."""
    seen = set() if seen is None else seen
    text = path.read_text()

    def sub(m: re.Match) -> str:
        inc = (path.parent / m.group(1)).resolve()
        if inc in seen:
            return f"// (already included: {m.group(1)})"
        seen.add(inc)
        return f"// ---- begin {m.group(1)}\n{expand_includes(inc, seen)}\n// ---- end {m.group(1)}"

    return _INCLUDE.sub(sub, text)


class Module:
    """One family's ``.cu`` source and the template instantiations its loader launches."""

    def __init__(self, family: str, name_expressions: Sequence[str], cooperative: bool = False) -> None:
        self.family = family
        self.cooperative = cooperative  # launched with cuLaunchCooperativeKernel (grid-wide barriers)
        self.path = KERNEL_DIR / f"{family}.cu"
        self.name_expressions = tuple(name_expressions)
        if len(set(self.name_expressions)) != len(self.name_expressions):
            raise ValueError(f"{family}: duplicate name expressions")
        self._modules: dict[int, Any] = {}

    @property
    def options(self) -> tuple[str, ...]:
        """The NVRTC options of this module (CuPy adds its own: include paths, -ftz=true, --device-c)."""
        return (*nvrtc_options(), *((PERSISTENT_DEFINE,) if self.cooperative else ()))

    @property
    def source(self) -> str:
        """The .cu text with its headers inlined (what NVRTC and nvcc compile)."""
        return expand_includes(self.path)

    def kernel(self, name: str, device: int) -> Any:
        """The cupy.RawKernel for ``name`` on ``device`` (compiles the module on first use)."""
        self.check_name(name)
        mod = self._modules.get(device)
        if mod is None:
            import cupy

            with cupy.cuda.Device(device):
                mod = cupy.RawModule(
                    code=self.source, options=self.options, name_expressions=self.name_expressions,
                    enable_cooperative_groups=self.cooperative,
                )  # fmt: skip
            self._modules[device] = mod
        import cupy

        with cupy.cuda.Device(device):  # the function is loaded on the current device
            return mod.get_function(name)

    def check_name(self, name: str) -> None:
        """RuntimeError for a template the loader did not declare (a loader bug, not bad input)."""
        if name not in self.name_expressions:
            raise RuntimeError(f"{self.family}: kernel {name!r} is not in the loader's NAME_EXPRESSIONS")


# ------------------------------------------------------------------ arrays


def _kind(x: Any) -> str | None:
    """'torch' | 'cupy' for device arrays (or their dry-run stand-ins), 'host' for CPU arrays."""
    mod = type(x).__module__
    if mod.startswith("torch") and hasattr(x, "device"):
        if x.device.type == "cuda" or (_dry() is not None and x.device.type == "cpu"):
            return "torch"
        return "host"
    if mod.startswith("cupy") and hasattr(x, "data"):
        return "cupy"
    if isinstance(x, np.ndarray):
        return "cupy" if _dry() is not None else "host"
    return None


def is_device_array(x: Any) -> bool:
    """True for a cupy array or torch CUDA tensor (or their dry-run stand-ins)."""
    return _kind(x) in ("torch", "cupy")


def _device(x: Any, kind: str) -> int:
    if kind == "torch":
        return int(x.device.index or 0) if x.device.type == "cuda" else -1
    if isinstance(x, np.ndarray):  # dry run
        return -1
    return int(x.device.id)


def ptr(x: Any) -> np.uint64:
    """The device address of a contiguous array as a ``T*`` kernel argument (0 for None)."""
    if x is None:
        return np.uint64(0)
    if isinstance(x, np.ndarray):  # dry run only
        return np.uint64(x.ctypes.data)
    if type(x).__module__.startswith("torch"):
        return np.uint64(x.data_ptr())
    return np.uint64(x.data.ptr)


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


class Call:
    """The arrays of one op call: one kind (torch or cupy), one device, the stream to launch on.

    Construct with the op's array arguments by name (None values are ignored); raises ValueError
    for host arrays or arrays on different devices, TypeError for mixed kinds or non-arrays.
    """

    def __init__(self, **arrays: Any) -> None:
        self.kind: str | None = None
        self.device: int = 0
        first = None
        for name, x in arrays.items():
            if x is None:
                continue
            k = self._check_kind(x, name)
            dev = _device(x, k)
            if self.kind is None:
                self.kind, self.device, first = k, dev, name
            elif k != self.kind:
                raise TypeError(
                    f"{name} is a {_what(k)} but {first} is a {_what(self.kind)}; pass arrays of one kind"
                )
            elif dev != self.device:
                raise ValueError(f"{name} is on CUDA device {dev} but {first} is on device {self.device}")
        if self.kind is None:
            raise TypeError("the cupy backend needs at least one cupy array or torch CUDA tensor")

    @staticmethod
    def _check_kind(x: Any, name: str) -> str:
        k = _kind(x)
        if k is None:
            raise TypeError(f"{name} must be a cupy array or a torch CUDA tensor, got {type(x).__name__}")
        if k == "host":
            raise ValueError(
                f"{name} must be on a CUDA device (a cupy array or a torch CUDA tensor) for the cupy backend, "
                f"got a CPU {type(x).__name__}"
            )
        return k

    def prepare(
        self, x: Any, name: str, dtypes: Sequence[str] = FLOAT_DTYPES, dtype: tuple[str, str] | None = None
    ) -> Any:
        """``x`` contiguous, checked: one of ``dtypes``; ``dtype=(name, like)`` demands exactly that
        dtype, saying it must match the array ``like``."""
        k = self._check_kind(x, name)
        if k != self.kind:
            raise TypeError(f"{name} must be a {_what(self.kind)} like the other arrays, got a {_what(k)}")
        if _device(x, k) != self.device:
            raise ValueError(f"{name} must be on CUDA device {self.device} like the other arrays")
        dt = dtype_name(x.dtype)
        if dtype is not None:
            if dt != dtype[0]:
                raise TypeError(f"{name} must have the dtype of {dtype[1]} ({dtype[0]}), got {dt}")
        elif dt not in dtypes:
            hint = " (bfloat16 needs torch tensors: cupy has no bfloat16)" if "bfloat16" in dtypes else ""
            raise TypeError(f"{name} must be one of {', '.join(dtypes)} for the cupy backend, got {dt}{hint}")
        return self.contiguous(x)

    def contiguous(self, x: Any) -> Any:
        """A C-contiguous version of ``x`` (``x`` itself when it already is)."""
        if self.kind == "torch":
            return x.contiguous()
        if isinstance(x, np.ndarray):
            return np.ascontiguousarray(x)
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.ascontiguousarray(x)

    def astype(self, x: Any, dtype: str) -> Any:
        """``x`` converted to ``dtype`` (a contiguous copy; ``x`` itself when it already has it)."""
        if dtype_name(x.dtype) == dtype:
            return self.contiguous(x)
        if self.kind == "torch":
            return x.to(_torch_dtype(dtype)).contiguous()
        if isinstance(x, np.ndarray):
            return np.ascontiguousarray(x.astype(dtype))
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.ascontiguousarray(x.astype(dtype))

    def empty(self, shape: Sequence[int], dtype: str) -> Any:
        """An uninitialised array of the call's kind and device."""
        shape = tuple(int(s) for s in shape)
        if self.kind == "torch":
            import torch

            dev = "cpu" if self.device < 0 else f"cuda:{self.device}"
            return torch.empty(shape, dtype=_torch_dtype(dtype), device=dev)
        if dtype == "bfloat16":
            raise TypeError("bfloat16 arrays need torch tensors (cupy has no bfloat16)")
        if _dry() is not None:
            return np.empty(shape, dtype=dtype)
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.empty(shape, dtype=dtype)

    def zeros(self, shape: Sequence[int], dtype: str) -> Any:
        """A zero-filled array of the call's kind and device (filled on the call's stream)."""
        if self.kind == "torch":
            import torch

            dev = "cpu" if self.device < 0 else f"cuda:{self.device}"
            return torch.zeros(tuple(int(s) for s in shape), dtype=_torch_dtype(dtype), device=dev)
        if _dry() is not None:
            return np.zeros(tuple(int(s) for s in shape), dtype=dtype)
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.zeros(tuple(int(s) for s in shape), dtype=dtype)

    def launch(
        self,
        module: Module,
        name: str,
        grid: Sequence[int],
        block: Sequence[int],
        args: Sequence[Any],
        shared_mem: int = 0,
    ) -> None:
        """Launch ``name`` of ``module`` (on torch's current stream for torch tensors)."""
        module.check_name(name)
        grid3 = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block3 = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        if not (1 <= grid3[0] < 2**31 and 1 <= grid3[1] <= 65535 and 1 <= grid3[2] <= 65535):
            raise ValueError(f"{module.family}: grid {grid3} exceeds CUDA's limits (the problem is too large)")
        if any(not isinstance(a, (np.integer, np.floating)) for a in args):
            raise RuntimeError(f"{module.family}.{name}: kernel arguments must be NumPy scalars")
        if _DRY:
            log, runner = _DRY[-1]
            log.append(Launch(module.family, name, grid3, block3, tuple(args), int(shared_mem)))
            if runner is not None:
                runner(module, log[-1])
            return
        import cupy

        with cupy.cuda.Device(self.device):
            kern = module.kernel(name, self.device)
            if self.kind == "torch":
                import torch

                with cupy.cuda.ExternalStream(torch.cuda.current_stream(self.device).cuda_stream):
                    kern(grid3, block3, tuple(args), shared_mem=int(shared_mem))
            else:
                kern(grid3, block3, tuple(args), shared_mem=int(shared_mem))

    def item(self, x: Any) -> float:
        """The single element of ``x`` as a Python number (one host sync)."""
        if self.kind == "torch":
            return x.item()
        if isinstance(x, np.ndarray):
            return x.reshape(-1)[0].item()
        return x.reshape(-1)[0].get().item()

    def to_numpy(self, x: Any) -> np.ndarray:
        """A host copy of ``x`` (bfloat16 widened to float32: numpy has none)."""
        if type(x).__module__.startswith("torch"):
            import torch

            t = x.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        if isinstance(x, np.ndarray):
            return x
        return x.get()


def _what(kind: str) -> str:
    return "torch tensor" if kind == "torch" else "cupy array"


@cache
def device_capability(device: int) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device (through cupy)."""
    import cupy

    cc = cupy.cuda.Device(device).compute_capability  # e.g. '80'
    return int(cc[:-1]), int(cc[-1])


# ------------------------------------------------------------------ GEMM launch helpers (gemm.cuh)

GEMM_TILE = 64  # GEMM_BM = GEMM_BN in gemm.cuh
GEMM_THREADS = 256
SPLITK_TARGET_BLOCKS = 264  # ~2 blocks per SM of an H100 (132 SMs)
SPLITK_MIN_CHUNK = 256  # never split K below this many terms per chunk


def gemm_tiles(rows: int, cols: int) -> tuple[int, int]:
    """(tiles along rows, tiles along cols) of a GEMM output."""
    return cdiv(rows, GEMM_TILE), cdiv(cols, GEMM_TILE)


def split_k(k: int, tiles: int) -> tuple[int, int]:
    """(splits, chunk) for a split-K GEMM with ``tiles`` output tiles and reduction length ``k``:
    enough splits to fill the device, each chunk a multiple of 32 and >= SPLITK_MIN_CHUNK terms."""
    if k <= SPLITK_MIN_CHUNK:
        return 1, max(int(k), 1)
    want = max(1, min(cdiv(SPLITK_TARGET_BLOCKS, max(tiles, 1)), k // SPLITK_MIN_CHUNK, 65535))
    chunk = cdiv(cdiv(k, want), 32) * 32
    return cdiv(k, chunk), chunk


def round_to_dtype(v: float, dtype: str) -> float:
    """``v`` rounded to a storage dtype (as the reference's ``dtype.type(v)``), as a Python float."""
    if dtype == "bfloat16":
        import torch

        return float(torch.tensor(float(v), dtype=torch.float64).to(torch.bfloat16).item())
    return float(np.dtype(dtype).type(v))
