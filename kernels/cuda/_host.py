"""The CUDA C kernels of kernels/cuda, compiled with g++ and run on the CPU: the tests of a machine
without a GPU execute the real ``.cu`` sources, not a model of them.

    with host_run() as log:                      # a dry_run() whose launches also execute here
        y = activations.relu_forward(torch_cpu_tensor)

Each module (one ``.cu`` with its headers inlined, exactly ``Module.source``) is compiled once into
a shared library with ``host/dlgpu_host.h`` (fibers for CUDA threads, per-block shared memory,
barriers, warp shuffles, grid.sync, half/bf16, WMMA; see that header for what is and is not
emulated) and a table of the loader's NAME_EXPRESSIONS. Libraries are cached under
``$DLGPU_CACHE_DIR/cuda-host`` (default ``~/.cache/dlgpu/cuda-host``), keyed by the generated
source, the runtime header and the compiler. Kernel arguments go through the same checks as a real
launch, and each is checked against the instantiation's C parameter types before the call. Inside
``host_run()``, ``dlgpu.ops.call(..., backend="cupy")`` takes torch CPU tensors and NumPy arrays.

``reason()`` says why host runs are unavailable (no C++ compiler); tests skip with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import _common, _resources
from ._common import Launch, Module

HOST_DIR = Path(__file__).resolve().parent / "host"
CXX_FLAGS: tuple[str, ...] = ("-std=c++17", "-O2", "-fPIC", "-shared", "-w", "-fno-fast-math")

_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[\w ]+?)\s+(?P<name>\w+)\s*\[\s*\]\s*;"
)
_SHARED = re.compile(
    r"__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[\w:<>, ]+?)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]+\]\s*)*);"
)
_LOCK = threading.Lock()


def find_cxx() -> str | None:
    """The C++ compiler: $CXX, else g++ on PATH (None if neither)."""
    cxx = os.environ.get("CXX") or "g++"
    return shutil.which(cxx)


def reason() -> str | None:
    """None when kernels can run on the host, else why not (for a test's skip)."""
    if find_cxx() is None:
        return "no C++ compiler (g++ or $CXX) to run the CUDA C kernels on the CPU"
    return None


def host_source(module: Module) -> str:
    """``module.source`` with every ``__shared__`` declaration rewritten into a per-block lookup and a
    table of the module's name expressions appended."""
    src = _EXTERN_SHARED.sub(lambda m: f"DLGPU_EXTERN_SHARED({m['type']}, {m['name']});", module.source)
    src = _SHARED.sub(lambda m: f"DLGPU_SHARED({m['type']}, {m['name']}, {m['dims'].strip()});", src)
    code = "\n".join(line.split("//", 1)[0] for line in src.splitlines())
    if "__shared__" in code:
        raise RuntimeError(f"{module.family}: a __shared__ declaration _host.py cannot rewrite")
    rows = ",\n".join(
        f'    {{"{n}", &dlgpu_host::Kernel<&{n}>::launch, &dlgpu_host::Kernel<&{n}>::signature}}'
        for n in module.name_expressions
    )
    return f"""{src}

// ------------------------------------------------------------------ host entry points (_host.py)
static const dlgpu_host::Entry dlgpu_entries[] = {{
{rows}
}};

static const dlgpu_host::Entry* dlgpu_find(const char* name) {{
    for (const auto& e : dlgpu_entries)
        if (strcmp(e.name, name) == 0) return &e;
    return nullptr;
}}

extern "C" int dlgpu_host_signature(const char* name, char* out, int cap) {{
    const auto* e = dlgpu_find(name);
    if (!e) return -1;
    snprintf(out, cap, "%s", e->signature().c_str());
    return 0;
}}

extern "C" int dlgpu_host_launch(const char* name, const unsigned* grid, const unsigned* block,
                                 unsigned long long dyn, int coop, int reverse, void** args, char* err, int cap) {{
    const auto* e = dlgpu_find(name);
    if (!e) {{
        snprintf(err, cap, "no kernel %s in this module", name);
        return 1;
    }}
    if (!e->launch(uint3{{grid[0], grid[1], grid[2]}}, uint3{{block[0], block[1], block[2]}}, dyn, coop != 0,
                   reverse != 0, args)) {{
        snprintf(err, cap, "%s", dlgpu_host::g_error.c_str());
        return 1;
    }}
    return 0;
}}
"""


def _cache_dir() -> Path:
    return _resources.cache_dir().parent / "cuda-host"


@cache
def _compiler_id(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout


def _build_command(cxx: str, module: Module, src: Path, out: Path) -> list[str]:
    defines = [o for o in module.options if o.startswith("-D")]
    head = [cxx, *CXX_FLAGS, f"-I{HOST_DIR}", "-include", "dlgpu_host.h", *defines]
    return [*head, "-x", "c++", str(src), "-o", str(out)]


def library_path(module: Module) -> Path:
    """The compiled shared library of ``module`` (built on first use, then taken from the cache)."""
    cxx = find_cxx()
    if cxx is None:
        raise RuntimeError(reason())
    text = host_source(module)
    key = hashlib.sha256()
    for part in (text, (HOST_DIR / "dlgpu_host.h").read_text(), " ".join(_build_command(cxx, module, Path(), Path())),
                 _compiler_id(cxx)):  # fmt: skip
        key.update(part.encode())
    out = _cache_dir() / f"{module.family}{'-coop' if module.cooperative else ''}-{key.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, so = Path(tmp) / f"{module.family}.cpp", Path(tmp) / "lib.so"
        src.write_text(text)
        res = subprocess.run(_build_command(cxx, module, src, so), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{module.family}: host compile failed:\n{res.stderr[-4000:]}")
        os.replace(so, out)  # atomic: a concurrent build of the same key writes the same bytes
    return out


class HostModule:
    """One module's shared library: ``launch`` runs a kernel, ``signature`` gives its parameter codes."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.lib = ctypes.CDLL(str(library_path(module)))
        self.lib.dlgpu_host_launch.restype = ctypes.c_int
        self.lib.dlgpu_host_signature.restype = ctypes.c_int
        self._sigs: dict[str, list[str]] = {}

    def signature(self, name: str) -> list[str]:
        """The C parameter codes of ``name``: "p8" pointer, "i8" long long, "i4" int, "f4" float, ..."""
        if name not in self._sigs:
            buf = ctypes.create_string_buffer(4096)
            if self.lib.dlgpu_host_signature(name.encode(), buf, len(buf)) != 0:
                raise RuntimeError(f"{self.module.family}: no kernel {name!r} in the host library")
            text = buf.value.decode()
            self._sigs[name] = text.split(",") if text else []
        return self._sigs[name]

    def launch(self, name: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any],
               shared_mem: int = 0, reverse: bool = False) -> None:  # fmt: skip
        """Run ``name`` over ``grid`` x ``block`` on the CPU; RuntimeError on a kernel error."""
        sig = self.signature(name)
        if len(sig) != len(args):
            raise RuntimeError(f"{name}: {len(args)} arguments for {len(sig)} parameters")
        bufs = []
        for i, (code, a) in enumerate(zip(sig, args)):
            a = np.asarray(a)
            have = f"{a.dtype.kind}{a.dtype.itemsize}"
            want = {"p8": "u8"}.get(code, code)
            if have != want:
                raise RuntimeError(f"{name}: argument {i} is {a.dtype} but the C parameter is {code}")
            bufs.append(ctypes.create_string_buffer(a.tobytes(), a.dtype.itemsize))
        argv = (ctypes.c_void_p * max(len(bufs), 1))(*[ctypes.cast(b, ctypes.c_void_p) for b in bufs])
        g = (ctypes.c_uint * 3)(*(tuple(int(v) for v in grid) + (1,) * (3 - len(grid))))
        b = (ctypes.c_uint * 3)(*(tuple(int(v) for v in block) + (1,) * (3 - len(block))))
        err = ctypes.create_string_buffer(4096)
        coop, dyn = int(self.module.cooperative), ctypes.c_ulonglong(int(shared_mem))
        with _LOCK:  # the runtime's scheduler state is process-global
            rc = self.lib.dlgpu_host_launch(name.encode(), g, b, dyn, coop, int(reverse), argv, err, len(err))
        if rc != 0:
            raise RuntimeError(f"{self.module.family}.{name}: {err.value.decode()}")


_MODULES: dict[int, HostModule] = {}


def host_module(module: Module) -> HostModule:
    """The (cached) HostModule of ``module``."""
    with _LOCK:
        hm = _MODULES.get(id(module))
        if hm is None or hm.module is not module:
            hm = _MODULES[id(module)] = HostModule(module)
    return hm


def run_launch(module: Module, launch: Launch, reverse: bool = False) -> None:
    """Execute one recorded launch on the CPU."""
    host_module(module).launch(launch.name, launch.grid, launch.block, launch.args, launch.shared_mem, reverse)


@contextlib.contextmanager
def host_run(reverse: bool = False) -> Iterator[list[Launch]]:
    """``dry_run()`` whose launches also run on the CPU, at once, through the compiled ``.cu``.
    ``reverse``: the threads of a block run in reverse order between barriers (a race on one side of
    a missing barrier shows in one order or the other)."""
    if reason() is not None:
        raise RuntimeError(reason())
    with _common.dry_run(runner=lambda module, launch: run_launch(module, launch, reverse)) as log:
        yield log
