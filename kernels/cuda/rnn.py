"""Elman RNN (torch.nn.RNN, one layer): CUDA C kernels (``rnn.cu``, ``recurrent.cuh``) through CuPy.

Same functions, arguments, results and errors as ``dlgpu.reference.rnn``; arrays are cupy arrays or
torch CUDA tensors (bf16: torch only), used in place on the caller's stream. This file also holds
what the four recurrent loaders share: the persistent-vs-per-step choice, the GEMMs and the
after-the-loop helpers.

Forward: x W_ih^T + b_ih for all T steps is ONE GEMM (gemm.cuh, fp32 result xp [T, B, G H]). Then
either ONE cooperative launch for the whole sequence (the persistent kernel, below) or one launch per
step: a block owns 16 hidden units x BB batch rows, computes h_{t-1} W_hh^T for ALL gates of its units
through shared memory (fp32 accumulators) and finishes the cell in the epilogue.

Backward (BPTT): one launch per step, t = T-1 .. 0 (cho GRU, MGU: two): the prologue is the recurrent
product of step t+1's pre-activation gradients with W_hh for the block's units, the epilogue the cell's
derivative, written to a [T, B, G H] buffer. After the loop: dh0 (one launch), dx = D W_ih,
dW_ih = D^T X, dW_hh = D^T [h0; output[:-1]] as single GEMMs over all T*B rows (the weight gradients
accumulated across steps inside the GEMMs' K loop), the bias gradients as two-pass column sums.

The persistent kernel. Block p of NB = ceil(H / HB) keeps W_hh's rows of its HB units, all gates, in
shared memory for the whole sequence; per step it stages h_{t-1} (BT rows at a time) from L2, its warps
compute PERSIST_RB rows x 1 unit x G gates each (lanes split K) and run the cell epilogue, then all
blocks meet at a cooperative-groups grid barrier (reset-gated cells: two per step). It is chosen when the
weights fit and every block can be resident at once (``persistent_plan``, from the device's SM count and
shared memory and the kernel's occupancy); otherwise the per-step kernels run. ``recurrent_path(...)``
(a context manager) or ``set_recurrent_path(...)`` force "persistent" or "step" instead of "auto".
Napkin math (H100: 132 SMs, 227 KB shared memory per block; LSTM, G = 4, H = 512, B = 64, bf16):
  weights per block   HB = ceil(512 / 132) = 4 units -> NB = 128 blocks; 4 gates x 4 units x 512 x 2 B = 16 KB
  staging per block   BT = 64 rows x 512 x 2 B = 64 KB (smem 80 KB of 227 KB)
  per step moved      every block reads h_{t-1} from L2: 128 x 64 KB = 8 MB (~1 us at ~8 TB/s of L2);
                      writes B x H x (G + 2) x 2 B = 393 KB (h_t, gates, c_t); reads xp 64 x 2048 x 4 B = 512 KB
  per step computed   2 B G H^2 = 134 MFLOP, ~1 MFLOP per SM: 64 warp items x 8 k-steps -> ~16K warp FMAs
                      (~4K clocks at 4 per clock) and ~4K shared-memory loads (1 per clock), 1.3K shuffles
                      (a reduce-scatter: 20 per item instead of 80 for 16 butterflies): ~2.5-4 us
  plus the grid barrier (~1-2 us): ~4-6 us a step, against ~5-10 us of launch latency per step for
  the per-step path; the gain grows as B shrinks (B = 8: ~1.5 us a step). HBM never matters: W_hh
  (2 MB) is read once per launch instead of once per step.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from ...reference import rnn as _ref
from ...reference._validate import check_choice
from . import _host
from ._common import Call, Module, cdiv, ctype, dtype_name, f32, i32, i64, ptr

NONLINEARITIES = _ref.NONLINEARITIES

REC_THREADS = 256  # threads per block of every recurrent kernel (recurrent.cuh)
REC_BH = 16  # hidden units per per-step tile
PERSIST_RB = 4  # batch rows per warp item of the persistent kernels
STEP_BB = (16, 64)  # batch rows per per-step tile (template instantiations)
GEMM_TILE = 64  # gemm.cuh's output tile
PATHS = ("auto", "persistent", "step")
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
DTYPES = tuple(ITEMSIZE)

_path = "auto"


def set_recurrent_path(path: str) -> None:
    """Choose the recurrent forward path for later calls: "auto" (persistent when it fits),
    "persistent" (ValueError when it cannot run) or "step" (one launch per step)."""
    global _path
    check_choice(path, PATHS, "path")
    _path = path


@contextlib.contextmanager
def recurrent_path(path: str) -> Iterator[None]:
    """Context manager form of ``set_recurrent_path``."""
    old = _path
    set_recurrent_path(path)
    try:
        yield
    finally:
        set_recurrent_path(old)


# ------------------------------------------------------------------ the persistent-kernel plan


@dataclass(frozen=True)
class PersistentPlan:
    """How the persistent kernel runs: ``blocks`` blocks of ``units`` hidden units each, batch rows
    staged ``batch_rows`` at a time, shared-memory row ``pitch`` (elements) and ``smem`` bytes per block
    (``weight_bytes`` of W_hh rows + ``stage_bytes`` of staged h_{t-1})."""

    blocks: int
    units: int
    batch_rows: int
    pitch: int
    smem: int
    weight_bytes: int
    stage_bytes: int


def persistent_plan(
    hidden: int,
    gates: int,
    batch: int,
    dtype: str,
    sm_count: int,
    smem_per_sm: int,
    max_blocks_per_sm: int,
    smem_per_block: int | None = None,
    reserved_per_block: int = 1024,
) -> PersistentPlan | None:
    """The persistent kernel's launch plan, or None when it cannot run (use the per-step kernels).

    One block per SM at most: blocks = ceil(H / units) with units = ceil(H / min(H, sm_count)). A block
    needs gates x units x pitch elements of weights plus at least PERSIST_RB staged rows (pitch = H
    rounded up to even) within min(smem_per_block, smem_per_sm - reserved_per_block); it stages as many
    batch rows as fit (a multiple of PERSIST_RB, at most B rounded up). ``max_blocks_per_sm`` is the
    kernel's occupancy without dynamic shared memory (0: the kernel cannot run at all).
    """
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if min(hidden, gates, batch) < 1:
        raise ValueError(f"hidden, gates and batch must be >= 1, got {hidden}, {gates}, {batch}")
    if sm_count < 1 or max_blocks_per_sm < 1:
        return None
    es = ITEMSIZE[dtype]
    pitch = hidden + (hidden & 1)
    units = cdiv(hidden, min(hidden, sm_count))
    blocks = cdiv(hidden, units)
    budget = smem_per_sm - reserved_per_block
    if smem_per_block is not None:
        budget = min(budget, smem_per_block)
    weight_bytes = gates * units * pitch * es
    row_bytes = pitch * es
    rows_fit = (budget - weight_bytes) // row_bytes // PERSIST_RB * PERSIST_RB
    if rows_fit < PERSIST_RB or blocks > sm_count * max_blocks_per_sm:
        return None
    rows = min(rows_fit, cdiv(batch, PERSIST_RB) * PERSIST_RB)
    stage = rows * row_bytes
    return PersistentPlan(blocks, units, rows, pitch, weight_bytes + stage, weight_bytes, stage)


@dataclass(frozen=True)
class DeviceLimits:
    """What the plan needs to know about a device."""

    sm_count: int
    smem_per_sm: int
    smem_per_block: int
    reserved_per_block: int
    cooperative: bool


# The stand-in device of dry runs (no GPU): an H100 SXM.
DRY_RUN_LIMITS = DeviceLimits(132, 233472, 232448, 1024, True)
DRY_RUN_OCCUPANCY = 1


def dry_run_limits() -> DeviceLimits:
    """DRY_RUN_LIMITS, with no more SMs than the host runtime can run co-resident blocks of
    REC_THREADS threads (under racecheck, _host.max_coresident_threads())."""
    cap = _host.max_coresident_threads()
    if cap is None or DRY_RUN_LIMITS.sm_count * REC_THREADS <= cap:
        return DRY_RUN_LIMITS
    return replace(DRY_RUN_LIMITS, sm_count=cap // REC_THREADS)


@cache
def device_limits(device: int) -> DeviceLimits:
    """SM count, shared memory per SM / per block (opt-in) / reserved per block, cooperative launch."""
    import cupy

    get = cupy.cuda.runtime.deviceGetAttribute
    # cudaDevAttr: MultiProcessorCount 16, MaxSharedMemoryPerMultiprocessor 81,
    # MaxSharedMemoryPerBlockOptin 97, CooperativeLaunch 95, ReservedSharedMemoryPerBlock 111
    return DeviceLimits(get(16, device), get(81, device), get(97, device), get(111, device), bool(get(95, device)))


class CoopModule(Module):
    """A Module whose kernels CuPy launches cooperatively (cuLaunchCooperativeKernel): the persistent ones."""

    def __init__(self, family: str, name_expressions: Sequence[str]) -> None:
        super().__init__(family, name_expressions, cooperative=True)


def choose_persistent(
    call: Call, module: CoopModule, name: str, hidden: int, gates: int, batch: int, dtype: str
) -> PersistentPlan | None:
    """The plan for the persistent kernel ``name`` if the path in force allows it and it fits, else None.
    ValueError when the path "persistent" is forced and it cannot run."""
    if _path == "step":
        return None
    if call.device < 0:  # dry run: no device to ask
        limits, occ = dry_run_limits(), DRY_RUN_OCCUPANCY
    else:
        import cupy
        from cupy.cuda import driver

        limits = device_limits(call.device)
        try:
            with cupy.cuda.Device(call.device):
                fn = module.kernel(name, call.device)
                occ = driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, REC_THREADS, 0)
        except Exception as e:  # NVRTC, or linking libcudadevrt for cooperative code
            if _path == "persistent":
                raise
            # the per-step kernels compute the same thing: an environment that cannot build the
            # cooperative module (CuPy without libcudadevrt, say) costs speed, not the answer
            _warn_persistent_unavailable(e)
            return None
    plan = None
    if limits.cooperative:
        plan = persistent_plan(hidden, gates, batch, dtype, limits.sm_count, limits.smem_per_sm, occ,
                               limits.smem_per_block, limits.reserved_per_block)  # fmt: skip
    if plan is not None and call.device >= 0:
        with cupy.cuda.Device(call.device):
            fn.max_dynamic_shared_size_bytes = plan.smem  # opt in above the default 48 KB
            occ = driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, REC_THREADS, plan.smem)
        if occ * limits.sm_count < plan.blocks:
            plan = None
    if plan is None and _path == "persistent":
        raise ValueError(
            f"path='persistent' is impossible here: W_hh's {gates} x {hidden} x {hidden} {dtype} weights do not fit "
            f"in the shared memory of {limits.sm_count} co-resident blocks (or the device has no cooperative launch)"
        )
    return plan


_persistent_warned = False


def _warn_persistent_unavailable(error: Exception) -> None:
    global _persistent_warned
    if _persistent_warned:
        return
    _persistent_warned = True
    warnings.warn(
        f"dlgpu cupy backend: the persistent recurrent kernels could not be built ({type(error).__name__}: "
        f"{error}); using the per-step kernels",
        RuntimeWarning,
        stacklevel=3,
    )


def launch_persistent(call: Call, module: CoopModule, name: str, plan: PersistentPlan, args: list) -> None:
    """Launch a persistent kernel; its trailing arguments are the plan's pitch, units and batch rows."""
    args = [*args, i32(plan.pitch), i32(plan.units), i32(plan.batch_rows)]
    with warnings.catch_warnings():
        # CuPy would silently shrink a cooperative grid that cannot be resident: never let it
        warnings.filterwarnings("error", message=".*grid size will be reduced.*")
        call.launch(module, name, (plan.blocks,), (REC_THREADS,), args, shared_mem=plan.smem)


