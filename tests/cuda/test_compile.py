"""Every kernels/cuda/*.cu compiles with nvcc for sm_80 and sm_90 with every template instantiation
its loader launches, and no kernel spills; plus the report's parsing, without nvcc."""

from __future__ import annotations

import re

import pytest

from dlgpu.kernels.cuda import _resources as res
from dlgpu.kernels.cuda._common import KERNEL_DIR, expand_includes

ARCHS = ("sm_80", "sm_90")
FILES = res.cu_files()
needs_nvcc = pytest.mark.skipif(res.find_nvcc() is None, reason="nvcc not found")


def _norm(name: str) -> str:
    return re.sub(r"\s+", "", name)


@pytest.fixture(scope="module")
def report() -> list[dict]:
    return res.resource_report(ARCHS)  # every file, both archs, compiled in parallel once


def test_the_directory_has_every_family():
    names = {p.stem for p in FILES}
    mine = {"activations", "linear", "conv", "locally_connected", "pooling", "dropout", "losses", "regularizers"}
    assert mine <= names


@needs_nvcc
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compiles_for_every_arch_without_spills(report, path):
    rows = [r for r in report if r["file"] == path.name]
    failed = [r for r in rows if not r["ok"]]
    assert not failed, f"{path.name} ({failed[0]['arch']}) failed:\n{failed[0]['error'][-4000:]}"
    for arch in ARCHS:
        assert any(r["arch"] == arch for r in rows), f"no kernel compiled for {arch}"
    spills = [f"{r['arch']} {r['kernel']}: {r['spill_stores']}/{r['spill_loads']} B" for r in rows
              if r["spill_stores"] or r["spill_loads"]]  # fmt: skip
    assert not spills, "spills:\n" + "\n".join(spills)
    assert all(r["registers"] > 0 for r in rows)


@needs_nvcc
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_name_expression_is_a_compiled_kernel(report, path):
    names, note = res.name_expressions(path.stem)
    assert names, f"{path.name}: {note}"
    for arch in ARCHS:
        compiled = [r["kernel"] for r in report if r["file"] == path.name and r["arch"] == arch]
        assert len(compiled) >= len(names)
        if all("(" not in k and not k.startswith("_Z") for k in compiled):  # demangled (c++filt found)
            missing = {_norm(n) for n in names} - {_norm(k) for k in compiled}
            assert not missing, f"{arch}: instantiations not compiled: {sorted(missing)}"


# ---------------------------------------------------------------- without nvcc

PTXAS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z3fooIfEvPT_x' for 'sm_80'
ptxas info    : Function properties for _Z3fooIfEvPT_x
    16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 8704 bytes smem, 380 bytes cmem[0]
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
"""


def test_parse_ptxas_reads_registers_smem_and_spills():
    rows = res.parse_ptxas(PTXAS)
    assert [r["kernel"] for r in rows] == ["_Z3fooIfEvPT_x", "_Z3barv"]
    foo, bar = rows
    assert (foo["arch"], foo["registers"], foo["smem"], foo["stack"]) == ("sm_80", 64, 8704, 16)
    assert (foo["spill_stores"], foo["spill_loads"]) == (12, 8)
    assert (bar["arch"], bar["registers"], bar["smem"], bar["spill_stores"]) == ("sm_90", 10, 0, 0)


def test_instantiation_source_inlines_headers_and_names_every_expression():
    names, _ = res.name_expressions("linear")
    src = res.instantiation_source(KERNEL_DIR / "linear.cu", names)
    assert not re.search(r'^\s*#\s*include\s+"', src, re.MULTILINE)  # gemm.cuh and common.cuh inlined
    assert "gemm_tile" in src and "philox4x32_10" in src
    for n in names:
        assert f"(void*)&{n};" in src
    assert expand_includes(KERNEL_DIR / "gemm.cuh").count("struct StridedLoader") == 1


def test_format_table_and_main_report_failures_and_spills(monkeypatch, capsys):
    rows = [
        {"file": "a.cu", "arch": "sm_80", "kernel": "k<float>", "registers": 40, "smem": 128, "stack": 0,
         "spill_stores": 0, "spill_loads": 0, "ok": True, "error": "", "note": ""},
        {"file": "b.cu", "arch": "sm_90", "kernel": "s", "registers": 255, "smem": 0, "stack": 8,
         "spill_stores": 4, "spill_loads": 4, "ok": True, "error": "", "note": "no loader"},
    ]  # fmt: skip
    table = res.format_table(rows)
    assert "k<float>" in table and "4/4" in table
    monkeypatch.setattr(res, "resource_report", lambda archs: rows)
    assert res.main(["sm_80"]) == 1  # b.cu spills
    out = capsys.readouterr()
    assert "SPILL: b.cu sm_90 s" in out.err and "note: b.cu: no loader" in out.out
    monkeypatch.setattr(res, "resource_report", lambda archs: rows[:1])
    assert res.main(["sm_80"]) == 0


def test_missing_nvcc_is_an_error(monkeypatch, capsys):
    monkeypatch.setattr(res, "find_nvcc", lambda: None)
    with pytest.raises(RuntimeError, match="nvcc not found"):
        res.resource_report()
    assert res.main([]) == 1
    assert "nvcc not found" in capsys.readouterr().err


def test_unknown_file_is_a_value_error(monkeypatch):
    monkeypatch.setattr(res, "find_nvcc", lambda: "/bin/true")
    with pytest.raises(ValueError, match="no such .cu file"):
        res.resource_report(files=["no_such_family"])


@needs_nvcc
def test_successful_reports_are_cached_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("DLGPU_CACHE_DIR", str(tmp_path))
    names, _ = res.name_expressions("dropout")
    path = str(KERNEL_DIR / "dropout.cu")
    rc, out = res._compile.__wrapped__(path, "sm_80", names, res.find_nvcc())
    assert rc == 0 and "Compiling entry function" in out
    files = list((tmp_path / "ptxas").glob("dropout-sm_80-*.txt"))
    assert len(files) == 1 and files[0].read_text() == out
    files[0].write_text(out + "ptxas info    : from the cache\n")  # a second call reads the file, not nvcc
    assert res._compile.__wrapped__(path, "sm_80", names, res.find_nvcc())[1].endswith("from the cache\n")
    assert "from the cache" not in res._compile.__wrapped__(path, "sm_80", names, res.find_nvcc(), False)[1]


def _outside_persistent(text: str) -> list[str]:
    """Lines that use cooperative groups outside every ``#ifdef DLGPU_PERSISTENT`` block."""
    stack: list[bool] = []  # per open #if: is it the DLGPU_PERSISTENT one
    bad = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("#if", "#ifdef", "#ifndef")):
            stack.append(s.startswith("#ifdef DLGPU_PERSISTENT"))
        elif s.startswith("#endif"):
            stack.pop()
        elif not any(stack) and re.search(r"cooperative_groups|grid\.sync|this_grid", s.split("//")[0]):
            bad.append(line)
    return bad


