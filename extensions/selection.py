"""Selections over hub values: threshold (high quality), top-N, low quality, and the full spectrum.

Every selection returns indices into the pool in a deterministic order: by hub value (descending for
high quality, ascending for low quality), ties by the lower index.
"""

from __future__ import annotations

import numpy as np

from ._checks import HubnessError, check_count, check_threshold


def _as_m(m) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim != 1:
        raise HubnessError(f"hub values must be a 1-d array, got shape {m.shape}")
    return m


def hubness_spectrum(m) -> np.ndarray:
    """All indices ordered by hub value, highest first (ties: lower index first), shape (n,)."""
    m = _as_m(m)
    return np.lexsort((np.arange(m.size), -m.astype(np.int64)))


def spectrum_ranks(m) -> np.ndarray:
    """Rank of each latent in the hubness spectrum, 1 = highest hub value, shape (n,)."""
    order = hubness_spectrum(m)
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(1, order.size + 1)
    return ranks


def select_threshold(m, t: float = 50) -> np.ndarray:
    """Indices with m >= t (the paper's high-quality latents), highest m first."""
    t = check_threshold(t)
    order = hubness_spectrum(m)
    return order[_as_m(m)[order] >= t]


def select_top(m, num: int) -> np.ndarray:
    """Indices of the ``num`` largest hub values (ties: lower index), highest first."""
    num = check_count(num)
    m = _as_m(m)
    if num > m.size:
        raise HubnessError(f"Expected num <= pool size, but pool size = {m.size}, num = {num}")
    return hubness_spectrum(m)[:num]


def select_low_quality(m, t_lq: float = 1) -> np.ndarray:
    """Indices with m <= t_lq (the paper's Algorithm 2, low-quality latents), lowest m first."""
    t_lq = check_threshold(t_lq, "t_lq")
    m = _as_m(m)
    order = np.lexsort((np.arange(m.size), m.astype(np.int64)))
    return order[m[order] <= t_lq]
