"""Reference PCA (closed form): SVD and torch second opinions, the error identity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlgpu.reference import pca as P
from dlgpu.testing import assert_close, randn


def _data(n, d, gen, dtype=np.float64):
    """Anisotropic data (well-separated variances per direction) with a non-zero mean."""
    scales = np.geomspace(3.0, 0.3, d)
    rot, _ = np.linalg.qr(randn((d, d), gen))
    return (randn((n, d), gen) * scales @ rot.T + randn((d,), gen, scale=2.0)).astype(dtype)


def _align_signs(a, b):
    """Flip each row of a to agree in sign with the same row of b."""
    return a * np.sign(np.sum(a * b, axis=1, keepdims=True))


def test_components_orthonormal_and_sorted(gen):
    n, d = 13, 7
    k = int(gen.integers(1, d + 1))
    x = _data(n, d, gen)
    mean, comp, var = P.pca_fit(x, k)
    assert mean.shape == (d,) and comp.shape == (k, d) and var.shape == (k,)
    assert_close(comp @ comp.T, np.eye(k), name="C C^T")
    assert np.all(np.diff(var) <= 0) and np.all(var > 0)
    assert_close(mean, x.mean(axis=0), name="mean")


def test_matches_svd_and_torch(gen):
    n, d = 17, 5
    k = int(gen.integers(1, d + 1))
    x = _data(n, d, gen)
    mean, comp, var = P.pca_fit(x, k)
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    assert_close(comp, _align_signs(vt[:k], comp), name="components vs svd")
    assert_close(var, s[:k] ** 2 / (n - 1), name="explained_variance vs svd")
    # torch: eigenvalues of the unbiased covariance (torch.cov divides by N - 1)
    cov = torch.cov(torch.tensor(x).T)
    evals, evecs = torch.linalg.eigh(cov)
    assert_close(var, evals.flip(0)[:k], name="explained_variance vs torch.cov")
    t_comp = evecs.flip(1)[:, :k].T.numpy()
    assert_close(comp, _align_signs(t_comp, comp), name="components vs torch eigh")


def test_deterministic_sign(gen):
    x = _data(11, 6, gen)
    _, comp, _ = P.pca_fit(x, 6)
    peak = comp[np.arange(6), np.argmax(np.abs(comp), axis=1)]
    assert np.all(peak > 0)
    # the same data in another order, or reflected through its mean, gives the same basis
    _, comp_perm, _ = P.pca_fit(x[gen.permutation(11)], 6)
    _, comp_refl, _ = P.pca_fit(2 * x.mean(axis=0) - x, 6)
    assert_close(comp_perm, comp, name="permuted rows")
    assert_close(comp_refl, comp, name="reflected data")


def test_reconstruction_error_is_discarded_eigenvalues(gen):
    n, d = 19, 7
    x = _data(n, d, gen)
    xc = x - x.mean(axis=0)
    lam = np.linalg.eigvalsh(xc.T @ xc)[::-1]  # descending eigenvalues of S
    for k in range(1, d):
        mean, comp, _ = P.pca_fit(x, k)
        err = P.pca_reconstruction_error(x, mean, comp)
        assert isinstance(err, float)
        assert_close(np.array(err), np.array(lam[k:].sum() / n), name=f"error at k={k}")
        # brute-force definition: mean over samples of the squared norm of the residual
        x_hat = P.pca_decode(P.pca_encode(x, mean, comp), mean, comp)
        assert_close(np.array(err), np.array(np.mean(np.linalg.norm(x - x_hat, axis=1) ** 2)), name="definition")


def test_pca_beats_other_subspaces(gen):
    # the course's claim: no k-dimensional linear code reconstructs better than PCA
    n, d, k = 23, 6, 2
    x = _data(n, d, gen)
    mean, comp, _ = P.pca_fit(x, k)
    best = P.pca_reconstruction_error(x, mean, comp)
    for _ in range(5):
        q, _ = np.linalg.qr(randn((d, k), gen))
        assert best < P.pca_reconstruction_error(x, mean, np.ascontiguousarray(q.T))
    # and the mean is the best centre: any other shift of the same subspace does worse
    assert best < P.pca_reconstruction_error(x, mean + randn((d,), gen, scale=0.1), comp)


def test_round_trip_exact_at_full_rank(gen):
    x = _data(9, 5, gen)
    mean, comp, _ = P.pca_fit(x, 5)
    z = P.pca_encode(x, mean, comp)
    assert z.shape == (9, 5)
    assert_close(P.pca_decode(z, mean, comp), x, name="decode(encode(x))")
    assert P.pca_reconstruction_error(x, mean, comp) < 1e-24 * float(np.sum(x * x))


def test_low_rank_structure_recovered(gen):
    n, d, r, sigma = 60, 9, 3, 1e-3
    latent = randn((n, r), gen, scale=2.0)
    basis = randn((r, d), gen)
    x = latent @ basis + randn((d,), gen) + sigma * gen.standard_normal((n, d))
    mean, comp, var = P.pca_fit(x, r)
    q, _ = np.linalg.qr(basis.T)  # D,r: orthonormal basis of the true subspace
    proj_true, proj_pca = q @ q.T, comp.T @ comp  # D,D
    assert np.linalg.norm(proj_pca - proj_true) < 1e-2  # subspace angle ~ sigma / signal
    err = P.pca_reconstruction_error(x, mean, comp)
    assert err < 2.0 * (d - r) * sigma**2  # only the noise outside the subspace is lost
    assert P.pca_reconstruction_error(x, *P.pca_fit(x, r - 1)[:2]) > 1e3 * err
    _, _, var_all = P.pca_fit(x, d)
    assert var_all[r - 1] > 1e4 * var_all[r]  # the spectrum drops from signal to noise at r
    assert np.all(var_all[r:] < 3 * sigma**2)


def test_float32_in_float32_out(gen):
    x = _data(8, 4, gen, dtype=np.float32)
    mean, comp, var = P.pca_fit(x, 2)
    assert mean.dtype == comp.dtype == var.dtype == np.float32
    z = P.pca_encode(x, mean, comp)
    assert z.dtype == np.float32 and P.pca_decode(z, mean, comp).dtype == np.float32
    ref = P.pca_fit(x.astype(np.float64), 2)
    np.testing.assert_allclose(comp, ref[1], rtol=1e-4, atol=1e-4)


def test_bad_input(gen):
    x = _data(6, 4, gen)
    mean, comp, _ = P.pca_fit(x, 2)
    with pytest.raises(ValueError, match="x must be 2-D"):
        P.pca_fit(randn((6,), gen), 1)
    with pytest.raises(ValueError, match="x must be 2-D"):
        P.pca_fit(randn((2, 3, 4), gen), 1)
    with pytest.raises(ValueError, match="x must have at least 2 samples"):
        P.pca_fit(randn((1, 4), gen), 1)
    for k in (0, 5, -1):
        with pytest.raises(ValueError, match=r"k must be in \[1, D=4\]"):
            P.pca_fit(x, k)
    with pytest.raises(TypeError, match="k must be an int"):
        P.pca_fit(x, 2.0)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        P.pca_fit(np.arange(12).reshape(6, 2), 1)
    with pytest.raises(ValueError, match="mean must have shape"):
        P.pca_encode(x, mean[:3], comp)
    with pytest.raises(ValueError, match="components must be 2-D"):
        P.pca_encode(x, mean, comp[0])
    with pytest.raises(ValueError, match="x must have shape"):
        P.pca_encode(x[:, :3], mean, comp)
    with pytest.raises(ValueError, match="z must have shape"):
        P.pca_decode(randn((6, 3), gen), mean, comp)
    with pytest.raises(ValueError, match="mean must have shape"):
        P.pca_reconstruction_error(x, randn((5,), gen), comp)
    with pytest.raises(ValueError, match="x must not be empty"):
        P.pca_reconstruction_error(x[:0], mean, comp)
