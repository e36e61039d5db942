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


def test_call_beats_block_beats_set_backend_beats_env(monkeypatch, gen):
    """The documented order, first match wins: backend=, the innermost use_backend, set_backend, DLGPU_BACKEND."""
    x = randn((3, 4), gen)
    monkeypatch.setenv("DLGPU_BACKEND", "numba")
    assert dlgpu.get_backend() == "numba"
    dlgpu.set_backend("numpy")
    try:
        assert dlgpu.get_backend() == "numpy"  # set_backend over the environment
        with dlgpu.use_backend("numba"):
            assert dlgpu.get_backend() == "numba"  # a block over set_backend
            assert ops.resolve("relu_forward", (x,)) == "numba"
            assert ops.resolve("relu_forward", (x,), backend="numpy") == "numpy"  # the call over all
    finally:
        dlgpu.set_backend(None)
    assert dlgpu.get_backend() == "numba"


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


def test_tensors_given_by_keyword_are_converted_and_come_back_as_tensors(gen):
    x = torch.tensor(randn((5, 7), gen))
    y = ops.relu_forward(x=x, backend="numpy")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    assert_close(y, np.maximum(x.numpy(), 0))
    dx = ops.relu_backward(dy=torch.ones_like(x), x=x)  # auto: every array is a keyword argument
    assert isinstance(dx, torch.Tensor)
    assert_close(dx, (x.numpy() > 0).astype(np.float64))
    with pytest.raises(TypeError, match="the CPU backends take float16/32/64 tensors.*: x is a torch.bfloat16 tensor"):
        ops.relu_backward(torch.ones(4), x=torch.ones(4, dtype=torch.bfloat16), backend="numpy")


def test_a_named_backend_that_cannot_take_the_arrays_is_an_error(gen):
    if not dlgpu.backends()["triton"].available:
        pytest.skip(str(dlgpu.backends()["triton"]))
    x = randn((3, 4), gen)  # a NumPy array: triton takes torch tensors only
    with pytest.raises(dlgpu.BackendError, match=r"backend 'triton' cannot run on argument 0 \(numpy\)"):
        ops.relu_forward(x, backend="triton")
    with pytest.raises(dlgpu.BackendError, match=r"cannot run on dy \(numpy\)"):
        ops.relu_backward(dy=x, x=torch.tensor(x), backend="triton")


def test_numpy_in_numpy_out(gen):
    x = randn((5, 7), gen)
    assert isinstance(ops.tanh_forward(x, backend="numpy"), np.ndarray)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bfloat16_on_cpu_backends_is_float32_compute_stored_back(gen, backend):
    # every float input bf16: upcast, the float32 kernel, one rounding back (exactly that, bit for bit)
    x = torch.tensor(randn((3, 7), gen)).bfloat16()
    w = torch.tensor(randn((5, 7), gen)).bfloat16()
    y = ops.linear_forward(x, w, None, "tanh", backend=backend)
    assert y.dtype == torch.bfloat16
    want = ops.linear_forward(x.float(), w.float(), None, "tanh", backend=backend).bfloat16()
    assert torch.equal(y, want)


def test_float16_on_numba_through_the_dispatch_numpy_in_numpy_out(gen):
    # the numba kernels compute in float32/64; the dispatch keeps float16 in storage around them
    x = randn((2, 3, 7, 5), gen, dtype=np.float16)
    y, idx = ops.max_pool2d_forward(x, 3, 2, 1, backend="numba")
    assert y.dtype == np.float16 and idx.dtype == np.int64
    want, want_idx = ops.max_pool2d_forward(x.astype(np.float32), 3, 2, 1, backend="numba")
    np.testing.assert_array_equal(y, want.astype(np.float16))
    np.testing.assert_array_equal(idx, want_idx)
    with pytest.raises(TypeError, match="float32 or float64"):  # the kernel itself still takes only those
        ops.backend_module("numba", "pooling").max_pool2d_forward(x, 3, 2, 1)


def test_half_storage_leaves_integer_inputs_and_rounds_scalar_outputs(gen):
    logits = torch.tensor(randn((6, 5), gen)).bfloat16()
    target = torch.tensor(gen.integers(0, 5, size=6))
    loss, grad = ops.cross_entropy_forward(logits, target, "mean", backend="numba")
    assert loss.dtype == grad.dtype == torch.bfloat16 and loss.ndim == 0 and target.dtype == torch.int64
    want = ops.cross_entropy_forward(logits.float(), target, "mean", backend="numba")
    assert torch.equal(loss, want[0].bfloat16()) and torch.equal(grad, want[1].bfloat16())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_mixed_bfloat16_and_float32_is_a_type_error_naming_the_argument(gen, backend):
    x = torch.tensor(randn((3, 7), gen)).bfloat16()
    w = torch.tensor(randn((5, 7), gen), dtype=torch.float32)
    with pytest.raises(TypeError, match="x is a torch.bfloat16 tensor.*one dtype"):
        ops.linear_forward(x, w, backend=backend)


def test_mixed_float16_and_float32_is_still_refused_on_numba(gen):
    x = randn((3, 7), gen, dtype=np.float16)
    w = randn((5, 7), gen, dtype=np.float32)
    with pytest.raises(TypeError):
        ops.linear_forward(x, w, backend="numba")


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
