"""Minimal Gated Unit (one layer): CUDA C kernels (``mgu.cu``, ``recurrent.cuh``) through CuPy.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.mgu``
([T, B, 2H] = f, h~ along the last axis). Arrays: cupy arrays or torch CUDA tensors (bf16: torch only),
used in place on the caller's stream.

The MGU is the cho GRU with one gate doing both jobs: f resets the state fed to the candidate
(h~ = tanh(W_h x + U_h (f h) + b)) and interpolates the new state (h = h + f (h~ - h)). So it runs on
the reset-gated kernels of ``gru.py`` / ``recurrent.cuh`` with NG = 1 sigmoid gate that is also the
update gate (U = 0): x W_ih^T for all steps as one GEMM; per step two launches (f and f h_{t-1} to a
[B, H] scratch; then h~ and h_t) or the persistent kernel (two grid barriers per step); BPTT mirrors
it, phase 1 keeping dh (h~ - h_{t-1}) in an fp32 scratch for phase 2 to add d(f h) h_{t-1} before the
sigmoid derivative; dx and the weight gradients are single GEMMs over all steps.
Napkin math (H100, B = 64, H = 512, bf16): a step is 2 B 2H H = 67 MFLOP over U (1 MB, L2-resident),
2/3 of a GRU step: latency-bound like the GRU (per-step path ~2 launches of ~3-5 us; persistent ~2
barriers and ~1 us of work).
"""

from __future__ import annotations

from typing import Any

from ...reference import mgu as _ref
from ...reference._validate import check_shape
from ._common import Call, Module, ctype
from .gru import reset_backward, reset_forward, reset_names
from .rnn import DTYPES, CoopModule, gemm_names, helper_names, prepare_all

GATES = _ref.GATES
_UPDATE_GATE = 0  # index of the gate that interpolates h_t: f itself

_STEP, _PERSIST = reset_names(1, _UPDATE_GATE)
_MISC = tuple(n for t in DTYPES for n in (*gemm_names(ctype(t)), *helper_names(ctype(t))))
NAME_EXPRESSIONS: tuple[str, ...] = _STEP + _MISC + _PERSIST
MODULE = Module("mgu", _STEP + _MISC)
COOP_MODULE = CoopModule("mgu", _PERSIST)


def mgu_forward(
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any | None = None,
    bias_hh: Any | None = None,
) -> tuple[Any, Any, Any]:
    """Run an MGU over a sequence: x [T, B, I], h0 [B, H] or None, weight_ih [2H, I], weight_hh [2H, H],
    biases [2H] or None. Returns (output [T, B, H], h_n [B, H], workspace [T, B, 2H] = (f, h~));
    see dlgpu.reference.mgu."""
    _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    named = dict(h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    return reset_forward(call, MODULE, COOP_MODULE, x, dt, a, _UPDATE_GATE)


def mgu_backward(
    d_output: Any | None,
    d_h_n: Any | None,
    x: Any,
    h0: Any | None,
    weight_ih: Any,
    weight_hh: Any,
    output: Any,
    workspace: Any,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backpropagation through time for ``mgu_forward``: (dx [T, B, I], dh0 [B, H], dweight_ih [2H, I],
    dweight_hh [2H, H], dbias_ih [2H], dbias_hh [2H]); see dlgpu.reference.mgu."""
    t, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    if d_output is not None:
        check_shape(d_output, (t, b, h), "d_output", "T, B, hidden_size")
    if d_h_n is not None:
        check_shape(d_h_n, (b, h), "d_h_n", "B, hidden_size")
    check_shape(output, (t, b, h), "output", "T, B, hidden_size")
    check_shape(workspace, (t, b, 2 * h), "workspace", "T, B, 2*hidden_size")
    named = dict(d_output=d_output, d_h_n=d_h_n, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, output=output,
                 workspace=workspace)  # fmt: skip
    call = Call(x=x, **named)
    x, dt, a = prepare_all(call, x, named)
    return reset_backward(call, MODULE, x, dt, a, _UPDATE_GATE)
