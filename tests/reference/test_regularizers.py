"""Reference regularizers and gradient clipping: finite differences, torch, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlgpu.reference import regularizers as R
from dlgpu.testing import Tolerance, assert_close, assert_ulps, check_gradients, compare, max_norm_exact, randn
from dlgpu.testing.extremes import check_clip_grad_norm, clip_norm_cases, norm_magnitudes, norm_rows

PENALTIES = {
    "l1": (R.l1_penalty_forward, R.l1_penalty_backward, lambda w, lam: lam * w.abs().sum()),
    "l2": (R.l2_penalty_forward, R.l2_penalty_backward, lambda w, lam: lam / 2 * (w * w).sum()),
}


def _rows_with_norms(shape, norms, gen):
    """A weight of ``shape`` whose slice o along axis 0 has Euclidean norm norms[o]."""
    w = randn(shape, gen)
    flat = w.reshape(shape[0], -1)
    flat *= (np.asarray(norms) / np.linalg.norm(flat, axis=1))[:, None]
    return w


# ------------------------------------------------------------------- penalties


@pytest.mark.parametrize("name", sorted(PENALTIES))
@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 3)])
def test_penalty_finite_differences(name, shape, gen):
    fwd, bwd, _ = PENALTIES[name]
    w = randn(shape, gen, min_abs=0.05)  # away from L1's kink at 0
    lam = float(gen.uniform(0.1, 2.0))
    g = float(gen.uniform(0.5, 2.0))
    check_gradients(lambda: fwd(w, lam), {"weight": w}, {"weight": bwd(w, lam, g)}, g)


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalty_matches_torch(name, gen):
    fwd, bwd, tfn = PENALTIES[name]
    w = randn((13, 7), gen, scale=2.0)
    lam, g = float(gen.uniform(0.1, 2.0)), float(gen.uniform(0.5, 2.0))
    wt = torch.tensor(w, requires_grad=True)
    pt = tfn(wt, lam)
    pt.backward(torch.tensor(g, dtype=torch.float64))
    p = fwd(w, lam)
    assert isinstance(p, np.ndarray) and p.shape == ()
    assert_close(p, pt, name=f"{name} penalty")
    assert_close(bwd(w, lam, g), wt.grad, name=f"{name} dweight")


def test_l2_gradient_is_sgd_weight_decay(gen):
    # the 1/2 in the penalty: its gradient must be exactly what weight_decay=lam adds
    w = randn((5, 3), gen)
    lam, lr = float(gen.uniform(0.01, 0.5)), float(gen.uniform(0.05, 0.5))
    p = torch.nn.Parameter(torch.tensor(w))
    p.grad = torch.zeros_like(p)
    torch.optim.SGD([p], lr=lr, weight_decay=lam).step()
    assert_close(w - lr * R.l2_penalty_backward(w, lam), p, name="sgd step with weight decay")


def test_l1_subgradient_at_zero_is_zero(gen):
    w = randn((3, 4), gen)
    w[1, 2] = 0.0
    dw = R.l1_penalty_backward(w, 0.7)
    assert dw[1, 2] == 0.0
    assert np.all(np.abs(np.delete(dw.ravel(), 1 * 4 + 2)) == 0.7)


# --------------------------------------------------------------------- max-norm


@pytest.mark.parametrize("shape", [(7, 5), (7, 3, 3, 2)])
def test_max_norm_projects_rows_above_c(shape, gen):
    c = float(gen.uniform(0.5, 2.0))
    ratios = gen.permutation([0.3, 0.7, 0.95, 1.05, 1.5, 3.0, 10.0])  # row norm / c
    w = _rows_with_norms(shape, ratios * c, gen)
    w0 = w.copy()
    out = R.max_norm_forward(w, c)
    assert out.shape == w.shape and out is not w
    np.testing.assert_array_equal(w, w0)  # input untouched
    o_flat, w_flat = out.reshape(shape[0], -1), w.reshape(shape[0], -1)
    norms = np.linalg.norm(o_flat, axis=1)
    above = ratios > 1
    np.testing.assert_allclose(norms[above], c, rtol=1e-13)
    np.testing.assert_array_equal(o_flat[~above], w_flat[~above])  # bit for bit
    # direction kept: the projected row is a positive multiple of the original
    cos = np.sum(o_flat * w_flat, axis=1) / (norms * np.linalg.norm(w_flat, axis=1))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-13)


@pytest.mark.parametrize("shape", [(7, 5), (7, 3, 3, 2)])
def test_max_norm_matches_torch_renorm(shape, gen):
    c = float(gen.uniform(0.5, 2.0))
    w = _rows_with_norms(shape, gen.permutation([0.3, 0.7, 0.95, 1.05, 1.5, 3.0, 10.0]) * c, gen)
    out = R.max_norm_forward(w, c)
    # torch divides by norm + 1e-7: a relative difference <= 1e-7 / norm <= 2e-7 here
    tol = Tolerance(1e-6, 0.0)
    wt = torch.tensor(w)
    assert_close(out, torch.renorm(wt, p=2, dim=0, maxnorm=c), tol=tol, name="max_norm")
    # the tolerance is tight enough to reject the projection along the wrong axis
    assert not compare(out, torch.renorm(wt, p=2, dim=1, maxnorm=c), tol=tol).ok
    assert not compare(out, torch.renorm(wt, p=2, dim=w.ndim - 1, maxnorm=c), tol=tol).ok


def test_max_norm_zero_row_and_loose_bound(gen):
    w = randn((4, 6), gen)
    w[2] = 0.0
    with np.errstate(all="raise"):
        out = R.max_norm_forward(w, 0.5)
    np.testing.assert_array_equal(out[2], 0.0)
    loose = R.max_norm_forward(w, 1.0 + float(np.linalg.norm(w, axis=1).max()))
    np.testing.assert_array_equal(loose, w)


# ------------------------------------------------------------------- clipping


def _torch_clip_norm(grads, max_norm, norm_type):
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    return [p.grad for p in params], total


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("clips", [True, False])
def test_clip_grad_norm_matches_torch(norm_type, clips, gen):
    grads = [randn(s, gen, scale=float(gen.uniform(0.5, 3.0))) for s in [(3, 5), (7,), (2, 3, 2)]]
    copies = [g.copy() for g in grads]
    flat = np.concatenate([g.ravel() for g in grads])
    want_total = np.linalg.norm(flat, ord=norm_type)
    max_norm = want_total * (float(gen.uniform(0.2, 0.8)) if clips else float(gen.uniform(1.2, 3.0)))
    out, total = R.clip_grad_norm_forward(grads, max_norm, norm_type)
    t_out, t_total = _torch_clip_norm(grads, max_norm, norm_type)
    assert isinstance(total, np.ndarray) and total.shape == ()
    assert_close(total, want_total, name="total_norm vs numpy")
    assert_close(total, t_total, name="total_norm vs torch")
    for i, (o, t) in enumerate(zip(out, t_out)):
        assert_close(o, t, name=f"clipped grads[{i}]")
    for g, c in zip(grads, copies):
        np.testing.assert_array_equal(g, c)  # inputs untouched
    new_total = np.linalg.norm(np.concatenate([o.ravel() for o in out]), ord=norm_type)
    if clips:
        np.testing.assert_allclose(new_total, max_norm, rtol=1e-5)
        assert new_total < max_norm
    else:
        for o, g in zip(out, grads):
            np.testing.assert_array_equal(o, g)


def test_clip_grad_value_matches_torch(gen):
    grad = randn((13, 7), gen, scale=2.0)
    c = float(gen.uniform(0.3, 1.5))
    out = R.clip_grad_value_forward(grad, c)
    p = torch.zeros(grad.shape, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor(grad)
    torch.nn.utils.clip_grad_value_([p], c)
    assert_close(out, p.grad, name="clip_grad_value")
    inside = np.abs(grad) <= c
    assert inside.any() and (~inside).any()  # both branches exercised
    np.testing.assert_array_equal(out[inside], grad[inside])
    np.testing.assert_array_equal(np.abs(out[~inside]), c)


# ---------------------------------------------------------------- dtype, bad input


def test_float32_in_float32_out(gen):
    w = randn((5, 3), gen, dtype=np.float32)
    for fn in (R.l1_penalty_forward, R.l1_penalty_backward, R.l2_penalty_forward, R.l2_penalty_backward):
        assert fn(w, 0.3).dtype == np.float32
    assert R.max_norm_forward(w, 0.5).dtype == np.float32
    assert R.clip_grad_value_forward(w, 0.5).dtype == np.float32
    for norm_type in (2.0, 1.0, float("inf")):
        out, total = R.clip_grad_norm_forward([w, w[0]], 0.5, norm_type)
        assert total.dtype == np.float32 and all(o.dtype == np.float32 for o in out)


def test_bad_input(gen):
    w = randn((4, 5), gen)
    for fn in (R.l1_penalty_forward, R.l1_penalty_backward, R.l2_penalty_forward, R.l2_penalty_backward):
        with pytest.raises(ValueError, match="lam must be a non-negative"):
            fn(w, -0.1)
    with pytest.raises(ValueError, match="grad_output must be a scalar"):
        R.l2_penalty_backward(w, 0.1, np.ones(3))
    with pytest.raises(TypeError, match="weight must have a floating-point dtype"):
        R.l1_penalty_forward(np.arange(4), 0.1)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_norm must be a positive"):
            R.max_norm_forward(w, bad)
        with pytest.raises(ValueError, match="max_norm must be a positive"):
            R.clip_grad_norm_forward([w], bad)
        with pytest.raises(ValueError, match="clip_value must be a positive"):
            R.clip_grad_value_forward(w, bad)
    with pytest.raises(ValueError, match="weight must be at least 2-D"):
        R.max_norm_forward(randn((5,), gen), 1.0)
    with pytest.raises(ValueError, match="grads must be a non-empty list"):
        R.clip_grad_norm_forward([], 1.0)
    with pytest.raises(TypeError, match="grads must be a list"):
        R.clip_grad_norm_forward(w, 1.0)
    with pytest.raises(ValueError, match="norm_type must be one of"):
        R.clip_grad_norm_forward([w], 1.0, norm_type=3.0)
    with pytest.raises(TypeError, match=r"grads\[1\] must have the dtype"):
        R.clip_grad_norm_forward([w, w.astype(np.float32)], 1.0)


@pytest.mark.parametrize("fn", [R.l1_penalty_backward, R.l2_penalty_backward])
def test_penalty_backward_grad_output_must_be_a_number(fn, gen):
    w = randn((4, 5), gen)
    for bad, what in ((None, "got NoneType"), ("1.0", "got str"), (True, "got bool")):
        with pytest.raises(TypeError, match=f"grad_output must be a number or a 0-d array, {what}"):
            fn(w, 0.1, bad)
    for bad in (np.array(None), np.array("x"), np.array(1j)):
        with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype"):
            fn(w, 0.1, bad)
    want = fn(w, 0.1, 2.0)
    assert np.all(np.isfinite(want))
    for ok in (2, np.float32(2.0), np.int32(2), np.asarray(2.0), np.asarray(2), torch.tensor(2.0)):
        np.testing.assert_array_equal(fn(w, 0.1, ok), want)


# ------------------------------------------------------ norms at extreme magnitudes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_norm_rows_at_extreme_magnitudes(dtype):
    # float32: the squares of 1e20 and 3e38 overflow, those of 1e-30 underflow; float64: 1e200 / 1e-200
    small = norm_magnitudes(dtype)[1]
    w = np.array(norm_rows(dtype)).astype(dtype)
    for c, rows_moved in ((1.0, [0, 3, 4]), (small / 10, [0, 1, 2, 3, 4, 5]), (0.25, [0, 3, 4, 5])):
        c_d = float(dtype(c))
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = R.max_norm_forward(w, c)
        assert out.dtype == dtype
        assert_ulps(out, max_norm_exact(w.astype(np.float64), c_d), dtype, f"max_norm c={c}", ulps=4)
        moved = np.isin(np.arange(6), rows_moved)
        norms = np.array([math.hypot(*row) for row in out.astype(np.float64)])
        np.testing.assert_allclose(norms[moved], c_d, rtol=1e-6)  # not zeroed (overflow), not left (underflow)
        np.testing.assert_array_equal(out[~moved], w[~moved])  # bit for bit


def test_max_norm_float32_rows_from_the_issue():
    w = np.array([[1e20, 1e20], [1e-30, 1e-30]], np.float32)
    np.testing.assert_allclose(R.max_norm_forward(w, 1.0)[0], [0.5**0.5] * 2, rtol=1e-6)  # was zeroed
    np.testing.assert_allclose(R.max_norm_forward(w, 1e-31)[1], [1e-31 * 0.5**0.5] * 2, rtol=1e-6)  # was unchanged


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_at_extreme_magnitudes(dtype):
    for grads, max_norm in clip_norm_cases(dtype):  # torch's float32 total is inf (1e20) or 0 (1e-30) here
        grads = [g.astype(dtype) for g in grads]
        out, total = R.clip_grad_norm_forward(grads, max_norm, 2.0)
        check_clip_grad_norm(out, total, grads, max_norm, dtype, "reference", ulps=4)
    # a total past float16's range is inf in float16 (it is returned in that dtype): everything clips to 0
    with np.errstate(over="ignore"):  # the float64 total's cast to float16 overflows, as it should
        out, total = R.clip_grad_norm_forward([np.full(8, 3e4, np.float16)], 1.0)
    assert total == np.inf and np.all(out[0] == 0)
