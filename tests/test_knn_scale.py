"""k-NN and hub values at any float32 magnitude, against float64 brute force on the same float32 input."""

import numpy as np
import pytest
import torch

from extensions import HubnessError, compute_hubness, exact_knn, sqdist_blocks
from extensions.knn import approximate_knn, measure_recall
from reference import brute_knn, integer_latents

F32_MAX = float(np.finfo(np.float32).max)


def as_f32(d64):
    """float64 distances as float32 (inf beyond its range, subnormal or 0 below), without numpy's warning."""
    with np.errstate(over="ignore", under="ignore"):
        return d64.astype(np.float32)


def hub_counts(idx, n):
    return np.bincount(idx.ravel(), minlength=n)


def separated(d, rel=1e-5):
    """Whether consecutive brute-force distances (through the (k+1)-th) differ by more than float32
    rounding can blur, so that the float32 search and float64 brute force must agree."""
    return bool((np.diff(d, axis=1) > rel * d[:, 1:]).all())


def check_against_brute(x, k, res, queries=None, query_indices=None, exact_distances=False):
    idx, d = brute_knn(x, k, queries, query_indices)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    got = res.distances.numpy()
    if exact_distances:
        np.testing.assert_array_equal(got, as_f32(d))
    else:
        overflow = d > F32_MAX * (1 - 1e-5)
        assert np.isinf(got[overflow]).all()
        np.testing.assert_allclose(got[~overflow], d[~overflow], rtol=1e-5, atol=2.0 ** -148)


GAUSS = np.random.default_rng(5).standard_normal((300, 8))
SCALES = [1e-38, 1e-30, 1e-22, 1e-10, 1.0, 1e10, 1e19, 1e30, F32_MAX / np.abs(GAUSS).max()]


@pytest.mark.parametrize("scale", SCALES)
def test_exact_knn_at_every_magnitude(scale):
    x = (GAUSS * scale).astype(np.float32)  # 1e-38: mostly subnormal inputs; the last: the full float32 range
    k = 5
    assert separated(brute_knn(x, k + 1)[1])
    for precision in ("fp32", "bf16"):
        res = exact_knn(x, k, precision=precision, device="cpu")
        check_against_brute(x, k, res)
        assert res.info["fallback_rows"] == 0  # the screen certifies every row at any scale
    assert (res.info["scale_exponent"] == 0) == (scale in (1.0, 1e10))
    # queries against a database
    db, q = x[:200], x[200:]
    check_against_brute(db, k, exact_knn(db, k, queries=q, device="cpu"), q)
    qi = np.arange(0, 200, 7)
    check_against_brute(db, k, exact_knn(db, k, queries=db[qi], query_indices=qi, device="cpu"), db[qi], qi)


@pytest.mark.parametrize("exponent", [-149, -140, -100, -73, -30, 0, 30, 63, 100, 125])
def test_exact_ties_at_every_magnitude(exponent):
    # small integers times 2**e: every float32 step is exact, so ties are real ties at any scale
    # (-149: subnormal inputs only; 125: values up to 2.6e38)
    x = integer_latents(400, 6, exponent % 7) * np.float32(2.0 ** exponent)
    assert np.isfinite(x).all() and (x[x != 0].size > 0)
    for precision in ("fp32", "bf16"):
        res = exact_knn(x, 5, precision=precision, margin=2, device="cpu")
        check_against_brute(x, 5, res, exact_distances=True)


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("data", ["lattice 2**-120", "lattice 2**110", "gauss 1e-22", "gauss 1e19"])
def test_hub_values_at_every_magnitude(data, include_self):
    kind, scale = data.split()
    if kind == "lattice":  # exact ties at a power-of-two scale
        x = integer_latents(500, 6, 1) * np.float32(2.0 ** int(scale.split("**")[1]))
    else:
        x = (np.random.default_rng(6).standard_normal((500, 8)) * float(scale)).astype(np.float32)
        assert separated(brute_knn(x, 6)[1])
    k = 5
    res = compute_hubness(x, k, include_self=include_self, device="cpu")
    ref = brute_knn(x, k - include_self)[0]
    if include_self:
        ref = np.concatenate([np.arange(len(x))[:, None], ref], 1)
    np.testing.assert_array_equal(res.neighbors, ref)
    np.testing.assert_array_equal(res.m, hub_counts(ref, len(x)))


