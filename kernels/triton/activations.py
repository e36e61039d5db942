"""Activations: Triton kernels with the names, arguments and checks of dlgpu.reference.activations.

Elementwise ops share one forward and one backward kernel, the op picked by a constexpr ``ACT``
(one compiled variant per op, one source). Math is fp32 whatever the storage dtype; every formula
is the reference's stable one: sigmoid from exp(-|x|), softplus = max(x, 0) + log1p(exp(-|x|)),
tanh from exp(-2|x|) with a polynomial near 0 (where 1 - e^-2|x| would cancel). log1p and tanh are
written out here, not libdevice calls, so that the interpreter (no extern functions) runs the very
code the GPU compiles.

softmax / log_softmax reduce along any axis without moving it: the tensor is seen as [A, K, B]
(K the softmax axis), row r = (a, b) starts at a*K*B + b and steps by B. A program takes BLOCK_R
rows; a row of up to BLOCK_K = next_pow2(K) <= _ROW_BLOCK_MAX elements is read once and kept in
registers, a longer one is swept twice (online max/sum, then the write). For B > 1 the tile is
[K, rows], rows on its fast axis, so that the loads stay coalesced without moving the axis.

The jit helpers ``_act`` / ``_act_grad`` and the ACT codes are the fused epilogues of linear.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ...reference._validate import check_activation, check_axis, check_float, check_number, check_same_shape
from ._common import autotune_configs, cdiv, next_pow2, prepare, wrap_triton

# Op codes (constexpr in the kernels); the first five are the fused-epilogue set of linear/conv.
ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "softplus": 5}
NONE = tl.constexpr(0)
RELU = tl.constexpr(1)
LEAKY_RELU = tl.constexpr(2)
SIGMOID = tl.constexpr(3)
TANH = tl.constexpr(4)
SOFTPLUS = tl.constexpr(5)

# Longest row kept in registers by softmax (fp32: 32 KiB per row, 32 registers a thread at 8 warps).
_ROW_BLOCK_MAX = 8192
# Elements per softmax program when rows are short: several rows per program keep programs busy.
_ROW_TILE = 4096

# ------------------------------------------------------------------ scalar math (jit helpers)


@triton.jit
def _sigmoid(x):
    # exp's argument is <= 0: no overflow; for x < 0, e^x / (1 + e^x) keeps the small value exact
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    return tl.where(x >= 0, r, e * r)


@triton.jit
def _tanh(x):
    a = tl.abs(x)
    t = tl.exp(-2.0 * a)  # <= 0.29 where used: 1 - t has no cancellation
    big = (1.0 - t) / (1.0 + t)
    big = tl.where(x < 0, -big, big)
    # |x| < 0.625: Cephes tanhf, x + x^3 P(x^2), within 2 ulp (xs = 0 elsewhere keeps it finite)
    xs = tl.where(a < 0.625, x, 0.0)
    z = xs * xs
    p = (((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z
    small = xs + xs * z * (p - 3.33332819422e-1)
    return tl.where(a < 0.625, small, big)  # NaN fails the test and propagates through big


@triton.jit
def _log1p_unit(t):
    # log1p(t), t in [0, 1]: 2 atanh(s), s = t / (2 + t) <= 1/3, odd series to s^13 (< 1 ulp);
    # log(1 + t) would lose all of a tiny t to the rounding of 1 + t
    s = t / (2.0 + t)
    z = s * s
    p = (((((z * (1.0 / 13) + 1.0 / 11) * z + 1.0 / 9) * z + 1.0 / 7) * z + 1.0 / 5) * z + 1.0 / 3) * z + 1.0
    return 2.0 * s * p


@triton.jit
def _act(x, slope, ACT: tl.constexpr):
    """act(x) for an fp32 block (ACT one of the codes above)."""
    y = x
    if ACT == RELU:
        y = tl.where(x < 0, 0.0, x)  # NaN passes through, as np.maximum
    elif ACT == LEAKY_RELU:
        y = tl.where(x > 0, x, x * slope)
    elif ACT == SIGMOID:
        y = _sigmoid(x)
    elif ACT == TANH:
        y = _tanh(x)
    elif ACT == SOFTPLUS:
        y = tl.where(x > 0, x, 0.0) + _log1p_unit(tl.exp(-tl.abs(x)))
    return y


@triton.jit
def _act_grad(g, s, slope, ACT: tl.constexpr):
    """dy -> dx for an fp32 block: ``s`` is the forward's input (relu, leaky_relu, softplus) or its
    output (sigmoid, tanh); relu/leaky_relu from the output is the same test (sign kept)."""
    d = g
    if ACT == RELU:
        d = tl.where(s > 0, g, 0.0)
    elif ACT == LEAKY_RELU:
        d = tl.where(s > 0, g, g * slope)
    elif ACT == SIGMOID:
        d = g * s * (1.0 - s)
    elif ACT == TANH:
        d = g * (1.0 - s * s)
    elif ACT == SOFTPLUS:
        d = g * _sigmoid(s)
    return d


# ---------------------------------------------------------------------------- kernels

# Elementwise napkin math: forward reads and writes each element once (8 B/elem fp32, 4 B bf16),
# backward reads two and writes one (12 B / 6 B); < 1 flop per byte, so HBM-bound: ~3 TB/s on an
# H100 gives ~0.3 ms per 1e8 fp32 elements forward. BLOCK only trades launch width for ILP.
_EW_CONFIGS = [
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 2048}, num_warps=8),
    triton.Config({"BLOCK": 4096}, num_warps=8),
]


@triton.autotune(configs=autotune_configs(_EW_CONFIGS), key=["N"])
@triton.jit
def _act_fwd_kernel(
    x_ptr,  # [N] input, contiguous
    y_ptr,  # [N] output, x's dtype
    N,  # number of elements
    slope,  # leaky_relu's negative slope (unused by the other ops)
    ACT: tl.constexpr,  # op code
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, _act(x, slope, ACT).to(y_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=autotune_configs(_EW_CONFIGS), key=["N"])
@triton.jit
def _act_bwd_kernel(
    dy_ptr,  # [N] upstream gradient
    s_ptr,  # [N] what the forward saved: its input or its output (see _act_grad)
    dx_ptr,  # [N] output gradient
    N,  # number of elements
    slope,  # leaky_relu's negative slope
    ACT: tl.constexpr,  # op code
    BLOCK: tl.constexpr,  # elements per program
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(dx_ptr + offs, _act_grad(g, s, slope, ACT).to(dx_ptr.dtype.element_ty), mask=mask)


# Row kernels: softmax forward reads and writes each element once (8 B/elem fp32) when the row
# fits in registers (K <= 8192), one more read (12 B) beyond; ~5 flops per element: HBM-bound,
# ~0.3 ms per 1e8 fp32 elements on an H100. Only num_warps is tuned: the blocks follow K.
# (4 warps on an 8192-element tile spill registers: compiled for sm_90 to check.)
_ROW_CONFIGS = [
    triton.Config({}, num_warps=8),
    triton.Config({}, num_warps=16),
]


@triton.jit
def _row_offsets(pid, k0, R, K, INNER, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, TRANS: tl.constexpr):
    """Offsets of elements k0.. of rows pid*BLOCK_R.. of an [A, K, INNER] tensor, and their mask:
    [BLOCK_R, BLOCK_K], or [BLOCK_K, BLOCK_R] when TRANS. For INNER > 1 neighbouring rows are
    neighbouring addresses: rows on the fastest (last) axis keep the loads coalesced."""
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    base = (rows // INNER) * K * INNER + rows % INNER  # row (a, b) starts at a*K*B + b
    ks = k0 + tl.arange(0, BLOCK_K)
    if TRANS:
        offs = base[None, :] + ks.to(tl.int64)[:, None] * INNER
        mask = (rows < R)[None, :] & (ks < K)[:, None]
    else:
        offs = base[:, None] + ks.to(tl.int64)[None, :] * INNER
        mask = (rows < R)[:, None] & (ks < K)[None, :]
    return offs, mask


@triton.autotune(configs=autotune_configs(_ROW_CONFIGS), key=["R", "K", "INNER"])
@triton.jit
def _softmax_fwd_kernel(
    x_ptr,  # [A, K, INNER] input, contiguous
    y_ptr,  # [A, K, INNER] output
    R, K, INNER,  # rows (A * INNER), softmax length, stride between a row's elements
    LOG: tl.constexpr,  # log_softmax instead of softmax
    ONE_PASS: tl.constexpr,  # K <= BLOCK_K: the row stays in registers
    TRANS: tl.constexpr,  # tiles are [K, rows] (INNER > 1), else [rows, K]
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,  # rows per program, elements per row chunk
):  # fmt: skip
    pid = tl.program_id(0)
    AX: tl.constexpr = 0 if TRANS else 1  # the softmax axis of a tile
    if ONE_PASS:
        offs, mask = _row_offsets(pid, 0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
        x = tl.load(x_ptr + offs, mask=mask, other=-float("inf")).to(tl.float32)
        m = tl.max(x, axis=AX)
        m = tl.where(m == -float("inf"), 0.0, m)  # all -inf: keep exp's argument -inf, not NaN
        z = x - tl.expand_dims(m, AX)
        e = tl.exp(z)
        s = tl.sum(e, axis=AX)
        if LOG:
            y = z - tl.expand_dims(tl.log(s), AX)
        else:
            y = e / tl.expand_dims(s, AX)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        # pass 1, online: s is the sum of exp(x - m) for the running max m, rescaled when m grows
        m = tl.full((BLOCK_R,), -float("inf"), tl.float32)
        s = tl.zeros((BLOCK_R,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs, mask = _row_offsets(pid, k0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
            x = tl.load(x_ptr + offs, mask=mask, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=AX))
            shift = tl.where(m_new == -float("inf"), 0.0, m_new)
            s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - tl.expand_dims(shift, AX)), axis=AX)
            m = m_new
        m = tl.expand_dims(tl.where(m == -float("inf"), 0.0, m), AX)
        log_s = tl.expand_dims(tl.log(s), AX)
        s = tl.expand_dims(s, AX)
        for k0 in range(0, K, BLOCK_K):
            offs, mask = _row_offsets(pid, k0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
            z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32) - m
            if LOG:
                y = z - log_s
            else:
                y = tl.exp(z) / s
            tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=autotune_configs(_ROW_CONFIGS), key=["R", "K", "INNER"])
@triton.jit
def _softmax_bwd_kernel(
    dy_ptr,  # [A, K, INNER] upstream gradient
    y_ptr,  # [A, K, INNER] the forward's output
    dx_ptr,  # [A, K, INNER] output gradient
    R, K, INNER,  # rows, softmax length, stride between a row's elements
    LOG: tl.constexpr,  # log_softmax: dx = dy - exp(y) sum(dy); softmax: dx = y (dy - sum(dy y))
    ONE_PASS: tl.constexpr,  # K <= BLOCK_K: the row stays in registers
    TRANS: tl.constexpr,  # tiles are [K, rows] (INNER > 1), else [rows, K]
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,  # rows per program, elements per row chunk
):  # fmt: skip
    pid = tl.program_id(0)
    AX: tl.constexpr = 0 if TRANS else 1  # the softmax axis of a tile
    if ONE_PASS:
        offs, mask = _row_offsets(pid, 0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
        g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if LOG:
            dx = g - tl.exp(y) * tl.expand_dims(tl.sum(g, axis=AX), AX)
        else:
            dx = y * (g - tl.expand_dims(tl.sum(g * y, axis=AX), AX))
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    else:
        tot = tl.zeros((BLOCK_R,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs, mask = _row_offsets(pid, k0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
            g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            if not LOG:
                g = g * tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            tot += tl.sum(g, axis=AX)
        tot = tl.expand_dims(tot, AX)
        for k0 in range(0, K, BLOCK_K):
            offs, mask = _row_offsets(pid, k0, R, K, INNER, BLOCK_R, BLOCK_K, TRANS)
            g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            if LOG:
                dx = g - tl.exp(y) * tot
            else:
                dx = y * (g - tot)
            tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- wrappers


def _grid(n: int):
    return lambda meta: (cdiv(n, meta["BLOCK"]),)


def _unary(x, act: str, slope: float = 0.0) -> torch.Tensor:
    x = prepare(x, "x")
    y = torch.empty_like(x)
    if x.numel():
        wrap_triton(_act_fwd_kernel)[_grid(x.numel())](x, y, x.numel(), float(slope), ACT=ACT_CODES[act])
    return y


def _binary(dy, saved, saved_name: str, act: str, slope: float = 0.0) -> torch.Tensor:
    """Backward of an elementwise op: ``saved`` is the forward's x or y."""
    dy = prepare(dy, "dy")
    saved = prepare(saved, saved_name, dy.dtype, dy.device)
    dx = torch.empty_like(dy)
    if dy.numel():
        wrap_triton(_act_bwd_kernel)[_grid(dy.numel())](dy, saved, dx, dy.numel(), float(slope), ACT=ACT_CODES[act])
    return dx


