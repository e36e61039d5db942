"""Synthetic sequence tasks from a seed, and ``train_sequence``, which trains a recurrent model on one.

Tasks (all batch_first, float32 inputs):

- ``adding`` (Hochreiter & Schmidhuber 1997; Le et al. 2015): T steps of (value, marker) pairs,
  values ~ U(0, 1), exactly two markers (one in each half); target = sum of the two marked values.
  Regression, MSE; predicting the mean scores var = 1/6 ~ 0.167, a solved task scores < ~0.01.
- ``adding_cls``: the same sequences, label = [sum > 1]: two classes, chance 50 %.
- ``first_token``: one-hot tokens; the class (of ``num_classes``) is the first token, followed by
  T-1 distractor tokens from a disjoint vocabulary: the answer has to be carried over T-1 steps.
- ``copy`` / ``reverse``: Seq2Seq; a random token sequence, the target is the sequence itself or
  reversed. Accuracy is per token of greedy (autoregressive) generation, not teacher-forced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import functional as F
from ..reference._validate import check_choice
from .recurrent import CELLS, Seq2Seq, SequenceClassifier

__all__ = ["TASKS", "SequenceTask", "adding_problem", "copy_task", "first_token_task", "make_task", "train_sequence"]

TASKS = ("adding", "adding_cls", "first_token", "copy", "reverse")


@dataclass(frozen=True)
class SequenceTask:
    """A generated train/test split.

    Attributes:
        name: one of TASKS. kind: "regression" | "classification" | "seq2seq".
        x_train, x_test: [N, T, input_size] float32.
        y_train, y_test: regression [N] float32; classification [N] int64; seq2seq [N, T] int64.
        input_size: features per step. output_size: 1 (regression), classes, or the token vocabulary.
    """

    name: str
    kind: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    input_size: int
    output_size: int


def adding_problem(n: int, seq_len: int, gen: np.random.Generator) -> tuple[Tensor, Tensor]:
    """n adding-problem sequences: x [n, T, 2] = (value, marker), y [n] = sum of the two marked values."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 for the adding problem (one marker per half), got {seq_len}")
    x = np.zeros((n, seq_len, 2), dtype=np.float32)
    x[:, :, 0] = gen.random((n, seq_len))
    half = seq_len // 2
    rows = np.arange(n)
    first = gen.integers(0, half, n)
    second = gen.integers(half, seq_len, n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = x[rows, first, 0] + x[rows, second, 0]
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def first_token_task(
    n: int, seq_len: int, gen: np.random.Generator, num_classes: int = 4, num_distractors: int = 4
) -> tuple[Tensor, Tensor]:
    """x [n, T, num_classes + num_distractors] one-hot, y [n] int64 = the first token (a class
    token); tokens 2..T are distractors, drawn from their own vocabulary."""
    y = gen.integers(0, num_classes, n)
    tokens = np.concatenate([y[:, None], num_classes + gen.integers(0, num_distractors, (n, seq_len - 1))], axis=1)
    x = np.eye(num_classes + num_distractors, dtype=np.float32)[tokens]  # n,T,V
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def copy_task(
    n: int, seq_len: int, gen: np.random.Generator, vocab: int = 8, reverse: bool = False
) -> tuple[Tensor, Tensor]:
    """src [n, T, vocab] one-hot tokens, tgt [n, T] int64 = the same tokens (reversed if ``reverse``)."""
    tokens = gen.integers(0, vocab, (n, seq_len))
    x = np.eye(vocab, dtype=np.float32)[tokens]
    tgt = tokens[:, ::-1] if reverse else tokens
    return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(tgt).astype(np.int64))


def make_task(task: str, seq_len: int, n_train: int, n_test: int, seed: int = 0) -> SequenceTask:
    """Generate ``task`` (one of TASKS) with sequence length ``seq_len``; the test set comes from its
    own stream of the same seed, so it never overlaps the training stream's draws."""
    check_choice(task, TASKS, "task")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2, got {seq_len!r}")
    train_gen, test_gen = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if task in ("adding", "adding_cls"):
        (xa, ya), (xb, yb) = adding_problem(n_train, seq_len, train_gen), adding_problem(n_test, seq_len, test_gen)
        if task == "adding":
            return SequenceTask(task, "regression", xa, ya, xb, yb, 2, 1)
        return SequenceTask(task, "classification", xa, (ya > 1).long(), xb, (yb > 1).long(), 2, 2)
    if task == "first_token":
        (xa, ya), (xb, yb) = first_token_task(n_train, seq_len, train_gen), first_token_task(n_test, seq_len, test_gen)
        return SequenceTask(task, "classification", xa, ya, xb, yb, xa.shape[2], 4)
    rev = task == "reverse"
    xa, ya = copy_task(n_train, seq_len, train_gen, reverse=rev)
    xb, yb = copy_task(n_test, seq_len, test_gen, reverse=rev)
    return SequenceTask(task, "seq2seq", xa, ya, xb, yb, xa.shape[2], xa.shape[2])


# ------------------------------------------------------------------ training