# ------------------------------------------------------------------ shared launch helpers


def step_bb(batch: int, hidden: int) -> int:
    """Batch rows per per-step tile: 64 (4 rows per thread, W_hh read from L2 4x less often) when B >= 64
    and that still gives >= 256 blocks, else 16 (more blocks for the latency-bound steps)."""
    return 64 if batch >= 64 and cdiv(hidden, REC_BH) * cdiv(batch, 64) >= 256 else 16


def step_grid(batch: int, hidden: int, bb: int) -> tuple[int, int]:
    """(hidden tiles, batch tiles) of a per-step kernel."""
    return cdiv(hidden, REC_BH), cdiv(batch, bb)


def flat_grid(n: int) -> tuple[int]:
    """Blocks of the grid-stride helpers (rec_cast, rec_shift)."""
    return (max(1, min(cdiv(n, 256), 4096)),)


def gemm_names(ct: str) -> tuple[str, ...]:
    """The three gemm_kernel instantiations the recurrent loaders use for storage type ``ct``."""
    return (f"gemm_kernel<{ct}, float, true, true, 0>", f"gemm_kernel<{ct}, {ct}, true, false, 0>",
            f"gemm_kernel<{ct}, {ct}, false, false, 0>")  # fmt: skip


def helper_names(ct: str) -> tuple[str, ...]:
    """rec_colsum / rec_cast / rec_shift / rec_dh0 instantiations for ``ct``."""
    names = [f"rec_colsum<{ct}, float>", f"rec_colsum<float, {ct}>", f"rec_cast<{ct}, {ct}>",
             f"rec_cast<float, {ct}>", f"rec_shift<{ct}>", *(f"rec_dh0<{ct}, {bb}>" for bb in STEP_BB)]  # fmt: skip
    return tuple(dict.fromkeys(names))  # float: rec_colsum<float, float> once


