"""Triton losses against the float64 reference: every loss and loss_backward, every reduction,
float32/float16/bfloat16, odd and multi-block shapes, extreme logits, edges, views, mixed
dtypes, bad input. Runs under TRITON_INTERPRET=1 without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import losses as K
from dlgpu.reference import losses as R
from dlgpu.testing import assert_close, assert_ulps, labels, randn, signs, to_numpy, uniform
from dlgpu.testing.extremes import HUBER_D, HUBER_DELTA, HUBER_KNOWN
from dlgpu.testing.loss_inputs import (
    LOSSES,
    huber_inputs,
    logit_inputs,
    logits_classes,
    margin_inputs,
    regression_inputs,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
REDUCTIONS = ("mean", "sum", "none")
OP = "losses"


def _dev(a: np.ndarray, dtype: torch.dtype | None) -> torch.Tensor:
    """a on the test device, floats cast to ``dtype`` (class indices kept as they are)."""
    t = torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE)
    return t.to(dtype) if t.is_floating_point() and dtype is not None else t


def check_loss(name, y, t, hyper, dname, gen, reductions=REDUCTIONS):
    """Forward (loss and gradient) and loss_backward of ``name`` in ``dname`` against the float64 reference."""
    fn = LOSSES[name][0]
    fwd, rfwd = getattr(K, fn), getattr(R, fn)
    dtype = DTYPES[dname]
    y, t = _dev(y, dtype), _dev(t, dtype)
    for reduction in reductions:
        loss, grad = fwd(y, t, reduction, **hyper)
        want_loss, want_grad = rfwd(to_numpy(y), to_numpy(t), reduction, **hyper)
        assert loss.dtype == grad.dtype == dtype and tuple(loss.shape) == want_loss.shape
        assert grad.shape == y.shape and grad.is_contiguous()
        assert_close(loss, want_loss, op=OP, dtype=dname, name=f"{name} {reduction} loss")
        assert_close(grad, want_grad, op=OP, dtype=dname, name=f"{name} {reduction} dinput")
        if reduction == "none":
            g = _dev(randn(loss.shape, gen), dtype)
        else:
            # |g| >= 0.5: a mean's gradient over many elements is already near float16's
            # subnormals, and a smaller factor would judge float16's range, not the kernel
            g = float(gen.choice([-1.0, 1.0]) * gen.uniform(0.5, 2.0))
        d = K.loss_backward(g, grad, reduction)
        assert d.dtype == dtype
        g64 = to_numpy(g) if reduction == "none" else np.asarray(to_numpy(torch.tensor(g, dtype=dtype)))
        want = R.loss_backward(g64, to_numpy(grad), reduction)
        assert_close(d, want, op=OP, dtype=dname, name=f"{name} {reduction} loss_backward")


# --------------------------------------------------------------------- reference


@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_reference(name, dname, gen):
    _, make, k_class = LOSSES[name]
    if k_class:  # odd rows and classes; then 1003 classes, or rows over 4096 classes (chunked)
        shapes = [(int(gen.integers(1, 40)), int(gen.integers(1, 60))), (3, 4999) if dname == "float32" else (13, 1003)]
    else:  # odd shapes, and one spanning several 4096-element blocks
        shapes = [tuple(int(s) for s in gen.integers(1, 12, size=int(gen.integers(1, 4)))), (3, 5507)]
    for shape in shapes:
        y, t, hyper = make(shape, gen)
        check_loss(name, y, t, hyper, dname, gen)


@pytest.mark.parametrize("dname", list(DTYPES))
def test_cross_entropy_extreme_and_wide_logits(dname, gen):
    y = np.array([[1e4, -1e4, 0.5], [-1e4, 1e4, 1e4], [3.0, -1e4, 1e4], [1e4, 2.0, -3.0], [-1e4, -1e4, -1e4]])
    t = np.array([1, 2, 0, 0, 2])
    check_loss("cross_entropy", y, t, {}, dname, gen)
    masked = np.array([[-np.inf, 2.0, 1.0], [0.5, -np.inf, -np.inf]])  # masked-out classes: exp(-inf) = 0
    check_loss("cross_entropy", masked, np.array([1, 0]), {}, dname, gen)
    loss, grad = K.cross_entropy_forward(_dev(y, DTYPES[dname]), _dev(t, None), "none")
    assert torch.all(torch.isfinite(loss)) and torch.all(torch.isfinite(grad)) and loss.max().item() >= 9e3
    # the chunked path (K > 4096) with the maximum in the last chunk and +-1e4 logits
    big = randn((2, 4500), gen)
    big[0, 4400], big[1, 10], big[1, 4300] = 1e4, -1e4, 1e4
    check_loss("cross_entropy", big, np.array([4400, 7]), {}, dname, gen)


def test_cross_entropy_wide_range(gen):
    # shifted logits across exp's whole range, down through float32's underflow
    wide = gen.uniform(-800.0, 0.0, (9, 301))
    wide[:, :40] = gen.uniform(-90.0, -80.0, (9, 40))
    wide[:, 0] = 0.0
    check_loss("cross_entropy", wide, labels(9, 301, gen), {}, "float32", gen)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")  # log(0), then clamped at -100
@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
def test_binary_cross_entropy_logit_and_probability_edges(dname, gen):
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1e-30])
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.7, 1.0, 1.0])
    check_loss("binary_cross_entropy", y, t, {}, dname, gen)
    assert K.binary_cross_entropy_forward(_dev(y, torch.float32), _dev(t, torch.float32), "none")[0].max() == 100.0
    x = np.array([[1e4, -1e4, 1e4], [-1e4, 0.5, -2.0]])
    q = np.array([[0.0, 1.0, 1.0], [0.25, 1.0, 0.0]])
    check_loss("binary_cross_entropy_with_logits", x, q, {}, dname, gen)


@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
def test_gradients_at_the_kinks(dname, gen):
    """The subgradient 0 where 1 - y t (hinge) or y - t (L1) is exactly 0: margin_inputs and
    regression_inputs keep away from both kinks."""
    y, t = np.array([[1.0, -1.0, 0.5], [-2.0, 0.25, 1.0]]), np.array([[1.0, -1.0, 1.0], [1.0, -1.0, -1.0]])
    for name in ("hinge", "squared_hinge"):  # y t = 1 in the first two
        check_loss(name, y, t, {}, dname, gen)
        grad = getattr(K, f"{name}_loss_forward")(_dev(y, DTYPES[dname]), _dev(t, DTYPES[dname]), "none")[1]
        assert grad[0, 0].item() == grad[0, 1].item() == 0.0
    check_loss("l1", y, y, {}, dname, gen)
    assert torch.all(K.l1_loss_forward(_dev(y, DTYPES[dname]), _dev(y, DTYPES[dname]), "sum")[1] == 0)


def test_nan_propagates_like_reference(gen):
    y, t, _ = logits_classes((4, 7), gen)
    y[1, 3] = np.nan
    loss, grad = K.cross_entropy_forward(_dev(y, torch.float32), _dev(t, None), "none")
    assert torch.isnan(loss[1]) and torch.all(torch.isnan(grad[1])) and torch.all(torch.isfinite(grad[[0, 2, 3]]))
    x, r, _ = regression_inputs((3, 4), gen)
    x[2, 1] = np.nan
    for fn in ("mse_loss_forward", "l1_loss_forward", "pseudo_huber_loss_forward"):
        loss, grad = getattr(K, fn)(_dev(x, torch.float32), _dev(r, torch.float32), "none")
        want_loss, want_grad = getattr(R, fn)(x, r, "none")
        np.testing.assert_array_equal(torch.isnan(loss).cpu().numpy(), np.isnan(want_loss))
        np.testing.assert_array_equal(torch.isnan(grad).cpu().numpy(), np.isnan(want_grad))
        assert torch.isnan(getattr(K, fn)(_dev(x, torch.float32), _dev(r, torch.float32), "mean")[0])


def test_reduced_loss_is_deterministic(gen):
    y, t, _ = logit_inputs((5, 3001), gen)
    yt, tt = _dev(y, torch.float32), _dev(t, torch.float32)
    first = K.binary_cross_entropy_with_logits_forward(yt, tt, "sum")
    again = K.binary_cross_entropy_with_logits_forward(yt, tt, "sum")
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


# ------------------------------------------------------------- layouts and types


def test_views_mixed_dtypes_and_scalar_kinds(gen):
    base, target = randn((11, 6), gen), randn((6, 11), gen)
    y = _dev(base, torch.float32).T  # 6,11 view, not contiguous
    got = K.mse_loss_forward(y, _dev(target, torch.float32), "none")
    want = R.mse_loss_forward(to_numpy(y), to_numpy(_dev(target, torch.float32)), "none")
    assert_close(got[0], want[0], op=OP, dtype="float32")
    assert_close(got[1], want[1], op=OP, dtype="float32")
    logits, t, _ = logits_classes((7, 5), gen)
    got = K.cross_entropy_forward(_dev(logits, torch.float32), _dev(t, None).int(), "sum")  # int32 labels
    want = R.cross_entropy_forward(to_numpy(_dev(logits, torch.float32)), t, "sum")
    assert_close(got[0], want[0], op=OP, dtype="float32")
    assert_close(got[1], want[1], op=OP, dtype="float32")
    g = randn((7,), gen)
    d = K.loss_backward(_dev(g, torch.float64), got[1], "none")  # per-row factors, cast to grad's dtype
    assert_close(d, R.loss_backward(to_numpy(_dev(g, torch.float32)), to_numpy(got[1]), "none"), op=OP, dtype="float32")
    for s in (0.5, torch.tensor(0.5, device=DEVICE), np.float64(0.5), np.asarray(0.5)):
        assert torch.equal(K.loss_backward(s, got[1], "sum"), got[1] * 0.5)
    # as the reference: a float64 target is checked as given, then cast to input's dtype
    for name in ("hinge", "binary_cross_entropy", "pseudo_huber"):
        fn = LOSSES[name][0]
        y, t, hyper = LOSSES[name][1]((5, 9), gen)
        loss, grad = getattr(K, fn)(_dev(y, torch.float16), _dev(t, torch.float64), "mean", **hyper)
        want_loss, want_grad = getattr(R, fn)(y.astype(np.float16), t, "mean", **hyper)
        assert loss.dtype == grad.dtype == torch.float16
        assert_close(loss, want_loss.astype(np.float64), op=OP, dtype="float16")
        assert_close(grad, want_grad.astype(np.float64), op=OP, dtype="float16")


# -------------------------------------------------------------------- bad input


def _raises_like_reference(case, same_message=True):
    """case(module, convert): the reference gets numpy arrays, the Triton module torch tensors."""
    with pytest.raises((ValueError, TypeError)) as want:
        case(R, lambda a: a)
    with pytest.raises(want.type) as got:
        case(K, lambda a: torch.from_numpy(a).to(DEVICE) if isinstance(a, np.ndarray) else a)
    if same_message:
        assert str(got.value) == str(want.value)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the kernel runs on invalid values, then raises
def test_bad_input_raises_like_reference(gen):
    # float32 (the Triton kernels take no float64 input); float64 targets where the cast matters
    y, t = randn((4, 3), gen, np.float32), signs((4, 3), gen, np.float32)
    p, q = uniform((4, 3), gen, 0.1, 0.9, np.float32), uniform((4, 3), gen, 0.1, 0.9, np.float32)
    logits, c = randn((4, 3), gen, np.float32), labels(4, 3, gen)
    near = np.where(np.arange(12).reshape(4, 3) == 7, 1 + 1e-12, t.astype(np.float64))  # rounds onto +1 in float32
    cases = [
        lambda m, a: m.mse_loss_forward(a(y), a(t), "avg"),
        lambda m, a: m.l1_loss_forward(a(y), a(t[:-1])),
        lambda m, a: m.mse_loss_forward(a(y[:0]), a(t[:0])),
        lambda m, a: m.mse_loss_forward([1.0, 2.0], [1.0, 2.0]),
        lambda m, a: m.hinge_loss_forward(a(y), a(np.where(np.arange(12).reshape(4, 3) == 5, 0.5, t))),
        lambda m, a: m.squared_hinge_loss_forward(a(y), a(np.where(np.arange(12).reshape(4, 3) == 9, np.nan, t))),
        lambda m, a: m.hinge_loss_forward(a(y), a(near)),
        lambda m, a: m.binary_cross_entropy_forward(a(np.where(p > 0.5, 1.5, p)), a(np.where(q > 0.5, -0.1, q))),
        lambda m, a: m.binary_cross_entropy_forward(a(p), a(np.where(q > 0.5, np.nan, q))),
        lambda m, a: m.binary_cross_entropy_with_logits_forward(a(y), a(np.where(q > 0.5, 1.5, q))),
        lambda m, a: m.binary_cross_entropy_with_logits_forward(
            a(y), a(np.where(q > 0.5, -1e-50, q.astype(np.float64)))
        ),
        lambda m, a: m.pseudo_huber_loss_forward(a(y), a(y + 1), delta=0.0),
        lambda m, a: m.pseudo_huber_loss_forward(a(y), a(y + 1), delta="1"),
        lambda m, a: m.pseudo_huber_loss_forward(a(y), a(y[:2]), delta=-1.0),  # the shape is checked first
        lambda m, a: m.cross_entropy_forward(a(randn((4, 3, 2), gen, np.float32)), a(c)),
        lambda m, a: m.cross_entropy_forward(a(logits), a(c[:, None])),
        lambda m, a: m.cross_entropy_forward(a(logits), a(c.astype(np.float32))),
        lambda m, a: m.multiclass_hinge_loss_forward(a(logits), a(np.where(np.arange(4) == 2, 3, c))),
        lambda m, a: m.multiclass_squared_hinge_loss_forward(a(logits), a(np.where(np.arange(4) == 1, -1, c))),
        lambda m, a: m.loss_backward(a(randn((4,), gen, np.float32)), a(logits), "mean"),
        lambda m, a: m.loss_backward(a(randn((3,), gen, np.float32)), a(logits), "none"),
        lambda m, a: m.loss_backward(a(randn((4, 1, 3), gen, np.float32)), a(logits), "none"),
        lambda m, a: m.loss_backward(1.0, a(logits), "avg"),
        # grad_output that is not a number: a TypeError naming it
        lambda m, a: m.loss_backward(None, a(logits), "mean"),
        lambda m, a: m.loss_backward("1.0", a(logits), "sum"),
        lambda m, a: m.loss_backward(True, a(logits), "sum"),
        lambda m, a: m.loss_backward(np.array(None), a(logits), "mean"),
        lambda m, a: m.loss_backward(None, a(logits), "none"),
    ]
    for case in cases:
        _raises_like_reference(case)
    # dtype errors: same exception; the message names a torch dtype where the reference's a numpy one
    _raises_like_reference(lambda m, a: m.mse_loss_forward(a(np.ones((4, 3), dtype=np.int64)), a(t)), False)
    _raises_like_reference(lambda m, a: m.mse_loss_forward(a(y), a(np.ones((4, 3), dtype=np.int64))), False)
    _raises_like_reference(lambda m, a: m.loss_backward(1.0, a(c), "sum"), False)
    # numpy arrays are not for the GPU backend
    with pytest.raises(TypeError, match="torch tensor"):
        K.mse_loss_forward(y, t)
    with pytest.raises(TypeError, match="torch tensor"):
        K.cross_entropy_forward(_dev(logits, torch.float32), c)
    with pytest.raises(TypeError, match="torch tensor"):
        K.loss_backward(randn((4,), gen), _dev(logits, torch.float32), "none")


def test_loss_backward_grad_output_kinds(gen):
    grad = _dev(randn((4, 3), gen), torch.float32)
    with pytest.raises(TypeError, match="grad_output must be a number or a 0-d array, got NoneType"):
        K.loss_backward(None, grad, "sum")
    with pytest.raises(TypeError, match="grad_output must have a floating-point dtype"):
        K.loss_backward(torch.ones(4, 3, dtype=torch.bool, device=DEVICE), grad, "none")
    for ok in (2, 2.0, np.float32(2.0), np.int64(2), np.asarray(2), torch.tensor(2.0), torch.tensor(2, device=DEVICE)):
        for reduction in ("mean", "sum"):
            assert torch.equal(K.loss_backward(ok, grad, reduction), grad * 2)


# ---------------------------------------------------------------- extreme values


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the interpreter's numpy, where the loss is inf
def test_pseudo_huber_extreme_values():
    # the float64 reference (checked against exact decimal arithmetic in tests/reference) on the same
    # float32 values and delta, rounded to float32: (d/delta)^2 over- or underflows in most pairs
    d = np.array(HUBER_D, dtype=np.float32)
    for delta in HUBER_DELTA:
        delta32 = float(np.float32(delta))  # what the kernel computes with
        zeros = np.zeros(d.size)
        want_loss, want_grad = R.pseudo_huber_loss_forward(d.astype(np.float64), zeros, "none", delta=delta32)
        loss, grad = K.pseudo_huber_loss_forward(_dev(d, None), _dev(np.zeros_like(d), None), "none", delta=delta32)
        assert_ulps(loss, want_loss, np.float32, f"loss delta={delta}", ulps=16, flush_subnormals=True)
        assert_ulps(grad, want_grad, np.float32, f"grad delta={delta}", ulps=16, flush_subnormals=True)
        assert grad[14].item() == delta32 and grad[15].item() == -delta32  # d = +-inf: the slope +-delta
    # the cases the textbook form got wrong in float32 (NaN loss, 0 gradient), also through bfloat16 storage
    for dname in ("float32", "bfloat16"):
        for dv, delta, want_loss, want_grad in HUBER_KNOWN:
            y = _dev(np.full(3, dv), DTYPES[dname])
            loss, grad = K.pseudo_huber_loss_forward(y, torch.zeros_like(y), "none", delta=delta)
            want_loss = R.pseudo_huber_loss_forward(to_numpy(y), np.zeros(3), "none", delta=delta)[0]  # the stored y
            rtol = 1e-6 if dname == "float32" else 1e-2
            np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=rtol)
            np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=rtol)
            total = K.pseudo_huber_loss_forward(y, torch.zeros_like(y), "sum", delta=delta)[0]
            np.testing.assert_allclose(total.item(), want_loss.sum(), rtol=rtol)


@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
def test_bce_with_logits_infinite_logits(dname):
    x = np.array([np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf, 3.0, -1e4, np.nan])
    t = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])
    xt, tt = _dev(x, DTYPES[dname]), _dev(t, DTYPES[dname])
    loss, grad = K.binary_cross_entropy_with_logits_forward(xt, tt, "none")
    # (1 - t) x at +inf, -t x at -inf: inf unless the weight is 0, never inf - inf = NaN
    np.testing.assert_array_equal(to_numpy(loss)[:6], [np.inf, 0.0, np.inf, 0.0, np.inf, np.inf])
    np.testing.assert_array_equal(to_numpy(grad)[:6], [1.0, 0.0, 0.5, 0.0, -1.0, -0.5])
    assert np.isnan(to_numpy(loss)[8]) and np.isnan(to_numpy(grad)[8])
    want_loss, want_grad = R.binary_cross_entropy_with_logits_forward(to_numpy(xt), to_numpy(tt), "none")
    assert_close(loss[6:8], want_loss[6:8], op=OP, dtype=dname)
    assert_close(grad[6:8], want_grad[6:8], op=OP, dtype=dname)
    for reduction in ("sum", "mean"):
        assert K.binary_cross_entropy_with_logits_forward(xt[:8], tt[:8], reduction)[0].item() == np.inf
        idx = [1, 3, 6]
        got = K.binary_cross_entropy_with_logits_forward(xt[idx], tt[idx], reduction)[0]
        want = R.binary_cross_entropy_with_logits_forward(to_numpy(xt)[idx], to_numpy(tt)[idx], reduction)[0]
        assert torch.isfinite(got)
        assert_close(got, want, op=OP, dtype=dname)


# ------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dname", ["float32", "bfloat16"])
def test_realistic_shapes_on_gpu(dname, gen):
    # a language-model head (cross-entropy over 32000 classes: the chunked path), an image
    # classifier's margins, and a dense per-pixel BCE with logits
    check_loss("cross_entropy", *logits_classes((512, 32000), gen), dname, gen)
    check_loss("multiclass_hinge", *margin_inputs((2048, 1000), gen), dname, gen)
    check_loss("binary_cross_entropy_with_logits", *logit_inputs((16, 1, 256, 256), gen), dname, gen)
    check_loss("pseudo_huber", *huber_inputs((1 << 20,), gen), dname, gen)
