"""The cupy backend's recurrent loaders (kernels/cuda/{rnn,lstm,gru,mgu}.py) without a GPU.

The loaders run under ``_host.host_run()``: torch CPU tensors (stand-ins for torch CUDA tensors) and
NumPy arrays (stand-ins for cupy arrays) go in, each launch is recorded and executed at once by the
``.cu`` sources compiled for the CPU. Checked here, against the float64 reference and the launch log:
None arguments, several tiles, non-contiguous inputs, the step sequence, the GEMM layouts and offsets,
the path choice and its fallbacks, that every instantiation is launched, and bad input. The ops at
large (every variant and dtype, both paths, through ``dlgpu.ops.call``) are in test_cupy_recurrent.py,
on the GPU and on the host.
"""

from __future__ import annotations

import re

import pytest
import torch

from dlgpu.kernels.cuda import _common, _host
from dlgpu.kernels.cuda import gru as KG
from dlgpu.kernels.cuda import lstm as KL
from dlgpu.kernels.cuda import mgu as KM
from dlgpu.kernels.cuda import rnn as KR
from dlgpu.reference import gru as RG
from dlgpu.reference import lstm as RL
from dlgpu.reference import mgu as RM
from dlgpu.reference import rnn as RR
from dlgpu.testing import assert_close, randn, to_numpy

_NAME = re.compile(r"^(\w+)<(.*)>$")


@pytest.fixture
def emulated():
    """The loaders' launches, recorded and run at once on the CPU by the host-compiled .cu sources
    (kernels/cuda/_host.py); yields the launch log."""
    why = _host.reason()
    if why is not None:
        pytest.skip(why)
    with _host.host_run() as log:
        yield log


# ------------------------------------------------------------------ running the loaders
CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "forget"), ("lstm", "no_forget"), ("lstm", "peephole"),
         ("gru", "cudnn"), ("gru", "cho"), ("mgu", None)]  # fmt: skip
IDS = [f"{f}-{v}" if v else f for f, v in CASES]
LOADERS = {"rnn": KR, "lstm": KL, "gru": KG, "mgu": KM}
REFS = {"rnn": RR, "lstm": RL, "gru": RG, "mgu": RM}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def gates(family, variant):
    return {"rnn": 1, "gru": 3, "mgu": 2}.get(family) or RL.GATES[variant]


def make(family, variant, gen, dims, h0=True, bias=(True, True)):
    """float64 inputs of one call, at torch's init scale 1/sqrt(H)."""
    t, b, i, h = dims
    g, s = gates(family, variant), h**-0.5
    d = dict(x=randn((t, b, i), gen), h0=randn((b, h), gen, scale=0.5) if h0 else None,
             weight_ih=randn((g * h, i), gen, scale=s), weight_hh=randn((g * h, h), gen, scale=s),
             bias_ih=randn((g * h,), gen, scale=s) if bias[0] else None,
             bias_hh=randn((g * h,), gen, scale=s) if bias[1] else None)  # fmt: skip
    if family == "lstm":
        d["c0"] = randn((b, h), gen, scale=0.5) if h0 else None
        d["weight_peephole"] = randn((3, h), gen, scale=0.5) if variant == "peephole" else None
    return d


