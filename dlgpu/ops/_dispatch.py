"""The backend dispatch: one table of ops, four backends, one rule for choosing.

Every op has the same name and arguments in every backend module:

    numpy  -> dlgpu.reference.<family>        (the oracle; always available)
    numba  -> dlgpu.kernels.numba.<family>    (CPU)
    triton -> dlgpu.kernels.triton.<family>   (CUDA; CPU tensors under TRITON_INTERPRET=1)
    cupy   -> dlgpu.kernels.cuda.<family>     (CUDA C through CuPy)

The backend is chosen, first match wins, by: the ``backend=`` argument of the call, the
innermost ``use_backend(...)`` block, ``set_backend(...)``, the ``DLGPU_BACKEND`` environment
variable, else ``auto``. ``auto`` picks the best backend for the arrays' device (numba on the
CPU, triton then cupy on CUDA). A named backend that is unknown, unavailable, lacks the op or
cannot run on the given arrays is an error; only ``auto`` ever chooses.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

BACKENDS: tuple[str, ...] = ("numpy", "numba", "triton", "cupy")
CHOICES: tuple[str, ...] = ("auto", *BACKENDS)

_MODULE_ROOT = {
    "numpy": "dlgpu.reference",
    "numba": "dlgpu.kernels.numba",
    "triton": "dlgpu.kernels.triton",
    "cupy": "dlgpu.kernels.cuda",
}

# op name -> family module (the file under reference/ and under each kernels/<backend>/).
OPS: dict[str, str] = {}


def _register(family: str, *names: str) -> None:
    for n in names:
        OPS[n] = family


_register(
    "activations",
    *(
        f"{a}_{d}"
        for a in ("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax")
        for d in ("forward", "backward")
    ),
)
_register("linear", "linear_forward", "linear_backward")
_register("conv", "conv2d_forward", "conv2d_backward")
_register("locally_connected", "locally_connected2d_forward", "locally_connected2d_backward")
_register("pooling", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")
_register("dropout", "dropout_forward", "dropout_backward")
_register(
    "losses",
    *(
        f"{n}_forward"
        for n in (
            "hinge_loss",
            "squared_hinge_loss",
            "binary_cross_entropy",
            "binary_cross_entropy_with_logits",
            "multiclass_hinge_loss",
            "multiclass_squared_hinge_loss",
            "cross_entropy",
            "mse_loss",
            "l1_loss",
            "pseudo_huber_loss",
        )
    ),
    "loss_backward",
)
_register(
    "regularizers",
    "l1_penalty_forward",
    "l1_penalty_backward",
    "l2_penalty_forward",
    "l2_penalty_backward",
    "max_norm_forward",
    "clip_grad_norm_forward",
    "clip_grad_value_forward",
)
_register("rnn", "rnn_forward", "rnn_backward")
_register("lstm", "lstm_forward", "lstm_backward")
_register("gru", "gru_forward", "gru_backward")
_register("mgu", "mgu_forward", "mgu_backward")


class BackendError(ValueError):
    """A backend was asked for that is unknown, unavailable, lacks the op, or cannot take the arrays."""


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and why not."""

    name: str
    available: bool
    reason: str = ""
    devices: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.available:
            return f"{self.name}: available ({', '.join(self.devices)})"
        return f"{self.name}: unavailable ({self.reason})"


# ---------------------------------------------------------------- choosing a backend

_global_backend: str | None = None
_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("dlgpu_backend", default=None)


def _check_name(name: str, what: str = "backend") -> str:
    if not isinstance(name, str) or name not in CHOICES:
        raise BackendError(f"{what} must be one of {', '.join(repr(c) for c in CHOICES)}; got {name!r}")
    return name


def set_backend(name: str | None) -> None:
    """Select the backend for later calls (``None`` clears the choice, back to the environment/auto)."""
    global _global_backend
    _global_backend = None if name is None else _check_name(name)


def get_backend() -> str:
    """The backend name now in force ('auto' unless something selected another)."""
    ctx = _context_backend.get()
    if ctx is not None:
        return ctx
    if _global_backend is not None:
        return _global_backend
    env = os.environ.get("DLGPU_BACKEND")
    if env:
        return _check_name(env.strip().lower(), "DLGPU_BACKEND")
    return "auto"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: ``with dlgpu.use_backend("numpy"): ...``."""
    token = _context_backend.set(_check_name(name))
    try:
        yield
    finally:
        _context_backend.reset(token)


def triton_interpret() -> bool:
    """True when TRITON_INTERPRET=1: Triton kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _status(name: str) -> BackendStatus:
    if name == "cupy" and cupy_host_run():
        return BackendStatus(name, True, devices=("cpu (host run)",))
    return _probe(name)


