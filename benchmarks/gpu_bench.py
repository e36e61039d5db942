"""GPU benchmark: dlgpu's Triton (and CuPy) kernels against torch/cuDNN, through ``dlgpu.bench``.

Every kernel is checked against the float64 reference before it is timed (a wrong kernel is
reported, not timed); timing is ``triton.testing.do_bench`` (median of reps after warm-up, L2
flushed between reps); rates come from ``dlgpu.bench.costs`` and the fractions of peak from the
copy bandwidth and matmul rate measured at start-up (``dlgpu.bench.peak``).

    python benchmarks/gpu_bench.py [--dtype bfloat16 float32] [--sizes paper] [--ops ...]
                                   [--csv benchmarks/results/<device>.csv] [--md FILE] [--json FILE]

Targets (issue, Triton kernels on an H100): LSTM/GRU forward T=100 >= 1.0x cuDNN at B=64 and >= 2x
at B <= 8; MGU >= 1.5x cuDNN LSTM; conv2d forward bf16 >= 0.9x cuDNN; conv+bias+ReLU fused >= 1.2x
cuDNN conv then torch's bias+ReLU; conv backward >= 0.5x cuDNN; pooling, activations and losses
>= 85% of the measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import sys

from dlgpu.bench import report
from dlgpu.bench.runner import BenchRow, cuda_available, render_table, run_bench
from dlgpu.testing.cases import SIZES

MEMORY_BOUND = (
    "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax", "max_pool2d", "avg_pool2d",
    "dropout", "hinge_loss", "squared_hinge_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "cross_entropy", "multiclass_hinge_loss", "multiclass_squared_hinge_loss", "mse_loss", "l1_loss",
    "pseudo_huber_loss",
)  # fmt: skip


def target(row: BenchRow) -> tuple[str, bool] | None:
    """The issue's target for a GPU row, if it has one: (what, met)."""
    if row.device != "cuda":
        return None
    family = row.op.split("[")[0]
    batch = int(row.shape.split(" B")[1].split()[0]) if " B" in row.shape else None
    if family in ("lstm", "gru") and row.direction == "fwd" and row.op in ("lstm[forget]", "gru[cudnn]"):
        t = 2.0 if batch is not None and batch <= 8 else 1.0
        return f">= {t}x cuDNN", row.speedup >= t
    if family == "mgu" and row.direction == "fwd":
        return ">= 1.5x cuDNN LSTM", row.speedup >= 1.5
    if family == "conv2d":
        if row.direction == "bwd":
            return ">= 0.5x cuDNN", row.speedup >= 0.5
        t = 1.2 if "relu" in row.op else 0.9
        return f">= {t}x cuDNN{' + bias + ReLU' if t == 1.2 else ''}", row.speedup >= t
    if family in MEMORY_BOUND:
        return ">= 85% copy BW", row.frac_peak_bw >= 0.85
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the GPU rows, print the table, write CSV / markdown / JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", nargs="+", default=["bfloat16"], choices=["float32", "float16", "bfloat16"])
    p.add_argument("--sizes", default="paper", choices=SIZES)
    p.add_argument("--ops", nargs="+", help="case-name prefixes (default: all)")
    p.add_argument("--backends", nargs="+", default=["triton", "cupy"])
    p.add_argument("--rep-time", type=float, default=0.2, help="seconds of do_bench reps per op")
    p.add_argument("--csv")
    p.add_argument("--md")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if not cuda_available():
        print("error: no CUDA device; the GPU benchmark needs one (benchmarks/cpu_bench.py is the CPU one)",
              file=sys.stderr)  # fmt: skip
        return 2
    result = run_bench(args.ops, args.backends, args.dtype, args.sizes, rep_time=args.rep_time)
    render_table(result)
    for path, write in ((args.csv, report.write_csv), (args.json, report.write_json)):
        if path:
            write(result, path)
    if args.md:
        dev = result.meta["devices"].get("cuda", "?")
        cmd = "python benchmarks/gpu_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        peaks = "; ".join(f"peak {v}" for v in result.meta["peaks"].values())
        with open(args.md, "w") as f:
            f.write(f"# GPU benchmark on {dev}\n\nCommand: `{cmd.strip()}`\n\n{peaks}\n\n"
                    + report.markdown(result, target) + "\n")  # fmt: skip
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
