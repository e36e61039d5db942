"""``dlgpu bench``: check every kernel against the float64 reference, then time the ones that pass
against torch eager on the same device and against the NumPy reference.

Per case and dtype: the reference runs once (``cases.prepare``); each backend is checked
(``cases.run_case``), and a direction (forward or backward) that fails or raises is reported and
not timed; Triton under ``TRITON_INTERPRET=1`` is checked but never timed (the interpreter's
times say nothing about a GPU), and so is the cupy backend where it has no device: its CUDA C
kernels then run on the CPU through the g++ host runtime (``kernels/cuda/_host.py``). The timed
callables of one device are timed together (CPU: interleaved rounds; CUDA: ``do_bench`` each)
with torch's competitor on that device. GB/s and GFLOP/s come from ``costs.call_cost``; '% of peak'
divides them by ``peak.measure_peaks``.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..testing.cases import Prepared, backend_value, prepare, run_case, select_cases, torch_inputs
from ..testing.tolerances import dtype_name, tolerance
from .costs import call_cost, describe
from .peak import Peaks, measure_peaks
from .timing import time_group

NAN = float("nan")
DIRECTIONS = ("fwd", "bwd")
# the storage dtypes each backend's kernels take (kernels/triton/_common.py and kernels/cuda/_common.py
# FLOAT_DTYPES; the CPU backends as `dlgpu check` has them); None would mean "try any". The dispatch's
# half storage on the CPU (float16/bfloat16 around the float32 numba kernels) is a conversion, not a
# kernel of that dtype, so it is neither checked nor timed here (tests/test_backends.py checks it).
DTYPES: dict[str, tuple[str, ...] | None] = {
    "numpy": ("float16", "float32", "float64"),
    "numba": ("float32", "float64"),
    "triton": ("float32", "float16", "bfloat16"),
    "cupy": ("float32", "float16", "bfloat16"),
}
NOT_TIMED_INTERPRETER = "checked, not timed: Triton interpreter (TRITON_INTERPRET=1) runs on the CPU"
HOST_RUNTIME = "cpu (host runtime)"  # the row device of cupy without a device: the .cu kernels run on the CPU
NOT_TIMED_HOST = "checked, not timed: the CUDA C kernels ran on the CPU through the g++ host runtime"


@dataclass
class BenchRow:
    """One (op, direction, backend, shape, dtype): the check, the timing and the rates."""

    op: str  # the case: 'conv2d[resnet18.layer1]', 'lstm[forget]'
    kernel: str  # the dlgpu op timed: 'conv2d_forward'
    direction: str  # 'fwd' | 'bwd'
    backend: str
    device: str  # 'cpu' | 'cuda' | 'cpu (interpreter)' | 'cpu (host runtime)'
    shape: str
    dtype: str
    check: str = "-"  # PASS | FAIL | ERROR
    rel_err: float = NAN  # worst output's relative L2 error against the float64 reference
    rtol: float = NAN
    atol: float = NAN
    timed: bool = False
    note: str = ""
    median_ms: float = NAN
    min_ms: float = NAN
    max_ms: float = NAN
    reps: int = 0
    competitor: str = ""
    torch_ms: float = NAN
    speedup: float = NAN  # torch median / this median
    numpy_ms: float = NAN
    vs_numpy: float = NAN  # NumPy reference median / this median
    flops: float = NAN
    bytes: float = NAN
    gflops: float = NAN
    gbps: float = NAN
    frac_peak_bw: float = NAN
    frac_peak_flops: float = NAN
    device_name: str = ""
    versions: str = ""
    size: str = ""
    seed: int = 0


@dataclass
class BenchResult:
    """Every row, the peaks used, the run's metadata and the notes printed under the table."""

    rows: list[BenchRow]
    peaks: dict[str, Peaks] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[BenchRow]:
        """Rows whose check did not pass."""
        return [r for r in self.rows if r.check in ("FAIL", "ERROR")]


# ------------------------------------------------------------------ environment


def versions() -> dict[str, str]:
    """Versions of the libraries the numbers depend on ('-' where one is not importable)."""
    import importlib

    import dlgpu

    out = {"dlgpu": dlgpu.__version__, "python": platform.python_version()}
    for mod in ("numpy", "numba", "torch", "triton", "cupy"):
        try:
            out[mod] = getattr(importlib.import_module(mod), "__version__", "?")
        except Exception:  # absent or broken optional package: recorded, not fatal
            out[mod] = "-"
    return out


