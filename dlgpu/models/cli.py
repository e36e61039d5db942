"""``dlgpu train`` and ``dlgpu autoencode``.

    dlgpu train lenet5 --epochs 15             # a CNN/MLP on scikit-learn's 8x8 digits
    dlgpu train lstm --task adding --seq-len 50  # a recurrent cell on a synthetic sequence task
    dlgpu autoencode --k 16 --out autoencode.png  # PCA vs linear vs deep autoencoder on the digits

Registration imports nothing heavy (torch loads when a command runs), so ``dlgpu info`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

DIGIT_MODELS = ("mlp", "convnet", "lenet5", "alexnet", "zfnet", "vgg11", "vgg16", "googlenet", "resnet18")
CELL_MODELS = ("rnn", "lstm", "gru", "mgu")
SEQUENCE_TASKS = ("adding", "adding_cls", "first_token", "copy", "reverse")  # dlgpu.models.tasks.TASKS
BACKENDS = ("auto", "numpy", "numba", "triton", "cupy")  # dlgpu.ops CHOICES
# The side the digits are shown to each model at (nearest-neighbour upsampled from 8): the VGGs see them at
# 32x32, their small configuration's native size. At 8x8 only three of VGG's five poolings fit and 6 (VGG-16)
# or 4 (VGG-11) of its convolutions run on 1x1 maps, where only the kernel's centre tap sees data; with
# torchvision's initialisation (cnn.vgg_init_) the class scores then start ~1e-7 and Adam's updates stall
# (10 epochs: VGG-16 0.21 test accuracy, VGG-11 0.31; at 32x32: 0.66 and 0.76, seed 0).
DIGITS_INPUT_SIZE = {"vgg11": 32, "vgg16": 32}


def digits_model(name: str) -> Any:
    """The network ``name`` (one of DIGIT_MODELS) sized for the digits (1 channel, 10 classes).

    mlp: 64 -> 128 -> 64 -> 10; convnet: the course's pattern with N=2, M=2, K=1 at 8x8; the case
    studies in their small configuration at input_size ``DIGITS_INPUT_SIZE.get(name, 8)`` (32 for the
    VGGs: feed them ``load_digits(upsample=4)``).
    """
    from . import cnn

    if name not in DIGIT_MODELS:
        raise ValueError(f"name must be one of {', '.join(DIGIT_MODELS)}; got {name!r}")
    if name == "mlp":
        return cnn.mlp(64, (128, 64), 10)
    if name == "convnet":
        return cnn.convnet((1, 8, 8), 10)
    return getattr(cnn, name)(10, 1, small=True, input_size=DIGITS_INPUT_SIZE.get(name, 8))


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}")
    return v


def _seq_len(text: str) -> int:
    v = int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"expected an int >= 2 (the tasks need two steps), got {text}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``autoencode`` subcommands (each with ``set_defaults(fn=...)``)."""
    t = subparsers.add_parser(
        "train",
        help="train a model: CNN/MLP on the 8x8 digits, or a recurrent cell on a synthetic sequence task",
        description="Train MODEL and print per-epoch loss/accuracy and the final test score. "
        f"Digits models: {', '.join(DIGIT_MODELS)} (vgg11 and vgg16 see the digits upsampled to 32x32); "
        f"recurrent cells: {', '.join(CELL_MODELS)} "
        "(with --variant, --task, --seq-len, --hidden-size).",
    )
    t.add_argument("model", metavar="MODEL", choices=DIGIT_MODELS + CELL_MODELS, help="model to train")
    t.add_argument("--epochs", type=_positive_int, default=None, help="default 10 (digits), 8 (sequences)")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="default 64 (digits), 32 (sequences)")
    t.add_argument("--lr", type=_positive_float, default=None, help="default 1e-3 (digits), 1e-2 (sequences)")
    t.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batches")
    t.add_argument("--backend", choices=BACKENDS, default=None, help="dlgpu backend of the kernels (default: auto)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda when available)")
    t.add_argument("--variant", default=None, help="cell variant: rnn tanh|relu, lstm forget|no_forget|peephole, "
                   "gru cudnn|cho")  # fmt: skip
    t.add_argument("--task", choices=SEQUENCE_TASKS, default="adding", help="sequence task (recurrent cells)")
    t.add_argument("--seq-len", type=_seq_len, default=50, help="sequence length >= 2 (recurrent cells)")
    t.add_argument("--hidden-size", type=_positive_int, default=32, help="hidden units (recurrent cells)")
    t.set_defaults(fn=_train)

    a = subparsers.add_parser(
        "autoencode",
        help="PCA vs linear vs deep autoencoder on the digits: reconstruction errors and a PNG grid",
        description="The course's comparison: originals and their reconstructions by PCA, a linear "
        "autoencoder and a deep autoencoder with the same code size k, on held-out digits.",
    )
    a.add_argument("--k", type=_positive_int, default=16, help="code size / PCA components (< 64)")
    a.add_argument("--epochs", type=_positive_int, default=15,
                   help="training epochs; with lbfgs each is one full-batch step of up to 20 iterations")  # fmt: skip
    a.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    a.add_argument("--lr", type=_positive_float, default=None, help="default 1 (lbfgs), 1e-3 (adam)")
    a.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size (adam)")
    a.add_argument("--hidden", type=_positive_int, nargs="+", default=[256], help="deep AE hidden widths")
    a.add_argument("--out", default="autoencode.png", help="PNG file to write")
    a.add_argument("--columns", type=_positive_int, default=10, help="test digits shown")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--backend", choices=BACKENDS, default=None)
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(fn=_autoencode)


