"""The CPU timer and the peak measurement: what they return, not how fast anything is."""

from __future__ import annotations

import time

import pytest

from dlgpu.bench.peak import measure_peaks
from dlgpu.bench.timing import Timing, time_cpu, time_group


def test_interleaved_rounds_and_batching():
    order: list[str] = []

    def slow() -> None:
        order.append("slow")
        time.sleep(0.002)

    def fast() -> None:
        order.append("fast")

    t = time_cpu({"slow": slow, "fast": fast}, rep_time=0.03, min_reps=4, max_reps=50)
    # a 2 ms sleep never takes less than 2 ms, whatever the machine's load
    assert t["slow"].median_s >= 0.002 and t["slow"].inner == 1
    assert t["slow"].min_s <= t["slow"].median_s <= t["slow"].max_s
    # a call far below the timer's batch is repeated inside one timed batch
    assert t["fast"].inner > 1
    assert 4 <= t["slow"].reps == t["fast"].reps <= 50
    # interleaved: after the warm-up, every round runs slow once then its batch of fast calls
    rounds = order[2:]
    assert rounds[0] == "slow" and rounds[1 : 1 + t["fast"].inner] == ["fast"] * t["fast"].inner
    assert rounds.count("slow") == t["slow"].reps


def test_timing_from_samples_divides_by_the_batch():
    t = Timing.from_samples([0.4, 0.2, 0.3], inner=10)
    assert (t.median_s, t.min_s, t.max_s) == pytest.approx((0.03, 0.02, 0.04)) and (t.reps, t.inner) == (3, 10)
    t = Timing.from_samples([0.1, 0.2, 1.2])  # one slow outlier: the median ignores it, the mean would not
    assert t.median_s == pytest.approx(0.2)
    with pytest.raises(ValueError, match="non-empty"):
        Timing.from_samples([])


def test_rounds_are_clamped_to_max_reps():
    calls = []
    t = time_cpu({"f": lambda: calls.append(1)}, rep_time=0.2, min_reps=2, max_reps=5, min_batch_s=1e-6)
    assert t["f"].reps == 5 and len(calls) == 1 + 5 * t["f"].inner  # the warm-up, then 5 rounds


def test_bad_arguments():
    with pytest.raises(ValueError, match="rep_time > 0"):
        time_cpu({"f": lambda: None}, rep_time=0)
    with pytest.raises(ValueError, match="device must be"):
        time_group({"f": lambda: None}, "tpu")
    assert time_cpu({}) == {}


def test_cpu_peaks_are_positive_and_cached():
    p = measure_peaks("cpu", "float32", small=True)
    assert p.bandwidth > 0 and p.flops > 0 and p.device == "cpu" and "matmul" in p.how
    assert measure_peaks("cpu", "float32", small=True) is p
    with pytest.raises(ValueError, match="device must be"):
        measure_peaks("tpu", "float32", small=True)


def test_cuda_timing_goes_through_do_bench_per_callable(monkeypatch):
    """The GPU path without a GPU: ``do_bench``'s per-rep milliseconds (return_mode="all") become
    seconds, each callable is benchmarked on its own, and ``rep_time`` is its rep budget."""
    testing = pytest.importorskip("triton.testing", reason="triton is not installed")
    seen = []

    def fake_do_bench(fn, warmup, rep, return_mode):
        fn()
        seen.append((warmup, rep, return_mode))
        return [0.5, 0.25, 2.0]  # ms per rep

    monkeypatch.setattr(testing, "do_bench", fake_do_bench)
    ran = []
    out = time_group({"a": lambda: ran.append("a"), "b": lambda: ran.append("b")}, "cuda", rep_time=0.2)
    assert ran == ["a", "b"] and seen == [(25, 200, "all")] * 2
    t = out["a"]
    assert (t.median_s, t.min_s, t.max_s, t.reps, t.inner) == pytest.approx((5e-4, 2.5e-4, 2e-3, 3, 1))
