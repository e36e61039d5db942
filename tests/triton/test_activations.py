"""Triton activations against the float64 reference: every op forward and backward in float32,
float16 and bfloat16, odd shapes and random axes/slopes, the chunked (long-row) softmax path,
extreme inputs, views, empty tensors, bad input. Without CUDA the kernels run under Triton's
interpreter on CPU tensors (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.kernels.triton import activations as K
from dlgpu.reference import activations as A
from dlgpu.testing import assert_close, randn, to_numpy

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# name: does the backward take the forward's output (else its input)?
FROM_OUTPUT = {
    "relu": False,
    "leaky_relu": False,
    "sigmoid": True,
    "tanh": True,
    "softplus": False,
    "softmax": True,
    "log_softmax": True,
}
ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]

# Under the interpreter, the padding lanes of a row tile compute 0/0 and log(0) before the
# masked store drops them; numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")


def tt(a, dtype: str, device: str = DEVICE) -> torch.Tensor:
    """float64 numpy -> torch tensor in ``dtype`` (the values the kernel sees)."""
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device=device, dtype=DTYPES[dtype])


def hyper(name, gen, ndim):
    if name == "leaky_relu":
        return {"negative_slope": float(gen.uniform(0.01, 0.5))}
    if name in ("softmax", "log_softmax"):
        return {"axis": int(gen.integers(-ndim, ndim))}
    return {}


def check_op(name, x, dy, kw, dtype):
    """Forward and backward of ``name`` on ``x`` (cast to dtype) against the float64 reference
    evaluated on the cast values."""
    fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
    rfwd, rbwd = getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")
    xt, dyt = tt(x, dtype), tt(dy, dtype)
    y = fwd(xt, **kw)
    assert y.dtype == DTYPES[dtype] and y.is_contiguous() and y.shape == xt.shape
    assert_close(y, rfwd(to_numpy(xt), **kw), op=name, dtype=dtype)
    saved = tt(rfwd(to_numpy(xt), **kw), dtype) if FROM_OUTPUT[name] else xt
    dx = bwd(dyt, saved, **kw)
    assert dx.dtype == DTYPES[dtype]
    assert_close(dx, rbwd(to_numpy(dyt), to_numpy(saved), **kw), op=name, dtype=dtype, name=f"{name} dx")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", sorted(FROM_OUTPUT))
def test_matches_reference(name, dtype, gen):
    shape = tuple(int(s) for s in gen.integers(1, 24, size=int(gen.integers(1, 4))))
    x, dy = randn(shape, gen, scale=3.0), randn(shape, gen)
    check_op(name, x, dy, hyper(name, gen, len(shape)), dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_long_rows_chunked(name, dtype, gen, monkeypatch):
    # rows longer than the register block take the two-pass (online max/sum) path
    monkeypatch.setattr(K, "_ROW_BLOCK_MAX", 8)
    monkeypatch.setattr(K, "_ROW_TILE", 16)
    x, dy = randn((5, 37, 3), gen, scale=4.0), randn((5, 37, 3), gen)
    for axis in (1, -1, 0):  # 37 > 8: chunked; then the short-row, many-rows-per-program tiles
        check_op(name, x, dy, {"axis": axis}, dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "softmax", "log_softmax"])
def test_stable_for_extreme_inputs(name, dtype, gen):
    x = np.array([[-1e4, 0.5, 1e4], [800.0, -800.0, 3.0], [-1e4, -1e4, -1e4], [50.0, -50.0, 1e-3]])
    if dtype == "float16":
        x = np.clip(x, -6e4, 6e4)
    check_op(name, x, randn(x.shape, gen), {}, dtype)
    assert torch.isfinite(getattr(K, f"{name}_forward")(tt(x, dtype))).all()


def test_small_arguments_accurate(gen):
    # tanh's polynomial branch, softplus's log1p of a tiny exp: relative accuracy where naive formulas cancel
    x = np.concatenate([gen.uniform(-0.7, 0.7, 200), -gen.uniform(5, 80, 50), [1e-6, -3e-7, 0.624, 0.626]])
    for name in ("tanh", "softplus", "sigmoid"):
        y = getattr(K, f"{name}_forward")(tt(x, "float32"))
        ref = getattr(A, f"{name}_forward")(to_numpy(tt(x, "float32")))
        np.testing.assert_allclose(to_numpy(y), ref, rtol=1e-5, atol=0)  # GPU exp is ex2.approx: ~5e-6 at |x| = 80


def test_softmax_inf_and_nan_rows():
    x = np.array([[-np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf], [np.nan, 1.0, 2.0], [np.inf, 1.0, 0.0]])
    xt = tt(x, "float32")
    with np.errstate(invalid="ignore"):
        for name in ("softmax", "log_softmax"):
            y, ref = to_numpy(getattr(K, f"{name}_forward")(xt)), getattr(A, f"{name}_forward")(x)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
            np.testing.assert_allclose(y[0], ref[0], rtol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_backward(activation, gen):
    slope = float(gen.uniform(0.01, 0.5))
    for dtype in DTYPES:
        z, dy = tt(randn((9, 31), gen, scale=2.0), dtype), tt(randn((9, 31), gen), dtype)
        y = K.activation_forward(z, activation, slope)
        assert y.dtype == DTYPES[dtype]
        assert_close(y, A.activation_forward(to_numpy(z), activation, slope), op=activation, dtype=dtype)
        dz = K.activation_backward(dy, y, activation, slope)
        want = A.activation_backward(to_numpy(dy), to_numpy(y), activation, slope)
        assert_close(dz, want, op=activation, dtype=dtype, name=f"{activation} dz")


def test_noncontiguous_inputs(gen):
    base = randn((23, 17, 5), gen)
    x = tt(base, "float32").permute(2, 0, 1)  # 5,23,17 view, not contiguous
    xn = to_numpy(x)
    dy = tt(randn(x.shape, gen), "float32")
    for axis in (0, 1, -1):
        y = K.softmax_forward(x, axis=axis)
        assert_close(y, A.softmax_forward(xn, axis=axis), op="softmax", dtype="float32")
        dx = K.softmax_backward(dy.transpose(0, 1).contiguous().transpose(0, 1), y, axis=axis)
        assert_close(dx, A.softmax_backward(to_numpy(dy), to_numpy(y), axis=axis), op="softmax", dtype="float32")
    assert_close(K.tanh_forward(x), A.tanh_forward(xn), op="tanh", dtype="float32")
    assert_close(K.relu_backward(dy, x), A.relu_backward(to_numpy(dy), xn), op="relu", dtype="float32")


def test_empty_tensors_match_reference():
    for name, shape in (("relu", (0,)), ("softplus", (2, 0)), ("softmax", (0, 4)), ("log_softmax", (3, 0, 2))):
        x = torch.ones(shape, device=DEVICE)
        assert getattr(K, f"{name}_forward")(x).shape == getattr(A, f"{name}_forward")(np.ones(shape)).shape == shape
    empty_axis = torch.ones((3, 0), device=DEVICE)
    assert K.softmax_backward(empty_axis, empty_axis).shape == (3, 0)
    assert K.relu_forward(torch.tensor(-2.0, device=DEVICE)).item() == 0.0  # 0-d


def test_bad_input_raises_like_reference(gen):
    x, short = randn((4, 5), gen), randn((4, 4), gen)
    xt, st = tt(x, "float32"), tt(short, "float32")
    cases = [  # (reference call, triton call): same exception type and message
        (lambda: A.sigmoid_backward(short, x), lambda: K.sigmoid_backward(st, xt)),
        (lambda: A.leaky_relu_backward(x, short), lambda: K.leaky_relu_backward(xt, st)),
        (lambda: A.activation_forward(x, "gelu"), lambda: K.activation_forward(xt, "gelu")),
        (lambda: A.activation_backward(x, x, "swish"), lambda: K.activation_backward(xt, xt, "swish")),
        (lambda: A.activation_backward(x, short, "tanh"), lambda: K.activation_backward(xt, st, "tanh")),
        (lambda: A.softmax_forward(x, axis=2), lambda: K.softmax_forward(xt, axis=2)),
        (
            lambda: A.log_softmax_forward(np.ones((3, 0))),
            lambda: K.log_softmax_forward(torch.ones((3, 0), device=DEVICE)),
        ),
        (lambda: A.tanh_forward([1.0, 2.0]), lambda: K.tanh_forward([1.0, 2.0])),
    ]
    for ref, ours in cases:
        with pytest.raises((ValueError, TypeError)) as want:
            ref()
        with pytest.raises(want.type) as got:
            ours()
        assert str(got.value) == str(want.value)
    with pytest.raises(TypeError, match="floating-point"):
        K.relu_forward(torch.arange(4, device=DEVICE))


def test_numpy_int_float64_and_mixed_dtypes_raise_type_error(gen):
    x = randn((4, 5), gen, dtype=np.float32)
    x32, x16 = tt(x, "float32"), tt(x, "float16")
    for case in (
        lambda: K.sigmoid_forward(x),  # numpy array
        lambda: K.softmax_forward(x),
        lambda: K.relu_backward(torch.ones(3, dtype=torch.int32, device=DEVICE), torch.ones(3, device=DEVICE)),
        lambda: K.tanh_forward(x32.double()),  # float64 is not a Triton storage type here
        lambda: K.relu_backward(x32, x16),
        lambda: K.softmax_backward(x16, x32),
        lambda: K.activation_backward(x32, x16, "sigmoid"),
    ):
        with pytest.raises(TypeError):
            case()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_gpu_realistic_shapes(dtype, gen):
    x, dy = randn((64, 512, 33), gen, scale=3.0), randn((64, 512, 33), gen)
    for name in sorted(FROM_OUTPUT):
        kw = {"axis": 1} if "softmax" in name else {}
        check_op(name, x, dy, kw, dtype)
    rows, drows = randn((4096, 10007), gen, scale=3.0), randn((4096, 10007), gen)  # long rows: two passes
    check_op("log_softmax", rows, drows, {}, dtype)
