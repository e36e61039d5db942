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

Sanitizers: with ``DLGPU_HOST_SANITIZER=memcheck`` (AddressSanitizer: every out-of-bounds load or
store of global, shared or local memory) or ``racecheck`` (ThreadSanitizer: every pair of CUDA
threads touching an address, one writing, with no __syncthreads / grid.sync / launch boundary
between them) the modules are compiled instrumented, and a sanitizer's report during a launch makes
that launch raise RuntimeError with the report. The sanitizer's runtime must be loaded first in the
process: ``python -m dlgpu.kernels.cuda.hostcheck --tool racecheck python -m pytest tests/cuda``
sets that up (see hostcheck.py and the header's "Sanitizers" note).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

# ThreadSanitizer dies past 8128 live threads, and every CUDA thread of a cooperative launch is a live
# fiber: under racecheck a launch may hold this many (the rest is left to Python's own threads).
RACECHECK_FIBERS = 6144


@dataclass(frozen=True)
class Sanitizer:
    """How one host sanitizer is built and run."""

    flags: tuple[str, ...]  # g++ flags of an instrumented module (after CXX_FLAGS: its -O wins)
    runtime: str  # the shared library to preload (g++ -print-file-name=...)
    init_symbol: str  # present in the process when that runtime is loaded
    options_var: str  # its options' environment variable
    options: str  # dlgpu's defaults for them (hostcheck.py; the user's settings win)


# line tables (-g1) are all a report's frames need, and with -O1 half the compile time of -O2 -g
_SANITIZED_BUILD = ("-O1", "-g1", "-fno-omit-frame-pointer")

SANITIZERS: dict[str, Sanitizer] = {
    "memcheck": Sanitizer(
        ("-fsanitize=address", "-fsanitize-recover=address", *_SANITIZED_BUILD), "libasan.so",
        "__asan_init", "ASAN_OPTIONS",
        # Python's own leaks are not ours; keep going after a report so the launch can raise it (and
        # leave the exit status to the command: hostcheck.py fails a run whose log was not all read)
        "detect_leaks=0:halt_on_error=0:exitcode=0:detect_stack_use_after_return=0:detect_odr_violation=0",
    ),
    "racecheck": Sanitizer(
        ("-fsanitize=thread", *_SANITIZED_BUILD, f"-DDLGPU_TSAN_FIBERS={RACECHECK_FIBERS}"),
        "libtsan.so", "__tsan_init", "TSAN_OPTIONS",
        # Python, NumPy and torch are not instrumented; their libc calls are not the kernels' races
        "ignore_noninstrumented_modules=1:report_signal_unsafe=0:halt_on_error=0:exitcode=0",
    ),
}


def sanitizer() -> str | None:
    """The sanitizer the host modules are built with: $DLGPU_HOST_SANITIZER (None when unset)."""
    name = os.environ.get("DLGPU_HOST_SANITIZER") or None
    if name is not None and name not in SANITIZERS:
        raise ValueError(f"DLGPU_HOST_SANITIZER={name!r}: expected one of {sorted(SANITIZERS)}")
    return name


def max_coresident_threads() -> int | None:
    """How many CUDA threads a cooperative launch may have on the host (None: no limit but memory)."""
    return RACECHECK_FIBERS if sanitizer() == "racecheck" else None


def runtime_loaded(name: str) -> bool:
    """True when sanitizer ``name``'s runtime is loaded in this process."""
    return hasattr(ctypes.CDLL(None), SANITIZERS[name].init_symbol)


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
    tool = sanitizer()
    extra = SANITIZERS[tool].flags if tool else ()
    head = [cxx, *CXX_FLAGS, *extra, f"-I{HOST_DIR}", "-include", "dlgpu_host.h", *defines]
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
    tool = sanitizer()
    stem = f"{module.family}{'-coop' if module.cooperative else ''}{f'-{tool}' if tool else ''}-{key.hexdigest()[:16]}"
    out = _cache_dir() / f"{stem}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        # the source stays beside the library: a sanitizer's report names its lines
        src, so = out.with_suffix(".cpp"), Path(tmp) / "lib.so"
        tmp_src = Path(tmp) / src.name
        tmp_src.write_text(text)
        os.replace(tmp_src, src)
        res = subprocess.run(_build_command(cxx, module, src, so), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{module.family}: host compile failed:\n{res.stderr[-4000:]}")
        os.replace(so, out)  # atomic: a concurrent build of the same key writes the same bytes
    return out


# an unsymbolized frame of a library: "#3 <null> <null> (lstm-racecheck-0123abcd.so+0x5454)" (TSan),
# "#0 0x7f001c865310  (/root/.cache/dlgpu/cuda-host/lstm-memcheck-0123abcd.so+0x5310)" (ASan)
_NULL_FRAME = re.compile(
    r"(?:<null> <null>|(?P<pc>0x[0-9a-f]+) ) \((?:[^()\s]*/)?(?P<lib>[\w.-]+\.so)\+0x(?P<off>[0-9a-f]+)\)"
)


def _symbolize(text: str) -> str:
    """``text`` with the frames the sanitizer could not name (ThreadSanitizer misses libraries loaded
    after its first report) named by addr2line from the cached libraries' debug information."""
    addr2line = shutil.which("addr2line")
    if addr2line is None:
        return text

    def name(m: re.Match) -> str:
        lib = _cache_dir() / m["lib"]
        if not lib.is_file():
            return m[0]
        out = subprocess.run([addr2line, "-f", "-C", "-e", str(lib), f"0x{m['off']}"], capture_output=True,
                             text=True, check=False).stdout.split("\n")  # fmt: skip
        if len(out) < 2 or out[0] == "??":
            return m[0]
        pc = f"{m['pc']} in " if m["pc"] else ""
        return f"{pc}{out[0]} {out[1].split(' (')[0]} ({m['lib']}+0x{m['off']})"

    return _NULL_FRAME.sub(name, text)


class _Reports:
    """Where the loaded sanitizer writes its reports (``__sanitizer_set_report_path``): the log
    ``report.<pid>`` in $DLGPU_HOSTCHECK_DIR (hostcheck.py's folder) or a temporary one. How far this
    process has read it, and so passed it on, is kept in ``read.<pid>``: what the log has beyond
    that when the process ends (a sanitizer that stopped it) is for hostcheck.py to show."""

    def __init__(self) -> None:
        self.dir = Path(os.environ.get("DLGPU_HOSTCHECK_DIR") or tempfile.mkdtemp(prefix="dlgpu-hostcheck-"))
        set_path = getattr(ctypes.CDLL(None), "__sanitizer_set_report_path")  # (no name mangling)
        set_path(str(self.dir / "report").encode())
        self.seen = 0

    def new(self) -> str:
        """The report text written since the last call ("" when none)."""
        path = self.dir / f"report.{os.getpid()}"
        if not path.is_file() or path.stat().st_size == self.seen:
            return ""
        with path.open("rb") as f:
            f.seek(self.seen)
            text = f.read()
        self.seen += len(text)
        (self.dir / f"read.{os.getpid()}").write_text(str(self.seen))
        return _symbolize(text.decode(errors="replace"))


@cache
def _reports(tool: str) -> _Reports:
    return _Reports()


class HostModule:
    """One module's shared library: ``launch`` runs a kernel, ``signature`` gives its parameter codes."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.tool = sanitizer()
        if self.tool is not None and not runtime_loaded(self.tool):
            raise RuntimeError(
                f"DLGPU_HOST_SANITIZER={self.tool}: the sanitizer's runtime is not loaded in this process; run "
                f"the command under `python -m dlgpu.kernels.cuda.hostcheck --tool {self.tool} ...`"
            )
        self.reports = _reports(self.tool) if self.tool else None
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
            if self.reports and (before := self.reports.new()):  # not this launch's: not raised, but shown
                print(f"dlgpu host {self.tool}: reported outside a kernel launch:\n{before}", file=sys.stderr)
            rc = self.lib.dlgpu_host_launch(name.encode(), g, b, dyn, coop, int(reverse), argv, err, len(err))
            report = self.reports.new() if self.reports else ""
        if report:
            raise RuntimeError(f"{self.module.family}.{name}: {self.tool} reported:\n{report}")
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
