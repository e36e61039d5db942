"""2-D convolution with a fused activation: Numba CPU kernels with the names, arguments and checks of
dlgpu.reference.conv.

Forward: one parallel region. Each task is (image, group, block of output rows); its thread builds
the block's im2col columns [C/G*KH*KW, rows*P] (see "column builders") in its own buffer, runs one
BLAS GEMM W_g [O/G, K] @ cols, and applies bias + activation while the result is still in cache,
writing y. A 1x1 kernel with stride 1 and no padding uses x itself as the columns.

Backward: one parallel region over (image, group) tasks. Per block of rows a thread forms
dz = dy * act'(out) (fused, with the db row sums), gathers the columns, accumulates
dW_g += dz @ cols^T in its own partial (GEMM), forms dcols = W_g^T @ dz (GEMM) and scatters it into
dx (col2im). A task owns every dx element of its image and group, so no two threads write the same
element; the per-thread dW and db partials are summed at the end. (With fewer (image, group) pairs
than threads, the backward leaves threads idle: its row blocks would race in col2im.)

Why BLAS runs single-threaded inside the prange (``serial_blas``): on the 2-core target, alternating
numba's OpenMP regions with OpenBLAS's own threads makes each pool's spin-waiting workers starve
the other's (measured 5-40x slower than either alone on a busy machine), and OpenBLAS called with
threads inside an OpenMP region warns and may hang. Parallelism over independent GEMMs has neither
problem.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator, Sequence

import numba
import numpy as np
from numba import njit, prange

from ...reference._validate import check_activation, check_float, check_same_shape, check_shape, pair
from ...reference.conv import _check, conv2d_output_shape
from ._common import JIT, PJIT, prepare, prepare_optional
from ._math import _c, _sigmoid, _tanh
from .activations import ACT_CODES, LEAKY_RELU, NONE, RELU, SIGMOID

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_output_shape"]

# Bytes of im2col columns per thread: larger images are processed in blocks of output rows. Whole
# 32x32 images (2.5 MB of float32 columns for 64 channels, 3x3) measured a little faster than 8-row
# blocks that fit L2: the halo rows each block re-pads cost more than the L3 traffic saved.
_COLS_BYTES = 1 << 22

INLINE = dict(JIT, inline="always")

# ------------------------------------------------------------ single-threaded BLAS in prange

_blas_lock = threading.Lock()
_blas_state = {"users": 0, "saved": 1, "api": None, "probed": False}


def _blas_thread_api() -> tuple | None:
    """(get, set) thread-count functions of the BLAS behind numba's np.dot (scipy.linalg.cython_blas,
    whose dependencies dlsym searches), or None for a BLAS we do not know how to steer."""
    if not _blas_state["probed"]:
        _blas_state["probed"] = True
        try:
            from scipy.linalg import cython_blas

            lib = ctypes.CDLL(cython_blas.__file__)
        except (ImportError, OSError):
            return None
        for prefix in ("scipy_openblas_", "openblas_"):
            get = getattr(lib, prefix + "get_num_threads", None)
            put = getattr(lib, prefix + "set_num_threads", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                _blas_state["api"] = (get, put)
                break
    return _blas_state["api"]


@contextlib.contextmanager
def serial_blas() -> Iterator[int]:
    """Run a block whose prange tasks call np.dot; yields the number of numba threads to use.

    With a BLAS whose thread count can be set, BLAS goes single-threaded for the block (restored by
    the last of concurrent users) and every numba thread runs its own GEMMs. Otherwise numba goes
    single-threaded for the block (its setting is per calling thread) and BLAS keeps its threads.
    """
    api = _blas_thread_api()
    if api is None:
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield 1
        finally:
            numba.set_num_threads(before)
        return
    get, put = api
    with _blas_lock:
        if _blas_state["users"] == 0:
            _blas_state["saved"] = get()
            put(1)
        _blas_state["users"] += 1
    try:
        yield numba.get_num_threads()
    finally:
        with _blas_lock:
            _blas_state["users"] -= 1
            if _blas_state["users"] == 0:
                put(_blas_state["saved"])


# ------------------------------------------------------------------ column builders
# Columns cols [Cg*KH*KW, rows*P] (row order c, u, v: the flattening of weight [O, C/G, KH, KW]) for
# a block of output rows i0..i1-1, with a row pitch P >= OW:
# * stride 1 ("pitch" path): the block's input rows are copied once, zero-padded, into a buffer of
#   row pitch P = W + 2pw; the column row of tap (u, v) is then ONE contiguous slice of it, at
#   offset u*dh*P + v*dw, so im2col is a memcpy per (c, u, v). Output columns j >= OW of each row
#   are junk the GEMM computes and the epilogue drops ((P - OW) / P of the GEMM is wasted).
# * any stride ("gather" path): P = OW, a strided gather per output row with zeros in the padding.


@njit(**INLINE)
def _valid_range(off, stride, size, n_out):
    """[j0, j1): the outputs j whose input position j*stride + off lies in [0, size)."""
    j0 = 0 if off >= 0 else (-off + stride - 1) // stride
    last = size - 1 - off
    j1 = 0 if last < 0 else min(n_out, last // stride + 1)
    j0 = min(j0, n_out)
    return j0, max(j0, j1)


# Every inner loop below indexes only with its own loop variable, on a slice taken outside it:
# an index like ``a[off + p]`` with a runtime ``off`` keeps numba's negative-index wraparound
# branch in the loop, which stops LLVM from vectorizing it (measured 8x slower copies).


@njit(**INLINE)
def _zero(a):
    for i in range(a.size):
        a[i] = _c(0.0, a)


@njit(**INLINE)
def _copy(dst, src):
    for i in range(dst.size):
        dst[i] = src[i]


@njit(**INLINE)
def _add(dst, src):
    for i in range(dst.size):
        dst[i] += src[i]


@njit(**INLINE)
def _gather_tap(plane, dst, roff, coff, sh, sw, i0, i1, ow):
    """dst[(i-i0)*OW + j] = plane[i*sh + roff, j*sw + coff] for rows i0..i1-1, zero in the padding."""
    h, w = plane.shape
    j0, j1 = _valid_range(coff, sw, w, ow)
    for i in range(i0, i1):
        hi = i * sh + roff
        d = dst[(i - i0) * ow : (i - i0 + 1) * ow]
        if 0 <= hi < h and j1 > j0:
            _zero(d[:j0])
            if sw == 1:  # a contiguous source (a runtime step would type even step 1 as strided)
                _copy(d[j0:j1], plane[hi, j0 + coff : j1 + coff])
            else:
                _copy(d[j0:j1], plane[hi, j0 * sw + coff : (j1 - 1) * sw + coff + 1 : sw])
            _zero(d[j1:])
        else:  # a padding row
            _zero(d)


@njit(**INLINE)
def _scatter_tap(plane, src, roff, coff, sh, sw, i0, i1, ow):
    """plane[i*sh + roff, j*sw + coff] += src[(i-i0)*OW + j] for the positions inside the plane."""
    h, w = plane.shape
    j0, j1 = _valid_range(coff, sw, w, ow)
    for i in range(i0, i1):
        hi = i * sh + roff
        if 0 <= hi < h and j1 > j0:
            part = src[(i - i0) * ow + j0 : (i - i0) * ow + j1]
            if sw == 1:
                _add(plane[hi, j0 + coff : j1 + coff], part)
            else:
                _add(plane[hi, j0 * sw + coff : (j1 - 1) * sw + coff + 1 : sw], part)


@njit(**INLINE)
def _pad_block(x, b, c0, xblk, hi0, pw):
    """xblk[c, r*P : (r+1)*P] = row hi0 + r of channel c0 + c, zero-padded by pw on both sides
    (and all zero outside the image); the slack past the last row is zeroed too."""
    h, w = x.shape[2], x.shape[3]
    p = w + 2 * pw
    nr = xblk.shape[1] // p
    for c in range(xblk.shape[0]):
        dst = xblk[c]
        for r in range(nr):
            d = dst[r * p : (r + 1) * p]
            if 0 <= hi0 + r < h:
                _zero(d[:pw])
                _copy(d[pw : pw + w], x[b, c0 + c, hi0 + r])
                _zero(d[pw + w :])
            else:
                _zero(d)
        _zero(dst[nr * p :])


@njit(**INLINE)
def _unpad_block(dxblk, dx, b, c0, hi0, pw):
    """dx[b, c0 + c, hi0 + r] += the interior of dxblk's row r (rows inside the image only)."""
    h, w = dx.shape[2], dx.shape[3]
    p = w + 2 * pw
    for c in range(dxblk.shape[0]):
        src = dxblk[c]
        for r in range(max(0, -hi0), min(dxblk.shape[1] // p, h - hi0)):
            _add(dx[b, c0 + c, hi0 + r], src[r * p + pw : r * p + pw + w])


@njit(**JIT)
def _columns(x, b, c0, cols, xblk, geo, i0, i1):
    """cols [Cg*KH*KW, (i1-i0)*P] for output rows i0..i1-1 of image b, channels c0..c0+Cg-1."""
    kh, kw, sh, sw, ph, pw, dh, dw, _, ow, _, pitch = geo
    cg = cols.shape[0] // (kh * kw)
    size = cols.shape[1]
    if pitch != ow:  # stride 1: copy the padded rows once, then one slice per tap
        _pad_block(x, b, c0, xblk, i0 - ph, pw)
        for cl in range(cg):
            for u in range(kh):
                for v in range(kw):
                    off = u * dh * pitch + v * dw
                    _copy(cols[(cl * kh + u) * kw + v], xblk[cl, off : off + size])
    else:
        for cl in range(cg):
            plane = x[b, c0 + cl]
            for u in range(kh):
                for v in range(kw):
                    _gather_tap(plane, cols[(cl * kh + u) * kw + v], u * dh - ph, v * dw - pw, sh, sw, i0, i1, ow)


@njit(**JIT)
def _columns_t(dcols, dx, b, c0, dxblk, geo, i0, i1):
    """dx[b, c0 + c] += the transpose of _columns applied to dcols (col2im)."""
    kh, kw, sh, sw, ph, pw, dh, dw, _, ow, _, pitch = geo
    cg = dcols.shape[0] // (kh * kw)
    size = dcols.shape[1]
    if pitch != ow:
        for cl in range(cg):
            _zero(dxblk[cl])
            for u in range(kh):
                for v in range(kw):
                    off = u * dh * pitch + v * dw
                    _add(dxblk[cl, off : off + size], dcols[(cl * kh + u) * kw + v])
        _unpad_block(dxblk, dx, b, c0, i0 - ph, pw)
    else:
        for cl in range(cg):
            plane = dx[b, c0 + cl]
            for u in range(kh):
                for v in range(kw):
                    _scatter_tap(plane, dcols[(cl * kh + u) * kw + v], u * dh - ph, v * dw - pw, sh, sw, i0, i1, ow)


# ------------------------------------------------------------------- fused epilogues


@njit(**JIT)
def _bias_act(src, dst, beta, act, slope, rows, pitch, width):
    """dst[r*width + j] = act(src[r*pitch + j] + beta) for j < width: the epilogue of a block of
    ``rows`` output rows (pitch > width drops the junk columns). src may be dst (pitch == width).
    The activation branch sits outside the loops so that each loop vectorizes."""
    for r in range(rows):
        s, d = src[r * pitch : r * pitch + width], dst[r * width : (r + 1) * width]
        if act == NONE:
            for i in range(width):
                d[i] = s[i] + beta
        elif act == RELU:
            for i in range(width):
                z = s[i] + beta
                d[i] = z if z > 0 else _c(0.0, z)
        elif act == LEAKY_RELU:
            for i in range(width):
                z = s[i] + beta
                d[i] = z if z > 0 else z * slope
        elif act == SIGMOID:
            for i in range(width):
                d[i] = _sigmoid(s[i] + beta)
        else:
            for i in range(width):
                d[i] = _tanh(s[i] + beta)


@njit(**JIT)
def _act_grad(dy, out, dz, act, slope, rows, pitch, width):
    """dz[r*pitch + j] = dy * act'(out) at [r*width + j], from the activation's output ``out``, and
    zero in the junk columns width..pitch-1 of each row."""
    for r in range(rows):
        g, v, d = dy[r * width : (r + 1) * width], out[r * width : (r + 1) * width], dz[r * pitch : (r + 1) * pitch]
        if act == NONE:
            for i in range(width):
                d[i] = g[i]
        elif act == RELU:
            for i in range(width):
                d[i] = g[i] if v[i] > 0 else _c(0.0, d)
        elif act == LEAKY_RELU:
            for i in range(width):
                d[i] = g[i] if v[i] > 0 else g[i] * slope
        elif act == SIGMOID:
            for i in range(width):
                d[i] = g[i] * v[i] * (_c(1.0, d) - v[i])
        else:
            for i in range(width):
                d[i] = g[i] * (_c(1.0, d) - v[i] * v[i])
        for i in range(width, pitch):
            d[i] = _c(0.0, d)


@njit(**dict(JIT, fastmath={"reassoc"}))
def _row_sum(a):
    """sum(a) in a's dtype; reassoc gives one partial sum per vector lane, which vectorizes the loop
    and sums like a pairwise tree (more accurate than one long chain)."""
    s = _c(0.0, a)
    for i in range(a.size):
        s += a[i]
    return s


# -------------------------------------------------------------------------- kernels


# The prange kernels only hand each thread its slot: the per-thread work is a plain njit function
# over that thread's own scratch, writing only that scratch and the outputs its tasks own.


@njit(**JIT)
def _conv2d_fwd_thread(t, nt, x, x4, w3, bias, y4, cols, zbuf, xbuf, geo, act, slope):
    """Thread t's tasks (image, group, row block), round robin; cols, zbuf, xbuf are its scratch."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rows, pitch = geo
    n = x.shape[0]
    groups, og, k = w3.shape
    cg = x.shape[1] // groups
    nblk = (oh + rows - 1) // rows
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and nblk == 1
    compact = pitch == ow
    for task in range(t, n * groups * nblk, nt):
        b, g, blk = task // (groups * nblk), (task // nblk) % groups, task % nblk
        i0 = blk * rows
        i1 = min(oh, i0 + rows)
        lb = (i1 - i0) * pitch
        if direct:  # x is its own column matrix
            c = x4[b, g]
        else:
            c = cols[: k * lb].reshape(k, lb)
            nin = (i1 - i0 + (kh - 1) * dh) * pitch + (kw - 1) * dw if not compact else 0
            _columns(x, b, g * cg, c, xbuf[: cg * nin].reshape(cg, nin), geo, i0, i1)
        z = y4[b, g] if nblk == 1 and compact else zbuf[: og * lb].reshape(og, lb)
        np.dot(w3[g], c, z)  # Og,rows*P
        nr, width = (1, (i1 - i0) * ow) if compact else (i1 - i0, ow)
        for oc in range(og):
            beta = bias[g * og + oc] if bias.size else _c(0.0, z)
            _bias_act(z[oc], y4[b, g, oc, i0 * ow : i1 * ow], beta, act, slope, nr, lb // nr, width)


@njit(**PJIT)
def _conv2d_fwd_kernel(x, x4, w3, bias, y4, cols, zbuf, xbuf, geo, act, slope):
    """x [N, C, H, W] (x4: its [N, G, Cg, H*W] view), w3 [G, Og, K], bias [O] or empty,
    y4 [N, G, Og, OH*OW]; per-thread scratch rows cols [T, K*rows*P], zbuf [T, Og*rows*P] and xbuf
    (the padded input rows of the pitch path)."""
    nt = cols.shape[0]
    for t in prange(nt):
        _conv2d_fwd_thread(t, nt, x, x4, w3, bias, y4, cols[t], zbuf[t], xbuf[t], geo, act, slope)


@njit(**JIT)
def _conv2d_bwd_thread(t, nt, dy4, out4, x, x4, w3, dx, dx4, dwp, dbp, cols, dzbuf, xbuf, wbuf, geo, act, slope):
    """Thread t's (image, group) tasks, round robin; dwp [G, Og, K] and dbp [O] are its partials."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rows, pitch = geo
    n = x.shape[0]
    groups, og, k = w3.shape
    cg = x.shape[1] // groups
    nblk = (oh + rows - 1) // rows
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and nblk == 1
    compact = pitch == ow
    _zero(dwp.reshape(-1))
    dbp[:] = 0.0
    for task in range(t, n * groups, nt):
        b, g = task // groups, task % groups
        if not direct:
            _zero(dx[b, g * cg : (g + 1) * cg].reshape(-1))
        for blk in range(nblk):
            i0 = blk * rows
            i1 = min(oh, i0 + rows)
            lb = (i1 - i0) * pitch
            dz = dzbuf[: og * lb].reshape(og, lb)  # Og,rows*P with zero junk columns
            nr, width = (1, (i1 - i0) * ow) if compact else (i1 - i0, ow)
            s0, s1 = i0 * ow, i1 * ow
            for oc in range(og):
                _act_grad(dy4[b, g, oc, s0:s1], out4[b, g, oc, s0:s1], dz[oc], act, slope, nr, lb // nr, width)
                dbp[g * og + oc] += _row_sum(dz[oc])
            if direct:
                np.dot(dz, x4[b, g].T, wbuf)  # Og,K
                _add(dwp[g].reshape(-1), wbuf.reshape(-1))
                np.dot(w3[g].T, dz, dx4[b, g])  # the whole dx plane, nothing to accumulate
            else:
                c = cols[: k * lb].reshape(k, lb)
                nin = (i1 - i0 + (kh - 1) * dh) * pitch + (kw - 1) * dw if not compact else 0
                xblk = xbuf[: cg * nin].reshape(cg, nin)
                _columns(x, b, g * cg, c, xblk, geo, i0, i1)
                np.dot(dz, c.T, wbuf)  # Og,K
                _add(dwp[g].reshape(-1), wbuf.reshape(-1))
                np.dot(w3[g].T, dz, c)  # dcols overwrite the columns: K,rows*P
                _columns_t(c, dx, b, g * cg, xblk, geo, i0, i1)


@njit(**PJIT)
def _conv2d_bwd_kernel(dy4, out4, x, x4, w3, dx, dx4, dwp, dbp, cols, dzbuf, xbuf, wbuf, geo, act, slope):
    """dy4, out4 [N, G, Og, OH*OW]; x, dx [N, C, H, W] (x4, dx4: [N, G, Cg, H*W] views); w3 [G, Og, K];
    per-thread partials dwp [T, G, Og, K], dbp [T, O] (float64) and scratch cols, dzbuf, xbuf (as in
    the forward), wbuf [T, Og, K]. One task per (image, group): it owns dx[b, group's channels], so
    col2im never races."""
    nt = cols.shape[0]
    for t in prange(nt):
        _conv2d_bwd_thread(
            t, nt, dy4, out4, x, x4, w3, dx, dx4, dwp[t], dbp[t], cols[t], dzbuf[t], xbuf[t], wbuf[t], geo, act, slope
        )


# --------------------------------------------------------------------------- wrappers


def _geometry(x_shape, w_shape, groups, stride, padding, dilation, oh, ow, nt, itemsize, split):
    """(KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, rows, P) and the per-thread scratch sizes
    (cols, input block) for the kernels."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    n, c, _, w = x_shape
    kh, kw = w_shape[2], w_shape[3]
    k = (c // groups) * kh * kw
    pitch = w + 2 * pw
    if not (sh == sw == 1 and pitch > ow and 4 * (pitch - ow) <= pitch):
        pitch = ow  # strided, or too much of the GEMM would be junk columns: gather instead
    nblk = -(-oh * k * pitch * itemsize // _COLS_BYTES)
    if split and n * groups < 2 * nt:  # too few (image, group) tasks to keep every thread busy
        nblk = max(nblk, -(-2 * nt // max(1, n * groups)))
    rows = -(-oh // max(1, min(oh, nblk)))
    xblk = (c // groups) * ((rows + (kh - 1) * dh) * pitch + (kw - 1) * dw) if pitch != ow else 1
    return (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rows, pitch), k * rows * pitch, xblk


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> np.ndarray:
    """y = act(conv2d(x, w) + b), see dlgpu.reference.conv.conv2d_forward.

    Args:
        x: [N, C, H, W] input (NCHW).
        weight: [O, C/groups, KH, KW] filters (torch.nn.Conv2d's layout).
        bias: [O] or None.
        stride, padding, dilation: int or (height, width) pair.
        groups: input and output channels split into this many independent groups.
        activation: fused epilogue, one of none|relu|leaky_relu|sigmoid|tanh.
        negative_slope: leaky_relu's slope for z < 0.
    Returns:
        y: [N, O, OH, OW].
    """
    n, o, oh, ow = _check(x, weight, bias, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    bias = prepare_optional(bias, "bias", x.dtype)
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    og = o // groups
    y = np.empty((n, o, oh, ow), x.dtype)
    with serial_blas() as nt:
        geo, ncols, nxblk = _geometry(
            x.shape, weight.shape, groups, stride, padding, dilation, oh, ow, nt, x.itemsize, split=True
        )
        nt = max(1, min(nt, n * groups * -(-oh // geo[10])))  # no scratch for threads without a task
        rows, pitch = geo[10], geo[11]
        _conv2d_fwd_kernel(
            x, x.reshape(n, groups, c // groups, h * w), weight.reshape(groups, og, -1),
            bias if bias is not None else np.empty(0, x.dtype), y.reshape(n, groups, og, oh * ow),
            np.empty((nt, ncols), x.dtype), np.empty((nt, og * rows * pitch), x.dtype), np.empty((nt, nxblk), x.dtype),
            geo, ACT_CODES[activation], x.dtype.type(negative_slope),
        )  # fmt: skip
    return y


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    out: np.ndarray | None = None,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = act(conv2d(x, w) + b), see dlgpu.reference.conv.conv2d_backward.

    Args:
        dy: [N, O, OH, OW] upstream gradient (the forward output's shape).
        x, weight, stride, padding, dilation, groups: as in the forward.
        out: the forward's output y; required when activation is not "none".
        activation, negative_slope: as in the forward.
    Returns:
        (dx [N, C, H, W], dweight [O, C/groups, KH, KW], dbias [O]).
    """
    n, o, oh, ow = _check(x, weight, None, stride, padding, dilation, groups)
    check_activation(activation, negative_slope)
    check_float(dy, "dy")
    check_shape(dy, (n, o, oh, ow), "dy", "the forward output's N, O, OH, OW")
    if activation != "none":
        if out is None:
            raise ValueError(f"out (the forward's output) is required for activation={activation!r}")
        check_same_shape(dy, out, "dy", "out")
    x = prepare(x, "x")
    weight = prepare(weight, "weight", x.dtype)
    dy = prepare(dy, "dy", x.dtype)
    out = prepare(out, "out", x.dtype) if activation != "none" else dy
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    cg, og = c // groups, o // groups
    k = cg * weight.shape[2] * weight.shape[3]
    dx = np.empty(x.shape, x.dtype)
    with serial_blas() as nt:
        geo, ncols, nxblk = _geometry(
            x.shape, weight.shape, groups, stride, padding, dilation, oh, ow, nt, x.itemsize, split=False
        )
        nt = max(1, min(nt, n * groups))  # no scratch or dW partials for threads without a task
        rows, pitch = geo[10], geo[11]
        dwp = np.empty((nt, groups, og, k), x.dtype)
        dbp = np.empty((nt, o), np.float64)
        _conv2d_bwd_kernel(
            dy.reshape(n, groups, og, oh * ow), out.reshape(n, groups, og, oh * ow), x,
            x.reshape(n, groups, cg, h * w), weight.reshape(groups, og, k), dx, dx.reshape(n, groups, cg, h * w),
            dwp, dbp, np.empty((nt, ncols), x.dtype), np.empty((nt, og * rows * pitch), x.dtype),
            np.empty((nt, nxblk), x.dtype), np.empty((nt, og, k), x.dtype), geo, ACT_CODES[activation],
            x.dtype.type(negative_slope),
        )  # fmt: skip
    dweight = dwp.sum(axis=0).reshape(weight.shape)
    return dx, dweight, dbp.sum(axis=0).astype(x.dtype)
