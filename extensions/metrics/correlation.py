"""Spearman rank correlation with a percentile-bootstrap interval: how strongly a per-image score
follows the hub value m over a pool (the paper's Conjecture 3.2, image by image).

Ranks are average ranks (ties share the mean of the positions they span, as
``scipy.stats.rankdata(method='average')``), and Spearman's rho is the Pearson correlation of the two
rank vectors, as ``scipy.stats.spearmanr``. Hub values are small integers with many ties, so the
ranking is done by counting: values are coded once by ``np.unique``, and each bootstrap resample ranks
its codes with one ``bincount`` and a cumulative sum (O(n) per resample, no sort).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import MetricError


@dataclass
class Correlation:
    """Spearman's rho of a sample and its bootstrap interval.

    Attributes
    ----------
    rho : float
        Spearman's rank correlation of the whole sample.
    low, high : float
        Percentile-bootstrap interval of rho (``confidence`` central mass of the resampled values).
    n : int
        Pairs in the sample.
    resamples : int
        Bootstrap resamples.
    confidence : float
    """

    rho: float
    low: float
    high: float
    n: int
    resamples: int
    confidence: float

    def as_dict(self) -> dict:
        return dict(rho=self.rho, low=self.low, high=self.high, n=self.n, resamples=self.resamples,
                    confidence=self.confidence)


def _check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise MetricError(f"x and y must be 1-d arrays of the same length, got shapes {x.shape} and {y.shape}")
    if x.size < 3:
        raise MetricError(f"a rank correlation needs at least 3 pairs, got {x.size}")
    for name, v in (("x", x), ("y", y)):
        bad = ~np.isfinite(v)
        if bad.any():
            raise MetricError(f"{name} holds {int(bad.sum())} non-finite value(s) (first at index "
                              f"{int(np.flatnonzero(bad)[0])}: {float(v[bad][0])!r}); score only finite images")
    return x, y


def _codes(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense integer codes (n,) of ``v`` in sorted order of the values, and the number of distinct values."""
    uniq, codes = np.unique(v, return_inverse=True)
    return codes.reshape(-1), len(uniq)


def _ranks_of_codes(codes: np.ndarray, levels: int) -> np.ndarray:
    """Average ranks (1-based, float64) of integer codes in [0, levels)."""
    counts = np.bincount(codes, minlength=levels)
    # Values with code j occupy positions cum[j] - counts[j] + 1 .. cum[j]; their mean rank is the midpoint.
    mid = np.cumsum(counts) - (counts - 1) / 2.0
    return mid[codes]


def average_ranks(v) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of a 1-d array, shape (n,), float64."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1:
        raise MetricError(f"ranks need a 1-d array, got shape {v.shape}")
    codes, levels = _codes(v)
    return _ranks_of_codes(codes, levels)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman's rank correlation of paired samples x, y (n,), average ranks for ties.

    Raises
    ------
    MetricError
        When the shapes differ, n < 3, a value is not finite, or either sample is constant (rho undefined).
    """
    x, y = _check_pair(x, y)
    for name, v in (("x", x), ("y", y)):
        if np.all(v == v[0]):
            raise MetricError(f"{name} is constant ({float(v[0])!r} everywhere): its rank correlation is undefined")
    return _pearson(average_ranks(x), average_ranks(y))


def spearman_bootstrap(x, y, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Correlation:
    """Spearman's rho of x, y (n,) and a percentile-bootstrap interval from resampling the pairs.

    Parameters
    ----------
    x, y : array-like, shape (n,)
    resamples : int
        Bootstrap resamples (pairs drawn with replacement, n per resample).
    confidence : float
        Central mass of the interval, in (0, 1).
    seed : int
        Seed of the resampling (``np.random.default_rng``).

    Returns
    -------
    Correlation
        Resamples in which a side is constant (possible only for tiny n) are left out of the interval.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise MetricError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise MetricError(f"confidence must lie in (0, 1), got {confidence!r}")
    rho = spearman(x, y)
    x, y = _check_pair(x, y)
    cx, lx = _codes(x)
    cy, ly = _codes(y)
    rng = np.random.default_rng(seed)
    n = x.size
    values = np.empty(int(resamples))
    for b in range(int(resamples)):
        idx = rng.integers(0, n, size=n)
        values[b] = _pearson(_ranks_of_codes(cx[idx], lx), _ranks_of_codes(cy[idx], ly))
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise MetricError(f"every one of {resamples} bootstrap resamples of {n} pairs was constant on one side; "
                          f"use more pairs")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Correlation(rho=rho, low=float(low), high=float(high), n=int(n), resamples=int(resamples),
                       confidence=float(confidence))
