"""PCA vs linear autoencoder vs deep autoencoder on the 8x8 digits, at the same code size k.

    python benchmarks/autoencoders.py [--ks 2 8 16 30] [--epochs 30] [--seed 0]
                                      [--out benchmarks/results/autoencoders.md] [--png FILE]

The course's claims, measured: a linear autoencoder trained by backprop reaches PCA's reconstruction
error (it is a rephrasing of PCA, found less efficiently), and a deep (nonlinear) one goes below it.
PCA is fitted in closed form on the training split (dlgpu.reference.pca); both autoencoders are trained
full-batch with L-BFGS (``--epochs`` steps of up to 20 iterations) through dlgpu's kernels. Error =
(1/N) sum_n ||x_n - x_hat_n||^2 over the 64 pixels scaled to [0, 1], on the training and the held-out split.
"""

from __future__ import annotations

import argparse
import os
import sys

from dlgpu.models.cli import autoencode_comparison, error_table, save_grid


def main(argv: list[str] | None = None) -> int:
    """Run every k, print the tables, write markdown (and the PNG grid of the k nearest 16)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[2, 8, 16, 30])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, nargs="+", default=[256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="markdown file to write")
    p.add_argument("--png", help="PNG grid (originals and reconstructions) for the k closest to 16")
    args = p.parse_args(argv)
    rows = [
        "| k | PCA train | PCA test | linear AE train | linear AE test | linear / PCA (train) | deep AE train | "
        "deep AE test | deep / PCA (test) | linear s | deep s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    grid = min(args.ks, key=lambda k: abs(k - 16))
    for k in args.ks:
        r = autoencode_comparison(k, epochs=args.epochs, hidden=tuple(args.hidden), seed=args.seed)
        print(f"\nk = {k}\n{error_table(r)}", flush=True)
        (ptr, pte), (ltr, lte), (dtr, dte) = (r["errors"][m] for m in ("PCA", "linear AE", "deep AE"))
        secs = r["seconds"]
        rows.append(f"| {k} | {ptr:.4f} | {pte:.4f} | {ltr:.4f} | {lte:.4f} | {ltr / ptr:.4f} | {dtr:.4f} | "
                    f"{dte:.4f} | {dte / pte:.3f} | {secs['linear AE']:.1f} | {secs['deep AE']:.1f} |")  # fmt: skip
        if args.png and k == grid:
            save_grid(r, args.png)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# Autoencoders vs PCA on the 8x8 digits",
        "",
        f"Command: `python benchmarks/autoencoders.py {cmd}`",
        "",
        f"Seed {args.seed} (split and initialisation); 1437 training / 360 test digits, pixels in [0, 1]. Linear AE: "
        f"64 -> k -> 64, no activations; deep AE: 64 -> {' -> '.join(map(str, args.hidden))} -> k -> mirrored -> 64 "
        "with ReLUs, linear code; "
        f"both full-batch L-BFGS, {args.epochs} steps (<= 20 iterations each), dlgpu kernels (numba). "
        "Error: mean over digits of the squared error summed over the 64 pixels.",
        f"Environment: {os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.",
        "",
        *rows,
    ]) + "\n"  # fmt: skip
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