def gemm(call: Call, module: Module, a: Any, sa: tuple[int, int], w: Any, sw: tuple[int, int], c: Any, ldc: int,
         mnk: tuple[int, int, int], bias: Any = None, out_fp32: bool = False) -> None:  # fmt: skip
    """C[m, n] = sum_k A(m, k) W(n, k) (+ bias[n]): A(m, k) = a[m sa0 + k sa1], W(n, k) = w[n sw0 + k sw1],
    C row stride ldc; a, w, c are arrays or views (their data pointers are used). The three layouts the
    recurrent loaders use: A and W k-contiguous (the input projection, fp32 out), A k-contiguous
    (dx = D W_ih) and neither (the weight gradients D^T X)."""
    m, n, k = mnk
    ct = ctype(dtype_name(a.dtype))
    if out_fp32:
        name = f"gemm_kernel<{ct}, float, true, true, 0>"
    elif sa[1] == 1 and sa[0] != 1:
        name = f"gemm_kernel<{ct}, {ct}, true, false, 0>"
    else:
        name = f"gemm_kernel<{ct}, {ct}, false, false, 0>"
    args = [ptr(a), ptr(w), ptr(bias), ptr(c), i64(m), i64(n), i64(k), i64(sa[0]), i64(sa[1]), i64(sw[0]),
            i64(sw[1]), i64(ldc), i64(1), i64(0), i64(0), i64(0), f32(1.0), f32(0.0), f32(0.0)]  # fmt: skip
    call.launch(module, name, (cdiv(m, GEMM_TILE), cdiv(n, GEMM_TILE)), (REC_THREADS,), args)