def test_one_huge_row_keeps_the_structure_of_the_others():
    x = GAUSS.astype(np.float32).copy()
    x[0] *= np.float32(1e19)
    res = exact_knn(x, 5, device="cpu")
    assert separated(brute_knn(x[1:], 6)[1])
    check_against_brute(x, 5, res)
    np.testing.assert_array_equal(compute_hubness(x, 5, device="cpu").m, hub_counts(brute_knn(x, 5)[0], len(x)))


def test_rows_spanning_the_whole_float32_range():
    # one row near float32's largest value, then groups at 10, 1e-29 and 1e-40 (subnormal), each off the
    # others' centres: at any one scale the small groups' squared differences underflow, so they are
    # searched again on their own
    g = np.random.default_rng(11).standard_normal((400, 8))
    x = np.empty_like(g, dtype=np.float32)
    x[0] = g[0] / np.abs(g[0]).max() * 3e38
    x[1:150] = g[1:150] + 10
    x[150:300] = (g[150:300] + 10) * 1e-30
    x[300:] = g[300:] * 1e-40  # about 70 subnormal steps: integer-like values, with exact ties
    k = 5
    res = exact_knn(x, k, device="cpu")
    assert res.info["tiny_rows"] > 0
    # rows searched again anyway are not first recomputed in full (only the huge row is)
    assert res.info["fallback_rows"] <= 1
    d = brute_knn(x, k + 1)[1]
    assert separated(d[1:300])
    check_against_brute(x, k, res)
    db, q, qi = x[::2], x[1::2], np.arange(0, 200, 3)
    check_against_brute(db, k, exact_knn(db, k, queries=q, device="cpu"), q)
    check_against_brute(db, k, exact_knn(db, k, queries=db[qi], query_indices=qi, device="cpu"), db[qi], qi)
    np.testing.assert_array_equal(compute_hubness(x, k, device="cpu").m, hub_counts(brute_knn(x, k)[0], len(x)))
    hub = compute_hubness(x, k, include_self=True, device="cpu")
    ref = np.concatenate([np.arange(len(x))[:, None], brute_knn(x, k - 1)[0]], 1)
    np.testing.assert_array_equal(hub.m, hub_counts(ref, len(x)))


def test_tiny_differences_between_duplicates_are_resolved_in_float64():
    # lattice points repeated ~25 times; where coordinate 0 is zero it holds distinct subnormal values,
    # so rows on the same point differ by squared distances near 1e-85, far below float32
    rng = np.random.default_rng(2)
    x = integer_latents(200, 3, 9, low=0, high=2)
    zero = x[:, 0] == 0
    x[zero, 0] = rng.integers(1, 60, zero.sum()) * np.float32(2.0 ** -149)
    assert np.unique(x, axis=0).shape[0] > 8
    res = exact_knn(x, 4, device="cpu")
    assert res.info["tiny_rows"] > 0
    check_against_brute(x, 4, res, exact_distances=True)
    np.testing.assert_array_equal(compute_hubness(x, 4, device="cpu").m, hub_counts(brute_knn(x, 4)[0], len(x)))


@pytest.mark.parametrize("offset, spread", [(1e6, 1.0), (1e30, 1e24), (1e-30, 1e-36)])
def test_large_common_offset(offset, spread):
    # offset + noise in float32 is a lattice of the offset's float32 step: exact ties, no cancellation allowed
    x = (offset + spread * np.random.default_rng(3).standard_normal((500, 16))).astype(np.float32)
    assert np.unique(x).size > 20
    res = exact_knn(x, 5, device="cpu")
    check_against_brute(x, 5, res, exact_distances=True)
    np.testing.assert_array_equal(compute_hubness(x, 5, include_self=True, device="cpu").m,
                                  hub_counts(np.concatenate([np.arange(500)[:, None], brute_knn(x, 4)[0]], 1), 500))


def test_constant_huge_coordinate_beside_small_ones():
    x = GAUSS.astype(np.float32) * np.float32(1e-30)
    x[:, 3] = 3e38  # adds nothing to any distance, but scaling it up would overflow
    assert separated(brute_knn(x, 6)[1])
    check_against_brute(x, 5, exact_knn(x, 5, device="cpu"))


