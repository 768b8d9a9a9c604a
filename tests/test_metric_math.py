"""Metric math against independent references: closed forms, scipy's sqrtm and the prdc package."""

import numpy as np
import prdc
import pytest
import scipy.linalg
import torch

from extensions.metrics import (MetricError, ball_counts, density_coverage, frechet_distance,
                                frechet_distance_features, knn_radii, mean_cov, precision_recall)
from extensions.metrics import manifold


def random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


# ---------------------------------------------------------------------------------------------- Frechet

def test_fd_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(24), random_cov(rng, 24)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-9 * np.trace(sigma))


def test_fd_of_unit_gaussians_is_squared_mean_difference():
    rng = np.random.default_rng(1)
    d = 32
    mu = rng.standard_normal(d) * 3
    assert frechet_distance(np.zeros(d), np.eye(d), mu, np.eye(d)) == pytest.approx(float(mu @ mu), rel=1e-12)


def test_fd_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4, 16), rng.uniform(0.1, 4, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(a) - np.sqrt(b)).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("rank", [None, 5])
def test_fd_matches_the_sqrtm_formula(rank):
    # The TTUR / stylegan3 formula, with scipy's general (non-symmetric) matrix square root.
    rng = np.random.default_rng(3)
    d = 20
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_cov(rng, d, rank), random_cov(rng, d)
    root = scipy.linalg.sqrtm(s1 @ s2)
    expected = np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * np.real(root))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_fd_is_symmetric():
    rng = np.random.default_rng(4)
    s1, s2 = random_cov(rng, 12), random_cov(rng, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-10)


def test_mean_cov_matches_numpy_and_does_not_depend_on_batching():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((301, 9)).astype(np.float32) * 2 + 1
    mu, sigma = mean_cov(x)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    mu7, sigma7 = mean_cov(x, batch_rows=7)
    np.testing.assert_allclose(mu7, mu, rtol=1e-13)
    np.testing.assert_allclose(sigma7, sigma, rtol=1e-12, atol=1e-13)


def test_fd_of_features_from_shifted_gaussians_approaches_squared_shift():
    rng = np.random.default_rng(6)
    shift = np.full(4, 0.5)
    x = rng.standard_normal((40000, 4))
    y = rng.standard_normal((40000, 4)) + shift
    # Sampling error of the fitted statistics is O(d / sqrt(n)); |shift|^2 = 1.
    assert frechet_distance_features(x, y) == pytest.approx(1.0, abs=0.05)


