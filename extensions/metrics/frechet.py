"""Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}). The trace of the matrix square root is taken as
tr((S1^{1/2} S2 S1^{1/2})^{1/2}), whose argument is symmetric positive semi-definite: two symmetric
eigendecompositions, no complex arithmetic, and the value equals tr(sqrtm(S1 S2)) that stylegan3 and the
TTUR reference compute with ``scipy.linalg.sqrtm``.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import MetricError
from ._checks import as_features


def mean_cov(features, *, batch_rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased, 1/n) covariance of features, accumulated in float64 over row batches.

    The 1/n normalisation matches stylegan3's ``FeatureStats.get_mean_cov``.

    Parameters
    ----------
    features : array-like, shape (n, d)
    batch_rows : int
        Rows per accumulation step; bounds the float64 copy held at once.

    Returns
    -------
    mu : np.ndarray, shape (d,), float64
    sigma : np.ndarray, shape (d, d), float64
    """
    x = as_features(features, "features", torch.device("cpu"))
    n, d = x.shape
    total = torch.zeros(d, dtype=torch.float64)
    gram = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, n, max(1, int(batch_rows))):
        part = x[start:start + batch_rows].double()
        total += part.sum(0)
        gram += part.T @ part
    mu = total / n
    return mu.numpy(), (gram / n - torch.outer(mu, mu)).numpy()


def _check_stats(mu, sigma, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise MetricError(f"mean of the {name} features must have shape (d,), got {mu.shape}")
    if sigma.shape != (mu.size, mu.size):
        raise MetricError(f"covariance of the {name} features must have shape ({mu.size}, {mu.size}) to match "
                          f"its mean, got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise MetricError(f"statistics of the {name} features contain NaN or inf; recompute them")
    return mu, sigma


def _psd_sqrt(sym: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; eigenvalues below 0 (round-off) are clipped to 0."""
    vals, vecs = np.linalg.eigh((sym + sym.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^{1/2}) for symmetric PSD matrices of shape (d, d)."""
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    vals = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(vals, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Parameters
    ----------
    mu1, mu2 : array-like, shape (d,)
    sigma1, sigma2 : array-like, shape (d, d)
        Covariances (symmetric positive semi-definite).

    Returns
    -------
    float
        ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``, clipped at 0 against round-off.
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "first")
    mu2, sigma2 = _check_stats(mu2, sigma2, "second")
    if mu1.size != mu2.size:
        raise MetricError(f"the two feature sets have {mu1.size} and {mu2.size} dimensions; "
                          f"compute both with the same detector")
    mean_term = float(np.square(mu1 - mu2).sum())
    cov_term = float(np.trace(sigma1) + np.trace(sigma2)) - 2 * trace_sqrt_product(sigma1, sigma2)
    return max(0.0, mean_term + cov_term)


def frechet_distance_features(features1, features2) -> float:
    """Frechet distance between the Gaussian fits of two feature sets, shapes (n1, d) and (n2, d)."""
    return frechet_distance(*mean_cov(features1), *mean_cov(features2))


def real_subsets(real, num_real: int) -> tuple:
    """Two disjoint subsets of real features: rows [0, num_real) and [num_real, 2 num_real).

    Parameters
    ----------
    real : array-like, shape (n, d), n >= 2 * num_real
    num_real : int

    Returns
    -------
    tuple of two arrays, shape (num_real, d) each.
    """
    if isinstance(num_real, bool) or not isinstance(num_real, (int, np.integer)) or num_real < 2:
        raise MetricError(f"num_real must be an integer >= 2, got {num_real!r}")
    n = len(real)
    if n < 2 * num_real:
        raise MetricError(f"two disjoint subsets of {num_real} real images need {2 * num_real}, but there are only "
                          f"{n}; use a larger dataset or a smaller subset size")
    return real[:num_real], real[num_real:2 * num_real]


def frechet_distance_two_subsets(real, mu_gen, sigma_gen, num_real: int) -> dict:
    """The paper's Table 2 protocol: the generated statistics against two disjoint real subsets, and the two
    subsets against each other (the real-vs-real baseline that sampling noise alone reaches).

    Parameters
    ----------
    real : array-like, shape (n, d)
        Real features; the subsets are :func:`real_subsets` (rows 0 .. 2 num_real - 1, in order).
    mu_gen : array-like, shape (d,)
    sigma_gen : array-like, shape (d, d)
        Statistics of the generated features (1/n covariance, :func:`mean_cov`).
    num_real : int

    Returns
    -------
    dict with ``subset1``, ``subset2`` (FD of the generated images to each subset) and ``real_vs_real``.
    """
    a, b = (mean_cov(part) for part in real_subsets(real, num_real))
    return dict(subset1=frechet_distance(mu_gen, sigma_gen, *a), subset2=frechet_distance(mu_gen, sigma_gen, *b),
                real_vs_real=frechet_distance(*a, *b))