@cache
def _probe(name: str) -> BackendStatus:
    if name == "numpy":
        return BackendStatus(name, True, devices=("cpu",))
    if name == "numba":
        try:
            import numba  # noqa: F401
        except Exception as e:  # ImportError, or a numba/numpy version clash
            return BackendStatus(name, False, f"numba cannot be imported: {e}")
        return BackendStatus(name, True, devices=("cpu",))
    if name == "triton":
        try:
            import triton  # noqa: F401
        except Exception as e:
            return BackendStatus(name, False, f"triton cannot be imported: {e}")
        import torch

        if torch.cuda.is_available():
            return BackendStatus(name, True, devices=("cuda",))
        if triton_interpret():
            return BackendStatus(name, True, devices=("cpu (TRITON_INTERPRET=1)",))
        return BackendStatus(name, False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU)")
    try:
        import cupy
    except Exception as e:
        return BackendStatus(name, False, f"cupy cannot be imported ({e}); install dlgpu[cupy]")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return BackendStatus(name, False, f"no CUDA device for cupy: {e}")
    if n == 0:
        return BackendStatus(name, False, "no CUDA device")
    return BackendStatus(name, True, devices=("cuda",))


def backends() -> dict[str, BackendStatus]:
    """Every backend's availability here and, when unavailable, the reason."""
    return {b: _status(b) for b in BACKENDS}


@cache
def backend_module(backend: str, family: str) -> ModuleType | None:
    """The module holding ``family``'s ops for ``backend``, or None if that backend has no such file."""
    try:
        return importlib.import_module(f"{_MODULE_ROOT[backend]}.{family}")
    except ModuleNotFoundError as e:
        # no such kernel file, or the backend's own package (triton, cupy) is not installed
        if e.name is not None and (e.name.startswith(_MODULE_ROOT[backend]) or e.name in ("triton", "cupy", "numba")):
            return None
        raise


def implements(backend: str, op: str) -> bool:
    """True if ``backend`` has a kernel for ``op`` (whether or not it can run here)."""
    if op not in OPS:
        raise BackendError(f"op must be one of dlgpu's ops; got {op!r}")
    mod = backend_module(backend, OPS[op])
    return mod is not None and callable(getattr(mod, op, None))


def op_table() -> dict[str, dict[str, bool]]:
    """{op: {backend: implemented}} for every op: the table the README shows."""
    return {op: {b: implements(b, op) for b in BACKENDS} for op in OPS}


# ---------------------------------------------------------------- arrays and devices


