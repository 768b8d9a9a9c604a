"""Exact k-NN against brute force, reduced-precision screen against float32, blockwise against one-shot."""

import numpy as np
import pytest
import torch

from extensions import HubnessError, exact_knn, sqdist_blocks
from extensions.knn import approximate_knn, knn, measure_recall, rows_per_block
from reference import brute_knn, integer_latents


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_matches_brute_force_with_ties(precision, seed):
    x = integer_latents(400, 6, seed)
    res = exact_knn(x, 5, precision=precision, margin=2, device="cpu")
    idx, dist = brute_knn(x, 5)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))


def test_exact_matches_brute_force_with_duplicates():
    x = integer_latents(100, 4, 3)
    x = np.concatenate([x, x[:30]])  # exact duplicates: distance 0 ties across indices
    res = exact_knn(x, 3, precision="bf16", device="cpu")
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(x, 3)[0])


def test_exact_queries_against_database():
    db = integer_latents(300, 5, 4)
    q = integer_latents(50, 5, 5)
    res = exact_knn(db, 4, queries=q, device="cpu")
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(db, 4, q)[0])
    qi = np.arange(0, 300, 6)
    res = exact_knn(db, 4, queries=db[qi], query_indices=qi, device="cpu")
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(db, 4, db[qi], qi)[0])


@pytest.mark.parametrize("gpu_plan", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_query_searches_through_every_fallback_match_brute_force(monkeypatch, precision, gpu_plan):
    # ties everywhere and no margin: rows fail the screen, the wider margin on the same screen, float32
    from extensions import knn as knn_module
    monkeypatch.setattr(knn_module, "_gpu_plan", lambda device: gpu_plan)  # the CUDA plan, run on the CPU
    db = integer_latents(400, 3, 7, low=0, high=3)
    q = integer_latents(60, 3, 8, low=0, high=3)
    res = exact_knn(db, 5, queries=q, precision=precision, margin=0, device="cpu")
    assert res.info["fallback_rows"] > 0
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(db, 5, q)[0])
    qi = np.arange(0, 400, 7)
    res = exact_knn(db, 5, queries=db[qi], query_indices=qi, precision=precision, margin=0, device="cpu")
    assert res.info["fallback_rows"] > 0
    idx, dist = brute_knn(db, 5, db[qi], qi)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))


@pytest.mark.parametrize("shift", [0.0, 40.0])
def test_bf16_screen_equals_fp32(shift):
    # Gaussian latents like Z, and an anisotropic, off-centre cloud like a mapping network's W.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3000, 512, generator=g)
    if shift:
        x = x @ (torch.randn(512, 512, generator=g) / 30) + shift
    a = exact_knn(x, 5, precision="fp32", device="cpu")
    b = exact_knn(x, 5, precision="bf16", device="cpu")
    assert b.info["precision"] == "bfloat16"
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.distances, b.distances)


def test_bf16_screen_equals_fp32_when_certificates_fail():
    # margin 0 leaves almost no slack: most rows fail the certificate and are recomputed in full.
    x = torch.randn(600, 64, generator=torch.Generator().manual_seed(1))
    a = exact_knn(x, 5, precision="fp32", device="cpu")
    b = exact_knn(x, 5, precision="bf16", margin=0, device="cpu")
    assert b.info["fallback_rows"] > 0
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)


@pytest.mark.parametrize("gpu_plan", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_massive_ties_reach_full_rows_and_stay_exact(monkeypatch, precision, gpu_plan):
    # 8 distinct points repeated ~60 times: every boundary is a tie among dozens of latents
    from extensions import knn as knn_module
    monkeypatch.setattr(knn_module, "_gpu_plan", lambda device: gpu_plan)  # the CUDA plan, run on the CPU
    x = integer_latents(500, 3, 6, low=0, high=2)
    res = exact_knn(x, 5, precision=precision, margin=0, device="cpu")
    assert res.info["full_rows"] > 0
    idx, dist = brute_knn(x, 5)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))


def test_blockwise_equals_one_shot(monkeypatch):
    x = torch.randn(2500, 32, generator=torch.Generator().manual_seed(2))
    one_shot = exact_knn(x, 5, memory_budget_mb=1024, device="cpu")
    budget_mb = 0.05  # forces row blocks and column tiles
    sizes = []
    real_mm = torch.mm

    def spy(a, b, **kwargs):
        out = real_mm(a, b, **kwargs)
        sizes.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(torch, "mm", spy)
    blocked = exact_knn(x, 5, memory_budget_mb=budget_mb, device="cpu")
    monkeypatch.undo()
    assert len(sizes) > 10
    assert max(sizes) <= budget_mb * 2 ** 20
    assert torch.equal(one_shot.indices, blocked.indices)
    assert torch.equal(one_shot.distances, blocked.distances)


def test_block_planner_never_holds_n_by_n():
    n = 1_000_000
    rows = rows_per_block(n, 2, 512)
    assert rows * n * 2 <= 512 * 2 ** 20
    assert rows < n


def test_sqdist_blocks_equal_one_shot():
    x = torch.randn(700, 20, generator=torch.Generator().manual_seed(3))
    y = torch.randn(300, 20, generator=torch.Generator().manual_seed(4))
    full = torch.cat([b for _, _, b in sqdist_blocks(x, y, device="cpu")])
    blocks = list(sqdist_blocks(x, y, block_rows=64, device="cpu"))
    assert len(blocks) == 11
    assert torch.equal(torch.cat([b for _, _, b in blocks]), full)
    ref = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
    torch.testing.assert_close(full.double(), ref, rtol=1e-5, atol=1e-3)


