"""Every model of dlgpu.models by name, with a ready training example (small configurations).

    from dlgpu.models import registry
    ex = registry.example("resnet18", batch_size=8)
    out = ex.model(*ex.inputs)
    ex.loss(out, ex.target).backward()

so a profiler or a test can run forward and backward passes of any model without knowing how it
is built or fed. Inputs are seeded random tensors of the shapes the model expects (images 32x32x3
or 8x8x1, digit-sized vectors of 64 features in [0, 1], sequences of 12 steps of 8 features).

Losses: cross-entropy for the classifiers (per step for taggers and seq2seq); the squared
reconstruction error for the autoencoders (the sparse one without its L1 term, which its
``loss(x)`` adds; the denoising one fed a noisy input, scored against the clean one); -ELBO for the
VAE; the generator's objective for the GAN (through the discriminator, so both get gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dlgpu import functional as F


@dataclass
class Example:
    """A model with one batch of inputs and a loss: ``loss(model(*inputs), target)`` is a scalar.

    Attributes:
        name: the registry name.
        model: the module, in training mode.
        inputs: positional arguments of ``model(...)``.
        target: what ``loss`` compares the output with.
        loss: (output, target) -> scalar tensor.
    """

    name: str
    model: nn.Module
    inputs: tuple[Tensor, ...]
    target: Tensor
    loss: Callable[[Any, Tensor], Tensor]


_IMAGE = 32  # side of the small CNNs' inputs
_CLASSES = 10
_FEATURES = 64  # the digits' 8x8 pixels, flattened
_SEQ = {"input": 8, "hidden": 32, "steps": 12, "classes": 4}


def _ce(out: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _squared(out: Any, target: Tensor) -> Tensor:
    from .autoencoders import squared_error

    return squared_error(out[0] if isinstance(out, tuple) else out, target)


def _neg_elbo(out: tuple[Tensor, Tensor, Tensor], target: Tensor) -> Tensor:
    """-ELBO from a VAE's (x_hat, mu, logvar): binary cross-entropy of the mean plus the KL term."""
    x_hat, mu, logvar = out
    b = target.shape[0]
    kl = -0.5 * torch.sum(1 + logvar - mu * mu - torch.exp(logvar)) / b
    return F.binary_cross_entropy(x_hat, target, reduction="sum") / b + kl


