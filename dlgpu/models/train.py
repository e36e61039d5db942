"""A small training loop shared by ``dlgpu train``, ``dlgpu autoencode``, the benchmarks and the tests.

``fit`` trains a classifier (or any model with a loss on (output, target)) by minibatches and keeps
a per-epoch history; ``fit_autoencoder`` trains a model on its own input, through the model's
``loss(x)`` when it has one, else the squared reconstruction error. Both show a rich progress bar
unless told not to and log one line per epoch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

OPTIMIZERS = ("adam", "sgd", "lbfgs")


def make_optimizer(
    name: str, params: Any, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (adam | sgd | lbfgs) over ``params``.

    sgd uses ``momentum``; lbfgs (full-batch, strong-Wolfe line search, 20 iterations per step) ignores
    ``weight_decay``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=50, line_search_fn="strong_wolfe")


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


@contextlib.contextmanager
def _backend(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    from dlgpu.ops import use_backend

    with use_backend(name):
        yield


@contextlib.contextmanager
def _progress(enabled: bool, total: int, what: str) -> Iterator[Callable[[str], None]]:
    """Yields advance(description): one call per minibatch."""
    if not enabled:
        yield lambda _desc: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda desc: bar.update(task, advance=1, description=desc)


def _batches(n: int, batch_size: int, gen: torch.Generator | None, merge_single: bool = False) -> list[Tensor]:
    """Indices of the minibatches over n samples: shuffled by ``gen`` (None: in order), ``batch_size`` each
    but the last.

    With ``merge_single`` a last batch of one sample (n = k * batch_size + 1, k >= 1, batch_size >= 2) joins
    the one before it (which then has batch_size + 1 samples): training never feeds a lone sample, which batch
    normalisation cannot normalise ("Expected more than 1 value per channel when training"), and every
    sample is still used once per epoch.
    """
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    batches = list(torch.split(order, batch_size))
    if merge_single and batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _num_train_batches(n: int, batch_size: int) -> int:
    """len(_batches(n, batch_size, gen, merge_single=True)): the training steps per epoch."""
    steps = -(-n // batch_size)
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _is_classification(output: Tensor, target: Tensor) -> bool:
    return output.ndim == 2 and target.ndim == 1 and target.dtype == torch.int64


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    batch_size: int = 256,
    backend: str | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode (dropout off).

    Args:
        x: [N, ...] inputs; y: [N] int64 class labels (or any target ``loss_fn`` takes).
        loss_fn: (output, target) -> scalar mean loss; default dlgpu's cross-entropy.
    Returns:
        (loss, accuracy); accuracy is nan when the outputs are not [N, K] class scores.
    """
    from dlgpu.functional import cross_entropy

    loss_fn = loss_fn or cross_entropy
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, int(x.shape[0])
    classify = True
    try:
        with _backend(backend):
            for idx in _batches(n, batch_size, None):
                out = model(x[idx])
                total += float(loss_fn(out, y[idx])) * len(idx)
                classify = classify and _is_classification(out, y)
                if classify:
                    correct += int((out.argmax(dim=1) == y[idx]).sum())
    finally:
        model.train(was_training)
    return total / n, (correct / n if classify else float("nan"))


def fit(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    *,
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    seed: int = 0,
    backend: str | None = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
) -> dict[str, list[float]]:
    """Train ``model`` on (x_train, y_train) by shuffled minibatches.

    Args:
        model: maps [B, ...] inputs to outputs ``loss_fn`` takes (class scores [B, K] by default).
        x_train: [N, ...]; y_train: [N] int64 labels (or whatever ``loss_fn`` expects).
        x_test, y_test: optional held-out data, evaluated after every epoch.
        epochs, batch_size, lr, optimizer (adam | sgd), weight_decay: the usual. When N = k * batch_size + 1
            the lone last sample joins the batch before it (batch normalisation cannot train on one
            sample); every sample is used once per epoch. A model with batch normalisation needs
            batch_size >= 2 and N >= 2.
        loss_fn: (output, target) -> scalar mean loss; default dlgpu's cross-entropy.
        seed: seeds the shuffling (not the model's initialisation: seed torch before building it).
        backend: a dlgpu backend to run the kernels on (None: the one in force).
        progress: show a rich progress bar.
        log: called with one line per epoch (None: silent).
    Returns:
        history: lists over epochs under "epoch", "loss" (mean training loss), "acc" (training
        accuracy over the epoch's batches, nan if not a classifier), "test_loss", "test_acc" (when
        test data is given) and "seconds" (wall time of the epoch).
    """
    from dlgpu.functional import cross_entropy

    epochs, batch_size = _check_positive_int(epochs, "epochs"), _check_positive_int(batch_size, "batch_size")
    if optimizer == "lbfgs":
        raise ValueError("optimizer must be adam or sgd for minibatch training (lbfgs: use fit_autoencoder)")
    if x_train.shape[0] != y_train.shape[0] or x_train.shape[0] == 0:
        raise ValueError(
            f"x_train and y_train must have the same non-zero number of samples, got {x_train.shape[0]} and "
            f"{y_train.shape[0]}"
        )
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    n = int(x_train.shape[0])
    if _has_batch_norm(model) and (batch_size < 2 or n < 2):
        raise ValueError(
            f"batch_size and the number of training samples must be >= 2 for a model with batch normalisation "
            f"(it cannot train on one sample), got batch_size={batch_size} and {n} samples"
        )
    loss_fn = loss_fn or cross_entropy
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps = _num_train_batches(n, batch_size)
    keys = ("epoch", "loss", "acc", "seconds") + (("test_loss", "test_acc") if x_test is not None else ())
    hist: dict[str, list[float]] = {k: [] for k in keys}
    model.train()
    with _backend(backend), _progress(progress, epochs * steps, "training") as advance:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            total, correct, classify = 0.0, 0, True
            for idx in _batches(n, batch_size, gen, merge_single=True):
                xb, yb = x_train[idx], y_train[idx]
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                classify = classify and _is_classification(out, yb)
                if classify:
                    correct += int((out.detach().argmax(dim=1) == yb).sum())
                advance(f"epoch {epoch}/{epochs} loss {float(loss.detach()):.4f}")
            hist["epoch"].append(epoch)
            hist["loss"].append(total / n)
            hist["acc"].append(correct / n if classify else float("nan"))
            line = f"epoch {epoch:3d}  loss {total / n:.4f}  acc {hist['acc'][-1]:.4f}"
            if x_test is not None:
                tl, ta = evaluate(model, x_test, y_test, loss_fn=loss_fn, batch_size=max(batch_size, 256))
                hist["test_loss"].append(tl)
                hist["test_acc"].append(ta)
                line += f"  test_loss {tl:.4f}  test_acc {ta:.4f}"
            hist["seconds"].append(time.perf_counter() - t0)
            if log is not None:
                log(line + f"  ({hist['seconds'][-1]:.1f} s)")
    return hist


