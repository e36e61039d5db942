"""LSTM (one layer; variants forget | no_forget | peephole): CUDA C kernels (``lstm.cu``) through CuPy.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.lstm``
([T, B, (G+1) H]: the activated gates in gate order, then c_t). Arrays: cupy arrays or torch CUDA
tensors (bf16: torch only), used in place on the caller's stream.

Forward: xp = x W_ih^T + b_ih for all steps (one GEMM, fp32). Then the persistent kernel (one
cooperative launch; W_hh's rows of a block's units, all G gates, stay in shared memory; see rnn.py for
the plan and its napkin math) or one ``lstm_fwd_step`` launch per step: a block owns 16 units x BB rows,
computes h_{t-1} W_hh^T for the G gates of its units (G fp32 accumulators per row) and in the epilogue
the gates, peepholes, c_t, h_t and the workspace row. The cell state is carried in fp32 (a [B, H]
buffer); c_n is that state rounded once to the storage dtype.

Backward: one ``lstm_bwd_step`` per step (prologue dz_{t+1} W_hh over K = G H, epilogue the gate
derivatives, dc carried in fp32); then dh0, dx, dW_ih, dW_hh as GEMMs over all steps, db and the
peephole gradients as two-pass column sums.
Napkin math (H100, B = 64, H = 512, G = 4, bf16): a step is 2 B G H^2 = 134 MFLOP; per-step kernels
give 32 x 4 = 128 blocks (BB = 16) of ~1 MFLOP each: latency-bound (~5-10 us a step, launch included).
"""

from __future__ import annotations

from typing import Any

from ...reference import lstm as _ref
from ._common import Call, Module, cdiv, ctype, i32, i64, ptr
from .rnn import (
    DTYPES,
    REC_THREADS,
    STEP_BB,
    CoopModule,
    cast,
    choose_persistent,
    colsums,
    dh0_from,
    gemm_names,
    grad_tn,
    helper_names,
    input_projection,
    launch_persistent,
    prepare_all,
    shifted_states,
    step_bb,
    step_grid,
    weight_grads,
)

VARIANTS = _ref.VARIANTS
GATES = _ref.GATES
VARIANT_CODES = {"forget": 0, "no_forget": 1, "peephole": 2}  # LSTM_* in lstm.cu

_STEP = tuple(f"lstm_{d}_step<{ctype(t)}, {bb}, {v}>" for d in ("fwd", "bwd") for t in DTYPES for bb in STEP_BB
              for v in VARIANT_CODES.values())  # fmt: skip
_MISC = tuple(n for t in DTYPES for n in (*gemm_names(ctype(t)), *helper_names(ctype(t)),
                                          f"lstm_peep_partial<{ctype(t)}>"))  # fmt: skip
_PERSIST = tuple(f"lstm_persist<{ctype(t)}, {v}>" for t in DTYPES for v in VARIANT_CODES.values())
NAME_EXPRESSIONS: tuple[str, ...] = _STEP + _MISC + _PERSIST
MODULE = Module("lstm", _STEP + _MISC)
COOP_MODULE = CoopModule("lstm", _PERSIST)


def lstm_forward(
    x: Any,
    h0: Any | None,
    c0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any | None = None,
    bias_hh: Any | None = None,
    weight_peephole: Any | None = None,
    variant: str = "forget",
) -> tuple[Any, Any, Any, Any]:
    """Run the LSTM over the sequence (equations in dlgpu.reference.lstm).

    x [T, B, I], h0 and c0 [B, H] or None, weight_ih [G H, I], weight_hh [G H, H], biases [G H] or None,
    weight_peephole [3, H] (peephole only). Returns (output [T, B, H], h_n [B, H], c_n [B, H],
    workspace [T, B, (G+1) H]).
    """
    T, B, _, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole, variant)
    named = dict(h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh,
                 weight_peephole=weight_peephole)  # fmt: skip
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    ct, var = ctype(dt), VARIANT_CODES[variant]
    xp = input_projection(call, MODULE, x, a["weight_ih"], a["bias_ih"])  # T,B,GH fp32
    out = call.empty((T, B, H), dt)
    ws = call.empty((T, B, (G + 1) * H), dt)
    cst = call.empty((B, H), "float32")  # c_t in fp32, rewritten in place every step
    common = [ptr(a["c0"]), ptr(cst), ptr(a["weight_hh"]), ptr(a["bias_hh"]), ptr(a["weight_peephole"])]
    name = f"lstm_persist<{ct}, {var}>"
    plan = choose_persistent(call, COOP_MODULE, name, H, G, B, dt)
    if plan is not None:
        args = [ptr(xp), ptr(a["h0"]), *common, ptr(out), ptr(ws), i64(T), i64(B), i64(H)]
        launch_persistent(call, COOP_MODULE, name, plan, args)
    else:
        bb = step_bb(B, H)
        for t in range(T):
            hprev = a["h0"] if t == 0 else out[t - 1]
            args = [ptr(xp[t]), ptr(hprev), *common, ptr(out[t]), ptr(ws[t]), i64(B), i64(H), i32(t == 0)]
            call.launch(MODULE, f"lstm_fwd_step<{ct}, {bb}, {var}>", step_grid(B, H, bb), (REC_THREADS,), args)
    return out, cast(call, MODULE, out[T - 1], dt), cast(call, MODULE, cst, dt), ws


