"""k-nearest-neighbour search over latents, squared Euclidean distance.

Two backends:

* ``exact``: blocked GEMM + top-k in torch, on CPU or CUDA. Memory is bounded by a budget in MiB that
  fixes how many query rows (and, for very large pools, database columns) one block holds. The GEMM may
  run in bfloat16 as a *screen*: every screened distance carries a rigorous rounding-error bound, the
  candidates whose bounds overlap the k-th neighbour are re-ranked with float32 distances computed from
  differences, and a row whose certificate fails is recomputed in full. The result is identical to the
  float32 computation; the screen only decides how much work is skipped.
* ``approx``: pynndescent's NN-descent graph. Its recall@k is measured on a random subset of queries
  against the exact backend; below ``recall_threshold`` the search falls back to exact (default) or warns.

Ties are broken by the lower index everywhere, so results are deterministic.

Any finite float32 input works at any magnitude. Data whose spread leaves a safe window is multiplied by a
power of two first, which changes no float32 comparison or tie (only under/overflow could), so squared
distances neither overflow nor go subnormal; rows whose nearest distances still fall below float32's normal
range (rows spanning more orders of magnitude than float32 resolves) are searched again on their own.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Optional

import numpy as np
import torch

from . import block_topk, pair_kernels
from ._checks import HubnessError, as_latents, check_k, resolve_device

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_MB = 512
#: Keyword arguments that configure only the approximate backend (``backend="auto"`` ignores them).
APPROX_ONLY_KWARGS = ("recall_threshold", "on_low_recall", "recall_sample", "seed", "params")
#: Extra screened candidates per row beyond k; only speed depends on it, never the result.
DEFAULT_MARGIN = 12
#: NN-descent parameters that reach recall@5 >= 0.95 on 512-d Gaussian latents (see benchmarks/knn.py).
APPROX_PARAMS = dict(n_neighbors=100, n_iters=20, max_candidates=100)

_UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8}
_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: Data whose largest coordinate spread (max - min) lies in [2**lo, 2**hi] is searched as it is. Above, sums
#: of squares could overflow float32; below, the screen's absolute slack dominates and rows fail its
#: certificate. Other data is multiplied by the power of two that brings its spread just below 2**hi.
_SPREAD_LOG2 = (-8, 40)
#: Two distinct float32 values closer than 2**-63 (whose squared difference is subnormal) both lie below
#: 2**-38 in magnitude: data with no nonzero value below 2**_TINY_LOG2 has no subnormal term.
_TINY_LOG2 = -36
#: A subnormal term moves a squared distance by at most 2**-126; next to distances above d * 2**-80 that is
#: far below float32 rounding, so only rows with smaller distances are searched again.
_TINY_DIST_LOG2 = -80
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _scale_exponent(spread: float, dim: int) -> int:
    """Exponent s such that float32 arithmetic on ``x * 2**s`` neither overflows nor wastes range.

    Parameters
    ----------
    spread : float
        Largest per-coordinate spread (max - min) of the data, or an upper bound of it.
    dim : int
        Coordinates per row: d * (2**hi)**2 must leave headroom below float32's largest value.

    Returns
    -------
    int
        0 inside the safe window (no copy; results bit-identical to unscaled float32); otherwise the
        exponent that brings the spread to [2**(hi-1), 2**hi).
    """
    hi = min(_SPREAD_LOG2[1], (120 - (dim - 1).bit_length()) // 2)
    if spread == 0 or 2.0 ** _SPREAD_LOG2[0] <= spread <= 2.0 ** hi:
        return 0
    return hi - math.frexp(spread)[1]


def _column_spread(*arrays: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Largest per-coordinate spread over the rows of all arrays, and the mask of constant coordinates."""
    lo = hi = None
    for a in arrays:
        amin, amax = a.amin(0), a.amax(0)
        lo = amin if lo is None else torch.minimum(lo, amin)
        hi = amax if hi is None else torch.maximum(hi, amax)
    ranges = hi.double() - lo.double()
    return float(ranges.max()), ranges == 0


def _data_scale(*arrays: torch.Tensor) -> tuple[int, float, Optional[torch.Tensor]]:
    """Scale exponent of a search over the rows of ``arrays``, their coordinate spread and constant columns.

    The global range (one cheap reduction) settles ordinary data; per-column ranges are needed only when
    it leaves the safe window, e.g. a constant huge coordinate beside small ones.
    """
    dim = arrays[0].shape[1]
    bounds = [torch.aminmax(a) for a in arrays]
    total = max(float(b.max) for b in bounds) - min(float(b.min) for b in bounds)
    if _scale_exponent(total, dim) == 0:
        return 0, total, None
    spread, constant = _column_spread(*arrays)
    return _scale_exponent(spread, dim), spread, constant


