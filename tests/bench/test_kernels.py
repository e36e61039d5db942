"""`dlgpu kernels`: registers, shared memory and spills from nvcc -Xptxas -v, on a small .cu made for
the test (one plain kernel, one with 1 KiB of shared memory, one forced to spill) and on a real
kernels/cuda file; Triton's part says why it is empty without a GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dlgpu import cli
from dlgpu.bench import resources
from dlgpu.bench.resources import kernel_report
from dlgpu.kernels.cuda._resources import parse_ptxas

SAMPLE = Path(__file__).parent / "data" / "bench_sample.cu"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")

PTXAS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z4spillPf' for 'sm_90'
ptxas info    : Function properties for _Z4spillPf
    1256 bytes stack frame, 1408 bytes spill stores, 2576 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 1256 bytes cumulative stack size
ptxas info    : Compiling entry function 'block_sum' for 'sm_80'
ptxas info    : Function properties for block_sum
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem, 360 bytes cmem[0]
"""


def test_parse_ptxas():
    spill, block = parse_ptxas(PTXAS)
    assert spill == dict(kernel="_Z4spillPf", arch="sm_90", registers=32, smem=0, stack=1256, spill_stores=1408,
                         spill_loads=2576)  # fmt: skip
    assert block == dict(kernel="block_sum", arch="sm_80", registers=10, smem=1024, stack=0, spill_stores=0,
                         spill_loads=0)  # fmt: skip


def _by_kernel(rows):
    return {r["kernel"]: r for r in rows}


@needs_nvcc
def test_cli_on_the_sample_file(tmp_path, capsys):
    out = tmp_path / "k.json"
    rc = cli.main(["kernels", "--files", str(SAMPLE), "--arch", "sm_90", "--no-triton", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "bench_spill" in text and "skipped (--no-triton)" in text
    doc = json.loads(out.read_text())
    rows = _by_kernel(doc["cuda"])
    assert set(rows) == {"bench_saxpy", "bench_block_sum", "bench_spill"}
    assert rows["bench_block_sum"]["smem"] == 1024 and rows["bench_saxpy"]["smem"] == 0
    assert rows["bench_spill"]["spill_stores"] > 0 and rows["bench_spill"]["spill_loads"] > 0
    assert rows["bench_saxpy"]["spill_stores"] == 0 and all(0 < r["registers"] <= 255 for r in rows.values())
    assert rows["bench_spill"]["registers"] <= 32  # __launch_bounds__(1024, 2): 65536 / 2048 threads
    assert doc["cuda_links"] == []  # no cooperative module among the files


@needs_nvcc
def test_a_real_cuda_file_and_a_broken_one(tmp_path, capsys):
    rep = kernel_report(["pooling"], "sm_90", triton=False)
    assert rep.cuda and all(r["ok"] and r["file"] == "pooling.cu" for r in rep.cuda)
    assert any("max_pool2d" in r["kernel"] for r in rep.cuda)
    broken = tmp_path / "broken.cu"
    broken.write_text("__global__ void k(float* x) { x[0] = undefined_name; }\n")
    assert cli.main(["kernels", "--files", str(broken), "--no-triton"]) == 1
    assert "COMPILE FAILED" in capsys.readouterr().out
    assert cli.main(["kernels", "--files", "no_such_family", "--no-triton"]) == 2
    assert "no such .cu file" in capsys.readouterr().err


def test_without_nvcc_the_report_says_so(monkeypatch):
    import dlgpu.kernels.cuda._resources as cuda_resources

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(cuda_resources, "find_nvcc", lambda: None)
    rows, msg = resources.cuda_resources([str(SAMPLE)])
    assert rows == [] and "nvcc not found" in msg
    assert resources.cuda_links(["lstm"]) == []


@pytest.mark.gpu
def test_triton_part_on_a_gpu():
    """On a GPU the rows are what Triton compiled there (without one: tests/bench/test_triton_aot.py)."""
    import torch

    from dlgpu import ops

    ops.relu_forward(torch.randn(1000, device="cuda"), backend="triton")  # compiles at least this one
    rows, msg = resources.triton_resources(compile_first=False)
    relu = [r for r in rows if r["module"] == "activations"]
    assert relu and all(r["registers"] > 0 and r["num_warps"] >= 1 for r in relu), msg
