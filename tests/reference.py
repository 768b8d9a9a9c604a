"""Independent reference implementations the tests compare the engine with."""

import numpy as np


def brute_knn(x, k, queries=None, query_indices=None):
    """numpy float64 brute force, ties by lower index."""
    x = np.asarray(x, dtype=np.float64)
    q = x if queries is None else np.asarray(queries, dtype=np.float64)
    d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    own = np.arange(len(x)) if queries is None else query_indices
    if own is not None:
        d[np.arange(len(q)), own] = np.inf
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


def integer_latents(n, d, seed, low=-2, high=3):
    # Small integers: float32 arithmetic is exact, so ties are real ties and every path must agree.
    return np.random.default_rng(seed).integers(low, high, size=(n, d)).astype(np.float32)
