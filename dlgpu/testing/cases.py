"""Seeded test cases for every op: inputs, the backward's inputs, and the runner that checks a
backend against the float64 reference. Shared by ``dlgpu check``, the bench tool and the tests.

A ``Case`` holds float64 inputs for one forward op and, optionally, a recipe that builds the
matching backward call from the *reference* forward's outputs (so a backward is judged on its
own, not on its forward's rounding). ``run_case`` casts the inputs to the dtype under test, runs
the backend, runs the reference in float64, and returns one ``Report`` per output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .harness import Report, compare, labels, randn, signs, uniform

# Sizes: "tiny" for tests (fast under the Triton interpreter too), "quick" for `dlgpu check`
# and `dlgpu bench --quick`; "paper" (the layer shapes of ResNet-18, VGG-16 and the recurrent
# benchmarks of the literature) and "large" for `dlgpu bench --sizes` on a GPU.
SIZES = ("tiny", "quick", "paper", "large")


@dataclass
class Case:
    """One op's forward call (float64 inputs) and how to build its backward call."""

    name: str  # short name shown in tables: 'conv2d', 'lstm[peephole]'
    tol_op: str  # key into the tolerance table
    forward: str  # op name in dlgpu.ops
    args: tuple
    kwargs: dict = field(default_factory=dict)
    backward: str | None = None
    # (reference forward outputs as a tuple, generator) -> (args, kwargs) of the backward call
    make_backward: Callable[[tuple, np.random.Generator], tuple[tuple, dict]] | None = None
    # indices of the forward outputs that are compared (None: all array outputs)
    compare_outputs: tuple[int, ...] | None = None


