"""Every op on every CPU backend against the float64 reference, through the shared cases and
harness (the same path `dlgpu check` and the bench tool take)."""

from __future__ import annotations

import numpy as np
import pytest

from dlgpu import ops
from dlgpu.kernels.numba._common import parallel_threshold
from dlgpu.ops._dispatch import triton_interpret
from dlgpu.testing.cases import all_cases, run_case, torch_inputs

CASES = {c.name: c for c in all_cases(seed=1234, size="tiny")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_matches_reference(name, dtype):
    case = CASES[name]
    res = run_case(case, "numba", np.dtype(dtype), seed=1234)
    assert not res.error, res.error
    assert res.reports, "nothing was compared"
    assert res.ok, "\n".join(str(r) for r in res.reports if not r.ok)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_parallel_kernels_match_reference(name):
    # the tiny cases run the serial twins of the size-switched kernels; these the parallel code
    with parallel_threshold(0):
        res = run_case(CASES[name], "numba", np.dtype("float32"), seed=1234)
    assert not res.error, res.error
    assert res.reports, "nothing was compared"
    assert res.ok, "\n".join(str(r) for r in res.reports if not r.ok)


@pytest.mark.parametrize(("backend", "dtype"), [("numba", "float16"), ("numba", "bfloat16"), ("numpy", "bfloat16")])
def test_cpu_backends_take_half_storage_through_the_dispatch(backend, dtype):
    # float32 kernels between an upcast and one rounding back (dlgpu.ops.call); judged on every case at
    # the dtype's tolerance, against the reference on the same rounded inputs
    bad = []
    for name, case in sorted(CASES.items()):
        res = run_case(case, backend, dtype, seed=1234, convert=torch_inputs(dtype))
        if not res.ok:
            bad.append(f"{name}: {res.error or res.worst}")
    assert not bad, "\n".join(bad)


TRITON_CASES = sorted(n for n, c in CASES.items() if ops.implements("triton", c.forward))


@pytest.mark.skipif(not triton_interpret(), reason="the CUDA run of these checks is the gpu-marked test below")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name", TRITON_CASES)
def test_triton_interpreter_matches_reference(name, dtype):
    res = run_case(CASES[name], "triton", dtype, seed=1234, convert=torch_inputs(dtype))
    assert not res.error, res.error
    assert res.reports and res.ok, "\n".join(str(r) for r in res.reports if not r.ok)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_triton_cuda_matches_reference_on_every_case(dtype):
    bad = []
    for case in all_cases(seed=7, size="quick"):
        if ops.implements("triton", case.forward):
            res = run_case(case, "triton", dtype, seed=7, convert=torch_inputs(dtype, "cuda"))
            if not res.ok:
                bad.append(f"{case.name}: {res.error or res.worst}")
    assert not bad, "\n".join(bad)


def test_every_op_has_a_case():
    covered = {c.forward for c in CASES.values()} | {c.backward for c in CASES.values() if c.backward}
    assert covered == set(ops.OPS), f"ops without a case: {set(ops.OPS) - covered}"


def test_a_wrong_kernel_is_reported(monkeypatch):
    mod = ops.backend_module("numba", "activations")
    good = mod.tanh_forward
    monkeypatch.setattr(mod, "tanh_forward", lambda x: good(x) * x.dtype.type(1.001))
    res = run_case(CASES["tanh"], "numba", np.float32)
    assert not res.ok and not res.error
    assert "FAIL" in str(res.worst)


def test_a_crashing_kernel_is_reported_not_raised(monkeypatch):
    mod = ops.backend_module("numba", "activations")

    def boom(x):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(mod, "relu_forward", boom)
    res = run_case(CASES["relu"], "numba", np.float32)
    assert not res.ok and "kernel exploded" in res.error


def _patched(monkeypatch, family, op, fn):
    mod = ops.backend_module("numba", family)
    good = getattr(mod, op)
    monkeypatch.setattr(mod, op, lambda *a, **k: fn(good(*a, **k)))


@pytest.mark.parametrize(
    "case,family,op,wrong,where",
    [
        # a wrong second output of the forward: max-pool's indices, a loss's gradient
        ("max_pool2d[k3,s2,p1]", "pooling", "max_pool2d_forward", lambda o: (o[0], o[1] * 0),
         "max_pool2d_forward:out1"),
        ("mse_loss[mean]", "losses", "mse_loss_forward", lambda o: (o[0], o[1] * 1.01), "mse_loss_forward:out1"),
        # one gradient of several wrong, or missing, or None
        ("linear[relu]", "linear", "linear_backward", lambda o: (o[0], o[1], o[2] * 1.01), "linear_backward:out2"),
        ("linear[relu]", "linear", "linear_backward", lambda o: o[:2], "backward: returned 2 outputs"),
        ("linear[relu]", "linear", "linear_backward", lambda o: (o[0], o[1], None), "linear_backward:out2"),
        ("max_pool2d[k2,s2,p0]", "pooling", "max_pool2d_forward", lambda o: o[:1], "forward: returned 1 outputs"),
    ],
    ids=["indices", "loss-gradient", "db", "db-missing", "db-none", "indices-missing"],
)  # fmt: skip
def test_every_output_is_compared(monkeypatch, case, family, op, wrong, where):
    _patched(monkeypatch, family, op, wrong)
    res = run_case(CASES[case], "numba", np.float64)
    assert not res.ok
    bad = [r.name for r in res.reports if not r.ok]
    assert where in bad or where in res.error, (bad, res.error)