def test_fd_rejects_mismatched_statistics():
    with pytest.raises(MetricError, match=r"\(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(MetricError, match="3 and 4 dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(MetricError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------- precision, recall, density

@pytest.mark.parametrize("seed,n_real,n_fake,d,k,offset", [(0, 250, 180, 16, 3, 0.0), (1, 160, 220, 48, 5, 0.0),
                                                           (2, 200, 200, 8, 3, 100.0)])
def test_prdc_equals_the_prdc_package(seed, n_real, n_fake, d, k, offset):
    rng = np.random.default_rng(seed)
    real = (rng.standard_normal((n_real, d)) + offset).astype(np.float32)
    fake = (rng.standard_normal((n_fake, d)) * 1.3 + 0.4 + offset).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, k)
    pr = precision_recall(real, fake, k, closed=False, device="cpu")
    dc = density_coverage(real, fake, k, closed=False, device="cpu")
    # Fractions of counts: equal, not merely close.
    assert pr.precision == pytest.approx(ref["precision"], abs=1e-12)
    assert pr.recall == pytest.approx(ref["recall"], abs=1e-12)
    assert dc.density == pytest.approx(ref["density"], abs=1e-12)
    assert dc.coverage == pytest.approx(ref["coverage"], abs=1e-12)
    # The two sets overlap only partly, so every value is informative.
    assert 0 < pr.precision < 1 and 0 < pr.recall < 1 and 0 < dc.coverage < 1


def test_closed_balls_count_boundary_points():
    # On a line: real points 0, 1, 2, 3 (k = 1 radius 1 each); a fake at 4 lies exactly on the boundary of
    # the ball around 3, a fake at 10 nowhere.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[4.0], [10.0]])
    assert precision_recall(real, fake, 1, closed=True, device="cpu").precision == 0.5
    assert precision_recall(real, fake, 1, closed=False, device="cpu").precision == 0.0
    assert density_coverage(real, fake, 1, closed=True, device="cpu").coverage == 0.25
    assert density_coverage(real, fake, 1, closed=False, device="cpu").coverage == 0.0


def test_identical_sets_have_full_precision_and_recall():
    x = np.random.default_rng(7).standard_normal((120, 10))
    pr = precision_recall(x, x.copy(), 3, device="cpu")
    assert (pr.precision, pr.recall) == (1.0, 1.0)
    assert density_coverage(x, x.copy(), 3, device="cpu").coverage == 1.0


def test_knn_radii_are_the_kth_other_neighbour():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((90, 6)).astype(np.float32)
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    for k in (1, 3):
        np.testing.assert_allclose(knn_radii(x, k, device="cpu").numpy(), np.sort(d2, 1)[:, k - 1], rtol=1e-5)


def test_chunked_results_equal_one_shot_results():
    rng = np.random.default_rng(9)
    real = rng.standard_normal((230, 24)).astype(np.float32)
    fake = (rng.standard_normal((170, 24)) * 0.9 + 0.2).astype(np.float32)
    one = (precision_recall(real, fake, 3, device="cpu", block_rows=10 ** 6),
           density_coverage(real, fake, 5, device="cpu", block_rows=10 ** 6))
    for chunk in (dict(block_rows=1), dict(block_rows=17), dict(memory_budget_mb=0.003)):
        assert precision_recall(real, fake, 3, device="cpu", **chunk) == one[0]
        assert density_coverage(real, fake, 5, device="cpu", **chunk) == one[1]
    radii = knn_radii(real, 3, device="cpu")
    full = ball_counts(fake, real, radii, device="cpu", block_rows=10 ** 6)
    part = ball_counts(fake, real, radii, device="cpu", block_rows=13)
    assert torch.equal(full.counts, part.counts) and torch.equal(full.centre_counts, part.centre_counts)


@pytest.mark.parametrize("closed", [True, False])
def test_ball_membership_is_exact_on_a_lattice_full_of_ties(closed):
    # Integer features: every distance is exact in float32, and many equal a radius exactly, so the
    # screen cannot settle them and the exact recheck decides.
    rng = np.random.default_rng(11)
    centres = rng.integers(-3, 4, size=(150, 5)).astype(np.float32)
    probes = rng.integers(-3, 4, size=(120, 5)).astype(np.float32)
    radii = knn_radii(centres, 4, device="cpu")
    d2 = ((probes[:, None, :].astype(np.float64) - centres[None, :, :]) ** 2).sum(-1)
    r = radii.numpy().astype(np.float64)[None, :]
    inside = d2 <= r if closed else d2 < r
    got = ball_counts(probes, centres, radii, closed=closed, device="cpu", block_rows=16)
    assert got.rechecked > 0
    np.testing.assert_array_equal(got.counts.numpy(), inside.sum(1))
    np.testing.assert_array_equal(got.centre_counts.numpy(), inside.sum(0))


def test_membership_blocks_respect_the_memory_budget(monkeypatch):
    sizes = []
    original = manifold.sqdist_blocks

    def recording(*args, **kwargs):
        for start, stop, block in original(*args, **kwargs):
            sizes.append(block.numel() * block.element_size())
            yield start, stop, block

    monkeypatch.setattr(manifold, "sqdist_blocks", recording)
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((600, 8)), rng.standard_normal((500, 8))
    budget_mb = 0.25
    precision_recall(real, fake, 3, memory_budget_mb=budget_mb, device="cpu")
    assert len(sizes) > 2
    assert max(sizes) <= budget_mb * 2 ** 20


def test_bad_features_raise_typed_errors():
    x = np.zeros((10, 4))
    with pytest.raises(MetricError, match="4 features per row but generated features have 5"):
        precision_recall(x, np.zeros((10, 5)), 3, device="cpu")
    with pytest.raises(MetricError, match="k = 10"):
        density_coverage(x, x, 10, device="cpu")
    bad = np.ones((10, 4))
    bad[2, 1] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        precision_recall(bad, x, 3, device="cpu")
    with pytest.raises(MetricError, match="shape"):
        precision_recall(np.zeros(10), x, 3, device="cpu")


def test_results_ignore_and_keep_the_callers_matmul_precision():
    rng = np.random.default_rng(12)
    real, fake = rng.standard_normal((200, 32)), rng.standard_normal((150, 32)) * 1.2
    strict = precision_recall(real, fake, 3, device="cpu"), density_coverage(real, fake, 5, device="cpu")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # allows bfloat16 GEMMs where the backend has them
    try:
        loose = precision_recall(real, fake, 3, device="cpu"), density_coverage(real, fake, 5, device="cpu")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert loose == strict
