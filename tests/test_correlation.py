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


def test_correlation_benchmark_reduced_matches_scipy_on_its_own_pool(stylegan_runtime, tmp_path):
    """The benchmark's W-space confidence correlation equals scipy's on hub values and confidences
    recomputed here from the same seeds."""
    import importlib.util

    import torch

    from extensions.digits import FeatureDetector, load_classifier, load_generator
    from extensions.hubness import compute_hubness
    from extensions.pools import seed_latents
    from tiny_networks import REPO_ROOT

    spec = importlib.util.spec_from_file_location("correlation_benchmark", REPO_ROOT / "benchmarks" / "correlation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = torch.get_num_threads()
    try:
        raw = bench.main(["--network", "digits", "--seeds", "1", "--pool-size", "240", "--resamples", "50",
                          "--threads", "1", "--out", str(tmp_path / "c.md")])
    finally:
        torch.set_num_threads(before)
    assert {(r["space"], r["score"]) for r in raw["correlations"]} == {(s, c) for s in "wz" for c in bench.SCORES}
    G = load_generator(device="cpu")
    z = torch.from_numpy(seed_latents(range(1_000_000, 1_000_240), G.z_dim)).float()
    with torch.no_grad():
        w = G.mapping(z, None)[:, 0]
        img = G.synthesis(G.mapping(z, None), noise_mode="const")
    detector = FeatureDetector(load_classifier(device="cpu"))
    with torch.no_grad():
        conf = detector.probabilities(detector(bench.to_uint8(img))).max(dim=1).values.numpy()
    m = compute_hubness(w, 5, device="cpu").m
    row = next(r for r in raw["correlations"] if (r["space"], r["score"]) == ("w", "confidence"))
    assert row["rho"] == pytest.approx(stats.spearmanr(m, conf).statistic, abs=1e-9)
    assert row["low"] <= row["rho"] <= row["high"] and row["n"] == 240
    hub = next(h for h in raw["hubness"] if h["space"] == "w")
    assert hub["max"] == m.max() and (tmp_path / "c.json").is_file()
