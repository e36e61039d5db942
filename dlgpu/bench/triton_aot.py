"""Compile every Triton kernel the wrappers launch for a GPU that is not here (sm_90 by default).

Without a GPU the Triton kernels run only under ``TRITON_INTERPRET=1``, which executes them with
NumPy and never compiles them: a kernel the interpreter accepts can still fail to compile for a
real device (a layout or dtype the backend rejects, a ``tl.dot`` shape below its minimum), spill
registers or ask for more shared memory than the device has. Triton's compiler needs no device, only
a target, so this module compiles ahead of time in two steps, each in its own process because
``TRITON_INTERPRET`` is read when the kernels are decorated:

1. **record** (interpreter): run every op's cases, forward and backward, in each dtype, and note each
   launch as the JIT would key it: the kernel, every argument's type and specialisation (an int of
   1 becomes a constant; pointers and ints divisible by 16 get the divisibility hint) and the
   constexpr values. Each launch is kept twice: as recorded (odd sizes) and ``aligned``, with every
   int argument divisible by 16, as realistic shapes are.
2. **compile** (no interpreter): each distinct launch, with *every* autotune config of its kernel
   (the interpreter keeps only the first), through ``triton.compile`` for ``GPUTarget("cuda", 90,
   32)``: TTIR, TTGIR, LLVM IR, PTX, and a cubin from Triton's bundled ptxas. Registers, stack and
   spills come from that ptxas run's own ``-v`` log, shared memory from Triton's metadata. The
   numbers are cached under ``$DLGPU_CACHE_DIR/triton-aot`` (default ``~/.cache/dlgpu``), keyed by
   the Triton version, the target, the kernel's source and the specialisation.

Constexprs that exist only for the interpreter (``UPCAST``, see ``_common.DOT_UPCAST``) are compiled
with the value a GPU run passes. The report is what the installed Triton builds; on a GPU,
``dlgpu kernels`` reports the kernels Triton actually compiled there instead.

    python -m dlgpu.bench.triton_aot [--arch sm_90] [--sizes tiny] [--dtypes float32 ...] [--json F]

Exit status 1 when a variant fails to compile, spills registers or needs more shared
memory than the target has.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float16", "bfloat16")
# Shared memory a block may opt into (cudaDevAttrMaxSharedMemoryPerBlockOptin), by compute capability.
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}
# Launch options Triton takes beside the kernel's own arguments (config.all_kwargs()).
_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "num_buffers_warp_spec",
            "num_consumer_groups", "reg_dec_producer", "reg_inc_consumer")  # fmt: skip
# Constexprs whose interpreter value differs from a GPU run's, and where the GPU value lives.
_GPU_CONSTEXPRS = {"UPCAST": "DOT_UPCAST"}


# ------------------------------------------------------------------ step 1: record


def _is_constexpr(param: inspect.Parameter) -> bool:
    ann = param.annotation
    return "constexpr" in (ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann)))


def _encode(value: Any) -> Any:
    """A constexpr value as JSON (tl.dtype and tl.constexpr tagged so they decode exactly)."""
    import triton.language as tl

    if isinstance(value, tl.constexpr):
        value = value.value
    if isinstance(value, tl.dtype):
        return {"dtype": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"constexpr of type {type(value).__name__} cannot be recorded: {value!r}")


def _decode(value: Any) -> Any:
    import triton.language as tl

    if isinstance(value, dict) and "dtype" in value:
        return getattr(tl, value["dtype"]) if hasattr(tl, value["dtype"]) else tl.dtype(value["dtype"])
    return value


def describe_launch(fn: Any, args: tuple, kwargs: dict) -> dict:
    """One launch of the Python kernel function ``fn`` as JSON-able data: its module and name, each
    argument's ``[type, specialisation]`` (``["constexpr", value]`` for constexprs) and the options."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    params = list(inspect.signature(fn).parameters.values())
    if len(args) > len(params):
        raise TypeError(f"{fn.__name__}: {len(args)} positional arguments for {len(params)} parameters")
    given = dict(zip((p.name for p in params), args))
    given.update({k: v for k, v in kwargs.items() if k not in _OPTIONS})
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in given:
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"{fn.__name__}: no value for {p.name}")
            given[p.name] = p.default
        v = given[p.name]
        if _is_constexpr(p):
            out[p.name] = ["constexpr", _encode(v)]
        else:
            ty, key = native_specialize_impl(BaseBackend, v, False, True, True)
            out[p.name] = [ty, _encode(key) if ty == "constexpr" else key]
    options = {k: kwargs[k] for k in _OPTIONS if kwargs.get(k) is not None}
    return {"module": fn.__module__, "kernel": fn.__name__, "args": out, "options": options}


