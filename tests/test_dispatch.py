"""The backend dispatch: choosing, errors, conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dlgpu
from dlgpu import ops
from dlgpu.ops import _dispatch as D
from dlgpu.testing import assert_close, randn


def test_backends_report_availability_and_reasons():
    st = dlgpu.backends()
    assert set(st) == {"numpy", "numba", "triton", "cupy"}
    assert st["numpy"].available
    for s in st.values():
        assert s.available or s.reason, f"{s.name} unavailable without a reason"
    if not torch.cuda.is_available() and not D.triton_interpret():
        assert not st["triton"].available and "CUDA" in st["triton"].reason


def test_auto_picks_numba_on_cpu_when_it_has_the_kernel(gen):
    x = randn((3, 4), gen)
    want = "numba" if ops.implements("numba", "relu_forward") else "numpy"
    assert ops.resolve("relu_forward", (x,)) == want


def test_set_backend_use_backend_and_env(monkeypatch, gen):
    x = randn((3, 4), gen)
    assert dlgpu.get_backend() == "auto"
    with dlgpu.use_backend("numpy"):
        assert dlgpu.get_backend() == "numpy"
        assert ops.resolve("relu_forward", (x,)) == "numpy"
        with dlgpu.use_backend("auto"):
            assert dlgpu.get_backend() == "auto"
    dlgpu.set_backend("numpy")
    try:
        assert dlgpu.get_backend() == "numpy"
    finally:
        dlgpu.set_backend(None)
    monkeypatch.setenv("DLGPU_BACKEND", "numpy")
    assert dlgpu.get_backend() == "numpy"
    monkeypatch.setenv("DLGPU_BACKEND", "cuda-magic")
    with pytest.raises(dlgpu.BackendError, match="DLGPU_BACKEND must be one of"):
        dlgpu.get_backend()


def test_unknown_backend_and_op_are_clear_errors(gen):
    x = randn((3,), gen)
    with pytest.raises(ValueError, match="backend must be one of .*'numba'.*got 'fast'"):
        dlgpu.set_backend("fast")
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.relu_forward(x, backend="fast")
    with pytest.raises(ValueError, match="op must be one of"):
        ops.resolve("gelu_forward", (x,))


def test_unavailable_backend_is_an_error_not_a_fallback(gen):
    x = randn((3,), gen)
    st = dlgpu.backends()
    for name in ("triton", "cupy"):
        if not st[name].available:
            with pytest.raises(dlgpu.BackendError, match=f"backend '{name}' is unavailable"):
                ops.relu_forward(x, backend=name)


def test_torch_cpu_tensors_round_trip_through_cpu_backends(gen):
    x = torch.tensor(randn((5, 7), gen))
    y = ops.relu_forward(x, backend="numpy")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    assert_close(y, np.maximum(x.numpy(), 0))
    y32 = ops.sigmoid_forward(x.float(), backend="numpy")
    assert y32.dtype == torch.float32


def test_numpy_in_numpy_out(gen):
    x = randn((5, 7), gen)
    assert isinstance(ops.tanh_forward(x, backend="numpy"), np.ndarray)


def test_bfloat16_on_cpu_backend_is_a_type_error(gen):
    x = torch.tensor(randn((4,), gen)).bfloat16()
    with pytest.raises(TypeError, match="bfloat16"):
        ops.relu_forward(x, backend="numpy")


def test_op_table_covers_every_op_and_reference_has_all():
    table = ops.op_table()
    assert set(table) == set(ops.OPS)
    missing = [op for op, row in table.items() if not row["numpy"]]
    assert not missing, f"reference lacks {missing}"


def test_wrappers_carry_reference_docs():
    assert "max(0, x)" in ops.relu_forward.__doc__
    assert ops.conv2d_forward.__name__ == "conv2d_forward"


def test_readme_op_table_is_current():
    import pathlib

    from dlgpu.ops.__main__ import readme_with_table

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    assert readme_with_table(text) == text, "README's op table is stale: run python -m dlgpu.ops --update-readme"
