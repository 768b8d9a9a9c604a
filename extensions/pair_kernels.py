"""A CPU kernel for :func:`extensions.knn.pair_sqdist`: squared distances of chosen pairs in one pass over
each pair's two rows, where the torch computation gathers copies of both.

Bit-identical to the torch computation: the same float32 differences and squares, summed by the same
pairwise halving over the width zero-padded to a power of two (compiled without fast-math, so no operation
is reordered or fused). The tests compare the two on every kind of value.
"""

from __future__ import annotations

import numpy as np
import torch

from .block_topk import _kernel, numba

#: Pairs per task of the parallel loop (each task reuses one buffer).
_PAIRS = 256


def available() -> bool:
    """Whether the kernel can run here (numba importable)."""
    return numba is not None


if numba is not None:
    @_kernel
    def _pair_sqdist_kernel(xq, xd, rows, cols, width, out):
        dim = xq.shape[1]
        P = rows.shape[0]
        for task in numba.prange((P + _PAIRS - 1) // _PAIRS):
            buf = np.zeros(width, dtype=np.float32)  # entries from dim on stay 0: halving writes below width / 2
            for p in range(task * _PAIRS, min(P, task * _PAIRS + _PAIRS)):
                q, d = xq[rows[p]], xd[cols[p]]
                for j in range(dim):
                    t = q[j] - d[j]
                    buf[j] = t * t
                w = width
                while w > 1:
                    w //= 2
                    for j in range(w):
                        buf[j] += buf[j + w]
                out[p] = buf[0]


def pair_sqdist_(xq: torch.Tensor, xd: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 out: torch.Tensor) -> None:
    """``out[p] = |xq[rows[p]] - xd[cols[p]]|^2`` as :func:`extensions.knn.pair_sqdist` computes it.

    Parameters
    ----------
    xq : torch.Tensor, shape (m, d), float32, CPU, contiguous
    xd : torch.Tensor, shape (n, d), float32, CPU, contiguous
    rows, cols : torch.Tensor, shape (p,), int64
    out : torch.Tensor, shape (p,), float32, contiguous; written
    """
    width = 1 << max(0, (xq.shape[1] - 1).bit_length())
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    _pair_sqdist_kernel(xq.numpy(), xd.numpy(), rows.contiguous().numpy(), cols.contiguous().numpy(), width,
                        out.numpy())
