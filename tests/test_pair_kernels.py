"""The numba pair-distance kernel against the torch computation of pair_sqdist, bit for bit."""

import pytest
import torch

from extensions import pair_kernels
from extensions.knn import exact_knn, pair_sqdist
from extensions import knn as knn_module

pytestmark = pytest.mark.skipif(not pair_kernels.available(), reason="numba is not installed")


def both(xq, xd, rows, cols):
    plain = pair_sqdist(xq, xd, rows, cols)
    fast = pair_sqdist(xq, xd, rows, cols, kernel=True)
    return plain, fast


def assert_bitwise_equal(a, b):
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("dim", [1, 3, 64, 100, 512, 513])
@pytest.mark.parametrize("scale", [1.0, 1e-21, 1e19])  # normal, subnormal squares, squares beyond float32
def test_kernel_equals_torch_bit_for_bit(dim, scale):
    g = torch.Generator().manual_seed(dim)
    xq = torch.randn(70, dim, generator=g) * scale
    xd = torch.randn(90, dim, generator=g) * scale
    xd[5] = xq[3]                                     # a zero distance
    xd[6, ::2] = -xd[6, ::2]                          # signs of either kind
    xq[7] = 0.0
    xd[8] = -0.0
    rows = torch.randint(0, 70, (1000,), generator=g)
    cols = torch.randint(0, 90, (1000,), generator=g)
    rows[:3], cols[:3] = torch.tensor([3, 7, 7]), torch.tensor([5, 8, 5])
    plain, fast = both(xq, xd, rows, cols)
    assert_bitwise_equal(plain, fast)
    if scale == 1e19:
        assert bool(torch.isinf(fast).any())          # the overflow is the same inf, not a NaN
    if scale == 1e-21:
        assert bool(((fast > 0) & (fast < torch.finfo(torch.float32).tiny)).any())  # subnormal sums kept


def test_strided_inputs_and_no_pairs():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(50, 40, generator=g)
    xq, xd = base[:, ::2], base[::2, 1::2]            # non-contiguous views
    rows = torch.randint(0, 50, (300,), generator=g)
    cols = torch.randint(0, 25, (300,), generator=g)
    assert_bitwise_equal(*both(xq, xd, rows, cols))
    empty = torch.empty(0, dtype=torch.int64)
    assert_bitwise_equal(*both(xq, xd, empty, empty))


def test_search_with_kernels_equals_search_without(monkeypatch):
    x = torch.randn(1500, 300, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(knn_module, "CPU_MERGES", "torch.topk")
    plain = exact_knn(x, 5, device="cpu")
    calls = []
    real = pair_kernels.pair_sqdist_
    monkeypatch.setattr(pair_kernels, "pair_sqdist_", lambda *a: (calls.append(len(a[2])), real(*a)))
    monkeypatch.setattr(knn_module, "CPU_MERGES", "numba")
    fast = exact_knn(x, 5, device="cpu")
    assert calls and sum(calls) > 1500                # the certificate ran through the kernel
    assert torch.equal(plain.indices, fast.indices)
    assert torch.equal(plain.distances.view(torch.int32), fast.distances.view(torch.int32))
