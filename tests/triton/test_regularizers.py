"""Triton regularizers and gradient clipping against the float64 reference: L1/L2 penalties and
their gradients (grad_output as a number, a 0-d array or a device tensor), max-norm, clip by
norm (1, 2, inf) and by value, in float32, float16 and bfloat16; the multi-program reductions,
NaN/inf propagation, empty tensors, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import regularizers as K
from dlgpu.reference import regularizers as R
from dlgpu.testing import assert_close, assert_ulps, max_norm_exact, randn, round_to, to_numpy
from dlgpu.testing.extremes import check_clip_grad_norm, clip_norm_cases

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
NORMS = [1.0, 2.0, float("inf")]


def tt(a, dtype: str = "float32", device: str = DEVICE) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device=device, dtype=DTYPES[dtype])


@pytest.fixture
def small_blocks(monkeypatch):
    """Reductions over many programs, each taking several grid-stride steps, and rows in chunks."""
    monkeypatch.setattr(K, "_RED_BLOCK", 64)
    monkeypatch.setattr(K, "_RED_PROGRAMS", 4)
    monkeypatch.setattr(K, "_ROW_BLOCK", 16)
    monkeypatch.setattr(K, "_FINISH_BLOCK", 2)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_penalties_match_reference(kind, dtype, gen):
    w = tt(randn((37, 5, 3), gen), dtype)
    lam = float(gen.uniform(0.01, 2.0))
    fwd, bwd = getattr(K, f"{kind}_penalty_forward"), getattr(K, f"{kind}_penalty_backward")
    rfwd, rbwd = getattr(R, f"{kind}_penalty_forward"), getattr(R, f"{kind}_penalty_backward")
    r = fwd(w, lam)
    assert r.shape == () and r.dtype == DTYPES[dtype] and r.device == w.device
    assert_close(r, rfwd(to_numpy(w), lam), op=kind, dtype=dtype)
    for go in (1.0, 0.37, np.array(-1.5), torch.tensor(0.37, dtype=torch.float64, device=DEVICE), torch.tensor(2.0)):
        d = bwd(w, lam, go)
        assert d.dtype == DTYPES[dtype] and d.shape == w.shape
        assert_close(d, rbwd(to_numpy(w), lam, float(go)), op=kind, dtype=dtype, name=f"{kind} grad")
    assert_close(bwd(w, lam), rbwd(to_numpy(w), lam), op=kind, dtype=dtype)


def test_penalty_gradients_exact_in_float32(gen):
    w = randn((9, 7), gen, dtype=np.float32)
    w[0, :3] = [0.0, -0.0, np.nan]
    wt = torch.from_numpy(w).to(DEVICE)
    for kind in ("l1", "l2"):
        got = to_numpy(getattr(K, f"{kind}_penalty_backward")(wt, 0.3, 0.7))
        np.testing.assert_array_equal(got, getattr(R, f"{kind}_penalty_backward")(w, 0.3, 0.7))  # NaN where it is


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_multi_program_reductions(dtype, gen, small_blocks):
    w = tt(randn((43, 29), gen), dtype)  # 1247 elements: 20 blocks over 4 programs, 5 steps each
    assert_close(K.l1_penalty_forward(w, 0.5), R.l1_penalty_forward(to_numpy(w), 0.5), op="l1", dtype=dtype)
    assert_close(K.l2_penalty_forward(w, 0.5), R.l2_penalty_forward(to_numpy(w), 0.5), op="l2", dtype=dtype)
    gs = [w, tt(randn((3,), gen), dtype), tt(randn((300,), gen), dtype)]
    for nt in NORMS:
        out, total = K.clip_grad_norm_forward(gs, 1.0, nt)
        ref, rtotal = R.clip_grad_norm_forward([to_numpy(g) for g in gs], 1.0, nt)
        assert_close(total, rtotal, op="clip_grad_norm", dtype=dtype)
        for o, r in zip(out, ref):
            assert_close(o, r, op="clip_grad_norm", dtype=dtype)
    check_max_norm(rows_around((43, 29), 3.0, gen), 3.0, dtype)  # rows of 29 in chunks of 16


def rows_around(shape, c, gen):
    """Weights whose rows (neurons) have norms clearly under c (even rows) or over it (odd rows)."""
    w = randn(shape, gen)
    flat = w.reshape(shape[0], -1)
    target = np.where(np.arange(shape[0]) % 2 == 0, gen.uniform(0.2, 0.8, shape[0]), gen.uniform(1.2, 3.0, shape[0]))
    return (flat * (c * target / np.linalg.norm(flat, axis=1))[:, None]).reshape(shape)


def check_max_norm(w, c, dtype):
    wt = tt(w, dtype)
    got = K.max_norm_forward(wt, c)
    ref = R.max_norm_forward(to_numpy(wt), c)
    assert got.dtype == DTYPES[dtype] and got.shape == wt.shape
    assert_close(got, ref, op="max_norm", dtype=dtype)
    flat = to_numpy(wt).reshape(wt.shape[0], -1)
    under = np.sqrt((flat * flat).sum(axis=1)) < c * 0.99  # clearly within the bound: unchanged bit for bit
    assert under.any() and not under.all()
    np.testing.assert_array_equal(to_numpy(got).reshape(flat.shape)[under], flat[under])


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_max_norm_matches_reference(dtype, gen):
    check_max_norm(rows_around((23, 9), 3.0, gen), 3.0, dtype)
    check_max_norm(rows_around((6, 3, 3, 3), 5.0, gen), 5.0, dtype)  # norm over C, KH, KW
    zero = torch.zeros((3, 4), device=DEVICE, dtype=DTYPES[dtype])
    assert torch.equal(K.max_norm_forward(zero, 1.0), zero)  # zero rows: no 0/0


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_grad_norm_matches_reference(norm_type, dtype, gen):
    gs = [tt(randn(s, gen), dtype) for s in [(3, 4), (57,), (1,), (2, 3, 5)]]
    for max_norm in (0.5, 1e4):  # clipped, and left alone (scale 1)
        out, total = K.clip_grad_norm_forward(gs, max_norm, norm_type)
        ref, rtotal = R.clip_grad_norm_forward([to_numpy(g) for g in gs], max_norm, norm_type)
        assert total.shape == () and total.dtype == DTYPES[dtype]
        assert_close(total, rtotal, op="clip_grad_norm", dtype=dtype, name="total")
        for o, r, g in zip(out, ref, gs):
            assert o.dtype == DTYPES[dtype] and o.shape == g.shape and o is not g
            assert_close(o, r, op="clip_grad_norm", dtype=dtype)
    assert torch.equal(K.clip_grad_norm_forward(gs, 1e4, norm_type)[0][1], gs[1])  # scale 1: unchanged


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 and the float16 overflow, on purpose
def test_clip_grad_norm_nonfinite_and_overflow(gen):
    g = randn((10,), gen)
    for bad in (np.nan, np.inf):
        h = g.copy()
        h[3] = bad
        for nt in NORMS:
            with np.errstate(invalid="ignore"):
                ref, rtotal = R.clip_grad_norm_forward([h.astype(np.float32), g.astype(np.float32)], 1.0, nt)
            out, total = K.clip_grad_norm_forward([tt(h), tt(g)], 1.0, nt)
            np.testing.assert_array_equal(to_numpy(total), rtotal)  # NaN / inf propagate as in torch
            for o, r in zip(out, ref):
                np.testing.assert_array_equal(np.isnan(to_numpy(o)), np.isnan(r))
    # a float16 total norm past 65504 is inf in float16: the reference then scales everything to 0
    big = tt(np.full(8, 3e4), "float16")
    out, total = K.clip_grad_norm_forward([big], 1.0, 2.0)
    assert total.item() == float("inf") and bool((out[0] == 0).all())


def test_clip_grad_value_matches_reference(gen):
    for dtype in DTYPES:
        g = tt(randn((13, 7), gen, scale=2.0), dtype)
        assert_close(
            K.clip_grad_value_forward(g, 0.8), R.clip_grad_value_forward(to_numpy(g), 0.8), op="clip", dtype=dtype
        )
    g = randn((5, 3), gen, dtype=np.float32)
    g[0, 0] = np.nan
    got = to_numpy(K.clip_grad_value_forward(torch.from_numpy(g).to(DEVICE), 0.8))
    np.testing.assert_array_equal(got, R.clip_grad_value_forward(g, 0.8))  # exact; NaN kept


def test_empty_and_noncontiguous(gen):
    e = torch.zeros((0, 3), device=DEVICE)
    assert K.l1_penalty_forward(e, 1.0).item() == 0.0 and K.l2_penalty_backward(e, 1.0).shape == (0, 3)
    assert K.max_norm_forward(e, 1.0).shape == (0, 3) and K.max_norm_forward(
        torch.zeros((3, 0), device=DEVICE), 1.0
    ).shape == (3, 0)
    out, total = K.clip_grad_norm_forward([e, tt([3.0, 4.0])], 1.0)
    assert out[0].shape == (0, 3) and abs(total.item() - 5.0) < 1e-6
    w = tt(randn((11, 8), gen)).t()  # 8,11 view
    assert_close(K.max_norm_forward(w, 1.5), R.max_norm_forward(to_numpy(w), 1.5), op="max_norm", dtype="float32")
    assert_close(K.l1_penalty_forward(w, 0.1), R.l1_penalty_forward(to_numpy(w), 0.1), op="l1", dtype="float32")
    w0 = w.clone()
    K.clip_grad_norm_forward([w], 0.1)
    K.max_norm_forward(w, 0.1)
    assert torch.equal(w, w0)  # inputs left untouched


def test_bad_input_raises_like_reference(gen):
    w = randn((4, 5), gen)
    wt = tt(w)
    cases = [  # (reference call, triton call): same exception type and message
        (lambda: R.l1_penalty_forward(w, -1.0), lambda: K.l1_penalty_forward(wt, -1.0)),
        (lambda: R.l2_penalty_backward(w, 0.1, np.ones(2)), lambda: K.l2_penalty_backward(wt, 0.1, torch.ones(2))),
        (lambda: R.l1_penalty_backward(w, "a"), lambda: K.l1_penalty_backward(wt, "a")),
        (lambda: R.max_norm_forward(w[0], 1.0), lambda: K.max_norm_forward(wt[0], 1.0)),
        (lambda: R.max_norm_forward(w, 0.0), lambda: K.max_norm_forward(wt, 0.0)),
        (lambda: R.clip_grad_norm_forward([], 1.0), lambda: K.clip_grad_norm_forward([], 1.0)),
        (lambda: R.clip_grad_norm_forward([w], 1.0, 3.0), lambda: K.clip_grad_norm_forward([wt], 1.0, 3.0)),
        (lambda: R.clip_grad_norm_forward([w], -1.0), lambda: K.clip_grad_norm_forward([wt], -1.0)),
        (lambda: R.clip_grad_value_forward(w, float("inf")), lambda: K.clip_grad_value_forward(wt, float("inf"))),
        # grad_output that is not a number: a TypeError naming it, never all-NaN gradients
        (lambda: R.l1_penalty_backward(w, 0.1, None), lambda: K.l1_penalty_backward(wt, 0.1, None)),
        (lambda: R.l2_penalty_backward(w, 0.1, None), lambda: K.l2_penalty_backward(wt, 0.1, None)),
        (lambda: R.l2_penalty_backward(w, 0.1, "1"), lambda: K.l2_penalty_backward(wt, 0.1, "1")),
        (lambda: R.l1_penalty_backward(w, 0.1, True), lambda: K.l1_penalty_backward(wt, 0.1, True)),
        (lambda: R.l1_penalty_backward(w, 0.1, np.array(None)), lambda: K.l1_penalty_backward(wt, 0.1, np.array(None))),
    ]
    for ref, ours in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            ref()
        with pytest.raises(want.type) as got:
            ours()
        assert str(got.value) == str(want.value)


def test_numpy_int_and_mixed_dtypes_raise_type_error(gen):
    w = randn((4, 5), gen)
    wt = tt(w)
    for case in (
        lambda: K.l1_penalty_forward(w, 0.1),  # numpy array
        lambda: K.l2_penalty_backward(torch.ones(3, dtype=torch.int64, device=DEVICE), 0.1),
        lambda: K.max_norm_forward(wt.double(), 1.0),
        lambda: K.clip_grad_norm_forward(wt, 1.0),  # a tensor, not a list
        lambda: K.clip_grad_norm_forward([wt, wt.half()], 1.0),
        lambda: K.clip_grad_value_forward(w, 1.0),
    ):
        with pytest.raises(TypeError):
            case()


def test_penalty_backward_bool_tensor_is_rejected():
    w = tt(np.ones((2, 3)))
    with pytest.raises(TypeError, match="grad_output must have an integer or floating-point dtype, got torch.bool"):
        K.l2_penalty_backward(w, 0.1, torch.tensor(True, device=DEVICE))
    assert torch.equal(K.l2_penalty_backward(w, 0.5, torch.tensor(2, device=DEVICE)), w)  # an integer tensor is fine


# ------------------------------------------------------ norms at extreme magnitudes


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_max_norm_rows_at_extreme_magnitudes(dtype):
    # the squares of 1e20 and 3e38 overflow fp32, those of 1e-30 underflow it (bfloat16 has fp32's range)
    w = tt([[1e20, 1e20, 0.0], [1e-30, 1e-30, 0.0], [1e-30, -1e-30, 1e-30], [3e38, 3e38, 0.0], [1e20, 1e-30, -1e20],
            [0.3, 0.0, 0.4]], dtype)  # fmt: skip
    w64 = to_numpy(w)
    for c, rows_moved in ((1.0, [0, 3, 4]), (1e-31, [0, 1, 2, 3, 4, 5]), (0.25, [0, 3, 4, 5])):
        c_d = float(round_to(c, dtype))
        out = K.max_norm_forward(w, c)
        assert_ulps(out, max_norm_exact(w64, c_d), dtype, f"max_norm c={c}", flush_subnormals=True)
        moved = np.isin(np.arange(6), rows_moved)
        norms = np.array([math.hypot(*row) for row in to_numpy(out)])
        np.testing.assert_allclose(norms[moved], c_d, rtol=1e-6 if dtype == "float32" else 1e-2)
        assert torch.equal(out[~torch.from_numpy(moved)], w[~torch.from_numpy(moved)])  # bit for bit
    if dtype == "float32":
        want = R.max_norm_forward(w64.astype(np.float32), 1.0)
        assert_ulps(K.max_norm_forward(w, 1.0), want, dtype, "vs reference", flush_subnormals=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the L2 penalty's float32 inf, on purpose
def test_clip_grad_norm_at_extreme_magnitudes():
    for grads, max_norm in clip_norm_cases("float32"):  # torch's float32 total is inf (1e20) or 0 (1e-30) here
        grads = [tt(g) for g in grads]
        out, total = K.clip_grad_norm_forward(grads, max_norm, 2.0)
        check_clip_grad_norm(out, total, grads, max_norm, "float32", "triton", flush_subnormals=True)
        ref_out, _ = R.clip_grad_norm_forward([to_numpy(g).astype(np.float32) for g in grads], max_norm, 2.0)
        for o, r in zip(out, ref_out):
            assert_ulps(o, r, "float32", "vs reference", flush_subnormals=True)
    # the L2 penalty keeps the reference's order: the float32 sum of squares (1e40) is inf before lam
    w = tt([[1e20, 1e20]])
    want = R.l2_penalty_forward(to_numpy(w).astype(np.float32), 1e-10)
    assert K.l2_penalty_forward(w, 1e-10).item() == want == np.inf


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_gpu_realistic_shapes(dtype, gen):
    w = randn((1024, 3 * 3 * 64), gen, scale=0.05) * gen.uniform(0.5, 2.0, (1024, 1))
    wt = tt(w, dtype)
    for kind in ("l1", "l2"):
        fwd, rfwd = getattr(K, f"{kind}_penalty_forward"), getattr(R, f"{kind}_penalty_forward")
        assert_close(fwd(wt, 1e-3), rfwd(to_numpy(wt), 1e-3), op=kind, dtype=dtype)
        bwd, rbwd = getattr(K, f"{kind}_penalty_backward"), getattr(R, f"{kind}_penalty_backward")
        go = torch.tensor(0.5, device=DEVICE)
        assert_close(bwd(wt, 1e-3, go), rbwd(to_numpy(wt), 1e-3, 0.5), op=kind, dtype=dtype)
    assert_close(K.max_norm_forward(wt, 1.5), R.max_norm_forward(to_numpy(wt), 1.5), op="max_norm", dtype=dtype)
    gs = [wt, tt(randn((4096, 1000), gen, scale=0.01), dtype), tt(randn((1000,), gen), dtype)]
    for nt in NORMS:
        out, total = K.clip_grad_norm_forward(gs, 1.0, nt)
        ref, rtotal = R.clip_grad_norm_forward([to_numpy(g) for g in gs], 1.0, nt)
        assert_close(total, rtotal, op="clip_grad_norm", dtype=dtype)
        for o, r in zip(out, ref):
            assert_close(o, r, op="clip_grad_norm", dtype=dtype)