def device_name(device: str) -> str:
    """'NVIDIA H100 80GB HBM3' for cuda; the CPU model and core count for cpu."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch, numba and the BLAS/OpenMP pools numpy uses (threadpoolctl),
    for the rest of the process. Fewer threads than busy cores keeps a loaded machine's timings sane."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # numba absent: the other pools still apply
        pass
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's own OpenBLAS, which numba's np.dot calls)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)  # only libraries loaded by now are limited, hence the import above
    except ImportError:  # threadpoolctl comes with scikit-learn; without it the BLAS pools keep their counts
        pass


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# ------------------------------------------------------------------ one case


def cupy_on_host() -> bool:
    """True when the cupy backend cannot run here (no cupy or no device) but its CUDA C kernels can run
    on the CPU through the host runtime (a C++ compiler): then they are checked there, not timed."""
    import dlgpu
    from dlgpu.kernels.cuda import _host

    return not dlgpu.backends()["cupy"].available and _host.reason() is None


def _where(backend: str) -> tuple[str, str]:
    """(timing device, row device label) of a backend here."""
    if backend in ("numpy", "numba"):
        return "cpu", "cpu"
    if backend == "cupy" and cupy_on_host():
        return "cpu", HOST_RUNTIME
    if cuda_available():
        return "cuda", "cuda"
    return "cpu", "cpu (interpreter)"  # triton without CUDA runs only under TRITON_INTERPRET=1


def supports(backend: str, dtype: str) -> bool:
    """Whether ``backend`` has kernels for ``dtype`` (the CPU kernels take fewer dtypes)."""
    return DTYPES.get(backend) is None or dtype in DTYPES[backend]


def check_case(case: Any, backend: str, dtype: str, seed: int, cache: Any = None) -> Any:
    """``run_case`` of one case on one backend, on the inputs that backend takes here (torch tensors for
    triton and cupy; the CUDA C kernels through the host runtime when there is no GPU)."""
    _, label = _where(backend)
    convert = _converter(backend, dtype, label)
    if label == HOST_RUNTIME:
        from dlgpu.kernels.cuda import _host

        with _host.host_run():
            return run_case(case, backend, dtype, seed, convert, cache)
    return run_case(case, backend, dtype, seed, convert, cache)


def _timed_devices(backends: Sequence[str], dtype: str) -> set[str]:
    """The devices on which some of ``backends`` will time ``dtype`` (not the interpreter or host runtime,
    and not a dtype the backend has no kernels for)."""
    out = set()
    for b in backends:
        dev, label = _where(b)
        if label in ("cpu", "cuda") and supports(b, dtype):
            out.add(dev)
    return out


def _converter(backend: str, dtype: str, row_device: str) -> Callable[[Any], Any] | None:
    if backend in ("numpy", "numba"):
        return None
    return torch_inputs(dtype, "cpu" if row_device.startswith("cpu") else "cuda")


def _direction_verdict(res: Any, kernel: str) -> tuple[str, float, float, float, str]:
    """(check, rel_err, rtol, atol, note) for the reports of one direction's kernel."""
    reps = [r for r in res.reports if r.name.startswith(kernel + ":")]
    if res.error and not reps:
        return "ERROR", NAN, NAN, NAN, res.error
    if not reps:
        return "ERROR", NAN, NAN, NAN, "nothing was compared"
    worst = max(reps, key=lambda r: (not r.ok, r.rel_l2_err))
    ok = all(r.ok for r in reps)
    note = "" if ok else f"not timed: {worst.name} {worst.n_mismatch}/{worst.n_total} outside tolerance"
    return ("PASS" if ok else "FAIL"), worst.rel_l2_err, worst.tol.rtol, worst.tol.atol, note


def _calls(prep: Prepared, direction: str) -> tuple[str, tuple, dict] | None:
    case = prep.case
    if direction == "fwd":
        return case.forward, case.args, case.kwargs
    if prep.bargs is None:
        return None
    return case.backward, prep.bargs, prep.bkwargs