def lstm_backward(
    d_output: Any | None,
    d_h_n: Any | None,
    d_c_n: Any | None,
    x: Any,
    h0: Any | None,
    c0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    output: Any,
    workspace: Any,
    weight_peephole: Any | None = None,
    variant: str = "forget",
) -> tuple[Any, Any, Any, Any, Any, Any, Any, Any | None]:
    """Backpropagation through time for ``lstm_forward``.

    Returns (dx [T, B, I], dh0 [B, H], dc0 [B, H], dweight_ih [G H, I], dweight_hh [G H, H],
    dbias_ih [G H], dbias_hh [G H], dweight_peephole [3, H] for "peephole" else None);
    see dlgpu.reference.lstm.
    """
    T, B, I, H, G = _ref._check_lstm(x, h0, c0, weight_ih, weight_hh, None, None, weight_peephole, variant)
    _ref._check_saved(output, (T, B, H), "output", x.dtype, "T, B, hidden_size")
    _ref._check_saved(workspace, (T, B, (G + 1) * H), "workspace", x.dtype, f"T, B, ({G}+1)*hidden_size")
    _ref._check_grad(d_output, (T, B, H), "d_output", x.dtype, "T, B, hidden_size")
    _ref._check_grad(d_h_n, (B, H), "d_h_n", x.dtype, "B, hidden_size")
    _ref._check_grad(d_c_n, (B, H), "d_c_n", x.dtype, "B, hidden_size")
    named = dict(d_output=d_output, d_h_n=d_h_n, d_c_n=d_c_n, h0=h0, c0=c0, weight_ih=weight_ih,
                 weight_hh=weight_hh, output=output, workspace=workspace, weight_peephole=weight_peephole)  # fmt: skip
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    ct, var = ctype(dt), VARIANT_CODES[variant]
    ws, w_hh, d_out, GH, W = a["workspace"], a["weight_hh"], a["d_output"], G * H, (G + 1) * H
    dz = call.empty((T, B, GH), dt)
    dcst = call.empty((B, H), "float32")  # dc flowing back, fp32, rewritten in place every step
    bb = step_bb(B, H)
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        cprev, ldc = (ws[t - 1][:, GH:], W) if t > 0 else (a["c0"], H)  # c_{t-1}: a strided view, or c0
        args = [ptr(None if last else dz[t + 1]), ptr(w_hh), ptr(a["d_h_n"] if last else None),
                ptr(a["d_c_n"] if last else None), ptr(None if d_out is None else d_out[t]), ptr(dcst), ptr(ws[t]),
                ptr(cprev), i64(ldc), ptr(a["weight_peephole"]), ptr(dz[t]), i64(B), i64(H), i32(last)]  # fmt: skip
        call.launch(MODULE, f"lstm_bwd_step<{ct}, {bb}, {var}>", step_grid(B, H, bb), (REC_THREADS,), args)
    dh0 = dh0_from(call, MODULE, None, dz[0], GH, w_hh, (0, 0, GH, 0, 0, 0))
    dc0 = cast(call, MODULE, dcst, dt)
    hprev = shifted_states(call, MODULE, a["h0"], a["output"])
    dx, dw_ih, dw_hh = call.empty((T, B, I), dt), call.empty((GH, I), dt), call.empty((GH, H), dt)
    weight_grads(call, MODULE, dz, GH, x, a["weight_ih"], dx, dw_ih)
    grad_tn(call, MODULE, dz, GH, GH, hprev, dw_hh)
    db_ih, db_hh = call.empty((GH,), dt), call.empty((GH,), dt)
    colsums(call, MODULE, dz, GH, T * B, GH, [(db_ih, 0, GH), (db_hh, 0, GH)])
    dp = None
    if variant == "peephole":
        dp = _peephole_grad(call, dz, ws, a["c0"], dt)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dp


def _peephole_grad(call: Call, dz: Any, ws: Any, c0: Any, dt: str) -> Any:
    """dP [3, H] = column sums over all T*B rows of (dz_i c_{t-1}, dz_f c_{t-1}, dz_o c_t)."""
    T, B, GH = (int(s) for s in dz.shape)
    H = GH // 4
    m = T * B
    rows = max(512, cdiv(m, 65535))
    slabs = cdiv(m, rows)
    part = call.empty((slabs, 3 * H), "float32")
    call.launch(MODULE, f"lstm_peep_partial<{ctype(dt)}>", (cdiv(H, 32), slabs), (256,),
                [ptr(dz), ptr(ws), ptr(c0), ptr(part), i64(m), i64(B), i64(H), i64(rows)])  # fmt: skip
    dp = call.empty((3, H), dt)
    call.launch(MODULE, f"rec_colsum<float, {ctype(dt)}>", (cdiv(3 * H, 32), 1), (256,),
                [ptr(part), i64(3 * H), i64(slabs), i64(3 * H), i64(slabs), ptr(dp), i64(3 * H)])  # fmt: skip
    return dp
