"""Long-dependency benchmark: LSTM, GRU, MGU and a vanilla RNN of the same size on one synthetic task.

Each cell is trained by ``dlgpu.models.tasks.train_sequence`` (dlgpu's fused recurrent ops, Adam,
gradient-norm clipping) from the same seed on the same data; the script writes a markdown table of
the final scores and timings (default ``benchmarks/results/long_dependency.md``).

    python benchmarks/long_dependency.py                 # the committed run (CPU, a few minutes)
    python benchmarks/long_dependency.py --task adding_cls --seq-len 100 --epochs 20
"""

from __future__ import annotations

import os

# Numba's OpenMP threads and torch's spin-wait between parallel regions; on a small shared CPU the
# two pools then steal each other's cores and tiny kernels cost tens of ms (measured: 160 ms vs 3 ms
# per training step of a small LSTM on 2 cores). Passive waiting removes that; set before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from dlgpu.models.tasks import TASKS, train_sequence  # noqa: E402

CELLS = ("lstm", "gru", "mgu", "rnn")
RESULTS = Path(__file__).resolve().parent / "results" / "long_dependency.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="adding", choices=[t for t in TASKS if t not in ("copy", "reverse")])
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--hidden-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--n-train", type=int, default=4096)
    p.add_argument("--n-test", type=int, default=512)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; every cell is trained once per seed")
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of " + ",".join(CELLS))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]

    settings = dict(
        seq_len=args.seq_len, hidden_size=args.hidden_size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, n_train=args.n_train, n_test=args.n_test,
    )  # fmt: skip
    t0 = time.perf_counter()
    runs = {
        c: [train_sequence(c, args.task, seed=s, progress=not args.no_progress, return_model=True, **settings)
            for s in seeds]
        for c in cells
    }  # fmt: skip
    total = time.perf_counter() - t0
    print(_report(args, runs, seeds, total, argv), end="")
    return 0


def _report(args: argparse.Namespace, runs: dict[str, list[dict]], seeds: list[int], total: float,
            argv: list[str] | None) -> str:  # fmt: skip
    """Write the markdown table to ``args.out`` and return it."""
    command = " ".join(["python benchmarks/long_dependency.py", *(sys.argv[1:] if argv is None else argv)])
    first = next(iter(runs.values()))[0]
    regression = first["kind"] == "regression"
    metric = "mse" if regression else "accuracy"
    # solved: within 5 % of the baseline's error (mse) or of perfect accuracy
    solved = (lambda v, base: v < 0.05 * base) if regression else (lambda v, base: v > 0.95)
    fmt = "{:.4f}" if regression else "{:.3f}"
    baselines = [r["baseline"][metric] for rs in runs.values() for r in rs[:1]]
    steps = args.epochs * -(-args.n_train // args.batch_size)
    lines = [
        f"# Long-dependency benchmark: {args.task}, T = {args.seq_len}",
        "",
        f"Command: `{command}`",
        "",
        f"Settings: seeds {', '.join(map(str, seeds))} (data, init and batch order all follow the seed); hidden "
        f"size {args.hidden_size} for every cell, one layer; {args.n_train} training / {args.n_test} test "
        f"sequences; {args.epochs} epochs of batch {args.batch_size} ({steps} Adam steps, lr {args.lr}, gradient "
        "norm clipped at 1); torch's default init (U(+-1/sqrt(H)), no forget-gate bias trick); dlgpu's fused "
        "recurrent ops (numba backend), SequenceClassifier (final state -> dlgpu.nn.Linear).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs while this ran), "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; total {total:.0f} s.",
        "",
        f"Baseline without memory ({'predict the training mean' if regression else 'the majority class'}): "
        f"test {metric} {fmt.format(baselines[0])} (seed {seeds[0]}; each seed has its own data). "
        f"Solved: test {metric} "
        + ("below 5 % of the baseline's." if regression else "above 0.95."),
        "",
        f"| cell | params | final test {metric} per seed | best test {metric} per seed | final train loss "
        f"(mean) | solved | time per run (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell, rs in runs.items():
        finals = [r["final"][metric] for r in rs]
        bests = [(min if regression else max)(h[metric] for h in r["history"]) for r in rs]
        params = sum(p.numel() for p in rs[0]["model"].parameters())
        n_solved = sum(solved(v, r["baseline"][metric]) for v, r in zip(finals, rs))
        loss = sum(r["final"]["loss"] for r in rs) / len(rs)
        lines.append(
            f"| {cell} | {params} | {' / '.join(fmt.format(v) for v in finals)} | "
            f"{' / '.join(fmt.format(v) for v in bests)} | {loss:.4f} | {n_solved}/{len(rs)} | "
            f"{sum(r['seconds'] for r in rs) / len(rs):.0f} |"
        )
    lines += ["", f"Test {metric} after each epoch (seed {seeds[0]}):", ""]
    for cell, rs in runs.items():
        lines.append(f"- {cell}: " + ", ".join(fmt.format(h[metric]) for h in rs[0]["history"]))
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
