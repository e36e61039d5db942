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
from dlgpu.testing import assert_close, assert_ulps, cases, to_numpy
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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # (float16: these sums pass 65504)
def test_sum_reduction_of_every_loss(target, dtype):
    """reduction="sum" (the quick cases have "mean" and "none" only): neither the loss nor the gradient
    is divided by n; K = 1100 classes runs the class losses one block per row, n K = 40700 elements the
    elementwise ones in several blocks."""
    bad = []
    for case in cases._loss_cases(np.random.default_rng(3), 37, 1100):
        if not case.name.endswith("[mean]"):
            continue

        def mk(outs, gen):
            return (np.asarray(1.7), outs[1], "sum"), {}

        args = (*case.args[:2], "sum")
        summed = cases.Case(case.name.replace("[mean]", "[sum]"), case.tol_op, case.forward, args, case.kwargs,
                            case.backward, mk)  # fmt: skip
        res = cases.run_case(summed, "cupy", dtype, seed=3, convert=cases.torch_inputs(dtype, target.device))
        if not res.ok or not res.reports:
            bad.append(f"{summed.name}: {res.error or [str(r) for r in res.reports if not r.ok]}")
    assert not bad, "\n".join(bad)


def test_gradients_at_the_kinks_and_bce_next_to_0_and_1(target):
    """The subgradient 0 where the hinge's 1 - y t or the L1 loss's y - t is exactly 0 (the quick cases
    keep away from both), and BCE's clamp max(y (1 - y), 1e-12) for y a float32 ulp from 0 and 1."""
    y, t = np.array([1.0, -1.0, 0.5, -2.0, 0.25]), np.array([1.0, -1.0, 1.0, 1.0, -1.0])  # y t = 1 in the first two
    for op in ("hinge_loss_forward", "squared_hinge_loss_forward"):
        for reduction in ("none", "sum"):
            loss, grad = _call(op, target.tensor(y), target.tensor(t), reduction)
            want_loss, want_grad = getattr(R, op)(y.astype(np.float32), t.astype(np.float32), reduction)
            np.testing.assert_array_equal(to_numpy(grad), want_grad)
            np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-6)
    t = np.array([0.5, -2.0, 3.0, 1.0])
    loss, grad = _call("l1_loss_forward", target.tensor(t), target.tensor(t), "none")  # y == t: sign(0) = 0
    np.testing.assert_array_equal(to_numpy(grad), np.zeros(4))
    np.testing.assert_array_equal(to_numpy(loss), np.zeros(4))
    y = np.array([2.0**-24, 1e-7, 1 - 2.0**-24, 1 - 2.0**-23, 0.3])  # y (1 - y) > 1e-12 in all of them
    t = np.array([0.5, 1.0, 0.0, 0.25, 1.0])
    loss, grad = _call("binary_cross_entropy_forward", target.tensor(y), target.tensor(t), "none")
    want_loss, want_grad = R.binary_cross_entropy_forward(y.astype(np.float32).astype(np.float64), t, "none")
    assert_close(grad, want_grad, op="losses", dtype="float32")
    assert_close(loss, want_loss, op="losses", dtype="float32")


# float16 ties (1 + odd multiples of 2^-11) nudged by 2^-40, below float32's resolution: rounded once
# (numpy's astype) they go to the nudge's side; through float32 first, to the even neighbour.
_HALF_TIES = 1 + np.array([1, 3, 5, 2001]) * 2.0**-11 + np.array([1, -1, 1, -1]) * 2.0**-40


def test_float64_targets_are_rounded_once_to_float16_inputs(target):
    y = torch.zeros(4, dtype=torch.float16, device=target.device)
    t = torch.from_numpy(_HALF_TIES).to(target.device)  # float64: the loader passes it as it is
    loss, grad = _call("mse_loss_forward", y, t, "none")
    want_loss, want_grad = R.mse_loss_forward(to_numpy(y).astype(np.float16), _HALF_TIES, "none")
    np.testing.assert_array_equal(to_numpy(grad), want_grad)  # 2 (y - t): exact in float16
    np.testing.assert_array_equal(to_numpy(loss), want_loss)


def test_loss_backward_rounds_grad_output_once_to_the_dtype(target, gen):
    """dinput = grad_input * grad_output.astype(dtype) as the reference: a product of two float16 values
    rounded once, so bit for bit. grad_output a Python float (rounded on the host), a 0-d or per-element
    or per-row float64 tensor (rounded in the kernel), or a float32 one."""
    gin64 = gen.standard_normal((4, 6)).astype(np.float16)
    gin = torch.from_numpy(gin64).to(target.device)
    dev = target.device
    calls = [("mean", 1.7), ("sum", float(_HALF_TIES[0])), ("mean", torch.tensor(_HALF_TIES[1], device=dev)),
             ("none", torch.from_numpy(np.resize(_HALF_TIES, (4, 6))).to(dev)),
             ("none", torch.from_numpy(_HALF_TIES).to(dev)),  # one factor per row
             ("none", torch.from_numpy(gen.standard_normal((4, 6))).float().to(dev))]  # fmt: skip
    for reduction, g in calls:
        got = _call("loss_backward", g, gin, reduction)
        g_np = to_numpy(g) if isinstance(g, torch.Tensor) else g
        if isinstance(g, torch.Tensor) and g.dtype == torch.float32:
            g_np = g_np.astype(np.float32)
        np.testing.assert_array_equal(to_numpy(got), R.loss_backward(g_np, gin64, reduction), err_msg=reduction)