def bench_case(
    case: Any,
    backends: Sequence[str],
    dtype: str,
    seed: int,
    rep_time: float,
    peaks: Callable[[str], Peaks | None],
    directions: Sequence[str] = DIRECTIONS,
    base: dict[str, Any] | None = None,
) -> list[BenchRow]:
    """Check and time one case in one dtype on ``backends`` (available ones); one row per
    (direction, backend). ``peaks(device)`` gives the peaks for the '% of peak' columns."""
    from .. import ops

    cache: dict = {}
    prep = prepare(case, dtype, seed, cache)
    itemsize = _itemsize(dtype)
    rows: list[BenchRow] = []
    groups: dict[tuple[str, str], dict[str, Callable[[], object]]] = {}
    row_of: dict[tuple[str, str], BenchRow] = {}
    for b in backends:
        if not ops.implements(b, case.forward) or not supports(b, dtype):
            continue
        dev, label = _where(b)
        convert = _converter(b, dtype, label)
        res = check_case(case, b, dtype, seed, cache)
        for d in directions:
            call = _calls(prep, d)
            if call is None:
                continue
            kernel, args, kwargs = call
            cost = call_cost(kernel, args, kwargs, itemsize)
            row = BenchRow(case.name, kernel, d, b, label, describe(kernel, args, kwargs), dtype,
                           flops=cost.flops, bytes=cost.bytes, **(base or {}))  # fmt: skip
            if d == "bwd" and res.error.startswith("forward:"):
                row.check, row.note = "ERROR", "not checked: the forward raised"
                tol = tolerance(case.tol_op, dtype)
                row.rtol, row.atol = tol.rtol, tol.atol
            else:
                row.check, row.rel_err, row.rtol, row.atol, row.note = _direction_verdict(res, kernel)
            rows.append(row)
            if row.check != "PASS":
                if not row.note.startswith("not "):
                    row.note = f"not timed: {row.note}"
                continue
            if label in ("cpu (interpreter)", HOST_RUNTIME):
                row.note = NOT_TIMED_INTERPRETER if label == "cpu (interpreter)" else NOT_TIMED_HOST
                continue
            a = backend_value(args, dtype, convert)
            kw = {k: backend_value(v, dtype, convert) for k, v in kwargs.items()}
            groups.setdefault((d, dev), {})[b] = lambda _k=kernel, _a=a, _kw=kw, _b=b: ops.call(
                _k, *_a, backend=_b, **_kw
            )
            row_of[(d, b)] = row
    from .competitors import Competitor, torch_competitor

    comps: dict[str, Competitor | str] = {}
    names: dict[tuple[str, str], str] = {}
    for (d, dev), fns in groups.items():
        try:
            if dev not in comps:
                comps[dev] = torch_competitor(prep, dtype, dev)
            comp = comps[dev]
            if isinstance(comp, str):
                raise RuntimeError(comp)
            fn = comp.forward if d == "fwd" else comp.backward
            if fn is not None:
                fn()  # a competitor that cannot run (a dtype torch lacks here) is dropped, not fatal
                fns["torch"] = fn
                names[(d, dev)] = comp.name
        except Exception as e:
            comps.setdefault(dev, f"{type(e).__name__}: {e}")
            names[(d, dev)] = f"torch failed: {type(e).__name__}: {e}"[:160]
        times = _time_safely(fns, dev, rep_time, row_of, d)
        for b, t in times.items():
            if b == "torch":
                continue
            row = row_of[(d, b)]
            row.timed, row.reps = True, t.reps
            row.median_ms, row.min_ms, row.max_ms = t.median_s * 1e3, t.min_s * 1e3, t.max_s * 1e3
            row.competitor = names.get((d, dev), "")
            if "torch" in times:
                row.torch_ms = times["torch"].median_s * 1e3
                row.speedup = row.torch_ms / row.median_ms
            row.gflops = row.flops / t.median_s / 1e9
            row.gbps = row.bytes / t.median_s / 1e9
            pk = peaks(dev)
            if pk is not None:
                row.frac_peak_bw = row.bytes / t.median_s / pk.bandwidth
                row.frac_peak_flops = row.flops / t.median_s / pk.flops
    for d in directions:  # the NumPy reference as the second yardstick of every timed row
        ref = row_of.get((d, "numpy"))
        if ref is not None and ref.timed:
            for row in rows:
                if row.direction == d and row.timed:
                    row.numpy_ms, row.vs_numpy = ref.median_ms, ref.median_ms / row.median_ms
    return rows


def _time_safely(
    fns: dict[str, Callable[[], object]], dev: str, rep_time: float, row_of: dict[tuple[str, str], BenchRow], d: str
) -> dict[str, Any]:
    """time_group, but a callable that raises while timed (out of memory at a large size, say) is
    dropped and its row says so, instead of ending the run."""
    try:
        return time_group(fns, dev, rep_time)
    except Exception:  # find the culprit: time each alone
        out = {}
        for name, fn in fns.items():
            try:
                out.update(time_group({name: fn}, dev, rep_time))
            except Exception as e:
                if (d, name) in row_of:
                    row = row_of[(d, name)]
                    row.check = "ERROR"  # it passed the check, then failed when run again
                    row.note = f"not timed: raised while timed: {type(e).__name__}: {e}"[:200]
        return out


