"""``dlgpu kernels``: the static resource report of every GPU kernel.

* CUDA C (kernels/cuda/*.cu): registers, shared memory, stack and spills per kernel from
  ``nvcc -cubin -Xptxas -v``, through ``dlgpu.kernels.cuda._resources`` (which instantiates exactly
  the templates the loaders launch; a .cu from elsewhere is compiled as is). The cooperative
  (persistent-kernel) modules are also built the way CuPy builds them, relocatable and linked
  against libcudadevrt, and each link is reported. Needs nvcc, not a GPU.
* Triton: the same numbers for every *compiled* kernel. On a GPU they are read from Triton's kernel
  caches after every op's quick case has run once (autotuning included). Without one, every launch
  of every op's tiny cases is recorded under the interpreter and compiled ahead of time for the
  target arch with each autotune config (``dlgpu.bench.triton_aot``): what the installed Triton
  would build for that GPU, without running it.

High register counts cap occupancy (65536 registers per SM: 128 registers x 512 threads); any
spill is local-memory traffic inside the kernel and is shown in red.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class KernelReport:
    """CUDA rows (one per kernel), Triton rows (one per compiled specialisation), and why either is empty."""

    arch: str
    cuda: list[dict] = field(default_factory=list)
    cuda_message: str = ""
    triton: list[dict] = field(default_factory=list)
    triton_message: str = ""
    cuda_links: list[dict] = field(default_factory=list)  # one per cooperative module (``cuda_links``)

    @property
    def triton_errors(self) -> list[dict]:
        """Triton kernels that failed to compile (ahead of time, without a GPU)."""
        return [r for r in self.triton if not r.get("ok", True)]

    @property
    def cuda_errors(self) -> list[dict]:
        """CUDA files that failed to compile, and cooperative modules that failed to link."""
        return [r for r in (*self.cuda, *self.cuda_links) if not r.get("ok", True)]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {"arch": self.arch, "cuda": self.cuda, "cuda_message": self.cuda_message,
                "cuda_links": self.cuda_links, "triton": self.triton,
                "triton_message": self.triton_message}  # fmt: skip


# ------------------------------------------------------------------ CUDA C


def _resolve_files(files: Sequence[str] | None) -> list[Path]:
    from ..kernels.cuda import _resources

    if not files:
        return _resources.cu_files()
    out = []
    for f in files:
        p = Path(f) if f.endswith(".cu") else _resources.KERNEL_DIR / f"{f}.cu"
        if not p.is_file():
            raise ValueError(f"files: no such .cu file {p} (give a path or a family name like 'conv')")
        out.append(p)
    return out


def cuda_resources(files: Sequence[str] | None = None, arch: str = "sm_90") -> tuple[list[dict], str]:
    """(rows, message) for the CUDA C kernels; the message says why there are no rows."""
    from ..kernels.cuda import _resources

    paths = _resolve_files(files)
    if not paths:
        return [], "no .cu files in kernels/cuda"
    if _resources.find_nvcc() is None:
        return [], "nvcc not found (install the CUDA toolkit or set CUDA_HOME): no CUDA resource report"
    return _resources.resource_report((arch,), paths), ""


def cuda_links(files: Sequence[str] | None = None, arch: str = "sm_90") -> list[dict]:
    """``_resources.link_report`` rows for the cooperative families among ``files`` (all by default):
    each persistent-kernel module built as CuPy builds it, relocatable and linked against libcudadevrt."""
    from ..kernels.cuda import _resources

    here = _resources.KERNEL_DIR.resolve()
    stems = {p.stem for p in _resolve_files(files) if p.resolve().parent == here}
    fams = [f for f in _resources.COOP_FAMILIES if f in stems]
    if not fams or _resources.find_nvcc() is None:
        return []
    return _resources.link_report(arch, fams)


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


def triton_aot_resources(arch: str = "sm_90", dtypes: Sequence[str] = ("float32",)) -> tuple[list[dict], str]:
    """(rows, message) without a GPU: every launch of the tiny cases in ``dtypes``, compiled ahead of
    time for ``arch`` with each autotune config (see ``dlgpu.bench.triton_aot``)."""
    from .triton_aot import aot_report

    m = re.fullmatch(r"sm_(\d+)a?", arch)
    if m is None:
        raise ValueError(f"arch must look like sm_90, got {arch!r}")
    try:
        rep = aot_report(int(m.group(1)), ("tiny",), tuple(dtypes))
    except Exception as e:  # e.g. a Triton without the NVIDIA backend
        return [], f"ahead-of-time compile failed: {e}"
    rows = [dict(r, spills=r.get("spill_stores", 0) + r.get("spill_loads", 0)) for r in rep["rows"]]
    notes = [f"compiled ahead of time by Triton {rep['triton']} for {rep['arch']} (no GPU here)"]
    notes += [f"record failed: {f}" for f in rep["record_failures"]]
    if rep["missing"]:
        notes.append("never launched by the tiny cases: " + ", ".join(rep["missing"]))
    return rows, "; ".join(notes)


def triton_resources(
    compile_first: bool = True, dtypes: Sequence[str] = ("float32",), arch: str = "sm_90"
) -> tuple[list[dict], str]:
    """(rows, message) for the compiled Triton kernels: one row per compiled specialisation
    (``compile_first``: run every op's quick case in each of ``dtypes`` first). Without a CUDA
    device, the kernels compiled ahead of time for ``arch`` instead (``triton_aot_resources``)."""
    try:
        import torch
        import triton  # noqa: F401
    except Exception as e:
        return [], f"triton cannot be imported ({e})"
    if not torch.cuda.is_available():
        return triton_aot_resources(arch, dtypes)
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
    rep.cuda_links = cuda_links(files, rep.arch)
    if triton:
        rep.triton, rep.triton_message = triton_resources(True, dtypes, rep.arch)
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
    for r in rep.cuda_links:
        if r["ok"]:
            spills = "[bold red]spills[/]" if r["spills"] else "no spills"
            how = f"nvcc -rdc=true -cubin, -dlink with libcudadevrt ({r['arch']})"
            console.print(f"{r['family']}.cu cooperative module: {how}: linked, {r['kernels']} kernels, "
                          f"at most {r['registers']} registers, {spills}")  # fmt: skip
        else:
            console.print(f"[bold red]{r['family']}.cu cooperative module: LINK FAILED[/]")
            console.print(r["output"][-2000:], markup=False)
    if rep.triton:
        aot = any("signature" in r for r in rep.triton)  # rows from dlgpu.bench.triton_aot
        title = "Triton kernels (" + (rep.triton_message.split(";")[0] if aot else "compiled on this GPU") + ")"
        t = Table(title=title, header_style="bold")
        for c in ("module", "kernel", "constexprs", "warps", "stages", "regs", "spills", "smem B", "autotune"):
            t.add_column(c, justify="right" if c in ("warps", "stages", "regs", "spills", "smem B") else "left")
        for r in rep.triton:
            if not r.get("ok", True):
                err = escape((r.get("error") or "").splitlines()[0][:200] if r.get("error") else "")
                t.add_row(r["module"], r["kernel"], escape(r["constexprs"]), str(r["num_warps"]), str(r["num_stages"]),
                          "[bold red]COMPILE FAILED[/]", "", "", err)  # fmt: skip
                continue
            spills = f"[bold red]{r['spills']}[/]" if r["spills"] else "0"
            t.add_row(r["module"], r["kernel"], escape(r["constexprs"]), str(r["num_warps"]), str(r["num_stages"]),
                      str(r["registers"]), spills, str(r["smem"]), r["autotune"])  # fmt: skip
        console.print(t)
        for note in rep.triton_message.split("; ")[1 if aot else 0:] if rep.triton_message else []:
            console.print(f"Triton: {note}", markup=False)
    else:
        console.print(f"Triton: {rep.triton_message}", markup=False)
    n_spill = sum(1 for r in rep.cuda if r.get("spill_stores") or r.get("spill_loads"))
    n_spill += sum(1 for r in rep.triton if r.get("spills"))
    n_cuda, n_failed = sum(r.get("ok", True) for r in rep.cuda), len(rep.cuda_errors) + len(rep.triton_errors)
    failed = f", {n_failed} failed to compile or link" if n_failed else ""
    console.print(f"{n_cuda} CUDA kernels{failed}, {len(rep.triton)} compiled Triton kernels, {n_spill} spilling",
                  markup=False, highlight=False)  # fmt: skip
