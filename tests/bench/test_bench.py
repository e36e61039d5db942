"""`dlgpu bench` on the CPU at tiny sizes: the files it writes, wrong kernels reported and not timed,
Triton under the interpreter and the CUDA C kernels through the host runtime checked but not timed,
and bad arguments."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import dlgpu
from dlgpu import cli, ops
from dlgpu.bench.report import COLUMNS, markdown, plot_speedups, write_csv, write_json
from dlgpu.bench.runner import (
    HOST_RUNTIME,
    NOT_TIMED_HOST,
    NOT_TIMED_INTERPRETER,
    cuda_available,
    cupy_on_host,
    run_bench,
)
from dlgpu.kernels.cuda import _host
from dlgpu.testing.cases import _BENCH_FAMILIES, all_cases, select_cases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(**kw):
    return run_bench(size="tiny", rep_time=0.01, progress=False, small_peaks=True, **kw)


def test_cli_writes_wellformed_csv_json_png(tmp_path, capsys):
    out = {k: tmp_path / f"bench.{k}" for k in ("csv", "json", "png")}
    ops_ = ["relu", "linear[relu]", "max_pool2d[k2"]  # cheap to compile with a cold numba cache
    rc = cli.main(["bench", "--sizes", "tiny", "--ops", *ops_, "--backends", "numpy", "numba", "--rep-time", "0.01",
                   "--no-progress", "--csv", str(out["csv"]), "--json", str(out["json"]), "--plot", str(out["png"])])
    table = capsys.readouterr().out
    assert rc == 0, table
    assert "x torch" in table and "max_pool2d[k2,s2,p0]" in table and "PASS" in table

    with open(out["csv"], newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    # 3 cases x 2 directions x 2 backends, one row each
    assert len(rows) == 12
    families = ("relu", "linear", "max_pool2d")
    assert {(r["op"].split("[")[0], r["direction"], r["backend"]) for r in rows} == {
        (o, d, b) for o in families for d in ("fwd", "bwd") for b in ("numpy", "numba")
    }
    for r in rows:
        assert r["check"] == "PASS" and r["timed"] == "True" and r["dtype"] == "float32"
        med, lo, hi = float(r["median_ms"]), float(r["min_ms"]), float(r["max_ms"])
        assert 0 < lo <= med <= hi
        assert float(r["speedup"]) == pytest.approx(float(r["torch_ms"]) / med)
        assert float(r["gbps"]) == pytest.approx(float(r["bytes"]) / med / 1e6)
        assert float(r["rel_err"]) < float(r["rtol"])
        assert r["device_name"] and "torch=" in r["versions"] and "numpy=" in r["versions"]
        assert r["competitor"].startswith(("torch", "F.")), r["competitor"]

    doc = json.loads(out["json"].read_text())
    assert doc["meta"]["size"] == "tiny" and doc["meta"]["versions"]["torch"]
    assert [(r["op"], r["direction"], r["backend"]) for r in doc["rows"]] == [
        (r["op"], r["direction"], r["backend"]) for r in rows
    ]
    assert doc["rows"][0]["median_ms"] == pytest.approx(float(rows[0]["median_ms"]))

    png = out["png"].read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 20_000


def test_wrong_kernel_is_reported_as_fail_and_not_timed(monkeypatch, tmp_path, capsys):
    mod = ops.backend_module("numba", "activations")
    good = mod.tanh_forward
    monkeypatch.setattr(mod, "tanh_forward", lambda x: good(x) * x.dtype.type(1.001))
    res = _bench(ops=["tanh"], backends=["numba"])
    fwd = next(r for r in res.rows if r.direction == "fwd")
    bwd = next(r for r in res.rows if r.direction == "bwd")
    assert fwd.check == "FAIL" and not fwd.timed and math.isnan(fwd.median_ms) and math.isnan(fwd.speedup)
    assert fwd.note.startswith("not timed") and fwd.rel_err > fwd.rtol == 2e-5
    assert bwd.check == "PASS" and bwd.timed  # the backward kernel is fine, so it is timed
    assert res.failed == [fwd]
    # the untimed row's NaN columns are empty cells in the CSV and null in the JSON (which has no NaN)
    write_csv(res, tmp_path / "r.csv")
    write_json(res, tmp_path / "r.json")
    with open(tmp_path / "r.csv", newline="") as f:
        cells = next(r for r in csv.DictReader(f) if r["direction"] == "fwd")
    assert cells["median_ms"] == cells["speedup"] == "" and cells["check"] == "FAIL"
    doc = json.loads((tmp_path / "r.json").read_text())
    row = next(r for r in doc["rows"] if r["direction"] == "fwd")
    assert row["median_ms"] is None and row["rel_err"] == pytest.approx(fwd.rel_err)
    # the markdown table: one line per row; the timed row's % of peak, bandwidth then flops
    bwd.frac_peak_bw, bwd.frac_peak_flops = 0.25, 0.5
    lines = markdown(res).splitlines()
    assert len(lines) == 2 + len(res.rows)
    line = next(ln for ln in lines if " bwd " in ln)
    assert line.rstrip(" |").endswith("| 25 | 50")
    assert "| FAIL " in next(ln for ln in lines if " fwd " in ln)
    # the plot of a run whose only timed row ... still has one bar; of a run with none, a figure saying so
    assert plot_speedups(res, tmp_path / "one.png") == 1
    res.rows = [fwd]
    assert plot_speedups(res, tmp_path / "none.png") == 0
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG_MAGIC
    # the command exits 1 and shows the FAIL row
    assert cli.main(["bench", "--sizes", "tiny", "--ops", "tanh", "--backends", "numba", "--rep-time", "0.01",
                     "--direction", "fwd", "--no-progress"]) == 1  # fmt: skip
    assert "FAIL" in capsys.readouterr().out


def test_crashing_kernel_is_an_error_row(monkeypatch):
    mod = ops.backend_module("numba", "activations")

    def boom(dy, x):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(mod, "relu_backward", boom)
    res = _bench(ops=["relu"], backends=["numba"])
    by_dir = {r.direction: r for r in res.rows}
    assert by_dir["fwd"].check == "PASS" and by_dir["fwd"].timed
    assert by_dir["bwd"].check == "ERROR" and not by_dir["bwd"].timed and "kernel exploded" in by_dir["bwd"].note


def test_one_wrong_output_of_several_fails_the_row(monkeypatch):
    mod = ops.backend_module("numba", "linear")
    good = mod.linear_backward
    monkeypatch.setattr(mod, "linear_backward", lambda *a, **k: (*good(*a, **k)[:2], good(*a, **k)[2] * 1.01))
    res = _bench(ops=["linear[relu]"], backends=["numba"])
    by_dir = {r.direction: r for r in res.rows}
    assert by_dir["fwd"].check == "PASS" and by_dir["fwd"].timed
    bwd = by_dir["bwd"]  # dx and dW are right, db is not
    assert bwd.check == "FAIL" and not bwd.timed and "linear_backward:out2" in bwd.note


def test_the_verdict_names_the_failing_output_not_the_largest_error():
    from dlgpu.bench.runner import _direction_verdict
    from dlgpu.testing import Report, Tolerance
    from dlgpu.testing.cases import CaseResult

    tol = Tolerance(1e-2, 0.0)
    loose = Report("op_forward:out0", "float32", tol, True, (3,), 3, rel_l2_err=5e-3)
    off = Report("op_forward:out1", "float32", tol, False, (3,), 3, n_mismatch=1, rel_l2_err=1e-3)
    res = CaseResult(None, "numba", "float32", [loose, off])
    check, rel, rtol, _, note = _direction_verdict(res, "op_forward")
    assert (check, rel, rtol) == ("FAIL", 1e-3, 1e-2) and "op_forward:out1 1/3" in note


def test_a_crashing_forward_leaves_its_backward_unchecked(monkeypatch):
    mod = ops.backend_module("numba", "activations")

    def boom(x):
        raise RuntimeError("forward exploded")

    monkeypatch.setattr(mod, "relu_forward", boom)
    res = _bench(ops=["relu"], backends=["numba"])
    by_dir = {r.direction: r for r in res.rows}
    assert by_dir["fwd"].check == "ERROR" and "forward exploded" in by_dir["fwd"].note
    bwd = by_dir["bwd"]
    assert bwd.check == "ERROR" and not bwd.timed and bwd.note == "not checked: the forward raised"
    assert bwd.rtol == 2e-5 and math.isnan(bwd.rel_err)


def test_row_numbers_come_from_the_timings_costs_and_peaks(monkeypatch):
    """With the timer and the peaks stubbed, every derived column is exact arithmetic."""
    from dlgpu.bench import runner
    from dlgpu.bench.peak import Peaks
    from dlgpu.bench.timing import Timing

    times = {"numpy": Timing(4e-3, 3e-3, 9e-3, 7), "numba": Timing(2e-3, 1e-3, 5e-3, 11),
             "torch": Timing(8e-3, 8e-3, 8e-3, 3)}  # fmt: skip
    monkeypatch.setattr(runner, "time_group", lambda fns, dev, rep_time: {k: times[k] for k in fns})
    monkeypatch.setattr(runner, "measure_peaks", lambda dev, dtype, small: Peaks(dev, dtype, 1e9, 2e9, "stub"))
    res = _bench(ops=["relu"], backends=["numpy", "numba"], directions=["fwd"])
    row = next(r for r in res.rows if r.backend == "numba")
    assert row.timed and row.reps == 11
    assert (row.median_ms, row.min_ms, row.max_ms) == pytest.approx((2.0, 1.0, 5.0))
    assert (row.torch_ms, row.speedup) == pytest.approx((8.0, 4.0))
    assert (row.numpy_ms, row.vs_numpy) == pytest.approx((4.0, 2.0))
    assert row.gflops == pytest.approx(row.flops / 2e-3 / 1e9) and row.gbps == pytest.approx(row.bytes / 2e-3 / 1e9)
    assert row.frac_peak_bw == pytest.approx(row.bytes / 2e-3 / 1e9)
    assert row.frac_peak_flops == pytest.approx(row.flops / 2e-3 / 2e9)


def test_kernel_failing_only_when_timed_is_an_error_row(monkeypatch):
    mod = ops.backend_module("numba", "activations")
    good, calls = mod.sigmoid_forward, []

    def second_call_fails(x):
        calls.append(1)
        if len(calls) > 1:
            raise MemoryError("out of memory on the second call")
        return good(x)

    monkeypatch.setattr(mod, "sigmoid_forward", second_call_fails)
    res = _bench(ops=["sigmoid"], backends=["numpy", "numba"], directions=["fwd"])
    by_backend = {r.backend: r for r in res.rows}
    assert by_backend["numba"].check == "ERROR" and not by_backend["numba"].timed
    assert "raised while timed: MemoryError" in by_backend["numba"].note
    assert by_backend["numpy"].timed  # the others in its timing group still get their numbers


def test_triton_is_checked_and_timed_only_on_a_gpu():
    res = _bench(ops=["sigmoid"], backends=["triton"])
    assert len(res.rows) == 2 and all(r.check == "PASS" for r in res.rows)
    if cuda_available():
        assert all(r.timed and r.device == "cuda" for r in res.rows)
    else:  # tests/conftest.py set TRITON_INTERPRET=1
        assert all(not r.timed and r.note == NOT_TIMED_INTERPRETER for r in res.rows)
        assert all(r.device == "cpu (interpreter)" for r in res.rows)
        assert any("not timed" in n for n in res.notes)


def test_cupy_without_a_device_is_checked_through_the_host_runtime_not_timed(monkeypatch):
    if not cupy_on_host():
        pytest.skip("cupy runs on a device here" if dlgpu.backends()["cupy"].available else str(_host.reason()))
    res = _bench(ops=["sigmoid"], backends=["cupy"])
    assert len(res.rows) == 2 and all(r.check == "PASS" and r.rel_err < r.rtol for r in res.rows)
    assert all(not r.timed and r.note == NOT_TIMED_HOST and r.device == HOST_RUNTIME for r in res.rows)
    assert any(NOT_TIMED_HOST in n for n in res.notes)
    mod = ops.backend_module("cupy", "activations")
    good = mod.sigmoid_forward
    monkeypatch.setattr(mod, "sigmoid_forward", lambda x: good(x) * 1.001)
    res = _bench(ops=["sigmoid"], backends=["cupy"], directions=["fwd"])
    assert [r.check for r in res.rows] == ["FAIL"] and res.failed == res.rows


def test_bad_arguments(capsys):
    with pytest.raises(ValueError, match="backends: unknown backend 'tpu'"):
        _bench(backends=["tpu"])
    with pytest.raises(ValueError, match="ops: no case name starts with"):
        _bench(ops=["conv3d"], backends=["numpy"])
    with pytest.raises(ValueError, match="directions"):
        _bench(ops=["relu"], directions=["sideways"])
    with pytest.raises(ValueError, match="dtype must be one of"):
        _bench(ops=["relu"], dtypes=["int8"])
    assert cli.main(["bench", "--sizes", "tiny", "--rep-time", "0"]) == 2
    assert cli.main(["bench", "--sizes", "tiny", "--threads", "0"]) == 2
    assert cli.main(["bench", "--sizes", "tiny", "--ops", "conv3d", "--no-progress"]) == 2
    assert "no case name" in capsys.readouterr().err


def test_bench_sizes_select_families(monkeypatch):
    from dlgpu.testing import cases

    # the paper shapes: ResNet-18 / VGG-16 conv layers, T=100 recurrent sweeps with B in 1..64, H in 256..1024
    paper = cases._BENCH_SHAPES["paper"]
    assert ("resnet18.layer1", 32, 64, 56, 64, 3, 1, 1, "none") in paper["conv"]
    assert any(c[0].startswith("vgg16") for c in paper["conv"])
    assert paper["rnn"]["t"] == 100 and paper["rnn"]["batches"] == (1, 8, 64)
    assert paper["rnn"]["hiddens"] == (256, 512, 1024)
    # selection on small stand-in shapes (the real ones allocate gigabytes)
    small = dict(paper, linear=((9, 5, 3, "relu"), (4, 6, 2, "none")),
                 rnn=dict(t=3, batches=(1, 2), hiddens=(4,), variant_shape=(2, 5)))  # fmt: skip
    monkeypatch.setitem(cases._BENCH_SHAPES, "paper", small)
    lin = select_cases(0, "paper", ["linear"])
    assert [c.name for c in lin] == ["linear[relu]", "linear[none]"]
    assert [(c.args[0].shape, c.args[1].shape) for c in lin] == [((9, 5), (3, 5)), ((4, 6), (2, 6))]
    rec = select_cases(0, "paper", ["lstm", "mgu"])
    # the main cells at every (B, H), the other variants once at variant_shape
    assert [(c.name, c.args[0].shape) for c in rec] == [
        ("lstm[forget]", (3, 1, 4)), ("mgu", (3, 1, 4)), ("lstm[forget]", (3, 2, 4)), ("mgu", (3, 2, 4)),
        ("lstm[no_forget]", (3, 2, 5)), ("lstm[peephole]", (3, 2, 5)),
    ]  # fmt: skip
    # the same family from the same seed gives the same inputs, whatever else was selected
    again = select_cases(0, "paper", ["conv3d", "linear[none]"])
    np.testing.assert_array_equal(again[0].args[1], lin[1].args[1])
    # every case name is claimed by a family, so --ops builds the family that makes it
    for case in all_cases(0, "tiny"):
        assert any(case.name.startswith(x) for p, _, _ in _BENCH_FAMILIES for x in p), case.name
    with pytest.raises(TypeError, match="ops must be a sequence"):
        select_cases(0, "tiny", "relu")
    with pytest.raises(ValueError, match="size must be one of"):
        select_cases(0, "huge")


def test_dtype_table_matches_the_kernels():
    from dlgpu.bench.runner import DTYPES
    from dlgpu.kernels.cuda._common import FLOAT_DTYPES as CUDA_DTYPES
    from dlgpu.kernels.triton._common import FLOAT_DTYPES as TRITON_DTYPES

    assert set(DTYPES["cupy"]) == set(CUDA_DTYPES)
    assert set(DTYPES["triton"]) == {str(d).removeprefix("torch.") for d in TRITON_DTYPES}


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no_such_dir"
    for flag in ("--csv", "--json", "--plot"):
        assert cli.main(["bench", "--sizes", "tiny", "--ops", "relu", flag, str(missing / "out")]) == 2
        assert f"{flag}: directory {missing} does not exist" in capsys.readouterr().err
    assert cli.main(["bench", "--sizes", "tiny", "--ops", "relu", "--csv", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.main(["kernels", "--no-triton", "--files", "pooling", "--json", str(missing / "k.json")]) == 2
    assert cli.main(["profile", "mlp", "--steps", "1", "--trace", str(missing / "t.json")]) == 2
    assert "--trace: directory" in capsys.readouterr().err


def test_direction_both_repeated_backends_and_peaks_only_where_timed(capsys):
    assert cli.main(["bench", "--sizes", "tiny", "--ops", "relu", "--backends", "numpy", "--direction", "both",
                     "--rep-time", "0.01", "--no-progress"]) == 0  # fmt: skip
    assert "2 checks passed" in capsys.readouterr().out
    res = _bench(ops=["relu"], backends=["numpy", "numpy"])
    assert sorted((r.direction, r.backend) for r in res.rows) == [("bwd", "numpy"), ("fwd", "numpy")]
    # numba has no float16 kernels: nothing is timed in float16 on the CPU, so no peak is measured for it
    res = _bench(ops=["relu"], backends=["numba"], dtypes=["float16"])
    assert res.rows == [] and res.peaks == {}