@pytest.mark.parametrize("scale", [1e-22, 1e19])
def test_blockwise_and_bf16_equal_one_shot_fp32_at_scale(scale):
    x = torch.randn(2500, 32, generator=torch.Generator().manual_seed(2)) * scale
    one_shot = exact_knn(x, 5, precision="fp32", memory_budget_mb=1024, device="cpu")
    for kw in (dict(memory_budget_mb=0.05), dict(precision="bf16")):
        other = exact_knn(x, 5, device="cpu", **kw)
        assert torch.equal(one_shot.indices, other.indices)
        assert torch.equal(one_shot.distances, other.distances)


@pytest.mark.parametrize("scale", [1e-22, 1e19])
def test_approximate_recall_on_scaled_data(scale):
    g = np.random.default_rng(4).standard_normal((3000, 16)).astype(np.float32)
    x = g * np.float32(scale)
    k = 5
    res = approximate_knn(x, k, on_low_recall="warn", recall_sample=256)
    assert res.backend == "approx" and res.recall >= 0.95
    # the reported recall, recomputed from float64 brute force on measure_recall's query sample
    qi = np.sort(np.random.default_rng(0).choice(len(x), size=256, replace=False))
    truth = brute_knn(x, k, x[qi], qi)[0]
    found = res.indices.numpy()[qi]
    expected = sum(len(np.intersect1d(a, b)) for a, b in zip(found, truth)) / (256 * k)
    assert res.recall == pytest.approx(expected, abs=1e-12)
    # measure_recall itself on scaled data: a perfect graph, then one with a wrong last column
    full, d = brute_knn(x, k)
    assert measure_recall(x, full) == 1.0
    broken = full.copy()
    broken[:, -1] = (np.arange(len(x)) + 1) % len(x)
    hits = sum(len(np.intersect1d(broken[i], full[i])) for i in qi)
    assert hits < 256 * k
    assert measure_recall(x, broken) == pytest.approx(hits / (256 * k), abs=1e-12)
    # distances in the input's units, inf where float32 overflows
    same = res.indices.numpy() == full
    got, ref = res.distances.numpy()[same], d[same]
    overflow = ref > F32_MAX * (1 - 1e-5)
    assert np.isinf(got[overflow]).all()
    np.testing.assert_allclose(got[~overflow], ref[~overflow], rtol=1e-5, atol=2.0 ** -148)


@pytest.mark.parametrize("scale", [1e-22, 1e-20, 1e-10, 1e15, 1e17])
def test_sqdist_blocks_at_scale(scale):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(300, 20, generator=g, dtype=torch.float64).mul_(scale).float()
    y = torch.randn(200, 20, generator=g, dtype=torch.float64).mul_(scale).float()
    full = torch.cat([b for _, _, b in sqdist_blocks(x, y, device="cpu")])
    assert torch.equal(torch.cat([b for _, _, b in sqdist_blocks(x, y, block_rows=64, device="cpu")]), full)
    ref = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
    torch.testing.assert_close(full.double(), ref, rtol=1e-5, atol=max(1e-3 * scale ** 2, 2.0 ** -148))
    self_blocks = torch.cat([b for _, _, b in sqdist_blocks(x, device="cpu")])
    torch.testing.assert_close(self_blocks.double(), ((x.double()[:, None] - x.double()[None]) ** 2).sum(-1),
                               rtol=1e-5, atol=max(1e-3 * scale ** 2, 2.0 ** -148))


def test_sqdist_blocks_refuse_overflowing_distances():
    x = torch.randn(50, 20, generator=torch.Generator().manual_seed(1)) * 1e19
    with pytest.raises(HubnessError, match="beyond float32's largest value"):
        next(sqdist_blocks(x, device="cpu"))
    with pytest.raises(HubnessError, match="beyond float32's largest value"):
        next(sqdist_blocks(x[:10] / 1e19, x, device="cpu"))


def test_float64_input_outside_float32_range_is_a_clear_error():
    x = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(HubnessError, match=r"up to \d\.\d+e\+39 in magnitude, beyond float32's range"):
        exact_knn(x * 1e39, 3, device="cpu")
    with pytest.raises(HubnessError, match="below float32's normal range"):
        compute_hubness(x * 1e-50, 3, device="cpu")
    with pytest.raises(HubnessError, match="NaN or inf in 1 row"):
        exact_knn(np.where(np.arange(20)[:, None] == 3, np.inf, x), 3, device="cpu")
    # float64 data inside float32's range works at any magnitude
    tiny = x * 1e-30
    np.testing.assert_array_equal(exact_knn(tiny, 3, device="cpu").indices.numpy(),
                                  brute_knn(tiny.astype(np.float32), 3)[0])
