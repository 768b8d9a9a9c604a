"""Inception-Score-style class balance of generated images under any classifier (the paper's Fig. 10 and
Table 5 read through the embedded digits classifier): ``exp(E_x KL(p(y|x) || p(y)))``.

It is large when each image is classified confidently (p(y|x) peaked) and the classes are balanced
(the marginal p(y) flat); with C classes it lies in [1, C].
"""

from __future__ import annotations

import numpy as np

from .errors import MetricError


def class_balance_score(probs) -> float:
    """``exp(mean_i KL(p_i || mean_j p_j))`` of class probabilities, on the whole set (one split).

    Parameters
    ----------
    probs : array-like, shape (n, C)
        Each row a probability vector (non-negative, summing to 1 within 1e-3), e.g. a softmax.

    Returns
    -------
    float in [1, C]

    Raises
    ------
    MetricError
        When the shape is wrong, a value is not finite or negative, or a row does not sum to 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise MetricError(f"class probabilities must have shape (n, C) with n >= 1, C >= 2, got {p.shape}")
    if not np.isfinite(p).all():
        raise MetricError(f"class probabilities hold {int((~np.isfinite(p)).sum())} non-finite value(s)")
    if (p < 0).any():
        raise MetricError(f"class probabilities must be non-negative, got {float(p.min())!r}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > 1e-3:
        raise MetricError(f"row {worst} of the class probabilities sums to {float(sums[worst])!r}, not 1; pass "
                          f"softmax outputs, not logits")
    marginal = p.mean(axis=0)
    # 0 log 0 = 0: a class an image surely is not contributes nothing (its probability may underflow to 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))
