"""Selections, seed pools and the samplers that walk them."""

import numpy as np
import pytest
import torch

from extensions import (HubnessError, SeedPools, ThresholdUnreachableError, compute_hubness, hubness_spectrum,
                        make_sampler, seed_latents, select_low_quality, select_threshold, select_top,
                        spectrum_ranks)
from reference import brute_knn


def test_selections_order_and_ties():
    m = np.array([3, 50, 0, 50, 1, 120, 0, 49])
    np.testing.assert_array_equal(hubness_spectrum(m), [5, 1, 3, 7, 0, 4, 2, 6])
    np.testing.assert_array_equal(spectrum_ranks(m), [5, 2, 7, 3, 6, 1, 8, 4])
    np.testing.assert_array_equal(select_threshold(m, 50), [5, 1, 3])
    np.testing.assert_array_equal(select_top(m, 2), [5, 1])
    np.testing.assert_array_equal(select_low_quality(m, 1), [2, 6, 4])
    np.testing.assert_array_equal(select_low_quality(m, 0), [2, 6])
    assert select_threshold(m, 121).size == 0


def test_selection_bad_inputs():
    m = np.arange(5)
    with pytest.raises(HubnessError, match="t >= 0"):
        select_threshold(m, -1)
    with pytest.raises(HubnessError, match="t_lq >= 0"):
        select_low_quality(m, -0.5)
    with pytest.raises(HubnessError, match="num <= pool size"):
        select_top(m, 6)
    with pytest.raises(HubnessError, match="positive integer"):
        select_top(m, 0)
    with pytest.raises(HubnessError, match="1-d"):
        select_threshold(m[None], 1)


def test_seed_latents_match_gen_images():
    z = seed_latents([0, 7, 123456], 16)
    for row, seed in zip(z, [0, 7, 123456]):
        np.testing.assert_array_equal(row, np.random.RandomState(seed).randn(1, 16)[0])


def test_seed_pools_continue_after_the_given_seeds():
    pools = SeedPools(8, seeds=[5, 3, 9], device="cpu")
    assert pools.pool_size == 3
    np.testing.assert_array_equal(pools.draw(0).seeds, [5, 3, 9])
    np.testing.assert_array_equal(pools.draw(1).seeds, [10, 11, 12])
    np.testing.assert_array_equal(pools.draw(2).seeds, [13, 14, 15])
    p = SeedPools(8, 4, start=100, transform=lambda z: 2 * z[:, :3], batch_size=3, device="cpu").draw(1)
    np.testing.assert_array_equal(p.seeds, [104, 105, 106, 107])
    assert p.latents.shape == (4, 3)
    torch.testing.assert_close(p.latents, 2 * p.z[:, :3])
    with pytest.raises(HubnessError, match="duplicates"):
        SeedPools(8, seeds=[1, 1])
    with pytest.raises(HubnessError, match="seeds must lie"):
        SeedPools(8, seeds=[-1])
    with pytest.raises(HubnessError, match=r"a pool of 8589934592 seeds is more than the 2\*\*32 seeds there are"):
        SeedPools(8, 2 ** 33)
    with pytest.raises(HubnessError, match=r"from seed 4294967290 needs seeds in \[0, 4294967295\]; start at a seed "
                                           r"in \[0, 4294967286\]"):
        SeedPools(8, 10, start=2 ** 32 - 6)


def gaussian_pools(pool_size=2000, dim=128, **kw):
    return SeedPools(dim, pool_size, device="cpu", **kw)


def test_random_and_truncation_samplers():
    pools = gaussian_pools(100, 16)
    rnd = make_sampler("random").sample(pools, 150)
    np.testing.assert_array_equal(rnd.seeds, np.arange(150))
    torch.testing.assert_close(rnd.latents, torch.from_numpy(seed_latents(range(150), 16)).float())
    assert rnd.m is None and len(rnd.records) == 2
    mean = torch.full((16,), 0.5)
    tr = make_sampler("truncation", psi=0.5, mean=mean).sample(pools, 150)
    torch.testing.assert_close(tr.latents, mean + 0.5 * (rnd.latents - mean))
    assert tr.sampler == {"sampler": "truncation", "psi": 0.5}
    with pytest.raises(HubnessError, match="mean latent"):
        make_sampler("truncation", psi=0.5)


def test_hubness_sampler_takes_top_of_one_pool_when_enough():
    pools = gaussian_pools()
    sel = make_sampler("hubness", k=5, t=20, device="cpu").sample(pools, 10)
    m = compute_hubness(pools.draw(0).latents, 5, device="cpu").m
    np.testing.assert_array_equal(sel.seeds, select_threshold(m, 20)[:10])
    np.testing.assert_array_equal(sel.m, m[sel.seeds])
    assert (sel.m >= 20).all() and np.all(np.diff(sel.m) <= 0)
    rec = sel.records[0]
    assert len(sel.records) == 1 and rec.chosen.sum() == 10
    np.testing.assert_array_equal(rec.m, m)
    assert rec.rank[sel.seeds].max() == 10
    assert sel.sampler == {"sampler": "hubness", "psi": 1.0, "k": 5, "include_self": False, "backend": "exact",
                           "t": 20.0}