def _backend(name: str | None) -> Any:
    import contextlib

    if name is None:
        return contextlib.nullcontext()
    from dlgpu.ops import use_backend

    return use_backend(name)


def _error(message: str) -> int:
    """Print ``error: message`` on stderr; the exit status of a bad argument (2, as argparse's)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _device_error(text: str | None) -> str | None:
    """Why --device ``text`` cannot be used here, or None when it can (None: the default, always usable)."""
    if text is None:
        return None
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError) as e:
        return f"--device: {text!r} is not a torch device ({e})"
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        return f"--device must be cpu or cuda (the devices dlgpu's kernels run on), got {text!r}"
    if not torch.cuda.is_available():
        return f"--device {text}: CUDA is not available here (no CUDA device, or torch built without CUDA); use cpu"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"--device {text}: there are only {torch.cuda.device_count()} CUDA device(s)"
    return None


def _backend_error(name: str | None) -> str | None:
    """Why --backend ``name`` cannot run here, or None when it can (None and auto: chosen per op)."""
    if name is None or name == "auto":
        return None
    from dlgpu.ops import backends

    status = backends()[name]
    return None if status.available else f"--backend {name} is unavailable here: {status.reason}"


def _backend_failure(name: str | None, exc: Exception) -> str:
    """The message for a BackendError raised while running: the kernels could not run as asked."""
    return f"--backend {name}: {exc}" if name is not None else f"no backend can run this: {exc}"


def _out_error(path: str, flag: str = "--out") -> str | None:
    """Why the output file ``path`` cannot be written, or None: checked before any training."""
    if os.path.isdir(path):
        return f"{flag}: {path} is a directory"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"{flag}: directory {directory} does not exist"
    import tempfile

    try:  # a real write: os.access says yes to root everywhere, /proc and read-only mounts included
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        return f"{flag}: directory {directory} is not writable ({e.strerror or e})"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{flag}: {path} is not writable"
    return None


def _variant_error(model: str, variant: str | None) -> str | None:
    """Why --variant ``variant`` does not fit ``model``, or None."""
    if variant is None:
        return None
    if model not in CELL_MODELS:
        return f"--variant is for the recurrent cells ({', '.join(CELL_MODELS)}), not {model}"
    from .recurrent import VARIANTS

    if not VARIANTS[model]:
        return f"--variant: {model} has one form and takes no variant, got {variant!r}"
    if variant not in VARIANTS[model]:
        return f"--variant for {model} must be one of {', '.join(VARIANTS[model])}; got {variant!r}"
    return None


def _train(args: argparse.Namespace) -> int:
    import torch

    from dlgpu.ops import BackendError

    for problem in (_variant_error(args.model, args.variant), _device_error(args.device),
                    _backend_error(args.backend)):  # fmt: skip
        if problem is not None:
            return _error(problem)
    if args.model in CELL_MODELS:
        from .tasks import train_sequence

        try:
            with _backend(args.backend):
                res = train_sequence(
                    args.model, args.task, seq_len=args.seq_len, hidden_size=args.hidden_size,
                    epochs=args.epochs or 8, batch_size=args.batch_size or 32, lr=args.lr or 1e-2, seed=args.seed,
                    variant=args.variant, progress=not args.no_progress, log=print, device=args.device,
                )  # fmt: skip
        except BackendError as e:  # e.g. a backend that has no kernel for an op, or not for --device's tensors
            return _error(_backend_failure(args.backend, e))
        final, base = res["final"], res["baseline"]
        metric = "mse" if "mse" in final else "accuracy"
        print(f"final test {metric}: {final[metric]:.4f} (baseline {base[metric]:.4f}) in {res['seconds']:.1f} s")
        return 0
    from .data import load_digits
    from .train import _has_batch_norm, fit

    batch_size = args.batch_size or 64
    upsample = DIGITS_INPUT_SIZE.get(args.model, 8) // 8
    data = load_digits(seed=args.seed, scaling="standard", flatten=args.model == "mlp", upsample=upsample)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    model = digits_model(args.model)
    if batch_size < 2 and _has_batch_norm(model):
        return _error(f"--batch-size must be >= 2 for {args.model} (batch normalisation cannot train on one sample)")
    print(model.summary())
    model.to(device)
    x_train, y_train, x_test, y_test = (t.to(device) for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    t0 = time.perf_counter()
    try:
        hist = fit(
            model, x_train, y_train, x_test=x_test, y_test=y_test, epochs=args.epochs or 10, batch_size=batch_size,
            lr=args.lr or 1e-3, seed=args.seed, backend=args.backend, progress=not args.no_progress,
        )  # fmt: skip
    except BackendError as e:
        return _error(_backend_failure(args.backend, e))
    print(f"final test accuracy: {hist['test_acc'][-1]:.4f} ({len(data.y_test)} digits, "
          f"{time.perf_counter() - t0:.1f} s)")  # fmt: skip
    return 0


def autoencode_comparison(
    k: int = 16,
    *,
    epochs: int = 15,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    batch_size: int = 64,
    hidden: tuple[int, ...] = (256,),
    seed: int = 0,
    backend: str | None = None,
    progress: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Fit PCA and train a linear and a deep autoencoder with code size k on the digits (pixels in [0, 1]).

    Returns:
        {"k", "data" (the Digits split, flattened), "errors": {method: (train_error, test_error)},
        "reconstructions": {method: test reconstructions [N_test, 64] as a numpy array}, "seconds":
        {method: training time}}, methods "PCA", "linear AE", "deep AE". Errors are (1/N) sum_n
        ||x_n - x_hat_n||^2 over the 64 pixels.
    """
    import numpy as np
    import torch

    from dlgpu.reference.pca import pca_decode, pca_encode, pca_fit, pca_reconstruction_error

    from .autoencoders import DeepAutoencoder, LinearAutoencoder
    from .data import load_digits
    from .train import fit_autoencoder, reconstruction_error

    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < 64:
        raise ValueError(f"k must be an int in [1, 63] (the digits have 64 pixels), got {k!r}")
    data = load_digits(seed=seed, flatten=True, scaling="unit")
    xtr, xte = data.x_train.double().numpy(), data.x_test.double().numpy()
    t0 = time.perf_counter()
    mean, comp, _ = pca_fit(xtr, k)
    secs = {"PCA": time.perf_counter() - t0}
    errors = {"PCA": (pca_reconstruction_error(xtr, mean, comp), pca_reconstruction_error(xte, mean, comp))}
    recon = {"PCA": pca_decode(pca_encode(xte, mean, comp), mean, comp)}
    lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 1e-3)
    models = {"linear AE": LinearAutoencoder, "deep AE": lambda d, kk: DeepAutoencoder(d, kk, hidden=hidden)}
    for name, build in models.items():
        torch.manual_seed(seed)
        model = build(64, k)
        t0 = time.perf_counter()
        fit_autoencoder(
            model, data.x_train, epochs=epochs, optimizer=optimizer, lr=lr, batch_size=batch_size, seed=seed,
            backend=backend, progress=progress, log=log,
        )  # fmt: skip
        secs[name] = time.perf_counter() - t0
        errors[name] = (
            reconstruction_error(model, data.x_train, backend=backend),
            reconstruction_error(model, data.x_test, backend=backend),
        )
        with torch.no_grad(), _backend(backend):
            recon[name] = model.eval()(data.x_test).double().numpy()
    return {"k": k, "data": data, "errors": errors, "reconstructions": recon, "seconds": secs,
            "originals": np.asarray(xte)}  # fmt: skip