def _itemsize(dtype: str) -> int:
    return {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}[dtype_name(dtype)]


# ------------------------------------------------------------------ the run


def run_bench(
    ops: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    dtypes: Sequence[str] = ("float32",),
    size: str = "quick",
    seed: int = 0,
    rep_time: float = 0.5,
    directions: Sequence[str] = DIRECTIONS,
    progress: bool = True,
    small_peaks: bool = False,
    cases: Sequence[Any] | None = None,
) -> BenchResult:
    """Check and time every selected case on every selected (available) backend and dtype.

    ``ops``: case-name prefixes (None: all); ``backends``: None for every available one;
    ``small_peaks``: measure the peaks on small problems (tests only: the fractions are then
    not meaningful); ``cases``: explicit cases (e.g. from ``cases_from_shapes``) instead of
    ``size``'s, which then only labels the rows. Raises ValueError for an unknown backend, dtype,
    size or direction.
    """
    import dlgpu

    status = dlgpu.backends()
    for b in backends or ():
        if b not in status:
            raise ValueError(f"backends: unknown backend {b!r}; expected one of {', '.join(status)}")
    for d in directions:
        if d not in DIRECTIONS:
            raise ValueError(f"directions: expected 'fwd' and/or 'bwd', got {d!r}")
    dnames = [dtype_name(d) for d in dtypes]
    on_host = cupy_on_host() and (backends is None or "cupy" in backends)
    notes = [f"{b}: {status[b].reason}" for b in dict.fromkeys(backends or status) if not status[b].available and
             not (b == "cupy" and on_host)]  # fmt: skip
    wanted = [b for b in dict.fromkeys(backends or status) if status[b].available or (b == "cupy" and on_host)]
    for b in wanted:
        if DTYPES.get(b) is not None and any(d not in DTYPES[b] for d in dnames):
            lacking = [d for d in dnames if d not in DTYPES[b]]
            notes.append(f"{b}: no kernels for {', '.join(lacking)} (skipped)")
    cases = select_cases(seed, size, ops) if cases is None else list(cases)
    if not cases:
        raise ValueError(f"ops: no case name starts with any of {list(ops or [])}")
    devices = {_where(b)[0] for b in wanted}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else NAN  # before any work of ours
    peaks: dict[str, Peaks] = {}

    def peak_for(dev: str, dtype: str) -> Peaks:
        key = f"{dev}:{dtype}"
        if key not in peaks:
            peaks[key] = measure_peaks(dev, dtype, small_peaks)
        return peaks[key]

    vers = versions()
    vstr = " ".join(f"{k}={v}" for k, v in vers.items())
    names = {dev: device_name(dev) for dev in devices | {"cpu"}}
    rows: list[BenchRow] = []
    with _progress(progress, len(cases) * len(dnames)) as advance:
        for dtype in dnames:
            for dev in sorted(_timed_devices(wanted, dtype)):
                peak_for(dev, dtype)  # at start-up, before any kernel runs; only where a row will be timed
            for case in cases:
                advance(f"{case.name} {dtype}")
                base = dict(versions=vstr, size=size, seed=seed)
                new = bench_case(case, wanted, dtype, seed, rep_time, lambda dev, _d=dtype: peak_for(dev, _d),
                                 directions, base)  # fmt: skip
                for r in new:
                    r.device_name = names["cuda" if r.device == "cuda" else "cpu"]
                rows += new
    if any(r.note == NOT_TIMED_INTERPRETER for r in rows):
        notes.append("triton: " + NOT_TIMED_INTERPRETER)
    if any(r.note == NOT_TIMED_HOST for r in rows):
        notes.append(f"cupy ({status['cupy'].reason}): {NOT_TIMED_HOST}")
    if load > (os.cpu_count() or 1):
        notes.append(f"load average {load:.1f} on {os.cpu_count()} cores at start-up: other work competed for "
                     "the CPU, so CPU timings are unreliable (--threads 1 helps)")  # fmt: skip
    meta = dict(size=size, seed=seed, dtypes=dnames, backends=wanted, devices=names, versions=vers,
                rep_time_s=rep_time, load_average=load, peaks={k: str(v) for k, v in peaks.items()})  # fmt: skip
    meta.update(_thread_settings())
    return BenchResult(rows, peaks, meta, notes)


