"""CUDA C losses (losses.cu through ``dlgpu.ops.call(..., backend="cupy")``) at the edges the quick
cases of test_cupy_ops.py do not reach: the pseudo-Huber loss at extreme |y - t| and delta,
binary cross-entropy with infinite logits, and grad_output kinds in loss_backward. Each test runs
on both targets (conftest): a CUDA device (``gpu``) and the CPU through g++ (``host``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.reference import losses as R
from dlgpu.testing import assert_close, assert_ulps, to_numpy
from dlgpu.testing.extremes import HUBER_D, HUBER_DELTA, HUBER_KNOWN


def _call(op, *args, **kwargs):
    return ops.call(op, *args, backend="cupy", **kwargs)


def test_pseudo_huber_extreme_values(target):
    # the float64 reference (checked against exact decimal arithmetic in tests/reference) on the same
    # float32 values and delta, rounded to float32: (d/delta)^2 over- or underflows in most pairs
    d = np.array(HUBER_D, dtype=np.float32)
    y, t = target.tensor(d), target.tensor(np.zeros_like(d))
    for delta in HUBER_DELTA:
        delta32 = float(np.float32(delta))  # what the kernel computes with
        zeros = np.zeros(d.size)
        want_loss, want_grad = R.pseudo_huber_loss_forward(d.astype(np.float64), zeros, "none", delta=delta32)
        loss, grad = _call("pseudo_huber_loss_forward", y, t, "none", delta=delta32)
        assert_ulps(loss, want_loss, np.float32, f"loss delta={delta}", ulps=16, flush_subnormals=True)
        assert_ulps(grad, want_grad, np.float32, f"grad delta={delta}", ulps=16, flush_subnormals=True)
        assert grad[14].item() == delta32 and grad[15].item() == -delta32  # d = +-inf: the slope +-delta
    # the cases the textbook form got wrong in float32 (NaN loss, 0 gradient), also through bfloat16 storage
    for dtype in ("float32", "bfloat16"):
        for dv, delta, want_loss, want_grad in HUBER_KNOWN:
            y = target.tensor(np.full(3, dv), dtype)
            loss, grad = _call("pseudo_huber_loss_forward", y, torch.zeros_like(y), "none", delta=delta)
            want_loss = R.pseudo_huber_loss_forward(to_numpy(y), np.zeros(3), "none", delta=delta)[0]  # the stored y
            rtol = 1e-6 if dtype == "float32" else 1e-2
            np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=rtol)
            np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=rtol)
            total = _call("pseudo_huber_loss_forward", y, torch.zeros_like(y), "sum", delta=delta)[0]
            np.testing.assert_allclose(total.item(), want_loss.sum(), rtol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bce_with_logits_infinite_logits(target, dtype):
    x = np.array([np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf, 3.0, -1e4, np.nan])
    t = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])
    xt, tt = target.tensor(x, dtype), target.tensor(t, dtype)
    loss, grad = _call("binary_cross_entropy_with_logits_forward", xt, tt, "none")
    # (1 - t) x at +inf, -t x at -inf: inf unless the weight is 0, never inf - inf = NaN
    np.testing.assert_array_equal(to_numpy(loss)[:6], [np.inf, 0.0, np.inf, 0.0, np.inf, np.inf])
    np.testing.assert_array_equal(to_numpy(grad)[:6], [1.0, 0.0, 0.5, 0.0, -1.0, -0.5])
    assert np.isnan(to_numpy(loss)[8]) and np.isnan(to_numpy(grad)[8])
    want_loss, want_grad = R.binary_cross_entropy_with_logits_forward(to_numpy(xt), to_numpy(tt), "none")
    assert_close(loss[6:8], want_loss[6:8], op="losses", dtype=dtype)
    assert_close(grad[6:8], want_grad[6:8], op="losses", dtype=dtype)
    for reduction in ("sum", "mean"):
        assert _call("binary_cross_entropy_with_logits_forward", xt[:8], tt[:8], reduction)[0].item() == np.inf
        idx = [1, 3, 6]
        got = _call("binary_cross_entropy_with_logits_forward", xt[idx], tt[idx], reduction)[0]
        want = R.binary_cross_entropy_with_logits_forward(to_numpy(xt)[idx], to_numpy(tt)[idx], reduction)[0]
        assert torch.isfinite(got)
        assert_close(got, want, op="losses", dtype=dtype)


def test_loss_backward_grad_output_kinds(target):
    grad = target.tensor(np.linspace(-1.0, 2.0, 12).reshape(4, 3))
    for reduction in ("mean", "sum"):
        for bad, what in ((None, "got NoneType"), ("1.0", "got str"), (True, "got bool")):
            with pytest.raises(TypeError, match=f"grad_output must be a number or a 0-d array, {what}"):
                _call("loss_backward", bad, grad, reduction)
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got object"):
            _call("loss_backward", np.array(None), grad, reduction)
        # (not a 0-d NumPy array: on the host target NumPy arrays stand in for cupy arrays)
        for ok in (2, 2.0, np.float32(2.0), np.int64(2), torch.tensor(2.0, device=target.device)):
            assert torch.equal(_call("loss_backward", ok, grad, reduction), grad * 2)
    with pytest.raises(TypeError, match="grad_output must be an array or tensor, got NoneType"):
        _call("loss_backward", None, grad, "none")
    with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got torch.bool"):
        _call("loss_backward", torch.ones(4, dtype=torch.bool, device=target.device), grad, "none")
    assert torch.equal(_call("loss_backward", torch.full((4,), 2, device=target.device), grad, "none"), grad * 2)
