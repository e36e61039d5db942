"""Timing: CUDA through ``triton.testing.do_bench`` (CUDA events, warm-up, L2 flushed before every
rep), CPU through ``time.perf_counter`` with a warm-up and interleaved rounds.

Interleaving (round r runs every callable once, in order, before round r+1 starts) spreads the
machine's slow drifts (other processes, frequency changes, a BLAS pool waking up) over every
competitor alike, so their medians stay comparable even on a loaded box. Calls shorter than
``min_batch_s`` are repeated inside one timed batch so the timer's resolution does not matter.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, fastest and slowest rep; ``reps`` reps of ``inner`` calls each."""

    median_s: float
    min_s: float
    max_s: float
    reps: int
    inner: int = 1

    @classmethod
    def from_samples(cls, samples: list[float], inner: int = 1) -> Timing:
        """Per-call seconds from per-rep seconds (each rep ran ``inner`` calls)."""
        if not samples:
            raise ValueError("samples must be a non-empty list of rep times")
        per = [t / inner for t in samples]
        return cls(statistics.median(per), min(per), max(per), len(per), inner)


def time_cpu(
    fns: Mapping[str, Callable[[], object]],
    rep_time: float = 0.5,
    min_reps: int = 3,
    max_reps: int = 200,
    warmup: int = 1,
    min_batch_s: float = 2e-4,
) -> dict[str, Timing]:
    """Time CPU callables in interleaved rounds after ``warmup`` calls each.

    The number of rounds is ``rep_time`` divided by one round's time, clamped to
    [min_reps, max_reps]: a slow competitor gets few rounds, never fewer than ``min_reps``.
    Returns {name: Timing} in seconds per call.
    """
    if not fns:
        return {}
    if rep_time <= 0 or min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"need rep_time > 0 and 1 <= min_reps <= max_reps; got {rep_time}, {min_reps}, {max_reps}")
    pilot: dict[str, float] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            fn()
        pilot[name] = max((time.perf_counter() - t0) / max(1, warmup), 1e-9)
    inner = {k: max(1, math.ceil(min_batch_s / t)) for k, t in pilot.items()}
    round_s = sum(pilot[k] * inner[k] for k in fns)
    rounds = min(max_reps, max(min_reps, int(rep_time / round_s)))
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: Timing.from_samples(v, inner[k]) for k, v in samples.items()}


def time_cuda(fn: Callable[[], object], rep_ms: float = 100.0, warmup_ms: float = 25.0) -> Timing:
    """Time a CUDA callable with ``triton.testing.do_bench``: CUDA events around each rep, the L2
    cache flushed before each rep, ``warmup_ms`` of warm-up then about ``rep_ms`` of reps."""
    from triton.testing import do_bench

    ms = do_bench(fn, warmup=int(warmup_ms), rep=int(rep_ms), return_mode="all")
    return Timing.from_samples([t * 1e-3 for t in ms])


def time_group(
    fns: Mapping[str, Callable[[], object]], device: str, rep_time: float = 0.5
) -> dict[str, Timing]:
    """Time callables that run on one ``device`` ('cpu' or 'cuda'): interleaved on the CPU,
    one ``do_bench`` each on CUDA (``rep_time`` seconds of reps each)."""
    if device == "cpu":
        return time_cpu(fns, rep_time)
    if device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    return {k: time_cuda(fn, rep_ms=1e3 * rep_time) for k, fn in fns.items()}
