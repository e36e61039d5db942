"""Flop and byte counts for every dlgpu op: the denominators of the bench tool's GFLOP/s and GB/s.

One function per op family, the formula written out above it. Conventions, the same for every op:

* flops: one per arithmetic operation; a multiply-add is two; a transcendental (exp, log, tanh,
  sqrt) or a compare counts as one. GEMM-shaped ops (linear, conv2d, locally connected, recurrent)
  count 2 per multiply-add of the contraction plus one per output element for each fused epilogue
  step (bias, activation); the recurrent families count their GEMMs only (the gate math is
  O(T B H), under 2% of the GEMMs' O(T B H (I + H)) at I + H >= 256).
* bytes: the minimum traffic: every input read once and every output written once, in the
  dtype's itemsize ``s``; int64 indices are 8 bytes and a bool mask 1 byte. Scalars count ``s``.

``call_cost(op, args, kwargs, itemsize)`` applies the right formula to an actual call (the
arguments bound by name against the reference's signature), and ``describe`` gives the short
shape label the bench tables show.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..reference._validate import conv_output_size, pair


@dataclass(frozen=True)
class Cost:
    """Work and minimum memory traffic of one call."""

    flops: float
    bytes: float


def _prod(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


# ------------------------------------------------------------------ activations

# flops per element, forward / backward (see the module conventions):
#   relu         max(x, 0)                         1   | dy * [x > 0]: compare, select           2
#   leaky_relu   x < 0 ? a x : x: compare, mul     2   | dy * (x < 0 ? a : 1): compare, mul      2
#   sigmoid      1 / (1 + exp(-x)): exp, add, div  3   | dy * y * (1 - y): sub, 2 mul            3
#   tanh         tanh                              1   | dy * (1 - y^2): mul, sub, mul           3
#   softplus     max(x,0) + log1p(exp(-|x|)):      5   | dy * sigmoid(x): exp, add, div, mul     4
#                abs, exp, log1p, max, add
#   softmax      row max, sub, exp, row sum, div   5   | y (dy - sum(dy y)): mul, add, sub, mul  4
#   log_softmax  row max, sub, exp, row sum, sub   5   | dy - exp(y) sum(dy): add, exp, mul, sub 4
ACTIVATION_FLOPS: dict[str, tuple[int, int]] = {
    "relu": (1, 2),
    "leaky_relu": (2, 2),
    "sigmoid": (3, 3),
    "tanh": (1, 3),
    "softplus": (5, 4),
    "softmax": (5, 4),
    "log_softmax": (5, 4),
}


def activation_cost(name: str, n: int, itemsize: int, backward: bool = False) -> Cost:
    """An activation over n elements.

    forward:  flops = f_fwd * n     bytes = s (n read x + n write y)               = 2 n s
    backward: flops = f_bwd * n     bytes = s (n read dy + n read x|y + n write dx) = 3 n s
    """
    if name not in ACTIVATION_FLOPS:
        raise ValueError(f"name must be one of {', '.join(ACTIVATION_FLOPS)}; got {name!r}")
    f_fwd, f_bwd = ACTIVATION_FLOPS[name]
    if backward:
        return Cost(f_bwd * n, 3 * n * itemsize)
    return Cost(f_fwd * n, 2 * n * itemsize)


# ----------------------------------------------------------------------- linear


def linear_cost(
    n: int, i: int, o: int, itemsize: int, backward: bool = False, bias: bool = True, activation: str = "none"
) -> Cost:
    """y = act(x W^T + b), x [N, I], W [O, I].

    forward:  flops = 2 N I O  + N O [bias]  + N O [activation]
              bytes = s (N I x + O I W + O b [bias] + N O y)
    backward: dz = dy act'(out): N O [activation];  dx = dz W: 2 N O I;  dW = dz^T x: 2 N O I;  db: N O
              flops = 4 N I O + N O + N O [activation]
              bytes = s (N O dy + N I x + O I W + N O out [activation] + N I dx + O I dW + O db)
    """
    act = activation != "none"
    if backward:
        flops = 4 * n * i * o + n * o + (n * o if act else 0)
        bytes_ = n * o + n * i + o * i + (n * o if act else 0) + n * i + o * i + o
        return Cost(flops, bytes_ * itemsize)
    flops = 2 * n * i * o + (n * o if bias else 0) + (n * o if act else 0)
    return Cost(flops, (n * i + o * i + (o if bias else 0) + n * o) * itemsize)


# ----------------------------------------------------------------------- conv2d


def conv2d_cost(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    itemsize: int = 4,
    backward: bool = False,
    bias: bool = True,
    activation: str = "none",
) -> Cost:
    """Convolution, x [N, C, H, W], W [O, C/g, KH, KW], y [N, O, OH, OW].

    OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1, likewise OW;  M = N O OH OW output elements.
    forward:  flops = 2 M (C/g) KH KW  + M [bias]  + M [activation]
              bytes = s (N C H W x + O (C/g) KH KW w + O b [bias] + M y)
    backward: dgrad and wgrad are one contraction each: flops = 4 M (C/g) KH KW + M db + M [activation']
              bytes = s (M dy + x + w + M out [activation] + x-sized dx + w-sized dw + O db)
    """
    n, c, h, w = (int(d) for d in x_shape)
    o, cg, kh, kw = (int(d) for d in w_shape)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding", 0), pair(dilation, "dilation")
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    m = n * o * oh * ow
    macs = m * cg * kh * kw
    act = activation != "none"
    nx, nw = n * c * h * w, o * cg * kh * kw
    if backward:
        flops = 4 * macs + m + (m if act else 0)
        return Cost(flops, (m + nx + nw + (m if act else 0) + nx + nw + o) * itemsize)
    flops = 2 * macs + (m if bias else 0) + (m if act else 0)
    return Cost(flops, (nx + nw + (o if bias else 0) + m) * itemsize)


def locally_connected2d_cost(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    itemsize: int = 4,
    backward: bool = False,
    bias: bool = True,
) -> Cost:
    """Locally connected layer, x [N, C, H, W], W [OH, OW, O, C, KH, KW] (one filter bank per position).

    M = N O OH OW;  P = OH OW O C KH KW weights
    forward:  flops = 2 M C KH KW + M [bias]      bytes = s (N C H W + P + O OH OW [bias] + M)
    backward: flops = 4 M C KH KW + M db          bytes = s (M dy + x + P w + x-sized dx + P dw + O OH OW db)
    """
    n, c, h, w = (int(d) for d in x_shape)
    oh, ow, o, _, kh, kw = (int(d) for d in w_shape)
    m = n * o * oh * ow
    p = _prod(w_shape)
    nx, nb = n * c * h * w, o * oh * ow
    if backward:
        return Cost(4 * m * c * kh * kw + m, (m + nx + p + nx + p + nb) * itemsize)
    return Cost(2 * m * c * kh * kw + (m if bias else 0), (nx + p + (nb if bias else 0) + m) * itemsize)


# ---------------------------------------------------------------------- pooling


def pool2d_cost(
    kind: str,
    x_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    itemsize: int = 4,
    backward: bool = False,
) -> Cost:
    """max_pool2d / avg_pool2d, x [N, C, H, W] -> y [N, C, OH, OW];  X = N C H W, Y = N C OH OW.

    max forward:  flops = Y KH KW (one compare per tap)    bytes = s X + s Y + 8 Y (int64 indices)
    max backward: flops = Y (one add per routed gradient)  bytes = s Y dy + 8 Y indices + s X dx
    avg forward:  flops = Y (KH KW + 1) (adds, one divide) bytes = s (X + Y)
    avg backward: flops = Y (KH KW + 1) (divide, adds)     bytes = s (Y dy + X dx)
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"kind must be 'max' or 'avg'; got {kind!r}")
    n, c, h, w = (int(d) for d in x_shape)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride if stride is not None else kernel_size, "stride")
    ph, pw = pair(padding, "padding", 0)
    y = n * c * conv_output_size(h, kh, sh, ph) * conv_output_size(w, kw, sw, pw)
    x = n * c * h * w
    if kind == "max":
        if backward:
            return max_pool2d_backward_cost(x_shape, (n, c, y // (n * c), 1), itemsize)
        return Cost(y * kh * kw, x * itemsize + y * itemsize + 8 * y)
    return Cost(y * (kh * kw + 1), (x + y) * itemsize)


def max_pool2d_backward_cost(x_shape: Sequence[int], dy_shape: Sequence[int], itemsize: int) -> Cost:
    """max_pool2d's backward needs only the sizes (the window is in the indices): as in pool2d_cost,
    flops = Y,  bytes = s Y dy + 8 Y indices + s X dx."""
    x, y = _prod(x_shape), _prod(dy_shape)
    return Cost(y, y * itemsize + 8 * y + x * itemsize)


# ---------------------------------------------------------------------- dropout


def dropout_cost(n: int, itemsize: int, mask: bool = True, backward: bool = False) -> Cost:
    """y = x * keep / (1 - p) over n elements (the same for dx from dy).

    flops = n (one multiply; the keep test folds into it)
    bytes = s (n read + n write) + n [bool mask read, when one is given rather than generated]
    """
    del backward  # the backward has exactly the forward's shape of work
    return Cost(n, 2 * n * itemsize + (n if mask else 0))


# ----------------------------------------------------------------------- losses

# flops per input element of the fused loss-and-gradient pass, reduction add included (1):
#   hinge                        m = 1 - y t (mul, sub), max, grad select, add            5
#   squared_hinge                m = 1 - y t, max, m^2, grad -2 t m (2 mul), add          7
#   binary_cross_entropy         2 log, 1 - t, 1 - y, 2 mul, add, neg;                    13
#                                grad (y - t) / max(y (1 - y), eps): sub, sub, mul, max, div; add
#   binary_cross_entropy_with_logits  max(x,0) - x t + log1p(exp(-|x|)): 6; grad sigma(x) - t: 4; add  11
#   multiclass_hinge             1 - (y_t - y_j): 2, max, grad compare, row add, add      6
#   multiclass_squared_hinge     1 - (y_t - y_j): 2, max, square, grad 2h, row add, add   7
#   cross_entropy                row max, sub, exp, row sum, grad divide, add             6
#   mse_loss                     d = y - t, d^2, grad 2 d, add                            4
#   l1_loss                      d, |d|, sign, add                                        4
#   pseudo_huber_loss            d/delta, r^2, 1 + r^2, sqrt, +1, div, mul delta^2, grad div, add  9
LOSS_FLOPS: dict[str, int] = {
    "hinge_loss": 5,
    "squared_hinge_loss": 7,
    "binary_cross_entropy": 13,
    "binary_cross_entropy_with_logits": 11,
    "multiclass_hinge_loss": 6,
    "multiclass_squared_hinge_loss": 7,
    "cross_entropy": 6,
    "mse_loss": 4,
    "l1_loss": 4,
    "pseudo_huber_loss": 9,
}
CLASS_LOSSES = ("multiclass_hinge_loss", "multiclass_squared_hinge_loss", "cross_entropy")


def loss_cost(name: str, input_shape: Sequence[int], itemsize: int, reduction: str = "mean") -> Cost:
    """A loss's forward, which returns the loss and its gradient in one pass. E = numel(input).

    flops = f_loss E
    bytes = s E input + target + s E grad + loss, where
        target = 8 N (int64 class indices, input [N, K])  for the K-class losses,  s E otherwise
        loss   = s [mean/sum]  or  s N [none, K-class]  or  s E [none, elementwise]
    """
    if name not in LOSS_FLOPS:
        raise ValueError(f"name must be one of {', '.join(LOSS_FLOPS)}; got {name!r}")
    e = _prod(input_shape)
    cls = name in CLASS_LOSSES
    n = int(input_shape[0]) if cls else e
    target = 8 * n if cls else e * itemsize
    loss = itemsize if reduction != "none" else n * itemsize
    return Cost(LOSS_FLOPS[name] * e, e * itemsize + target + e * itemsize + loss)


def loss_backward_cost(grad_shape: Sequence[int], grad_output_shape: Sequence[int], itemsize: int) -> Cost:
    """dinput = grad_output * grad_input, E = numel(grad_input), G = numel(grad_output) (1 if scalar).

    flops = E          bytes = s (E read + G read + E write)
    """
    e, g = _prod(grad_shape), _prod(grad_output_shape)
    return Cost(e, (2 * e + g) * itemsize)


# ------------------------------------------------------------------ regularizers

# flops per element, bytes in units of s * n (n elements of weight or of all gradients together):
#   l1_penalty forward     lam sum |w|: abs, add                  2    read w, write scalar: n s + s
#   l1_penalty backward    g lam sign(w): sign, mul              2    read w, write dw:     2 n s
#   l2_penalty forward     lam/2 sum w^2: mul, add               2    n s + s
#   l2_penalty backward    g lam w: mul                          1    2 n s
#   max_norm               row sum w^2 (2), scale (mul)          3    read w, write w:      2 n s
#   clip_grad_norm         sum g^2 (2), scale (mul)              3    read g, write g, norm: 2 n s + s
#   clip_grad_value        clip: min, max                        2    2 n s
REGULARIZER_FLOPS: dict[str, int] = {
    "l1_penalty": 2,
    "l1_penalty_backward": 2,
    "l2_penalty": 2,
    "l2_penalty_backward": 1,
    "max_norm": 3,
    "clip_grad_norm": 3,
    "clip_grad_value": 2,
}


def regularizer_cost(name: str, n: int, itemsize: int) -> Cost:
    """A regularizer over n elements (``name`` a key of REGULARIZER_FLOPS; the table above has the formulas)."""
    if name not in REGULARIZER_FLOPS:
        raise ValueError(f"name must be one of {', '.join(REGULARIZER_FLOPS)}; got {name!r}")
    reads_only = name in ("l1_penalty", "l2_penalty")
    bytes_ = n * itemsize + itemsize if reads_only else 2 * n * itemsize
    if name == "clip_grad_norm":
        bytes_ += itemsize
    return Cost(REGULARIZER_FLOPS[name] * n, bytes_)


# -------------------------------------------------------------------- recurrent

# the workspace the forward writes for the backward, in units of H per (t, b)
WORKSPACE_WIDTH = {("rnn", ""): 0, ("lstm", "forget"): 5, ("lstm", "peephole"): 5, ("lstm", "no_forget"): 4,
                   ("gru", "cudnn"): 4, ("gru", "cho"): 3, ("mgu", ""): 2}  # fmt: skip
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "mgu": 2}


def recurrent_cost(
    family: str,
    t: int,
    b: int,
    i: int,
    h: int,
    itemsize: int,
    backward: bool = False,
    variant: str = "",
    bias: bool = True,
) -> Cost:
    """One layer over a sequence: rnn, lstm (variants forget | no_forget | peephole), gru (cudnn | cho), mgu.

    G gates (rnn 1, lstm 4 or 3 for no_forget, gru 3, mgu 2), workspace width W (WORKSPACE_WIDTH),
    S = number of states (2 for lstm: h and c; 1 otherwise), P = 3 H peephole weights (peephole only).
    forward:  flops = 2 T B G H (I + H)     (x W_ih^T for all steps, h W_hh^T per step)
              bytes = s (T B I x + G H I W_ih + G H H W_hh + 2 G H [bias] + P + S B H initial states
                         + T B H output + S B H final states + T B W H workspace)
    backward: flops = 4 T B G H (I + H)     (dx = dz W_ih, dh = dz W_hh, dW_ih = dz^T x, dW_hh = dz^T h)
              bytes = s (T B H d_output + S B H d_final + T B I x + S B H initial + G H I + G H H + P
                         + T B H output + T B W H workspace
                         + T B I dx + S B H d_initial + G H I + G H H dW + 2 G H db + P dP)
    """
    if family not in GATES:
        raise ValueError(f"family must be one of {', '.join(GATES)}; got {family!r}")
    g = 3 if (family == "lstm" and variant == "no_forget") else GATES[family]
    key = (family, variant if family in ("lstm", "gru") else "")
    if key not in WORKSPACE_WIDTH:
        raise ValueError(f"variant {variant!r} is not one of {family}'s variants")
    ws = WORKSPACE_WIDTH[key]
    states = 2 if family == "lstm" else 1
    peep = 3 * h if variant == "peephole" else 0
    weights = g * h * i + g * h * h
    gemm = 2 * t * b * g * h * (i + h)
    if backward:
        e = (t * b * h + states * b * h + t * b * i + states * b * h + weights + peep + t * b * h + t * b * ws * h
             + t * b * i + states * b * h + weights + 2 * g * h + peep)  # fmt: skip
        return Cost(2 * gemm, e * itemsize)
    e = (t * b * i + weights + (2 * g * h if bias else 0) + peep + states * b * h + t * b * h + states * b * h
         + t * b * ws * h)  # fmt: skip
    return Cost(gemm, e * itemsize)


# ------------------------------------------------------------- applied to calls


@cache
def _signature(op: str) -> inspect.Signature:
    from ..ops import OPS, backend_module

    return inspect.signature(getattr(backend_module("numpy", OPS[op]), op))


def bind(op: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by the reference's parameter names, defaults filled in."""
    ba = _signature(op).bind(*args, **kwargs)
    ba.apply_defaults()
    return dict(ba.arguments)


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(a, "shape", ()))


def call_cost(op: str, args: tuple, kwargs: dict, itemsize: int) -> Cost:
    """The Cost of ``dlgpu.ops.<op>(*args, **kwargs)`` computed in a dtype of ``itemsize`` bytes."""
    from ..ops import OPS

    if op not in OPS:
        raise ValueError(f"op must be one of dlgpu's ops; got {op!r}")
    a, fam, s = bind(op, args, kwargs), OPS[op], itemsize
    bwd = op.endswith("_backward")
    base = op.removesuffix("_forward").removesuffix("_backward")
    if fam == "activations":
        return activation_cost(base, _prod(_shape(a["dy"] if bwd else a["x"])), s, bwd)
    if fam == "linear":
        x, w = _shape(a["x"]), _shape(a["weight"])
        bias = bwd or a["bias"] is not None
        return linear_cost(_prod(x[:-1]), w[1], w[0], s, bwd, bias, a["activation"])
    if fam == "conv":
        bias = bwd or a["bias"] is not None
        return conv2d_cost(_shape(a["x"]), _shape(a["weight"]), a["stride"], a["padding"], a["dilation"],
                           a["groups"], s, bwd, bias, a["activation"])  # fmt: skip
    if fam == "locally_connected":
        return locally_connected2d_cost(_shape(a["x"]), _shape(a["weight"]), s, bwd, bwd or a["bias"] is not None)
    if fam == "pooling":
        kind = base.split("_")[0]
        if bwd and kind == "max":
            return max_pool2d_backward_cost(a["x_shape"], _shape(a["dy"]), s)
        x_shape = a["x_shape"] if bwd else _shape(a["x"])
        return pool2d_cost(kind, x_shape, a["kernel_size"], a["stride"], a["padding"], s, bwd)
    if fam == "dropout":
        return dropout_cost(_prod(_shape(a["dy"] if bwd else a["x"])), s, a["mask"] is not None, bwd)
    if fam == "losses":
        if op == "loss_backward":
            return loss_backward_cost(_shape(a["grad_input"]), _shape(a["grad_output"]), s)
        return loss_cost(base, _shape(a["input"]), s, a["reduction"])
    if fam == "regularizers":
        key = base + ("_backward" if bwd else "")
        if base == "clip_grad_norm":
            return regularizer_cost(key, sum(_prod(_shape(g)) for g in a["grads"]), s)
        return regularizer_cost(key, _prod(_shape(a.get("weight", a.get("grad")))), s)
    # recurrent: rnn, lstm, gru, mgu
    t, b, i = _shape(a["x"])
    h = _shape(a["weight_hh"])[1]
    variant = a.get("variant", "") or ""
    bias = bwd or a.get("bias_ih") is not None or a.get("bias_hh") is not None
    return recurrent_cost(fam, t, b, i, h, s, bwd, variant, bias)


def describe(op: str, args: tuple, kwargs: dict) -> str:
    """A short shape label for a call, e.g. '32x64x56x56 * 64x64x3x3 s1 p1' or 'T100 B8 I256 H256'."""
    from ..ops import OPS

    a, fam = bind(op, args, kwargs), OPS[op]
    dims = lambda v: "x".join(str(d) for d in _shape(v)) or "scalar"  # noqa: E731
    if fam == "conv":
        (sh, _), (ph, _) = pair(a["stride"], "stride"), pair(a["padding"], "padding", 0)
        extra = f" d{pair(a['dilation'], 'dilation')[0]}" if pair(a["dilation"], "dilation") != (1, 1) else ""
        extra += f" g{a['groups']}" if a["groups"] != 1 else ""
        return f"{dims(a['x'])} * {dims(a['weight'])} s{sh} p{ph}{extra}"
    if fam == "locally_connected":
        return f"{dims(a['x'])} * {dims(a['weight'])}"
    if fam == "linear":
        return f"{dims(a['x'])} -> {_shape(a['weight'])[0]}"
    if fam == "pooling":
        if "x" in a:
            k, st, p = a["kernel_size"], a["stride"] if a["stride"] is not None else a["kernel_size"], a["padding"]
            return f"{dims(a['x'])} k{pair(k, 'k')[0]} s{pair(st, 's')[0]} p{pair(p, 'p', 0)[0]}"
        return "x".join(str(d) for d in a["x_shape"])
    if fam in ("rnn", "lstm", "gru", "mgu"):
        t, b, i = _shape(a["x"])
        return f"T{t} B{b} I{i} H{_shape(a['weight_hh'])[1]}"
    if fam == "regularizers" and "grads" in a:
        return " + ".join(dims(g) for g in a["grads"])
    first = next(iter(a.values()))
    return dims(a.get("input", a.get("grad_input", first)))
