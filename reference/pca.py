"""Principal component analysis in closed form: the linear-autoencoder baseline.

The course: a linear autoencoder z = V x, x_hat = U z with K < D hidden units can do no
better than PCA, whose optimal U has as columns the eigenvectors of the scatter matrix
with the K largest eigenvalues. Here, for x [N, D] with mean m:

    S = (x - m)^T (x - m)                     [D, D], the scatter matrix (no 1/N)
    S = Q diag(lambda) Q^T                    lambda_1 >= ... >= lambda_D
    components   = rows q_1^T .. q_k^T of Q^T [k, D]
    z     = (x - m) components^T              [N, k]   (encoder, V = components)
    x_hat = z components + m                  [N, D]   (decoder, U = components^T)

    error = (1/N) sum_n ||x_n - x_hat_n||^2 = (lambda_{k+1} + ... + lambda_D) / N

The course's S carries a 1/N, which scales the eigenvalues and leaves the eigenvectors
alone; explained_variance reports lambda / (N - 1), the unbiased sample variance along
each component (as sklearn's PCA does). The autoencoders are compared on ``error``.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_float, check_ndim, check_nonempty, check_shape


def _check_basis(mean: np.ndarray, components: np.ndarray) -> tuple[int, int]:
    """Return (k, D) after checking mean [D] and components [k, D]."""
    check_float(components, "components")
    check_ndim(components, 2, "components", "k, D")
    check_float(mean, "mean")
    check_shape(mean, (components.shape[1],), "mean", "D, components' second dimension")
    return int(components.shape[0]), int(components.shape[1])


def pca_fit(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a k-component PCA to the rows of x by eigendecomposition of the scatter matrix.

        m = (1/N) sum_n x_n,   S = (x - m)^T (x - m) = Q diag(lambda) Q^T  (np.linalg.eigh)

    Components are sorted by eigenvalue, largest first. An eigenvector's sign is arbitrary,
    so each component is flipped to make its largest-|.| entry positive: the same data
    always gives the same components. Eigenvalues that rounding pushes below 0 (rank-
    deficient data) are reported as 0.

    Args:
        x: [N, D] data, one sample per row, N >= 2.
        k: number of components, 1 <= k <= D.
    Returns:
        (mean [D], components [k, D] with orthonormal rows, explained_variance [k] =
        lambda_1..k / (N - 1)), all in x's dtype.
    """
    check_float(x, "x")
    check_ndim(x, 2, "x", "N, D")
    n, d = (int(s) for s in x.shape)
    if n < 2:
        raise ValueError(f"x must have at least 2 samples (rows) to estimate a variance, got shape {x.shape}")
    if d < 1:
        raise ValueError(f"x must have at least 1 feature (column), got shape {x.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int in [1, {d}], got {type(k).__name__}")
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, D={d}], got {k}")
    mean = x.mean(axis=0)  # D
    xc = x - mean  # N,D
    scatter = xc.T @ xc  # D,D
    lam, q = np.linalg.eigh(scatter)  # D; D,D: ascending, eigenvectors in columns
    lam = np.maximum(lam[::-1][:k], 0)  # k: largest first
    comp = np.ascontiguousarray(q[:, ::-1][:, :k].T)  # k,D
    peak = np.argmax(np.abs(comp), axis=1)  # k
    comp = comp * np.sign(comp[np.arange(k), peak])[:, None]  # k,D: largest-|.| entry positive
    explained_variance = lam / x.dtype.type(n - 1)  # k
    return mean.astype(x.dtype, copy=False), comp.astype(x.dtype, copy=False), explained_variance.astype(x.dtype)


def pca_encode(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """z = (x - m) components^T.

    Args:
        x: [N, D].
        mean: [D], from pca_fit.
        components: [k, D], from pca_fit.
    Returns:
        z: [N, k], the coordinates of the centred samples in the component basis.
    """
    _, d = _check_basis(mean, components)
    check_float(x, "x")
    check_shape(x, (None, d), "x", "N, D with D = components' second dimension")
    return (x - mean) @ components.T  # N,k


def pca_decode(z: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """x_hat = z components + m.

    Args:
        z: [N, k] codes.
        mean: [D], from pca_fit.
        components: [k, D], from pca_fit.
    Returns:
        x_hat: [N, D], the projection of x onto the affine subspace m + span(components).
    """
    k, _ = _check_basis(mean, components)
    check_float(z, "z")
    check_shape(z, (None, k), "z", "N, k with k = components' first dimension")
    return z @ components + mean  # N,D


def pca_reconstruction_error(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> float:
    """error = (1/N) sum_n ||x_n - x_hat_n||^2, x_hat = pca_decode(pca_encode(x)).

    The mean over samples of the squared Euclidean reconstruction error (summed over the D
    features, not averaged over them): the measure the autoencoders are compared on. For
    the data PCA was fitted on it equals the sum of the discarded eigenvalues of S over N.

    Args:
        x: [N, D].
        mean: [D], components: [k, D], from pca_fit.
    Returns:
        error as a Python float.
    """
    check_float(x, "x")
    check_nonempty(x, "x")
    x_hat = pca_decode(pca_encode(x, mean, components), mean, components)  # N,D
    r = x - x_hat  # N,D
    return float(np.mean(np.sum(r * r, axis=1)))
