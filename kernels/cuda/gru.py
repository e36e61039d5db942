"""GRU (one layer; variants cudnn | cho): CUDA C kernels (``gru.cu``, ``recurrent.cuh``) through CuPy.

Same functions, arguments, results, errors and workspace layouts as ``dlgpu.reference.gru`` (cudnn
[T, B, 4H] = r, z, n, hn; cho [T, B, 3H] = r, z, n). Arrays: cupy arrays or torch CUDA tensors (bf16:
torch only), used in place on the caller's stream.

Forward: xp = x W_ih^T + b_ih for all steps (one GEMM, fp32), then
* cudnn: the three W_h* products of a step share h_{t-1}: one ``gru_fwd_step`` per step (a block owns
  16 units x BB rows, three accumulators per row, the cell in the epilogue), or the persistent kernel.
* cho (and the MGU, ``mgu.py``: the same "reset-gated" cell with one gate in both roles): the candidate
  needs W_hn (r h_{t-1}) with every unit's r, so a step is two launches (gates and r h_{t-1} to a
  [B, H] scratch; then candidate and h_t), or the persistent kernel with two grid barriers per step.
The persistent kernel runs when W_hh fits in the shared memory of co-resident blocks (rnn.py: the plan
and its napkin math; GRU: 3 H^2 weights, 1.5 MB at H = 512 in bf16 -> 12 KB per block on 128 blocks).

Backward (BPTT): per step one launch (cho/MGU: two) whose prologue is step t+1's gate gradients
through W_hh and whose epilogue writes step t's pre-activation gradients ([T, B, 4H] cudnn: da_r,
da_z, da_n, dhn; [T, B, (NG+1) H] reset-gated) and the elementwise part of dL/dh_{t-1} (fp32 carry).
After the loop dh0, dx, dW_ih, dW_hh (reset-gated candidate rows: against r h_{t-1}, saved per step)
as GEMMs over all T*B rows; the bias gradients as column sums.
"""

from __future__ import annotations

from typing import Any

from ...reference import gru as _ref
from ...reference._validate import check_choice
from ._common import Call, Module, ctype, i32, i64, ptr
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
WORKSPACE_GATES = _ref.WORKSPACE_GATES


