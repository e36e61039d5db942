"""dlgpu.bench.triton_aot: recording launches under the interpreter and compiling them for sm_90.

The compile steps run in subprocesses without TRITON_INTERPRET (the kernels must be JITFunctions
there); this process runs under the interpreter (tests/conftest.py sets it without CUDA).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from dlgpu.bench import resources, triton_aot  # noqa: E402
from dlgpu.kernels.triton import _common  # noqa: E402
from dlgpu.kernels.triton.activations import _EW_CONFIGS  # noqa: E402

needs_interpreter = pytest.mark.skipif(not _common.INTERPRET, reason="records interpreted launches (a GPU is present)")


@triton.jit
def _probe_kernel(x_ptr, y_ptr, n, stride, scale, FLAG: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    v = tl.load(x_ptr + offs * stride, mask=mask, other=0.0)
    tl.store(y_ptr + offs, v * scale if FLAG else v, mask=mask)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@needs_interpreter
def test_describe_launch_specialises_as_the_jit_does(gen):
    x = torch.from_numpy(gen.standard_normal(48).astype(np.float32))
    y = torch.empty(32, dtype=torch.float32)
    d = triton_aot.describe_launch(_probe_kernel.fn, (x, y[1:], 32, 1, 0.5), {"FLAG": True, "BLOCK": 32,
                                                                             "num_warps": 2})  # fmt: skip
    a = d["args"]
    assert a["x_ptr"] == ["*fp32", "D"]  # 16-byte aligned storage
    assert a["y_ptr"] == ["*fp32", ""]  # 4 bytes past it: no divisibility hint
    assert a["n"] == ["i32", "D"] and a["stride"] == ["constexpr", 1]  # 1 becomes a constant
    assert a["scale"] == ["fp32", None]
    assert a["FLAG"] == ["constexpr", True] and a["BLOCK"] == ["constexpr", 32]
    assert d["options"] == {"num_warps": 2} and d["kernel"] == "_probe_kernel"
    h = triton_aot.describe_launch(_probe_kernel.fn, (x.half(), y, 7, 3, 2.0, False, 16), {})
    assert h["args"]["x_ptr"][0] == "*fp16" and h["args"]["n"] == ["i32", ""] and h["args"]["stride"] == ["i32", ""]
    with pytest.raises(TypeError, match="no value for BLOCK"):
        triton_aot.describe_launch(_probe_kernel.fn, (x, y, 7, 3, 2.0, False), {})


def test_aligned_gives_ints_and_pointers_the_divisibility_hint_and_keeps_constants():
    launch = {"module": "m", "kernel": "k", "tuner": None, "options": {"num_warps": 4},
              "args": {"x_ptr": ["*fp32", ""], "y_ptr": ["*bf16", "D"], "n": ["i32", ""], "big": ["i64", ""],
                       "one": ["constexpr", 1], "scale": ["fp32", None], "BLOCK": ["constexpr", 32]}}  # fmt: skip
    a = triton_aot.aligned(launch)
    assert a["args"] == {"x_ptr": ["*fp32", "D"], "y_ptr": ["*bf16", "D"], "n": ["i32", "D"], "big": ["i64", "D"],
                         "one": ["constexpr", 1], "scale": ["fp32", None], "BLOCK": ["constexpr", 32]}  # fmt: skip
    assert launch["args"]["n"] == ["i32", ""]  # a copy: the recorded launch is kept too
    assert {k: v for k, v in a.items() if k != "args"} == {k: v for k, v in launch.items() if k != "args"}


@needs_interpreter
def test_recording_names_the_autotuner_of_each_dtype_and_restores_the_interpreter(gen):
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.interpreter import InterpretedFunction

    from dlgpu.kernels.triton import linear

    before = InterpretedFunction.run, Autotuner.run
    launches: list[dict] = []
    with triton_aot.recording(launches):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.from_numpy(gen.standard_normal((5, 11))).to(dtype)
            w = torch.from_numpy(gen.standard_normal((7, 11))).to(dtype)
            linear.linear_forward(x, w, None, "relu")
    assert (InterpretedFunction.run, Autotuner.run) == before
    fwd = [(r["args"]["x_ptr"][0], r["tuner"]) for r in launches if r["kernel"] == "_linear_fwd_kernel"]
    assert fwd == [("*fp32", "_linear_fwd_fp32"), ("*bf16", "_linear_fwd_tc")]
    assert all(r["args"]["ACT"] == ["constexpr", 1] for r in launches if r["kernel"] == "_linear_fwd_kernel")


def test_problems_flags_failures_spills_and_shared_memory():
    ok = dict(ok=True, registers=40, stack=0, spill_stores=0, spill_loads=0, smem=1024)
    assert triton_aot.problems(ok, 90) == []
    assert "spills: 8 B stored, 4 B loaded" in triton_aot.problems(dict(ok, spill_stores=8, spill_loads=4), 90)[0]
    assert "sm_90 allows 232448" in triton_aot.problems(dict(ok, smem=232449), 90)[0]
    assert triton_aot.problems(dict(ok, smem=200000), 90) == [] and triton_aot.problems(dict(ok, smem=200000), 80)
    failed = dict(ok=False, error="CompilationError: at 3:4\nmore")
    assert triton_aot.problems(failed, 90) == ["CompilationError: at 3:4"]


def test_record_and_compile_need_the_right_process():
    if _common.INTERPRET:
        with pytest.raises(RuntimeError, match="without TRITON_INTERPRET"):
            triton_aot.compile_all([], 90)
    else:
        with pytest.raises(RuntimeError, match="needs TRITON_INTERPRET=1"):
            triton_aot.record()


def test_relu_and_max_pool_compile_for_sm90_with_every_config():
    """The two steps end to end, on two families: every autotune config compiles, nothing spills."""
    rep = triton_aot.aot_report(90, ("tiny",), ("float32", "bfloat16"), ["relu", "max_pool2d"], jobs=1)
    assert rep["arch"] == "sm_90" and rep["record_failures"] == [] and rep["missing"] == []
    rows = rep["rows"]
    # the odd tiny sizes as recorded, and aligned as a realistic shape keys them
    n_hint = {"N" in r["divisible"].split() for r in rows if r["kernel"] == "_act_fwd_kernel"}
    assert n_hint == {False, True}
    assert {r["kernel"] for r in rows} == {"_act_fwd_kernel", "_act_bwd_kernel", "_max_pool_fwd_kernel",
                                           "_max_pool_bwd_kernel"}  # fmt: skip
    for r in rows:
        assert r["ok"], r.get("error")
        assert r["problems"] == [] and 0 < r["registers"] <= 255 and r["spill_stores"] == 0
    # every config of the elementwise autotuner, for each dtype's specialisation
    blocks = {(r["signature"].split()[0], c) for r in rows if r["kernel"] == "_act_fwd_kernel"
              for c in r["constexprs"].split() if c.startswith("BLOCK=")}  # fmt: skip
    want = {f"BLOCK={c.kwargs['BLOCK']}" for c in _EW_CONFIGS}  # all of them, not the interpreter's first
    assert len(want) > 1 and blocks == {(sig, b) for sig in ("x_ptr:*fp32", "x_ptr:*bf16") for b in want}


def test_a_kernel_that_does_not_compile_is_a_reported_row():
    """A launch Triton cannot compile (tl.arange of a non-power of two) is a failed row with the
    compiler's message, not a crash of the report."""
    script = textwrap.dedent("""
        import json
        from dlgpu.bench import triton_aot
        launch = {"module": "dlgpu.kernels.triton.activations", "kernel": "_act_fwd_kernel", "tuner": None,
                  "args": {"x_ptr": ["*fp32", "D"], "y_ptr": ["*fp32", "D"], "N": ["i32", ""],
                           "slope": ["fp32", None], "ACT": ["constexpr", 1], "BLOCK": ["constexpr", 1000]},
                  "options": {"num_warps": 4}}
        fn, tuner = triton_aot._resolve(launch)
        print(json.dumps(triton_aot.compile_launch(launch, fn, tuner, 90)))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=_clean_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["ok"] is False and "power of 2" in row["error"]
    assert triton_aot.problems(row, 90) and row["constexprs"] == "ACT=1 BLOCK=1000"


def test_kernels_report_without_a_gpu_uses_the_ahead_of_time_rows(monkeypatch, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: dlgpu kernels reports what Triton compiled on it")
    fake = {"arch": "sm_90", "triton": triton.__version__, "missing": ["gru._other_kernel"], "record_failures": [],
            "rows": [dict(module="activations", kernel="_act_fwd_kernel", signature="x_ptr:*fp32", constexprs="BLOCK=8",
                          num_warps=4, num_stages=3, registers=40, spill_stores=0, spill_loads=0, stack=0, smem=0,
                          autotune="_act_fwd_kernel", ok=True),
                     dict(module="conv", kernel="_conv2d_fwd_kernel", signature="x_ptr:*fp32", constexprs="BLOCK_K=16",
                          num_warps=4, num_stages=3, registers=255, spill_stores=72, spill_loads=80, stack=72,
                          smem=0, autotune="_conv2d_fwd_kernel", ok=True),
                     dict(module="conv", kernel="_sum_rows_kernel", signature="", constexprs="BLOCK=3",
                          num_warps=4, num_stages=3, autotune="", ok=False,
                          error="CompilationError: bad\nline")]}  # fmt: skip
    calls = []
    monkeypatch.setattr(triton_aot, "aot_report", lambda *a, **k: calls.append(a) or fake)
    rows, msg = resources.triton_resources(True, ("bfloat16",), "sm_80")
    assert calls == [(80, ("tiny",), ("bfloat16",))]
    assert [r["spills"] for r in rows[:2]] == [0, 152] and "for sm_90 (no GPU here)" in msg
    assert "never launched by the tiny cases: gru._other_kernel" in msg
    from dlgpu import cli

    out = tmp_path / "k.json"
    rc = cli.main(["kernels", "--files", "pooling", "--arch", "sm_90", "--json", str(out)])
    assert rc == 1  # the failed Triton compile
    data = json.loads(out.read_text())
    assert len(data["triton"]) == 3 and data["triton"][2]["ok"] is False
    with pytest.raises(ValueError, match="arch must look like sm_90"):
        resources.triton_aot_resources("hopper")
