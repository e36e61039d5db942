"""The cupy backend's recurrent loaders (kernels/cuda/{rnn,lstm,gru,mgu}.py) without a GPU.

Under ``_common.dry_run()`` the loaders record their launches on torch CPU tensors (stand-ins for torch
CUDA tensors) or NumPy arrays (stand-ins for cupy arrays). Here every recorded launch is also replayed
at once by a NumPy model of its kernel (``_EMU``: what each kernel computes, through the raw pointers
the loader passed), so the Python side -- argument order, pointers and offsets, strides, the step
sequence, the GEMM layouts, dtype dispatch, the persistent plan -- is checked end to end against the
float64 reference, in float32, float16 and bfloat16, on both the persistent and the per-step path.
The CUDA code itself is checked on a GPU by test_cupy_recurrent_gpu.py and compiled by test_compile.py.
"""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
import torch

from dlgpu.kernels.cuda import _common
from dlgpu.kernels.cuda import gru as KG
from dlgpu.kernels.cuda import lstm as KL
from dlgpu.kernels.cuda import mgu as KM
from dlgpu.kernels.cuda import rnn as KR
from dlgpu.reference import gru as RG
from dlgpu.reference import lstm as RL
from dlgpu.reference import mgu as RM
from dlgpu.reference import rnn as RR
from dlgpu.testing import assert_close, randn, to_numpy

# ------------------------------------------------------------------ raw memory
_NP = {"float": np.float32, "__half": np.float16, "__nv_bfloat16": np.uint16}
_ES = {"float": 4, "__half": 2, "__nv_bfloat16": 2}


def _view(p: int, shape, ct: str, strides=None) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    if strides is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.insert(0, acc)
            acc *= s
    count = 1 + sum((s - 1) * st for s, st in zip(shape, strides))
    dt = np.dtype(_NP[ct])
    flat = np.frombuffer((ctypes.c_char * (count * dt.itemsize)).from_address(int(p)), dtype=dt)
    return np.lib.stride_tricks.as_strided(flat, shape, tuple(int(st) * dt.itemsize for st in strides))


