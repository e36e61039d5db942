"""CPU benchmark: Numba kernels against torch's own CPU kernels and the NumPy reference.

Same process, interleaved rounds (numba, torch, numpy, numba, torch, ...), medians over rounds,
after a warm-up that also pays Numba's compile. Every dlgpu result is checked against the
reference before it is timed (a wrong kernel is reported, not timed).

    python benchmarks/cpu_bench.py [--rounds 7] [--out benchmarks/results/cpu.md] [--quick]

Targets (torch time / dlgpu time), from the issue: recurrent >= 0.8, conv2d >= 0.6,
pooling, activations and losses >= 1.0.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlgpu import ops
from dlgpu.testing import compare


def _median_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float, float]]:
    """Interleave the callables round by round; return (median, min, max) seconds per name."""
    for fn in fns.values():  # warm-up (and compile)
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in times.items()}


def _bench_cases(quick: bool) -> list[dict]:
    g = np.random.default_rng(0)
    f32 = np.float32
    cases = []

    # ---- recurrent: T=100, B=32, I=128, H=256
    T, B, I, H = (20, 8, 32, 64) if quick else (100, 32, 128, 256)
    x = g.standard_normal((T, B, I)).astype(f32)
    h0 = np.zeros((B, H), f32)
    for cell, gates, tmod in (("lstm", 4, torch.nn.LSTM), ("gru", 3, torch.nn.GRU)):
        torch.manual_seed(0)
        mod = tmod(I, H).eval()
        w = [p.detach().numpy().copy() for p in mod.parameters()]
        xt = torch.from_numpy(x)
        if cell == "lstm":

            def ours(b, _w=w):
                return ops.lstm_forward(x, h0, h0, *_w, backend=b)[0]

            def theirs(_m=mod, _x=xt):
                with torch.no_grad():
                    return _m(_x)[0]
        else:

            def ours(b, _w=w):
                return ops.gru_forward(x, h0, *_w, backend=b)[0]

            def theirs(_m=mod, _x=xt):
                with torch.no_grad():
                    return _m(_x)[0]

        cases.append(dict(name=f"{cell} forward T={T} B={B} I={I} H={H}", op=cell, ours=ours, torch=theirs,
                          target=0.8, flops=2 * T * B * gates * H * (I + H)))  # fmt: skip

    # ---- conv2d forward 32x64x32x32, 64 3x3 filters, padding 1
    N, C, S, O = (4, 16, 16, 16) if quick else (32, 64, 32, 64)
    xc = g.standard_normal((N, C, S, S)).astype(f32)
    wc = (g.standard_normal((O, C, 3, 3)) * 0.05).astype(f32)
    bc = g.standard_normal(O).astype(f32)
    xct, wct, bct = map(torch.from_numpy, (xc, wc, bc))
    cases.append(dict(
        name=f"conv2d forward {N}x{C}x{S}x{S}, {O} 3x3, pad 1", op="conv2d",
        ours=lambda b: ops.conv2d_forward(xc, wc, bc, padding=1, backend=b),
        torch=lambda: F.conv2d(xct, wct, bct, padding=1), target=0.6, flops=2 * N * O * S * S * C * 9,
    ))  # fmt: skip

    # ---- max_pool2d 32x64x64x64, 2x2
    N, C, S = (4, 16, 32) if quick else (32, 64, 64)
    xp = g.standard_normal((N, C, S, S)).astype(f32)
    xpt = torch.from_numpy(xp)
    cases.append(dict(
        name=f"max_pool2d {N}x{C}x{S}x{S}, 2x2", op="max_pool2d",
        ours=lambda b: ops.max_pool2d_forward(xp, 2, backend=b)[0],
        torch=lambda: F.max_pool2d(xpt, 2), target=1.0, bytes=xp.nbytes * 1.25,
    ))  # fmt: skip

    # ---- relu, sigmoid 4096x1000
    xa = g.standard_normal((4096, 1000)).astype(f32)
    xat = torch.from_numpy(xa)
    for name, op, tfn in (("relu", "relu_forward", torch.relu), ("sigmoid", "sigmoid_forward", torch.sigmoid)):
        cases.append(dict(
            name=f"{name} 4096x1000", op=name, ours=lambda b, _op=op: ops.call(_op, xa, backend=b),
            torch=lambda _f=tfn: _f(xat), target=1.0, bytes=xa.nbytes * 2,
        ))  # fmt: skip

    # ---- cross_entropy forward + backward 4096x1000
    M, K = (512, 100) if quick else (4096, 1000)
    yl = g.standard_normal((M, K)).astype(f32)
    tl = g.integers(0, K, M)
    tlt = torch.from_numpy(tl)

    def ce_torch():
        y = torch.from_numpy(yl).requires_grad_()
        F.cross_entropy(y, tlt).backward()
        return y.grad

    cases.append(dict(
        name=f"cross_entropy fwd+bwd {M}x{K}", op="cross_entropy",
        ours=lambda b: ops.cross_entropy_forward(yl, tl, "mean", backend=b)[1],
        torch=ce_torch, target=1.0, bytes=yl.nbytes * 2,
    ))  # fmt: skip
    return cases


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write it as markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=None, help="markdown file to write (e.g. benchmarks/results/cpu.md)")
    p.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    args = p.parse_args(argv)

    rows = []
    for case in _bench_cases(args.quick):
        ref = case["ours"]("numpy")
        fns = {"torch": case["torch"], "numpy": lambda c=case: c["ours"]("numpy")}
        status = "n/a"
        try:
            out = case["ours"]("numba")
            rep = compare(out, ref, op=case["op"], dtype="float32")
            status = "PASS" if rep.ok else f"FAIL ({rep.rel_l2_err:.1e})"
            if rep.ok:
                fns = {"numba": lambda c=case: c["ours"]("numba"), **fns}
        except ops.BackendError as e:
            status = f"missing: {e}"
        t = _median_times(fns, args.rounds)
        tt = t["torch"][0]
        row = dict(name=case["name"], status=status, torch_ms=tt * 1e3, numpy_ms=t["numpy"][0] * 1e3)
        if "numba" in t:
            tn, lo, hi = t["numba"]
            row.update(numba_ms=tn * 1e3, spread=f"{lo * 1e3:.2f}-{hi * 1e3:.2f}", speedup=tt / tn,
                       vs_numpy=t["numpy"][0] / tn, target=case["target"])  # fmt: skip
            if "flops" in case:
                row["rate"] = f"{case['flops'] / tn / 1e9:.1f} GFLOP/s"
            if "bytes" in case:
                row["rate"] = f"{case['bytes'] / tn / 1e9:.1f} GB/s"
        rows.append(row)
        print(row, flush=True)

    header = (
        "| op | check | numba ms (min-max) | torch ms | numpy ms | torch/numba | target | numpy/numba | numba rate |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for r in rows:
        if "numba_ms" in r:
            met = "met" if r["speedup"] >= r["target"] else "MISSED"
            lines.append(
                f"| {r['name']} | {r['status']} | {r['numba_ms']:.2f} ({r['spread']}) | {r['torch_ms']:.2f} | "
                f"{r['numpy_ms']:.2f} | {r['speedup']:.2f}x | >= {r['target']} ({met}) | {r['vs_numpy']:.1f}x | "
                f"{r.get('rate', '')} |"
            )
        else:
            cells = [r["name"], r["status"], "-", f"{r['torch_ms']:.2f}", f"{r['numpy_ms']:.2f}", "-", "-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    env = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"numba {__import__('numba').__version__}. Medians of {args.rounds} interleaved rounds, float32."
    )
    cmd = "python benchmarks/cpu_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = "# CPU benchmark: numba vs torch CPU vs NumPy reference"
    text = f"{title}\n\nCommand: `{cmd.strip()}`\n\n{env}\n\n" + "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
