"""The numba block top-K kernels against torch.topk, and the exact search with them against the search
without them (torch.topk merges) and brute force."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from extensions import HubnessError, block_topk, exact_knn
from extensions import knn as knn_module
from reference import brute_knn, integer_latents

pytestmark = pytest.mark.skipif(not block_topk.available(torch.float32), reason="numba is not installed")


def scores(rows, cols, dtype, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: every list ends inside a run of equal scores
        s = torch.randint(-6, 7, (rows, cols), generator=g).to(torch.float32) / 4
    else:
        s = torch.randn(rows, cols, generator=g) * 30
    s[torch.rand(rows, cols, generator=g) < 0.01] = float("-inf")  # masked entries (own rows) are never kept
    return s.to(dtype)


def check_lists(best_s, best_i, s, offset, dim):
    """``best`` holds each line's K largest scores (as a multiset; -inf beyond the line's length), at
    positions that hold those scores."""
    K = best_s.shape[1]
    lines = s if dim == 1 else s.T
    padded = torch.cat([lines.float(), torch.full((lines.shape[0], K), float("-inf"))], 1)
    want = torch.topk(padded, K, dim=1).values
    got = best_s.float()
    assert torch.equal(got.sort(1, descending=True).values, want)
    pos = best_i - offset
    finite = torch.isfinite(got)
    assert bool(((pos >= 0) & (pos < lines.shape[1]))[finite].all())
    assert torch.equal(lines.float().gather(1, pos.clamp(0, lines.shape[1] - 1))[finite], got[finite])
    for row in range(0, len(pos), 37):  # distinct positions
        p = pos[row][finite[row]]
        assert len(torch.unique(p)) == len(p)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(300, 2000), (2000, 300), (40, 9), (5, 700), (700, 5), (1, 1)])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("K", [7, 300])  # 300: more than the groups of a row, the runs of a column
def test_merge_in_two_blocks_equals_topk_of_the_whole(dtype, shape, ties, K):
    s = scores(*shape, dtype, seed=shape[0] * 7 + shape[1], ties=ties)
    rows, cols = shape
    lists = {name: (torch.full((n, K), float("-inf"), dtype=dtype), torch.zeros((n, K), dtype=torch.int64))
             for name, n in (("rows", rows), ("cols", cols), ("both rows", rows), ("both cols", cols))}
    # merge_rows_, in two blocks of columns (blocks narrower than K: the last block of a search)
    half = cols // 2
    block_topk.merge_rows_(s[:, :half], 100, *lists["rows"])
    block_topk.merge_rows_(s[:, half:], 100 + half, *lists["rows"])
    check_lists(*lists["rows"], s, 100, 1)
    # merge_both_, in two blocks of rows
    half = rows // 2
    block_topk.merge_both_(s[:half], 100, *[t[:half] for t in lists["both rows"]], 7, *lists["both cols"])
    block_topk.merge_both_(s[half:], 100, *[t[half:] for t in lists["both rows"]], 7 + half, *lists["both cols"])
    check_lists(*lists["both rows"], s, 100, 1)
    check_lists(*lists["both cols"], s, 7, 0)


def test_rows_of_a_strided_view_and_values_of_any_sign():
    s = scores(64, 3000, torch.bfloat16, seed=3)[:, 500:2500]  # rows 1000 apart in a 3000-wide buffer
    s[:, ::5] = -s[:, ::5]
    s[3] = 0.0
    s[4, :] = -0.0
    best_s = torch.full((64, 6), float("-inf"), dtype=torch.bfloat16)
    best_i = torch.zeros((64, 6), dtype=torch.int64)
    block_topk.merge_rows_(s, 0, best_s, best_i)
    check_lists(best_s, best_i, s, 0, 1)


def test_bad_arguments_raise():
    s = torch.zeros(4, 8)
    with pytest.raises(ValueError, match="float64"):
        block_topk.merge_rows_(s.double(), 0, torch.zeros(4, 2, dtype=torch.float64),
                               torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="3 lists"):
        block_topk.merge_rows_(s, 0, torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="contiguous"):
        block_topk.merge_rows_(s, 0, torch.zeros(2, 4).T, torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="column lists"):
        block_topk.merge_both_(s, 0, torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.int64), 0, torch.zeros(7, 2),
                               torch.zeros(7, 2, dtype=torch.int64))


@pytest.mark.parametrize("dim, n", [(512, 3000), (64, 2500)])  # the triangle plan, the row plan
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_search_with_kernels_equals_search_with_topk(monkeypatch, dim, n, precision):
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(n, dim, generator=g) @ (torch.randn(dim, dim, generator=g) / 20) + 3
    qi = torch.arange(0, n, 7)
    runs = {}
    for kernels in (True, False):  # every size, or none
        monkeypatch.setattr(knn_module, "CPU_MERGES", "numba" if kernels else "torch.topk")
        runs[kernels] = (exact_knn(x, 5, precision=precision, device="cpu"),
                         exact_knn(x, 5, queries=x[qi], query_indices=qi, precision=precision, device="cpu"))
    for a, b in zip(runs[True], runs[False]):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)


@pytest.mark.parametrize("budget_mb", [512, 0.05])
def test_search_with_kernels_equals_brute_force_on_ties(monkeypatch, budget_mb):
    monkeypatch.setattr(knn_module, "CPU_MERGES", "numba")
    x = integer_latents(900, 300, 11)  # wide enough for the triangle plan; integer data full of ties
    res = exact_knn(x, 5, precision="bf16", device="cpu", memory_budget_mb=budget_mb)
    idx, dist = brute_knn(x, 5)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    np.testing.assert_array_equal(res.distances.numpy(), dist.astype(np.float32))


def test_kernels_work_where_numba_cannot_cache(tmp_path):
    # numba refuses cache=True when no cache location is writable (read-only install, no writable home):
    # a locator that never finds one makes that happen here; the module must still import and merge.
    (tmp_path / "no_locator.py").write_text(
        "class Never:\n    @classmethod\n    def from_function(cls, py_func, source_path):\n        return None\n")
    script = (
        "import torch\n"
        "from extensions import block_topk\n"
        "s = torch.randn(40, 700)\n"
        "best = torch.full((40, 5), float('-inf')), torch.zeros(40, 5, dtype=torch.int64)\n"
        "block_topk.merge_rows_(s, 0, *best)\n"
        "print(torch.equal(best[0].sort(1, descending=True).values, s.topk(5, 1).values))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="no_locator.Never",
               PYTHONPATH=os.pathsep.join([str(tmp_path), root]))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_auto_merges_load_the_kernels_once_they_pay(monkeypatch):
    monkeypatch.setattr(block_topk, "_loaded", False)   # a process that has not run them yet
    monkeypatch.setattr(knn_module, "_topk_work", 0)
    x = torch.randn(300, 300, generator=torch.Generator().manual_seed(3))  # wide: the triangle plan
    work = 2 * 300 * 300
    monkeypatch.setattr(knn_module, "CPU_KERNELS_MIN_SCORES", 2.5 * work)
    runs = [exact_knn(x, 5, device="cpu") for _ in range(4)]
    # torch.topk until its merges have cost what loading the kernels would, then the kernels
    assert [r.info["merges"] for r in runs] == ["torch.topk", "torch.topk", "numba", "numba"]
    assert block_topk.loaded()
    for r in runs[1:]:
        assert torch.equal(r.indices, runs[0].indices) and torch.equal(r.distances, runs[0].distances)
    # once loaded, a search far below the threshold uses them too; "torch.topk" still forces the other way
    assert exact_knn(x[:40], 5, device="cpu").info["merges"] == "numba"
    monkeypatch.setattr(knn_module, "CPU_MERGES", "torch.topk")
    assert exact_knn(x, 5, device="cpu").info["merges"] == "torch.topk"
    monkeypatch.setattr(knn_module, "CPU_MERGES", "fast")
    with pytest.raises(HubnessError, match="CPU_MERGES must be 'auto', 'numba' or 'torch.topk', got 'fast'"):
        exact_knn(x, 5, device="cpu")