def ld(p: int, shape, ct: str, strides=None) -> np.ndarray | None:
    """float64 copy of the elements at p (None for a null pointer)."""
    if p == 0:
        return None
    v = np.array(_view(p, shape, ct, strides))
    if ct == "__nv_bfloat16":
        return (v.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return v.astype(np.float64)


def st(p: int, val, ct: str, strides=None) -> None:
    """Store val rounded to ct (bf16: round to nearest even)."""
    assert p != 0, "store through a null pointer"
    val = np.asarray(val, dtype=np.float64)
    v = _view(p, val.shape, ct, strides)
    if ct == "__nv_bfloat16":
        bits = val.astype(np.float32).view(np.uint32).astype(np.uint64)
        v[...] = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    else:
        v[...] = val.astype(_NP[ct])


def z0(x, shape):
    return np.zeros(shape) if x is None else x


def _sig(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ------------------------------------------------------------------ the kernels' NumPy model
def _grid_step(grid, B, H, bb):
    assert grid == (-(-H // 16), -(-B // int(bb)), 1), grid


def _plan_ok(grid, smem, gates, H, HP, HB, BT, ct):
    assert grid[0] * HB >= H > (grid[0] - 1) * HB and grid[1:] == (1, 1)
    assert HP >= H and HP % 2 == 0 and BT % KR.PERSIST_RB == 0
    assert smem == (gates * HB + BT) * HP * _ES[ct]


def gemm_kernel(tp, a, grid, smem):
    A, Bp, bias, C, M, N, K, sam, sak, sbn, sbk, scm, scn, _, _, _, alpha, beta, _ = a
    t, to = tp[0], tp[1]
    assert grid == (-(-M // 64), -(-N // 64), 1)
    acc = alpha * ld(A, (M, K), t, (sam, sak)) @ ld(Bp, (N, K), t, (sbn, sbk)).T
    if beta:
        acc += beta * ld(C, (M, N), to, (scm, scn))
    if bias:
        acc += ld(bias, (N,), t)
    st(C, acc, to, (scm, scn))


def rec_colsum(tp, a, grid, smem):
    A, lda, M, N, rows, out, ldo = a
    s = -(-M // rows)
    assert grid == (-(-N // 32), s, 1)
    x = ld(A, (M, N), tp[0], (lda, 1))
    for i in range(s):
        st(out + i * ldo * _ES[tp[1]], x[i * rows : (i + 1) * rows].sum(0), tp[1])


def rec_cast(tp, a, grid, smem):
    st(a[1], ld(a[0], (a[2],), tp[0]), tp[1])


def rec_shift(tp, a, grid, smem):
    h0, out, hprev, n, bh = a
    st(hprev, np.concatenate([z0(ld(h0, (bh,), tp[0]), bh), ld(out, (n - bh,), tp[0])]), tp[0])


def rec_dh0(tp, a, grid, smem):
    carry, d0, ldd, w, dh0, B, H, *segs = a
    ct = tp[0]
    _grid_step(grid, B, H, tp[1])
    acc = z0(ld(carry, (B, H), "float"), (B, H))
    for col, row, k in (segs[:3], segs[3:]):
        if k:
            acc = acc + ld(d0 + col * _ES[ct], (B, k), ct, (ldd, 1)) @ ld(w + row * H * _ES[ct], (k, H), ct)
    st(dh0, acc, ct)


def _mm_t(h, w, ct, B, H, rows, row0=0):
    """h [B, H] (None: zeros) times rows row0.. of W_hh, transposed: [B, rows]."""
    return 0.0 if h is None else h @ ld(w + row0 * H * _ES[ct], (rows, H), ct).T


def rnn_fwd_step(tp, a, grid, smem):
    xp, hprev, w, bhh, out, B, H = a
    ct, relu = tp[0], tp[-1] == "true"
    if grid is not None:
        _grid_step(grid, B, H, tp[1])
    z = ld(xp, (B, H), "float") + _mm_t(ld(hprev, (B, H), ct), w, ct, B, H, H) + z0(ld(bhh, (H,), ct), H)
    st(out, np.maximum(z, 0) if relu else np.tanh(z), ct)


def rnn_persist(tp, a, grid, smem):
    xp, h0, w, bhh, out, T, B, H, HP, HB, BT = a
    _plan_ok(grid, smem, 1, H, HP, HB, BT, tp[0])
    for t in range(T):
        hp = h0 if t == 0 else out + (t - 1) * B * H * _ES[tp[0]]
        rnn_fwd_step(tp, [xp + t * B * H * 4, hp, w, bhh, out + t * B * H * _ES[tp[0]], B, H], None, smem)


def rnn_bwd_step(tp, a, grid, smem):
    dzn, w, dhn, dout, h, dz, B, H = a
    ct = tp[0]
    _grid_step(grid, B, H, tp[1])
    dh = z0(ld(dhn, (B, H), ct), (B, H)) + z0(ld(dout, (B, H), ct), (B, H))
    if dzn:
        dh = dh + ld(dzn, (B, H), ct) @ ld(w, (H, H), ct)
    hv = ld(h, (B, H), ct)
    st(dz, np.where(hv > 0, dh, 0) if tp[2] == "true" else dh * (1 - hv * hv), ct)


def _lstm_cell(z, c, peep, var):
    """z [G, B, H] pre-activations; returns (gates list, c_t, h_t)."""
    if var == 1:
        i, g, o = _sig(z[0]), np.tanh(z[1]), _sig(z[2])
        c = c + i * g
        return [i, g, o], c, o * np.tanh(c)
    p = np.zeros((3, z.shape[2])) if peep is None else peep
    i, f, g = _sig(z[0] + p[0] * c), _sig(z[1] + p[1] * c), np.tanh(z[2])
    c = f * c + i * g
    o = _sig(z[3] + p[2] * c)
    return [i, f, g, o], c, o * np.tanh(c)


def lstm_fwd_step(tp, a, grid, smem):
    xp, hprev, c0, cst, w, bhh, peep, out, ws, B, H, first = a
    ct, var = tp[0], int(tp[-1])
    G = 3 if var == 1 else 4
    if grid is not None:
        _grid_step(grid, B, H, tp[1])
    z = ld(xp, (B, G * H), "float") + _mm_t(ld(hprev, (B, H), ct), w, ct, B, H, G * H) + z0(ld(bhh, (G * H,), ct), 1)
    c = z0(ld(c0, (B, H), ct), (B, H)) if first else ld(cst, (B, H), "float")
    gates, c, h = _lstm_cell(z.reshape(B, G, H).transpose(1, 0, 2), c, ld(peep, (3, H), ct), var)
    st(ws, np.concatenate([*gates, c], axis=1), ct)
    st(cst, c, "float")
    st(out, h, ct)


def lstm_persist(tp, a, grid, smem):
    xp, h0, c0, cst, w, bhh, peep, out, ws, T, B, H, HP, HB, BT = a
    ct, var = tp[0], int(tp[1])
    G = 3 if var == 1 else 4
    _plan_ok(grid, smem, G, H, HP, HB, BT, ct)
    for t in range(T):
        hp = h0 if t == 0 else out + (t - 1) * B * H * _ES[ct]
        lstm_fwd_step([ct, 0, var], [xp + t * B * G * H * 4, hp, c0, cst, w, bhh, peep, out + t * B * H * _ES[ct],
                                     ws + t * B * (G + 1) * H * _ES[ct], B, H, t == 0], None, smem)  # fmt: skip


def lstm_bwd_step(tp, a, grid, smem):
    dzn, w, dhn, dcn, dout, dcst, ws, cprev, ldc, peep, dz, B, H, last = a
    ct, var = tp[0], int(tp[2])
    G = 3 if var == 1 else 4
    _grid_step(grid, B, H, tp[1])
    dh = z0(ld(dhn, (B, H), ct), (B, H)) + z0(ld(dout, (B, H), ct), (B, H))
    if dzn:
        dh = dh + ld(dzn, (B, G * H), ct) @ ld(w, (G * H, H), ct)
    dc = z0(ld(dcn, (B, H), ct), (B, H)) if last else ld(dcst, (B, H), "float")
    blocks = ld(ws, (B, (G + 1) * H), ct).reshape(B, G + 1, H).transpose(1, 0, 2)
    p = z0(ld(peep, (3, H), ct), (3, H))
    c, o = blocks[G], blocks[G - 1]
    tc = np.tanh(c)
    dzo = dh * tc * o * (1 - o)
    dc = dc + dh * o * (1 - tc * tc) + (dzo * p[2] if var == 2 else 0)
    if var == 1:
        i, g = blocks[0], blocks[1]
        d = [dc * g * i * (1 - i), dc * i * (1 - g * g), dzo]
        dcp = dc
    else:
        i, f, g = blocks[0], blocks[1], blocks[2]
        cp = z0(ld(cprev, (B, H), ct, (ldc, 1)), (B, H))
        d = [dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g * g), dzo]
        dcp = dc * f + (d[0] * p[0] + d[1] * p[1] if var == 2 else 0)
    st(dz, np.concatenate(d, axis=1), ct)
    st(dcst, dcp, "float")


def lstm_peep_partial(tp, a, grid, smem):
    dz, ws, c0, part, M, B, H, rows = a
    ct = tp[0]
    s = -(-M // rows)
    assert grid == (-(-H // 32), s, 1)
    d = ld(dz, (M, 4 * H), ct)
    c = ld(ws, (M, 5 * H), ct)[:, 4 * H :]
    cp = np.concatenate([z0(ld(c0, (B, H), ct), (B, H)), c[: M - B]])
    prod = np.concatenate([d[:, :H] * cp, d[:, H : 2 * H] * cp, d[:, 3 * H :] * c], axis=1)
    for i in range(s):
        st(part + i * 3 * H * 4, prod[i * rows : (i + 1) * rows].sum(0), "float")


def gru_fwd_step(tp, a, grid, smem):
    xp, hprev, w, bhh, out, ws, B, H = a
    ct = tp[0]
    if grid is not None:
        _grid_step(grid, B, H, tp[1])
    h = z0(ld(hprev, (B, H), ct), (B, H))
    x = ld(xp, (B, 3 * H), "float")
    hh = _mm_t(h, w, ct, B, H, 3 * H) + z0(ld(bhh, (3 * H,), ct), 1)
    r, zg = _sig(x[:, :H] + hh[:, :H]), _sig(x[:, H : 2 * H] + hh[:, H : 2 * H])
    hn = hh[:, 2 * H :]
    n = np.tanh(x[:, 2 * H :] + r * hn)
    st(ws, np.concatenate([r, zg, n, hn], axis=1), ct)
    st(out, n + zg * (h - n), ct)


def gru_persist(tp, a, grid, smem):
    xp, h0, w, bhh, out, ws, T, B, H, HP, HB, BT = a
    ct = tp[0]
    _plan_ok(grid, smem, 3, H, HP, HB, BT, ct)
    for t in range(T):
        hp = h0 if t == 0 else out + (t - 1) * B * H * _ES[ct]
        gru_fwd_step(tp, [xp + t * B * 3 * H * 4, hp, w, bhh, out + t * B * H * _ES[ct],
                          ws + t * B * 4 * H * _ES[ct], B, H], None, smem)  # fmt: skip


def gru_bwd_step(tp, a, grid, smem):
    dn, w, dhn, dout, carry, ws, hprev, dg, B, H, first = a
    ct = tp[0]
    _grid_step(grid, B, H, tp[1])
    g = z0(ld(dhn, (B, H), ct), (B, H)) + z0(ld(dout, (B, H), ct), (B, H))
    if not first:
        g = g + ld(carry, (B, H), "float")
    if dn:
        d = ld(dn, (B, 4 * H), ct)
        wh = ld(w, (3 * H, H), ct)
        g = g + d[:, : 2 * H] @ wh[: 2 * H] + d[:, 3 * H :] @ wh[2 * H :]
    r, zg, n, hn = np.split(ld(ws, (B, 4 * H), ct), 4, axis=1)
    hp = ld(hprev, (B, H), ct)
    da_n = g * (1 - zg) * (1 - n * n)
    st(dg, np.concatenate([da_n * hn * r * (1 - r), g * (hp - n) * zg * (1 - zg), da_n, da_n * r], axis=1), ct)
    st(carry, g * zg, "float")


def reset_fwd_gates(tp, a, grid, smem):
    xp, hprev, w, bhh, ws, qh, B, H = a
    ct, ng = tp[0], int(tp[2])
    if grid is not None:
        _grid_step(grid, B, H, tp[1])
    gw = (ng + 1) * H
    h = z0(ld(hprev, (B, H), ct), (B, H))
    pre = ld(xp, (B, gw), "float")[:, : ng * H] + _mm_t(h, w, ct, B, H, ng * H) + z0(ld(bhh, (gw,), ct), gw)[: ng * H]
    st(ws, _sig(pre), ct, (gw, 1))
    st(qh, _sig(pre[:, :H]) * h, ct)


def reset_fwd_cand(tp, a, grid, smem):
    xp, hprev, qh, w, bhh, out, ws, B, H = a
    ct, ng, u = tp[0], int(tp[2]), int(tp[3])
    if grid is not None:
        _grid_step(grid, B, H, tp[1])
    gw = (ng + 1) * H
    h = z0(ld(hprev, (B, H), ct), (B, H))
    q = ld(qh, (B, H), ct) if hprev else None
    c = np.tanh(ld(xp, (B, gw), "float")[:, ng * H :] + _mm_t(q, w, ct, B, H, H, ng * H)
                + z0(ld(bhh, (gw,), ct), gw)[ng * H :])  # fmt: skip
    uu = ld(ws + u * H * _ES[ct], (B, H), ct, (gw, 1))  # the candidate block is not written yet
    st(ws + ng * H * _ES[ct], c, ct, (gw, 1))
    st(out, h + uu * (c - h), ct)


def reset_persist(tp, a, grid, smem):
    xp, h0, w, bhh, out, ws, qh, T, B, H, HP, HB, BT = a
    ct, ng = tp[0], int(tp[1])
    gw, es = (ng + 1) * H, _ES[ct]
    _plan_ok(grid, smem, ng + 1, H, HP, HB, BT, ct)
    for t in range(T):
        hp = h0 if t == 0 else out + (t - 1) * B * H * es
        x, wt = xp + t * B * gw * 4, ws + t * B * gw * es
        reset_fwd_gates([ct, 0, ng], [x, hp, w, bhh, wt, qh, B, H], None, smem)
        reset_fwd_cand([ct, 0, ng, tp[2]], [x, hp, qh, w, bhh, out + t * B * H * es, wt, B, H], None, smem)


def reset_bwd_cand(tp, a, grid, smem):
    dn, w, dhn, dout, carry, ws, hprev, dpre, dpart, mid, B, H, first = a
    ct, ng, u = tp[0], int(tp[2]), int(tp[3])
    _grid_step(grid, B, H, tp[1])
    gw, es = (ng + 1) * H, _ES[ct]
    g = z0(ld(dhn, (B, H), ct), (B, H)) + z0(ld(dout, (B, H), ct), (B, H))
    if not first:
        g = g + ld(carry, (B, H), "float")
    if dn:
        g = g + ld(dn, (B, ng * H), ct, (gw, 1)) @ ld(w, (ng * H, H), ct)
    wsv = ld(ws, (B, gw), ct)
    uu, c, hp = wsv[:, u * H : (u + 1) * H], wsv[:, ng * H :], ld(hprev, (B, H), ct)
    st(dpre + ng * H * es, g * uu * (1 - c * c), ct, (gw, 1))
    if u == 0:
        st(dpart, g * (c - hp), "float")
    else:
        st(dpre + u * H * es, g * (c - hp) * uu * (1 - uu), ct, (gw, 1))
    st(mid, g * (1 - uu), "float")


def reset_bwd_gate(tp, a, grid, smem):
    w, ws, hprev, dpre, dpart, mid, carry, qh, B, H = a
    ct, ng, u = tp[0], int(tp[2]), int(tp[3])
    _grid_step(grid, B, H, tp[1])
    gw, es = (ng + 1) * H, _ES[ct]
    drh = ld(dpre + ng * H * es, (B, H), ct, (gw, 1)) @ ld(w + ng * H * H * es, (H, H), ct)
    q, hp = ld(ws, (B, H), ct, (gw, 1)), ld(hprev, (B, H), ct)
    dq = drh * hp + (ld(dpart, (B, H), "float") if u == 0 else 0)
    st(dpre, dq * q * (1 - q), ct, (gw, 1))
    st(carry, ld(mid, (B, H), "float") + drh * q, "float")
    st(qh, q * hp, ct)


_EMU = {f.__name__: f for f in (gemm_kernel, rec_colsum, rec_cast, rec_shift, rec_dh0, rnn_fwd_step, rnn_persist,
                                rnn_bwd_step, lstm_fwd_step, lstm_persist, lstm_bwd_step, lstm_peep_partial,
                                gru_fwd_step, gru_persist, gru_bwd_step, reset_fwd_gates, reset_fwd_cand,
                                reset_persist, reset_bwd_cand, reset_bwd_gate)}  # fmt: skip
_NAME = re.compile(r"^(\w+)<(.*)>$")
_C = {"long long": np.int64, "int": np.int32, "float": np.float32}


def _signatures(source: str) -> dict[str, list[type]]:
    """{kernel: NumPy scalar type of each parameter} for every __global__ of a source."""
    sigs, head = {}, r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*|[A-Z_]+\s+)*"
    for m in re.finditer(head + r"(\w+)\s*\(([^)]*)\)", source):
        params = [re.sub(r"\b(const|__restrict__)\b", " ", q) for q in m.group(2).split(",")]
        sigs[m.group(1)] = [np.uint64 if "*" in q else _C[" ".join(q.split()[:-1])] for q in params]
    return sigs


SIGS = {n: t for mod in (KR, KL, KG, KM) for n, t in _signatures(mod.MODULE.source).items()}


@pytest.fixture
def emulated(monkeypatch):
    """dry_run() whose launches also run, at once, through the NumPy model; yields the launch log."""
    orig = _common.Call.launch

    def launch(self, module, name, grid, block, args, shared_mem=0):
        orig(self, module, name, grid, block, args, shared_mem)
        base, tp = _NAME.match(name).groups()
        assert tuple(block) in ((256,), (256, 1, 1)), block
        assert [type(v) for v in args] == SIGS[base], f"{name}: arguments do not match the C signature"
        grid3 = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        vals = [int(v) if isinstance(v, np.integer) else float(v) for v in args]
        _EMU[base]([s.strip() for s in tp.split(",")], vals, grid3, int(shared_mem))

    monkeypatch.setattr(_common.Call, "launch", launch)
    with _common.dry_run() as log:
        yield log


# ------------------------------------------------------------------ running the loaders
CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "forget"), ("lstm", "no_forget"), ("lstm", "peephole"),
         ("gru", "cudnn"), ("gru", "cho"), ("mgu", None)]  # fmt: skip
IDS = [f"{f}-{v}" if v else f for f, v in CASES]
LOADERS = {"rnn": KR, "lstm": KL, "gru": KG, "mgu": KM}
REFS = {"rnn": RR, "lstm": RL, "gru": RG, "mgu": RM}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def gates(family, variant):
    return {"rnn": 1, "gru": 3, "mgu": 2}.get(family) or RL.GATES[variant]


def make(family, variant, gen, dims, h0=True, bias=(True, True)):
    """float64 inputs of one call, at torch's init scale 1/sqrt(H)."""
    t, b, i, h = dims
    g, s = gates(family, variant), h**-0.5
    d = dict(x=randn((t, b, i), gen), h0=randn((b, h), gen, scale=0.5) if h0 else None,
             weight_ih=randn((g * h, i), gen, scale=s), weight_hh=randn((g * h, h), gen, scale=s),
             bias_ih=randn((g * h,), gen, scale=s) if bias[0] else None,
             bias_hh=randn((g * h,), gen, scale=s) if bias[1] else None)  # fmt: skip
    if family == "lstm":
        d["c0"] = randn((b, h), gen, scale=0.5) if h0 else None
        d["weight_peephole"] = randn((3, h), gen, scale=0.5) if variant == "peephole" else None
    return d


def forward(mod, family, variant, d):
    x, h0, wi, wh, bi, bh = (d[k] for k in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if family == "rnn":
        return mod.rnn_forward(x, h0, wi, wh, bi, bh, variant)
    if family == "lstm":
        return mod.lstm_forward(x, h0, d["c0"], wi, wh, bi, bh, weight_peephole=d["weight_peephole"], variant=variant)
    if family == "gru":
        return mod.gru_forward(x, h0, wi, wh, bi, bh, variant=variant)
    return mod.mgu_forward(x, h0, wi, wh, bi, bh)


def backward(mod, family, variant, d, outs, g):
    x, h0, wi, wh = (d[k] for k in ("x", "h0", "weight_ih", "weight_hh"))
    if family == "rnn":
        return mod.rnn_backward(g[0], g[1], x, h0, wi, wh, outs[0], variant)
    if family == "lstm":
        return mod.lstm_backward(g[0], g[1], g[2], x, h0, d["c0"], wi, wh, outs[0], outs[3],
                                 weight_peephole=d["weight_peephole"], variant=variant)  # fmt: skip
    if family == "gru":
        return mod.gru_backward(g[0], g[1], x, h0, wi, wh, outs[0], outs[2], variant=variant)
    return mod.mgu_backward(g[0], g[1], x, h0, wi, wh, outs[0], outs[2])


def f64(v):
    return None if v is None else to_numpy(v)


def check(family, variant, gen, dims, conv, dtype, grads=(True, True, True), **kw):
    """Forward and backward through the loader (launches emulated) against the float64 reference on the
    same (cast) inputs; the backward of both gets the loader's own output and workspace."""
    d = {k: None if v is None else conv(v) for k, v in make(family, variant, gen, dims, **kw).items()}
    outs = forward(LOADERS[family], family, variant, d)
    want = forward(REFS[family], family, variant, {k: f64(v) for k, v in d.items()})
    for i, (o, w) in enumerate(zip(outs, want)):
        assert o.dtype == d["x"].dtype and tuple(o.shape) == w.shape, i
        assert_close(o, w, op=family, dtype=dtype, name=f"{family}[{variant}] forward {i}")
    n = 3 if family == "lstm" else 2  # d_output, d_h_n (, d_c_n)
    g = [conv(randn(tuple(outs[i].shape), gen)) if use else None for i, use in zip(range(n), grads)]
    got = backward(LOADERS[family], family, variant, d, outs, g)
    want = backward(REFS[family], family, variant, {k: f64(v) for k, v in d.items()}, [f64(o) for o in outs],
                    [f64(v) for v in g])  # fmt: skip
    assert len(got) == len(want)
    for i, (o, w) in enumerate(zip(got, want)):
        if w is None:
            assert o is None
            continue
        assert o.dtype == d["x"].dtype and tuple(o.shape) == w.shape, i
        assert_close(o, w, op=family, dtype=dtype, name=f"{family}[{variant}] backward {i}")
    return outs, got


def f32_inputs(family, variant, gen, dims):
    return {k: None if v is None else torch.from_numpy(v).float() for k, v in make(family, variant, gen, dims).items()}


def torch_conv(dtype):
    return lambda a: torch.from_numpy(a).to(dtype)


@pytest.mark.parametrize("path", ["persistent", "step"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_reference(case, dtype, path, gen, emulated):
    with KR.recurrent_path(path):
        check(*case, gen, (3, 5, 4, 7), torch_conv(dtype), dtype)
    persistent = [e for e in emulated if "persist" in e.name]
    assert len(persistent) == (path == "persistent")


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cupy_kind_arrays(case, dtype, gen, emulated):
    """NumPy arrays stand in for cupy arrays: outputs are arrays of that kind."""
    outs, grads = check(*case, gen, (2, 3, 5, 4), lambda a: a.astype(dtype), dtype)
    assert all(isinstance(o, np.ndarray) for o in (*outs, *grads) if o is not None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_none_arguments_and_several_tiles(case, gen, emulated):
    """No h0/c0, one bias, no d_output/d_h_n; B = 17 and H = 40 span several per-step tiles."""
    conv = torch_conv(torch.float32)
    with KR.recurrent_path("step"):
        check(*case, gen, (2, 17, 3, 40), conv, torch.float32, h0=False, bias=(True, False), grads=(False, True, False))
    check(*case, gen, (2, 3, 3, 5), conv, torch.float32, bias=(False, True), grads=(True, False, True))


def test_non_contiguous_input_is_copied(gen, emulated):
    x = torch.from_numpy(randn((4, 3, 2), gen)).float().transpose(0, 1)  # [3, 4, 2], not contiguous
    d = f32_inputs("gru", "cudnn", gen, (3, 4, 2, 5))
    d["x"] = x
    out = forward(KG, "gru", "cudnn", d)
    want = forward(RG, "gru", "cudnn", {k: f64(v) for k, v in d.items()})
    assert_close(out[0], want[0], op="gru", dtype=torch.float32)


# ------------------------------------------------------------------ launches and path choice
def _launches(log, part):
    return [e for e in log if part in e.name]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_launch_sequence(case, gen, emulated):
    """Per-step: T launches (reset-gated cells 2T) each way, on (ceil(H/16), ceil(B/BB)) grids; the
    persistent forward: one launch of plan.blocks blocks with the plan's shared memory and sizes."""
    family, variant = case
    t, b, h = 4, 6, 9
    d = f32_inputs(family, variant, gen, (t, b, 3, h))
    per = 2 if variant == "cho" or family == "mgu" else 1
    with KR.recurrent_path("step"):
        outs = forward(LOADERS[family], family, variant, d)
    steps = [e for e in emulated if "_step<" in e.name or e.name.startswith("reset_fwd")]
    assert len(steps) == per * t and all(e.grid == (1, 1, 1) for e in steps)
    emulated.clear()
    backward(LOADERS[family], family, variant, d, outs, [None, torch.ones(b, h), None])
    steps = [e for e in emulated if "_step<" in e.name or e.name.startswith("reset_bwd")]
    assert len(steps) == per * t
    emulated.clear()
    forward(LOADERS[family], family, variant, d)  # auto: fits the dry-run H100
    (p,) = _launches(emulated, "persist")
    plan = KR.persistent_plan(h, gates(family, variant), b, "float32", 132, 233472, 1, 232448)
    assert p.grid == (plan.blocks, 1, 1) and p.shared_mem == plan.smem
    assert [int(v) for v in p.args[-3:]] == [plan.pitch, plan.units, plan.batch_rows]


def test_auto_falls_back_to_steps_and_forced_persistent_fails(gen, emulated, monkeypatch):
    d = f32_inputs("lstm", "forget", gen, (2, 3, 4, 64))
    monkeypatch.setattr(KR, "DRY_RUN_LIMITS", KR.DeviceLimits(4, 16384, 16384, 1024, True))  # 4 SMs, 16 KB
    forward(KL, "lstm", "forget", d)  # 4 gates x 16 units x 64 x 4 B = 16 KB of weights per block: too much
    assert not _launches(emulated, "persist") and len(_launches(emulated, "lstm_fwd_step")) == 2
    with KR.recurrent_path("persistent"), pytest.raises(ValueError, match="persistent"):
        forward(KL, "lstm", "forget", d)
    monkeypatch.setattr(KR, "DRY_RUN_LIMITS", KR.DeviceLimits(132, 233472, 232448, 1024, False))
    with KR.recurrent_path("persistent"), pytest.raises(ValueError, match="cooperative"):
        forward(KL, "lstm", "forget", d)


def test_gemm_and_colsum_layouts(gen, emulated):
    """The GRU backward's GEMMs and column sums: sizes, strides and the offsets into dW_hh and db_hh."""
    t, b, i, h = 3, 2, 5, 4
    d = f32_inputs("gru", "cudnn", gen, (t, b, i, h))
    outs = forward(KG, "gru", "cudnn", d)
    emulated.clear()
    grads = backward(KG, "gru", "cudnn", d, outs, [torch.ones(t, b, h), None, None])
    mm = [[int(v) for v in e.args[4:15]] for e in _launches(emulated, "gemm_kernel")]
    assert mm == [[t * b, i, 3 * h, 4 * h, 1, 1, i, i, 1, 0, 0],  # dx = dg[:, :3H] W_ih
                  [3 * h, i, t * b, 1, 4 * h, 1, i, i, 1, 0, 0],  # dW_ih
                  [2 * h, h, t * b, 1, 4 * h, 1, h, h, 1, 0, 0],  # dW_hr, dW_hz
                  [h, h, t * b, 1, 4 * h, 1, h, h, 1, 0, 0]]  # dW_hn against dhn  # fmt: skip
    w_ptr = [int(e.args[3]) for e in _launches(emulated, "gemm_kernel")][2:]
    assert w_ptr == [grads[3].data_ptr(), grads[3].data_ptr() + 2 * h * h * 4]
    sums = _launches(emulated, "rec_colsum<float, float>")[1:]
    assert [int(e.args[5]) for e in sums] == [grads[4].data_ptr(), grads[5].data_ptr(), grads[5].data_ptr() + 8 * h]


def test_every_instantiation_is_launched(gen, emulated, monkeypatch):
    """Forward and backward of every case, dtype and path, with both per-step tiles, launch every name
    of every NAME_EXPRESSIONS (so none is dead or misspelt on the Python side)."""
    for bb in KR.STEP_BB:
        for mod in (KR, KL, KG):  # the loaders' own bindings of rnn.step_bb
            monkeypatch.setattr(mod, "step_bb", lambda batch, hidden, _bb=bb: _bb)
        for dtype in DTYPES:
            for path in ("persistent", "step"):
                with KR.recurrent_path(path):
                    for case in CASES:
                        check(*case, gen, (2, 3, 2, 3), torch_conv(dtype), dtype)
    seen = {e.name for e in emulated}
    for mod in LOADERS.values():
        assert not set(mod.NAME_EXPRESSIONS) - seen, sorted(set(mod.NAME_EXPRESSIONS) - seen)


def test_name_expressions():
    """Every instantiation names a kernel of its family's source; MODULE + COOP_MODULE cover them."""
    for fam, mod in LOADERS.items():
        src = mod.MODULE.source
        assert set(mod.MODULE.name_expressions) | set(mod.COOP_MODULE.name_expressions) == set(mod.NAME_EXPRESSIONS)
        for n in mod.NAME_EXPRESSIONS:
            assert re.search(rf"\b{_NAME.match(n).group(1)}\(", src), (fam, n)
        assert all("persist" in n for n in mod.COOP_MODULE.name_expressions)


# ------------------------------------------------------------------ bad input
def test_bad_input(gen):
    d = f32_inputs("lstm", "forget", gen, (2, 3, 4, 5))
    args = (d["x"], d["h0"], d["c0"], d["weight_ih"], d["weight_hh"])
    with pytest.raises(ValueError, match="CUDA device"):  # a CPU tensor outside a dry run
        KL.lstm_forward(*args)
    with _common.dry_run():
        with pytest.raises(ValueError, match="weight_hh"):
            KL.lstm_forward(d["x"], None, None, d["weight_ih"], d["weight_hh"][:, :4])
        with pytest.raises(ValueError, match="variant"):
            KL.lstm_forward(*args, variant="nope")
        with pytest.raises(TypeError, match="float32, float16, bfloat16"):
            KL.lstm_forward(*(a.double() for a in args))
        with pytest.raises(TypeError, match="one kind"):
            KL.lstm_forward(d["x"], d["h0"].numpy(), None, d["weight_ih"], d["weight_hh"])
        with pytest.raises(ValueError, match="nonlinearity"):
            KR.rnn_forward(d["x"], None, d["weight_ih"][:5], d["weight_hh"][:5], nonlinearity="gelu")
        with pytest.raises(ValueError, match="workspace"):
            KG.gru_backward(None, None, d["x"], None, d["weight_ih"][:15], d["weight_hh"][:15], torch.zeros(2, 3, 5),
                            torch.zeros(2, 3, 15), variant="cudnn")  # cudnn's workspace is [T, B, 4H]  # fmt: skip
        with pytest.raises(TypeError, match="d_h_n"):
            KR.rnn_backward(None, d["h0"].half(), d["x"], None, d["weight_ih"][:5], d["weight_hh"][:5],
                            torch.zeros(2, 3, 5))  # fmt: skip