@pytest.mark.parametrize("path", sorted(KERNEL_DIR.glob("*.cu*")), ids=lambda p: p.name)
def test_cooperative_groups_only_inside_the_persistent_blocks(path):
    """The per-step kernels must build where cooperative_groups.h (and the CCCL it includes) does not:
    they are the fallback when the cooperative module cannot be built."""
    assert not _outside_persistent(path.read_text()), path.name


def test_only_cooperative_modules_define_persistent():
    from dlgpu.kernels.cuda import _common, lstm

    assert _common.PERSISTENT_DEFINE in lstm.COOP_MODULE.options
    assert _common.PERSISTENT_DEFINE not in lstm.MODULE.options
    assert _outside_persistent("#ifdef DLGPU_PERSISTENT\ncg::this_grid();\n#endif\ngrid.sync();\n") == ["grid.sync();"]


def test_nvrtc_check_covers_every_module():
    """ci/nvrtc_check.py (NVRTC is not on CI's machine; the script's own run is in the issue notes)
    compiles every loader's MODULE and COOP_MODULE, the cooperative ones with the persistent define."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nvrtc_check", KERNEL_DIR.parents[1] / "ci" / "nvrtc_check.py")
    nc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nc)
    labels = {label for label, _ in nc.modules()}
    for fam in ("rnn", "lstm", "gru", "mgu"):
        assert {fam, f"{fam} (cooperative)"} <= labels
    assert {"activations", "conv", "linear", "losses", "pooling", "dropout", "regularizers"} <= labels
    assert all(m.cooperative == label.endswith("(cooperative)") for label, m in nc.modules())


def test_coop_families_are_the_loaders_with_a_cooperative_module():
    import importlib

    loaders = {p.stem: importlib.import_module(f"dlgpu.kernels.cuda.{p.stem}") for p in FILES}
    have = [stem for stem, mod in loaders.items() if getattr(mod, "COOP_MODULE", None)]
    assert sorted(have) == sorted(res.COOP_FAMILIES)


@needs_nvcc
def test_cooperative_modules_link_against_cudadevrt():
    """CuPy builds a ``RawModule(..., enable_cooperative_groups=True)`` as relocatable device code and
    links it with libcudadevrt (the driver's linker, on the GPU); ``nvcc -dc`` + ``nvcc -dlink`` make
    the same two steps here. Every persistent kernel must come out of the link, and none may spill in
    this build: it is the code that runs."""
    import importlib

    rows = res.link_report("sm_90")
    assert [r["family"] for r in rows] == list(res.COOP_FAMILIES)
    for r in rows:
        assert r["ok"], f"{r['family']}:\n{r['output'][-4000:]}"
        names = importlib.import_module(f"dlgpu.kernels.cuda.{r['family']}").COOP_MODULE.name_expressions
        assert r["kernels"] >= len(names) > 0
        assert r["spills"] == 0 and 0 < r["registers"] <= 255


@needs_nvcc
def test_a_link_error_fails_the_link_report(monkeypatch, tmp_path):
    """An unresolved device symbol compiles with -dc and fails only at the link: the check must see it."""
    monkeypatch.setenv("DLGPU_CACHE_DIR", str(tmp_path))
    real = res.instantiation_source
    extra = ("extern __device__ float dlgpu_undefined_fn(float);\n"
             'extern "C" __global__ void dlgpu_uses_undefined(float* x) {\n'
             "    x[0] = dlgpu_undefined_fn(x[0]);\n}\n")  # fmt: skip
    monkeypatch.setattr(res, "instantiation_source", lambda path, names: real(path, names) + extra)
    rc, out, entries = res._link.__wrapped__("mgu", "sm_90", res.find_nvcc())
    assert rc != 0 and "dlgpu_undefined_fn" in out, out[-2000:]
    assert "dlgpu_uses_undefined" in entries  # it compiled; only the link failed
    assert not list(tmp_path.rglob("*link*"))  # a failure is not cached


def test_elf_functions_rejects_what_is_not_an_elf_image():
    with pytest.raises(ValueError, match="not a 64-bit little-endian ELF"):
        res.elf_functions(b"PK\x03\x04 not a cubin")
