"""``dlgpu kernels``: the static resource report of every GPU kernel.

* CUDA C (kernels/cuda/*.cu): registers, shared memory, stack and spills per kernel from
  ``nvcc -cubin -Xptxas -v``, through ``dlgpu.kernels.cuda._resources`` (which instantiates exactly
  the templates the loaders launch) when it is there, else by compiling each file as is here.
  Needs nvcc, not a GPU.
* Triton: the same numbers for every *compiled* kernel, read from Triton's kernel caches after
  every op's quick case has run once on the GPU (autotuning included). Triton compiles for a
  device only when a kernel first runs on it, so without CUDA there is nothing to report.

High register counts cap occupancy (65536 registers per SM: 128 registers x 512 threads); any
spill is local-memory traffic inside the kernel and is shown in red.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


@dataclass
class KernelReport:
    """CUDA rows (one per kernel), Triton rows (one per compiled specialisation), and why either is empty."""

    arch: str
    cuda: list[dict] = field(default_factory=list)
    cuda_message: str = ""
    triton: list[dict] = field(default_factory=list)
    triton_message: str = ""

    @property
    def cuda_errors(self) -> list[dict]:
        """CUDA files that failed to compile."""
        return [r for r in self.cuda if not r.get("ok", True)]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {"arch": self.arch, "cuda": self.cuda, "cuda_message": self.cuda_message,
                "triton": self.triton, "triton_message": self.triton_message}  # fmt: skip


# ------------------------------------------------------------------ CUDA C


def parse_ptxas(text: str) -> list[dict]:
    """One dict per entry function in ``ptxas -v`` output: kernel (mangled), arch, registers, smem,
    stack, spill_stores, spill_loads (bytes)."""
    rows: list[dict] = []
    cur: dict | None = None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = dict(kernel=m.group(1), arch=m.group(2), registers=0, smem=0, stack=0, spill_stores=0, spill_loads=0)
            rows.append(cur)
        elif cur is not None and (m := _SPILL.search(line)):
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(g) for g in m.groups())
        elif cur is not None and (m := _USED.search(line)):
            cur["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            cur["smem"] = int(s.group(1)) if s else 0
            cur = None
    return rows


def _demangle(names: list[str]) -> list[str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return names
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    if len(out) != len(names):
        return names
    return [d.split("(")[0].removeprefix("void ") for d in out]


def ptxas_report(files: Sequence[str | Path], arch: str = "sm_90", nvcc: str | None = None) -> list[dict]:
    """Compile each ``.cu`` as is (``nvcc -cubin -arch=<arch> -Xptxas -v``, its directory on the
    include path) and return one row per kernel, in ``_resources.resource_report``'s format; a file
    that fails gives one row with ok=False and the compiler's output. FileNotFoundError without nvcc."""
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on PATH")
    rows: list[dict] = []
    for f in files:
        path = Path(f)
        with tempfile.TemporaryDirectory(prefix="dlgpu_ptxas_") as tmp:
            cmd = [nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-I", str(path.parent),
                   "-o", str(Path(tmp) / "out.cubin"), str(path)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
        base = dict(file=path.name, arch=arch, note="compiled as is (no template instantiation)")
        if proc.returncode != 0:
            rows.append(dict(base, kernel="", mangled="", registers=0, smem=0, stack=0, spill_stores=0,
                             spill_loads=0, ok=False, error=proc.stdout + proc.stderr))  # fmt: skip
            continue
        parsed = parse_ptxas(proc.stdout + proc.stderr)
        for r, name in zip(parsed, _demangle([r["kernel"] for r in parsed])):
            rows.append(dict(base, **{**r, "kernel": name, "mangled": r["kernel"]}, ok=True, error=""))
    return rows


def _resolve_files(files: Sequence[str] | None) -> list[Path]:
    from ..kernels import cuda as cuda_pkg

    kdir = Path(cuda_pkg.__file__).resolve().parent
    if not files:
        return sorted(kdir.glob("*.cu"))
    out = []
    for f in files:
        p = Path(f) if f.endswith(".cu") else kdir / f"{f}.cu"
        if not p.is_file():
            raise ValueError(f"files: no such .cu file {p} (give a path or a family name like 'conv')")
        out.append(p)
    return out


def cuda_resources(files: Sequence[str] | None = None, arch: str = "sm_90") -> tuple[list[dict], str]:
    """(rows, message) for the CUDA C kernels; the message says why there are no rows."""
    paths = _resolve_files(files)
    if not paths:
        return [], "no .cu files in kernels/cuda"
    if shutil.which("nvcc") is None:
        try:
            from ..kernels.cuda._resources import find_nvcc
        except ImportError:
            find_nvcc = lambda: None  # noqa: E731
        if find_nvcc() is None:
            return [], "nvcc not found (install the CUDA toolkit or set CUDA_HOME): no CUDA resource report"
    try:
        from ..kernels.cuda import _resources
    except ModuleNotFoundError as e:
        if not (e.name or "").endswith("_resources"):
            raise
        return ptxas_report(paths, arch), ""
    return _resources.resource_report((arch,), paths), ""


def default_arch() -> str:
    """This GPU's sm_XY, else sm_90 (the H100)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"sm_{major}{minor}"
    except Exception:  # no torch/CUDA: the default target
        pass
    return "sm_90"


# ------------------------------------------------------------------ Triton


def _jit_functions() -> list[tuple[str, str, Any, Any]]:
    """(module, name, JITFunction, autotuner or None) for every Triton kernel in dlgpu.kernels.triton."""
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    from ..kernels import triton as tpkg

    found, seen = [], set()
    for info in pkgutil.iter_modules(tpkg.__path__):
        mod = importlib.import_module(f"{tpkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            tuner, fn = None, obj
            for _ in range(4):  # Autotuner / Heuristics wrap the JITFunction in .fn
                if isinstance(fn, Autotuner):
                    tuner = fn
                if isinstance(fn, JITFunction) or not hasattr(fn, "fn"):
                    break
                fn = fn.fn
            if isinstance(fn, JITFunction) and id(fn) not in seen:
                seen.add(id(fn))
                found.append((info.name, name, fn, tuner))
    return found


def _compile_all_triton(dtypes: Sequence[str] = ("float32",)) -> None:
    """Run every op's quick case once on CUDA in each of ``dtypes`` (compiles and autotunes)."""
    from .. import ops
    from ..testing.cases import all_cases, run_case, torch_inputs

    for dtype in dtypes:
        for case in all_cases(0, "quick"):
            if ops.implements("triton", case.forward):
                run_case(case, "triton", dtype, 0, torch_inputs(dtype, "cuda"))


def triton_resources(compile_first: bool = True, dtypes: Sequence[str] = ("float32",)) -> tuple[list[dict], str]:
    """(rows, message) for the compiled Triton kernels: one row per compiled specialisation
    (``compile_first``: run every op's quick case in each of ``dtypes`` first)."""
    try:
        import torch
        import triton  # noqa: F401
    except Exception as e:
        return [], f"triton cannot be imported ({e})"
    if not torch.cuda.is_available():
        return [], ("no CUDA device: Triton compiles a kernel for a GPU only when it first runs on one "
                    "(under TRITON_INTERPRET=1 nothing is compiled), so there are no registers or spills to report")
    if compile_first:
        _compile_all_triton(dtypes)
    rows = []
    for module, name, fn, tuner in _jit_functions():
        picked = list(getattr(tuner, "cache", {}).values()) if tuner is not None else []
        const_idx = set(getattr(fn, "constexprs", []))
        for caches in fn.device_caches.values():
            for k in caches[0].values():
                k._init_handles()
                md = k.metadata
                consts = {fn.arg_names[i[0]]: v for i, v in getattr(k.src, "constants", {}).items()
                          if len(i) == 1 and i[0] in const_idx}  # fmt: skip
                chosen = any(c.num_warps == md.num_warps and c.num_stages == md.num_stages
                             and all(consts.get(a) == v for a, v in c.kwargs.items()) for c in picked)  # fmt: skip
                rows.append(dict(module=module, kernel=name, constexprs=" ".join(f"{a}={v}" for a, v in consts.items()),
                                 num_warps=md.num_warps, num_stages=md.num_stages, registers=k.n_regs,
                                 spills=k.n_spills, smem=md.shared,
                                 autotune=("picked" if chosen else "tried") if tuner is not None else ""))  # fmt: skip
    msg = "" if rows else "no Triton kernel was compiled"
    return rows, msg


# ------------------------------------------------------------------ report


def kernel_report(
    files: Sequence[str] | None = None,
    arch: str | None = None,
    triton: bool = True,
    dtypes: Sequence[str] = ("float32",),
) -> KernelReport:
    """Both reports; ``files`` restricts the CUDA part (paths or family names), ``arch`` defaults to
    this GPU's, ``dtypes`` are those the Triton kernels are compiled for."""
    rep = KernelReport(arch or default_arch())
    rep.cuda, rep.cuda_message = cuda_resources(files, rep.arch)
    if triton:
        rep.triton, rep.triton_message = triton_resources(True, dtypes)
    else:
        rep.triton_message = "skipped (--no-triton)"
    return rep


def render_kernels(rep: KernelReport, console: Any = None) -> None:
    """Print the CUDA and Triton tables (spills in red) and the messages of empty parts."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    if rep.cuda:
        t = Table(title=f"CUDA C kernels (nvcc -Xptxas -v, {rep.arch})", header_style="bold")
        for c in ("file", "kernel", "regs", "smem B", "stack B", "spill st/ld B", "note"):
            t.add_column(c, justify="left" if c in ("file", "kernel", "note") else "right")
        for r in rep.cuda:
            if not r.get("ok", True):
                t.add_row(r["file"], "[bold red]COMPILE FAILED[/]", "", "", "", "", escape(r.get("error", ""))[:200])
                continue
            spill = f"{r['spill_stores']}/{r['spill_loads']}"
            if r["spill_stores"] or r["spill_loads"]:
                spill = f"[bold red]{spill}[/]"
            t.add_row(r["file"], escape(r["kernel"]), str(r["registers"]), str(r["smem"]), str(r["stack"]), spill,
                      escape(r.get("note", "")))  # fmt: skip
        console.print(t)
    else:
        console.print(f"CUDA C: {rep.cuda_message}", markup=False)
    if rep.triton:
        t = Table(title="Triton kernels (compiled on this GPU)", header_style="bold")
        for c in ("module", "kernel", "constexprs", "warps", "stages", "regs", "spills", "smem B", "autotune"):
            t.add_column(c, justify="right" if c in ("warps", "stages", "regs", "spills", "smem B") else "left")
        for r in rep.triton:
            spills = f"[bold red]{r['spills']}[/]" if r["spills"] else "0"
            t.add_row(r["module"], r["kernel"], escape(r["constexprs"]), str(r["num_warps"]), str(r["num_stages"]),
                      str(r["registers"]), spills, str(r["smem"]), r["autotune"])  # fmt: skip
        console.print(t)
    else:
        console.print(f"Triton: {rep.triton_message}", markup=False)
    n_spill = sum(1 for r in rep.cuda if r.get("spill_stores") or r.get("spill_loads"))
    n_spill += sum(1 for r in rep.triton if r.get("spills"))
    console.print(f"{len(rep.cuda)} CUDA kernels, {len(rep.triton)} compiled Triton kernels, {n_spill} spilling",
                  markup=False, highlight=False)  # fmt: skip
