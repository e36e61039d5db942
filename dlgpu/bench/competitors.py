"""The natural competitor of every dlgpu op: torch eager on the same device and inputs.

On CUDA that is cuDNN for conv, pooling and the recurrent cells and torch's own CUDA kernels for
the rest; on the CPU torch's CPU kernels (oneDNN for conv). Backward competitors call torch's
backward kernels directly where aten exposes one (activations, pooling, dropout), so no autograd
bookkeeping is timed; elsewhere they replay a prepared graph with ``torch.autograd.grad(...,
retain_graph=True)``. Where torch has no such op (locally connected, MGU, the LSTM/GRU variants
torch lacks, the hinge losses) the nearest torch work is used and the name says so.

The losses' dlgpu forward returns the loss *and* its gradient in one pass, so its competitor is
torch's loss forward plus autograd's gradient of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..testing.cases import Prepared, backend_value, torch_inputs
from .costs import bind

_ACT = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax")


@dataclass
class Competitor:
    """torch's callables for one case's forward and backward (None where there is nothing to time)."""

    name: str
    forward: Callable[[], object] | None
    backward: Callable[[], object] | None = None


def _activation_fn(act: str, slope: float = 0.01) -> Callable[[Any], Any]:
    import torch
    import torch.nn.functional as F

    return {
        "none": lambda z: z,
        "relu": torch.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, slope),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[act]


def _grad_replay(out: Any, inputs: list[Any], grads: Any) -> Callable[[], object]:
    import torch

    return lambda: torch.autograd.grad(out, inputs, grads, retain_graph=True)


def _leaf(t: Any) -> Any:
    return t.detach().clone().requires_grad_()


def torch_competitor(prep: Prepared, dtype: str, device: str) -> Competitor:
    """torch's forward and backward for ``prep``'s case, on ``device`` ('cpu' or 'cuda') in ``dtype``."""
    conv = torch_inputs(dtype, device)
    case = prep.case
    fargs = backend_value(case.args, dtype, conv)
    fkw = {k: backend_value(v, dtype, conv) for k, v in case.kwargs.items()}
    fa = bind(case.forward, fargs, fkw)
    ba = None
    if prep.bargs is not None:
        ba = bind(case.backward, backend_value(prep.bargs, dtype, conv),
                  {k: backend_value(v, dtype, conv) for k, v in prep.bkwargs.items()})  # fmt: skip
    base = case.forward.removesuffix("_forward")
    cudnn = " (cuDNN)" if device == "cuda" else ""
    if base in _ACT:
        return _activation(base, fa, ba)
    if base == "linear":
        return _linear(fa, ba)
    if base == "conv2d":
        return _conv2d(fa, ba, cudnn)
    if base == "locally_connected2d":
        return _locally_connected(fa, ba)
    if base in ("max_pool2d", "avg_pool2d"):
        return _pool(base, fa, ba, cudnn)
    if base == "dropout":
        return _dropout(fa, ba)
    if case.backward == "loss_backward":
        return _loss(base, fa, ba)
    if base in ("l1_penalty", "l2_penalty", "max_norm", "clip_grad_norm", "clip_grad_value"):
        return _regularizer(base, fa, ba)
    if base in ("rnn", "lstm", "gru", "mgu"):
        return _recurrent(base, fa, ba, dtype, device, cudnn)
    raise ValueError(f"no torch competitor for op {case.forward!r}")


# ------------------------------------------------------------------ families


def _activation(act: str, fa: dict, ba: dict | None) -> Competitor:
    import torch
    import torch.nn.functional as F

    aten = torch.ops.aten
    x = fa["x"]
    axis = fa.get("axis", -1)
    fwd = {
        "relu": lambda: torch.relu(x),
        "leaky_relu": lambda: F.leaky_relu(x, fa.get("negative_slope", 0.01)),
        "sigmoid": lambda: torch.sigmoid(x),
        "tanh": lambda: torch.tanh(x),
        "softplus": lambda: F.softplus(x),
        "softmax": lambda: torch.softmax(x, axis),
        "log_softmax": lambda: torch.log_softmax(x, axis),
    }[act]
    dy, v = (ba["dy"], list(ba.values())[1]) if ba else (None, None)
    bwd = {
        "relu": lambda: aten.threshold_backward(dy, v, 0),
        "leaky_relu": lambda: aten.leaky_relu_backward(dy, v, ba.get("negative_slope", 0.01), False),
        "sigmoid": lambda: aten.sigmoid_backward(dy, v),
        "tanh": lambda: aten.tanh_backward(dy, v),
        "softplus": lambda: aten.softplus_backward(dy, v, 1.0, 20.0),
        "softmax": lambda: aten._softmax_backward_data(dy, v, axis, v.dtype),
        "log_softmax": lambda: aten._log_softmax_backward_data(dy, v, axis, v.dtype),
    }[act]
    return Competitor(f"torch {act} / aten {act}_backward", fwd, bwd if ba else None)


def _linear(fa: dict, ba: dict | None) -> Competitor:
    import torch.nn.functional as F

    act = _activation_fn(fa["activation"], fa["negative_slope"])
    x, w, b = fa["x"], fa["weight"], fa["bias"]
    fwd = lambda: act(F.linear(x, w, b))  # noqa: E731
    bwd = None
    if ba is not None:
        leaves = [_leaf(x), _leaf(w)] + ([_leaf(b)] if b is not None else [])
        out = act(F.linear(*leaves))
        bwd = _grad_replay(out, leaves, ba["dy"])
    return Competitor("F.linear (+act) / autograd", fwd, bwd)


def _conv2d(fa: dict, ba: dict | None, cudnn: str) -> Competitor:
    import torch.nn.functional as F

    act = _activation_fn(fa["activation"], fa["negative_slope"])
    geo = (fa["stride"], fa["padding"], fa["dilation"], fa["groups"])
    x, w, b = fa["x"], fa["weight"], fa["bias"]
    # with a fused activation the competitor is what torch users write: cuDNN's conv, then torch's
    # bias add and activation as separate kernels (the "conv + bias + ReLU" target)
    split = b is not None and fa["activation"] != "none"

    def run(x_: Any, w_: Any, b_: Any) -> Any:
        if split:
            return act(F.conv2d(x_, w_, None, *geo) + b_[:, None, None])
        return act(F.conv2d(x_, w_, b_, *geo))

    fwd = lambda: run(x, w, b)  # noqa: E731
    bwd = None
    if ba is not None:
        leaves = [_leaf(x), _leaf(w)] + ([_leaf(b)] if b is not None else [])
        out = run(leaves[0], leaves[1], leaves[2] if b is not None else None)
        bwd = _grad_replay(out, leaves, ba["dy"])
    what = "F.conv2d{} + bias + act" if split else "F.conv2d{} (+act)"
    return Competitor(what.format(cudnn) + " / autograd", fwd, bwd)


def _locally_connected(fa: dict, ba: dict | None) -> Competitor:
    import torch
    import torch.nn.functional as F

    x, w, b = fa["x"], fa["weight"], fa["bias"]
    oh, ow, o, c, kh, kw = w.shape

    def lc(x_: Any, w_: Any, b_: Any) -> Any:
        cols = F.unfold(x_, (kh, kw), padding=fa["padding"], stride=fa["stride"])  # N,CKK,L
        y = torch.einsum("nkl,lok->nol", cols, w_.reshape(oh * ow, o, c * kh * kw))  # N,O,L
        y = y.reshape(x_.shape[0], o, oh, ow)
        return y + b_ if b_ is not None else y

    bwd = None
    if ba is not None:
        leaves = [_leaf(x), _leaf(w)] + ([_leaf(b)] if b is not None else [])
        out = lc(leaves[0], leaves[1], leaves[2] if b is not None else None)
        bwd = _grad_replay(out, leaves, ba["dy"])
    return Competitor("torch unfold+einsum (torch has no such layer) / autograd", lambda: lc(x, w, b), bwd)


def _pool(kind: str, fa: dict, ba: dict | None, cudnn: str) -> Competitor:
    import torch
    import torch.nn.functional as F

    from ..reference._validate import pair

    aten = torch.ops.aten
    x = fa["x"]
    k = list(pair(fa["kernel_size"], "kernel_size"))
    s = list(pair(fa["stride"] if fa["stride"] is not None else fa["kernel_size"], "stride"))
    p = list(pair(fa["padding"], "padding", 0))
    if kind == "max_pool2d":
        fwd = lambda: F.max_pool2d(x, k, s, p, return_indices=True)  # noqa: E731
        _, idx = fwd()
        bwd = (lambda: aten.max_pool2d_with_indices_backward(ba["dy"], x, k, s, p, [1, 1], False, idx)) if ba else None
        return Competitor(f"F.max_pool2d{cudnn} / aten backward", fwd, bwd)
    cip = fa["count_include_pad"]
    fwd = lambda: F.avg_pool2d(x, k, s, p, count_include_pad=cip)  # noqa: E731
    bwd = (lambda: aten.avg_pool2d_backward(ba["dy"], x, k, s, p, False, cip, None)) if ba else None
    return Competitor(f"F.avg_pool2d{cudnn} / aten backward", fwd, bwd)


def _dropout(fa: dict, ba: dict | None) -> Competitor:
    import torch
    import torch.nn.functional as F

    x, p = fa["x"], float(fa["p"])
    mask = fa["mask"] if fa["mask"] is not None else torch.rand_like(x) >= p
    bwd = (lambda: torch.ops.aten.native_dropout_backward(ba["dy"], mask, 1.0 / (1.0 - p))) if ba else None
    return Competitor("F.dropout (draws its own mask) / aten backward", lambda: F.dropout(x, p, True), bwd)


def _loss(name: str, fa: dict, ba: dict | None) -> Competitor:
    import torch
    import torch.nn.functional as F

    y, t, red = fa["input"], fa["target"], fa["reduction"]
    delta = float(fa.get("delta", 1.0))

    def reduce(v: Any) -> Any:
        return v.mean() if red == "mean" else v.sum() if red == "sum" else v

    fns: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "hinge_loss": ("clamp(1 - y t, 0) (no torch op)", lambda v: reduce(torch.clamp(1 - v * t, min=0))),
        "squared_hinge_loss": ("clamp(1 - y t, 0)^2 (no torch op)",
                               lambda v: reduce(torch.clamp(1 - v * t, min=0) ** 2)),
        "binary_cross_entropy": ("F.binary_cross_entropy", lambda v: F.binary_cross_entropy(v, t, reduction=red)),
        "binary_cross_entropy_with_logits": ("F.binary_cross_entropy_with_logits",
                                             lambda v: F.binary_cross_entropy_with_logits(v, t, reduction=red)),
        "multiclass_hinge_loss": ("F.multi_margin_loss(p=1)", lambda v: F.multi_margin_loss(v, t, 1, reduction=red)),
        "multiclass_squared_hinge_loss": ("F.multi_margin_loss(p=2)",
                                          lambda v: F.multi_margin_loss(v, t, 2, reduction=red)),
        "cross_entropy": ("F.cross_entropy", lambda v: F.cross_entropy(v, t, reduction=red)),
        "mse_loss": ("F.mse_loss", lambda v: F.mse_loss(v, t, reduction=red)),
        "l1_loss": ("F.l1_loss", lambda v: F.l1_loss(v, t, reduction=red)),
        "pseudo_huber_loss": ("delta^2 (sqrt(1 + r^2) - 1) (no torch op)",
                              lambda v: reduce(delta**2 * (torch.sqrt(1 + ((v - t) / delta) ** 2) - 1))),
    }  # fmt: skip
    label, fn = fns[name]

    def fwd() -> object:
        v = y.detach().requires_grad_()
        loss = fn(v)
        return loss, torch.autograd.grad(loss, v, torch.ones_like(loss))[0]

    bwd = None
    if ba is not None:
        go, gi = ba["grad_output"], ba["grad_input"]
        go = go if getattr(go, "ndim", 0) != 1 or gi.ndim != 2 else go[:, None]  # K-class 'none': per row
        bwd = lambda: gi * go  # noqa: E731
    return Competitor(f"{label} + autograd grad / torch mul", fwd, bwd)


def _regularizer(name: str, fa: dict, ba: dict | None) -> Competitor:
    import torch

    if name in ("l1_penalty", "l2_penalty"):
        w, lam = fa["weight"], float(fa["lam"])
        if name == "l1_penalty":
            fwd, bwd_fn, label = (lambda: lam * w.abs().sum()), (lambda g: (g * lam) * torch.sign(w)), "lam sum|w|"
        else:
            fwd, bwd_fn, label = (lambda: 0.5 * lam * (w * w).sum()), (lambda g: (g * lam) * w), "lam/2 sum w^2"
        go = ba["grad_output"] if ba else None
        return Competitor(f"torch {label}", fwd, (lambda: bwd_fn(go)) if ba else None)
    if name == "max_norm":
        w, c = fa["weight"], float(fa["max_norm"])
        return Competitor("torch.renorm", lambda: torch.renorm(w, 2, 0, c))
    if name == "clip_grad_value":
        g, c = fa["grad"], float(fa["clip_value"])
        return Competitor("torch.clamp", lambda: torch.clamp(g, -c, c))
    grads, c = list(fa["grads"]), float(fa["max_norm"])

    def clip() -> object:
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return torch._foreach_mul(grads, torch.clamp(c / (total + 1e-6), max=1.0))

    return Competitor("torch _foreach_norm + _foreach_mul (clip_grad_norm_'s kernels)", clip)


def _recurrent(family: str, fa: dict, ba: dict | None, dtype: str, device: str, cudnn: str) -> Competitor:
    import torch

    x, h0 = fa["x"], fa["h0"]
    t, b, i = x.shape
    h = fa["weight_hh"].shape[1]
    variant = fa.get("variant")
    has_bias = fa["bias_ih"] is not None
    kind = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "mgu": "LSTM"}[family]
    kw = {"nonlinearity": fa["nonlinearity"]} if family == "rnn" else {}
    mod = getattr(torch.nn, kind)(i, h, bias=has_bias, **kw).to(device=device, dtype=getattr(torch, dtype))
    label = f"torch.nn.{kind}{cudnn}"
    same = family in ("rnn", "gru") or (family == "lstm" and variant in ("forget", "peephole"))
    if same:  # the case's own weights where the shapes agree
        with torch.no_grad():
            mod.weight_ih_l0.copy_(fa["weight_ih"])
            mod.weight_hh_l0.copy_(fa["weight_hh"])
            if has_bias:
                mod.bias_ih_l0.copy_(fa["bias_ih"])
                mod.bias_hh_l0.copy_(fa["bias_hh"])
    if family == "mgu":
        label += " (torch has no MGU; the LSTM is its yardstick)"
    elif (family, variant) in (("lstm", "no_forget"), ("lstm", "peephole"), ("gru", "cho")):
        label += f" (torch has no {variant} variant: nearest cell)"
    lstm = kind == "LSTM"
    zeros = torch.zeros(1, b, h, device=device, dtype=x.dtype)
    h0_ = h0[None] if h0 is not None else zeros
    c0 = fa.get("c0")
    state = (h0_, c0[None] if c0 is not None else zeros) if lstm else h0_

    def fwd() -> object:
        with torch.no_grad():
            return mod(x, state)

    bwd = None
    if ba is not None:
        xg = _leaf(x)
        sg = tuple(_leaf(s) for s in state) if lstm else _leaf(state)
        out, fin = mod(xg, sg)
        d_out = ba["d_output"] if ba["d_output"] is not None else torch.zeros_like(out)
        outs, grads = [out], [d_out]
        finals = fin if lstm else (fin,)
        dfin = (ba.get("d_h_n"), ba.get("d_c_n")) if lstm else (ba.get("d_h_n"),)
        for f, d in zip(finals, dfin):
            if d is not None:
                outs.append(f)
                grads.append(d[None])
        leaves = [xg, *(sg if lstm else (sg,)), *mod.parameters()]
        bwd = _grad_replay(outs, leaves, grads)
    return Competitor(label + ", forward under no_grad / autograd", fwd, bwd)