@contextmanager
def recording(sink: list[dict]) -> Iterator[list[dict]]:
    """Append every interpreted Triton launch to ``sink`` while the block runs (TRITON_INTERPRET=1)."""
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.interpreter import InterpretedFunction

    original, original_tuned = InterpretedFunction.run, Autotuner.run
    active: list[Any] = []  # the autotuners whose run is in progress (one kernel may have several)

    def run(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
        launch = describe_launch(self.fn, args, kwargs)
        launch["tuner"] = _tuner_name(active[-1], self.fn) if active else None
        sink.append(launch)
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    def tuned(self: Any, *args: Any, **kwargs: Any) -> Any:
        active.append(self)
        try:
            return original_tuned(self, *args, **kwargs)
        finally:
            active.pop()

    InterpretedFunction.run, Autotuner.run = run, tuned
    try:
        yield sink
    finally:
        InterpretedFunction.run, Autotuner.run = original, original_tuned


def _tuner_name(tuner: Any, fn: Any) -> str:
    """The module-level name of ``tuner`` (an Autotuner of ``fn``, the Python kernel function)."""
    for name, obj in vars(sys.modules[fn.__module__]).items():
        if obj is tuner:
            return name
    raise LookupError(f"the autotuner of {fn.__name__} is not a global of {fn.__module__}")


def record(
    sizes: Sequence[str] = ("tiny",), dtypes: Sequence[str] = DTYPES, only: Sequence[str] | None = None
) -> tuple[list[dict], list[str]]:
    """(distinct launches, failures) of every op's cases on the triton backend, forward and backward
    (``only``: the cases whose name starts with one of these, as in ``select_cases``).

    Must run with TRITON_INTERPRET=1 set before Triton kernels are imported; the cases' results
    are not checked here (the tests and ``dlgpu check`` do that), but an op that raises is a failure.
    """
    from ..kernels.triton import _common

    if not _common.INTERPRET:
        raise RuntimeError("record() needs TRITON_INTERPRET=1 set before dlgpu.kernels.triton is imported")
    from .. import ops
    from ..testing.cases import run_case, select_cases, torch_inputs

    launches: list[dict] = []
    failures: list[str] = []
    with recording(launches):
        for size in sizes:
            for dtype in dtypes:
                for case in [*select_cases(0, size, only), *_path_cases(only, dtype)]:
                    if not ops.implements("triton", case.forward):
                        continue
                    res = run_case(case, "triton", dtype, 0, torch_inputs(dtype, "cpu"))
                    if res.error:
                        failures.append(f"{case.name} {dtype} ({size}): {res.error}")
        if only is None or any("dropout".startswith(o) or o.startswith("dropout") for o in only):
            from ..kernels.triton.dropout import dropout_mask

            dropout_mask((7, 13), 0.25, seed=3, device="cpu")  # the mask-only kernel (recurrent dropout)
    distinct = {json.dumps(r, sort_keys=True): r for r in (v for launch in launches for v in (launch, aligned(launch)))}
    return list(distinct.values()), failures


def aligned(launch: dict) -> dict:
    """``launch`` as a realistic shape would key it: every int argument the JIT did not make a
    constant, and every pointer, divisible by 16. The tiny cases' odd sizes (7, 13) and the views
    they offset into never get that hint, while B = 64, H = 512 or C = 256 do, and the hint changes
    the code (vectorised loads, other layouts) and so the registers: an fp32 LSTM backward step
    clean for odd sizes spilled for aligned ones."""
    out = json.loads(json.dumps(launch))
    for name, (ty, _) in out["args"].items():
        if ty in ("i32", "i64", "u32", "u64") or ty.startswith("*"):
            out["args"][name] = [ty, "D"]
    return out


def _path_cases(only: Sequence[str] | None, dtype: str) -> list:
    """Recurrent cases with H just past ``SEQUENCE_MAX_H`` of ``dtype``: the tiny cases take the
    single-launch sequence kernels, these the per-step ones (T = 2 keeps the interpreter quick)."""
    import numpy as np
    import torch

    from ..kernels.triton.rnn import SEQUENCE_MAX_H
    from ..testing.cases import _matches, _recurrent_cases

    h = SEQUENCE_MAX_H[getattr(torch, dtype)] + 1
    return [c for c in _recurrent_cases(np.random.default_rng(0), 2, 2, 3, h) if _matches(c.name, only)]


# ------------------------------------------------------------------ step 2: compile


def kernels() -> dict[tuple[str, str], Any]:
    """{(module, function name): JITFunction} for every Triton function of dlgpu.kernels.triton."""
    from .resources import _jit_functions

    return {(fn.fn.__module__, fn.fn.__name__): fn for _, _, fn, _ in _jit_functions()}


def _resolve(launch: dict) -> tuple[Any, Any]:
    """(JITFunction, Autotuner or None) of a recorded launch, looked up in this process."""
    fn = kernels().get((launch["module"], launch["kernel"]))
    if fn is None:
        raise KeyError(f"recorded launch of {launch['module']}.{launch['kernel']}, not a Triton kernel here")
    name = launch.get("tuner")
    return fn, (getattr(sys.modules[launch["module"]], name) if name else None)


@contextmanager
def _ptxas_log() -> Iterator[io.StringIO]:
    """Compile afresh and capture Triton's own ``ptxas -v`` log (Triton prints it when asked to)."""
    import triton

    knobs = triton.knobs
    saved = knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log
    knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = True, True
    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            yield buf
    finally:
        knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = saved


def _cache_file(fn: Any, arch: int, signature: dict, constexprs: dict, attrs: dict, options: dict) -> Path:
    """Where one compile's numbers are kept, keyed by everything that changes them: the Triton
    version, the target, the kernel's source and its callees' (``cache_key``), the specialisation."""
    import triton

    from ..kernels.cuda._resources import cache_dir

    key = json.dumps([triton.__version__, arch, fn.cache_key, signature, {k: repr(v) for k, v in constexprs.items()},
                      {str(k): v for k, v in attrs.items()}, options], sort_keys=True)  # fmt: skip
    name = f"{fn.__name__}-sm{arch}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    return cache_dir().parent / "triton-aot" / name


def _compile_one(fn: Any, arch: int, signature: dict, constexprs: dict, attrs: dict, options: dict) -> dict:
    """Registers, stack, spills (ptxas -v) and shared memory (Triton's metadata) of one compile."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    from ..kernels.cuda._resources import _cache_put, parse_ptxas

    cached = _cache_file(fn, arch, signature, constexprs, attrs, options)
    if cached.is_file():
        return json.loads(cached.read_text())
    target = GPUTarget("cuda", arch, 32)
    opts = make_backend(target).parse_options(dict(options))
    with _ptxas_log() as log:
        k = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=opts.__dict__)
    entries = parse_ptxas(log.getvalue())
    if len(entries) != 1:
        raise RuntimeError(f"expected one entry function in the ptxas log, got {len(entries)}:\n{log.getvalue()}")
    e = entries[0]
    out = {k: e[k] for k in ("registers", "stack", "spill_stores", "spill_loads")} | {"smem": int(k.metadata.shared)}
    _cache_put(cached, json.dumps(out))
    return out


def _variants(launch: dict, fn: Any, tuner: Any) -> list[tuple[dict, dict]]:
    """(constexpr overrides, options) per compile of ``launch``: every autotune config of its kernel."""
    if tuner is None:
        return [({}, dict(launch["options"]))]
    return [(dict(c.kwargs), {k: v for k, v in c.all_kwargs().items() if k in _OPTIONS and v is not None})
            for c in tuner.configs]  # fmt: skip


def compile_launch(launch: dict, fn: Any, tuner: Any, arch: int) -> list[dict]:
    """Compile one recorded launch for ``sm_<arch>`` with each of its kernel's configs: a row each."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    from ..kernels.triton import _common

    backend = make_backend(GPUTarget("cuda", arch, 32))
    params = {p.name: p for p in getattr(fn, "params", [])}
    rows = []
    for overrides, options in _variants(launch, fn, tuner):
        signature: dict[str, str] = {}
        constexprs: dict[str, Any] = {}
        attrs: dict[tuple, list] = {}
        for i, name in enumerate(fn.arg_names):
            ty, spec = launch["args"][name]
            kp = params.get(name)
            if name in overrides:
                ty, spec = "constexpr", overrides[name]
            elif name in _GPU_CONSTEXPRS:
                spec = getattr(_common, _GPU_CONSTEXPRS[name])
            if ty == "constexpr":
                is_param_constexpr = kp is None or kp.is_constexpr
                if not is_param_constexpr and getattr(kp, "do_not_specialize", False):
                    ty = "i32"  # a value of 1 the kernel asked not to specialise on
                else:
                    signature[name] = "constexpr"
                    constexprs[name] = _decode(spec)
                    continue
            signature[name] = ty
            if spec == "D" and not getattr(kp, "do_not_specialize_on_alignment", False):
                attrs[(i,)] = backend.parse_attr("D")
        row = {"module": launch["module"].rsplit(".", 1)[-1], "kernel": launch["kernel"],
               "signature": " ".join(f"{n}:{t}" for n, t in signature.items() if t != "constexpr"),
               "divisible": " ".join(fn.arg_names[i] for (i,) in attrs),  # the arguments hinted 16-divisible
               "constexprs": " ".join(f"{n}={constexprs[n]}" for n in signature if n in constexprs),
               "num_warps": options.get("num_warps", 4), "num_stages": options.get("num_stages", 3),
               "autotune": launch.get("tuner") or "", "arch": f"sm_{arch}", "ok": True}  # fmt: skip
        t0 = time.perf_counter()
        try:
            row.update(_compile_one(fn, arch, signature, constexprs, attrs, options))
        except Exception as e:  # a failed compile is a reported row, not a crash of the report
            row.update(ok=False, error=f"{type(e).__name__}: {e}")
        row["compile_s"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def problems(row: dict, arch: int) -> list[str]:
    """Why a compiled row would fail or run badly on ``sm_<arch>``: compile error, spills, shared memory."""
    if not row["ok"]:
        return [row["error"].splitlines()[0][:300]]
    out = []
    if row["spill_stores"] or row["spill_loads"]:
        out.append(f"spills: {row['spill_stores']} B stored, {row['spill_loads']} B loaded per thread "
                   f"({row['registers']} registers)")
    limit = SMEM_LIMIT.get(arch)
    if limit is not None and row["smem"] > limit:
        out.append(f"needs {row['smem']} B of shared memory, sm_{arch} allows {limit}")
    return out


def _compile_worker(launch: dict, arch: int) -> list[dict]:
    return compile_launch(launch, *_resolve(launch), arch)


def compile_all(launches: Sequence[dict], arch: int = 90, jobs: int = 1) -> tuple[list[dict], list[str]]:
    """(rows, launched kernels of dlgpu.kernels.triton that no launch reached) for the recorded
    launches; ``jobs`` > 1 compiles in that many processes (Triton's compiler holds the GIL)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("compile_all() needs a process without TRITON_INTERPRET (the kernels must be JITFunctions)")
    table = kernels()
    for launch in launches:
        _resolve(launch)  # fail before compiling anything
    if jobs > 1 and len(launches) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child would inherit this process's Triton/LLVM state mid-use
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            per_launch = list(pool.map(_compile_worker, launches, [arch] * len(launches)))
    else:
        per_launch = [compile_launch(launch, *_resolve(launch), arch) for launch in launches]
    rows: list[dict] = []
    seen: set[str] = set()
    for launch_rows in per_launch:
        for row in launch_rows:
            key = json.dumps({k: row[k] for k in ("module", "kernel", "signature", "divisible", "constexprs",
                                                  "num_warps", "num_stages")}, sort_keys=True)  # fmt: skip
            if key not in seen:  # launches that differ only in a config's own keys compile the same
                seen.add(key)
                row["problems"] = problems(row, arch)
                rows.append(row)
    reached = {(r["module"], r["kernel"]) for r in launches}
    # the kernels (``*_kernel``); the other JITFunctions are device functions they call
    missing = sorted(f"{m.rsplit('.', 1)[-1]}.{k}" for m, k in table if k.endswith("_kernel") and (m, k) not in reached)
    return rows, missing


# ------------------------------------------------------------------ both steps, in subprocesses


def _run_step(args: list[str], interpret: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-m", "dlgpu.bench.triton_aot", *args], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode not in (0, 1):  # 1: problems, reported in the JSON
        raise RuntimeError(f"triton_aot {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def aot_report(
    arch: int = 90,
    sizes: Sequence[str] = ("tiny",),
    dtypes: Sequence[str] = DTYPES,
    ops: Sequence[str] | None = None,
    jobs: int | None = None,
) -> dict:
    """Record (interpreter) and compile (for ``sm_<arch>``) in two subprocesses; the compile step's
    JSON: ``rows``, ``missing`` (kernels no case launched: reported only when ``ops`` is None),
    ``record_failures``, ``triton`` version."""
    with tempfile.TemporaryDirectory() as d:
        rec, out = str(Path(d) / "launches.json"), str(Path(d) / "report.json")
        only = ["--ops", *ops] if ops else []
        _run_step(["record", "--out", rec, "--sizes", *sizes, "--dtypes", *dtypes, *only], interpret=True)
        _run_step(["compile", "--launches", rec, "--arch", f"sm_{arch}", "--json", out,
                   "--jobs", str(jobs or os.cpu_count() or 1)], interpret=False)  # fmt: skip
        rep = json.loads(Path(out).read_text())
        if ops:
            rep["missing"] = []
        return rep


def summary_md(rep: dict) -> str:
    """A Markdown table of a report, one line per kernel: variants, failures, spills, worst registers
    and shared memory (the rows themselves are in the JSON)."""
    per: dict[tuple[str, str], list[dict]] = {}
    for r in rep["rows"]:
        per.setdefault((r["module"], r["kernel"]), []).append(r)
    lines = [f"Triton {rep['triton']}, {rep['arch']}: {len(rep['rows'])} variants of {len(per)} kernels "
             "(each recorded specialisation x each autotune config)", "",
             "| kernel | variants | failed | spilling | max registers | max smem B |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for (m, k), rows in sorted(per.items()):
        ok = [r for r in rows if r["ok"]]
        spill = sum(1 for r in ok if r["spill_stores"] or r["spill_loads"])
        lines.append(f"| {m}.{k} | {len(rows)} | {len(rows) - len(ok)} | {spill} | "
                     f"{max((r['registers'] for r in ok), default=0)} | {max((r['smem'] for r in ok), default=0)} |")
    if rep["missing"]:
        lines += ["", "Never launched: " + ", ".join(rep["missing"])]
    return "\n".join(lines) + "\n"


def _arch(s: str) -> int:
    m = re.fullmatch(r"sm_(\d+)a?", s)
    if m is None:
        raise argparse.ArgumentTypeError(f"arch must look like sm_90, got {s!r}")
    return int(m.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    """``record`` / ``compile`` (the two steps) or, with no step, both and a summary."""
    p = argparse.ArgumentParser(prog="python -m dlgpu.bench.triton_aot", description=__doc__.split("\n")[0])
    p.add_argument("step", nargs="?", choices=["record", "compile"])
    p.add_argument("--arch", type=_arch, default=90, help="target, e.g. sm_90 (default) or sm_80")
    p.add_argument("--sizes", nargs="+", default=["tiny"], choices=["tiny", "quick"])
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    p.add_argument("--ops", nargs="+", help="only the cases whose name starts with one of these (e.g. conv2d lstm)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile processes (default: one per CPU)")
    p.add_argument("--out", help="record: where the launches go (JSON)")
    p.add_argument("--launches", help="compile: the recorded launches (JSON)")
    p.add_argument("--json", help="compile / both: the report (JSON)")
    p.add_argument("--md", help="both: a per-kernel summary (Markdown)")
    a = p.parse_args(argv)
    if a.step == "record":
        launches, failures = record(a.sizes, a.dtypes, a.ops)
        Path(a.out).write_text(json.dumps({"launches": launches, "failures": failures}))
        return 0
    if a.step == "compile":
        import triton

        rec = json.loads(Path(a.launches).read_text())
        rows, missing = compile_all(rec["launches"], a.arch, a.jobs)
        report = {"arch": f"sm_{a.arch}", "triton": triton.__version__, "rows": rows, "missing": missing,
                  "record_failures": rec["failures"]}  # fmt: skip
        Path(a.json).write_text(json.dumps(report, indent=1))
        return 1 if any(r["problems"] for r in rows) or missing or rec["failures"] else 0
    rep = aot_report(a.arch, a.sizes, a.dtypes, a.ops, a.jobs)
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    if a.md:
        Path(a.md).write_text(summary_md(rep))
    bad = [r for r in rep["rows"] if r["problems"]]
    for r in bad:
        print(f"{r['module']}.{r['kernel']} [{r['constexprs']}] 16-divisible [{r['divisible']}] "
              f"w{r['num_warps']} s{r['num_stages']}: "
              + "; ".join(r["problems"]))  # fmt: skip
    for f in rep["record_failures"]:
        print(f"record failed: {f}")
    if rep["missing"]:
        print("never launched by the cases: " + ", ".join(rep["missing"]))
    n_kernels = len({(r["module"], r["kernel"]) for r in rep["rows"]})
    print(f"Triton {rep['triton']}, {rep['arch']}: {len(rep['rows'])} variants of {n_kernels} kernels compiled, "
          f"{len(bad)} with problems, max {max((r.get('registers', 0) for r in rep['rows']), default=0)} registers")
    return 1 if bad or rep["missing"] or rep["record_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
