"""`dlgpu check`: every op on every backend here against the float64 reference, one call each; the CUDA C
kernels through the host runtime without a GPU (as `dlgpu bench`); a wrong kernel fails the run."""

from __future__ import annotations

import pytest

import dlgpu
from dlgpu import cli, ops
from dlgpu.bench.runner import cupy_on_host


def test_check_passes_and_prints_one_row_per_op_and_backend(capsys):
    assert cli.main(["check", "--ops", "relu", "softmax", "--backends", "numpy", "numba", "--size", "tiny"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 4 and "4 passed, 0 failed" in out


def test_bad_arguments_are_errors_not_vacuous_passes(capsys):
    assert cli.main(["check", "--ops", "nosuch"]) == 2
    assert "--ops: no case name starts with any of ['nosuch']" in capsys.readouterr().err
    assert cli.main(["check", "--backends", "tpu"]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().err


def test_a_wrong_kernel_fails_the_check(monkeypatch, capsys):
    mod = ops.backend_module("numba", "activations")
    good = mod.relu_forward
    monkeypatch.setattr(mod, "relu_forward", lambda x: good(x) * 1.001)
    assert cli.main(["check", "--ops", "relu", "--backends", "numba", "--size", "tiny"]) == 1
    captured = capsys.readouterr()
    assert "FAIL relu" in captured.err and "0 passed, 1 failed" in captured.out


def test_cupy_kernels_are_checked_through_the_host_runtime_without_a_gpu(capsys):
    if not cupy_on_host():
        pytest.skip("cupy runs on a device here" if dlgpu.backends()["cupy"].available else "no host runtime here")
    assert cli.main(["check", "--ops", "sigmoid", "--backends", "cupy", "--size", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "cupy (host)" in out and "1 passed, 0 failed" in out
