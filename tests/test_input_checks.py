"""Argument checks every backend shares (``dlgpu.reference._validate``), called through ``dlgpu.ops``
on each CPU-runnable backend (Triton under its interpreter) with torch CPU tensors: the same bad
input gets the same error everywhere, naming the argument; edge shapes keep their shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dlgpu
from dlgpu import ops


def assert_close(got, want, rtol: float) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=rtol, atol=0)


BACKENDS = [b for b in ("numpy", "numba", "triton") if dlgpu.backends()[b].available]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _t(gen: np.random.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(gen.standard_normal(shape)).to(dtype)


# ------------------------------------------------------------------ fused leaky_relu


def test_fused_leaky_relu_rejects_a_negative_slope(backend, gen):
    """The fused backward reads the derivative off the output's sign: with a negative slope, x < 0
    gives a positive output and the slope-1 branch would be taken (a wrong gradient, silently)."""
    x, w = _t(gen, 3, 5), _t(gen, 4, 5)
    xc, wc = _t(gen, 1, 2, 5, 5), _t(gen, 3, 2, 3, 3)
    bad = dict(activation="leaky_relu", negative_slope=-0.5, backend=backend)
    with pytest.raises(ValueError, match="negative_slope of a fused leaky_relu must be a finite number >= 0"):
        ops.linear_forward(x, w, **bad)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.linear_backward(_t(gen, 3, 4), x, w, out=_t(gen, 3, 4), **bad)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.conv2d_forward(xc, wc, **bad)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.conv2d_backward(_t(gen, 1, 3, 3, 3), xc, wc, out=_t(gen, 1, 3, 3, 3), **bad)
    with pytest.raises(TypeError, match="negative_slope must be a number, got str"):
        ops.linear_forward(x, w, activation="leaky_relu", negative_slope="a", backend=backend)
    # a slope the fused backward handles: >= 0, and the gradient matches the unfused chain
    y = ops.linear_forward(x, w, activation="leaky_relu", negative_slope=0.0, backend=backend)
    assert torch.equal(y, ops.relu_forward(ops.linear_forward(x, w, backend=backend), backend=backend))


def test_standalone_leaky_relu_takes_any_slope_but_checks_its_type(backend, gen):
    x, dy = _t(gen, 4, 7), _t(gen, 4, 7)
    want = torch.where(x > 0, x, -0.5 * x)
    assert_close(ops.leaky_relu_forward(x, -0.5, backend=backend), want, rtol=1e-6)
    assert_close(ops.leaky_relu_backward(dy, x, -0.5, backend=backend), torch.where(x > 0, dy, -0.5 * dy), rtol=1e-6)
    with pytest.raises(TypeError, match="negative_slope must be a number, got str"):
        ops.leaky_relu_forward(x, "a", backend=backend)
    with pytest.raises(TypeError, match="negative_slope must be a number"):
        ops.leaky_relu_backward(dy, x, None, backend=backend)


# ------------------------------------------------------------------ softmax axis


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_axis_is_checked(backend, gen, op):
    x = _t(gen, 2, 3)
    fwd, bwd = getattr(ops, f"{op}_forward"), getattr(ops, f"{op}_backward")
    for bad in (None, True, 1.0):
        with pytest.raises(TypeError, match="axis must be an int"):
            fwd(x, axis=bad, backend=backend)
        with pytest.raises(TypeError, match="axis must be an int"):
            bwd(x, x, axis=bad, backend=backend)
    for bad in (2, -3):
        with pytest.raises(ValueError, match=r"axis must be in \[-2, 1\] for a 2-D array"):
            fwd(x, axis=bad, backend=backend)
    with pytest.raises(ValueError, match=r"x must have at least one element along axis 1, got shape \(2, 0\)"):
        fwd(_t(gen, 2, 0), axis=-1, backend=backend)
    assert_close(fwd(x, axis=np.int64(0), backend=backend), fwd(x, axis=-2, backend="numpy"), rtol=1e-6)


# ------------------------------------------------------------------ shapes and dtypes


def test_zero_d_inputs_keep_their_shape(backend, gen):
    x, dy = torch.tensor(-1.5), torch.tensor(2.0)
    assert ops.relu_forward(x, backend=backend).shape == ()
    assert ops.sigmoid_backward(dy, torch.tensor(0.25), backend=backend).shape == ()
    assert ops.leaky_relu_backward(dy, x, 0.1, backend=backend).item() == pytest.approx(0.2)
    if backend != "triton":  # numpy arrays in, numpy arrays out (the Triton kernels take tensors)
        assert ops.tanh_forward(np.array(0.5, np.float32), backend=backend).shape == ()


def test_mixed_and_integer_dtypes_are_type_errors(backend, gen):
    x32, w64 = _t(gen, 1, 2, 5, 5), _t(gen, 3, 2, 3, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="weight"):
        ops.conv2d_forward(x32, w64, backend=backend)
    with pytest.raises(TypeError, match="weight"):
        ops.linear_forward(_t(gen, 3, 5), _t(gen, 4, 5, dtype=torch.float64), backend=backend)
    with pytest.raises(TypeError, match="bias"):
        ops.linear_forward(_t(gen, 3, 5), _t(gen, 4, 5), torch.arange(4), backend=backend)
    with pytest.raises(TypeError, match="dy"):
        ops.relu_backward(torch.ones(2, dtype=torch.int64), torch.ones(2), backend=backend)
    with pytest.raises(TypeError, match="weight"):
        ops.locally_connected2d_forward(_t(gen, 1, 2, 4, 4), _t(gen, 2, 2, 3, 2, 3, 3, dtype=torch.float64),
                                        backend=backend)  # fmt: skip


def test_pooling_checks_name_x_and_count_include_pad(backend, gen):
    with pytest.raises(ValueError, match=r"x must have every size >= 1 \(N, C, H, W\), got \(1, 1, 0, 3\)"):
        ops.max_pool2d_forward(_t(gen, 1, 1, 0, 3), 2, backend=backend)
    with pytest.raises(TypeError, match="count_include_pad must be True or False, got 'no'"):
        ops.avg_pool2d_forward(_t(gen, 1, 1, 4, 4), 2, padding=1, count_include_pad="no", backend=backend)
    with pytest.raises(TypeError, match="count_include_pad"):
        ops.avg_pool2d_backward(_t(gen, 1, 1, 3, 3), (1, 1, 4, 4), 2, padding=1, count_include_pad=None,
                                backend=backend)  # fmt: skip


def test_recurrent_backward_needs_the_saved_tensors(backend, gen):
    T, B, I, H = 3, 2, 4, 5
    x, w_ih, w_hh = _t(gen, T, B, I), _t(gen, H, I), _t(gen, H, H)
    with pytest.raises(TypeError, match=r"output \(saved by the forward\) is required, got None"):
        ops.rnn_backward(_t(gen, T, B, H), None, x, None, w_ih, w_hh, None, backend=backend)
    x4, w4_ih, w4_hh = x, _t(gen, 4 * H, I), _t(gen, 4 * H, H)
    out, _, _, ws = ops.lstm_forward(x4, None, None, w4_ih, w4_hh, backend=backend)
    with pytest.raises(TypeError, match=r"workspace \(saved by the forward\) is required"):
        ops.lstm_backward(out, None, None, x4, None, None, w4_ih, w4_hh, out, None, backend=backend)
    with pytest.raises(ValueError, match=r"weight_hh must have hidden_size >= 1 columns, got shape \(0, 0\)"):
        ops.rnn_forward(x, None, _t(gen, 0, I), _t(gen, 0, 0), backend=backend)


def test_bfloat16_on_a_cpu_backend_names_the_argument(gen):
    with pytest.raises(TypeError, match="weight is a torch.bfloat16 tensor"):
        ops.linear_forward(_t(gen, 2, 3), _t(gen, 4, 3, dtype=torch.bfloat16), backend="numba")


def test_numba_linear_backward_takes_a_read_only_dy_and_never_writes_it(gen):
    dy, x, w = gen.standard_normal((4, 3)), gen.standard_normal((4, 5)), gen.standard_normal((3, 5))
    dy.flags.writeable = False
    got = ops.linear_backward(dy, x, w, backend="numba")
    want = ops.linear_backward(dy, x, w, backend="numpy")
    for g, r in zip(got, want):
        assert_close(g, r, rtol=1e-12)


def test_reference_linear_backward_with_no_input_features():
    dx, dw, db = ops.linear_backward(np.ones((2, 4)), np.ones((2, 0)), np.ones((4, 0)), backend="numpy")
    assert dx.shape == (2, 0) and dw.shape == (4, 0) and np.array_equal(db, [2.0] * 4)
