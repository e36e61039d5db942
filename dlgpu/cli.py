"""The ``dlgpu`` command. ``info`` and ``check`` live here; the other subcommands are registered by
their packages (``dlgpu.models.cli``: train, autoencode; ``dlgpu.bench.cli``: bench, profile, kernels),
each through a ``register(subparsers)`` that adds its parsers with ``set_defaults(fn=...)``."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence


def _info(_: argparse.Namespace) -> int:
    import dlgpu
    from dlgpu import ops

    print(f"dlgpu {dlgpu.__version__} on Python {platform.python_version()} ({platform.machine()})")
    for mod in ("numpy", "scipy", "numba", "torch", "triton", "cupy"):
        try:
            m = __import__(mod)
            print(f"  {mod:<7} {getattr(m, '__version__', '?')}")
        except Exception as e:  # a missing optional package is information, not an error
            print(f"  {mod:<7} not importable ({type(e).__name__})")
    try:
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:
        cuda = "none"
    print(f"CUDA device: {cuda}")
    print("backends:")
    for st in dlgpu.backends().values():
        print(f"  {st}")
    table = ops.op_table()
    counts = ", ".join(f"{b} {sum(r[b] for r in table.values())}/{len(table)}" for b in ops.BACKENDS)
    print(f"kernels per backend: {counts}")
    return 0


def _check(args: argparse.Namespace) -> int:
    import dlgpu
    from dlgpu.bench.runner import check_case, cupy_on_host, supports
    from dlgpu.ops import implements
    from dlgpu.testing.cases import all_cases

    status = dlgpu.backends()
    # without a GPU the CUDA C kernels still run, on the CPU through the host runtime (as in dlgpu bench)
    runs = {b: s.available or (b == "cupy" and cupy_on_host()) for b, s in status.items()}
    wanted = list(dict.fromkeys(args.backends or [b for b in status if runs[b]]))
    for b in wanted:
        if b not in status:
            print(f"error: --backends: unknown backend {b!r}; expected one of {', '.join(status)}", file=sys.stderr)
            return 2
        if not runs[b]:
            print(f"note: skipping {b}: {status[b].reason}")
    wanted = [b for b in wanted if runs[b]]
    cases = all_cases(args.seed, args.size)
    if args.ops:
        cases = [c for c in cases if any(c.name.startswith(o) for o in args.ops)]
        if not cases:
            print(f"error: --ops: no case name starts with any of {args.ops}", file=sys.stderr)
            return 2
    rows, failed = [], 0
    for case in cases:
        for b in wanted:
            if not implements(b, case.forward) or not supports(b, args.dtype):
                rows.append((case.name, b, args.dtype, "-", "n/a", "-", "-"))
                continue
            res = check_case(case, b, args.dtype, args.seed)
            worst = res.worst
            err = f"{worst.rel_l2_err:.1e}" if worst else "-"
            verdict = "PASS" if res.ok else "FAIL"
            failed += not res.ok
            fwd = f"{res.forward_s * 1e3:.2f}" if res.forward_s == res.forward_s else "-"
            bwd = f"{res.backward_s * 1e3:.2f}" if res.backward_s == res.backward_s else "-"
            rows.append((case.name, b + (" (host)" if b == "cupy" and not status[b].available else ""),
                         args.dtype, err, verdict, fwd, bwd))  # fmt: skip
            if not res.ok:
                detail = res.error or "\n".join(str(r) for r in res.reports if not r.ok)
                print(f"FAIL {case.name} on {b}:\n  {detail}", file=sys.stderr)
    head = ("op", "backend", "dtype", "rel_err", "check", "fwd ms", "bwd ms")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    n = sum(1 for r in rows if r[4] in ("PASS", "FAIL"))
    print(f"\n{n - failed} passed, {failed} failed (size={args.size}, seed={args.seed})")
    print("times are of one call, not a benchmark")
    return 1 if failed else 0


_COMMAND_MODULES = ("dlgpu.models.cli", "dlgpu.bench.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dlgpu`` console script."""
    p = argparse.ArgumentParser(prog="dlgpu", description="dlgpu: kernels for deep-network building blocks")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, devices, backends and why any is unavailable").set_defaults(fn=_info)
    c = sub.add_parser("check", help="run every op on every available backend against the float64 reference")
    c.add_argument("--backends", nargs="+", help="backends to check (default: all available)")
    c.add_argument("--ops", nargs="+", help="only cases whose name starts with one of these")
    c.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    c.add_argument("--size", default="quick", choices=["tiny", "quick"])
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=_check)
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
