"""Autoencoders and a GAN from dlgpu.nn layers, as in the course.

An autoencoder maps x [B, D] through a bottleneck code z [B, k] (k < D) back to x_hat [B, D]:

    LinearAutoencoder     z = V x + c, x_hat = U z + b, squared loss: at its optimum the span of
                          PCA's top-k eigenvectors (``dlgpu.reference.pca``), reached by backprop
    DeepAutoencoder       ReLU layers around the k-wide code: a nonlinear manifold, lower error
    SparseAutoencoder     loss + lambda * sum_i |z_i|
    DenoisingAutoencoder  trained to reproduce x from x + noise
    VAE                   Gaussian q(z|x), reparameterisation z = mu + sigma * eps, ELBO
    GAN                   generator G(z) and discriminator D(x) with the two alternating objectives

Each autoencoder's ``forward(x)`` returns the reconstruction (the VAE: a tuple whose first element is
it) and ``loss(x)`` the training objective per sample, averaged over the batch. The reconstruction
loss is the squared error summed over the D features, (1/B) sum_n ||x_n - x_hat_n||^2, the measure
PCA's ``pca_reconstruction_error`` reports, so the numbers compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlgpu import functional as F
from dlgpu.nn.layers import Linear
from dlgpu.nn.network import Network
from dlgpu.reference._validate import check_int

OUTPUTS = ("none", "sigmoid")


def _widths(hidden: int | Sequence[int], name: str = "hidden") -> list[int]:
    widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else list(hidden)
    return [check_int(w, f"{name}[{i}]") for i, w in enumerate(widths)]


def _check_sizes(in_features: int, k: int) -> None:
    check_int(in_features, "in_features")
    check_int(k, "k")
    if k >= in_features:
        raise ValueError(f"k must be smaller than in_features={in_features} (a bottleneck), got {k}")


def _check_input(x: Tensor, d: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x must have shape (B, {d}) (batch, in_features), got {tuple(x.shape)}")


def squared_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """(1/B) sum_n ||x_n - x_hat_n||^2 for [B, D] tensors: a scalar, dlgpu's mse kernel summed."""
    return F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]


def _mlp(dims: Sequence[int], hidden_act: str, last_act: str) -> Network:
    """Linear layers dims[0] -> dims[1] -> ... with hidden_act fused into all but the last."""
    layers = [
        Linear(a, b, activation=hidden_act if i < len(dims) - 2 else last_act)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
    ]
    return Network(*layers, input_shape=(dims[0],))


class _Autoencoder(nn.Module):
    """encode -> decode with a squared reconstruction loss; subclasses build encoder and decoder."""

    in_features: int
    k: int
    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: Tensor) -> Tensor:
        """x [B, D] -> code z [B, k]."""
        _check_input(x, self.in_features)
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """z [B, k] -> x_hat [B, D]."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction x_hat [B, D] of x [B, D]."""
        return self.decode(self.encode(x))

    def loss(self, x: Tensor) -> Tensor:
        """(1/B) sum_n ||x_n - x_hat_n||^2, a scalar."""
        return squared_error(self(x), x)


class LinearAutoencoder(_Autoencoder):
    """The simplest autoencoder: z = V x + c, x_hat = U z + b, no activations, squared loss.

    Trained by backprop it can do no better than PCA with k components, and at its optimum it does
    as well: U V is the projection onto the span of the top-k eigenvectors of the scatter matrix (U
    itself need not be orthonormal; the biases take the role of PCA's mean).

    Args:
        in_features: D.
        k: code size, 1 <= k < D.
    Shapes: x [B, D] -> x_hat [B, D]; code [B, k].
    """

    def __init__(self, in_features: int, k: int) -> None:
        super().__init__()
        _check_sizes(in_features, k)
        self.in_features, self.k = in_features, k
        self.encoder = Linear(in_features, k)  # V
        self.decoder = Linear(k, in_features)  # U


class DeepAutoencoder(_Autoencoder):
    """A deep autoencoder: D -> hidden... -> k -> reversed(hidden)... -> D with ReLU hidden layers.

    The course's z = r(W2 r(W1 x)), x_hat = g(W4 r(W3 z)), with the code left linear by default
    (``code_activation="none"``: a ReLU code wastes the units it zeroes; "relu" gives the course's
    form) and g the identity or a sigmoid for data in [0, 1] (``output``).

    Args:
        in_features: D.
        k: code size, 1 <= k < D.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them); the default, one
            layer of 256, is the course's r(W2 r(W1 x)) shape.
        code_activation: none | relu | ... on the code.
        output: "none" or "sigmoid", g.
    Shapes: x [B, D] -> x_hat [B, D]; code [B, k].
    """

    def __init__(self, in_features: int, k: int, hidden: int | Sequence[int] = (256,),
                 code_activation: str = "none", output: str = "none") -> None:  # fmt: skip
        super().__init__()
        _check_sizes(in_features, k)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        widths = _widths(hidden)
        self.in_features, self.k = in_features, k
        self.encoder = _mlp([in_features, *widths, k], "relu", code_activation)
        self.decoder = _mlp([k, *reversed(widths), in_features], "relu", output)


