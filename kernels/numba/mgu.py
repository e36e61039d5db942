"""Minimal Gated Unit (one layer, one direction): Numba CPU kernels.

Same functions, arguments, results, errors and workspace layout as ``dlgpu.reference.mgu``
([T, B, 2H] = f, h~ along the last axis).

The MGU is the cho GRU with one gate doing both jobs: f resets the state fed to the candidate
(h~ = tanh(W_h x + U_h (f h) + b)) and interpolates the new state (h = h + f (h~ - h)). So it
runs on the reset-gated kernels of ``gru.py`` with the update gate being gate 0: per step a GEMM
for the U_f rows, a fused pass (f and f * h), a GEMM for the U_h rows and a fused pass (h~ and
h_t); BPTT mirrors it, and dx and the weight gradients are single GEMMs over all steps. With two
blocks of rows instead of three, a step does 2/3 of a GRU step's GEMM work.
"""

from __future__ import annotations

import numpy as np

from ...reference import mgu as _ref
from ...reference._validate import check_shape
from .gru import prepare_backward, prepare_forward, reset_backward, reset_forward
from .rnn import as_numpy

GATES = _ref.GATES
_UPDATE_GATE = 0  # index of the gate that interpolates h_t: f itself


def mgu_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None = None,
    bias_hh: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run an MGU over a sequence; returns (output [T, B, H], h_n [B, H], workspace [T, B, 2H]
    = (f, h~)). See dlgpu.reference.mgu."""
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh = as_numpy(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, GATES)
    args = prepare_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, (T, B, H))
    return reset_forward(*args, _UPDATE_GATE)


def mgu_backward(
    d_output: np.ndarray | None,
    d_h_n: np.ndarray | None,
    x: np.ndarray,
    h0: np.ndarray | None,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    output: np.ndarray,
    workspace: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for ``mgu_forward``; returns (dx [T, B, I], dh0 [B, H],
    dweight_ih [2H, I], dweight_hh [2H, H], dbias_ih [2H], dbias_hh [2H]). See dlgpu.reference.mgu."""
    d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace = as_numpy(
        d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace
    )
    T, B, _, H = _ref._check_recurrent(x, h0, weight_ih, weight_hh, None, None, GATES)
    if d_output is not None:
        check_shape(d_output, (T, B, H), "d_output", "T, B, hidden_size")
    if d_h_n is not None:
        check_shape(d_h_n, (B, H), "d_h_n", "B, hidden_size")
    check_shape(output, (T, B, H), "output", "T, B, hidden_size")
    check_shape(workspace, (T, B, 2 * H), "workspace", "T, B, 2*hidden_size")
    args = prepare_backward(d_output, d_h_n, x, h0, weight_ih, weight_hh, output, workspace, (T, B, H))
    dx, dh0, dw_ih, dw_hh, db = reset_backward(*args, _UPDATE_GATE)
    return dx, dh0, dw_ih, dw_hh, db, db.copy()
