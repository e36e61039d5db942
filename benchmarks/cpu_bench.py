"""CPU benchmark: the Numba kernels against torch's CPU kernels and the NumPy reference, at the shapes
of benchmarks/results/cpu.md, through ``dlgpu.bench`` (checked before timed; interleaved medians).

    python benchmarks/cpu_bench.py [--out benchmarks/results/cpu.md] [--csv FILE] [--threads N] [--quick]

Targets (torch time / numba time), from the issue: recurrent >= 0.8, conv2d >= 0.6, pooling,
activations and losses >= 1.0. ``dlgpu bench`` runs the same machinery at the quick/paper sizes.
"""

from __future__ import annotations

import argparse
import sys

from dlgpu.bench import report
from dlgpu.bench.runner import BenchRow, render_table, run_bench, set_threads
from dlgpu.testing.cases import cases_from_shapes

# the shapes of the committed CPU results: (label, N, C, H=W, O, K, stride, padding, activation) for conv,
# T=100 B=32 I=128 H=256 for the recurrent cells, 4096 x 1000 for the elementwise ops and losses
SHAPES = dict(
    ew=(4096, 1000), loss=(4096, 1000), pool=(32, 64, 64, 64),
    conv=(("32x64x32x32", 32, 64, 32, 64, 3, 1, 1, "none"),),
    rnn=dict(t=100, batches=(32,), hiddens=(256,), input_size=128),
)  # fmt: skip
QUICK = dict(
    ew=(512, 100), loss=(512, 100), pool=(4, 16, 32, 32),
    conv=(("4x16x16x16", 4, 16, 16, 16, 3, 1, 1, "none"),),
    rnn=dict(t=20, batches=(8,), hiddens=(64,), input_size=32),
)  # fmt: skip
OPS = ["lstm[forget]", "gru[cudnn]", "conv2d", "max_pool2d[k2", "relu", "sigmoid", "softmax", "cross_entropy[mean]"]
TARGETS = {"lstm": 0.8, "gru": 0.8, "conv2d": 0.6, "max_pool2d": 1.0, "relu": 1.0, "sigmoid": 1.0, "softmax": 1.0,
           "cross_entropy": 1.0}  # fmt: skip


def target(row: BenchRow) -> tuple[str, bool] | None:
    """The issue's target for a numba row: torch time / numba time >= TARGETS[family]."""
    t = TARGETS.get(row.op.split("[")[0])
    if row.backend != "numba" or t is None:
        return None
    return f">= {t}", row.speedup >= t


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write markdown (and CSV)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="markdown file to write (e.g. benchmarks/results/cpu.md)")
    p.add_argument("--csv", help="CSV file to write")
    p.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    p.add_argument("--rep-time", type=float, default=1.0, help="seconds of interleaved reps per op")
    p.add_argument("--threads", type=int, default=None, help="torch, numba and BLAS threads (default: theirs)")
    args = p.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    cases = cases_from_shapes(QUICK if args.quick else SHAPES, 0, OPS)
    result = run_bench(backends=["numpy", "numba"], size="quick" if args.quick else "cpu_bench", rep_time=args.rep_time,
                       cases=cases)  # fmt: skip
    render_table(result)
    if args.csv:
        report.write_csv(result, args.csv)
    cmd = "python benchmarks/cpu_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    m = result.meta
    threads = f"torch {m.get('torch_threads')} threads, numba {m.get('numba_threads')} threads"
    env = (f"Machine: {m['devices']['cpu']}, load average {m['load_average']:.1f}; "
           + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
           + f"; {threads}. Medians of interleaved rounds, float32. "
           + "; ".join(f"peak {v}" for v in m["peaks"].values()))  # fmt: skip
    text = (f"# CPU benchmark: numba vs torch CPU vs NumPy reference\n\nCommand: `{cmd.strip()}`\n\n{env}\n\n"
            + report.markdown(result, target) + "\n")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
