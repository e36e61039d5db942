"""``dlgpu train`` / ``dlgpu autoencode`` reject bad arguments with one ``error: ...`` line on stderr and exit
status 2, before any training, never with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlgpu.ops
from dlgpu import cli as dlgpu_cli
from dlgpu.models import cli
from dlgpu.ops import BackendError
from dlgpu.ops._dispatch import BackendStatus


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any training reached fails the test: the arguments must be rejected before it."""

    def trained(*_a: object, **_k: object) -> None:
        raise AssertionError("training started despite a bad argument")

    monkeypatch.setattr("dlgpu.models.tasks.train_sequence", trained)
    monkeypatch.setattr("dlgpu.models.train.fit", trained)
    monkeypatch.setattr(cli, "autoencode_comparison", trained)


def rejected(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``dlgpu argv`` through the real entry point; it must return 2 with one error line on stderr."""
    assert dlgpu_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "lstm", "--variant", "bogus"], "--variant for lstm must be one of forget, no_forget, peephole"),
        (["train", "rnn", "--variant", "peephole"], "--variant for rnn must be one of tanh, relu; got 'peephole'"),
        (["train", "gru", "--variant", "forget"], "--variant for gru must be one of cudnn, cho"),
        (["train", "mgu", "--variant", "cho"], "--variant: mgu has one form"),
        (["train", "mlp", "--variant", "relu"], "--variant is for the recurrent cells (rnn, lstm, gru, mgu), not mlp"),
        (["train", "mlp", "--device", "foo"], "--device: 'foo' is not a torch device"),
        (["train", "lstm", "--device", "foo"], "--device: 'foo' is not a torch device"),
        (["train", "mlp", "--device", "meta"], "--device must be cpu or cuda"),
        (["train", "resnet18", "--batch-size", "1"], "--batch-size must be >= 2 for resnet18"),
    ],
)
def test_train_rejects_bad_arguments_cleanly(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    err = rejected([*argv, "--epochs", "1", "--no-progress"], capsys)
    assert message in err


def test_device_cuda_without_cuda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for model in ("mlp", "gru"):
        err = rejected(["train", model, "--device", "cuda", "--no-progress"], capsys)
        assert "--device cuda: CUDA is not available here" in err
    err = rejected(["train", "mlp", "--device", "cuda:1", "--no-progress"], capsys)
    assert "--device cuda:1: CUDA is not available here" in err


def unavailable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    status = dict(dlgpu.ops.backends())
    status[name] = BackendStatus(name, False, f"{name} is switched off by the test")
    monkeypatch.setattr(dlgpu.ops, "backends", lambda: status)


@pytest.mark.parametrize("name", ["triton", "cupy"])
def test_unavailable_backend(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    unavailable(monkeypatch, name)
    for argv in (["train", "mlp"], ["train", "lstm"], ["autoencode", "--out", "unused.png"]):
        err = rejected([*argv, "--backend", name, "--no-progress"], capsys)
        assert f"--backend {name} is unavailable here: {name} is switched off by the test" in err


def test_really_unavailable_backend(capsys: pytest.CaptureFixture[str], no_training: None) -> None:
    """The same without patching, for a backend this machine lacks (none lacking: nothing to run)."""
    missing = [b for b, st in dlgpu.ops.backends().items() if not st.available]
    if not missing:
        pytest.skip("every backend is available here")
    err = rejected(["train", "mlp", "--backend", missing[0], "--no-progress"], capsys)
    assert f"--backend {missing[0]} is unavailable here: " in err


def test_backend_error_while_training(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A backend that is available but cannot run an op (no kernel, tensors on another device) stops the
    run with a clean error too; other exceptions are not caught."""

    def fails(*_a: object, **_k: object) -> None:
        raise BackendError("conv2d_forward: backend 'numpy' has no kernel for it yet")

    monkeypatch.setattr("dlgpu.models.train.fit", fails)
    monkeypatch.setattr("dlgpu.models.tasks.train_sequence", fails)
    err = rejected(["train", "lenet5", "--backend", "numpy", "--no-progress"], capsys)
    assert err == "error: --backend numpy: conv2d_forward: backend 'numpy' has no kernel for it yet\n"
    err = rejected(["train", "gru", "--no-progress"], capsys)
    assert err.startswith("error: no backend can run this: conv2d_forward")

    def bug(*_a: object, **_k: object) -> None:
        raise ValueError("a real bug")

    monkeypatch.setattr("dlgpu.models.train.fit", bug)
    with pytest.raises(ValueError, match="a real bug"):
        dlgpu_cli.main(["train", "mlp", "--no-progress"])


def test_seq_len_below_two(capsys: pytest.CaptureFixture[str], no_training: None) -> None:
    for value in ("1", "0"):
        with pytest.raises(SystemExit) as exc:
            dlgpu_cli.main(["train", "gru", "--seq-len", value])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --seq-len: expected an int >= 2 (the tasks need two steps), got {value}" in err
        assert "Traceback" not in err


def test_autoencode_output_path_checked_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    missing = tmp_path / "missing"
    err = rejected(["autoencode", "--out", str(missing / "a.png")], capsys)
    assert err == f"error: --out: directory {missing} does not exist\n"
    err = rejected(["autoencode", "--out", str(tmp_path)], capsys)
    assert err == f"error: --out: {tmp_path} is a directory\n"
    err = rejected(["autoencode", "--k", "64", "--out", str(tmp_path / "a.png")], capsys)
    assert "--k must be < 64" in err
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_autoencode_unwritable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except OSError:
            pass
        else:  # root writes anywhere: refuse the probe file the way a read-only directory would
            (locked / "probe").unlink()

            def refused(*_a: object, **_k: object) -> None:
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("tempfile.TemporaryFile", refused)
        err = rejected(["autoencode", "--out", str(locked / "a.png")], capsys)
        assert err == f"error: --out: directory {locked} is not writable (Permission denied)\n"
    finally:
        locked.chmod(0o700)


def test_process_exit_status_and_stderr() -> None:
    """The installed entry point as a process: exit status 2, one error line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "dlgpu.cli", "train", "mlp", "--device", "foo", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --device: 'foo' is not a torch device") and "Traceback" not in proc.stderr
    assert proc.stdout == ""