# name -> (builder() -> model, kind); kind picks the inputs and the loss
def _cnn(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from . import cnn

        return getattr(cnn, name)(_CLASSES, 3, small=True, input_size=_IMAGE)

    return build


def _builders() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    from . import autoencoders as ae
    from . import cnn

    reg: dict[str, tuple[Callable[[], nn.Module], str]] = {
        "mlp": (lambda: cnn.mlp(_FEATURES, (128, 64), _CLASSES), "vector"),
        "convnet": (lambda: cnn.convnet((1, 8, 8), _CLASSES), "digit_image"),
        "lenet5": (lambda: cnn.lenet5(_CLASSES, 1, small=True), "digit_image"),
    }
    for name in ("alexnet", "zfnet", "vgg11", "vgg16", "googlenet", "resnet18"):
        reg[name] = (_cnn(name), "image")
    reg.update({
        "linear_ae": (lambda: ae.LinearAutoencoder(_FEATURES, 16), "autoencoder"),
        "deep_ae": (lambda: ae.DeepAutoencoder(_FEATURES, 16), "autoencoder"),
        "sparse_ae": (lambda: ae.SparseAutoencoder(_FEATURES, 32, hidden=(64,)), "autoencoder"),
        "denoising_ae": (lambda: ae.DenoisingAutoencoder(_FEATURES, 16), "denoising"),
        "vae": (lambda: ae.VAE(_FEATURES, 8), "vae"),
        "gan": (lambda: ae.GAN(_FEATURES, 16), "gan"),
    })  # fmt: skip
    try:
        from . import recurrent
    except ModuleNotFoundError as e:  # the recurrent family is optional while it is being written
        if e.name != f"{__package__}.recurrent":
            raise
        return reg
    i, h, k = _SEQ["input"], _SEQ["hidden"], _SEQ["classes"]
    for cell, variants in (("rnn", (None, "relu")), ("lstm", (None, "no_forget", "peephole")),
                           ("gru", (None, "cho")), ("mgu", (None,))):  # fmt: skip
        for v in variants:
            name = f"{cell}_{v}_classifier" if v else f"{cell}_classifier"
            reg[name] = (lambda c=cell, v=v: recurrent.SequenceClassifier(c, i, h, k, variant=v), "sequence")
    for cell in ("rnn", "lstm", "gru", "mgu"):
        reg[f"{cell}_tagger"] = (lambda c=cell: recurrent.SequenceTagger(c, i, h, k), "tagging")
    for cell in ("lstm", "gru"):
        reg[f"{cell}_seq2seq"] = (lambda c=cell: recurrent.Seq2Seq(c, k, h, k), "seq2seq")
    return reg


def names() -> list[str]:
    """The registered model names, in a fixed order (feed-forward first, then recurrent)."""
    return list(_builders())


def example(
    name: str,
    batch_size: int = 8,
    seed: int = 0,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Example:
    """The model ``name`` (small configuration) with a seeded random batch and its training loss.

    Args:
        name: one of ``names()``.
        batch_size: B, >= 1 (>= 2 for resnet18, whose batch norm needs two samples in training).
        seed: seeds the model's initialisation and the inputs.
        device, dtype: where and in what floating dtype model and inputs live.
    Returns:
        An Example; ``example.loss(example.model(*example.inputs), example.target)`` is a scalar.
    """
    reg = _builders()
    if name not in reg:
        raise ValueError(f"name must be one of the registered models ({', '.join(reg)}); got {name!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
    build, kind = reg[name]
    torch.manual_seed(seed)
    model = build().to(device=device, dtype=dtype)
    model.train()
    g = torch.Generator().manual_seed(seed + 1)
    b = batch_size

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    def labels(*shape: int, classes: int = _CLASSES) -> Tensor:
        return torch.randint(0, classes, shape, generator=g).to(device)

    s, t, k = _SEQ["input"], _SEQ["steps"], _SEQ["classes"]
    if kind == "vector":
        inputs, target, loss = (randn(b, _FEATURES),), labels(b), _ce
    elif kind == "digit_image":
        inputs, target, loss = (randn(b, 1, 8, 8),), labels(b), _ce
    elif kind == "image":
        inputs, target, loss = (randn(b, 3, _IMAGE, _IMAGE),), labels(b), _ce
    elif kind == "autoencoder":
        x = rand(b, _FEATURES)
        inputs, target, loss = (x,), x, _squared
    elif kind == "denoising":
        x = rand(b, _FEATURES)
        inputs, target, loss = (x + 0.2 * randn(b, _FEATURES),), x, _squared
    elif kind == "vae":
        x = rand(b, _FEATURES)
        inputs, target, loss = (x,), x, _neg_elbo
    elif kind == "gan":
        gan = model

        def g_loss(out: Tensor, tgt: Tensor) -> Tensor:
            return F.binary_cross_entropy_with_logits(gan.discriminator(out), tgt)

        inputs, target, loss = (randn(b, gan.noise_dim),), torch.ones(b, 1, device=device, dtype=dtype), g_loss
    elif kind == "sequence":
        inputs, target, loss = (randn(b, t, s),), labels(b, classes=k), _ce
    elif kind == "tagging":
        inputs, target, loss = (randn(b, t, s),), labels(b, t, classes=k), _ce
    else:  # seq2seq: tokens in, the same tokens out
        tokens = labels(b, t, classes=k)
        src = torch.nn.functional.one_hot(tokens, k).to(dtype)
        inputs, target, loss = (src, tokens), tokens, _ce
    return Example(name, model, inputs, target, loss)