def input_projection(call: Call, module: Module, x: Any, w_ih: Any, b_ih: Any) -> Any:
    """xp = x W_ih^T + b_ih for all steps: one GEMM, fp32 [T, B, G H]."""
    t, b, i = (int(s) for s in x.shape)
    gw = int(w_ih.shape[0])
    xp = call.empty((t, b, gw), "float32")
    gemm(call, module, x, (i, 1), w_ih, (i, 1), xp, gw, (t * b, gw, i), bias=b_ih, out_fp32=True)
    return xp


def weight_grads(call: Call, module: Module, d: Any, ldd: int, x: Any, w_ih: Any, dx: Any, dw_ih: Any) -> None:
    """dx = D W_ih and dW_ih = D^T X over all T*B rows; D: [T*B, G H] (row stride ldd) pre-activation
    gradients of x W_ih^T (a view of the first G H columns of the gradient buffer)."""
    t, b, i = (int(s) for s in x.shape)
    gw = int(w_ih.shape[0])
    gemm(call, module, d, (ldd, 1), w_ih, (1, i), dx, i, (t * b, i, gw))
    gemm(call, module, d, (1, ldd), x, (1, i), dw_ih, i, (gw, i, t * b))


def grad_tn(call: Call, module: Module, d: Any, ldd: int, rows: int, h: Any, out: Any) -> None:
    """out [rows, H] = D^T Hs over all T*B rows (D: ``rows`` columns of row stride ldd; Hs [T*B, H])."""
    tb, hid = int(h.shape[0]) * int(h.shape[1]), int(h.shape[-1])
    gemm(call, module, d, (1, ldd), h, (1, hid), out, hid, (rows, hid, tb))


