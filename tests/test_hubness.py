"""Hub values under both counting conventions, and the statistics of their distribution."""

import numpy as np
import pytest
import torch

from extensions import HubnessError, compute_hubness, hub_values, hubness_stats
from reference import brute_knn, integer_latents


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 5])
def test_paper_convention_matches_brute_force(seed, k):
    x = integer_latents(500, 6, seed)
    m, nbrs = hub_values(x, k, return_neighbors=True, device="cpu")
    ref_nbrs = brute_knn(x, k)[0]
    np.testing.assert_array_equal(nbrs, ref_nbrs)
    np.testing.assert_array_equal(m, np.bincount(ref_nbrs.ravel(), minlength=len(x)))
    assert m.sum() == len(x) * k


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_convention_matches_brute_force(seed):
    x = integer_latents(500, 6, seed)
    k = 5
    m, nbrs = hub_values(x, k, include_self=True, return_neighbors=True, device="cpu")
    # each query is its own first neighbour, then its k-1 nearest others (ties: lower index)
    ref = np.concatenate([np.arange(len(x))[:, None], brute_knn(x, k - 1)[0]], 1)
    np.testing.assert_array_equal(nbrs, ref)
    np.testing.assert_array_equal(m, np.bincount(ref.ravel(), minlength=len(x)))
    assert m.min() >= 1 and m.sum() == len(x) * k


def test_reference_convention_equals_scikit_learn_kneighbors_graph():
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(3).standard_normal((2000, 64)).astype(np.float32)
    k = 5
    graph = NearestNeighbors(n_neighbors=k).fit(x).kneighbors_graph(x)
    expected = np.asarray(graph.sum(axis=0)).ravel().astype(np.int64)
    np.testing.assert_array_equal(hub_values(x, k, include_self=True, device="cpu"), expected)
    # and the paper's convention differs from it
    assert not np.array_equal(hub_values(x, k, device="cpu"), expected)


def test_gaussian_hub_values_are_right_skewed():
    # paper Fig. 2: in high dimension the k-occurrence distribution has a long right tail
    x = torch.randn(5000, 512, generator=torch.Generator().manual_seed(0))
    res = compute_hubness(x, 5, device="cpu")
    st = hubness_stats(res.m, 5, thresholds=(50,))
    assert st.skewness > 2
    assert st.max > 10 * 5
    assert st.antihub_share > 0.2
    assert np.median(res.m) < res.m.mean() == 5
    assert st.count_at_least[50] == int((res.m >= 50).sum()) > 0
    # low dimension: far less hubness
    low = hubness_stats(compute_hubness(x[:, :3], 5, device="cpu").m, 5)
    assert low.skewness < st.skewness / 3


def test_hubness_stats_values():
    m = np.array([0, 0, 1, 2, 12, 15])
    st = hubness_stats(m, k=5, hub_size=2)
    assert st.antihub_share == pytest.approx(2 / 6)
    assert st.hub_share == pytest.approx(2 / 6)
    assert st.max == 15
    c = m - m.mean()
    assert st.skewness == pytest.approx((c ** 3).mean() / (c ** 2).mean() ** 1.5)
    assert hubness_stats(np.full(4, 5), k=5).skewness == 0.0
    with pytest.raises(HubnessError, match="1-d"):
        hubness_stats(np.zeros((2, 2)), 5)


def test_hub_values_bad_inputs():
    x = np.random.default_rng(0).standard_normal((6, 4))
    for k in (6, 7):
        with pytest.raises(HubnessError, match=f"n_samples = 6, k = {k}"):
            hub_values(x, k)
    with pytest.raises(HubnessError, match="k >= 1"):
        hub_values(x, -1)
    with pytest.raises(HubnessError, match="integer"):
        hub_values(x, 2.5)
    with pytest.raises(HubnessError, match="at least 2 latents"):
        hub_values(x[:1], 1)
    with pytest.raises(HubnessError, match=r"shape \(n, d\)"):
        hub_values(x[None], 2)
    with pytest.raises(HubnessError, match="NaN or inf"):
        hub_values(np.where(x > 1, np.inf, x), 2)


def test_unsigned_byte_swapped_and_extended_arrays_are_searched_as_their_values():
    """The API takes what ``python -m extensions.hub_values`` takes: the same hub values as the float32 array."""
    x = np.random.default_rng(3).integers(0, 60000, size=(300, 6))
    want = compute_hubness(x.astype(np.float32), 5, device="cpu").m
    for dtype in (np.uint16, np.uint32, np.uint64, ">i4", ">f8", np.longdouble):
        got = compute_hubness(x.astype(dtype), 5, device="cpu").m
        np.testing.assert_array_equal(got, want, err_msg=str(dtype))
    bad = x.astype(np.longdouble)
    bad[7, 2] = np.nan
    with pytest.raises(HubnessError, match=r"NaN or inf in 1 row"):
        compute_hubness(bad, 5, device="cpu")


def test_extended_precision_beyond_float32_says_how_to_rescale():
    x = np.random.default_rng(4).standard_normal((50, 3)).astype(np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("np.longdouble is float64 here")
    with pytest.raises(HubnessError, match=r"beyond float32's range .*divide them by a power of ten"):
        compute_hubness(x * np.longdouble("1e400"), 5, device="cpu")
