"""LeNet-5 on scikit-learn's 8x8 digits, on the CPU through dlgpu's kernels: test accuracy and training time.

    python benchmarks/digits_lenet.py [--model full|small|both] [--epochs 20] [--seeds 0 1 2]
                                      [--out benchmarks/results/digits_lenet.md]

full: the paper's LeNet-5 (61,706 parameters, 5x5 convolutions) on the digits upsampled x4 to 32x32 (nearest
neighbour), as LeNet-5 expects 32x32 inputs; small: lenet5(small=True) on the 8x8 digits directly (3x3
convolutions, 19,754 parameters). Both: ReLU, max pooling, Adam, per-pixel standardised inputs, the fixed
stratified 80/20 split of dlgpu.models.data for each seed (the seed also draws the initialisation and the
batches). The accuracy reported is the last epoch's (no selection on the test set). Target: >= 97%.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from dlgpu.models import cnn
from dlgpu.models.data import load_digits
from dlgpu.models.train import fit


def run(model: str, seed: int, epochs: int, lr: float, batch_size: int, backend: str | None) -> dict[str, float]:
    """Train one model from one seed; returns test accuracy, parameters and seconds."""
    data = load_digits(seed=seed, scaling="standard", upsample=4 if model == "full" else 1)
    torch.manual_seed(seed)
    net = cnn.lenet5(10, 1, small=model == "small")
    t0 = time.perf_counter()
    hist = fit(
        net, data.x_train, data.y_train, x_test=data.x_test, y_test=data.y_test, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, backend=backend, progress=False,
        log=lambda line: print(f"  [{model} seed {seed}] {line}", flush=True),
    )  # fmt: skip
    return {"acc": hist["test_acc"][-1], "best": max(hist["test_acc"]), "seconds": time.perf_counter() - t0,
            "params": sum(p.numel() for p in net.parameters())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run, print and (with --out) write the markdown results; exit 1 if a full-model run is below 97%."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("full", "small", "both"), default="both")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--backend", default=None, help="dlgpu backend (default: auto, numba on the CPU)")
    p.add_argument("--out", help="markdown file to write")
    args = p.parse_args(argv)
    models = ("full", "small") if args.model == "both" else (args.model,)
    results = {(m, s): run(m, s, args.epochs, args.lr, args.batch_size, args.backend) for m in models
               for s in args.seeds}  # fmt: skip
    lines = [
        "# LeNet-5 on the 8x8 digits (CPU)",
        "",
        f"Command: `python benchmarks/digits_lenet.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Settings: {args.epochs} epochs, Adam lr {args.lr}, batch {args.batch_size}, backend "
        f"{args.backend or 'auto (numba)'}; 1437 training / 360 test digits per seed (stratified split of that seed); "
        "accuracy of the last epoch.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.",
        "",
        "| model | input | params | seed | test accuracy | best epoch's | train time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (m, s), r in results.items():
        size = "32x32 (x4 upsampled)" if m == "full" else "8x8"
        lines.append(f"| LeNet-5 {m} | {size} | {r['params']:,} | {s} | {r['acc']:.2%} | {r['best']:.2%} | "
                     f"{r['seconds']:.1f} |")  # fmt: skip
    for m in models:
        accs = [results[(m, s)]["acc"] for s in args.seeds]
        secs = [results[(m, s)]["seconds"] for s in args.seeds]
        lines.append(f"| LeNet-5 {m} | mean | | | {statistics.mean(accs):.2%} | | {statistics.mean(secs):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    ok = all(r["acc"] >= 0.97 for (m, _), r in results.items() if m == "full")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