def colsums(call: Call, module: Module, d: Any, ldd: int, m: int, n: int, outs: list[tuple[Any, int, int]]) -> None:
    """Column sums of D [m, n] (row stride ldd), fp32-accumulated in two deterministic passes; each
    (out, first column, width) of ``outs`` receives the sums of that column range."""
    ct = ctype(dtype_name(d.dtype))
    rows = max(512, cdiv(m, 65535))
    slabs = cdiv(m, rows)
    part = call.empty((slabs, n), "float32")
    call.launch(module, f"rec_colsum<{ct}, float>", (cdiv(n, 32), slabs), (256,),
                [ptr(d), i64(ldd), i64(m), i64(n), i64(rows), ptr(part), i64(n)])  # fmt: skip
    for out, c0, width in outs:
        call.launch(module, f"rec_colsum<float, {ct}>", (cdiv(width, 32), 1), (256,),
                    [ptr(part[:, c0:]), i64(n), i64(slabs), i64(width), i64(slabs), ptr(out), i64(width)])  # fmt: skip


def cast(call: Call, module: Module, src: Any, dtype: str) -> Any:
    """A new array of ``dtype`` with ``src``'s values (h_n from output[T-1], c_n from the fp32 state)."""
    out = call.empty(tuple(src.shape), dtype)
    n = 1
    for s in src.shape:
        n *= int(s)
    name = f"rec_cast<{ctype(dtype_name(src.dtype))}, {ctype(dtype)}>"
    call.launch(module, name, flat_grid(n), (256,), [ptr(src), ptr(out), i64(n)])
    return out


def shifted_states(call: Call, module: Module, h0: Any, output: Any) -> Any:
    """[h0 (zeros when None); output[0 .. T-2]] as a new [T, B, H] array: the h_{t-1} of every step."""
    t, b, h = (int(s) for s in output.shape)
    hprev = call.empty((t, b, h), dtype_name(output.dtype))
    n = t * b * h
    call.launch(module, f"rec_shift<{ctype(dtype_name(output.dtype))}>", flat_grid(n), (256,),
                [ptr(h0), ptr(output), ptr(hprev), i64(n), i64(b * h)])  # fmt: skip
    return hprev


def dh0_from(call: Call, module: Module, carry: Any, d0: Any, ldd: int, w_hh: Any, segs: tuple[int, ...]) -> Any:
    """dh0 = carry (fp32 or None) + step 0's gradients d0 through W_hh over the column/row segments
    (col0, row0, k0, col1, row1, k1)."""
    b, h = int(d0.shape[0]), int(w_hh.shape[1])
    dt = dtype_name(w_hh.dtype)
    bb = step_bb(b, h)
    dh0 = call.empty((b, h), dt)
    args = [ptr(carry), ptr(d0), i64(ldd), ptr(w_hh), ptr(dh0), i64(b), i64(h), *(i64(s) for s in segs)]
    call.launch(module, f"rec_dh0<{ctype(dt)}, {bb}>", step_grid(b, h, bb), (REC_THREADS,), args)
    return dh0