def test_hubness_sampler_streams_pools_deterministically():
    pools = gaussian_pools(1000, 128)
    n_hubs = int((compute_hubness(pools.draw(0).latents, 5, device="cpu").m >= 30).sum())
    num = n_hubs + 5
    a = make_sampler("hubness", k=5, t=30, device="cpu").sample(pools, num)
    b = make_sampler("hubness", k=5, t=30, device="cpu").sample(gaussian_pools(1000, 128), num)
    assert len(a.seeds) == num and (a.m >= 30).all()
    assert len(a.records) >= 2 and a.pool_index[-1] >= 1
    np.testing.assert_array_equal(a.seeds, b.seeds)
    assert torch.equal(a.latents, b.latents)
    # all hubs of the first pool come first, highest m first
    assert (a.pool_index[:n_hubs] == 0).all() and np.all(np.diff(a.m[:n_hubs]) <= 0)


def test_top_per_pool_and_low_quality():
    pools = gaussian_pools(500, 64)
    top = make_sampler("hubness", top=7, device="cpu").sample(pools, 20)
    assert list(np.bincount(top.pool_index)) == [7, 7, 6]
    m0 = compute_hubness(pools.draw(0).latents, 5, device="cpu").m
    np.testing.assert_array_equal(top.seeds[:7], select_top(m0, 7))
    lq = make_sampler("hubness-lq", t_lq=0, device="cpu").sample(pools, 30)
    assert (lq.m == 0).all()
    np.testing.assert_array_equal(lq.seeds, select_low_quality(m0, 0)[:30])


def brute_hub_values(seeds, dim, k, include_self):
    """Hub values of the pool of ``seeds`` (float32 latents of gen_images.py's draw) by float64 brute force:
    the paper's count, or with ``include_self`` each latent's own +1 and k - 1 true neighbours per list."""
    z = np.concatenate([np.random.RandomState(s).randn(1, dim) for s in seeds]).astype(np.float32)
    idx, _ = brute_knn(z, k - 1 if include_self else k)
    return np.bincount(idx.ravel(), minlength=len(seeds)) + (1 if include_self else 0)


@pytest.mark.parametrize("name, params, num", [
    ("hubness", dict(t=15), 70),                        # 25 + 24 hubs, then the 21 largest of pool 2's 31
    ("hubness", dict(t=15, include_self=True), 70),
    ("hubness", dict(top=7), 20),                      # 7 + 7 + 6
    ("hubness-lq", dict(t_lq=1), 250),                 # 99 + 109, then 42 of pool 2's 117 (its 64 m = 0)
])
def test_each_pool_chooses_by_its_own_brute_force_hub_values(name, params, num):
    """Paper 4.4 over several pools: each pool's matches in the sampler's order (m descending, or ascending
    for low quality; ties by seed), pool after pool, the last one cut at ``num``."""
    pool_size, dim, k = 300, 32, 5
    sel = make_sampler(name, k=k, device="cpu", **params).sample(gaussian_pools(pool_size, dim), num)
    want_seeds, want_m = [], []
    for index in range(10):
        seeds = np.arange(index * pool_size, (index + 1) * pool_size)
        m = brute_hub_values(seeds, dim, k, params.get("include_self", False))
        if name == "hubness-lq":
            order = [i for i in sorted(range(pool_size), key=lambda i: (m[i], i)) if m[i] <= params["t_lq"]]
        else:
            order = [i for i in sorted(range(pool_size), key=lambda i: (-m[i], i)) if m[i] >= params.get("t", 0)]
            order = order[:params.get("top", pool_size)]
        order = order[:num - len(want_seeds)]
        want_seeds += [int(seeds[i]) for i in order]
        want_m += [int(m[i]) for i in order]
        np.testing.assert_array_equal(sel.records[index].m, m)
        if len(want_seeds) == num:
            break
    assert len(sel.records) == index + 1 >= 3
    np.testing.assert_array_equal(sel.seeds, want_seeds)
    np.testing.assert_array_equal(sel.m, want_m)
    np.testing.assert_array_equal(sel.pool_index, np.asarray(want_seeds) // pool_size)


def test_unreachable_threshold_stops_with_clear_error():
    pools = gaussian_pools(300, 32)
    with pytest.raises(ThresholdUnreachableError, match=r"collected 0 of 5 latents after 3 pool\(s\) of 300 "
                       r"\(m >= 10000, k = 5; largest m seen: \d+\); lower t"):
        make_sampler("hubness", t=10000, device="cpu").sample(pools, 5)
    largest = max(int(compute_hubness(pools.draw(i).latents, 5, device="cpu").m.max()) for i in range(3))
    with pytest.raises(ThresholdUnreachableError, match=f"largest m seen: {largest}\\)"):
        make_sampler("hubness", t=10000, device="cpu").sample(pools, 5)
    # some matches but too few within max_pools
    with pytest.raises(ThresholdUnreachableError, match="after 2 pool"):
        make_sampler("hubness", t=15, max_pools=2, device="cpu").sample(pools, 250)


def test_sampler_bad_inputs():
    with pytest.raises(HubnessError, match="unknown sampler 'best'"):
        make_sampler("best")
    with pytest.raises(HubnessError, match="t >= 0"):
        make_sampler("hubness", t=-1)
    with pytest.raises(HubnessError, match="k >= 1"):
        make_sampler("hubness", k=0)
    with pytest.raises(HubnessError, match="positive integer"):
        make_sampler("random").sample(gaussian_pools(10, 4), 0)
    with pytest.raises(HubnessError, match="k < n_samples"):
        make_sampler("hubness", k=10, t=1, device="cpu").sample(gaussian_pools(10, 4), 1)
