"""`dlgpu profile`: training steps under torch.profiler; every dlgpu op in the table under its
dlgpu:: name, forward and backward, with the right call counts; the Chrome trace parses."""

from __future__ import annotations

import json

import pytest
import torch

import dlgpu.functional as DF
from dlgpu import cli
from dlgpu.bench.profile import profile_model, render_profile


class _Tiny(torch.nn.Module):
    """max pool -> linear + relu (fused) -> linear, all dlgpu ops (cheap to compile with a cold numba cache)."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6, 3 * 3 * 2, generator=gen) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(6, generator=gen) * 0.1)
        self.w2 = torch.nn.Parameter(torch.randn(5, 6, generator=gen) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = DF.max_pool2d(x, 2).flatten(1)
        return DF.linear(DF.linear(y, self.w, self.b, activation="relu"), self.w2)


def test_profile_table_and_trace(tmp_path, seed, capsys):
    gen = torch.Generator().manual_seed(seed)
    model = _Tiny(gen)
    x = torch.randn(3, 3, 7, 5, generator=gen).requires_grad_()  # pooled to 3x3x2; its grad runs the pool backward
    t = torch.randint(0, 5, (3,), generator=gen)
    before = model.w.detach().clone()
    trace = tmp_path / "trace.json"
    res = profile_model(model, [x], t, DF.cross_entropy, steps=2, backend="numba", trace=str(trace), name="tiny")
    table = {o.name: o for o in res.ops}
    # per profiled step (the warm-up step not counted): one pool, two linears, one loss, and their backwards
    calls = {"dlgpu::max_pool2d": 1, "dlgpu::linear": 2, "dlgpu::loss": 1}
    for name, n in calls.items():
        for op in (name, name + "_backward"):
            assert table[op].calls == 2 * n, op
            assert table[op].cpu_ms > 0
    assert 0 < res.dlgpu_cpu_ms <= res.step_cpu_ms and res.device == "cpu"
    assert not torch.equal(model.w.detach(), before)  # the SGD update ran
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    assert {"dlgpu::linear", "dlgpu::linear_backward", "dlgpu.train_step"} <= names
    render_profile(res)
    out = capsys.readouterr().out
    assert "dlgpu::linear_backward" in out and "everything else" in out


def test_nested_dlgpu_ranges_are_not_counted_twice():
    from torch.profiler import record_function

    x = torch.randn(4, 6)

    class M(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            with record_function("dlgpu::outer_range"):  # as a hook in dlgpu.ops.call would add
                with record_function("dlgpu_triton::inner_range"):  # the Triton twins' namespace
                    return DF.tanh(v)

    res = profile_model(M(), [x.requires_grad_()], None, lambda y, _: y.sum(), steps=3, warmup=0)
    table = {o.name: o for o in res.ops}
    names = ("dlgpu::outer_range", "dlgpu_triton::inner_range", "dlgpu::tanh")
    assert all(table[n].calls == 3 for n in names)
    # each range is charged only its own time: the three together fit inside the steps
    assert 0 < sum(table[n].cpu_ms for n in names) <= res.step_cpu_ms
    with pytest.raises(ValueError, match="steps must be >= 1"):
        profile_model(M(), [x], None, lambda y, _: y.sum(), steps=0)


def test_cli_profiles_a_registered_model(tmp_path, capsys):
    trace = tmp_path / "mlp.json"
    assert cli.main(["profile", "mlp", "--steps", "1", "--batch-size", "3", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "dlgpu profile mlp" in out and "dlgpu::linear_backward" in out and "dlgpu::loss" in out
    names = {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    assert {"dlgpu::linear", "dlgpu::linear_backward", "dlgpu.train_step"} <= names


def test_cli_rejects_unknown_models_and_bad_steps(capsys):
    assert cli.main(["profile", "no_such_model_xyz", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_model_xyz" in err and "mlp" in err  # the message lists the known models
    assert cli.main(["profile", "mlp", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_a_trace_that_was_not_written_is_an_error(tmp_path, monkeypatch, capsys):
    """torch's exporter logs a failure to open the file and returns normally: dlgpu must not say it wrote it."""
    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", lambda self, path: None)
    assert cli.main(["profile", "mlp", "--steps", "1", "--batch-size", "3", "--trace", str(tmp_path / "t.json")]) == 1
    assert "could not be written" in capsys.readouterr().err
