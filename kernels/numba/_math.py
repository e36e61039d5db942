"""Scalar math for the Numba kernels: exp, log, log1p, tanh as inline, branch-free polynomials.

numba lowers np.exp / np.log / np.log1p to scalar libm calls (it has no vector math library
unless Intel SVML is installed), and one such call keeps the whole loop around it scalar, 3-10x
slower than torch. These are built from FMA-chained polynomials and exponent-bit arithmetic that
LLVM vectorizes with the caller's loop (inlined: in numba IR, or by LLVM for the ones that divide,
see "numpy's error model" below); each is within 1-4 ulp of the correctly rounded result in float32
and float64 (tests/numba/test_math.py), with IEEE results at the edges (0, inf, NaN). Numba code
only: the pure-Python stubs raise. Activations, losses, linear, conv and the recurrent cells share
them.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._common import JIT

# A call LLVM declines to inline keeps a loop scalar.
INLINE = dict(JIT, inline="always")

# ------------------------------------------------------------------ scalar math (inlined)


def _c(value, like):
    """``value`` as a constant of the float type of ``like`` (a scalar or an array); numba code
    only. A bare Python float would promote float32 arithmetic to float64 (numba's typing rule)."""
    raise NotImplementedError


@overload(_c)
def _c_ovl(value, like):
    cast = as_dtype(like.dtype if isinstance(like, types.Array) else like).type
    return lambda value, like: cast(value)


@intrinsic
def _pow2(typingctx, n):
    """2.0**n from the exponent bits, for n in the normal range: int32 -> float32, int64 -> float64.
    ldexp would be a libm call, which does not vectorize."""
    if n == types.int32:
        sig, bias, shift, fty = types.float32(n), 127, 23, ir.FloatType()
    elif n == types.int64:
        sig, bias, shift, fty = types.float64(n), 1023, 52, ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        ity = args[0].type
        bits = builder.shl(builder.add(args[0], ir.Constant(ity, bias)), ir.Constant(ity, shift))
        return builder.bitcast(bits, fty)

    return sig, codegen


@intrinsic
def _muladd(typingctx, a, b, c):
    """a*b + c as one FMA where the CPU has it (llvm.fmuladd): numba without fast-math never
    contracts, which doubles the cost of a polynomial."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return a(a, b, c), codegen


def _taylor(dtype, degree):
    """1/k! for k = degree..0 (Horner order) in ``dtype``."""
    return tuple(dtype(1.0 / math.factorial(k)) for k in range(degree, -1, -1))


def _atanh_series(dtype, terms):
    """1/(2k+1) for k = terms-1..0 (Horner order): log1p(t) = 2 s sum_k s^2k/(2k+1), s = t/(2+t)."""
    return tuple(dtype(1.0 / (2 * k + 1)) for k in range(terms - 1, -1, -1))


# exp: x = n ln2 + r, |r| <= ln2/2, ln2 split in two (Cody-Waite) so that n*hi is exact;
# Taylor degree 7 (float32) / 13 (float64) leaves < 0.1 ulp of truncation error on |r| <= 0.35.
# Below LO the result is 0. Above HI, n = 128 / 1024 builds 2^n = inf from the exponent bits; that
# overflows from x = 88.4 / 709.4 rather than 88.7 / 709.8, harmless here: every caller passes x <= 0.
_EXP32 = dict(
    lo=np.float32(-87.3), hi=np.float32(88.8), log2e=np.float32(1.4426950408889634), half=np.float32(0.5),
    ln2hi=np.float32(0.693359375), ln2lo=np.float32(-2.12194440e-4), p=_taylor(np.float32, 7),
    zero=np.float32(0.0), ity=np.int32,
)  # fmt: skip
_EXP64 = dict(
    lo=-708.3, hi=709.9, log2e=1.4426950408889634, half=0.5,
    ln2hi=0.693145751953125, ln2lo=1.42860682030941723212e-6, p=_taylor(np.float64, 13),
    zero=0.0, ity=np.int64,
)  # fmt: skip

# log1p on [0, 1] only (softplus's log1p(exp(-|x|))): s^2 <= 1/9, so 7 / 16 terms reach 1 ulp.
_LOG1P32 = _atanh_series(np.float32, 7)
_LOG1P64 = _atanh_series(np.float64, 16)


@njit(**INLINE)
def _horner(z, coeffs):
    p = coeffs[0]
    for i in range(1, len(coeffs)):
        p = _muladd(p, z, coeffs[i])
    return p


def _make_exp_parts(k):
    lo, hi, log2e, half, ln2hi, ln2lo = k["lo"], k["hi"], k["log2e"], k["half"], k["ln2hi"], k["ln2lo"]
    p, ity = k["p"][:-1], k["ity"]  # 1/k! for k = degree..1: expm1(r) = r * horner(r, p)

    def exp_parts(x):
        xc = lo if x < lo else x  # comparisons that let NaN through, to the result
        xc = hi if xc > hi else xc
        n = np.floor(_muladd(xc, log2e, half))
        r = _muladd(-n, ln2lo, _muladd(-n, ln2hi, xc))
        return r * _horner(r, p), _pow2(ity(n))

    return exp_parts


def _exp_parts(x):
    """(q, s) with exp(x) = q s + s: q = expm1(r) on the reduced argument, s = 2^n; numba code only.
    q s + (s - 1) is then expm1(x) without the cancellation of exp(x) - 1 near 0."""
    raise NotImplementedError


@overload(_exp_parts)
def _exp_parts_ovl(x):
    if x == types.float32:
        return _make_exp_parts(_EXP32)
    if x == types.float64:
        return _make_exp_parts(_EXP64)
    return None


def _make_exp(k):
    lo, zero = k["lo"], k["zero"]

    def exp(x):
        q, s = _exp_parts(x)
        return zero if x < lo else _muladd(q, s, s)  # underflow, x = -inf included

    return exp


def _exp(x):
    """exp(x), vectorizable; numba code only (see _EXP32/_EXP64 for its range)."""
    raise NotImplementedError


@overload(_exp)
def _exp_ovl(x):
    if x == types.float32:
        return _make_exp(_EXP32)
    if x == types.float64:
        return _make_exp(_EXP64)
    return None


# log: x = m 2^k with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172,
# so s^2 <= 0.0295 and 5 / 11 series terms leave < 0.1 ulp of truncation; k ln2 with ln2 split in
# two (hi has trailing zero bits, so k*hi is exact). Subnormal x is scaled into the normal range first.
_LOG32 = dict(
    tiny=np.float32(1.17549435e-38), scale=np.float32(2.0**25), nscale=np.float32(25.0),
    ln2hi=np.float32(0.693359375), ln2lo=np.float32(-2.12194440e-4), series=_atanh_series(np.float32, 5),
)  # fmt: skip
_LOG64 = dict(
    tiny=2.2250738585072014e-308, scale=2.0**54, nscale=54.0,
    ln2hi=6.93147180369123816490e-01, ln2lo=1.90821492927058770002e-10, series=_atanh_series(np.float64, 11),
)  # fmt: skip


@intrinsic
def _split_sqrt2(typingctx, x):
    """(m, k) with x = m 2^k, m in [sqrt(1/2), sqrt(2)), k as a float of x's type, for a positive
    normal x: exponent bits shifted out, mantissa re-biased (frexp would be a libm call)."""
    if x == types.float32:
        width, mant, one_bits, sqrth_bits = 32, 23, 0x3F800000, 0x3F3504F3
    elif x == types.float64:
        width, mant, one_bits, sqrth_bits = 64, 52, 0x3FF0000000000000, 0x3FE6A09E667F3BCD
    else:
        return None

    def codegen(context, builder, signature, args):
        fty, ity = args[0].type, ir.IntType(width)
        # adding (1.0 - sqrt(1/2))'s bit distance moves mantissas >= sqrt(2)'s into the next binade
        ix = builder.add(builder.bitcast(args[0], ity), ir.Constant(ity, one_bits - sqrth_bits))
        k = builder.sub(builder.ashr(ix, ir.Constant(ity, mant)), ir.Constant(ity, one_bits >> mant))
        mbits = builder.add(builder.and_(ix, ir.Constant(ity, (1 << mant) - 1)), ir.Constant(ity, sqrth_bits))
        parts = (builder.bitcast(mbits, fty), builder.sitofp(k, fty))
        return context.make_tuple(builder, signature.return_type, parts)

    return types.UniTuple(x, 2)(x), codegen


def _make_log(k):
    tiny, scale, nscale, ln2hi, ln2lo, series = (k[n] for n in ("tiny", "scale", "nscale", "ln2hi", "ln2lo", "series"))
    zero, one, two = (type(tiny)(v) for v in (0.0, 1.0, 2.0))
    inf = type(tiny)(np.inf)

    def log(x):
        sub = x < tiny
        m, e = _split_sqrt2(x * scale if sub else x)
        e = e - nscale if sub else e
        f = m - one
        s = f / (two + f)
        y = _muladd(e, ln2hi, _muladd(e, ln2lo, two * s * _horner(s * s, series)))
        y = -inf if x == zero else y
        y = inf - inf if x < zero else y  # NaN, -inf included
        return x if not (x < inf) else y  # +inf and NaN pass through

    return log


# ------------------------------------------- the functions that divide: numpy's error model
# Compiled on their own with error_model="numpy" and called through an overload inlined at
# numba IR level, so LLVM inlines the compiled body into the caller's loop. Inlined as numba IR
# instead, a division would take the caller's error model, and the kernels keep Python's: its
# ZeroDivisionError check is a branch out of the loop, which then stays scalar (~10x slower).
_NUMPY_ERRORS = dict(error_model="numpy")


def _register(stub, impls):
    """Route numba calls of ``stub`` to ``impls[bitwidth]`` (or ``impls[None]`` for any float)."""

    @overload(stub, inline="always")
    def _ovl(x):
        if isinstance(x, types.Float):
            fn = impls.get(x.bitwidth, impls.get(None))
            return lambda x: fn(x)
        return None

    return stub


def _log(x):
    """log(x) for any float x (0 -> -inf, x < 0 -> NaN, inf and NaN pass), vectorizable; numba code only."""
    raise NotImplementedError


def _log1p(t):
    """log1p(t) for any float t, vectorizable; numba code only.

    Goldberg's correction: u = 1 + t rounds, but log(u) * t / (u - 1) cancels that rounding to a
    few ulp; where u rounds to 1, log1p(t) = t to within half an ulp.
    """
    raise NotImplementedError


def _log1p_unit(t):
    """log1p(t) for t in [0, 1] (NaN propagates), cheaper than _log1p; numba code only."""
    raise NotImplementedError


def _sigmoid(x):
    """1 / (1 + exp(-x)) for any float x, without overflow; numba code only."""
    raise NotImplementedError


def _tanh(x):
    """tanh(x) for any float x, from expm1(-2|x|): no cancellation near 0; numba code only."""
    raise NotImplementedError


_register(_log, {32: njit(**_NUMPY_ERRORS)(_make_log(_LOG32)), 64: njit(**_NUMPY_ERRORS)(_make_log(_LOG64))})


@njit(**_NUMPY_ERRORS)
def _log1p_impl(t):
    u = _c(1.0, t) + t
    d = u - _c(1.0, t)
    y = _log(u) * (t / d)
    y = t if d == _c(0.0, t) else y
    return t if t == _c(np.inf, t) else y  # inf / inf would be NaN


def _make_log1p_unit(coeffs):
    def log1p_unit(t):
        s = t / (_c(2.0, t) + t)
        return _c(2.0, t) * s * _horner(s * s, coeffs)

    return njit(**_NUMPY_ERRORS)(log1p_unit)


@njit(**_NUMPY_ERRORS)
def _sigmoid_impl(x):
    e = _exp(-abs(x))  # in (0, 1]: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below
    r = _c(1.0, x) / (_c(1.0, x) + e)
    return r if x >= 0 else e * r


@njit(**_NUMPY_ERRORS)
def _tanh_impl(x):
    q, s = _exp_parts(_c(-2.0, x) * abs(x))
    m = _muladd(q, s, s - _c(1.0, x))  # expm1(-2|x|) in (-1, 0]
    y = -m / (m + _c(2.0, x))
    return y if x >= 0 else -y


_register(_log1p, {None: _log1p_impl})
_register(_log1p_unit, {32: _make_log1p_unit(_LOG1P32), 64: _make_log1p_unit(_LOG1P64)})
_register(_sigmoid, {None: _sigmoid_impl})
_register(_tanh, {None: _tanh_impl})


@njit(**INLINE)
def _dsigmoid(y):
    """sigmoid' from the output y = sigmoid(x)."""
    return y * (_c(1.0, y) - y)


@njit(**INLINE)
def _dtanh(y):
    """tanh' from the output y = tanh(x)."""
    return _c(1.0, y) - y * y