def reset_names(ng: int, u: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-step names, persistent names) of the reset-gated kernels with ng sigmoid gates, update gate u."""
    step = tuple(n for t in DTYPES for bb in STEP_BB for n in (
        f"reset_fwd_gates<{ctype(t)}, {bb}, {ng}>", f"reset_fwd_cand<{ctype(t)}, {bb}, {ng}, {u}>",
        f"reset_bwd_cand<{ctype(t)}, {bb}, {ng}, {u}>", f"reset_bwd_gate<{ctype(t)}, {bb}, {ng}, {u}>"))  # fmt: skip
    return step, tuple(f"reset_persist<{ctype(t)}, {ng}, {u}>" for t in DTYPES)


_RESET_STEP, _RESET_PERSIST = reset_names(2, 1)
_STEP = tuple(f"gru_{d}_step<{ctype(t)}, {bb}>" for d in ("fwd", "bwd") for t in DTYPES for bb in STEP_BB)
_MISC = tuple(n for t in DTYPES for n in (*gemm_names(ctype(t)), *helper_names(ctype(t))))
_PERSIST = tuple(f"gru_persist<{ctype(t)}>" for t in DTYPES)
NAME_EXPRESSIONS: tuple[str, ...] = _STEP + _RESET_STEP + _MISC + _PERSIST + _RESET_PERSIST
MODULE = Module("gru", _STEP + _RESET_STEP + _MISC)
COOP_MODULE = CoopModule("gru", _PERSIST + _RESET_PERSIST)


# ------------------------------------------------------------------ reset-gated cells (cho, MGU)


def reset_forward(
    call: Call, module: Module, coop: CoopModule, x: Any, dt: str, a: dict[str, Any], update_gate: int
) -> tuple[Any, Any, Any]:
    """Forward of a reset-gated cell (cho GRU: 2 sigmoid gates, update gate 1; MGU: 1, 0) on prepared
    arrays: (output [T, B, H], h_n [B, H], workspace [T, B, (NG+1) H])."""
    T, B, _ = (int(s) for s in x.shape)
    w_hh = a["weight_hh"]
    H = int(w_hh.shape[1])
    ng = int(w_hh.shape[0]) // H - 1
    ct = ctype(dt)
    xp = input_projection(call, module, x, a["weight_ih"], a["bias_ih"])  # T,B,(NG+1)H fp32
    out = call.empty((T, B, H), dt)
    ws = call.empty((T, B, (ng + 1) * H), dt)
    qh = call.empty((B, H), dt)  # q * h_{t-1}: the candidate product's operand
    name = f"reset_persist<{ct}, {ng}, {update_gate}>"
    plan = choose_persistent(call, coop, name, H, ng + 1, B, dt)
    if plan is not None:
        args = [ptr(xp), ptr(a["h0"]), ptr(w_hh), ptr(a["bias_hh"]), ptr(out), ptr(ws), ptr(qh), i64(T), i64(B),
                i64(H)]  # fmt: skip
        launch_persistent(call, coop, name, plan, args)
    else:
        bb = step_bb(B, H)
        grid = step_grid(B, H, bb)
        for t in range(T):
            hprev = a["h0"] if t == 0 else out[t - 1]
            args = [ptr(xp[t]), ptr(hprev), ptr(w_hh), ptr(a["bias_hh"]), ptr(ws[t]), ptr(qh), i64(B), i64(H)]
            call.launch(module, f"reset_fwd_gates<{ct}, {bb}, {ng}>", grid, (REC_THREADS,), args)
            call.launch(module, f"reset_fwd_cand<{ct}, {bb}, {ng}, {update_gate}>", grid, (REC_THREADS,),
                        [ptr(xp[t]), ptr(hprev), ptr(qh), ptr(w_hh), ptr(a["bias_hh"]), ptr(out[t]), ptr(ws[t]),
                         i64(B), i64(H)])  # fmt: skip
    return out, cast(call, module, out[T - 1], dt), ws


def reset_backward(
    call: Call, module: Module, x: Any, dt: str, a: dict[str, Any], update_gate: int
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """BPTT of a reset-gated cell on prepared arrays: (dx, dh0, dW_ih, dW_hh, db_ih, db_hh) with
    db_ih = db_hh (both biases add to every pre-activation)."""
    T, B, I = (int(s) for s in x.shape)
    w_hh, d_out = a["weight_hh"], a["d_output"]
    H = int(w_hh.shape[1])
    ng = int(w_hh.shape[0]) // H - 1
    GW = (ng + 1) * H
    ct = ctype(dt)
    hprev = shifted_states(call, module, a["h0"], a["output"])  # T,B,H
    dpre = call.empty((T, B, GW), dt)  # the gates' then the candidate's pre-activation gradients
    qh = call.empty((T, B, H), dt)  # q_t h_{t-1}, the operand of dW_hc
    carry, mid = call.empty((B, H), "float32"), call.empty((B, H), "float32")
    dpart = call.empty((B, H), "float32") if update_gate == 0 else None
    bb = step_bb(B, H)
    grid = step_grid(B, H, bb)
    ws = a["workspace"]
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        call.launch(module, f"reset_bwd_cand<{ct}, {bb}, {ng}, {update_gate}>", grid, (REC_THREADS,),
                    [ptr(None if last else dpre[t + 1]), ptr(w_hh), ptr(a["d_h_n"] if last else None),
                     ptr(None if d_out is None else d_out[t]), ptr(carry), ptr(ws[t]), ptr(hprev[t]), ptr(dpre[t]),
                     ptr(dpart), ptr(mid), i64(B), i64(H), i32(last)])  # fmt: skip
        call.launch(module, f"reset_bwd_gate<{ct}, {bb}, {ng}, {update_gate}>", grid, (REC_THREADS,),
                    [ptr(w_hh), ptr(ws[t]), ptr(hprev[t]), ptr(dpre[t]), ptr(dpart), ptr(mid), ptr(carry),
                     ptr(qh[t]), i64(B), i64(H)])  # fmt: skip
    dh0 = dh0_from(call, module, carry, dpre[0], GW, w_hh, (0, 0, ng * H, 0, 0, 0))
    dx, dw_ih, dw_hh = call.empty((T, B, I), dt), call.empty((GW, I), dt), call.empty((GW, H), dt)
    weight_grads(call, module, dpre, GW, x, a["weight_ih"], dx, dw_ih)
    grad_tn(call, module, dpre, GW, ng * H, hprev, dw_hh)
    grad_tn(call, module, dpre[:, :, ng * H :], GW, H, qh, dw_hh[ng * H :])
    db_ih, db_hh = call.empty((GW,), dt), call.empty((GW,), dt)
    colsums(call, module, dpre, GW, T * B, GW, [(db_ih, 0, GW), (db_hh, 0, GW)])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ------------------------------------------------------------------ cudnn


def _cudnn_forward(call: Call, x: Any, dt: str, a: dict[str, Any]) -> tuple[Any, Any, Any]:
    T, B, _ = (int(s) for s in x.shape)
    w_hh = a["weight_hh"]
    H = int(w_hh.shape[1])
    ct = ctype(dt)
    xp = input_projection(call, MODULE, x, a["weight_ih"], a["bias_ih"])  # T,B,3H fp32
    out = call.empty((T, B, H), dt)
    ws = call.empty((T, B, 4 * H), dt)
    name = f"gru_persist<{ct}>"
    plan = choose_persistent(call, COOP_MODULE, name, H, 3, B, dt)
    if plan is not None:
        args = [ptr(xp), ptr(a["h0"]), ptr(w_hh), ptr(a["bias_hh"]), ptr(out), ptr(ws), i64(T), i64(B), i64(H)]
        launch_persistent(call, COOP_MODULE, name, plan, args)
    else:
        bb = step_bb(B, H)
        for t in range(T):
            hprev = a["h0"] if t == 0 else out[t - 1]
            call.launch(MODULE, f"gru_fwd_step<{ct}, {bb}>", step_grid(B, H, bb), (REC_THREADS,),
                        [ptr(xp[t]), ptr(hprev), ptr(w_hh), ptr(a["bias_hh"]), ptr(out[t]), ptr(ws[t]), i64(B),
                         i64(H)])  # fmt: skip
    return out, cast(call, MODULE, out[T - 1], dt), ws


def _cudnn_backward(call: Call, x: Any, dt: str, a: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any, Any]:
    T, B, I = (int(s) for s in x.shape)
    w_hh, d_out, ws = a["weight_hh"], a["d_output"], a["workspace"]
    H = int(w_hh.shape[1])
    ct = ctype(dt)
    hprev = shifted_states(call, MODULE, a["h0"], a["output"])  # T,B,H
    dg = call.empty((T, B, 4 * H), dt)  # da_r, da_z, da_n, dhn
    carry = call.empty((B, H), "float32")  # dh_t z, the part of dL/dh_{t-1} not through W_hh
    bb = step_bb(B, H)
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        call.launch(MODULE, f"gru_bwd_step<{ct}, {bb}>", step_grid(B, H, bb), (REC_THREADS,),
                    [ptr(None if last else dg[t + 1]), ptr(w_hh), ptr(a["d_h_n"] if last else None),
                     ptr(None if d_out is None else d_out[t]), ptr(carry), ptr(ws[t]), ptr(hprev[t]), ptr(dg[t]),
                     i64(B), i64(H), i32(last)])  # fmt: skip
    dh0 = dh0_from(call, MODULE, carry, dg[0], 4 * H, w_hh, (0, 0, 2 * H, 3 * H, 2 * H, H))
    dx, dw_ih, dw_hh = call.empty((T, B, I), dt), call.empty((3 * H, I), dt), call.empty((3 * H, H), dt)
    weight_grads(call, MODULE, dg, 4 * H, x, a["weight_ih"], dx, dw_ih)  # (da_r, da_z, da_n): x W_ih^T's
    grad_tn(call, MODULE, dg, 4 * H, 2 * H, hprev, dw_hh)  # W_hr, W_hz
    grad_tn(call, MODULE, dg[:, :, 3 * H :], 4 * H, H, hprev, dw_hh[2 * H :])  # W_hn against dhn
    db_ih, db_hh = call.empty((3 * H,), dt), call.empty((3 * H,), dt)
    colsums(call, MODULE, dg, 4 * H, T * B, 4 * H, [(db_ih, 0, 3 * H), (db_hh, 0, 2 * H), (db_hh[2 * H :], 3 * H, H)])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ------------------------------------------------------------------ ops


def gru_forward(
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any | None = None,
    bias_hh: Any | None = None,
    variant: str = "cudnn",
) -> tuple[Any, Any, Any]:
    """Run a GRU over a sequence: x [T, B, I], h0 [B, H] or None, weight_ih [3H, I], weight_hh [3H, H],
    biases [3H] or None. Returns (output [T, B, H], h_n [B, H], workspace (cudnn [T, B, 4H] = r, z, n, hn;
    cho [T, B, 3H] = r, z, n)); see dlgpu.reference.gru."""
    check_choice(variant, VARIANTS, "variant")
    _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    named = dict(h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    if variant == "cudnn":
        return _cudnn_forward(call, x, dt, a)
    return reset_forward(call, MODULE, COOP_MODULE, x, dt, a, 1)


def gru_backward(
    d_output: Any | None,
    d_h_n: Any | None,
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    output: Any,
    workspace: Any,
    variant: str = "cudnn",
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backpropagation through time for ``gru_forward``: (dx [T, B, I], dh0 [B, H], dweight_ih [3H, I],
    dweight_hh [3H, H], dbias_ih [3H], dbias_hh [3H]); see dlgpu.reference.gru."""
    check_choice(variant, VARIANTS, "variant")
    t, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    _ref._check_backward_args(d_output, d_h_n, output, workspace, t, b, h, WORKSPACE_GATES[variant])
    named = dict(d_output=d_output, d_h_n=d_h_n, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, output=output,
                 workspace=workspace)  # fmt: skip
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    if variant == "cudnn":
        return _cudnn_backward(call, x, dt, a)
    return reset_backward(call, MODULE, x, dt, a, 1)