def _kind(a: Any) -> str | None:
    """'numpy' | 'torch_cpu' | 'torch_cuda' | 'cupy' | None (not an array)."""
    if isinstance(a, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")  # a torch tensor implies torch is imported; never import it here
    if torch is not None and isinstance(a, torch.Tensor):
        return "torch_cuda" if a.is_cuda else "torch_cpu"
    if type(a).__module__.startswith("cupy"):
        return "cupy"
    return None


def _arrays(args: tuple, kwargs: dict) -> list[tuple[str, Any, str]]:
    found = []
    for i, a in enumerate(args):
        for item in a if isinstance(a, (list, tuple)) else (a,):
            k = _kind(item)
            if k is not None:
                found.append((f"argument {i}", item, k))
    for key, a in kwargs.items():
        for item in a if isinstance(a, (list, tuple)) else (a,):
            k = _kind(item)
            if k is not None:
                found.append((key, item, k))
    return found


_RUNS_ON = {
    "numpy": {"numpy", "torch_cpu"},
    "numba": {"numpy", "torch_cpu"},
    "triton": {"torch_cuda"},
    "cupy": {"cupy", "torch_cuda"},
}


def _runs_on(backend: str) -> set[str]:
    if backend in ("numpy", "numba"):
        return _RUNS_ON[backend]  # read-only here: the CPU backends' hot path skips the copy
    kinds = set(_RUNS_ON[backend])
    if backend == "triton" and triton_interpret():
        kinds.add("torch_cpu")
    if backend == "cupy" and cupy_host_run():
        kinds |= {"numpy", "torch_cpu"}
    return kinds


def cupy_host_run() -> bool:
    """True inside ``dlgpu.kernels.cuda._host.host_run()``, where the cupy backend's CUDA C kernels run
    on the CPU and take torch CPU tensors and NumPy arrays in place of device arrays."""
    from ..kernels.cuda import _common

    return _common.host_executing()


def resolve(op: str, args: tuple = (), kwargs: dict | None = None, backend: str | None = None) -> str:
    """The backend that will run ``op`` on these arguments (raises BackendError if none can)."""
    return _resolve(op, _arrays(args, kwargs or {}), backend)


def _resolve(op: str, arrays: list[tuple[str, Any, str]], backend: str | None) -> str:
    """``resolve`` on the ``_arrays`` of the arguments (``call`` finds them once for both uses)."""
    if op not in OPS:
        raise BackendError(f"op must be one of dlgpu's ops; got {op!r}")
    name = _check_name(backend) if backend is not None else get_backend()
    kinds = {k for _, _, k in arrays}
    on_cuda = bool(kinds & {"torch_cuda", "cupy"})
    if on_cuda and kinds & {"numpy", "torch_cpu"}:
        cpu = next(n for n, _, k in arrays if k in ("numpy", "torch_cpu"))
        gpu = next(n for n, _, k in arrays if k in ("torch_cuda", "cupy"))
        raise BackendError(f"{op}: {cpu} is on the CPU but {gpu} is on a CUDA device; move them to one device")
    if name == "auto":
        order = ("triton", "cupy") if on_cuda else ("numba", "numpy")
        for cand in order:
            if _status(cand).available and implements(cand, op) and kinds <= _runs_on(cand):
                return cand
        where = "CUDA" if on_cuda else "CPU"
        raise BackendError(f"{op}: no available backend implements it for {where} arrays ({_why(order)})")
    st = _status(name)
    if not st.available:
        raise BackendError(f"{op}: backend {name!r} is unavailable: {st.reason}")
    if not implements(name, op):
        raise BackendError(f"{op}: backend {name!r} has no kernel for it yet (see dlgpu.ops.op_table())")
    runs_on = _runs_on(name)
    bad = [(n, k) for n, _, k in arrays if k not in runs_on]
    if bad:
        n, k = bad[0]
        raise BackendError(
            f"{op}: backend {name!r} cannot run on {n} ({k.replace('_', ' ')}); it takes {', '.join(sorted(runs_on))}"
        )
    return name


def _why(order: tuple[str, ...]) -> str:
    return "; ".join(str(_status(b)) for b in order)


# ---------------------------------------------------------------- calling


def _to_numpy(a: Any, name: str = "") -> Any:
    if isinstance(a, (list, tuple)):
        return type(a)([_to_numpy(x, name) for x in a])
    if isinstance(a, np.ndarray) or _kind(a) != "torch_cpu":
        return a
    t = a.detach() if a.requires_grad else a
    if t.dtype not in _NUMPY_DTYPES() and t.dtype.is_floating_point:
        what = f"{name} is a {t.dtype} tensor" if name else f"got {t.dtype}"
        raise TypeError(
            f"the CPU backends take float16/32/64 tensors, and bfloat16 when every floating-point input is "
            f"bfloat16: {what} (cast the inputs to one dtype)"
        )
    return t.numpy()


def _numpy_args(fn: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """``args`` and ``kwargs`` with torch CPU tensors as numpy views; a TypeError names the argument."""
    try:
        return _to_numpy(args), {k: _to_numpy(v) for k, v in kwargs.items()}
    except TypeError:  # again, argument by argument, for the message: the error path only
        names = list(inspect.signature(fn).parameters)
        for i, a in enumerate(args):
            _to_numpy(a, names[i] if i < len(names) else f"argument {i}")
        for k, v in kwargs.items():
            _to_numpy(v, k)
        raise


@cache
def _NUMPY_DTYPES() -> frozenset:  # noqa: N802
    """The torch dtypes the CPU backends take as they are: the floats numpy has, and the rest
    (ints, bool) that numpy views as well."""
    import torch

    return frozenset({torch.float16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8,
                      torch.bool, torch.int8, torch.int16})  # fmt: skip


def _to_torch(a: Any) -> Any:
    import torch

    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)) if a.ndim else torch.tensor(a)
    if isinstance(a, np.generic):
        return torch.tensor(a)
    if isinstance(a, (list, tuple)):
        return type(a)(_to_torch(x) for x in a)
    return a


