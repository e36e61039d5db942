"""The Python side of the CUDA C loaders, without cupy or a device: argument checking (the
reference's errors), array kinds and devices, dtype dispatch to template names, grids, output
shapes and dtypes, and every launch's arguments against the kernel's C signature.

Under ``dry_run()`` torch CPU tensors stand in for torch CUDA tensors and NumPy arrays for cupy
arrays; launches are recorded instead of run (see kernels/cuda/_common.py)."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.kernels.cuda import _common as cc
from dlgpu.testing.cases import all_cases, backend_value, prepare, torch_inputs

FAMILIES = ("activations", "linear", "conv", "locally_connected", "pooling", "dropout", "losses", "regularizers")
MODS = {f: importlib.import_module(f"dlgpu.kernels.cuda.{f}") for f in FAMILIES}
REFS = {f: importlib.import_module(f"dlgpu.reference.{f}") for f in FAMILIES}
DTYPES = ("float32", "float16", "bfloat16")
CASES = [c for c in all_cases(seed=11, size="tiny") if ops.OPS[c.forward] in FAMILIES]

# ------------------------------------------------------------------ C signatures from the sources

_C_TYPES = {"long long": np.int64, "int": np.int32, "float": np.float32, "unsigned long long": np.uint64}


def _kernel_signatures(source: str) -> dict[str, list[type]]:
    """{kernel name: NumPy scalar type of each parameter} for every __global__ in ``source``."""
    sigs: dict[str, list[type]] = {}
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*|[A-Z_]+\s+)*(\w+)\s*\(", source):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        types = []
        for param in source[m.end() : i - 1].split(","):
            param = re.sub(r"\b(const|__restrict__)\b", " ", param)
            if "*" in param:
                types.append(np.uint64)
            else:
                ctype = " ".join(param.split()[:-1])  # drop the parameter's name
                types.append(_C_TYPES[ctype])
        sigs[m.group(1)] = types
    return sigs


SIGS = {f: _kernel_signatures(MODS[f].MODULE.source) for f in FAMILIES}


def _check_launches(log: list[cc.Launch]) -> None:
    for launch in log:
        base = launch.name.split("<")[0]
        want = SIGS[launch.family][base]
        got = [type(a) for a in launch.args]
        assert got == want, f"{launch.name}: arguments {got} do not match the C signature {want}"
        assert all(g >= 1 for g in launch.grid) and launch.block[0] % 32 == 0 and launch.block[0] <= 1024


def test_signature_parser_reads_the_kernels():
    lin = SIGS["linear"]
    assert lin["linear_dwdb_kernel"] == [np.uint64] * 4 + [np.int64] * 4 + [np.int32, np.float32]
    assert SIGS["dropout"]["dropout_kernel"][-2:] == [np.uint64, np.float32]
    assert "splitk_dwdb_finish_kernel" in SIGS["conv"]  # from the inlined gemm.cuh


@pytest.mark.parametrize("family", FAMILIES)
def test_every_name_expression_names_a_kernel_of_its_source(family):
    mod = MODS[family]
    assert mod.MODULE.family == family and mod.MODULE.name_expressions == mod.NAME_EXPRESSIONS
    for name in mod.NAME_EXPRESSIONS:
        assert name.split("<")[0] in SIGS[family], name


# ------------------------------------------------------------------ every case, every dtype


def _run(case, dtype: str, convert, fam: str):
    prep = prepare(case, dtype, 11)
    mod = MODS[fam]

    def conv(v):
        return backend_value(v, dtype, convert)

    with cc.dry_run() as log:
        out = getattr(mod, case.forward)(*conv(prep.case.args), **{k: conv(v) for k, v in prep.case.kwargs.items()})
        grads = None
        if case.backward:
            grads = getattr(mod, case.backward)(*conv(prep.bargs), **{k: conv(v) for k, v in prep.bkwargs.items()})
    return prep, out, grads, log


def _flat(x) -> list:
    out = []
    for v in x if isinstance(x, (tuple, list)) else (x,):
        out.extend(_flat(v) if isinstance(v, (tuple, list)) else [v])
    return out


def _assert_like(got, ref, dtype: str, kind: type) -> None:
    assert isinstance(got, kind), f"{type(got).__name__} returned for {kind.__name__} inputs"
    assert tuple(got.shape) == tuple(np.shape(ref))
    want = "int64" if np.asarray(ref).dtype.kind in "iu" else dtype
    assert cc.dtype_name(got.dtype) == want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_torch_tensors_give_torch_outputs_of_the_reference_shapes(case, dtype):
    fam = ops.OPS[case.forward]
    prep, out, grads, log = _run(case, dtype, torch_inputs(dtype), fam)
    assert log, "nothing was launched"
    _check_launches(log)
    ct = cc.CTYPES[dtype]
    assert all(f"<{ct}" in la.name for la in log if "<" in la.name), [la.name for la in log]
    for got, ref in zip(_flat(out), _flat(prep.ref_out)):
        _assert_like(got, ref, dtype, torch.Tensor)
    if grads is not None:
        for got, ref in zip(_flat(grads), prep.ref_grads):
            _assert_like(got, ref, dtype, torch.Tensor)


@pytest.mark.parametrize("dtype", ("float32", "float16"))
@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c.name)
def test_cupy_stand_ins_give_outputs_of_their_kind(case, dtype):
    fam = ops.OPS[case.forward]
    prep, out, grads, log = _run(case, dtype, lambda a: a.astype(dtype) if a.dtype.kind == "f" else a, fam)
    _check_launches(log)
    for got, ref in zip(_flat(out), _flat(prep.ref_out)):
        _assert_like(got, ref, dtype, np.ndarray)


# ------------------------------------------------------------------ dispatch and grids


def _log(fn, *args, **kwargs) -> list[cc.Launch]:
    with cc.dry_run() as log:
        fn(*args, **kwargs)
    _check_launches(log)
    return log


def test_every_instantiation_is_reachable_from_the_python_side(gen):
    """The targeted calls below plus the cases reach every name in every NAME_EXPRESSIONS."""
    seen: set[str] = set()
    for dtype in DTYPES:
        for case in CASES:
            seen |= {la.name for la in _run(case, dtype, torch_inputs(dtype), ops.OPS[case.forward])[3]}
    t = lambda shape, dt="float32": torch.from_numpy(gen.standard_normal(shape)).to(getattr(torch, dt))  # noqa: E731
    act, loss = MODS["activations"], MODS["losses"]
    for dt in DTYPES:
        for axis, k in ((0, 5), (1, 2000)):  # column mode; block mode (K > 1024)
            shape = (5, 3) if axis == 0 else (2, k)
            for f in (act.softmax_forward, act.log_softmax_forward):
                seen |= {la.name for la in _log(f, t(shape, dt), axis=axis)}
            for f in (act.softmax_backward, act.log_softmax_backward):
                seen |= {la.name for la in _log(f, t(shape, dt), t(shape, dt), axis=axis)}
        for tdt in ("float32", "float16", "bfloat16", "float64"):
            seen |= {la.name for la in _log(loss.mse_loss_forward, t((3, 4), dt), t((3, 4), tdt))}
            seen |= {la.name for la in _log(loss.loss_backward, t((3, 4), tdt), t((3, 4), dt), "none")}
        for idt in (torch.int32, torch.int64):
            for k in (7, 1500):
                tgt = torch.zeros(3, dtype=idt)
                seen |= {la.name for la in _log(loss.cross_entropy_forward, t((3, k), dt), tgt)}
            idx = torch.zeros((1, 1, 2, 2), dtype=idt)
            pool_bwd = MODS["pooling"].max_pool2d_backward
            seen |= {la.name for la in _log(pool_bwd, t((1, 1, 2, 2), dt), idx, (1, 1, 4, 4))}
        seen |= {la.name for la in _log(MODS["dropout"].dropout_forward, t((5,), dt), 0.5, seed=3)}
    seen |= {la.name for la in _log(MODS["dropout"].dropout_mask, (3, 5), 0.5, 3, like=t((1,)))}
    for fam in FAMILIES:
        missing = set(MODS[fam].NAME_EXPRESSIONS) - seen
        assert not missing, f"{fam}: never launched: {sorted(missing)}"


def test_gemm_grids_cover_the_problem(gen):
    x, w = torch.randn(130, 70), torch.randn(65, 70)
    (fwd,) = _log(MODS["linear"].linear_forward, x, w)
    assert fwd.name == "linear_fwd_kernel<float>" and fwd.grid == (3, 2, 1) and fwd.block == (256, 1, 1)
    dx, dwdb, fin = _log(MODS["linear"].linear_backward, torch.randn(130, 65), x, w)
    assert dx.grid == (3, 2, 1)  # N x I tiles
    assert dwdb.grid[:2] == (2, 2)  # O x (I + 1) tiles
    splits, chunk = dwdb.grid[2], int(dwdb.args[7])
    assert splits * chunk >= 130 and (splits - 1) * chunk < 130
    assert fin.grid == (cc.cdiv(65 * 71, 256), 1, 1)
    xc, wc = torch.randn(2, 6, 9, 7), torch.randn(4, 3, 3, 3)  # groups=2
    (cf,) = _log(MODS["conv"].conv2d_forward, xc, wc, stride=2, padding=1, groups=2)
    assert cf.grid == (cc.cdiv(2 * 5 * 4, 64), 1, 2)  # P = N*OH*OW tiles, Og tiles, groups


@pytest.mark.parametrize("k,tiles", [(1, 1), (200, 1), (257, 1), (10_000, 4), (10**7, 1), (10**6, 500)])
def test_split_k_chunks_cover_k(k, tiles):
    splits, chunk = cc.split_k(k, tiles)
    assert splits >= 1 and splits * chunk >= k and (splits - 1) * chunk < k
    assert splits == 1 or (chunk % 32 == 0 and chunk >= cc.SPLITK_MIN_CHUNK)
    assert splits * tiles <= max(cc.SPLITK_TARGET_BLOCKS, tiles) + tiles


def test_softmax_plan_modes():
    plan = MODS["activations"].softmax_plan
    assert plan((7, 13), 1)[:3] == (0, (1,), (256,))  # 7 rows, 8 warps per block
    assert plan((3, 5000), 1)[0] == 1 and plan((3, 9000), 1)[2] == (1024,)
    mode, grid, _, (cols, k, inner) = plan((4, 6, 5), 1)
    assert (mode, cols, k, inner) == (2, 20, 6, 5) and grid == (1,)


def test_contiguous_inputs_are_used_in_place_and_others_copied():
    x = torch.randn(6, 5)
    (la,) = _log(MODS["activations"].relu_forward, x)
    assert int(la.args[0]) == x.data_ptr()
    xt = x.t()
    with cc.dry_run() as log:
        y = MODS["activations"].relu_forward(xt)
    assert int(log[0].args[0]) != xt.data_ptr() and y.shape == (5, 6) and y.is_contiguous()


def test_dropout_seed_is_taken_mod_2_64_and_scale_in_the_dtype():
    (la,) = _log(MODS["dropout"].dropout_forward, torch.randn(9).half(), 0.3, seed=2**64 + 5)
    assert int(la.args[5]) == 5 and la.name == "dropout_kernel<__half, false>"
    assert float(la.args[6]) == float(np.float16(1 / 0.7))
    (la,) = _log(MODS["dropout"].dropout_forward, torch.randn(9), 1.0, seed=1)
    assert float(la.args[6]) == 0.0


# ------------------------------------------------------------------ errors as the reference's


def _same_error(ref_call, our_call):
    with pytest.raises((ValueError, TypeError)) as ref:
        ref_call()
    with cc.dry_run(), pytest.raises(type(ref.value)) as ours:
        our_call()
    assert _norm(ours.value) == _norm(ref.value)


def _norm(err: BaseException) -> str:
    """torch prints dtypes as torch.float32 and shapes as torch.Size([3, 4]): numpy's reprs instead."""
    s = str(err).replace("torch.", "")
    return re.sub(r"Size\(\[([\d, ]*)\]\)", lambda m: repr(tuple(int(v) for v in m.group(1).split(",") if v)), s)