def forward(mod, family, variant, d):
    x, h0, wi, wh, bi, bh = (d[k] for k in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if family == "rnn":
        return mod.rnn_forward(x, h0, wi, wh, bi, bh, variant)
    if family == "lstm":
        return mod.lstm_forward(x, h0, d["c0"], wi, wh, bi, bh, weight_peephole=d["weight_peephole"], variant=variant)
    if family == "gru":
        return mod.gru_forward(x, h0, wi, wh, bi, bh, variant=variant)
    return mod.mgu_forward(x, h0, wi, wh, bi, bh)


def backward(mod, family, variant, d, outs, g):
    x, h0, wi, wh = (d[k] for k in ("x", "h0", "weight_ih", "weight_hh"))
    if family == "rnn":
        return mod.rnn_backward(g[0], g[1], x, h0, wi, wh, outs[0], variant)
    if family == "lstm":
        return mod.lstm_backward(g[0], g[1], g[2], x, h0, d["c0"], wi, wh, outs[0], outs[3],
                                 weight_peephole=d["weight_peephole"], variant=variant)  # fmt: skip
    if family == "gru":
        return mod.gru_backward(g[0], g[1], x, h0, wi, wh, outs[0], outs[2], variant=variant)
    return mod.mgu_backward(g[0], g[1], x, h0, wi, wh, outs[0], outs[2])


def check(family, variant, gen, dims, conv, dtype, grads=(True, True, True), **kw):
    """Forward and backward through the loader (launches emulated) against the float64 reference on the
    same (cast) inputs; the backward of both gets the loader's own output and workspace."""
    d = {k: None if v is None else conv(v) for k, v in make(family, variant, gen, dims, **kw).items()}
    outs = forward(LOADERS[family], family, variant, d)
    want = forward(REFS[family], family, variant, {k: to_numpy(v) for k, v in d.items()})
    for i, (o, w) in enumerate(zip(outs, want)):
        assert o.dtype == d["x"].dtype and tuple(o.shape) == w.shape, i
        assert_close(o, w, op=family, dtype=dtype, name=f"{family}[{variant}] forward {i}")
    n = 3 if family == "lstm" else 2  # d_output, d_h_n (, d_c_n)
    g = [conv(randn(tuple(outs[i].shape), gen)) if use else None for i, use in zip(range(n), grads)]
    got = backward(LOADERS[family], family, variant, d, outs, g)
    want = backward(REFS[family], family, variant, {k: to_numpy(v) for k, v in d.items()}, [to_numpy(o) for o in outs],
                    [to_numpy(v) for v in g])  # fmt: skip
    assert len(got) == len(want)
    for i, (o, w) in enumerate(zip(got, want)):
        if w is None:
            assert o is None
            continue
        assert o.dtype == d["x"].dtype and tuple(o.shape) == w.shape, i
        assert_close(o, w, op=family, dtype=dtype, name=f"{family}[{variant}] backward {i}")
    return outs, got


def f32_inputs(family, variant, gen, dims):
    return {k: None if v is None else torch.from_numpy(v).float() for k, v in make(family, variant, gen, dims).items()}


def torch_conv(dtype):
    return lambda a: torch.from_numpy(a).to(dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_none_arguments_and_several_tiles(case, gen, emulated):
    """No h0/c0, one bias, no d_output/d_h_n; B = 17 and H = 40 span several per-step tiles."""
    conv = torch_conv(torch.float32)
    with KR.recurrent_path("step"):
        check(*case, gen, (2, 17, 3, 40), conv, torch.float32, h0=False, bias=(True, False), grads=(False, True, False))
    check(*case, gen, (2, 3, 3, 5), conv, torch.float32, bias=(False, True), grads=(True, False, True))


def test_non_contiguous_input_is_copied(gen, emulated):
    x = torch.from_numpy(randn((4, 3, 2), gen)).float().transpose(0, 1)  # [3, 4, 2], not contiguous
    d = f32_inputs("gru", "cudnn", gen, (3, 4, 2, 5))
    d["x"] = x
    out = forward(KG, "gru", "cudnn", d)
    want = forward(RG, "gru", "cudnn", {k: to_numpy(v) for k, v in d.items()})
    assert_close(out[0], want[0], op="gru", dtype=torch.float32)


# ------------------------------------------------------------------ launches and path choice
def _launches(log, part):
    return [e for e in log if part in e.name]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_launch_sequence(case, gen, emulated):
    """Per-step: T launches (reset-gated cells 2T) each way, on (ceil(H/16), ceil(B/BB)) grids; the
    persistent forward: one launch of plan.blocks blocks with the plan's shared memory and sizes."""
    family, variant = case
    t, b, h = 4, 6, 9
    d = f32_inputs(family, variant, gen, (t, b, 3, h))
    per = 2 if variant == "cho" or family == "mgu" else 1
    with KR.recurrent_path("step"):
        outs = forward(LOADERS[family], family, variant, d)
    steps = [e for e in emulated if "_step<" in e.name or e.name.startswith("reset_fwd")]
    assert len(steps) == per * t and all(e.grid == (1, 1, 1) for e in steps)
    emulated.clear()
    backward(LOADERS[family], family, variant, d, outs, [None, torch.ones(b, h), None])
    steps = [e for e in emulated if "_step<" in e.name or e.name.startswith("reset_bwd")]
    assert len(steps) == per * t
    emulated.clear()
    forward(LOADERS[family], family, variant, d)  # auto: fits the dry-run H100
    (p,) = _launches(emulated, "persist")
    plan = KR.persistent_plan(h, gates(family, variant), b, "float32", 132, 233472, 1, 232448)
    assert p.grid == (plan.blocks, 1, 1) and p.shared_mem == plan.smem
    assert [int(v) for v in p.args[-3:]] == [plan.pitch, plan.units, plan.batch_rows]


def test_auto_falls_back_to_steps_and_forced_persistent_fails(gen, emulated, monkeypatch):
    d = f32_inputs("lstm", "forget", gen, (2, 3, 4, 64))
    monkeypatch.setattr(KR, "DRY_RUN_LIMITS", KR.DeviceLimits(4, 16384, 16384, 1024, True))  # 4 SMs, 16 KB
    forward(KL, "lstm", "forget", d)  # 4 gates x 16 units x 64 x 4 B = 16 KB of weights per block: too much
    assert not _launches(emulated, "persist") and len(_launches(emulated, "lstm_fwd_step")) == 2
    with KR.recurrent_path("persistent"), pytest.raises(ValueError, match="persistent"):
        forward(KL, "lstm", "forget", d)
    monkeypatch.setattr(KR, "DRY_RUN_LIMITS", KR.DeviceLimits(132, 233472, 232448, 1024, False))
    with KR.recurrent_path("persistent"), pytest.raises(ValueError, match="cooperative"):
        forward(KL, "lstm", "forget", d)


def test_gemm_and_colsum_layouts(gen, emulated):
    """The GRU backward's GEMMs and column sums: sizes, strides and the offsets into dW_hh and db_hh."""
    t, b, i, h = 3, 2, 5, 4
    d = f32_inputs("gru", "cudnn", gen, (t, b, i, h))
    outs = forward(KG, "gru", "cudnn", d)
    emulated.clear()
    grads = backward(KG, "gru", "cudnn", d, outs, [torch.ones(t, b, h), None, None])
    mm = [[int(v) for v in e.args[4:15]] for e in _launches(emulated, "gemm_kernel")]
    assert mm == [[t * b, i, 3 * h, 4 * h, 1, 1, i, i, 1, 0, 0],  # dx = dg[:, :3H] W_ih
                  [3 * h, i, t * b, 1, 4 * h, 1, i, i, 1, 0, 0],  # dW_ih
                  [2 * h, h, t * b, 1, 4 * h, 1, h, h, 1, 0, 0],  # dW_hr, dW_hz
                  [h, h, t * b, 1, 4 * h, 1, h, h, 1, 0, 0]]  # dW_hn against dhn  # fmt: skip
    w_ptr = [int(e.args[3]) for e in _launches(emulated, "gemm_kernel")][2:]
    assert w_ptr == [grads[3].data_ptr(), grads[3].data_ptr() + 2 * h * h * 4]
    sums = _launches(emulated, "rec_colsum<float, float>")[1:]
    assert [int(e.args[5]) for e in sums] == [grads[4].data_ptr(), grads[5].data_ptr(), grads[5].data_ptr() + 8 * h]


def test_every_instantiation_is_launched(gen, emulated, monkeypatch):
    """Forward and backward of every case, dtype and path, with both per-step tiles, launch every name
    of every NAME_EXPRESSIONS (so none is dead or misspelt on the Python side)."""
    for bb in KR.STEP_BB:
        for mod in (KR, KL, KG):  # the loaders' own bindings of rnn.step_bb
            monkeypatch.setattr(mod, "step_bb", lambda batch, hidden, _bb=bb: _bb)
        for dtype in DTYPES:
            for path in ("persistent", "step"):
                with KR.recurrent_path(path):
                    for case in CASES:
                        check(*case, gen, (2, 3, 2, 3), torch_conv(dtype), dtype)
    seen = {e.name for e in emulated}
    for mod in LOADERS.values():
        assert not set(mod.NAME_EXPRESSIONS) - seen, sorted(set(mod.NAME_EXPRESSIONS) - seen)


def test_name_expressions():
    """Every instantiation names a kernel of its family's source; MODULE + COOP_MODULE cover them."""
    for fam, mod in LOADERS.items():
        src = mod.MODULE.source
        assert set(mod.MODULE.name_expressions) | set(mod.COOP_MODULE.name_expressions) == set(mod.NAME_EXPRESSIONS)
        for n in mod.NAME_EXPRESSIONS:
            assert re.search(rf"\b{_NAME.match(n).group(1)}\(", src), (fam, n)
        assert all("persist" in n for n in mod.COOP_MODULE.name_expressions)


# ------------------------------------------------------------------ bad input
def test_bad_input(gen):
    d = f32_inputs("lstm", "forget", gen, (2, 3, 4, 5))
    args = (d["x"], d["h0"], d["c0"], d["weight_ih"], d["weight_hh"])
    with pytest.raises(ValueError, match="CUDA device"):  # a CPU tensor outside a dry run
        KL.lstm_forward(*args)
    with _common.dry_run():
        with pytest.raises(ValueError, match="weight_hh"):
            KL.lstm_forward(d["x"], None, None, d["weight_ih"], d["weight_hh"][:, :4])
        with pytest.raises(ValueError, match="variant"):
            KL.lstm_forward(*args, variant="nope")
        with pytest.raises(TypeError, match="float32, float16, bfloat16"):
            KL.lstm_forward(*(a.double() for a in args))
        with pytest.raises(TypeError, match="one kind"):
            KL.lstm_forward(d["x"], d["h0"].numpy(), None, d["weight_ih"], d["weight_hh"])
        with pytest.raises(ValueError, match="nonlinearity"):
            KR.rnn_forward(d["x"], None, d["weight_ih"][:5], d["weight_hh"][:5], nonlinearity="gelu")
        with pytest.raises(ValueError, match="workspace"):
            KG.gru_backward(None, None, d["x"], None, d["weight_ih"][:15], d["weight_hh"][:15], torch.zeros(2, 3, 5),
                            torch.zeros(2, 3, 15), variant="cudnn")  # cudnn's workspace is [T, B, 4H]  # fmt: skip
        with pytest.raises(TypeError, match="d_h_n"):
            KR.rnn_backward(None, d["h0"].half(), d["x"], None, d["weight_ih"][:5], d["weight_hh"][:5],
                            torch.zeros(2, 3, 5))  # fmt: skip