def reconstruction_error(model: nn.Module, x: Tensor, *, backend: str | None = None) -> float:
    """(1/N) sum_n ||x_n - model(x_n)||^2 in eval mode: the measure PCA is compared on.

    Args:
        model: an autoencoder whose forward returns the reconstruction (or a tuple starting with it).
        x: [N, D] samples.
    Returns:
        The mean over samples of the squared error summed over features, as a float.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _backend(backend):
            out = model(x)
    finally:
        model.train(was_training)
    x_hat = out[0] if isinstance(out, tuple) else out  # N,D
    return float(((x_hat - x) ** 2).sum(dim=1).mean())


def _ae_loss(model: nn.Module, xb: Tensor) -> Tensor:
    if hasattr(model, "loss"):
        return model.loss(xb)
    out = model(xb)
    x_hat = out[0] if isinstance(out, tuple) else out
    return ((x_hat - xb) ** 2).sum(dim=1).mean()


def fit_autoencoder(
    model: nn.Module,
    x_train: Tensor,
    *,
    x_test: Tensor | None = None,
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    backend: str | None = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
) -> dict[str, list[float]]:
    """Train an autoencoder to reproduce its input.

    The loss of a batch is ``model.loss(xb)`` when the model has one (sparse, denoising, VAE), else
    the squared reconstruction error summed over features and averaged over the batch.
    optimizer="lbfgs" trains full-batch: each epoch is one L-BFGS step of up to 20 iterations.

    Args:
        model: maps [B, D] to the reconstruction [B, D] (or a tuple starting with it).
        x_train: [N, D]; x_test: optional [M, D] held out.
        epochs, batch_size, lr, optimizer (adam | sgd | lbfgs), weight_decay, seed, backend,
        progress, log: as in ``fit``.
    Returns:
        history: lists over epochs under "epoch", "loss" (mean training loss), "error" (training
        reconstruction error, see ``reconstruction_error``), "test_error" (with x_test), "seconds".
    """
    epochs, batch_size = _check_positive_int(epochs, "epochs"), _check_positive_int(batch_size, "batch_size")
    if x_train.ndim < 2 or x_train.shape[0] == 0:
        raise ValueError(f"x_train must be [N, D] with N >= 1, got shape {tuple(x_train.shape)}")
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = int(x_train.shape[0])
    steps = 1 if optimizer == "lbfgs" else _num_train_batches(n, batch_size)
    keys = ("epoch", "loss", "error", "seconds") + (("test_error",) if x_test is not None else ())
    hist: dict[str, list[float]] = {k: [] for k in keys}
    model.train()
    with _backend(backend), _progress(progress, epochs * steps, "training") as advance:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            if optimizer == "lbfgs":

                def closure() -> Tensor:
                    opt.zero_grad(set_to_none=True)
                    loss = _ae_loss(model, x_train)
                    loss.backward()
                    return loss

                total = float(opt.step(closure).detach()) * n  # the loss at the step's start
                advance(f"epoch {epoch}/{epochs} loss {total / n:.4f}")
            else:
                total = 0.0
                for idx in _batches(n, batch_size, gen, merge_single=True):
                    opt.zero_grad(set_to_none=True)
                    loss = _ae_loss(model, x_train[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    advance(f"epoch {epoch}/{epochs} loss {float(loss.detach()):.4f}")
            hist["epoch"].append(epoch)
            hist["loss"].append(total / n)
            hist["error"].append(reconstruction_error(model, x_train))
            line = f"epoch {epoch:3d}  loss {total / n:.4f}  error {hist['error'][-1]:.4f}"
            if x_test is not None:
                hist["test_error"].append(reconstruction_error(model, x_test))
                line += f"  test_error {hist['test_error'][-1]:.4f}"
            hist["seconds"].append(time.perf_counter() - t0)
            if log is not None:
                log(line + f"  ({hist['seconds'][-1]:.1f} s)")
    return hist