def _loss(task: SequenceTask, model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    if task.kind == "seq2seq":
        logits = model(x, y)  # B,T,V
        return F.cross_entropy(logits.reshape(-1, logits.shape[2]), y.reshape(-1))
    out = model(x)
    if task.kind == "regression":
        return F.mse_loss(out[:, 0], y)
    return F.cross_entropy(out, y)


@torch.no_grad()
def _evaluate(task: SequenceTask, model: torch.nn.Module, batch_size: int, device: torch.device) -> dict[str, float]:
    model.eval()
    total, hits, sq = 0.0, 0.0, 0.0
    n = task.x_test.shape[0]
    for s in range(0, n, batch_size):
        x, y = task.x_test[s : s + batch_size].to(device), task.y_test[s : s + batch_size].to(device)
        total += float(_loss(task, model, x, y)) * x.shape[0]
        if task.kind == "regression":
            sq += float(((model(x)[:, 0] - y) ** 2).sum())
        elif task.kind == "classification":
            hits += float((model(x).argmax(1) == y).sum())
        else:
            hits += float((model.generate(x, y.shape[1]).argmax(2) == y).float().mean(1).sum())
    model.train()
    res = {"test_loss": total / n}
    res.update({"mse": sq / n} if task.kind == "regression" else {"accuracy": hits / n})
    return res


def train_sequence(
    cell: str,
    task: str = "adding",
    *,
    seq_len: int = 50,
    hidden_size: int = 32,
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
    variant: str | None = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
    num_layers: int = 1,
    n_train: int = 4096,
    n_test: int = 512,
    grad_clip: float = 1.0,
    device: str | torch.device | None = None,
    return_model: bool = False,
) -> dict[str, Any]:
    """Train a recurrent model of ``cell`` (rnn | lstm | gru | mgu; ``variant`` as in dlgpu.nn) on a
    synthetic ``task`` (one of TASKS) with Adam and gradient-norm clipping, everything from ``seed``.

    The model is a SequenceClassifier (adding: one output, MSE; adding_cls, first_token: cross-entropy)
    or a Seq2Seq (copy, reverse: teacher forcing, scored by greedy generation). ``device`` None picks
    CUDA when available. ``progress`` shows a rich progress bar; ``log`` (None: silent) gets one line
    per epoch.

    Returns a dict: cell, variant, task, kind, settings (every argument), baseline (the test score of
    predicting the training mean / the majority class / chance), history (one dict per epoch: epoch,
    loss = mean training loss, test_loss, mse or accuracy, seconds), final (the last history entry),
    seconds (total); plus model (the trained module) when ``return_model``.
    """
    check_choice(cell, CELLS, "cell")
    for name, v in (("hidden_size", hidden_size), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    settings = dict(
        seq_len=seq_len, hidden_size=hidden_size, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        num_layers=num_layers, n_train=n_train, n_test=n_test, grad_clip=grad_clip,
    )  # fmt: skip
    data = make_task(task, seq_len, n_train, n_test, seed)
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    if data.kind == "seq2seq":
        model = Seq2Seq(cell, data.input_size, hidden_size, data.output_size, num_layers, variant)
    else:
        model = SequenceClassifier(cell, data.input_size, hidden_size, data.output_size, num_layers, variant=variant)
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)

    if data.kind == "regression":
        baseline = {"mse": float(((data.y_test - data.y_train.mean()) ** 2).mean())}
    elif data.kind == "classification":
        baseline = {"accuracy": float((data.y_test == torch.mode(data.y_train).values).float().mean())}
    else:
        baseline = {"accuracy": 1.0 / data.output_size}

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    n_batches = (n_train + batch_size - 1) // batch_size
    history: list[dict[str, float]] = []
    t_start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not progress, transient=False) as bar:
        job = bar.add_task(f"{cell} {task} T={seq_len}", total=epochs * n_batches, info="")
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n_train, generator=shuffle)
            running = 0.0
            for b in range(n_batches):
                idx = perm[b * batch_size : (b + 1) * batch_size]
                x, y = data.x_train[idx].to(dev), data.y_train[idx].to(dev)
                loss = _loss(data, model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip and grad_clip > 0:
                    F.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                running += float(loss.detach()) * x.shape[0]
                bar.update(job, advance=1, info=f"loss {float(loss.detach()):.4f}")
            entry = {"epoch": epoch, "loss": running / n_train, **_evaluate(data, model, batch_size, dev)}
            entry["seconds"] = time.perf_counter() - t0
            history.append(entry)
            if log is not None:
                score = f"mse {entry['mse']:.4f}" if "mse" in entry else f"accuracy {entry['accuracy']:.3f}"
                log(f"{cell} {task} epoch {epoch}/{epochs}: loss {entry['loss']:.4f} "
                    f"test_loss {entry['test_loss']:.4f} {score} ({entry['seconds']:.1f} s)")  # fmt: skip
    result: dict[str, Any] = {
        "cell": cell, "variant": variant, "task": task, "kind": data.kind, "settings": settings,
        "baseline": baseline, "history": history, "final": history[-1], "seconds": time.perf_counter() - t_start,
    }  # fmt: skip
    if return_model:
        result["model"] = model
    return result