def test_bad_inputs_raise_one_clear_error():
    x = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(HubnessError, match="k < n_samples"):
        exact_knn(x, 10)
    with pytest.raises(HubnessError, match="k >= 1"):
        exact_knn(x, 0)
    with pytest.raises(HubnessError, match="at least 2 latents"):
        exact_knn(x[:1], 1)
    with pytest.raises(HubnessError, match=r"shape \(n, d\)"):
        exact_knn(x[0], 1)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(HubnessError, match="NaN or inf in 1 row"):
        exact_knn(bad, 2)
    bad[3, 1] = np.inf
    with pytest.raises(HubnessError, match="NaN or inf"):
        exact_knn(bad, 2)
    with pytest.raises(HubnessError, match="precision"):
        exact_knn(x, 2, precision="fp8")
    with pytest.raises(HubnessError, match="memory_budget_mb > 0"):
        exact_knn(x, 2, memory_budget_mb=0)
    with pytest.raises(HubnessError, match="backend"):
        knn(x, 2, backend="faiss")


def test_approximate_recall_on_512d_gaussians():
    x = torch.randn(20000, 512, generator=torch.Generator().manual_seed(0))
    res = approximate_knn(x, 5, on_low_recall="warn", recall_sample=300)
    assert res.backend == "approx"
    assert res.recall >= 0.95
    # the reported recall is the measured one
    assert res.recall == pytest.approx(measure_recall(x, res.indices, sample=300), abs=1e-12)


def test_approximate_falls_back_to_exact_below_threshold(caplog):
    x = torch.randn(3000, 256, generator=torch.Generator().manual_seed(1))
    weak = dict(n_neighbors=6, n_iters=1, max_candidates=6)
    res = approximate_knn(x, 5, params=weak, recall_threshold=0.999)
    assert res.backend == "exact" and res.recall < 0.999
    assert "falling back to exact" in caplog.text
    assert torch.equal(res.indices, exact_knn(x, 5, device="cpu").indices)
    res = approximate_knn(x, 5, params=weak, recall_threshold=0.999, on_low_recall="warn")
    assert res.backend == "approx"


@pytest.mark.parametrize("shape,dim", [((300, 2200), 1), ((2200, 300), 0), ((517, 3008), 1), ((3000, 517), 0)])
def test_grouped_block_topk_equals_topk(shape, dim, monkeypatch):
    # The CUDA block top-k searches only the groups with the largest maxima; bfloat16 scores tie often,
    # and lengths that are not a multiple of the group size leave a tail.
    from extensions import knn as knn_module
    calls = []
    real = knn_module._block_topk_rows
    monkeypatch.setattr(knn_module, "_block_topk_rows", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(shape[0])
    s = (torch.randn(*shape, generator=g) * 4).round().to(torch.bfloat16)
    s[torch.rand(*shape, generator=g) < 0.01] = float("-inf")
    K = 17
    v, i = knn_module._block_topk(s, K, dim, grouped=True)
    assert calls  # the group search ran
    ref = torch.topk(s, K, dim=dim).values
    assert v.shape == ref.shape
    assert torch.equal(torch.sort(v.float(), dim).values, torch.sort(ref.float(), dim).values)
    assert torch.equal(s.gather(dim, i), v)
    assert bool((torch.sort(i, dim).values.diff(dim=dim) > 0).all())  # distinct positions


def test_auto_is_exact_and_ignores_approximate_options():
    x = integer_latents(400, 6, 8)
    res = knn(x, 5, backend="auto", device="cpu", recall_threshold=0.99, on_low_recall="warn", precision="bf16")
    assert res.backend == "exact" and res.recall is None
    idx, dist = brute_knn(x, 5)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))


@pytest.mark.parametrize("budget_mb", [512, 0.05])
def test_gpu_plan_on_the_cpu_equals_brute_force(monkeypatch, budget_mb):
    # The CUDA plan (full row blocks, grouped block top-k) run on the CPU: same neighbours and distances.
    from extensions import knn as knn_module
    monkeypatch.setattr(knn_module, "_gpu_plan", lambda device: True)
    x = integer_latents(2600, 6, 9)  # wide enough for the grouped top-k, many ties
    res = exact_knn(x, 5, precision="bf16", memory_budget_mb=budget_mb, device="cpu")
    idx, dist = brute_knn(x, 5)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3000, 64, generator=g) @ (torch.randn(64, 64, generator=g) / 8) + 5
    monkeypatch.undo()
    ref = exact_knn(w, 5, precision="fp32", device="cpu")
    monkeypatch.setattr(knn_module, "_gpu_plan", lambda device: True)
    got = exact_knn(w, 5, precision="bf16", memory_budget_mb=budget_mb, device="cpu")
    assert torch.equal(got.indices, ref.indices) and torch.equal(got.distances, ref.distances)


@pytest.mark.parametrize("budget_mb", [512, 0.05])
def test_gpu_plan_queries_on_the_cpu_equal_brute_force(monkeypatch, budget_mb):
    # Query rows against the pool (as one rank of several searches its share), under the CUDA plan.
    from extensions import knn as knn_module
    monkeypatch.setattr(knn_module, "_gpu_plan", lambda device: True)
    x = integer_latents(2600, 6, 10)
    qi = np.arange(700, 1900)
    res = exact_knn(x, 5, queries=x[qi], query_indices=qi, precision="bf16", memory_budget_mb=budget_mb,
                    device="cpu")
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(x, 5, x[qi], qi)[0])
    q = integer_latents(300, 6, 11)
    res = exact_knn(x, 5, queries=q, precision="bf16", memory_budget_mb=budget_mb, device="cpu")
    np.testing.assert_array_equal(res.indices.numpy(), brute_knn(x, 5, q)[0])
