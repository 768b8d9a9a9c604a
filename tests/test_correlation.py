"""Spearman rank correlation and its bootstrap interval, against scipy on fixed inputs with ties."""

import numpy as np
import pytest
from scipy import stats

from extensions.metrics import MetricError
from extensions.metrics.correlation import average_ranks, spearman, spearman_bootstrap

# Hub-value-like integers (many ties) against scores with a tie of their own.
M = np.array([0, 3, 1, 1, 7, 0, 2, 5, 1, 0, 9, 2, 2, 4, 0, 1])
SCORE = np.array([0.2, 0.9, 0.4, 0.55, 0.95, 0.1, 0.4, 0.8, 0.3, 0.35, 0.7, 0.6, 0.4, 0.85, 0.05, 0.5])


def test_average_ranks_equal_scipy_rankdata_with_ties():
    assert np.array_equal(average_ranks(M), stats.rankdata(M, method="average"))
    assert np.array_equal(average_ranks(SCORE), stats.rankdata(SCORE, method="average"))


@pytest.mark.parametrize("x, y", [(M, SCORE), (M, -SCORE), (SCORE, M[::-1]),
                                  (np.random.default_rng(1).integers(0, 6, 500),
                                   np.random.default_rng(2).normal(size=500).round(1))])
def test_spearman_equals_scipy(x, y):
    expected = stats.spearmanr(x, y).statistic
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_scipy_values():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 8, 300)
    y = x + rng.normal(scale=3, size=300)
    got = spearman_bootstrap(x, y, resamples=200, confidence=0.9, seed=7)
    # The same resamples, each scored by scipy.
    draw = np.random.default_rng(7)
    values = []
    for _ in range(200):
        idx = draw.integers(0, 300, size=300)
        values.append(stats.spearmanr(x[idx], y[idx]).statistic)
    low, high = np.percentile(values, [5, 95])
    assert got.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.low < got.rho < got.high and (got.n, got.resamples, got.confidence) == (300, 200, 0.9)


def test_bad_inputs_are_typed_errors_that_quote_the_value():
    with pytest.raises(MetricError, match="constant"):
        spearman([1, 1, 1, 1], [1, 2, 3, 4])
    with pytest.raises(MetricError, match=r"non-finite .* index 2: nan"):
        spearman([1, 2, np.nan, 4], [1, 2, 3, 4])
    with pytest.raises(MetricError, match=r"\(3,\) and \(4,\)"):
        spearman([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(MetricError, match="confidence"):
        spearman_bootstrap(M, SCORE, confidence=1.5)
    with pytest.raises(MetricError, match="resamples"):
        spearman_bootstrap(M, SCORE, resamples=0)