def _both(fam: str, op: str, *args, **kwargs):
    """(reference call on numpy arrays, our call on torch CPU tensors) of the same arguments."""
    def to_t(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(v)
        if isinstance(v, list):
            return [to_t(a) for a in v]
        return v

    ref = lambda: getattr(REFS[fam], op)(*args, **kwargs)  # noqa: E731
    ours = lambda: getattr(MODS[fam], op)(*(to_t(a) for a in args), **{k: to_t(v) for k, v in kwargs.items()})  # noqa: E731
    return ref, ours


f32 = lambda *s: np.ones(s, np.float32)  # noqa: E731
BAD = [
    ("activations", "relu_forward", (np.ones(3, np.int64),), {}),
    ("activations", "relu_backward", (f32(3), f32(4)), {}),
    ("activations", "softmax_backward", (f32(2, 3), f32(3, 2)), {}),
    ("linear", "linear_forward", (f32(3, 4), f32(5, 6)), {}),
    ("linear", "linear_forward", (f32(3, 4), f32(5, 4), f32(4)), {}),
    ("linear", "linear_forward", (f32(3, 4), f32(5, 4)), {"activation": "gelu"}),
    ("linear", "linear_backward", (f32(3, 5), f32(3, 4), f32(5, 4)), {"activation": "relu"}),
    ("linear", "linear_backward", (f32(3, 6), f32(3, 4), f32(5, 4)), {}),
    ("conv", "conv2d_forward", (f32(1, 6, 5, 5), f32(4, 3, 3, 3)), {"groups": 4}),
    ("conv", "conv2d_forward", (f32(1, 3, 5, 5), f32(4, 3, 3, 3)), {"stride": 0}),
    ("conv", "conv2d_forward", (f32(1, 3, 5, 5), f32(4, 3, 7, 3)), {}),
    ("conv", "conv2d_forward", (f32(1, 3, 5, 5), f32(4, 3, 3, 3), f32(3)), {}),
    ("conv", "conv2d_backward", (f32(1, 4, 2, 3), f32(1, 3, 5, 5), f32(4, 3, 3, 3)), {}),
    ("locally_connected", "locally_connected2d_forward", (f32(1, 3, 5, 5), f32(2, 3, 4, 3, 3, 3)), {}),
    ("locally_connected", "locally_connected2d_forward", (f32(1, 3, 5, 5), f32(3, 3, 4, 2, 3, 3)), {}),
    ("locally_connected", "locally_connected2d_backward",
     (f32(1, 4, 2, 3), f32(1, 3, 5, 5), f32(3, 3, 4, 3, 3, 3)), {}),
    ("pooling", "max_pool2d_forward", (f32(1, 1, 5, 5), 2), {"padding": 2}),
    ("pooling", "max_pool2d_forward", (f32(1, 5, 5), 2), {}),
    ("pooling", "max_pool2d_backward", (f32(1, 1, 2, 2), f32(1, 1, 2, 2), (1, 1, 4, 4)), {}),
    ("pooling", "avg_pool2d_backward", (f32(1, 1, 3, 2), (1, 1, 4, 4), 2), {}),
    ("dropout", "dropout_forward", (f32(3), 0.5), {}),
    ("dropout", "dropout_forward", (f32(3), 0.5), {"mask": np.ones(3, bool), "seed": 1}),
    ("dropout", "dropout_forward", (f32(3), 1.5), {"seed": 1}),
    ("dropout", "dropout_forward", (f32(3), 0.5), {"seed": -1}),
    ("dropout", "dropout_backward", (f32(3), 0.5), {"mask": np.ones(3, np.int64)}),
    ("dropout", "dropout_backward", (f32(3), 0.5), {"mask": np.ones(4, bool)}),
    ("losses", "mse_loss_forward", (f32(3), f32(4)), {}),
    ("losses", "mse_loss_forward", (f32(3), f32(3)), {"reduction": "avg"}),
    ("losses", "mse_loss_forward", (f32(0), f32(0)), {}),
    ("losses", "pseudo_huber_loss_forward", (f32(3), f32(3)), {"delta": 0.0}),
    ("losses", "cross_entropy_forward", (f32(3, 4), f32(3)), {}),
    ("losses", "cross_entropy_forward", (f32(3, 4), np.zeros(2, np.int64)), {}),
    ("losses", "multiclass_hinge_loss_forward", (f32(3), np.zeros(3, np.int64)), {}),
    ("losses", "loss_backward", (f32(3), f32(3), "mean"), {}),
    ("losses", "loss_backward", (f32(2), f32(3, 4), "none"), {}),
    ("regularizers", "l1_penalty_forward", (f32(3), -1.0), {}),
    ("regularizers", "l2_penalty_backward", (f32(3), 0.1, f32(2)), {}),
    ("regularizers", "max_norm_forward", (f32(3), 1.0), {}),
    ("regularizers", "max_norm_forward", (f32(3, 2), 0.0), {}),
    ("regularizers", "clip_grad_norm_forward", ([], 1.0), {}),
    ("regularizers", "clip_grad_norm_forward", ([f32(3), np.ones(3, np.float16)], 1.0), {}),
    ("regularizers", "clip_grad_norm_forward", ([f32(3)], 1.0), {"norm_type": 3.0}),
    ("regularizers", "clip_grad_value_forward", (f32(3), 0), {}),
]  # fmt: skip


@pytest.mark.parametrize("fam,op,args,kwargs", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise_the_reference_error(fam, op, args, kwargs):
    _same_error(*_both(fam, op, *args, **kwargs))


def test_host_arrays_are_rejected_outside_a_dry_run():
    with pytest.raises(ValueError, match="x must be on a CUDA device"):
        MODS["activations"].relu_forward(torch.randn(3))
    with pytest.raises(ValueError, match="input must be on a CUDA device"):
        MODS["losses"].mse_loss_forward(np.ones(3, np.float32), np.ones(3, np.float32))


def test_dtype_and_kind_mixing_are_type_errors():
    with cc.dry_run():
        with pytest.raises(TypeError, match=r"weight must have the dtype of x \(float32\), got float16"):
            MODS["linear"].linear_forward(torch.randn(3, 4), torch.randn(5, 4).half())
        with pytest.raises(TypeError, match="target is a cupy array but input is a torch tensor"):
            MODS["losses"].mse_loss_forward(torch.randn(3), np.ones(3, np.float32))
        with pytest.raises(TypeError, match="x must be one of float32, float16, bfloat16"):
            MODS["activations"].tanh_forward(torch.randn(3).double())
        with pytest.raises(TypeError, match="y must have the dtype of dy"):
            MODS["activations"].sigmoid_backward(torch.randn(3), torch.randn(3).half())
        with pytest.raises(TypeError, match="must be a cupy array or a torch CUDA tensor, got list"):
            cc.Call(x=[1.0, 2.0])


def test_invalid_values_found_by_the_kernels_raise_the_reference_message(monkeypatch):
    """The kernels count bad labels / indices; a non-zero count raises the reference's own error."""
    monkeypatch.setattr(cc.Call, "item", lambda self, x: 1)
    with cc.dry_run():
        with pytest.raises(ValueError, match="target must contain only -1 and \\+1"):
            MODS["losses"].hinge_loss_forward(torch.ones(4), torch.tensor([1.0, -1.0, 0.5, 1.0]))
        with pytest.raises(ValueError, match=r"input must be in \[0, 1\]"):
            MODS["losses"].binary_cross_entropy_forward(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match=r"target class indices must be in \[0, 3\).*\[0, 7\]"):
            MODS["losses"].cross_entropy_forward(torch.randn(2, 3), torch.tensor([0, 7]))
        with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\) = \[0, 16\), got \[-1, 3\]"):
            MODS["pooling"].max_pool2d_backward(torch.randn(1, 1, 2, 2), torch.tensor([[[[0, 1], [-1, 3]]]]),
                                                (1, 1, 4, 4))  # fmt: skip


def test_grids_beyond_cuda_limits_are_value_errors():
    with cc.dry_run(), pytest.raises(ValueError, match="exceeds CUDA's limits"):
        cc.Call(x=torch.ones(1)).launch(MODS["dropout"].MODULE, "dropout_mask_kernel", (1, 70000), (256,), ())


def test_undeclared_kernel_names_are_loader_bugs():
    with pytest.raises(RuntimeError, match="not in the loader's NAME_EXPRESSIONS"):
        MODS["dropout"].MODULE.check_name("dropout_kernel<double, true>")
    with pytest.raises(ValueError, match="duplicate"):
        cc.Module("dropout", ("a", "a"))


def test_round_to_dtype_matches_numpy_and_torch():
    assert cc.round_to_dtype(0.1, "float16") == float(np.float16(0.1))
    assert cc.round_to_dtype(1 / 3, "bfloat16") == torch.tensor(1 / 3).bfloat16().item()
    assert cc.round_to_dtype(1 / 3, "float32") == float(np.float32(1 / 3))


def test_host_philox_matches_random123_known_answers():
    ph = MODS["dropout"].philox4x32_10
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]  # fmt: skip
    for ctr, key, want in kat:
        assert tuple(int(v) for v in ph(np.array([ctr], dtype=np.uint64), key)[0]) == want


def test_host_dropout_mask_keeps_1_minus_p_and_depends_on_the_seed():
    host = MODS["dropout"].dropout_mask_host
    m = host((301, 77), 0.25, 42)
    assert m.shape == (301, 77) and m.dtype == bool
    sigma = (0.25 * 0.75 / m.size) ** 0.5
    assert abs(m.mean() - 0.75) < 6 * sigma
    assert not np.array_equal(m, host((301, 77), 0.25, 43))
    assert np.array_equal(m.reshape(-1)[:100], host((100,), 0.25, 42))  # counter = flat index
    assert host((5,), 0.0, 1).all() and not host((5,), 1.0, 1).any()