def relu_forward(x: torch.Tensor) -> torch.Tensor:
    """y = max(0, x)."""
    check_float(x, "x")
    return _unary(x, "relu")


def relu_backward(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dx = dy * [x > 0]; the subgradient at x = 0 is taken as 0 (as torch does)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "relu")


def leaky_relu_forward(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """y = x if x > 0 else negative_slope * x."""
    check_float(x, "x")
    return _unary(x, "leaky_relu", check_number(negative_slope, "negative_slope"))


def leaky_relu_backward(dy: torch.Tensor, x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """dx = dy if x > 0 else negative_slope * dy (slope at 0 is negative_slope, as torch)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "leaky_relu", check_number(negative_slope, "negative_slope"))


def sigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    """y = 1 / (1 + exp(-x)), without overflow for large |x|."""
    check_float(x, "x")
    return _unary(x, "sigmoid")


def sigmoid_backward(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dx = dy * y * (1 - y), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(dy, y, "y", "sigmoid")


def tanh_forward(x: torch.Tensor) -> torch.Tensor:
    """y = tanh(x)."""
    check_float(x, "x")
    return _unary(x, "tanh")


def tanh_backward(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dx = dy * (1 - y^2), from the forward's output y."""
    check_same_shape(y, dy, "y", "dy")
    return _binary(dy, y, "y", "tanh")


def softplus_forward(x: torch.Tensor) -> torch.Tensor:
    """y = max(x, 0) + log1p(exp(-|x|)), stable for any x."""
    check_float(x, "x")
    return _unary(x, "softplus")


def softplus_backward(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dx = dy * sigmoid(x)."""
    check_same_shape(x, dy, "x", "dy")
    return _binary(dy, x, "x", "softplus")


def _row_launch(kernel, tensors, shape: tuple[int, ...], axis: int, log: bool) -> None:
    """Launch a row kernel over ``axis`` of contiguous tensors of ``shape`` (see module docstring)."""
    k = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    rows = math.prod(shape) // k
    block_k = min(next_pow2(k), _ROW_BLOCK_MAX)
    block_r = max(1, min(next_pow2(rows), _ROW_TILE // block_k))
    grid = (cdiv(rows, block_r),)
    wrap_triton(kernel)[grid](
        *tensors, rows, k, inner,
        LOG=log, ONE_PASS=k <= block_k, TRANS=inner > 1, BLOCK_R=block_r, BLOCK_K=block_k,
    )  # fmt: skip


def _rowwise_forward(x, axis: int, log: bool) -> torch.Tensor:
    check_float(x, "x")
    x = prepare(x, "x")
    axis = check_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x must have at least one element along axis {axis}, got shape {tuple(x.shape)}")
    y = torch.empty_like(x)
    if x.numel():
        _row_launch(_softmax_fwd_kernel, (x, y), tuple(x.shape), axis, log)
    return y


def _rowwise_backward(dy, y, axis: int, log: bool) -> torch.Tensor:
    check_same_shape(y, dy, "y", "dy")
    dy = prepare(dy, "dy")
    y = prepare(y, "y", dy.dtype, dy.device)
    axis = check_axis(axis, dy.ndim)
    dx = torch.empty_like(dy)
    if dy.numel():
        _row_launch(_softmax_bwd_kernel, (dy, y, dx), tuple(dy.shape), axis, log)
    return dx


def softmax_forward(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """y_k = exp(x_k - m) / sum_j exp(x_j - m), m = max_j x_j."""
    return _rowwise_forward(x, axis, False)


def softmax_backward(dy: torch.Tensor, y: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """dx_k = y_k * (dy_k - sum_j dy_j y_j)."""
    return _rowwise_backward(dy, y, axis, False)


def log_softmax_forward(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """y_k = x_k - m - log sum_j exp(x_j - m), m = max_j x_j."""
    return _rowwise_forward(x, axis, True)


def log_softmax_backward(dy: torch.Tensor, y: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """dx_k = dy_k - exp(y_k) * sum_j dy_j, from the forward's output y = log softmax(x)."""
    return _rowwise_backward(dy, y, axis, True)


# ---------------------------------------------------- fused epilogues (linear, conv)


def activation_forward(z: torch.Tensor, activation: str = "none", negative_slope: float = 0.01) -> torch.Tensor:
    """Apply a named activation (the set a fused linear/conv epilogue supports)."""
    check_activation(activation, negative_slope)
    if activation == "none":
        return prepare(z, "z")
    check_float(z, "x")
    return _unary(z, activation, negative_slope)


def activation_backward(
    dy: torch.Tensor, out: torch.Tensor, activation: str = "none", negative_slope: float = 0.01
) -> torch.Tensor:
    """Gradient through a named activation, from the activation's *output* ``out``
    (relu and leaky_relu keep the sign of their input for negative_slope > 0)."""
    check_activation(activation, negative_slope)
    if activation == "none":
        return prepare(dy, "dy")
    names = ("x", "dy") if activation in ("relu", "leaky_relu") else ("y", "dy")
    check_same_shape(out, dy, *names)
    return _binary(dy, out, names[0], activation, negative_slope)
