"""``dlgpu bench``, ``dlgpu profile`` and ``dlgpu kernels``: registered on the ``dlgpu`` command by
``register(subparsers)`` (see ``dlgpu.cli``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..testing.cases import SIZES


def register(subparsers: Any) -> None:
    """Add the bench, profile and kernels subcommands to the ``dlgpu`` parser."""
    b = subparsers.add_parser(
        "bench",
        help="check every kernel against the reference, then time it against torch and NumPy",
        description="Check every op on every available backend against the float64 reference; time those that "
        "pass against torch eager on the same device and the NumPy reference. Triton under TRITON_INTERPRET=1 is "
        "checked, not timed; so are the CUDA C kernels (cupy) without a GPU, run on the CPU through the host "
        "runtime.",
    )
    b.add_argument("--ops", nargs="+", help="only cases whose name starts with one of these (e.g. conv2d lstm)")
    b.add_argument("--backends", nargs="+", help="backends to run (default: every available one)")
    b.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64", "float16", "bfloat16"])
    g = b.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small shapes, a few seconds per op on a CPU (= --sizes quick)")
    g.add_argument("--sizes", choices=SIZES, default=None,
                   help="shape set (default: paper with a CUDA device, quick without)")  # fmt: skip
    b.add_argument("--direction", nargs="+", default=["fwd", "bwd"], choices=["fwd", "bwd", "both"],
                   help="forward, backward or both (default both)")  # fmt: skip
    b.add_argument("--rep-time", type=float, default=None,
                   help="seconds of timed reps per op and device (default 0.5 on CPU, 0.2 on CUDA)")  # fmt: skip
    b.add_argument("--threads", type=int, default=None, help="CPU threads for torch, numba and BLAS (default: theirs)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--csv", help="write the rows as CSV")
    b.add_argument("--json", help="write the rows and the run's metadata as JSON")
    b.add_argument("--plot", help="write a PNG of the speedups over torch")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(fn=_bench)

    p = subparsers.add_parser(
        "profile",
        help="profile training steps of a dlgpu model under torch.profiler",
        description="Run training steps (forward, backward, SGD update) of a model from dlgpu.models under "
        "torch.profiler; print the time per dlgpu op and optionally write a Chrome trace.",
    )
    p.add_argument("model", help="a name from dlgpu.models.registry.names()")
    p.add_argument("--steps", type=int, default=5, help="profiled training steps (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--backend", default="auto", choices=["auto", "numpy", "numba", "triton", "cupy"])
    p.add_argument("--trace", help="write a Chrome trace (open in chrome://tracing or ui.perfetto.dev)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch, numba and BLAS (default: theirs)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_profile)

    k = subparsers.add_parser(
        "kernels",
        help="registers, shared memory and spills of every CUDA and compiled Triton kernel",
        description="Static resource report: nvcc -cubin -Xptxas -v over kernels/cuda/*.cu (where nvcc exists) "
        "and the Triton kernels' registers, spills and shared memory: those compiled on this GPU, or without "
        "one every launch of the tiny cases compiled ahead of time for --arch.",
    )
    k.add_argument("--arch", default=None, help="nvcc GPU architecture, e.g. sm_90 (default: this GPU's, else sm_90)")
    k.add_argument("--files", nargs="+", help="only these .cu files (paths, or family names such as conv)")
    k.add_argument("--no-triton", action="store_true", help="skip compiling and reporting the Triton kernels")
    k.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float16", "bfloat16"],
                   help="dtypes the Triton kernels are compiled for (each op's case is run once)")  # fmt: skip
    k.add_argument("--json", help="write the report as JSON")
    k.set_defaults(fn=_kernels)


def _console() -> Any:
    """A rich console; 220 columns when stdout is not a terminal (files, pipes, CI logs)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 220)


def _bench(args: argparse.Namespace) -> int:
    from . import report
    from .runner import cuda_available, render_table, run_bench

    cuda = cuda_available()
    size = "quick" if args.quick else args.sizes or ("paper" if cuda else "quick")
    rep_time = args.rep_time if args.rep_time is not None else (0.2 if cuda else 0.5)
    if rep_time <= 0:
        print(f"error: --rep-time must be > 0, got {rep_time}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        _set_threads(args.threads)
    bad = output_path_errors(csv=args.csv, json=args.json, plot=args.plot)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    directions = ["fwd", "bwd"] if "both" in args.direction else list(dict.fromkeys(args.direction))
    console = _console()
    if args.sizes is None and not args.quick:
        console.print(f"sizes: {size} (the default {'with' if cuda else 'without'} a CUDA device)")
    try:
        result = run_bench(args.ops, args.backends, args.dtype, size, args.seed, rep_time, directions,
                           progress=not args.no_progress, small_peaks=size == "tiny")  # fmt: skip
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    render_table(result, console)
    if args.csv:
        report.write_csv(result, args.csv)
    if args.json:
        report.write_json(result, args.json)
    if args.plot:
        report.plot_speedups(result, args.plot)
    return 1 if result.failed else 0


def output_path_errors(**paths: str | None) -> str:
    """The first problem with an output path given as ``--<name>``, checked before any work is done
    (a bad path would otherwise lose a finished run): "" when every path can be written."""
    for name, path in paths.items():
        if not path:
            continue
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"--{name}: directory {parent} does not exist"
        if not os.access(parent, os.W_OK):
            return f"--{name}: directory {parent} is not writable"
        if os.path.isdir(path):
            return f"--{name}: {path} is a directory"
    return ""


def _set_threads(n: int) -> None:
    from .runner import set_threads

    set_threads(n)


def _profile(args: argparse.Namespace) -> int:
    from .profile import profile_registered, render_profile

    if args.steps < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        print("error: --steps, --batch-size and --threads must be >= 1", file=sys.stderr)
        return 2
    bad = output_path_errors(trace=args.trace)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    if args.threads is not None:
        _set_threads(args.threads)
    try:
        res = profile_registered(args.model, args.steps, args.batch_size, args.backend, args.trace, args.seed)
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the trace could not be written after all
        print(f"error: {e}", file=sys.stderr)
        return 1
    render_profile(res, _console())
    return 0


def _kernels(args: argparse.Namespace) -> int:
    from .resources import kernel_report, render_kernels

    bad = output_path_errors(json=args.json)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    try:
        rep = kernel_report(args.files, args.arch, triton=not args.no_triton, dtypes=args.dtype)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    render_kernels(rep, _console())
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(rep.to_dict(), f, indent=1)
    return 1 if rep.cuda_errors or rep.triton_errors else 0
