"""``dlgpu profile``: training steps of a model under ``torch.profiler``, time per dlgpu op.

Every dlgpu op a model runs goes through a ``torch.library`` custom op (``dlgpu.functional``), and
the profiler records those under their own names, ``dlgpu::conv2d``, ``dlgpu::conv2d_backward``,
..., or ``dlgpu_triton::conv2d`` for the Triton twins CUDA tensors take, with the kernels they
launch nested inside (on CUDA, the device time of those kernels is attributed to them). Any range
with one of these prefixes counts, so ``record_function`` ranges added inside ``dlgpu.ops.call``
later show up too: each range is charged its time minus that of the dlgpu ranges nested in it, so
nothing is counted twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIXES = ("dlgpu::", "dlgpu_triton::")
STEP = "dlgpu.train_step"


@dataclass
class OpTime:
    """One dlgpu op's share of the profiled steps (times in ms, summed over every call)."""

    name: str
    calls: int = 0
    cpu_ms: float = 0.0  # CPU time inside the op's ranges, less nested dlgpu ranges
    device_ms: float = 0.0  # device (CUDA) time of the kernels launched inside, likewise


@dataclass
class ProfileResult:
    """The per-op table of a profiled run and what it ran on."""

    model: str
    steps: int
    backend: str
    device: str
    step_ms: float  # mean wall time of one step under the profiler
    step_cpu_ms: float  # total CPU time inside the step ranges
    ops: list[OpTime] = field(default_factory=list)
    trace: str | None = None

    @property
    def dlgpu_cpu_ms(self) -> float:
        """CPU time inside dlgpu ops over all steps."""
        return sum(o.cpu_ms for o in self.ops)


def _device_of(model: Any, inputs: Sequence[Any]) -> str:
    import torch

    for t in [*model.parameters(), *(i for i in inputs if isinstance(i, torch.Tensor))]:
        return t.device.type
    return "cpu"


def _exclusive(events: list[Any]) -> dict[str, OpTime]:
    """Charge each dlgpu event its inclusive time minus its nearest dlgpu descendants'."""
    table: dict[str, OpTime] = {}

    def nested(ev: Any) -> list[Any]:  # nearest dlgpu descendants
        out = []
        for ch in ev.cpu_children:
            out += [ch] if ch.name.startswith(PREFIXES) else nested(ch)
        return out

    for ev in events:
        if not ev.name.startswith(PREFIXES):
            continue
        inner = nested(ev)
        row = table.setdefault(ev.name, OpTime(ev.name))
        row.calls += 1
        row.cpu_ms += (ev.cpu_time_total - sum(c.cpu_time_total for c in inner)) / 1e3
        dev = getattr(ev, "device_time_total", 0.0) or 0.0
        row.device_ms += (dev - sum(getattr(c, "device_time_total", 0.0) or 0.0 for c in inner)) / 1e3
    return table


def profile_model(
    model: Any,
    inputs: Sequence[Any],
    target: Any,
    loss: Callable[[Any, Any], Any],
    steps: int = 5,
    backend: str = "auto",
    trace: str | None = None,
    warmup: int = 1,
    name: str = "model",
    lr: float = 1e-3,
) -> ProfileResult:
    """Profile ``steps`` training steps: ``loss(model(*inputs), target).backward()`` then an SGD
    update (``lr``), after ``warmup`` unprofiled steps (compiles kernels, warms caches).

    ``backend`` is applied with ``dlgpu.use_backend`` for the whole run; ``trace`` is a path for
    the Chrome trace. Returns the per-op table, largest CPU time first.
    """
    import torch
    from torch.profiler import ProfilerActivity, record_function

    import dlgpu

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0; got steps={steps}, warmup={warmup}")
    device = _device_of(model, inputs)
    cuda = device == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr) if params else None

    def step() -> None:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        loss(model(*inputs), target).backward()
        if opt is not None:
            opt.step()
        if cuda:
            torch.cuda.synchronize()  # the step's range then covers its kernels

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with dlgpu.use_backend(backend):
        model.train()
        for _ in range(warmup):
            step()
        with torch.profiler.profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                with record_function(STEP):
                    step()
            wall = (time.perf_counter() - t0) / steps
    events = list(prof.events())
    step_cpu = sum(e.cpu_time_total for e in events if e.name == STEP) / 1e3
    ops = sorted(_exclusive(events).values(), key=lambda o: -(o.device_ms if cuda else o.cpu_ms))
    if trace:
        prof.export_chrome_trace(trace)
        if not os.path.isfile(trace):  # torch's exporter logs a failure to stderr and returns normally
            raise OSError(f"trace: the Chrome trace could not be written to {trace}")
    return ProfileResult(name, steps, backend, device, wall * 1e3, step_cpu, ops, trace)


def profile_registered(
    name: str,
    steps: int = 5,
    batch_size: int = 8,
    backend: str = "auto",
    trace: str | None = None,
    seed: int = 0,
) -> ProfileResult:
    """Profile a model of ``dlgpu.models.registry`` (moved to CUDA when the backend runs there).

    LookupError for an unknown name (the message lists the known ones).
    """
    import importlib

    import torch

    try:
        registry = importlib.import_module("dlgpu.models.registry")
    except ModuleNotFoundError as e:
        if e.name != "dlgpu.models.registry":
            raise
        raise LookupError("dlgpu.models.registry is not available yet, so no model can be profiled") from e
    known = list(registry.names())
    if name not in known:
        raise LookupError(f"model must be one of {', '.join(known)}; got {name!r}")
    want_cuda = torch.cuda.is_available() and backend in ("auto", "triton", "cupy")
    kw = {"device": "cuda"} if want_cuda else {}
    ex = registry.example(name, batch_size=batch_size, seed=seed, **kw)
    return profile_model(ex.model, list(ex.inputs), ex.target, ex.loss, steps, backend, trace, name=name)


def render_profile(res: ProfileResult, console: Any = None) -> None:
    """Print the per-op table (rich): calls, CPU ms (and CUDA ms), per call, share of the step."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    cuda = res.device == "cuda"
    total = res.step_cpu_ms or 1.0
    t = Table(title=escape(f"dlgpu profile {res.model}: {res.steps} steps on {res.device}, backend={res.backend}"),
              header_style="bold")  # fmt: skip
    cols = ["op", "calls", "CPU ms", "CPU ms/call", "% of step CPU"] + (["CUDA ms", "CUDA ms/call"] if cuda else [])
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for o in res.ops:
        cells = [escape(o.name), str(o.calls), f"{o.cpu_ms:.3f}", f"{o.cpu_ms / o.calls:.3f}",
                 f"{100 * o.cpu_ms / total:.1f}"]  # fmt: skip
        if cuda:
            cells += [f"{o.device_ms:.3f}", f"{o.device_ms / o.calls:.3f}"]
        t.add_row(*cells)
    other = res.step_cpu_ms - res.dlgpu_cpu_ms
    t.add_row("(everything else: torch ops, autograd, optimizer)", "", f"{other:.3f}", "",
              f"{100 * other / total:.1f}", *([""] * (2 if cuda else 0)))  # fmt: skip
    console.print(t)
    console.print(f"step: {res.step_ms:.3f} ms wall (mean over {res.steps}, under the profiler); "
                  f"{res.step_cpu_ms / res.steps:.3f} ms CPU per step", markup=False, highlight=False)  # fmt: skip
    if res.trace:
        console.print(f"Chrome trace written to {res.trace} (chrome://tracing or ui.perfetto.dev)", markup=False)