def _scaled(x: torch.Tensor, s: int, constant: Optional[torch.Tensor]) -> torch.Tensor:
    """``x * 2**s`` in float32, constant columns zeroed (they add nothing to a distance and could overflow).

    Exact wherever the result stays in float32's normal range; multiplied in float64 so that 2**s itself
    may lie outside float32's range.
    """
    if s == 0:
        return x
    out = torch.empty_like(x)
    factor = 2.0 ** s
    step = max(1, 2 ** 18 // x.shape[1])
    for r0 in range(0, x.shape[0], step):
        out[r0:r0 + step] = x[r0:r0 + step].double().mul_(factor)
    if constant is not None and bool(constant.any()):
        out[:, constant] = 0
    return out


def _ldexp_(t: torch.Tensor, e: int) -> torch.Tensor:
    """``t * 2**e`` in place (float32): one rounding, so values leaving float32's range become inf or subnormal."""
    if e == 0:
        return t
    if -126 <= e <= 127:  # 2**e is a normal float32: the product is rounded once
        return t.mul_(2.0 ** e)
    step = max(1, 2 ** 18 // max(1, t.shape[1]))  # float64 in row chunks: 2**e is a normal float64
    for r0 in range(0, t.shape[0], step):
        t[r0:r0 + step] = t[r0:r0 + step].double().mul_(2.0 ** e)
    return t


def _has_tiny_values(s: int, *arrays: torch.Tensor) -> bool:
    """Whether some nonzero value lies below 2**_TINY_LOG2 once multiplied by 2**s (see _TINY_LOG2)."""
    e = _TINY_LOG2 - s
    if e < -149:  # below the smallest float32 subnormal: no nonzero value is that small
        return False
    threshold = 2.0 ** e
    return any(bool(((a != 0) & (a.abs() < threshold)).any()) for a in arrays)


@dataclass
class KnnResult:
    """Neighbours of each query, nearest first (ties: lower index first).

    Attributes
    ----------
    indices : torch.Tensor, shape (n_queries, k), int64
    distances : torch.Tensor, shape (n_queries, k), float32
        Squared Euclidean distances (exact backend: float32 from differences; approx: pynndescent's).
    backend : str
        ``"exact"`` or ``"approx"``.
    recall : float or None
        Measured recall@k of an approximate run (fraction of true neighbours found); None for exact.
    info : dict
        Diagnostics: screen precision, rows recomputed in full, seconds, ...
    """

    indices: torch.Tensor
    distances: torch.Tensor
    backend: str
    recall: Optional[float] = None
    info: dict = field(default_factory=dict)


def rows_per_block(n_cols: int, bytes_per_entry: int, memory_budget_mb: float, *, max_rows: int = 1 << 30) -> int:
    """Number of query rows whose (rows, n_cols) working set fits the memory budget (at least 1)."""
    if not (memory_budget_mb > 0):
        raise HubnessError(f"Expected memory_budget_mb > 0, but memory_budget_mb = {memory_budget_mb}")
    rows = int(memory_budget_mb * 2 ** 20 // max(1, n_cols * bytes_per_entry))
    return max(1, min(rows, max_rows))


def sqdist_blocks(x, y=None, *, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None,
                  block_rows: Optional[int] = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield squared Euclidean distances of ``x`` to ``y`` one block of rows at a time (float32 GEMM).

    Data of any magnitude is centred and multiplied by a power of two before the GEMM, so no intermediate
    overflows or goes subnormal; blocks come back in the input's units (values below float32's normal
    range, 1.2e-38, are subnormal there).

    Parameters
    ----------
    x : array-like, shape (n, d)
    y : array-like, shape (m, d), optional
        Defaults to ``x``.
    memory_budget_mb : float
        Bound on the size of one yielded block.
    block_rows : int, optional
        Rows per block; overrides the budget (tests compare blockwise with one-shot results).

    Yields
    ------
    start, stop, block : int, int, torch.Tensor of shape (stop - start, m)

    Raises
    ------
    HubnessError
        Before the first block, when squared distances could exceed float32's largest value (3.4e38).
    """
    device = resolve_device(device)
    x = as_latents(x, "x", device)
    y = x if y is None else as_latents(y, "y", device)
    if x.shape[1] != y.shape[1]:
        raise HubnessError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    mu = y.double().mean(0)  # centring shrinks the cancellation error of the expansion
    xc = x.double() - mu
    yc = xc if y is x else y.double() - mu
    big = max(float(xc.abs().max()), float(yc.abs().max()))
    s = _scale_exponent(2 * big, x.shape[1])  # a coordinate differs by at most 2 * big
    if s:
        xc.mul_(2.0 ** s)
        if yc is not xc:
            yc.mul_(2.0 ** s)
    xc = xc.float()
    yc = xc if y is x else yc.float()
    xn = (xc.double() ** 2).sum(1)
    yn = xn if y is x else (yc.double() ** 2).sum(1)
    # |x - y| <= |x - mu| + |y - mu|: the largest distance a block can hold, with room for rounding
    reach = (float(xn.max()) ** 0.5 + float(yn.max()) ** 0.5) ** 2 * 4.0 ** -s
    if reach * (1 + 2 ** -10) >= _FLOAT32_MAX:
        raise HubnessError(f"squared distances reach {reach:.3g}, beyond float32's largest value "
                           f"{_FLOAT32_MAX:.3g}; divide the data by a power of ten first "
                           f"(neighbours and distance ratios do not change)")
    xn = xn.float()
    yn = xn if y is x else yn.float()
    rows = block_rows or rows_per_block(y.shape[0], 4, memory_budget_mb)
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        block = torch.addmm(yn[None, :], xc[start:stop], yc.T, alpha=-2.0).add_(xn[start:stop, None]).clamp_(min=0)
        yield start, stop, _ldexp_(block, -2 * s)


@lru_cache(maxsize=None)
def _bf16_is_fast(device_type: str) -> bool:
    """Whether bfloat16 GEMM beats float32 here (CUDA: yes; CPU: measured once)."""
    if device_type == "cuda":
        return True
    a = torch.randn(256, 512)
    b = torch.randn(4096, 512)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        aa, bb = a.to(dtype), b.to(dtype)
        torch.mm(aa, bb.T)
        start = time.perf_counter()
        for _ in range(3):
            torch.mm(aa, bb.T)
        timings[dtype] = time.perf_counter() - start
    return timings[torch.bfloat16] < 0.7 * timings[torch.float32]


def _screen_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if _bf16_is_fast(device.type) else torch.float32
    if precision not in _PRECISIONS:
        raise HubnessError(f"precision must be one of 'auto', 'fp32', 'bf16', got {precision!r}")
    return _PRECISIONS[precision]


class _Screen:
    """Latents prepared for a reduced-precision GEMM screen, with what the error bound needs.

    The screen score of a pair is ``S_ij = (C - |x_i - x_j|^2) / 2 = <x_i, x_j> + c_i + c_j`` with
    ``c = C / 4 - |x|^2 / 2`` on mean-centred data, computed by one GEMM of augmented vectors
    ``[x_i, c_i(hi), c_i(lo), 1, 1] . [x_j, 1, 1, c_j(hi), c_j(lo)]``: the hi/lo pair carries ``c`` at
    twice the screen precision, and the offset C (a typical k-th neighbour distance) keeps ``|S|``, and
    so the rounding of the GEMM output, small near the k-th neighbour where the ranking is decided.
    The score is symmetric, so one tile serves both of its row blocks.
    """

    def __init__(self, data: torch.Tensor, mean: torch.Tensor, dtype: torch.dtype):
        n, dim = data.shape
        dev = data.device
        self.dim, self.dtype = dim, dtype
        self.width = -(-(dim + 4) // 16) * 16                              # aligned GEMM width
        self.left = torch.empty(n, self.width, dtype=dtype, device=dev)
        self.left[:, dim:] = 0  # the data columns are all written below: zeroing them would cost a pass
        self.sq_norm = torch.empty(n, dtype=torch.float64, device=dev)      # |x|^2
        self.low_norm = torch.empty(n, dtype=torch.float64, device=dev)     # |x~|
        self.err_norm = torch.empty(n, dtype=torch.float64, device=dev)     # |x - x~|
        step = _chunk_rows(dim, dev, 2 ** 17)  # float64 work in cache-sized chunks
        for r0 in range(0, n, step):
            centred = data[r0:r0 + step].double() - mean
            low = centred.to(dtype)
            self.left[r0:r0 + step, :dim] = low
            low = low.double()
            self.sq_norm[r0:r0 + step] = (centred * centred).sum(1)
            self.low_norm[r0:r0 + step] = (low * low).sum(1).sqrt_()
            centred -= low
            self.err_norm[r0:r0 + step] = (centred * centred).sum(1).sqrt_()

    def set_offset(self, offset: float, left: bool = True, right: bool = True) -> None:
        """Fill the augmented columns for the offset C (until then they are 0: plain centred vectors).

        A screen that serves one side of the GEMM only (queries: ``left``; the database of a query search:
        ``right``) keeps that matrix alone, converted in place: no second copy of the latents.
        """
        dim, dtype = self.dim, self.dtype
        c = offset / 4 - 0.5 * self.sq_norm
        hi = c.to(dtype)
        lo = (c - hi.double()).to(dtype)
        self.split_err = (c - hi.double() - lo.double()).abs()
        self.aug_abs = hi.double().abs() + lo.double().abs()
        self.right = (self.left.clone() if left else self.left) if right else None
        if left:
            self.left[:, dim], self.left[:, dim + 1], self.left[:, dim + 2:dim + 4] = hi, lo, 1
        else:
            self.left = None
        if right:
            self.right[:, dim:dim + 2], self.right[:, dim + 2], self.right[:, dim + 3] = 1, hi, lo


def _sq_sum_rows(a: torch.Tensor) -> torch.Tensor:
    """Row sums of squares by pairwise halving: elementwise ops only, so every row's value is
    bit-identical whatever the batch shape, thread count or device kernel."""
    width = 1 << max(0, (a.shape[1] - 1).bit_length())
    sq = a.new_zeros(a.shape[0], width)
    torch.mul(a, a, out=sq[:, :a.shape[1]])
    return _halve_rows_(sq)


def _halve_rows_(sq: torch.Tensor) -> torch.Tensor:
    """Row sums of ``sq`` (width a power of two) by pairwise halving, in place; returns column 0 (a view)."""
    width = sq.shape[1]
    while width > 1:
        width //= 2
        sq[:, :width].add_(sq[:, width:2 * width])
    return sq[:, 0]


def pair_sqdist(xq: torch.Tensor, xd: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                kernel: bool = False) -> torch.Tensor:
    """Reference squared distances of chosen pairs, from differences in float32.

    Parameters
    ----------
    xq : torch.Tensor, shape (m, d), float32
    xd : torch.Tensor, shape (n, d), float32
    rows, cols : torch.Tensor, shape (p,), int64
        Pair p is ``(xq[rows[p]], xd[cols[p]])``.
    kernel : bool
        On the CPU, compute with the numba kernel of :mod:`extensions.pair_kernels` (the same values,
        without gathered copies), for searches that load the numba kernels anyway.

    Returns
    -------
    torch.Tensor, shape (p,), float32
        ``|xq[rows] - xd[cols]|^2``; each value is bit-identical however the pairs are batched, so every
        exact path of the engine (and the metrics) agrees on ties.
    """
    p, dim = rows.shape[0], xq.shape[1]
    out = torch.empty(p, dtype=torch.float32, device=xq.device)
    chunk = min(p, _chunk_rows(dim, xq.device, 2 ** 19, 2 ** 24))  # CPU: a few MiB keep the gathers in cache
    if p == 0:
        return out
    if kernel and xq.device.type == "cpu" and pair_kernels.available():
        pair_kernels.pair_sqdist_(xq.contiguous(), xd.contiguous(), rows, cols, out)
        return out
    # Buffers reused by every chunk (fresh memory costs a page fault per page); the squares are zero-padded
    # to a power of two for _halve_rows_, whose halving never writes the padding.
    sq = torch.zeros(chunk, 1 << max(0, (dim - 1).bit_length()), dtype=xq.dtype, device=xq.device)
    q, d = torch.empty(chunk, dim, dtype=xq.dtype, device=xq.device), torch.empty(chunk, dim, dtype=xd.dtype,
                                                                                   device=xd.device)
    for start in range(0, p, chunk):
        stop = min(start + chunk, p)
        m = stop - start
        torch.index_select(xq, 0, rows[start:stop], out=q[:m])
        torch.index_select(xd, 0, cols[start:stop], out=d[:m])
        diff = sq[:m, :dim]
        torch.sub(q[:m], d[:m], out=diff)
        diff.mul_(diff)
        out[start:stop] = _halve_rows_(sq[:m])
    return out


def _sorted_topk(values: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First k entries of each row ordered by (value, index).

    ``values`` are float32 >= +0 (or +inf) and ``indices`` in [0, 2**32): a non-negative float orders like
    its bit pattern, so one int64 key (value bits, then index) orders the pairs, with one selection.
    """
    key = (values.view(torch.int32).to(torch.int64) << 32) | indices
    key = torch.topk(key, k, dim=1, largest=False, sorted=True).values
    return (key >> 32).to(torch.int32).view(torch.float32), key & 0xFFFFFFFF


def _mean64(x: torch.Tensor) -> torch.Tensor:
    """Column means in float64 without a float64 copy of the whole array."""
    step = _chunk_rows(x.shape[1], x.device, 2 ** 17)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for r0 in range(0, x.shape[0], step):
        total += x[r0:r0 + step].sum(0, dtype=torch.float64)
    return total / x.shape[0]


def _typical_kth_distance(qs: "_Screen", db: "_Screen", qidx, k: int, memory_budget_mb: float,
                          sample: int = 64) -> float:
    """Median k-th neighbour distance of a few queries: the offset that centres the screen score.

    Any value keeps the result exact; a typical one keeps the screen's rounding small. Computed from the
    screens' centred vectors (augmented columns still 0), so a large common offset neither cancels nor
    overflows.
    """
    m, n = qs.left.shape[0], db.left.shape[0]
    step = max(1, m // sample)
    rows = torch.arange(0, m, step, device=qs.left.device)[:sample]
    q, q_norm = qs.left[rows], qs.sq_norm[rows].float()[:, None]
    db_norm = db.sq_norm.float()
    cols = max(k, int(memory_budget_mb * 2 ** 20 // (len(rows) * 8)))
    best = None
    for c0 in range(0, n, cols):
        c1 = min(c0 + cols, n)
        block = torch.mm(q, db.left[c0:c1].T).float().mul_(-2).add_(db_norm[None, c0:c1]).add_(q_norm)
        if qidx is not None:
            own = qidx[rows] - c0
            hit = ((own >= 0) & (own < c1 - c0)).nonzero().squeeze(1)
            block[hit, own[hit]] = float("inf")
        if best is not None:
            block = torch.cat([best, block], 1)
        best = torch.topk(block, min(k, block.shape[1]), dim=1, largest=False).values
    return max(0.0, float(best[:, -1].double().median()))


@contextmanager
def strict_matmul(device: torch.device):
    """float32 accumulation in every GEMM, as the screen's error bound assumes: no TF32 or bf16
    shortcuts for float32 (whatever ``torch.set_float32_matmul_precision`` says), and no
    reduced-precision split-K reductions for bfloat16 on CUDA.

    Where torch has per-backend ``fp32_precision`` switches, only those are saved, set and restored:
    recent torch (seen with 2.11 on CUDA) refuses ``get_float32_matmul_precision()`` once the legacy
    ``allow_tf32`` flag and the new switches have both been written, as stylegan3's scripts (legacy
    flag) and this function together would otherwise do.
    """
    cuda = device.type == "cuda"
    m = torch.backends.cuda.matmul
    switches = [b for b in (m, getattr(torch.backends.mkldnn, "matmul", None)) if hasattr(b, "fp32_precision")]
    if switches:
        saved_switches = [b.fp32_precision for b in switches]
        for b in switches:
            b.fp32_precision = "ieee"
    else:
        saved_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        if cuda:
            saved_tf32, m.allow_tf32 = m.allow_tf32, False
    if cuda:
        saved_bf16, m.allow_bf16_reduced_precision_reduction = m.allow_bf16_reduced_precision_reduction, False
    try:
        yield
    finally:
        if switches:
            for b, value in zip(switches, saved_switches):
                b.fp32_precision = value
        else:
            torch.set_float32_matmul_precision(saved_precision)
            if cuda:
                m.allow_tf32 = saved_tf32
        if cuda:
            m.allow_bf16_reduced_precision_reduction = saved_bf16


#: Block top-k on CUDA: a block's rows (or columns) are cut into groups of this many entries, and only the
#: K groups with the largest maxima are searched (see :func:`_block_topk`).
_TOPK_GROUP = 32


#: On the CPU, self-search of data whose screen is at most this wide (d <= 252) scores full row blocks
#: (:func:`_row_candidates`) instead of the upper triangle: there the top-k, not the GEMM, dominates.
_CPU_ROW_PLAN_MAX_WIDTH = 256


def _gpu_plan(device: torch.device) -> bool:
    """Whether the search is planned for a GPU: self-search by full row blocks, grouped block top-k.

    On CUDA a block's top-k costs more than its GEMM, so work is arranged around reading each score once,
    row-wise. The CPU keeps, for wide data, the upper-triangle scheme (half the GEMM; each score searched
    along its row and along its column: ``torch.topk``, or the numba kernels of
    :mod:`extensions.block_topk`, :data:`CPU_MERGES`).
    """
    return device.type == "cuda"


def _chunk_rows(dim: int, device: torch.device, cpu_elems: int, cuda_elems: int = 2 ** 22) -> int:
    """Rows per step of a row-chunked loop: cache-sized on the CPU, many MiB per kernel on CUDA, where
    each step costs kernel launches. No row's result depends on it."""
    return max(1, (max(cpu_elems, cuda_elems) if device.type == "cuda" else cpu_elems) // max(1, dim))


def _block_topk(s: torch.Tensor, K: int, dim: int, grouped: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K scores of a block along ``dim`` (unsorted; ties in any order), with their positions.

    On CUDA, a full ``torch.topk`` over a wide block costs several passes over it; instead each row (or
    column) is cut into groups of :data:`_TOPK_GROUP` entries, one pass takes each group's maximum, and
    only the entries of the K groups with the largest maxima are searched. That is exact: every entry
    outside those groups is <= the K-th largest group maximum, and the chosen groups hold K entries at
    least that large. The CPU keeps ``torch.topk`` (faster there).

    Parameters
    ----------
    s : torch.Tensor, shape (R, C)
    K : int
        At most ``s.shape[dim]``.
    dim : {0, 1}
    grouped : bool, optional
        Use the group search (default: on CUDA, for blocks of at least 4K groups).

    Returns
    -------
    values, indices : torch.Tensor, shape (R, K) for dim 1, (K, C) for dim 0
    """
    g = _TOPK_GROUP
    length = s.shape[dim]
    groups = length // g
    if grouped is None:
        grouped = _gpu_plan(s.device)
    if not grouped or groups < 4 * K:
        return torch.topk(s, K, dim=dim, largest=True, sorted=False)
    if dim == 0:
        v, i = _block_topk_rows(s.T, K)       # the column view: a strided (C, R) operand
        return v.T, i.T
    return _block_topk_rows(s, K)


def _block_topk_rows(s: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-K of :func:`_block_topk` on CUDA; ``s`` may be a transposed view.

    Groups are chosen so that their maxima come from a reduction over a non-innermost dimension (one fast
    pass; reducing contiguous runs of 32 entries is several times slower): interleaved columns
    (``j, j + G, j + 2G, ...``) of a row-major block, consecutive rows of a transposed one.
    """
    g = _TOPK_GROUP
    R, C = s.shape
    G = C // g
    body = s[:, :G * g]
    step = torch.arange(g, device=s.device)
    if s.stride(1) == 1:
        maxima = body.reshape(R, g, G).amax(1)
        top = torch.topk(maxima, K, dim=1, largest=True, sorted=False).indices
        cols = (top[:, :, None] + step * G).view(R, K * g)
    else:
        maxima = body.T.reshape(G, g, R).amax(1).T.contiguous()
        top = torch.topk(maxima, K, dim=1, largest=True, sorted=False).indices
        cols = (top[:, :, None] * g + step).view(R, K * g)
    v, j = torch.topk(s.gather(1, cols), K, dim=1, largest=True, sorted=False)
    i = cols.gather(1, j)
    if G * g < C:  # the tail that fills no group
        tv, ti = torch.topk(s[:, G * g:], min(K, C - G * g), dim=1, largest=True, sorted=False)
        v, i = _merge(v, i, tv, ti + G * g, K)
    return v, i


class _BlockProduct:
    """``a @ b.T`` into one buffer reused by every block of a search (a block is consumed before the next
    is computed): fresh memory for each block would cost a page fault per page."""

    def __init__(self, size: int, like: torch.Tensor):
        self.buf = torch.empty(size, dtype=like.dtype, device=like.device)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = self.buf[:a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
        return torch.mm(a, b.T, out=out)


def _merge(best_s, best_i, s, i, K):
    s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
    best_s, sel = torch.topk(s, K, dim=1, largest=True, sorted=False)
    return best_s, i.gather(1, sel)


#: How CPU searches merge their score blocks: "numba" (the kernels of :mod:`extensions.block_topk`),
#: "torch.topk", or "auto": the kernels once they are loaded in the process, and before that for searches of
#: at least :data:`CPU_KERNELS_MIN_SCORES`, or once the process's ``torch.topk`` merges have added up to it.
CPU_MERGES = "auto"

#: Merge work (scores searched along rows) at which loading the numba kernels pays: loading them costs
#: about 0.3 s per process (compiling them, once per machine, about 10 s), more than they save below (2-core
#: CPU, a fresh process each) ~22k latents of 512-d (the triangle plan) or ~32k of 64-d (rows). A process
#: that runs many smaller searches (a metric's pools) loads them once its ``torch.topk`` merges have cost
#: that much: at most twice the time of the better choice made in advance.
CPU_KERNELS_MIN_SCORES = 2 ** 30

_topk_work = 0  # merge work this process has done with torch.topk under "auto"


def _kernels(like: torch.Tensor, rows: int, cols: int, symmetric: bool = False) -> bool:
    """Whether a CPU search of ``rows x cols`` scores merges them with the numba kernels (see
    :data:`CPU_MERGES`); a search that will merge with ``torch.topk`` is counted. The triangle plan scores
    rows * cols / 2 pairs and merges each along its row and its column, which costs ``torch.topk`` about
    1 + 3 times a row-wise merge."""
    global _topk_work
    if CPU_MERGES not in ("auto", "numba", "torch.topk"):
        raise HubnessError(f"CPU_MERGES must be 'auto', 'numba' or 'torch.topk', got {CPU_MERGES!r}")
    if like.device.type != "cpu" or not block_topk.available(like.dtype) or CPU_MERGES == "torch.topk":
        return False
    work = 2 * rows * cols if symmetric else rows * cols
    if CPU_MERGES == "numba" or block_topk.loaded() or _topk_work + work >= CPU_KERNELS_MIN_SCORES:
        return True
    _topk_work += work
    return False


def _empty_best(rows: int, K: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.full((rows, K), float("-inf"), dtype=like.dtype, device=like.device),
            torch.zeros((rows, K), dtype=torch.int64, device=like.device))


#: Blocks merged by the numba kernels span at most this many columns: a kernel reads its block right after
#: the GEMM wrote it, and blocks of 32-64 MiB stay largely in the last-level cache (2-core CPU, d = 512:
#: self-search 6-11% faster at 10,000-100,000 latents, query search 30% at 20,000; d = 64: 8-10%).
#: ``torch.topk`` merges run no faster on them.
_KERNEL_BLOCK_COLS = 4096


def _merge_rows(s: torch.Tensor, offset: int, best_s, best_i, K: int, kernels: bool):
    """Merge the rows of a block (columns from ``offset``) into the running top-K lists (None: none yet),
    with the numba kernels or ``torch.topk``."""
    if kernels:
        if best_s is None:
            best_s, best_i = _empty_best(s.shape[0], K, s)
        block_topk.merge_rows_(s, offset, best_s, best_i)
        return best_s, best_i
    v, i = _block_topk(s, min(K, s.shape[1]), 1)
    if best_s is None:
        return v, i + offset
    return _merge(best_s, best_i, v, i + offset, K)


def _symmetric_candidates(scr: _Screen, K: int, memory_budget_mb: float, kernels: bool):
    """Top-K screen scores of every latent among the others, over the upper triangle only.

    Row block I is scored against columns from its own start onwards, in chunks; each chunk serves
    the block's rows and, transposed, the rows of the later columns, so about half of the GEMM is
    skipped. Yields (r0, r1, scores (r1 - r0, K), indices (r1 - r0, K)) as each row block completes.
    """
    n = scr.left.shape[0]
    elem = scr.left.element_size()
    budget = int(memory_budget_mb * 2 ** 20)
    # Blocks of a quarter of the pool (at most 4096 rows) skip ~40% of the GEMM while keeping the
    # transposed top-k rows wide enough to run fast; a chunk and its transpose fit the budget.
    tile = max(1, min(4096, max(512, -(-n // 4)), math.isqrt(budget // (4 * elem))))
    # square blocks for the kernels (see _KERNEL_BLOCK_COLS; here 11% faster than 2,500 x 7,500 at 10,000)
    width = tile if kernels else max(tile, budget // (2 * elem * tile))
    best_s, best_i = _empty_best(n, K, scr.left)
    mm = _BlockProduct(min(tile, n) * min(max(tile, width), n), scr.left)
    for r0 in range(0, n, tile):
        r1 = min(r0 + tile, n)
        s = mm(scr.left[r0:r1], scr.right[r0:r1])
        s.diagonal().fill_(float("-inf"))
        best_s[r0:r1], best_i[r0:r1] = _merge_rows(s, r0, best_s[r0:r1], best_i[r0:r1], K, kernels)
        for c0 in range(r1, n, width):
            c1 = min(c0 + width, n)
            s = mm(scr.left[r0:r1], scr.right[c0:c1])
            if kernels:  # rows and columns in one read of the block
                block_topk.merge_both_(s, c0, best_s[r0:r1], best_i[r0:r1], r0, best_s[c0:c1], best_i[c0:c1])
                continue
            best_s[r0:r1], best_i[r0:r1] = _merge_rows(s, c0, best_s[r0:r1], best_i[r0:r1], K, kernels)
            v, i = _block_topk(s, min(K, r1 - r0), 0)
            best_s[c0:c1], best_i[c0:c1] = _merge(best_s[c0:c1], best_i[c0:c1], v.T, i.T + r0, K)
        yield r0, r1, best_s[r0:r1], best_i[r0:r1]


def _row_candidates(scr: _Screen, K: int, memory_budget_mb: float, kernels: bool):
    """Top-K screen scores of every latent among the others, each row block scored against all columns.

    The GPU plan (:func:`_gpu_plan`): twice the GEMM of :func:`_symmetric_candidates`, but every score is
    read once, row-wise, by the grouped block top-k. Yields what :func:`_symmetric_candidates` yields.
    """
    n = scr.left.shape[0]
    elem = scr.left.element_size()
    budget = int(memory_budget_mb * 2 ** 20)
    rows = max(1, min(4096, n, math.isqrt(budget // elem)))
    width = max(K + 1, min(budget // (elem * rows), _KERNEL_BLOCK_COLS if kernels else n))
    mm = _BlockProduct(rows * min(width, n), scr.left)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        best_s = best_i = None
        for c0 in range(0, n, width):
            c1 = min(c0 + width, n)
            s = mm(scr.left[r0:r1], scr.right[c0:c1])
            a, b = max(r0, c0), min(r1, c1)
            if a < b:  # the block's own latents
                s[a - r0:b - r0, a - c0:b - c0].diagonal().fill_(float("-inf"))
            best_s, best_i = _merge_rows(s, c0, best_s, best_i, K, kernels)
        yield r0, r1, best_s, best_i


def _rect_candidates(qs: _Screen, db: _Screen, qidx, K: int, memory_budget_mb: float, kernels: bool):
    """Top-K screen scores of each query over the database, by blocks of rows and columns.

    The GPU plan (:func:`_gpu_plan`) uses tall blocks (up to 4096 queries, which keep the GEMM efficient)
    and masks each query's own row without a device synchronisation.
    """
    n = db.right.shape[0]
    elem = db.right.element_size()
    gpu = _gpu_plan(db.right.device)
    if gpu:
        rows = max(1, min(4096, qs.left.shape[0], math.isqrt(int(memory_budget_mb * 2 ** 20) // (2 * elem))))
        cols = max(K + 1, int(memory_budget_mb * 2 ** 20 // (2 * elem * rows)))
    else:
        min_rows = 64
        cols = n if n * elem * 2 * min_rows <= memory_budget_mb * 2 ** 20 else \
            max(K + 1, int(memory_budget_mb * 2 ** 20 // (2 * min_rows * elem)))
        if kernels:
            cols = max(K + 1, min(cols, _KERNEL_BLOCK_COLS))
        rows = rows_per_block(cols, 2 * elem, memory_budget_mb, max_rows=8192)
    mm = _BlockProduct(min(rows, qs.left.shape[0]) * min(cols, n), qs.left)
    for r0 in range(0, qs.left.shape[0], rows):
        r1 = min(r0 + rows, qs.left.shape[0])
        best_s = best_i = None
        for c0 in range(0, n, cols):
            c1 = min(c0 + cols, n)
            s = mm(qs.left[r0:r1], db.right[c0:c1])
            if qidx is not None and gpu:
                own = (qidx[r0:r1] - c0)[:, None]
                inside = (own >= 0) & (own < c1 - c0)
                own = own.clamp(0, c1 - c0 - 1)
                s.scatter_(1, own, torch.where(inside, float("-inf"), s.gather(1, own)))
            elif qidx is not None:
                own = qidx[r0:r1]
                hit = ((own >= c0) & (own < c1)).nonzero().squeeze(1)
                s[hit, own[hit] - c0] = float("-inf")
            best_s, best_i = _merge_rows(s, c0, best_s, best_i, K, kernels)
        yield r0, r1, best_s, best_i


def exact_knn(database, k: int, *, queries=None, query_indices=None, precision: str = "auto",
              memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, margin: int = DEFAULT_MARGIN,
              device=None) -> KnnResult:
    """Exact k nearest neighbours (squared Euclidean), self excluded.

    Parameters
    ----------
    database : array-like, shape (n, d)
    k : int
        Neighbours per query, ``1 <= k < n``.
    queries : array-like, shape (m, d), optional
        Defaults to ``database`` (each latent's neighbours among the others).
    query_indices : array-like of int, shape (m,), optional
        Database row of each query, excluded from its own neighbours. Implied when ``queries`` is None.
    precision : {'auto', 'fp32', 'bf16'}
        GEMM precision of the screen. The result does not depend on it. 'auto': bf16 where it is faster.
    memory_budget_mb : float
        Bound on one GEMM block; no block grows with n beyond it.
    margin : int
        Candidates kept per row beyond k (speed only: more margin, fewer rows recomputed in full).
    device : str or torch.device, optional
        None: CUDA when available, else CPU.

    Returns
    -------
    KnnResult
        Distances are float32 squared distances computed from differences, in the input's units: beyond
        float32's range (data spread above about 1e18) they are inf, below it (about 1e-19) subnormal or 0,
        while the neighbours stay exact. ``info``: ``fallback_rows`` (rows the screen could not certify),
        ``scale_exponent`` (the data was searched as ``x * 2**s``), ``tiny_rows`` (rows searched again
        because their nearest distances were below float32's normal range), ``merges`` ("numba" or
        "torch.topk", see :data:`CPU_MERGES`).

    Notes
    -----
    The neighbours are those of the float32 computation from differences on ``x * 2**s``, which is
    bit-identical to the unscaled one (s = 0 for spreads of 2**-8 to 2**40) whenever that one neither
    overflows nor underflows. Rows whose two nearest distances fall below ``d * 2**-80`` after scaling,
    in data holding nonzero values small enough for a squared difference to go subnormal, are searched
    again among the rows within their reach: on their own at a suitable scale when those span a far smaller
    range than the data (a tight group beside outliers), else in float64 from differences (cost grows
    with rows x n x d; only data spanning more orders of magnitude than float32 resolves gets there).
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    xd = as_latents(database, "database", device)
    n, dim = xd.shape
    self_search = queries is None
    if self_search:
        xq, qidx = xd, torch.arange(n, device=device)
    else:
        xq = as_latents(queries, "queries", device)
        if xq.shape[1] != dim:
            raise HubnessError(f"queries have dimension {xq.shape[1]} but the database has {dim}")
        qidx = None
        if query_indices is not None:
            qidx = (query_indices.to(device, torch.int64) if isinstance(query_indices, torch.Tensor)
                    else torch.as_tensor(np.asarray(query_indices), dtype=torch.int64, device=device))
            if qidx.shape != (xq.shape[0],):
                raise HubnessError(f"query_indices must have shape ({xq.shape[0]},), got {tuple(qidx.shape)}")
    k = check_k(k, n + (1 if qidx is None else 0))
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise HubnessError(f"Expected margin >= 0, but margin = {margin!r}")
    if not (memory_budget_mb > 0):
        raise HubnessError(f"Expected memory_budget_mb > 0, but memory_budget_mb = {memory_budget_mb}")
    dtype = _screen_dtype(precision, device)
    scale, spread, constant = _data_scale(xd) if self_search else _data_scale(xd, xq)
    xds = _scaled(xd, scale, constant)
    xqs = xds if self_search else _scaled(xq, scale, constant)
    tiny_dist = dim * 2.0 ** _TINY_DIST_LOG2
    has_tiny = lru_cache(maxsize=None)(lambda: _has_tiny_values(scale, *((xd,) if self_search else (xd, xq))))
    out_idx, out_dist, fallback_rows, full_rows, merges = _exact_knn_scaled(
        xds, xqs, qidx, k, dtype, margin, memory_budget_mb, device, tiny_dist, has_tiny)
    del xqs, xds

    tiny = torch.empty(0, dtype=torch.int64, device=device)
    near = out_dist[:, min(k, 2) - 1] < tiny_dist
    if bool(near.any()) and has_tiny():
        tiny = near.nonzero().squeeze(1)
        # the k rows found lie within twice their computed distance (rounding and subnormal terms are far
        # smaller; d * 2**-80 covers the terms lost to underflow), so the true k nearest do too
        reach = 2 * math.sqrt(max(float(out_dist[tiny, -1].max()), dim * 2.0 ** _TINY_DIST_LOG2)) * 2.0 ** -scale
    _ldexp_(out_dist, -2 * scale)
    if len(tiny):
        spread = _column_spread(*((xd,) if self_search else (xd, xq)))[0]
        log.info("exact k-NN: %d of %d rows have neighbours closer than float32 resolves next to the data's "
                 "spread %.3g; searching them again", len(tiny), xq.shape[0], spread)
        out_idx[tiny], out_dist[tiny] = _tiny_rows_knn(
            xd, xq, qidx, tiny, k, reach, spread, precision=precision, margin=margin,
            memory_budget_mb=memory_budget_mb, device=device)
    if scale < 0 and not bool(torch.isfinite(out_dist).all()):
        log.info("exact k-NN: squared distances beyond float32's range are reported as inf "
                 "(data spread %.3g); the neighbours are exact", spread)
    info = dict(precision=str(dtype).replace("torch.", ""), fallback_rows=fallback_rows, full_rows=full_rows,
                scale_exponent=scale, tiny_rows=len(tiny), seconds=time.perf_counter() - t0, device=str(device),
                merges=merges)
    return KnnResult(out_idx, out_dist, "exact", None, info)


def _exact_knn_scaled(xd: torch.Tensor, xq: torch.Tensor, qidx: Optional[torch.Tensor], k: int,
                      dtype: torch.dtype, margin: int, memory_budget_mb: float, device: torch.device,
                      tiny_dist: float = 0.0, has_tiny=None, mean: Optional[torch.Tensor] = None,
                      offset: Optional[float] = None, screen: Optional[list] = None):
    """The screened search on data in the safe range: (indices, float32 distances, fallback rows, full rows,
    how its blocks were merged: "numba" or "torch.topk").

    ``xq is xd`` means self-search (``qidx`` is then arange(n)). Uncertified rows whose two nearest
    candidates lie below ``tiny_dist``, in data where ``has_tiny()``, are left as screened: the caller
    searches them again anyway (their candidates still bound the reach of the true neighbours).
    ``mean`` and ``offset`` (the screen's centre and score offset) are computed unless given, as a search
    of the rows that failed passes its own; ``screen``, a one-item list, hands over that search's database
    screen (prepared for ``mean``, ``offset`` and ``dtype``), which is then freed here before any further
    screen is built.
    """
    n, dim = xd.shape
    self_search = xq is xd
    n_avail = n - (1 if qidx is not None else 0)
    K = min(k + margin, n_avail)

    if mean is None:
        mean = _mean64(xd)
    reused = screen is not None
    db = screen.pop() if reused else _Screen(xd, mean, dtype)
    qs = db if self_search else _Screen(xq, mean, dtype)
    if offset is None:
        offset = _typical_kth_distance(qs, db, qidx, k, memory_budget_mb)
    if qs is db:
        db.set_offset(offset)
    else:  # a query search multiplies query rows by database rows only
        if reused:
            db.left = None
        else:
            db.set_offset(offset, left=False)
        qs.set_offset(offset, right=False)
    # |S - S~| <= A_i + u|S~| / (1 - u): input rounding (Cauchy-Schwarz), float32 accumulation, c split.
    u_rel = _UNIT_ROUNDOFF[dtype] / (1 - _UNIT_ROUNDOFF[dtype])
    gamma = db.width * 2.0 ** -24 / (1 - db.width * 2.0 ** -24)
    gamma_ref = (dim + 2) * 2.0 ** -24 / (1 - (dim + 2) * 2.0 ** -24)    # reference distances vs exact
    big_x, big_e = float(db.low_norm.max()), float(db.err_norm.max())
    bound_a = ((qs.low_norm * big_e + qs.err_norm * big_x + qs.err_norm * big_e
                + gamma * (qs.low_norm * big_x + qs.aug_abs + float(db.aug_abs.max()))) * (1 + gamma)
               + qs.split_err + float(db.split_err.max()))

    def lower_upper(score, r0, r1):
        b = bound_a[r0:r1, None] + u_rel * score.abs()
        approx = offset - 2 * score
        eps = (2 * b + gamma_ref * (approx + 2 * b).abs()) * (1 + 1e-9) + 1e-12 * (abs(offset) + approx.abs() + 1)
        return approx - eps, approx + eps

    if self_search:
        # Row blocks read each score once; the triangle halves the GEMM but searches each score twice, which
        # pays on the CPU only where the GEMM is wide (2-core CPU, CPU time: rows 10-24% faster at d = 64,
        # n = 20,000; the triangle 9% faster at d = 512, n = 40,000).
        rows_plan = _gpu_plan(device) or db.width <= _CPU_ROW_PLAN_MAX_WIDTH
        kernels = _kernels(db.left, n, n, symmetric=not rows_plan)
        plan = _row_candidates if rows_plan else _symmetric_candidates
        blocks = plan(db, K, memory_budget_mb, kernels)
    else:
        kernels = _kernels(qs.left, xq.shape[0], n)
        blocks = _rect_candidates(qs, db, qidx, K, memory_budget_mb, kernels)
    m = xq.shape[0]
    out_idx = torch.empty(m, k, dtype=torch.int64, device=device)
    out_dist = torch.empty(m, k, dtype=torch.float32, device=device)
    failed = []
    inf = float("inf")
    with strict_matmul(device):
        for r0, r1, cand_s, cand_i in blocks:
            score = cand_s.double()
            valid = torch.isfinite(score)
            lo, hi = lower_upper(score, r0, r1)
            lo, hi = lo.masked_fill(~valid, inf), hi.masked_fill(~valid, inf)
            # Candidates that may still be among the k nearest: lower bound <= the k-th smallest upper bound.
            unsure = (lo <= torch.kthvalue(hi, k, dim=1).values[:, None]) & valid
            if K < n_avail:  # every other latent has a score <= the smallest kept one
                lb_out = lower_upper(score.masked_fill(~valid, inf).min(1, keepdim=True).values, r0, r1)[0][:, 0]
            else:
                lb_out = torch.full((r1 - r0,), inf, dtype=torch.float64, device=device)
            ref = torch.full(score.shape, inf, dtype=torch.float32, device=device)
            rr, cc = unsure.nonzero(as_tuple=True)
            ref[rr, cc] = pair_sqdist(xq, xd, rr + r0, cand_i[rr, cc], kernels)
            vals, idxs = _sorted_topk(ref, cand_i, k)
            out_idx[r0:r1], out_dist[r0:r1] = idxs, vals
            failed.append((lb_out <= vals[:, -1].double()).nonzero().squeeze(1) + r0)
    failed = torch.cat(failed)
    # Rows the screen could not certify: the same screen with a wider margin, then a float32 screen, then full
    # rows. The screen serves the wider margin as it is; otherwise its copies of the latents go first.
    wider = margin < 4 * DEFAULT_MARGIN
    handover = [db] if wider else None
    del db, qs, blocks
    if len(failed) and has_tiny is not None:
        small = out_dist[failed, min(k, 2) - 1] < tiny_dist
        if bool(small.any()) and has_tiny():
            failed = failed[~small]
    if len(failed) and (dtype != torch.float32 or wider):
        sub_idx, sub_dist, _, full_rows, _ = _exact_knn_scaled(
            xd, xq[failed], None if qidx is None else qidx[failed], k, dtype if wider else torch.float32,
            max(4 * margin, 4 * DEFAULT_MARGIN) if wider else margin, memory_budget_mb, device, mean=mean,
            offset=offset, screen=handover)
        out_idx[failed], out_dist[failed] = sub_idx, sub_dist
    else:
        full_rows = len(failed)
        for r in failed.tolist():
            full = pair_sqdist(xq, xd, torch.full((n,), r, device=device), torch.arange(n, device=device),
                               kernels)
            if qidx is not None:
                full[qidx[r]] = inf
            vals_r, idx_r = torch.sort(full, stable=True)
            out_dist[r], out_idx[r] = vals_r[:k], idx_r[:k]
    fallback_rows = len(failed)
    if fallback_rows:
        log.info("exact k-NN: %d of %d rows failed the %s screen certificate and were screened again",
                 fallback_rows, m, dtype)
    merges = "numba" if kernels else "torch.topk"
    return out_idx, out_dist, fallback_rows, full_rows, merges


def _tiny_rows_knn(xd: torch.Tensor, xq: torch.Tensor, qidx: Optional[torch.Tensor], rows: torch.Tensor,
                   k: int, reach: float, spread: float, **knn_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours of the query ``rows`` whose nearest distances fell below float32's normal range.

    Parameters
    ----------
    xd, xq : torch.Tensor, shape (n, d), (m, d)
        The unscaled data.
    rows : torch.Tensor, shape (r,)
        Query rows to search again.
    reach : float
        Distance (input units) within which every query's k nearest neighbours lie.
    spread : float
        Largest coordinate spread of the whole search; a sub-search must shrink it 2**16-fold, so nested
        sub-searches end.

    Returns
    -------
    indices, distances : torch.Tensor, shape (r, k)
        Distances in float32, input units.
    """
    q = xq[rows]
    low = q.amin(0).double() - reach
    high = q.amax(0).double() + reach
    inside = torch.empty(xd.shape[0], dtype=torch.bool, device=xd.device)
    step = max(1, 2 ** 18 // xd.shape[1])
    for r0 in range(0, xd.shape[0], step):
        chunk = xd[r0:r0 + step].double()
        inside[r0:r0 + step] = ((chunk >= low) & (chunk <= high)).all(1)
    cols = inside.nonzero().squeeze(1)  # ascending, so ties still go to the lower index
    if len(cols) < k + (qidx is not None):  # cannot happen (the reach holds k neighbours); stay safe
        cols = torch.arange(xd.shape[0], device=xd.device)
    own = None if qidx is None else torch.searchsorted(cols, qidx[rows])
    sub_db = xd[cols]
    sub_spread = _column_spread(sub_db, q)[0]
    if sub_spread < spread * 2.0 ** -16:  # a far tighter group: search it at its own scale
        sub = exact_knn(sub_db, k, queries=q, query_indices=own, **knn_kwargs)
        return cols[sub.indices], sub.distances
    idx, dist = _float64_knn(sub_db, q, own, k, knn_kwargs["memory_budget_mb"])
    return cols[idx], dist


def _float64_knn(xd: torch.Tensor, xq: torch.Tensor, qidx: Optional[torch.Tensor], k: int,
                 memory_budget_mb: float) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest database rows of each query by float64 squared distances from differences.

    float64 holds every squared difference of float32 values without under- or overflow. Ties go to the
    lower index. Returns indices (m, k) and float32 distances (m, k), input units.
    """
    n, dim = xd.shape
    m = xq.shape[0]
    budget = memory_budget_mb * 2 ** 20
    rows = max(1, min(m, int(budget // (32 * n))))          # (rows, n) distances, sorted copies
    cols = max(1, int(budget // (16 * dim * rows)))        # (rows, cols, d) differences
    out_idx = torch.empty(m, k, dtype=torch.int64, device=xd.device)
    out_dist = torch.empty(m, k, dtype=torch.float64, device=xd.device)
    for r0 in range(0, m, rows):
        r1 = min(r0 + rows, m)
        q = xq[r0:r1].double()[:, None, :]
        dist = torch.empty(r1 - r0, n, dtype=torch.float64, device=xd.device)
        for c0 in range(0, n, cols):
            dist[:, c0:c0 + cols] = (q - xd[c0:c0 + cols].double()[None]).square_().sum(2)
        if qidx is not None:
            dist[torch.arange(r1 - r0, device=xd.device), qidx[r0:r1]] = float("inf")
        vals, order = torch.sort(dist, dim=1, stable=True)
        out_dist[r0:r1], out_idx[r0:r1] = vals[:, :k], order[:, :k]
    return out_idx, out_dist.float()


def measure_recall(latents, indices, *, sample: int = 256, seed: int = 0, device=None,
                   memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> float:
    """Recall@k of a self-k-NN graph, against exact search on ``sample`` random queries.

    Parameters
    ----------
    latents : array-like, shape (n, d)
    indices : array-like of int, shape (n, k)
        The graph to check (self excluded).

    Returns
    -------
    float
        Mean over the sampled queries of |found & true| / k.
    """
    x = as_latents(latents, "latents", resolve_device(device))
    indices = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices))
    n, k = indices.shape
    rng = np.random.default_rng(seed)
    qi = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    truth = exact_knn(x, k, queries=x[torch.as_tensor(qi, device=x.device)], query_indices=qi,
                      memory_budget_mb=memory_budget_mb, device=x.device).indices.cpu().numpy()
    found = indices[qi].numpy()
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(found, truth))
    return hits / (len(qi) * k)


def approximate_knn(latents, k: int, *, recall_threshold: float = 0.95, on_low_recall: str = "fallback",
                    recall_sample: int = 256, seed: int = 0, params: Optional[dict] = None,
                    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None) -> KnnResult:
    """Approximate self-k-NN with pynndescent, its recall measured against exact search.

    Parameters
    ----------
    latents : array-like, shape (n, d)
    k : int
    recall_threshold : float
        Minimum acceptable measured recall@k.
    on_low_recall : {'fallback', 'warn'}
        Below the threshold: 'fallback' reruns the search exactly (and logs a warning); 'warn' returns
        the approximate graph with a warning.
    recall_sample : int
        Queries checked against exact search.
    params : dict, optional
        pynndescent.NNDescent keyword arguments overriding :data:`APPROX_PARAMS`.

    Returns
    -------
    KnnResult
        ``recall`` holds the measured recall@k of the approximate graph. Distances are float32 in the
        input's units (inf beyond float32's range), as :func:`exact_knn` reports them.
    """
    try:
        from pynndescent import NNDescent
    except ImportError as exc:  # pragma: no cover - pynndescent is a dependency
        raise HubnessError("backend='approx' needs pynndescent: pip install pynndescent") from exc
    if on_low_recall not in ("fallback", "warn"):
        raise HubnessError(f"on_low_recall must be 'fallback' or 'warn', got {on_low_recall!r}")
    if not (0 <= recall_threshold <= 1):
        raise HubnessError(f"Expected 0 <= recall_threshold <= 1, but recall_threshold = {recall_threshold}")
    t0 = time.perf_counter()
    x = as_latents(latents, "latents", torch.device("cpu"))
    n = x.shape[0]
    k = check_k(k, n)
    kw = dict(APPROX_PARAMS)
    kw.update(params or {})
    kw["n_neighbors"] = min(max(kw["n_neighbors"], k + 1), n)
    # pynndescent computes in float32 too: the same power-of-two scaling keeps its distances finite
    scale, _, constant = _data_scale(x)
    index = NNDescent(_scaled(x, scale, constant).numpy(), metric="euclidean", random_state=seed, verbose=False,
                      **kw)
    graph, dist = index.neighbor_graph
    graph = torch.as_tensor(graph.astype(np.int64))
    dist = (torch.as_tensor(dist.astype(np.float64)) ** 2 * 4.0 ** -scale).float()
    not_self = graph != torch.arange(n)[:, None]
    not_self &= graph >= 0
    # Keep the first k non-self entries of each row, nearest first.
    order = torch.argsort((~not_self).to(torch.int8), dim=1, stable=True)[:, :k]
    idx, dist = graph.gather(1, order), dist.gather(1, order)
    if bool((idx < 0).any()) or int(not_self.sum(1).min()) < k:
        recall = 0.0
    else:
        recall = measure_recall(x, idx, sample=recall_sample, seed=seed, memory_budget_mb=memory_budget_mb, device=device)
    info = dict(seconds=time.perf_counter() - t0, params=kw)
    if recall < recall_threshold:
        msg = (f"approximate k-NN recall@{k} = {recall:.3f} is below recall_threshold = {recall_threshold} "
               f"(n = {n}, d = {x.shape[1]})")
        if on_low_recall == "fallback":
            log.warning("%s; falling back to exact search", msg)
            result = exact_knn(x, k, memory_budget_mb=memory_budget_mb, device=device)
            result.recall = recall
            result.info.update(fallback_from_approx=True, approx_seconds=info["seconds"])
            return result
        log.warning("%s; results are approximate (pass on_low_recall='fallback' for exact)", msg)
    return KnnResult(idx, dist, "approx", recall, info)


def knn(latents, k: int, *, backend: str = "exact", device=None, **kwargs) -> KnnResult:
    """Self-k-NN of a pool with the chosen backend: 'exact', 'approx' or 'auto'.

    'auto' is the exact search: in every setting measured (512-d Gaussian latents and W of real mapping
    networks, up to 200,000 latents on a 2-core CPU, and on CUDA, where exact search of 1,000,000 latents
    takes seconds), NN-descent was slower than exact search or found fewer than 95% of the true neighbours
    (benchmarks/knn_auto.py; the README's k-NN backends section has the figures). Keyword arguments that
    only configure the approximate search (:data:`APPROX_ONLY_KWARGS`) are ignored under 'auto'.
    Extra keyword arguments go to :func:`exact_knn` or :func:`approximate_knn`.
    """
    if backend == "auto":
        backend = "exact"
        kwargs = {key: value for key, value in kwargs.items() if key not in APPROX_ONLY_KWARGS}
    if backend == "exact":
        return exact_knn(latents, k, device=device, **kwargs)
    if backend == "approx":
        return approximate_knn(latents, k, device=device, **kwargs)
    raise HubnessError(f"backend must be one of 'exact', 'approx', 'auto', got {backend!r}")
