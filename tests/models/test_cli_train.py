"""``dlgpu train`` / ``dlgpu autoencode`` (through a parser built here and the module's ``register``), the
training loop and the digits loader."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch

from dlgpu.models import cli, registry
from dlgpu.models.data import load_digits
from dlgpu.models.train import evaluate, fit


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlgpu")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    return int(args.fn(args))


def test_train_lenet5_on_digits(capsys: pytest.CaptureFixture[str], seed: int) -> None:
    s = str(seed % 1000)
    assert run(["train", "lenet5", "--epochs", "5", "--batch-size", "16", "--lr", "2e-3", "--seed", s,
                "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Total params: 19,754" in out  # the small LeNet-5's summary
    epochs = re.findall(r"epoch +(\d+) +loss ([\d.]+) +acc ([\d.]+) +test_loss ([\d.]+) +test_acc ([\d.]+)", out)
    assert [int(e[0]) for e in epochs] == [1, 2, 3, 4, 5]
    losses = [float(e[1]) for e in epochs]
    assert losses[-1] < losses[0]
    acc = float(re.search(r"final test accuracy: ([\d.]+) \(360 digits", out).group(1))
    assert acc == float(epochs[-1][4])
    assert acc >= 0.88, out  # 5 epochs (0.91-0.96 over 10 seeds); benchmarks/digits_lenet.py: >= 97%


def test_train_mlp_with_backend_and_recurrent(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["train", "mlp", "--epochs", "1", "--backend", "numpy", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch +1 +loss", out) and "final test accuracy:" in out
    assert run(["train", "gru", "--task", "adding", "--seq-len", "6", "--hidden-size", "8", "--epochs", "1",
                "--batch-size", "128", "--variant", "cho", "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert re.search(r"final test mse: [\d.]+ \(baseline [\d.]+\)", out)
    assert run(["train", "mlp", "--variant", "cho", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --variant is for the recurrent cells") and captured.out == ""


def test_train_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "lenet"], ["train", "mlp", "--epochs", "0"], ["train", "mlp", "--lr", "-1"],
                 ["train", "mlp", "--backend", "gpu"]):  # fmt: skip
        with pytest.raises(SystemExit):
            run(argv)
    assert "invalid choice" in capsys.readouterr().err


def test_autoencode_writes_png_and_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out_png = tmp_path / "ae.png"
    assert run(["autoencode", "--k", "8", "--epochs", "1", "--optimizer", "adam", "--batch-size", "256", "--hidden",
                "32", "--columns", "6", "--out", str(out_png), "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    data = out_png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(out_png))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    rows = {m: re.search(rf"^{m} +8 +([\d.]+) +([\d.]+) +([\d.]+)", out, re.M) for m in ("PCA", "linear AE",
                                                                                        "deep AE")}  # fmt: skip
    assert all(rows.values()), out
    assert float(rows["PCA"].group(3)) == 1.0
    assert float(rows["linear AE"].group(1)) >= float(rows["PCA"].group(1)) * (1 - 1e-4)  # PCA is optimal
    assert run(["autoencode", "--k", "64", "--out", str(tmp_path / "no.png")]) == 2
    assert not (tmp_path / "no.png").exists()


def test_command_lists_match_the_library() -> None:
    from dlgpu.models.tasks import TASKS
    from dlgpu.ops._dispatch import CHOICES

    assert cli.SEQUENCE_TASKS == TASKS
    assert cli.BACKENDS == CHOICES
    assert set(cli.DIGIT_MODELS) <= set(registry.names())


# ---------------------------------------------------------------- data, loop


def test_load_digits_split_and_scaling(seed: int) -> None:
    s = seed % 1000
    a, b = load_digits(seed=s), load_digits(seed=s)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8) and a.in_shape == (1, 8, 8)
    assert a.y_train.dtype == torch.int64 and set(a.y_test.tolist()) == set(range(10))  # stratified
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    other = load_digits(seed=s + 1)
    assert not torch.equal(a.y_train, other.y_train)
    std = load_digits(seed=s, scaling="standard", flatten=True)
    assert std.x_train.shape == (1437, 64)
    moving = std.x_train.std(dim=0) > 0
    np.testing.assert_allclose(std.x_train.mean(dim=0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(dim=0, unbiased=False)[moving].numpy(), 1, rtol=1e-4)
    up = load_digits(seed=s, upsample=4, scaling="none")
    assert up.x_train.shape == (1437, 1, 32, 32)
    assert torch.equal(up.x_train[:, :, ::4, ::4], load_digits(seed=s, scaling="none").x_train)
    with pytest.raises(ValueError, match="test_fraction must be a number in"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="scaling must be one of"):
        load_digits(scaling="minmax")
    with pytest.raises(ValueError, match="upsample must be 1 when flatten"):
        load_digits(flatten=True, upsample=2)


def test_fit_history_and_bad_arguments(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    from dlgpu.models.cnn import mlp

    x = torch.from_numpy(gen.standard_normal((50, 7))).float()
    y = torch.from_numpy((x[:, 0] > 0).long().numpy())
    model = mlp(7, 16, 2)
    lines: list[str] = []
    hist = fit(model, x, y, x_test=x, y_test=y, epochs=3, batch_size=13, lr=1e-2, progress=True, log=lines.append)
    assert hist["epoch"] == [1, 2, 3] and len(lines) == 3
    assert set(hist) == {"epoch", "loss", "acc", "seconds", "test_loss", "test_acc"}
    loss, acc = evaluate(model, x, y)
    assert loss == pytest.approx(hist["test_loss"][-1], rel=1e-5) and acc == hist["test_acc"][-1]
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        fit(model, x, y, epochs=0)
    with pytest.raises(ValueError, match="x_train and y_train must have the same"):
        fit(model, x, y[:10])
    with pytest.raises(ValueError, match="x_test and y_test must be given together"):
        fit(model, x, y, x_test=x)
    with pytest.raises(ValueError, match="optimizer must be adam or sgd"):
        fit(model, x, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        fit(model, x, y, lr=0.0)
