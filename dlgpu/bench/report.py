"""The bench tool's files: CSV and JSON with one row per (op, direction, backend, shape, dtype),
and a PNG of the speedup over torch per op and backend."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .runner import BenchResult, BenchRow

COLUMNS = [f.name for f in fields(BenchRow)]


def _clean(v: Any) -> Any:
    """NaN -> None (JSON has no NaN); everything else unchanged."""
    return None if isinstance(v, float) and math.isnan(v) else v


def write_csv(result: BenchResult, path: str | Path) -> None:
    """One header line (COLUMNS) and one line per row; NaN written as an empty cell."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: ("" if _clean(v) is None else v) for k, v in asdict(r).items()})


def write_json(result: BenchResult, path: str | Path) -> None:
    """{"meta": {...}, "notes": [...], "rows": [{column: value}, ...]} with NaN as null."""
    doc = {
        "meta": result.meta,
        "notes": result.notes,
        "rows": [{k: _clean(v) for k, v in asdict(r).items()} for r in result.rows],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)


def plot_speedups(result: BenchResult, path: str | Path) -> int:
    """A horizontal bar chart of torch time / dlgpu time (log scale) per (op, direction, shape, dtype),
    one bar per backend; returns the number of bars drawn (0 draws a figure that says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in result.rows if r.timed and not math.isnan(r.speedup)]
    labels: list[str] = []
    for r in timed:
        lb = _label(r)
        if lb not in labels:
            labels.append(lb)
    backends = sorted({r.backend for r in timed})
    fig_h = max(2.5, 0.28 * len(labels) * max(1, len(backends)) ** 0.5 + 1.5)
    fig, ax = plt.subplots(figsize=(10, fig_h))
    if not timed:
        ax.text(0.5, 0.5, "no timed rows with a torch competitor", ha="center", va="center")
        ax.set_axis_off()
    else:
        height = 0.8 / len(backends)
        colors = plt.get_cmap("tab10")
        for j, b in enumerate(backends):
            ys, xs = [], []
            for r in timed:
                if r.backend == b:
                    ys.append(labels.index(_label(r)) + (j - (len(backends) - 1) / 2) * height)
                    xs.append(r.speedup)
            ax.barh(ys, xs, height=height, label=b, color=colors(j))
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first op on top, no empty margin
        ax.tick_params(axis="x", labeltop=True)  # a tall figure: the scale at both ends
        ax.set_xlabel("speedup over torch (torch time / dlgpu time; > 1 is faster)")
        ax.legend(loc="upper right", fontsize=8)
    meta = result.meta
    dev = ", ".join(sorted(set(meta.get("devices", {}).values())))
    ax.set_title(f"dlgpu bench, size={meta.get('size')}, {dev}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(timed)


def _label(r: BenchRow) -> str:
    return f"{r.op} {r.direction} [{r.shape}] {r.dtype}"


def markdown(result: BenchResult, target: Callable[[BenchRow], tuple[str, bool] | None] | None = None) -> str:
    """The rows as a markdown table (the columns of the terminal table); ``target(row)`` may give
    (what the target is, whether it is met) for a 'target' column."""

    def f(v: float, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    head = ["op", "dir", "backend", "dtype", "shape", "check", "ms (min-max)", "torch ms", "x torch", "x numpy",
            "GB/s", "GFLOP/s", "% peak bw", "% peak flop"] + (["target"] if target else [])  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.rows:
        timing = f"{f(r.median_ms, '.4g')} ({f(r.min_ms, '.4g')}-{f(r.max_ms, '.4g')})" if r.timed else r.note
        cells = [r.op, r.direction, r.backend, r.dtype, r.shape, f"{r.check} {f(r.rel_err, '.1e')}", timing,
                 f(r.torch_ms, ".4g"), f(r.speedup, ".2f"), f(r.vs_numpy, ".1f"), f(r.gbps, ".3g"),
                 f(r.gflops, ".3g"), f(100 * r.frac_peak_bw, ".0f"), f(100 * r.frac_peak_flops, ".0f")]  # fmt: skip
        if target:
            t = target(r) if r.timed else None
            cells.append("" if t is None else f"{t[0]} ({'met' if t[1] else 'MISSED'})")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
