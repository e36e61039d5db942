"""dlgpu.models.autoencoders: the linear autoencoder trained by backprop reaches PCA's reconstruction error
(within 2%), the deep one beats PCA at the same k, and each extension does what the course says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.models import autoencoders as ae
from dlgpu.models.data import load_digits
from dlgpu.models.train import fit_autoencoder, reconstruction_error
from dlgpu.reference.pca import pca_fit, pca_reconstruction_error

K = 16


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits(flatten=True, scaling="unit")
    return d.x_train, d.x_test


def subset(x: torch.Tensor, n: int, gen: np.random.Generator) -> torch.Tensor:
    return x[torch.from_numpy(gen.choice(x.shape[0], n, replace=False))]


def pca_errors(train: torch.Tensor, *others: torch.Tensor, k: int = K) -> list[float]:
    mean, comp, _ = pca_fit(train.double().numpy(), k)
    return [pca_reconstruction_error(x.double().numpy(), mean, comp) for x in (train, *others)]


def test_linear_autoencoder_reaches_pca(digits, seed: int, gen: np.random.Generator) -> None:
    x = subset(digits[0], 400, gen)
    (pca,) = pca_errors(x)
    torch.manual_seed(seed)
    model = ae.LinearAutoencoder(64, K)
    # full-batch L-BFGS: 12 steps (~260 evaluations) land within ~1% of PCA for any subset and init
    hist = fit_autoencoder(model, x, epochs=12, optimizer="lbfgs", lr=1.0, progress=False, log=None)
    err = reconstruction_error(model, x)
    assert err == pytest.approx(hist["error"][-1])
    assert err <= 1.02 * pca, f"linear AE {err:.4f} vs PCA {pca:.4f}"
    assert err >= pca * (1 - 1e-4), "nothing linear can beat PCA on the data it was fitted to"
    assert hist["error"][0] > hist["error"][-1]


def test_deep_autoencoder_beats_pca(digits, seed: int, gen: np.random.Generator) -> None:
    x_train, x_test = subset(digits[0], 400, gen), digits[1]
    pca_train, pca_test = pca_errors(x_train, x_test)
    torch.manual_seed(seed)
    model = ae.DeepAutoencoder(64, K, hidden=(256,))
    # 6 L-BFGS steps: ~0.6-0.8x PCA's error on the training subset, ~0.8-0.9x on the held-out digits
    fit_autoencoder(model, x_train, epochs=6, optimizer="lbfgs", lr=1.0, progress=False, log=None)
    train_err, test_err = reconstruction_error(model, x_train), reconstruction_error(model, x_test)
    assert train_err < pca_train, f"deep AE {train_err:.4f} vs PCA {pca_train:.4f} (train)"
    assert test_err < pca_test, f"deep AE {test_err:.4f} vs PCA {pca_test:.4f} (held out)"


def test_forward_returns_reconstruction_and_code_sizes(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    d, k = 23, 5
    x = torch.from_numpy(gen.random((6, d))).float()
    models = [ae.LinearAutoencoder(d, k), ae.DeepAutoencoder(d, k, hidden=(17, 9), output="sigmoid"),
              ae.SparseAutoencoder(d, 31, hidden=11), ae.DenoisingAutoencoder(d, k, hidden=())]  # fmt: skip
    for m in models:
        assert m(x).shape == (6, d)
        assert m.encode(x).shape == (6, m.k)
        m.loss(x).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    sig = models[1](x).detach()
    assert float(sig.min()) >= 0 and float(sig.max()) <= 1


def test_sparse_loss_adds_l1_of_code_and_sparsifies(digits, seed: int, gen: np.random.Generator) -> None:
    x = subset(digits[0], 300, gen)
    torch.manual_seed(seed)
    m = ae.SparseAutoencoder(64, 32, lam=0.05)
    z = m.encode(x)
    expected = ((m.decode(z) - x) ** 2).sum(1).mean() + 0.05 * z.abs().sum() / x.shape[0]
    torch.testing.assert_close(m.loss(x), expected, rtol=1e-5, atol=1e-6)

    def zero_fraction(lam: float) -> float:
        torch.manual_seed(seed)
        model = ae.SparseAutoencoder(64, 32, lam=lam)
        fit_autoencoder(model, x, epochs=25, batch_size=300, lr=1e-2, progress=False, log=None)
        with torch.no_grad():
            return float((model.encode(x) == 0).float().mean())

    assert zero_fraction(0.5) > zero_fraction(0.0) + 0.1


def test_denoising_loss_reconstructs_clean_input(seed: int, gen: np.random.Generator) -> None:
    torch.manual_seed(seed)
    m = ae.DenoisingAutoencoder(19, 4, hidden=(13,), noise_std=0.3)
    x = torch.from_numpy(gen.random((8, 19))).float()
    torch.manual_seed(seed + 1)
    loss = m.loss(x)
    torch.manual_seed(seed + 1)
    noisy = x + 0.3 * torch.randn_like(x)
    torch.testing.assert_close(loss, ((m(noisy) - x) ** 2).sum(1).mean(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loss, ((m(x) - x) ** 2).sum(1).mean())  # the noise is really applied


def test_vae_elbo_increases_with_training(digits, seed: int, gen: np.random.Generator) -> None:
    x = subset(digits[0], 256, gen)
    torch.manual_seed(seed)
    vae = ae.VAE(64, 6, hidden=(48,))

    def elbo() -> float:
        torch.manual_seed(12345)  # the same eps draws before and after: a paired comparison
        with torch.no_grad():
            return float(np.mean([float(vae.elbo(x)) for _ in range(4)]))

    before = elbo()
    hist = fit_autoencoder(vae, x, epochs=30, batch_size=64, lr=3e-3, seed=seed, progress=False, log=None)
    after = elbo()
    assert after > before + 5, f"ELBO {before:.2f} -> {after:.2f}"
    assert hist["loss"][-1] < hist["loss"][0]
    with torch.no_grad():
        x_hat, mu, logvar = vae(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (256, 6)
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1
    vae.eval()
    assert torch.equal(vae(x)[0], vae(x)[0])  # eval decodes the mean: deterministic
    assert vae.sample(5).shape == (5, 64)
    g = ae.VAE(10, 3, hidden=(), likelihood="gaussian")
    assert torch.isfinite(g.loss(torch.from_numpy(gen.standard_normal((4, 10))).float()))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_elbo_is_the_log_likelihood_minus_the_kl(likelihood: str, seed: int, gen: np.random.Generator) -> None:
    """elbo() against torch.distributions on the same noise: E_q log p(x|z) (one sample) - KL(q || N(0, I)),
    averaged over the batch; the gaussian likelihood has unit variance and drops its constant."""
    from torch.distributions import Bernoulli, Normal, kl_divergence

    torch.manual_seed(seed)
    vae = ae.VAE(10, 3, hidden=(8,), likelihood=likelihood).double()
    with torch.no_grad():
        vae.logvar.bias.add_(torch.tensor([-1.0, 0.5, 1.5], dtype=torch.float64))  # sigma far from 1
    x = torch.from_numpy(gen.uniform(0.0, 1.0, (5, 10)))
    torch.manual_seed(seed + 1)
    got = vae.elbo(x)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        q = Normal(mu, logvar.exp().sqrt())
        torch.manual_seed(seed + 1)
        z = mu + q.stddev * torch.randn(mu.shape, dtype=mu.dtype)  # the draw elbo() made
        out = vae.decoder(z)
        if likelihood == "bernoulli":
            log_px = Bernoulli(logits=out, validate_args=False).log_prob(x).sum(1)
        else:
            log_px = Normal(out, 1.0).log_prob(x).sum(1) + 0.5 * 10 * np.log(2 * np.pi)
        kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    assert kl.mean() > 0.1  # the KL term matters at this point
    torch.testing.assert_close(got, (log_px - kl).mean(), rtol=1e-6, atol=1e-8)
    torch.manual_seed(seed + 1)
    torch.testing.assert_close(vae.loss(x), -got)


def test_gan_train_step_changes_both_networks(digits, seed: int, gen: np.random.Generator) -> None:
    x = subset(digits[0], 32, gen)
    torch.manual_seed(seed)
    gan = ae.GAN(64, noise_dim=8, hidden=(32,), lr=1e-3)
    g0 = [p.detach().clone() for p in gan.generator.parameters()]
    d0 = [p.detach().clone() for p in gan.discriminator.parameters()]
    out = gan.train_step(x)
    assert set(out) == {"d_loss", "g_loss"} and all(np.isfinite(v) for v in out.values())
    assert all(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, gan.discriminator.parameters()))
    # the discriminator's objective leaves the generator alone (fake is detached)
    gan.zero_grad(set_to_none=True)
    gan.discriminator_loss(x, gan(gan.noise(32))).backward()
    assert all(p.grad is None for p in gan.generator.parameters())
    assert gan.sample(3).shape == (3, 64)
    # a few steps: the discriminator learns to separate real digits from early fakes
    for _ in range(15):
        gan.train_step(x)
    with torch.no_grad():
        assert float(gan.discriminator(x).mean()) > float(gan.discriminator(gan.sample(32)).mean())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="k must be smaller than in_features"):
        ae.LinearAutoencoder(8, 8)
    with pytest.raises(TypeError, match="k must be an int"):
        ae.DeepAutoencoder(8, 2.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8\)"):
        ae.LinearAutoencoder(8, 3)(torch.ones(2, 9))
    with pytest.raises(ValueError, match="output must be one of"):
        ae.DeepAutoencoder(8, 3, output="tanh")
    with pytest.raises(ValueError, match="lam must be a number >= 0"):
        ae.SparseAutoencoder(8, 3, lam=-1.0)
    with pytest.raises(ValueError, match="noise_std must be a number > 0"):
        ae.DenoisingAutoencoder(8, 3, noise_std=0)
    with pytest.raises(ValueError, match="likelihood must be"):
        ae.VAE(8, 3, likelihood="poisson")
    with pytest.raises(ValueError, match=r"z must be a tensor of shape \(B, 4\)"):
        ae.GAN(8, noise_dim=4)(torch.ones(2, 5))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit_autoencoder(ae.LinearAutoencoder(8, 3), torch.ones(4, 8), optimizer="rmsprop", log=None)
