"""Minimal Gated Unit (one layer, one direction): Triton kernels.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.mgu``
([T, B, 2H] = f, h~ along the last axis).

The MGU is the cho GRU with one gate doing both jobs: f resets the state fed to the candidate
(h~ = tanh(W_h x + U_h (f h) + b)) and interpolates the new state (h = h + f (h~ - h)). So it
runs on the reset-gated kernels of ``gru.py`` with NG = 1 sigmoid gate that is also the update
gate (U = 0): x W_ih^T for all steps as one GEMM; per step either one launch (H <= 256: a program
owns a batch block and all hidden units, computes f and f * h_{t-1}, barriers, then U_h (f h),
h~ and h_t) or two (f and f * h_{t-1} to a [B, H] scratch, then h~ and h_t); BPTT mirrors it, the
phase-A launch keeping dh (h~ - h_{t-1}) in an fp32 scratch for phase B to add d(f h) h_{t-1}
before the sigmoid derivative; dx and the weight gradients are single GEMMs over all steps.

Napkin math (H100, T = 100, B = 64, H = 512, bf16): a step is 2*B*2H*H = 67 MFLOP over U (1 MB,
L2-resident), 2/3 of a GRU step, so like the GRU it is launch- and latency-bound (~3-5 us a launch).
"""

from __future__ import annotations

import torch

from ...reference import mgu as _ref
from ...reference._validate import check_shape
from .gru import prepare_backward, prepare_forward, reset_backward, reset_forward

GATES = _ref.GATES
_UPDATE_GATE = 0  # index of the gate that interpolates h_t: f itself


def mgu_forward(
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run an MGU over a sequence; returns (output [T, B, H], h_n [B, H], workspace [T, B, 2H]
    = (f, h~)). See dlgpu.reference.mgu."""
    _, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    args = prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, (b, h))
    return reset_forward(*args, _UPDATE_GATE)


def mgu_backward(
    d_output: torch.Tensor | None,
    d_h_n: torch.Tensor | None,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    output: torch.Tensor,
    workspace: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backpropagation through time for ``mgu_forward``; returns (dx [T, B, I], dh0 [B, H],
    dweight_ih [2H, I], dweight_hh [2H, H], dbias_ih [2H], dbias_hh [2H]). See dlgpu.reference.mgu."""
    t, b, _, h = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    if d_output is not None:
        check_shape(d_output, (t, b, h), "d_output", "T, B, hidden_size")
    if d_h_n is not None:
        check_shape(d_h_n, (b, h), "d_h_n", "B, hidden_size")
    check_shape(output, (t, b, h), "output", "T, B, hidden_size")
    check_shape(workspace, (t, b, 2 * h), "workspace", "T, B, 2*hidden_size")
    args = prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace)
    dx, dh0, dw_ih, dw_hh, db = reset_backward(*args, _UPDATE_GATE)
    return dx, dh0, dw_ih, dw_hh, db, db.clone()