def error_table(result: dict[str, Any]) -> str:
    """The comparison as a text table: method, k, train and test error, test error relative to PCA."""
    pca_test = result["errors"]["PCA"][1]
    rows = [("method", "k", "train error", "test error", "vs PCA", "seconds")]
    for name, (tr, te) in result["errors"].items():
        rows.append((name, str(result["k"]), f"{tr:.4f}", f"{te:.4f}", f"{te / pca_test:.3f}",
                     f"{result['seconds'][name]:.2f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_grid(result: dict[str, Any], path: str, columns: int = 10) -> list[int]:
    """Write the PNG grid: one row per method (originals first), one column per test digit.

    The columns are the first test digit of each class 0, 1, ... (then further digits if
    columns > 10). Returns the indices of the test digits shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y = result["data"].y_test.numpy()
    first = [int(np.flatnonzero(y == c)[0]) for c in range(10) if (y == c).any()]
    rest = [i for i in range(len(y)) if i not in first]
    idx = (first + rest)[:columns]
    rows = [("original", result["originals"])] + [(n, r) for n, r in result["reconstructions"].items()]
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.0 * len(idx) + 1.2, 1.1 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r][c]
            ax.imshow(np.clip(images[i].reshape(8, 8), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if name == "original" else f"{name}\n{result['errors'][name][1]:.3f}"
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"digits: reconstructions with k = {result['k']} (test error per row)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return idx


def _autoencode(args: argparse.Namespace) -> int:
    from dlgpu.ops import BackendError

    if not args.k < 64:
        return _error(f"--k must be < 64 (the digits have 64 pixels), got {args.k}")
    for problem in (_backend_error(args.backend), _out_error(args.out)):
        if problem is not None:
            return _error(problem)
    try:
        result = autoencode_comparison(
            args.k, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
            hidden=tuple(args.hidden), seed=args.seed, backend=args.backend, progress=not args.no_progress,
            log=None,
        )  # fmt: skip
    except BackendError as e:
        return _error(_backend_failure(args.backend, e))
    print(error_table(result))
    print("reconstruction error = (1/N) sum_n ||x_n - x_hat_n||^2 over the 64 pixels in [0, 1]; "
          "PCA fitted on the training split")
    save_grid(result, args.out, args.columns)
    print(f"wrote {args.out}")
    return 0