def _range(op: str, backend: str) -> contextlib.AbstractContextManager:
    """A ``dlgpu::<op>[<backend>]`` range while torch's profiler runs (and an NVTX range on CUDA
    when DLGPU_NVTX=1, for Nsight); nothing otherwise, and never inside a traced graph."""
    torch = sys.modules.get("torch")
    if torch is None:
        return _NULL_RANGE
    # cheapest test first: this runs on every call, and most calls are neither profiled nor traced
    if torch.autograd._profiler_enabled():
        if torch.compiler.is_compiling():
            return _NULL_RANGE
        return torch.profiler.record_function(f"dlgpu::{op}[{backend}]")
    if os.environ.get("DLGPU_NVTX", "0") not in ("", "0") and torch.cuda.is_available():
        if torch.compiler.is_compiling():
            return _NULL_RANGE
        return torch.cuda.nvtx.range(f"dlgpu::{op}[{backend}]")
    return _NULL_RANGE


_NULL_RANGE = contextlib.nullcontext()  # reusable, holds no state


# ---------------------------------------------------------------- half storage on the CPU
# The Numba kernels compute in float32/float64 and numpy has no bfloat16. So, as the GPU kernels keep
# float16/bfloat16 in storage and compute in float32, the CPU backends take half inputs when *every*
# floating-point input has that one dtype: upcast to float32, run, and round each float output back
# once (every op's float outputs have its inputs' dtype). The reference keeps its own float16 path.
# Mixed dtypes are left to the kernels' checks: no silent casts between arguments.


def _float_dtypes(arrays: list[tuple[str, Any, str]]) -> set[Any]:
    return {a.dtype for _, a, _ in arrays if _is_float(a)}


def _is_float(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype.kind == "f"
    return a.dtype.is_floating_point if _kind(a) in ("torch_cpu", "torch_cuda") else a.dtype.kind == "f"


def _half_storage(backend: str, arrays: list[tuple[str, Any, str]]) -> Any:
    """The half dtype to keep in storage around a float32 run of a CPU backend, or None."""
    dtypes = _float_dtypes(arrays)
    if len(dtypes) != 1:
        return None
    (dt,) = dtypes
    if isinstance(dt, np.dtype):  # (comparing a numpy dtype with a torch one is slow)
        return dt if backend == "numba" and dt == np.float16 else None
    import torch

    halves = (torch.bfloat16,) if backend == "numpy" else (torch.bfloat16, torch.float16)
    return dt if dt in halves else None


def _map_floats(value: Any, fn: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_map_floats(v, fn) for v in value)
    if _kind(value) is not None or isinstance(value, np.generic):
        return fn(value) if _is_float(value) else value
    return value


def _upcast(value: Any) -> Any:
    return _map_floats(value, lambda a: a.float() if _kind(a) == "torch_cpu" else a.astype(np.float32))


def _store_as(value: Any, dtype: Any) -> Any:
    return _map_floats(value, lambda a: a.to(dtype) if _kind(a) == "torch_cpu" else a.astype(dtype))


def call(op: str, *args: Any, backend: str | None = None, **kwargs: Any) -> Any:
    """Run ``op`` on the chosen backend. Torch CPU tensors reach the CPU backends zero-copy
    (as numpy views) and their results come back as torch tensors. On the CPU backends, float16 (numba)
    and bfloat16 (numba, numpy) inputs are computed in float32 and the results stored back in that dtype,
    provided every floating-point input has it."""
    arrays = _arrays(args, kwargs)
    name = _resolve(op, arrays, backend)
    fn = getattr(backend_module(name, OPS[op]), op)
    with _range(op, name):
        if name in ("numpy", "numba"):
            torch_in = any(k == "torch_cpu" for _, _, k in arrays)
            half = _half_storage(name, arrays)
            if half is not None:
                args, kwargs = _upcast(args), {k: _upcast(v) for k, v in kwargs.items()}
            if torch_in:
                args, kwargs = _numpy_args(fn, args, kwargs)
            out = fn(*args, **kwargs)
            out = _to_torch(out) if torch_in else out
            return out if half is None else _store_as(out, half)
        return fn(*args, **kwargs)