def _t(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


# ---------------------------------------------------------------------- families


def _activation_cases(g: np.random.Generator, n: int, k: int) -> list[Case]:
    out = []
    x = randn((n, k), g, scale=2.0, min_abs=0.05)
    for act, from_output in (
        ("relu", False),
        ("leaky_relu", False),
        ("sigmoid", True),
        ("tanh", True),
        ("softplus", False),
        ("softmax", True),
        ("log_softmax", True),
    ):

        def mk(outs, gen, _x=x, _fo=from_output):
            return (randn(outs[0].shape, gen), outs[0] if _fo else _x), {}

        out.append(Case(act, act, f"{act}_forward", (x,), {}, f"{act}_backward", mk))
    return out


def _linear_case(g: np.random.Generator, n: int, i: int, o: int, act: str) -> Case:
    x, w, b = randn((n, i), g), randn((o, i), g, scale=i**-0.5), randn((o,), g)

    def mk(outs, gen):
        return (randn(outs[0].shape, gen), x, w, outs[0], act), {}

    return Case(f"linear[{act}]", "linear", "linear_forward", (x, w, b, act), {}, "linear_backward", mk)


def _conv_case(g, n, c, h, w, o, k, stride, padding, dilation, groups, act) -> Case:
    x = randn((n, c, h, w), g)
    wt = randn((o, c // groups, k, k), g, scale=(c * k * k / groups) ** -0.5)
    b = randn((o,), g)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, activation=act)

    def mk(outs, gen):
        bkw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, out=outs[0], activation=act)
        return (randn(outs[0].shape, gen), x, wt), bkw

    name = f"conv2d[s{stride},p{padding},d{dilation},g{groups},{act}]"
    return Case(name, "conv2d", "conv2d_forward", (x, wt, b), kw, "conv2d_backward", mk)


def _lc_case(g, n, c, h, w, o, k, stride, padding) -> Case:
    from ..reference.locally_connected import locally_connected2d_output_shape

    oh, ow = locally_connected2d_output_shape((n, c, h, w), k, stride, padding)
    x = randn((n, c, h, w), g)
    wt = randn((oh, ow, o, c, k, k), g, scale=(c * k * k) ** -0.5)
    b = randn((o, oh, ow), g)

    def mk(outs, gen):
        return (randn(outs[0].shape, gen), x, wt), dict(stride=stride, padding=padding)

    kw = dict(stride=stride, padding=padding)
    return Case(
        "locally_connected2d", "locally_connected2d", "locally_connected2d_forward", (x, wt, b), kw,
        "locally_connected2d_backward", mk,
    )  # fmt: skip


def _pool_cases(g, n, c, h, w) -> list[Case]:
    # distinct values: no ties, so every backend routes max-pool gradients identically
    x = (g.permutation(n * c * h * w).reshape(n, c, h, w) / (n * c * h * w) + 0.01).astype(np.float64)
    cases = []
    for k, s, p in ((2, 2, 0), (3, 2, 1)):

        def mk_max(outs, gen, _x=x):
            return (randn(outs[0].shape, gen), outs[1], _x.shape), {}

        cases.append(
            Case(f"max_pool2d[k{k},s{s},p{p}]", "max_pool2d", "max_pool2d_forward", (x, k, s, p), {},
                 "max_pool2d_backward", mk_max)
        )  # fmt: skip
        for cip in (True, False):

            def mk_avg(outs, gen, _k=k, _s=s, _p=p, _c=cip):
                return (randn(outs[0].shape, gen), x.shape, _k, _s, _p, _c), {}

            cases.append(
                Case(f"avg_pool2d[k{k},s{s},p{p},{'incl' if cip else 'excl'}]", "avg_pool2d",
                     "avg_pool2d_forward", (x, k, s, p, cip), {}, "avg_pool2d_backward", mk_avg)
            )  # fmt: skip
    return cases


def _dropout_case(g, n, k) -> Case:
    x = randn((n, k), g)
    p = 0.3
    mask = g.random((n, k)) >= p  # explicit: every backend's own RNG draws its own masks

    def mk(outs, gen):
        return (randn(outs[0].shape, gen), p), dict(mask=mask)

    return Case("dropout", "dropout", "dropout_forward", (x, p), dict(mask=mask), "dropout_backward", mk)


def _loss_cases(g, n, k) -> list[Case]:
    cases = []
    y = randn((n, k), g, scale=2.0)
    t_idx = labels(n, k, g)
    prob = uniform((n, k), g, 0.05, 0.95)
    t01 = uniform((n, k), g, 0.0, 1.0)
    tpm = signs((n, k), g)
    # keep binary hinge inputs off the kink 1 - y t = 0
    yh = np.where(np.abs(1 - y * tpm) < 0.05, y + 0.1, y)
    specs = [
        ("hinge_loss", yh, tpm, {}),
        ("squared_hinge_loss", yh, tpm, {}),
        ("binary_cross_entropy", prob, t01, {}),
        ("binary_cross_entropy_with_logits", y, t01, {}),
        ("multiclass_hinge_loss", y, t_idx, {}),
        ("multiclass_squared_hinge_loss", y, t_idx, {}),
        ("cross_entropy", y, t_idx, {}),
        ("mse_loss", y, randn((n, k), g), {}),
        ("l1_loss", y, y + randn((n, k), g, min_abs=0.05), {}),
        ("pseudo_huber_loss", y, randn((n, k), g), {"delta": 0.7}),
    ]
    for name, inp, tgt, extra in specs:
        for red in ("mean", "none"):

            def mk(outs, gen, _red=red):
                go = np.asarray(1.7) if _red != "none" else randn(outs[0].shape, gen)
                return (go, outs[1], _red), {}

            cases.append(
                Case(f"{name}[{red}]", name, f"{name}_forward", (inp, tgt, red), dict(extra), "loss_backward", mk)
            )
    return cases


def _regularizer_cases(g, o, i) -> list[Case]:
    w = randn((o, i), g)
    grads = [randn((o, i), g), randn((i,), g)]
    norms = np.sqrt(np.sum(w * w, axis=1))
    c = float(np.median(norms))  # half the rows get clamped

    def mk_l1(outs, gen):
        return (w, 0.3, np.asarray(1.3)), {}

    def mk_l2(outs, gen):
        return (w, 0.3, np.asarray(1.3)), {}

    return [
        Case("l1_penalty", "l1_penalty", "l1_penalty_forward", (w, 0.3), {}, "l1_penalty_backward", mk_l1),
        Case("l2_penalty", "l2_penalty", "l2_penalty_forward", (w, 0.3), {}, "l2_penalty_backward", mk_l2),
        Case("max_norm", "max_norm", "max_norm_forward", (w, c)),
        Case("clip_grad_norm", "clip_grad_norm", "clip_grad_norm_forward", (grads, 1.0)),
        Case("clip_grad_value", "clip_grad_value", "clip_grad_value_forward", (grads[0], 0.5)),
    ]


def _recurrent_cases(g, t, b, i, h) -> list[Case]:
    cases = []
    x = randn((t, b, i), g)
    h0 = randn((b, h), g, scale=0.5)
    c0 = randn((b, h), g, scale=0.5)

    def weights(gates: int):
        s = h**-0.5
        return (
            randn((gates * h, i), g, scale=s),
            randn((gates * h, h), g, scale=s),
            randn((gates * h,), g, scale=s),
            randn((gates * h,), g, scale=s),
        )

    for nl in ("tanh", "relu"):
        wih, whh, bih, bhh = weights(1)

        def mk(outs, gen, _w=(wih, whh), _nl=nl):
            return (randn(outs[0].shape, gen), randn(outs[1].shape, gen), x, h0, *_w, outs[0], _nl), {}

        cases.append(
            Case(f"rnn[{nl}]", "rnn", "rnn_forward", (x, h0, wih, whh, bih, bhh, nl), {}, "rnn_backward", mk)
        )
    for variant, gates in (("forget", 4), ("no_forget", 3), ("peephole", 4)):
        wih, whh, bih, bhh = weights(gates)
        wp = randn((3, h), g, scale=0.5) if variant == "peephole" else None

        def mk(outs, gen, _w=(wih, whh), _v=variant, _wp=wp):
            d = (randn(outs[0].shape, gen), randn(outs[1].shape, gen), randn(outs[2].shape, gen))
            return (*d, x, h0, c0, *_w, outs[0], outs[3]), dict(weight_peephole=_wp, variant=_v)

        cases.append(
            Case(f"lstm[{variant}]", "lstm", "lstm_forward", (x, h0, c0, wih, whh, bih, bhh),
                 dict(weight_peephole=wp, variant=variant), "lstm_backward", mk)
        )  # fmt: skip
    for variant in ("cudnn", "cho"):
        wih, whh, bih, bhh = weights(3)

        def mk(outs, gen, _w=(wih, whh), _v=variant):
            d = (randn(outs[0].shape, gen), randn(outs[1].shape, gen))
            return (*d, x, h0, *_w, outs[0], outs[2]), dict(variant=_v)

        cases.append(
            Case(f"gru[{variant}]", "gru", "gru_forward", (x, h0, wih, whh, bih, bhh), dict(variant=variant),
                 "gru_backward", mk)
        )  # fmt: skip
    wih, whh, bih, bhh = weights(2)

    def mk_mgu(outs, gen):
        d = (randn(outs[0].shape, gen), randn(outs[1].shape, gen))
        return (*d, x, h0, wih, whh, outs[0], outs[2]), {}

    cases.append(Case("mgu", "mgu", "mgu_forward", (x, h0, wih, whh, bih, bhh), {}, "mgu_backward", mk_mgu))
    return cases


def all_cases(seed: int = 0, size: str = "quick") -> list[Case]:
    """Every op's cases, inputs drawn from ``seed``; ``size`` in SIZES."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    if size in ("paper", "large"):
        return select_cases(seed, size)
    g = np.random.default_rng(seed)
    tiny = size == "tiny"
    n, k = (5, 13) if tiny else (257, 129)
    cases = _activation_cases(g, n, k)
    cases += [_linear_case(g, n, 11 if tiny else 129, 7 if tiny else 65, a) for a in ("none", "relu", "tanh")]
    if tiny:
        cases += [
            _conv_case(g, 2, 4, 7, 6, 6, 3, 1, 1, 1, 1, "relu"),
            _conv_case(g, 2, 4, 9, 7, 6, 3, 2, 0, 2, 2, "none"),
            _lc_case(g, 2, 3, 6, 5, 4, 3, 1, 1),
        ]
        cases += _pool_cases(g, 2, 3, 7, 9)
    else:
        cases += [
            _conv_case(g, 4, 16, 17, 15, 32, 3, 1, 1, 1, 1, "relu"),
            _conv_case(g, 4, 16, 17, 15, 32, 3, 2, 1, 2, 4, "none"),
            _lc_case(g, 4, 8, 13, 11, 16, 3, 1, 1),
        ]
        cases += _pool_cases(g, 4, 16, 33, 31)
    cases.append(_dropout_case(g, n, k))
    cases += _loss_cases(g, n, k)
    cases += _regularizer_cases(g, 7 if tiny else 129, 5 if tiny else 257)
    cases += _recurrent_cases(g, *((4, 3, 5, 6) if tiny else (13, 17, 33, 31)))
    return cases


# ------------------------------------------------------------- benchmark sizes

# (label, N, C, H=W, O, K, stride, padding, activation): ResNet-18's distinct conv layers at batch
# 32 (the stem, the first 3x3 of each stage, a strided 3x3 and a 1x1 downsample), one with the fused
# bias+ReLU epilogue, and two VGG-16 layers at batch 16.
_PAPER_CONV = (
    ("resnet18.conv1", 32, 3, 224, 64, 7, 2, 3, "none"),
    ("resnet18.layer1", 32, 64, 56, 64, 3, 1, 1, "none"),
    ("resnet18.layer1+relu", 32, 64, 56, 64, 3, 1, 1, "relu"),
    ("resnet18.layer2.down3x3", 32, 64, 56, 128, 3, 2, 1, "none"),
    ("resnet18.layer2.down1x1", 32, 64, 56, 128, 1, 2, 0, "none"),
    ("resnet18.layer2", 32, 128, 28, 128, 3, 1, 1, "none"),
    ("resnet18.layer3", 32, 256, 14, 256, 3, 1, 1, "none"),
    ("resnet18.layer4", 32, 512, 7, 512, 3, 1, 1, "none"),
    ("vgg16.conv1_2", 16, 64, 224, 64, 3, 1, 1, "relu"),
    ("vgg16.conv3_2", 16, 256, 56, 256, 3, 1, 1, "relu"),
)
# the same layers at batch 128 (VGG at 64)
_LARGE_CONV = tuple((lb, 64 if lb.startswith("vgg") else 128, *rest) for lb, _, *rest in _PAPER_CONV)

# recurrent sweep: T = 100, B x H (I = H); the variants beyond torch's cells at one shape
_PAPER_RNN = dict(t=100, batches=(1, 8, 64), hiddens=(256, 512, 1024), variant_shape=(64, 512))
_LARGE_RNN = dict(t=100, batches=(128, 256), hiddens=(1024, 2048), variant_shape=(256, 1024))
_MAIN_CELLS = ("rnn[tanh]", "lstm[forget]", "gru[cudnn]", "mgu")

_BENCH_SHAPES = {
    # n x k for the elementwise families, (N, I, O, act) for linear, (N, C, H, W) for pooling,
    # (N, C, H, W, O, K, stride, padding) for the locally connected layer, (O, I) for the regularizers
    "paper": dict(ew=(8192, 4096), loss=(8192, 4096), linear=((8192, 1024, 1024, "relu"), (2048, 4096, 4096, "none")),
                  pool=(32, 64, 112, 112), lc=(32, 32, 32, 32, 32, 3, 1, 1), reg=(4096, 4096),
                  conv=_PAPER_CONV, rnn=_PAPER_RNN),
    "large": dict(ew=(16384, 8192), loss=(16384, 4096), linear=((16384, 4096, 4096, "relu"),
                  (8192, 8192, 8192, "none")), pool=(128, 64, 112, 112), lc=(64, 64, 32, 32, 64, 3, 1, 1),
                  reg=(8192, 8192), conv=_LARGE_CONV, rnn=_LARGE_RNN),
}  # fmt: skip


def _named(case: Case, name: str) -> Case:
    return Case(**{**case.__dict__, "name": name})


def _bench_conv(g: np.random.Generator, layers: tuple) -> list[Case]:
    out = []
    for label, n, c, hw, o, k, stride, padding, act in layers:
        out.append(_named(_conv_case(g, n, c, hw, hw, o, k, stride, padding, 1, 1, act), f"conv2d[{label}]"))
    return out


def _bench_recurrent(g: np.random.Generator, spec: dict) -> list[Case]:
    # I = H unless the spec gives "input_size"
    out = []
    for b in spec["batches"]:
        for h in spec["hiddens"]:
            out += [c for c in _recurrent_cases(g, spec["t"], b, spec.get("input_size", h), h) if c.name in _MAIN_CELLS]
    if spec.get("variant_shape"):
        b, h = spec["variant_shape"]
        out += [c for c in _recurrent_cases(g, spec["t"], b, spec.get("input_size", h), h) if c.name not in _MAIN_CELLS]
    return out


# (name prefixes the family's cases start with, its key in the shapes dict, builder(generator, shapes))
_BENCH_FAMILIES: tuple[tuple[tuple[str, ...], str, Callable[[np.random.Generator, dict], list[Case]]], ...] = (
    (("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax"), "ew",
     lambda g, s: _activation_cases(g, *s["ew"])),
    (("linear",), "linear", lambda g, s: [_linear_case(g, *shape) for shape in s["linear"]]),
    (("conv2d",), "conv", lambda g, s: _bench_conv(g, s["conv"])),
    (("locally_connected2d",), "lc", lambda g, s: [_lc_case(g, *s["lc"])]),
    (("max_pool2d", "avg_pool2d"), "pool", lambda g, s: _pool_cases(g, *s["pool"])),
    (("dropout",), "ew", lambda g, s: [_dropout_case(g, *s["ew"])]),
    (("hinge_loss", "squared_hinge_loss", "binary_cross_entropy", "multiclass_hinge_loss",
      "multiclass_squared_hinge_loss", "cross_entropy", "mse_loss", "l1_loss", "pseudo_huber_loss"), "loss",
     lambda g, s: _loss_cases(g, *s["loss"])),
    (("l1_penalty", "l2_penalty", "max_norm", "clip_grad_norm", "clip_grad_value"), "reg",
     lambda g, s: _regularizer_cases(g, *s["reg"])),
    (("rnn", "lstm", "gru", "mgu"), "rnn", lambda g, s: _bench_recurrent(g, s["rnn"])),
)  # fmt: skip


def _matches(name: str, ops: Sequence[str] | None) -> bool:
    return ops is None or any(name.startswith(o) for o in ops)


def select_cases(seed: int = 0, size: str = "quick", ops: Sequence[str] | None = None) -> list[Case]:
    """The cases of ``size`` whose name starts with one of ``ops`` (all when None).

    For "paper" and "large" only the families asked for are built (their inputs are large), see
    ``cases_from_shapes``.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    if isinstance(ops, str):
        raise TypeError(f"ops must be a sequence of name prefixes, got the string {ops!r}")
    if size in ("tiny", "quick"):
        return [c for c in all_cases(seed, size) if _matches(c.name, ops)]
    return cases_from_shapes(_BENCH_SHAPES[size], seed, ops)


def cases_from_shapes(shapes: dict[str, Any], seed: int = 0, ops: Sequence[str] | None = None) -> list[Case]:
    """Cases at the shapes of ``shapes`` (a dict like ``_BENCH_SHAPES["paper"]``; a family whose key is
    missing is left out), for names starting with one of ``ops`` (all when None).

    Only the families asked for are built, each from its own generator, ``default_rng([seed,
    family index])``, so a family's inputs do not depend on which others were selected.
    """
    if isinstance(ops, str):
        raise TypeError(f"ops must be a sequence of name prefixes, got the string {ops!r}")
    out: list[Case] = []
    for idx, (prefixes, key, build) in enumerate(_BENCH_FAMILIES):
        wanted = ops is None or any(p.startswith(o) or o.startswith(p) for p in prefixes for o in ops)
        if wanted and key in shapes:
            out += [c for c in build(np.random.default_rng([seed, idx]), shapes) if _matches(c.name, ops)]
    return out


# ---------------------------------------------------------------------- running


def cast(value: Any, dtype: Any) -> Any:
    """Float arrays (also inside lists/tuples) to ``dtype``; everything else unchanged."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(cast(v, dtype) for v in value)
    return value


LOW_PRECISION = ("float16", "bfloat16")


def _map_arrays(value: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map_arrays(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_arrays(v, fn) for k, v in value.items()}
    return value


def rounded(value: Any, dtype: str) -> Any:
    """float64 arrays rounded through ``dtype`` (bfloat16 too) and back to float64, so the reference
    sees exactly the inputs a low-precision kernel sees and only the kernel's own rounding is judged."""
    if dtype not in LOW_PRECISION:
        return value
    import torch

    tdt = getattr(torch, dtype)
    return _map_arrays(value, lambda a: torch.from_numpy(a).to(tdt).double().numpy())


def torch_inputs(dtype: str, device: str = "cpu") -> Callable[[np.ndarray], Any]:
    """A ``convert`` for ``run_case``: float arrays to torch tensors of ``dtype`` on ``device``
    (other arrays, e.g. class indices and masks, keep their dtype)."""
    import torch

    tdt = getattr(torch, dtype)

    def conv(a: np.ndarray) -> Any:
        t = torch.from_numpy(np.array(a, order="C"))  # (ascontiguousarray would make 0-d arrays 1-d)
        return t.to(device=device, dtype=tdt if a.dtype.kind == "f" else t.dtype)

    return conv


def _flatten(out: Any) -> list[Any]:
    """Forward/backward results as a flat list of arrays (None kept in place)."""
    flat: list[Any] = []
    for o in _t(out):
        if isinstance(o, list):
            flat.extend(o)
        else:
            flat.append(o)
    return flat


@dataclass
class CaseResult:
    """Reports for one case on one backend and dtype, with the time of one call each way."""

    case: Case
    backend: str
    dtype: str
    reports: list[Report]
    forward_s: float = float("nan")
    backward_s: float = float("nan")
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the backend ran and every output matched the reference."""
        return not self.error and all(r.ok for r in self.reports)

    @property
    def worst(self) -> Report | None:
        """The report with the largest relative L2 error (failed ones first)."""
        if not self.reports:
            return None
        return max(self.reports, key=lambda r: (not r.ok, r.rel_l2_err))


def _names(op: str, n: int) -> list[str]:
    return [f"{op}:out{i}" for i in range(n)]


@dataclass
class Prepared:
    """A case made ready for one dtype: inputs rounded through it (float64 arrays), the float64
    reference outputs, and the backward call built from them (None where the op has no backward)."""

    case: Case
    ref_out: tuple
    bargs: tuple | None = None
    bkwargs: dict | None = None
    ref_grads: list | None = None


def prepare(case: Case, dtype: Any = np.float32, seed: int = 0, cache: dict | None = None) -> Prepared:
    """Round ``case``'s inputs through ``dtype`` and run the float64 reference forward and backward.

    ``cache`` (a dict the caller keeps per case) saves the reference for later calls: float32 and
    float64 share one entry (their inputs are not rounded), each low-precision dtype has its own.
    """
    from .. import ops
    from .tolerances import dtype_name

    dname = dtype_name(dtype)
    key = dname if dname in LOW_PRECISION else "exact"
    if cache is not None and key in cache:
        return cache[key]
    case = Case(**{**case.__dict__, "args": rounded(case.args, dname), "kwargs": rounded(case.kwargs, dname)})
    ref_ops = {
        name: getattr(ops.backend_module("numpy", ops.OPS[name]), name)
        for name in (case.forward, case.backward) if name
    }  # fmt: skip
    prep = Prepared(case, _t(ref_ops[case.forward](*case.args, **case.kwargs)))
    if case.backward is not None and case.make_backward is not None:
        bargs, bkwargs = case.make_backward(prep.ref_out, np.random.default_rng(seed + 1))
        prep.bargs, prep.bkwargs = rounded(bargs, dname), rounded(bkwargs, dname)
        prep.ref_grads = _flatten(ref_ops[case.backward](*prep.bargs, **prep.bkwargs))
    if cache is not None:
        cache[key] = prep
    return prep


def backend_value(value: Any, dtype: Any, convert: Callable[[Any], Any] | None = None) -> Any:
    """An input as a backend takes it: float arrays cast to ``dtype`` (or through ``convert``,
    e.g. ``torch_inputs``), inside lists and tuples too; non-arrays unchanged."""
    v = value if convert is not None else cast(value, dtype)
    if isinstance(v, (list, tuple)):
        return type(v)(backend_value(x, dtype, convert) for x in v)
    if isinstance(v, np.ndarray):
        return convert(v) if convert is not None else v
    return v


def run_case(
    case: Case,
    backend: str,
    dtype: Any = np.float32,
    seed: int = 0,
    convert: Callable[[Any], Any] | None = None,
    cache: dict | None = None,
) -> CaseResult:
    """Check ``backend`` on ``case`` in ``dtype`` against the float64 reference.

    ``convert`` maps numpy inputs to what the backend takes (e.g. ``torch_inputs("bfloat16")`` for
    triton); errors raised by the backend are caught and reported, never hidden. For float16 and
    bfloat16 the reference runs on the inputs rounded to that dtype. ``cache``: see ``prepare``
    (one dict per case, to check several backends against one reference run).
    """
    from .. import ops
    from .tolerances import dtype_name

    dname = dtype_name(dtype)
    if convert is None and dname == "bfloat16":
        raise ValueError("dtype bfloat16 needs a convert (numpy has no bfloat16), e.g. torch_inputs('bfloat16')")
    prep = prepare(case, dname, seed, cache)
    case, ref_out = prep.case, prep.ref_out

    def to_backend(v: Any) -> Any:
        return backend_value(v, dtype, convert)

    result = CaseResult(case, backend, dname, [])
    try:
        args = to_backend(case.args)
        kwargs = {k: to_backend(v) for k, v in case.kwargs.items()}
        t0 = time.perf_counter()
        out = _t(ops.call(case.forward, *args, backend=backend, **kwargs))
        result.forward_s = time.perf_counter() - t0
    except Exception as e:  # reported, not hidden
        result.error = f"forward: {type(e).__name__}: {e}"
        return result
    flat_ref, flat_out = _flatten(ref_out), _flatten(out)
    if len(flat_out) != len(flat_ref):
        result.error = f"forward: returned {len(flat_out)} outputs, the reference {len(flat_ref)}"
        return result
    idx = case.compare_outputs if case.compare_outputs is not None else range(len(flat_ref))
    names = _names(case.forward, len(flat_ref))
    for i in idx:
        if flat_ref[i] is None:
            continue
        result.reports.append(compare(flat_out[i], flat_ref[i], op=case.tol_op, dtype=dname, name=names[i]))
    if prep.bargs is None:
        return result
    bargs, bkwargs, ref_grads = prep.bargs, prep.bkwargs, prep.ref_grads
    try:
        args = to_backend(bargs)
        kwargs = {k: to_backend(v) for k, v in bkwargs.items()}
        t0 = time.perf_counter()
        grads = _flatten(ops.call(case.backward, *args, backend=backend, **kwargs))
        result.backward_s = time.perf_counter() - t0
    except Exception as e:
        result.error = f"backward: {type(e).__name__}: {e}"
        return result
    if len(grads) != len(ref_grads):  # zip would drop the missing gradients unchecked
        result.error = f"backward: returned {len(grads)} outputs, the reference {len(ref_grads)}"
        return result
    names = _names(case.backward, len(ref_grads))
    for i, (gr, rr) in enumerate(zip(grads, ref_grads)):
        if rr is None:
            continue
        result.reports.append(compare(gr, rr, op=case.tol_op, dtype=dname, name=names[i]))
    return result
