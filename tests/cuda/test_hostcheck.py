"""The host sanitizers (kernels/cuda/hostcheck.py; memcheck = AddressSanitizer, racecheck =
ThreadSanitizer over the CUDA threads of host/dlgpu_host.h): the environment the runner sets up, the
errors of a run set up wrong, and, in a subprocess under each tool, test_host_runtime.py (whose
sanitizer section checks that the tool reports each bug it is for, and whose other tests must pass
instrumented, every op of the non-recurrent families among them) and every recurrent op on both
paths at one small shape. The whole of tests/cuda under each tool is ci/host_sanitize.sh."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlgpu.kernels.cuda import _common, _host, hostcheck
from dlgpu.kernels.cuda import rnn as KR

pytestmark = [
    pytest.mark.skipif(_host.reason() is not None, reason=str(_host.reason())),
    pytest.mark.skipif(_host.sanitizer() is not None, reason="already inside a hostcheck run (this file starts them)"),
]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(_host.SANITIZERS)


def runtime_or_skip(tool: str) -> Path:
    try:
        return hostcheck.runtime_path(tool)
    except RuntimeError as e:  # a compiler without libasan/libtsan
        pytest.skip(str(e))


@pytest.mark.parametrize("tool", TOOLS)
def test_environment_preloads_the_runtime_and_puts_the_users_options_last(tool):
    lib = runtime_or_skip(tool)
    san = _host.SANITIZERS[tool]
    env = hostcheck.environment(tool, {"LD_PRELOAD": "/opt/mine.so", san.options_var: "verbosity=1"})
    assert env["LD_PRELOAD"].split(":") == [str(lib), "/opt/mine.so"]
    assert env[san.options_var] == f"{san.options}:verbosity=1"  # later options win
    assert env["DLGPU_HOST_SANITIZER"] == tool
    assert lib.is_file()


def test_a_bad_tool_is_an_error(monkeypatch):
    with pytest.raises(ValueError, match="tool: expected one of"):
        hostcheck.environment("helgrind", {})
    monkeypatch.setenv("DLGPU_HOST_SANITIZER", "helgrind")
    with pytest.raises(ValueError, match="DLGPU_HOST_SANITIZER='helgrind'"):
        _host.sanitizer()
    with pytest.raises(SystemExit):
        hostcheck.main(["--tool", "helgrind", "true"])
    with pytest.raises(RuntimeError, match="already inside a hostcheck run"):
        hostcheck.environment("memcheck", {"DLGPU_HOST_SANITIZER": "racecheck"})


def test_an_instrumented_build_needs_the_runtime_in_the_process(monkeypatch):
    monkeypatch.setenv("DLGPU_HOST_SANITIZER", "racecheck")
    assert not _host.runtime_loaded("racecheck")  # this process was not started by hostcheck
    module = _common.Module("activations", ("act_fwd_kernel<float, 1>",))  # not cached: a new HostModule
    with pytest.raises(RuntimeError, match="not loaded in this process.*hostcheck --tool racecheck"):
        _host.host_module(module)


def test_racecheck_shrinks_the_stand_in_device_to_the_fibers_it_can_hold(monkeypatch):
    assert KR.dry_run_limits() == KR.DRY_RUN_LIMITS
    monkeypatch.setenv("DLGPU_HOST_SANITIZER", "racecheck")
    limits = KR.dry_run_limits()
    assert limits.sm_count * KR.REC_THREADS <= _host.RACECHECK_FIBERS < (limits.sm_count + 1) * KR.REC_THREADS
    assert limits.smem_per_sm == KR.DRY_RUN_LIMITS.smem_per_sm


def test_what_no_launch_read_is_left_for_the_runner(tmp_path):
    log = tmp_path / "report.77"
    log.write_text("first report\nThreadSanitizer: Thread limit (8128 threads) exceeded. Dying.\n"
                   "ThreadSanitizer: reported 1 warnings\n")  # fmt: skip
    assert hostcheck.unread_report(log).startswith("first report\nThreadSanitizer: Thread limit")
    (tmp_path / "read.77").write_text(str(len("first report\n")))
    assert hostcheck.unread_report(log) == "ThreadSanitizer: Thread limit (8128 threads) exceeded. Dying."
    (tmp_path / "read.77").write_text(str(len(log.read_text()) - len("ThreadSanitizer: reported 1 warnings\n")))
    assert hostcheck.unread_report(log) == ""  # the exit summary alone is not news


def _hostcheck(tool: str, *command: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlgpu.kernels.cuda.hostcheck", "--tool", tool, *command],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_the_runtime_and_the_kernels_pass_under_each_sanitizer():
    """Both tools at once (two processes: the compiles of the instrumented modules are most of it)."""
    for tool in TOOLS:
        runtime_or_skip(tool)
    recurrent = [f"tests/cuda/test_cupy_recurrent.py::test_every_op_matches_reference[host-tiny-float32-{p}]"
                 for p in ("persistent", "step")]  # fmt: skip
    runs = {tool: _hostcheck(tool, sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             "tests/cuda/test_host_runtime.py", *recurrent) for tool in TOOLS}  # fmt: skip
    for tool, run in runs.items():
        out, _ = run.communicate(timeout=1800)
        assert run.returncode == 0, f"{tool}:\n{out[-6000:]}"
        assert f"--tool {tool}" not in out, f"{tool}: its own tests were skipped:\n{out[-3000:]}"
        passed = int(re.search(r"(\d+) passed", out)[1])
        assert passed >= 16, f"{tool}: {passed} passed\n{out[-3000:]}"


def test_a_sanitizer_that_stops_the_process_fails_the_run(tmp_path):
    runtime_or_skip("memcheck")
    script = tmp_path / "segv.py"
    script.write_text(
        "from dlgpu.kernels.cuda import _common, _host\n"
        "class M(_common.Module):\n"
        "    source = '__global__ void null_store(int* p) { p[threadIdx.x] = 1; }'\n"
        "_host.host_module(M('t_segv', ('null_store',))).launch('null_store', (1,), (1,), (_common.u64(0),))\n"
        "print('not reached')\n"
    )
    run = _hostcheck("memcheck", sys.executable, str(script))
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 3, out[-3000:]  # the sanitizer's death exits 0: the runner says otherwise
    assert "AddressSanitizer: SEGV" in out and "wrote what no kernel launch reported" in out
    assert "not reached" not in out