class SparseAutoencoder(_Autoencoder):
    """An autoencoder whose loss adds an L1 penalty on the code: L(x, x_hat) + lam * sum_i |z_i|.

    The penalty (dlgpu's l1 kernel, averaged over the batch) drives most code units to exactly zero for
    any one input. Encoder: D -> hidden... -> k with ReLUs (the code too: non-negative sparse features);
    the decoder mirrors it.

    Args:
        in_features: D; k: code size (here it may exceed D: sparsity, not width, is the bottleneck).
        hidden: widths of hidden layers between input and code (() for one layer each way).
        lam: weight of the L1 penalty, >= 0.
    Shapes: x [B, D] -> x_hat [B, D]; code [B, k].
    """

    def __init__(self, in_features: int, k: int, hidden: int | Sequence[int] = (), lam: float = 1e-2) -> None:
        super().__init__()
        check_int(in_features, "in_features")
        check_int(k, "k")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
            raise ValueError(f"lam must be a number >= 0, got {lam!r}")
        widths = _widths(hidden)
        self.in_features, self.k, self.lam = in_features, k, float(lam)
        self.encoder = _mlp([in_features, *widths, k], "relu", "relu")
        self.decoder = _mlp([k, *reversed(widths), in_features], "relu", "none")

    def loss(self, x: Tensor) -> Tensor:
        """(1/B) [sum_n ||x_n - x_hat_n||^2 + lam * sum_{n,i} |z_ni|], a scalar."""
        z = self.encode(x)  # B,k
        return squared_error(self.decode(z), x) + F.l1_penalty(z, self.lam) / x.shape[0]


class DenoisingAutoencoder(_Autoencoder):
    """An autoencoder trained to reproduce x from a corrupted x~ = x + eps, eps ~ N(0, noise_std^2).

    ``loss(x)`` corrupts x itself (fresh noise from torch's generator on each call) and compares the
    reconstruction with the clean x; ``forward`` reconstructs whatever it is given.

    Args:
        in_features: D; k: code size < D; hidden: encoder hidden widths (decoder mirrors them).
        noise_std: standard deviation of the additive Gaussian noise, > 0.
    Shapes: x [B, D] -> x_hat [B, D]; code [B, k].
    """

    def __init__(self, in_features: int, k: int, hidden: int | Sequence[int] = (128,), noise_std: float = 0.2) -> None:
        super().__init__()
        _check_sizes(in_features, k)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std > 0:
            raise ValueError(f"noise_std must be a number > 0, got {noise_std!r}")
        widths = _widths(hidden)
        self.in_features, self.k, self.noise_std = in_features, k, float(noise_std)
        self.encoder = _mlp([in_features, *widths, k], "relu", "none")
        self.decoder = _mlp([k, *reversed(widths), in_features], "relu", "none")

    def corrupt(self, x: Tensor) -> Tensor:
        """x + eps, eps ~ N(0, noise_std^2), same shape as x."""
        return x + self.noise_std * torch.randn_like(x)

    def loss(self, x: Tensor) -> Tensor:
        """(1/B) sum_n ||x_n - g(h(x_n + eps_n))||^2, a scalar."""
        return squared_error(self(self.corrupt(x)), x)


class VAE(nn.Module):
    """Variational autoencoder: q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) from a decoder.

    Training maximises the ELBO  E_q[log p(x|z)] - KL(q(z|x) || p(z))  with the reparameterisation
    z = mu + sigma * eps, eps ~ N(0, I), so the gradient flows through the sample. With
    likelihood="bernoulli" (data in [0, 1]) the decoder gives logits and log p(x|z) is minus the binary
    cross-entropy (dlgpu's fused kernel on logits); with "gaussian" it is minus half the squared error
    (unit variance, constants dropped).

    Args:
        in_features: D; k: latent size; hidden: widths of the encoder trunk (decoder mirrors them).
        likelihood: "bernoulli" or "gaussian".
    Shapes: forward(x [B, D]) -> (x_hat [B, D], mu [B, k], logvar [B, k]); x_hat is the decoder's mean
    (sigmoid of the logits for bernoulli). In eval mode forward decodes z = mu (no sampling).
    """

    def __init__(self, in_features: int, k: int, hidden: int | Sequence[int] = (128,),
                 likelihood: str = "bernoulli") -> None:  # fmt: skip
        super().__init__()
        check_int(in_features, "in_features")
        check_int(k, "k")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        widths = _widths(hidden)
        self.in_features, self.k, self.likelihood = in_features, k, likelihood
        self.trunk = _mlp([in_features, *widths], "relu", "relu") if widths else nn.Identity()
        last = widths[-1] if widths else in_features
        self.mu = Linear(last, k)
        self.logvar = Linear(last, k)
        self.decoder = _mlp([k, *reversed(widths), in_features], "relu", "none")  # logits or means

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, D] -> (mu [B, k], logvar [B, k]) of q(z|x)."""
        _check_input(x, self.in_features)
        h = self.trunk(x)
        return self.mu(h), self.logvar(h)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from torch's generator; [B, k]."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def _mean(self, out: Tensor) -> Tensor:
        return F.sigmoid(out) if self.likelihood == "bernoulli" else out

    def decode(self, z: Tensor) -> Tensor:
        """z [B, k] -> the mean of p(x|z), [B, D]."""
        return self._mean(self.decoder(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x_hat, mu, logvar): the reconstruction first; z sampled in training, z = mu in eval."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def elbo(self, x: Tensor) -> Tensor:
        """The evidence lower bound per sample, averaged over the batch (one z sample each); a scalar."""
        mu, logvar = self.encode(x)  # B,k
        out = self.decoder(self.reparameterize(mu, logvar))  # B,D
        b = x.shape[0]
        if self.likelihood == "bernoulli":
            log_px = -F.binary_cross_entropy_with_logits(out, x, reduction="sum") / b
        else:
            log_px = -0.5 * squared_error(out, x)
        kl = -0.5 * torch.sum(1 + logvar - mu * mu - torch.exp(logvar)) / b  # KL(N(mu, sigma^2) || N(0, I))
        return log_px - kl

    def loss(self, x: Tensor) -> Tensor:
        """-ELBO, the quantity minimised; a scalar."""
        return -self.elbo(x)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n new samples: the decoder's mean at z ~ N(0, I); [n, D]."""
        p = self.mu.weight
        return self.decode(torch.randn(check_int(n, "n"), self.k, dtype=p.dtype, device=p.device))


