"""dlgpu layers inside torch.autocast regions, mixed with torch layers (bfloat16 and float16; on the CPU
here, and on CUDA, gpu-marked, where the triton backend runs them).

torch's autocast does not reach a custom op, so dlgpu.functional casts as torch does for its own
ops of each kind: linear, conv, locally connected and the recurrent layers run in the region's dtype;
the losses in float32; the rest in the dtype they are given. The judge is the float32 computation on
the inputs and weights rounded to the region's dtype (what autocast hands the kernel), at that dtype's
tolerance, and the output dtypes are torch's where torch has the layer.
"""

from __future__ import annotations

import copy

import pytest
import torch

import dlgpu.functional as D
import dlgpu.nn as dnn
from dlgpu.testing import assert_close, randn

HALVES = (torch.bfloat16, torch.float16)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _rounded_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A float32 copy whose parameters are rounded through ``dtype``: what autocast feeds the kernels."""
    ref = copy.deepcopy(module)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(dtype).float())
    return ref


def _first(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


LAYERS = {
    "linear": (lambda: torch.nn.Linear(13, 7), dnn.Linear, (5, 13)),
    "conv2d": (lambda: torch.nn.Conv2d(4, 6, 3, padding=1, stride=2), dnn.Conv2d, (2, 4, 9, 7)),
    "lstm": (lambda: torch.nn.LSTM(5, 7, num_layers=2), dnn.LSTM, (6, 3, 5)),
    "gru": (lambda: torch.nn.GRU(5, 7), dnn.GRU, (6, 3, 5)),
    "rnn": (lambda: torch.nn.RNN(5, 7, bidirectional=True), dnn.RNN, (6, 3, 5)),
    "lstm_cell": (lambda: torch.nn.LSTMCell(5, 7), dnn.LSTMCell, (3, 5)),
}


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("half_input", [False, True], ids=["float32-input", "half-input"])
@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("device", DEVICES)
def test_matmul_like_layers_run_in_the_region_dtype(layer, half_input, dtype, gen, device):
    make_torch, ours_cls, shape = LAYERS[layer]
    theirs = make_torch().to(device)
    kwargs = {k: getattr(theirs, k) for k in ("num_layers", "bidirectional") if hasattr(theirs, k)}
    if layer == "conv2d":
        ours = ours_cls(4, 6, 3, padding=1, stride=2)
    else:
        ours = ours_cls(*(theirs.in_features, theirs.out_features) if layer == "linear" else
                        (theirs.input_size, theirs.hidden_size), **kwargs)  # fmt: skip
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    x = torch.tensor(randn(shape, gen), dtype=torch.float32, device=device)
    # a half input is what a torch layer before ours hands over inside the region
    x_in = (x.to(dtype) if half_input else x.clone()).requires_grad_()
    with torch.autocast(device, dtype=dtype):
        y = _first(ours(x_in))
    assert y.dtype == dtype

    ref = _rounded_copy(theirs, dtype)
    x_ref = x.to(dtype).float().requires_grad_()
    y_ref = _first(ref(x_ref))
    op = layer.removesuffix("_cell")
    assert_close(y, y_ref, op, _name(dtype), name=f"{layer} output")

    dy = torch.tensor(randn(tuple(y.shape), gen), dtype=torch.float32, device=device)
    y.float().backward(dy)
    y_ref.backward(dy.to(dtype).float())
    assert x_in.grad.dtype == x_in.dtype
    assert_close(x_in.grad, x_ref.grad, op, _name(dtype), name=f"{layer} grad input")
    for (n, p), p_ref in zip(ours.named_parameters(), ref.parameters()):
        assert p.grad.dtype == torch.float32, f"{n}: parameters keep float32 gradients"
        assert_close(p.grad, p_ref.grad, op, _name(dtype), name=f"{layer} grad {n}")


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("device", DEVICES)
def test_variable_lengths_and_initial_states_in_a_region(dtype, gen, device):
    torch.manual_seed(2)
    ours = dnn.LSTM(5, 7, num_layers=2, bidirectional=True).to(device)
    ref = _rounded_copy(ours, dtype)
    x = torch.tensor(randn((6, 4, 5), gen), dtype=torch.float32, device=device)
    h0 = torch.tensor(randn((4, 4, 7), gen), dtype=torch.float32, device=device)
    c0 = torch.tensor(randn((4, 4, 7), gen), dtype=torch.float32, device=device)
    lengths = [6, 3, 5, 1]
    with torch.autocast(device, dtype=dtype):
        out, (hn, cn) = ours(x, (h0, c0.to(dtype)), lengths=lengths)  # a float32 and a half state
    assert out.dtype == hn.dtype == cn.dtype == dtype
    r = [t.to(dtype).float() for t in (x, h0, c0)]
    out_ref, (hn_ref, cn_ref) = ref(r[0], (r[1], r[2]), lengths=lengths)
    for a, b, n in ((out, out_ref, "output"), (hn, hn_ref, "h_n"), (cn, cn_ref, "c_n")):
        assert_close(a, b, "lstm", _name(dtype), name=n)


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("device", DEVICES)
def test_a_mixed_torch_and_dlgpu_model_matches_torch_in_the_region(dtype, gen, device):
    torch.manual_seed(5)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(11, 9), torch.nn.ReLU(), torch.nn.Linear(9, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)
    ).to(device)
    mixed = copy.deepcopy(theirs)
    mixed[1], mixed[3] = dnn.ReLU(), dnn.Tanh()
    mixed[2] = dnn.Linear(9, 7).to(device)
    mixed[2].load_state_dict(theirs[2].state_dict())
    x = torch.tensor(randn((6, 11), gen), dtype=torch.float32, device=device)
    target = torch.tensor(gen.integers(0, 3, size=6), device=device)
    with torch.autocast(device, dtype=dtype):
        logits_t, logits_m = theirs(x), mixed(x)
        loss_t = torch.nn.functional.cross_entropy(logits_t, target)
        loss_m = D.cross_entropy(logits_m, target)
    assert logits_m.dtype == logits_t.dtype == dtype
    assert loss_m.dtype == loss_t.dtype == torch.float32
    assert_close(logits_m, logits_t, "linear", _name(dtype), name="logits")
    loss_t.backward()
    loss_m.backward()
    for (n, p_m), p_t in zip(mixed.named_parameters(), theirs.parameters()):
        assert p_m.grad.dtype == torch.float32
        assert_close(p_m.grad, p_t.grad, "linear", _name(dtype), name=f"grad {n}")


LOSSES = {
    "mse_loss": (D.mse_loss, torch.nn.functional.mse_loss),
    "l1_loss": (D.l1_loss, torch.nn.functional.l1_loss),
    "binary_cross_entropy_with_logits": (
        D.binary_cross_entropy_with_logits,
        torch.nn.functional.binary_cross_entropy_with_logits,
    ),
}


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("device", DEVICES)
def test_losses_compute_in_float32_as_torch_does(loss, dtype, gen, device):
    ours, theirs = LOSSES[loss]
    y = torch.tensor(randn((7, 5), gen), dtype=torch.float32, device=device).to(dtype)
    t = torch.tensor(randn((7, 5), gen), dtype=torch.float32, device=device).sigmoid().to(dtype)
    yo, yt = y.clone().requires_grad_(), y.clone().requires_grad_()
    with torch.autocast(device, dtype=dtype):
        lo, lt = ours(yo, t), theirs(yt, t)
    assert lo.dtype == lt.dtype == torch.float32
    # both are float32 losses of the same half inputs: float32 agreement, not the half dtype's
    assert_close(lo, lt, loss, "float32", name=f"{loss} value")
    lo.backward()
    lt.backward()
    assert yo.grad.dtype == dtype
    assert_close(yo.grad, yt.grad, loss, _name(dtype), name=f"{loss} grad")


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("device", DEVICES)
def test_other_ops_keep_their_input_dtype_as_torch_does(dtype, gen, device):
    x = torch.tensor(randn((2, 3, 6, 5), gen), dtype=torch.float32, device=device)
    with torch.autocast(device, dtype=dtype):
        for ours, theirs in (
            (D.relu(x), torch.relu(x)),
            (D.softmax(x.to(dtype), 1), torch.softmax(x.to(dtype), 1)),  # float32 only in CUDA regions
            (D.max_pool2d(x.to(dtype), 2), torch.nn.functional.max_pool2d(x.to(dtype), 2)),
        ):
            assert ours.dtype == theirs.dtype


@pytest.mark.parametrize("device", DEVICES)
def test_float64_is_not_cast_and_nothing_changes_outside_a_region(gen, device):
    x = torch.tensor(randn((4, 6), gen), device=device)  # float64
    w = torch.tensor(randn((3, 6), gen), device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        assert D.linear(x, w).dtype == torch.float64  # autocast leaves float64 alone, as in torch
    with pytest.raises(TypeError, match="weight must have the dtype of input"):
        D.linear(x.bfloat16(), w.float())  # outside a region mixed dtypes are still an error


@pytest.mark.parametrize("dtype", HALVES, ids=_name)
@pytest.mark.parametrize("device", DEVICES)
def test_autocast_under_torch_compile_fullgraph(dtype, gen, device):
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), dnn.ReLU(), dnn.Linear(6, 4), torch.nn.Linear(4, 2)).to(device)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.tensor(randn((5, 8), gen), dtype=torch.float32, device=device)
    with torch.autocast(device, dtype=dtype):
        eager, traced = model(x), compiled(x)
    assert traced.dtype == eager.dtype == dtype
    torch.testing.assert_close(traced, eager, rtol=0, atol=0)
