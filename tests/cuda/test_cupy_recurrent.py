"""The cupy backend's recurrent ops: every op and variant, forward and backward, through
``dlgpu.ops.call(..., backend="cupy")`` against the float64 reference (dlgpu.testing.cases), in float32,
float16 and bfloat16, with the persistent and the per-step path each forced; cupy arrays as well as
torch tensors; shapes with odd sizes, several tiles, several persistent batch chunks; torch streams.
Each test runs on a CUDA device (``gpu``, skipped without one) and on the CPU through the same ``.cu``
sources compiled with g++ (``host``; the persistent kernels' grid barriers included), see conftest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu import ops
from dlgpu.kernels.cuda import rnn as KR
from dlgpu.testing import assert_close, cases, randn, to_numpy

DTYPES = ["float32", "float16", "bfloat16"]
PATHS = ["persistent", "step"]
FAMILIES = ("rnn", "lstm", "gru", "mgu")


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip("cupy")


def recurrent_cases(seed: int, dims: tuple[int, int, int, int]) -> list[cases.Case]:
    """rnn[tanh], rnn[relu], lstm[forget|no_forget|peephole], gru[cudnn|cho], mgu at (T, B, I, H)."""
    got = cases._recurrent_cases(np.random.default_rng(seed), *dims)
    assert {c.tol_op for c in got} == set(FAMILIES) and len(got) == 8
    return got


def assert_ok(result: cases.CaseResult) -> None:
    assert not result.error, result.error
    bad = [str(r) for r in result.reports if not r.ok]
    assert not bad, f"{result.case.name} [{result.dtype}]:\n" + "\n".join(bad)
    assert result.reports


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [(4, 3, 5, 6), (4, 17, 9, 40)], ids=["tiny", "tiles"])
def test_every_op_matches_reference(dims, dtype, path, seed, target):
    """Forward (output, h_n, c_n, workspace) and backward (every gradient) of all 8 cases."""
    with KR.recurrent_path(path):
        for case in recurrent_cases(seed, dims):
            assert_ok(cases.run_case(case, "cupy", dtype, seed, convert=cases.torch_inputs(dtype, target.device)))


def test_bias_and_peephole_gradients_over_several_row_slabs(seed, target):
    """T B = 9 x 61 = 549 rows: the column sums behind db and the peephole gradient (rec_colsum,
    lstm_peep_partial) run in two slabs of at most 512 rows, then a sum over the slabs. Every other
    shape here has T B <= 512: one slab."""
    for case in recurrent_cases(seed, (9, 61, 3, 5)):
        assert_ok(cases.run_case(case, "cupy", "float32", seed, convert=cases.torch_inputs("float32", target.device)))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cupy_arrays(dtype, seed, target):
    def conv(a: np.ndarray):
        return target.array(a.astype(dtype) if a.dtype.kind == "f" else a)

    for case in recurrent_cases(seed, (3, 7, 4, 5)):
        result = cases.run_case(case, "cupy", dtype, seed, convert=conv)
        assert_ok(result)


def _inputs(family: str, variant: str | None, dims, dtype, gen, h0: bool = True, device: str = "cuda") -> dict:
    t, b, i, h = dims
    g = {"rnn": 1, "gru": 3, "mgu": 2, "lstm": 3 if variant == "no_forget" else 4}[family]
    s = h**-0.5
    d = dict(x=randn((t, b, i), gen), h0=randn((b, h), gen, scale=0.5) if h0 else None,
             weight_ih=randn((g * h, i), gen, scale=s), weight_hh=randn((g * h, h), gen, scale=s),
             bias_ih=randn((g * h,), gen, scale=s), bias_hh=randn((g * h,), gen, scale=s))  # fmt: skip
    if family == "lstm":
        d["c0"] = randn((b, h), gen, scale=0.5) if h0 else None
        d["weight_peephole"] = randn((3, h), gen, scale=0.5) if variant == "peephole" else None
    conv = cases.torch_inputs(dtype, device)
    return {k: None if v is None else conv(v) for k, v in d.items()}


def _forward(d: dict, family: str, variant: str | None, backend: str):
    x = d["x"] if backend == "cupy" else to_numpy(d["x"])
    f = (lambda v: v) if backend == "cupy" else (lambda v: None if v is None else to_numpy(v))
    a = [f(d[k]) for k in ("h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if family == "lstm":
        return ops.call("lstm_forward", x, a[0], f(d["c0"]), *a[1:], weight_peephole=f(d["weight_peephole"]),
                        variant=variant, backend=backend)  # fmt: skip
    if family == "rnn":
        return ops.call("rnn_forward", x, *a, variant, backend=backend)
    kw = {"variant": variant} if family == "gru" else {}
    return ops.call(f"{family}_forward", x, *a, backend=backend, **kw)


LONG = [("rnn", "tanh"), ("lstm", "forget"), ("lstm", "peephole"), ("gru", "cudnn"), ("gru", "cho"), ("mgu", None)]


# On the host the kernels run at emulation speed, so a small stand-in device gives the same situation
# (fewer staged rows than B) at H = 64 instead of 1000: 8 SMs with 16 KB of shared memory each.
HOST_LIMITS = KR.DeviceLimits(8, 16384, 16384, 1024, True)


def _chunked_hidden(gates: int, batch: int, target) -> int:
    """An H whose fp32 W_hh rows leave room for fewer than ``batch`` staged rows on this device (H100:
    H = 1000, LSTM: 8 units and 128 KB of weights per block, 24 rows per chunk; HOST_LIMITS: H = 64)."""
    lim = KR.device_limits(torch.cuda.current_device()) if target.name == "gpu" else KR.DRY_RUN_LIMITS
    for h in (1000, 900, 800, 700, 600, 500, 400, 300, 64):
        plan = KR.persistent_plan(h, gates, batch, "float32", lim.sm_count, lim.smem_per_sm, 1, lim.smem_per_block,
                                  lim.reserved_per_block)  # fmt: skip
        if plan is not None and plan.batch_rows < batch:
            return h
    raise AssertionError(f"no H in 64..1000 gives a chunked persistent plan on this device ({lim})")


@pytest.mark.parametrize("case", LONG, ids=[f"{f}-{v}" for f, v in LONG])
def test_persistent_batch_chunks_and_paths_agree(case, gen, target, monkeypatch):
    """A large fp32 W_hh leaves shared memory for few staged rows: B = 61 runs in several batch chunks
    per step. Both paths match the reference and each other; h0 is None (step 0's zero state)."""
    family, variant = case
    if target.name == "host":
        monkeypatch.setattr(KR, "DRY_RUN_LIMITS", HOST_LIMITS)
    gates = {"rnn": 1, "gru": 3, "mgu": 2, "lstm": 4}[family]
    d = _inputs(family, variant, (6, 61, 7, _chunked_hidden(gates, 61, target)), "float32", gen, h0=False,
                device=target.device)
    want = _forward(d, family, variant, "numpy")
    got = {}
    for path in PATHS:
        with KR.recurrent_path(path):
            got[path] = _forward(d, family, variant, "cupy")
        for o, w in zip(got[path], want):
            assert_close(o, w, op=family, dtype="float32", name=f"{family}[{variant}] {path}")
    for a, b in zip(got["persistent"], got["step"]):  # other summation orders, same tolerance
        assert_close(a, to_numpy(b), op=family, dtype="float32", name=f"{family}[{variant}] persistent vs step")


def test_edge_shapes(gen, target):
    """T = 1, B = 1, H = 1 and an odd H (the persistent kernel's padded pitch), both paths."""
    for dims in ((1, 1, 1, 1), (2, 2, 3, 33)):
        for family, variant in LONG:
            d = _inputs(family, variant, dims, "float32", gen, device=target.device)
            want = _forward(d, family, variant, "numpy")
            for path in PATHS:
                with KR.recurrent_path(path):
                    for o, w in zip(_forward(d, family, variant, "cupy"), want):
                        assert_close(o, w, op=family, dtype="float32", name=f"{family}[{variant}] {path} {dims}")


def test_forced_persistent_too_large_is_an_error(gen, target):
    d = _inputs("lstm", "forget", (2, 2, 3, 2048), "float32", gen, device=target.device)  # 512 KB of weights per block
    with KR.recurrent_path("persistent"), pytest.raises(ValueError, match="persistent"):
        _forward(d, "lstm", "forget", "cupy")
    with KR.recurrent_path("auto"):  # falls back to the per-step kernels
        out = _forward(d, "lstm", "forget", "cupy")
    assert_close(out[0], _forward(d, "lstm", "forget", "numpy")[0], op="lstm", dtype="float32")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_runs_on_torchs_current_stream(path, gen, cupy):
    """Launched on a side stream that first waits for a slow kernel writing x: the result is right only
    if every launch (GEMMs included) went to that stream, in order."""
    d = _inputs("gru", "cudnn", (8, 16, 32, 64), "float32", gen)
    want = _forward(d, "gru", "cudnn", "numpy")
    x = d["x"]
    side = torch.cuda.Stream()
    with torch.cuda.stream(side), KR.recurrent_path(path):
        big = torch.randn(4096, 4096, device="cuda")
        for _ in range(4):
            big = big @ big / 64.0  # keeps the stream busy
        d["x"] = x + 0.0 * torch.tanh(big.sum())  # x, written after the busy kernels on the side stream
        out = _forward(d, "gru", "cudnn", "cupy")
    side.synchronize()
    assert_close(out[0], want[0], op="gru", dtype="float32")
    assert out[0].is_cuda and out[0].dtype == torch.float32


def test_outputs_are_torch_tensors_on_the_inputs_device(gen, target):
    d = _inputs("mgu", None, (3, 4, 5, 6), "bfloat16", gen, device=target.device)
    out = _forward(d, "mgu", None, "cupy")
    assert all(o.device == d["x"].device and o.dtype == torch.bfloat16 for o in out)
