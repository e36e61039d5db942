"""The vectorizable scalar math of kernels/numba/_math.py against numpy, in ulps.

The reference is numpy's libm in a wider type (float64 for float32, long double for float64),
rounded to the tested type; errors are counted in ulps of the correctly rounded result.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from dlgpu.kernels.numba._math import _exp, _log, _log1p, _log1p_unit, _sigmoid, _tanh

WIDE = {np.float32: np.float64, np.float64: np.longdouble}
DTYPES = [np.float32, np.float64]


def _vectorized(fn):
    @njit  # the kernels' error model (kernels/numba/_common.JIT): a division by zero would raise
    def apply(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    def run(x):
        out = np.full_like(x, np.nan)  # poisoned: a skipped element cannot pass
        apply(x, out)
        return out

    return run


FUNCS = {
    name: _vectorized(fn)
    for name, fn in (("exp", _exp), ("log", _log), ("log1p", _log1p), ("log1p_unit", _log1p_unit),
                     ("tanh", _tanh), ("sigmoid", _sigmoid))
}  # fmt: skip
NUMPY = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "log1p_unit": np.log1p, "tanh": np.tanh,
         "sigmoid": lambda x: 1 / (1 + np.exp(-x))}  # fmt: skip


def _ulps(got, x, name, dtype):
    with np.errstate(all="ignore"):
        ref = NUMPY[name](x.astype(WIDE[dtype])).astype(dtype)
    finite = np.isfinite(ref)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{name}: NaN where numpy has none (or the reverse)"
    assert np.array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)]), f"{name}: wrong infinities"
    err = np.abs(got[finite].astype(WIDE[dtype]) - ref[finite]) / np.spacing(np.abs(ref[finite])).astype(WIDE[dtype])
    return float(err.max()) if err.size else 0.0


def _inputs(name, dtype, rng):
    info = np.finfo(dtype)
    wide = np.exp(rng.uniform(np.log(info.tiny), np.log(info.max), 20000))  # every binade, log-uniform
    near1 = 1 + rng.uniform(-0.3, 0.3, 5000)
    if name == "log":
        x = np.concatenate([wide, near1, [info.smallest_subnormal, info.tiny * 0.3, info.tiny, 1.0, info.max]])
    elif name == "log1p":
        tiny = np.exp(rng.uniform(np.log(info.tiny), 0, 5000))
        x = np.concatenate([wide, -rng.uniform(0, 1, 5000), tiny, -tiny, near1 - 1, [0.0, -0.0, -1.0, info.max]])
    elif name == "log1p_unit":
        x = np.concatenate([rng.uniform(0, 1, 20000), np.exp(rng.uniform(np.log(info.tiny), 0, 5000)), [0.0, 1.0]])
    elif name == "exp":
        lo = -87.0 if dtype == np.float32 else -708.0
        x = np.concatenate([rng.uniform(lo, 88.0 if dtype == np.float32 else 709.0, 20000), [0.0, -0.0, lo]])
    else:  # tanh, sigmoid
        x = np.concatenate([rng.uniform(-20, 20, 20000), rng.uniform(-1, 1, 5000) * 1e-3, [0.0, 0.625, -0.625]])
        if name == "sigmoid":
            x = np.concatenate([x, rng.uniform(-80, 80, 5000), [-1e4, 1e4]])
    return x.astype(dtype)


# ulp bounds: what these polynomials reach, with a little headroom (the float32 tolerance of the
# op table is far looser; these catch a wrong coefficient or a lost correction term)
BOUND = {"exp": 2, "log": 2, "log1p": 4, "log1p_unit": 3, "tanh": 3, "sigmoid": 3}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(FUNCS))
def test_accuracy_in_ulps(name, dtype):
    rng = np.random.default_rng(7)
    x = _inputs(name, dtype, rng)
    err = _ulps(FUNCS[name](x), x, name, dtype)
    assert err <= BOUND[name], f"{name} {np.dtype(dtype).name}: max error {err:.2f} ulp"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_log_edges(dtype):
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan], dtype=dtype)
    got = FUNCS["log"](x)
    np.testing.assert_array_equal(got, np.array([-np.inf, -np.inf, np.nan, np.nan, np.inf, np.nan], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_log1p_edges(dtype):
    x = np.array([0.0, -1.0, -2.0, -np.inf, np.inf, np.nan, 1e-30], dtype=dtype)
    got = FUNCS["log1p"](x)
    want = np.array([0.0, -np.inf, np.nan, np.nan, np.inf, np.nan, 1e-30], dtype=dtype)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sigmoid_tanh_edges(dtype):
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0], dtype=dtype)
    np.testing.assert_array_equal(FUNCS["sigmoid"](x), np.array([0.0, 1.0, np.nan, 0.5, 0.5], dtype=dtype))
    np.testing.assert_array_equal(FUNCS["tanh"](x), np.array([-1.0, 1.0, np.nan, 0.0, -0.0], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_exp_edges(dtype):
    x = np.array([-np.inf, -1e4, np.nan, 0.0], dtype=dtype)
    np.testing.assert_array_equal(FUNCS["exp"](x), np.array([0.0, 0.0, np.nan, 1.0], dtype=dtype))