class GAN(nn.Module):
    """Generative adversarial network: a generator G: z -> x and a discriminator D: x -> logit.

    The two objectives, minimised in alternation:

        discriminator: -log D(x) - log(1 - D(G(z)))     (real -> 1, fake -> 0; binary cross-entropy)
        generator:     -log D(G(z))                      (the non-saturating form: fool D)

    G: noise_dim -> hidden... (ReLU) -> data_dim with a sigmoid (data in [0, 1]); D: data_dim ->
    hidden... (leaky ReLU 0.2) -> 1 logit. ``forward(z)`` is G(z).

    Args:
        data_dim: D; noise_dim: size of z; hidden: widths of both networks' hidden layers.
        lr: learning rate of the two Adam optimizers ``train_step`` makes (betas 0.5, 0.999).
    Shapes: forward(z [B, noise_dim]) -> [B, D]; discriminator(x [B, D]) -> [B, 1].
    """

    def __init__(self, data_dim: int, noise_dim: int = 16, hidden: int | Sequence[int] = (128,),
                 lr: float = 2e-4) -> None:  # fmt: skip
        super().__init__()
        check_int(data_dim, "data_dim")
        check_int(noise_dim, "noise_dim")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        widths = _widths(hidden)
        self.data_dim, self.noise_dim, self.lr = data_dim, noise_dim, float(lr)
        self.generator = _mlp([noise_dim, *widths, data_dim], "relu", "sigmoid")
        d_layers = [
            Linear(a, b, activation="leaky_relu", negative_slope=0.2)
            for a, b in zip([data_dim, *widths[:-1]], widths)
        ]
        self.discriminator = Network(*d_layers, Linear(widths[-1] if widths else data_dim, 1), input_shape=(data_dim,))
        self._opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None

    def noise(self, n: int) -> Tensor:
        """z ~ N(0, I), [n, noise_dim], on the parameters' device and dtype."""
        p = next(self.generator.parameters())
        return torch.randn(check_int(n, "n"), self.noise_dim, dtype=p.dtype, device=p.device)

    def forward(self, z: Tensor) -> Tensor:
        """G(z): [B, noise_dim] -> [B, data_dim]."""
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"z must be a tensor of shape (B, {self.noise_dim}) (batch, noise_dim)")
        return self.generator(z)

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """BCE(D(real), 1) + BCE(D(fake), 0), mean over the batch; ``fake`` is detached (G stays put)."""
        _check_input(real, self.data_dim)
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())  # B,1
        return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip

    def generator_loss(self, fake: Tensor) -> Tensor:
        """BCE(D(fake), 1) = -log D(G(z)), mean over the batch (gradient flows into G through D)."""
        d_fake = self.discriminator(fake)  # B,1
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))

    def optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(generator's, discriminator's) Adam optimizers, made on first use."""
        if self._opts is None:
            betas = (0.5, 0.999)
            self._opts = (
                torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=betas),
            )
        return self._opts

    def train_step(self, real: Tensor) -> dict[str, float]:
        """One alternation on a batch of real data [B, D]: a discriminator step, then a generator step.

        Returns:
            {"d_loss": ..., "g_loss": ...}, the two objectives as they were before their steps.
        """
        _check_input(real, self.data_dim)
        opt_g, opt_d = self.optimizers()
        fake = self.generator(self.noise(real.shape[0]))  # B,D
        opt_d.zero_grad(set_to_none=True)
        d_loss = self.discriminator_loss(real, fake)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        g_loss = self.generator_loss(fake)
        g_loss.backward()  # also fills D's gradients; the next D step zeroes them first
        opt_g.step()
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n generated samples G(z), z ~ N(0, I); [n, data_dim]."""
        return self.generator(self.noise(n))