def prepare_all(call: Call, x: Any, named: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    """x and every other array (None kept) contiguous and checked to have x's dtype: (x, dtype, arrays)."""
    x = call.prepare(x, "x")
    dt = dtype_name(x.dtype)
    out = {k: None if v is None else call.prepare(v, k, dtype=(dt, "x")) for k, v in named.items()}
    return x, dt, out


# ------------------------------------------------------------------ rnn

_STEP = tuple(f"rnn_{d}_step<{ctype(t)}, {bb}, {r}>" for d in ("fwd", "bwd") for t in DTYPES for bb in STEP_BB
              for r in ("false", "true"))  # fmt: skip
_MISC = tuple(n for t in DTYPES for n in (*gemm_names(ctype(t)), *helper_names(ctype(t))))
_PERSIST = tuple(f"rnn_persist<{ctype(t)}, {r}>" for t in DTYPES for r in ("false", "true"))
NAME_EXPRESSIONS: tuple[str, ...] = _STEP + _MISC + _PERSIST
MODULE = Module("rnn", _STEP + _MISC)
COOP_MODULE = CoopModule("rnn", _PERSIST)


def rnn_forward(
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any | None = None,
    bias_hh: Any | None = None,
    nonlinearity: str = "tanh",
) -> tuple[Any, Any]:
    """h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), t = 1..T (torch.nn.RNN).

    x [T, B, I], h0 [B, H] or None, weight_ih [H, I], weight_hh [H, H], biases [H] or None.
    Returns (output [T, B, H] = h_1..h_T, h_n [B, H]); see dlgpu.reference.rnn.
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, 1)
    call = Call(x=x, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    x, dt, a = prepare_all(call, x, dict(h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                                         bias_hh=bias_hh))  # fmt: skip
    ct, relu = ctype(dt), str(nonlinearity == "relu").lower()
    xp = input_projection(call, MODULE, x, a["weight_ih"], a["bias_ih"])  # T,B,H fp32
    out = call.empty((T, B, H), dt)
    name = f"rnn_persist<{ct}, {relu}>"
    plan = choose_persistent(call, COOP_MODULE, name, H, 1, B, dt)
    if plan is not None:
        launch_persistent(call, COOP_MODULE, name, plan, [ptr(xp), ptr(a["h0"]), ptr(a["weight_hh"]),
                          ptr(a["bias_hh"]), ptr(out), i64(T), i64(B), i64(H)])  # fmt: skip
    else:
        bb = step_bb(B, H)
        for t in range(T):
            hprev = a["h0"] if t == 0 else out[t - 1]
            call.launch(MODULE, f"rnn_fwd_step<{ct}, {bb}, {relu}>", step_grid(B, H, bb), (REC_THREADS,),
                        [ptr(xp[t]), ptr(hprev), ptr(a["weight_hh"]), ptr(a["bias_hh"]), ptr(out[t]), i64(B),
                         i64(H)])  # fmt: skip
    return out, cast(call, MODULE, out[T - 1], dt)


def rnn_backward(
    d_output: Any | None,
    d_h_n: Any | None,
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    output: Any,
    nonlinearity: str = "tanh",
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backpropagation through time for ``rnn_forward``.

    Returns (dx [T, B, I], dh0 [B, H], dweight_ih [H, I], dweight_hh [H, H], dbias_ih [H], dbias_hh [H]);
    see dlgpu.reference.rnn.
    """
    check_choice(nonlinearity, NONLINEARITIES, "nonlinearity")
    T, B, I, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, 1)
    _ref._check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    named = dict(d_output=d_output, d_h_n=d_h_n, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, output=output)
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    ct, relu = ctype(dt), str(nonlinearity == "relu").lower()
    w_hh, d_out = a["weight_hh"], a["d_output"]
    dz = call.empty((T, B, H), dt)
    bb = step_bb(B, H)
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        args = [ptr(None if last else dz[t + 1]), ptr(w_hh), ptr(a["d_h_n"] if last else None),
                ptr(None if d_out is None else d_out[t]), ptr(a["output"][t]), ptr(dz[t]), i64(B), i64(H)]  # fmt: skip
        call.launch(MODULE, f"rnn_bwd_step<{ct}, {bb}, {relu}>", step_grid(B, H, bb), (REC_THREADS,), args)
    dh0 = dh0_from(call, MODULE, None, dz[0], H, w_hh, (0, 0, H, 0, 0, 0))
    hprev = shifted_states(call, MODULE, a["h0"], a["output"])
    dx, dw_ih, dw_hh = call.empty((T, B, I), dt), call.empty((H, I), dt), call.empty((H, H), dt)
    weight_grads(call, MODULE, dz, H, x, a["weight_ih"], dx, dw_ih)
    grad_tn(call, MODULE, dz, H, H, hprev, dw_hh)
    db_ih, db_hh = call.empty((H,), dt), call.empty((H,), dt)
    colsums(call, MODULE, dz, H, T * B, H, [(db_ih, 0, H), (db_hh, 0, H)])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