def _thread_settings() -> dict[str, Any]:
    """Thread counts and TF32 switches the numbers depend on (what cannot be read is left out)."""
    # OpenMP's wait policy moves CPU timings both ways (dlgpu sets PASSIVE unless told otherwise: it
    # spares numba from torch's spinning threads but slows torch's own back-to-back parallel regions)
    out: dict[str, Any] = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)")}
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
            out["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    except Exception:  # torch missing: the CPU backends still bench
        pass
    try:
        import numba

        out["numba_threads"] = numba.get_num_threads()
    except Exception:  # numba missing or broken: reported by dlgpu.backends() already
        pass
    return out


class _progress:
    """A rich progress bar on stderr (or nothing), used as ``with _progress(on, total) as advance``."""

    def __init__(self, on: bool, total: int) -> None:
        self.on, self.total, self.bar, self.task = on, total, None, None

    def __enter__(self) -> Callable[[str], None]:
        if self.on:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]bench[/] {task.description:<40}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
                                transient=True)  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        first = [True]

        def advance(desc: str) -> None:
            if self.bar is None:
                return
            if not first[0]:
                self.bar.advance(self.task)
            first[0] = False
            self.bar.update(self.task, description=desc)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.total)
            self.bar.stop()


# ------------------------------------------------------------------ the table


def _fmt(v: float, spec: str = ".3g") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _ms(v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _peak_cell(r: BenchRow) -> str:
    if math.isnan(r.frac_peak_bw) and math.isnan(r.frac_peak_flops):
        return "-"
    bw, fl = r.frac_peak_bw, r.frac_peak_flops
    return f"{100 * bw:.0f}% bw" if math.isnan(fl) or bw >= fl else f"{100 * fl:.0f}% flop"


def render_table(result: BenchResult, console: Any = None) -> None:
    """Print the rows as a rich table, then the peaks and the notes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    t = Table(show_lines=False, header_style="bold", pad_edge=False)
    for col, just in (("op", "left"), ("dir", "left"), ("backend", "left"), ("dtype", "left"), ("shape", "left"),
                      ("check (rel err / rtol)", "left"), ("ms median (min-max)", "right"), ("torch ms", "right"),
                      ("x torch", "right"), ("x numpy", "right"), ("GB/s", "right"), ("GFLOP/s", "right"),
                      ("of peak", "right"), ("note", "left")):  # fmt: skip
        t.add_column(col, justify=just, overflow="fold")
    for r in result.rows:
        style = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red"}.get(r.check, "")
        check = f"[{style}]{r.check}[/] {_fmt(r.rel_err, '.1e')} / {_fmt(r.rtol, 'g')}"
        timing = f"{_ms(r.median_ms)} ({_ms(r.min_ms)}-{_ms(r.max_ms)})" if r.timed else "-"
        where = {"cpu (interpreter)": " (interp)", HOST_RUNTIME: " (host)"}.get(r.device, "")
        note = {NOT_TIMED_INTERPRETER: "not timed (interpreter)", NOT_TIMED_HOST: "not timed (host runtime)"}
        t.add_row(escape(r.op), r.direction, r.backend + where, r.dtype, escape(r.shape), check, timing,
                  _ms(r.torch_ms), _fmt(r.speedup, ".2f"), _fmt(r.vs_numpy, ".1f"), _fmt(r.gbps, ".3g"),
                  _fmt(r.gflops, ".3g"), _peak_cell(r), escape(note.get(r.note, r.note)))  # fmt: skip
    console.print(t)
    for p in result.peaks.values():
        console.print(f"peak {p}", markup=False, highlight=False)
    n_pass = sum(r.check == "PASS" for r in result.rows)
    console.print(f"{n_pass} checks passed, {len(result.failed)} failed; {sum(r.timed for r in result.rows)} "
                  f"rows timed (size={result.meta.get('size')}, seed={result.meta.get('seed')})",
                  markup=False, highlight=False)  # fmt: skip
    notes = list(result.notes)
    if any(r.frac_peak_bw > 1 for r in result.rows):
        notes.append("'of peak' above 100%: the working set fits in a cache, the copy peak is measured from DRAM")
    if any(r.frac_peak_flops > 1 for r in result.rows):
        notes.append("'of peak' above 100% flop: the row beat the start-up matmul (a peak measured on a loaded "
                     "machine, or a kernel that does fewer flops than the formula counts)")  # fmt: skip
    for n in notes:
        console.print(f"note: {n}", markup=False, highlight=False)
