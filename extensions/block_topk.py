"""CPU kernels that merge a block of screen scores into running top-K lists, row-wise and column-wise.

``torch.topk`` on the CPU costs about 1 ns per score along rows and 3 ns along columns (it copies each
strided column out), about as much as the block's bfloat16 GEMM. These numba kernels read the block once
for its rows and its columns: a vectorised pass takes the maxima of groups of scores (interleaved groups
along a row, runs of rows down a column), and only the groups whose maximum beats the list's current K-th
score, and reaches a bound that at least K of the line's scores reach, are searched entry by entry into a
K-entry min-heap. That is the same top-K as ``torch.topk``, exactly (the tests compare them). The loops
run over 1-d row slices, which numba vectorises (2-d indexing in the inner loop ran 4x slower).

Scores are compared through an order-preserving integer key of their bit pattern (``v`` for ``v >= 0``,
``v ^ 0x7f..f`` for ``v < 0``), which makes one kernel serve bfloat16 (int16 view) and float32 (int32 view)
and is its own inverse. Ties between equal scores may keep either entry, as ``torch.topk`` does; callers
certify their candidates for that. NaN scores are not supported (the search never makes one).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

#: Groups per row: each row's candidates come from the groups holding its K-th largest group maximum or more.
_GROUPS = 256
#: A row's bound from its group maxima is computed only where more than this many times K groups beat the
#: list's K-th score (lists still filling, or a block far nearer than what the list has seen).
_BOUND_MIN = 2
#: Rows per run along a column, and columns per stripe (one thread's share of the column pass).
_ROWS = 16
_STRIPE = 512

try:
    import numba
except ImportError:  # pragma: no cover - numba comes with pynndescent, an install requirement
    numba = None

# integer view, key mask, sign shift, smallest key (typed, so that the scan stays in narrow SIMD lanes)
_INT_VIEW = {torch.bfloat16: (torch.int16, np.int16(0x7FFF), np.int16(15), np.int16(-2 ** 15)),
             torch.float32: (torch.int32, np.int32(0x7FFFFFFF), np.int32(31), np.int32(-2 ** 31))}


_loaded = False  # whether a kernel has run in this process (numba's start-up, about 0.3 s, is paid)


def loaded() -> bool:
    """Whether the kernels have run in this process, so that running them again costs no start-up."""
    return _loaded


def available(dtype: torch.dtype) -> bool:
    """Whether the kernels can merge scores of ``dtype`` here (numba importable, bfloat16 or float32)."""
    return numba is not None and dtype in _INT_VIEW


if numba is not None:
    def _kernel(fn):
        """A parallel kernel, compiled once per machine where numba finds a writable cache (beside this
        module, else its user-wide folder), else once per process."""
        try:
            return numba.njit(parallel=True, cache=True, nogil=True)(fn)
        except RuntimeError:  # no cache location: numba refuses cache=True when decorating
            log.debug("numba has no writable cache: the CPU merge kernels compile in each process")
            return numba.njit(parallel=True, nogil=True)(fn)

    @numba.njit(inline="always")
    def _sift_down(keys, idx, pos):
        """Restore the min-heap property of (keys, idx) below ``pos``."""
        n = keys.shape[0]
        key, ind = keys[pos], idx[pos]
        while True:
            child = 2 * pos + 1
            if child >= n:
                break
            if child + 1 < n and keys[child + 1] < keys[child]:
                child += 1
            if keys[child] >= key:
                break
            keys[pos], idx[pos] = keys[child], idx[child]
            pos = child
        keys[pos], idx[pos] = key, ind

    @numba.njit(inline="always")
    def _load_heap(best_s, best_i, row, mask, keys, idx):
        K = keys.shape[0]
        for j in range(K):
            v = best_s[row, j]
            keys[j] = v if v >= 0 else v ^ mask
            idx[j] = best_i[row, j]
        for pos in range(K // 2 - 1, -1, -1):
            _sift_down(keys, idx, pos)

    @numba.njit(inline="always")
    def _store_heap(best_s, best_i, row, mask, keys, idx):
        for j in range(keys.shape[0]):
            key = keys[j]
            best_s[row, j] = key if key >= 0 else key ^ mask
            best_i[row, j] = idx[j]

    @numba.njit(inline="always")
    def _kth_largest(values, K, keys, idx, lowest):
        """The K-th largest of ``values`` (``lowest`` if there are fewer), with a min-heap in (keys, idx)."""
        n = values.shape[0]
        if n < K:
            return lowest
        for j in range(K):
            keys[j] = values[j]
        for pos in range(K // 2 - 1, -1, -1):
            _sift_down(keys, idx, pos)
        for j in range(K, n):
            if values[j] > keys[0]:
                keys[0] = values[j]
                _sift_down(keys, idx, 0)
        return keys[0]

    @numba.njit(inline="always")
    def _merge_row(s, r, offset, best_s, best_i, row, mask, shift, lowest):
        """Merge row ``r`` of ``s`` into list ``row`` of (best_s, best_i)."""
        W = s.shape[1]
        K = best_s.shape[1]
        # Group g of a row holds its entries g, g + G, g + 2G, ...: the group maxima are an element-wise
        # maximum of the row's consecutive segments of G entries (vectorised, no horizontal reduction).
        G = min(W, _GROUPS)
        keys = np.empty(K, dtype=s.dtype)
        idx = np.empty(K, dtype=np.int64)
        top = np.empty(G, dtype=s.dtype)
        _load_heap(best_s, best_i, row, mask, keys, idx)
        line = s[r]  # one row: a 1-d slice, which the loops below vectorise (2-d indexing does not)
        for g in range(G):
            v = line[g]
            top[g] = v ^ ((v >> shift) & mask)
        for j0 in range(G, W, G):
            segment = line[j0:j0 + G]
            for g in range(segment.shape[0]):
                v = segment[g]
                key = v ^ ((v >> shift) & mask)
                top[g] = key if key > top[g] else top[g]
        # At least K entries reach the K-th largest group maximum: no smaller entry is a candidate. That
        # bound costs a heap pass over the groups, worth it only where many groups beat the list's K-th.
        floor = keys[0]
        beating = 0
        for g in range(G):
            beating += top[g] > floor
        bound = lowest
        if beating > _BOUND_MIN * K:
            bound = _kth_largest(top, K, np.empty(K, dtype=s.dtype), np.empty(K, dtype=np.int64), lowest)
        for g in range(G):
            if top[g] >= bound and top[g] > keys[0]:
                for j in range(g, W, G):
                    v = line[j]
                    key = v ^ ((v >> shift) & mask)
                    if key >= bound and key > keys[0]:
                        keys[0], idx[0] = key, offset + j
                        _sift_down(keys, idx, 0)
        _store_heap(best_s, best_i, row, mask, keys, idx)

    @numba.njit(inline="always")
    def _run_maxima(s, q, runmax, mask, shift):
        """``runmax[q]``: each column's largest key over rows ``q * _ROWS`` to ``q * _ROWS + _ROWS - 1``."""
        R, W = s.shape
        r0 = q * _ROWS
        out = runmax[q]
        line = s[r0]
        for c in range(W):
            v = line[c]
            out[c] = v ^ ((v >> shift) & mask)
        for r in range(r0 + 1, min(r0 + _ROWS, R)):
            line = s[r]
            for c in range(W):
                v = line[c]
                key = v ^ ((v >> shift) & mask)
                out[c] = key if key > out[c] else out[c]

    @numba.njit(inline="always")
    def _merge_stripe(s, t, runmax, offset, best_s, best_i, mask, shift, lowest, bounded):
        """Merge columns ``t * _STRIPE`` onwards (one stripe) into their lists, given the run maxima.

        Each column searches only the runs whose maximum beats its list's K-th score, which rises as the
        stripe is merged. ``bounded`` (lists still filling, whose K-th score is -inf): also skip the runs
        below a bound that at least K of the column's scores reach, taken from the run maxima.
        """
        R, W = s.shape
        K = best_s.shape[1]
        runs = runmax.shape[0]
        c0 = t * _STRIPE
        width = min(c0 + _STRIPE, W) - c0
        keys = np.empty((width, K), dtype=s.dtype)
        idx = np.empty((width, K), dtype=np.int64)
        kth = np.empty(width, dtype=s.dtype)
        bound = np.full(width, lowest, dtype=s.dtype)
        for c in range(width):
            _load_heap(best_s, best_i, c0 + c, mask, keys[c], idx[c])
            kth[c] = keys[c, 0]
        if bounded and runs >= K:
            # The K-th largest run maximum of each column: at least K entries reach it. The K largest are
            # kept sorted by a compare-exchange pass per run, element-wise over the stripe (vectorised).
            ranked = np.empty((K, width), dtype=s.dtype)
            for p in range(K):
                ranked[p] = lowest
            for q in range(runs):
                carry = runmax[q, c0:c0 + width].copy()
                for p in range(K):
                    slot = ranked[p]
                    for c in range(width):
                        a, b = slot[c], carry[c]
                        slot[c] = a if a > b else b
                        carry[c] = b if a > b else a
            bound[:] = ranked[K - 1]
        # In row order, so that a run's rows of the stripe stay in cache: the runs each column needs.
        for q in range(runs):
            r0 = q * _ROWS
            maxima = runmax[q, c0:c0 + width]
            for c in range(width):
                m = maxima[c]
                if m >= bound[c] and m > kth[c]:
                    for r in range(r0, min(r0 + _ROWS, R)):
                        v = s[r, c0 + c]
                        key = v ^ ((v >> shift) & mask)
                        if key >= bound[c] and key > kth[c]:
                            keys[c, 0], idx[c, 0] = key, offset + r
                            _sift_down(keys[c], idx[c], 0)
                            kth[c] = keys[c, 0]
        for c in range(width):
            _store_heap(best_s, best_i, c0 + c, mask, keys[c], idx[c])

    @_kernel
    def _merge_rows_kernel(s, offset, best_s, best_i, mask, shift, lowest):
        for r in numba.prange(s.shape[0]):
            _merge_row(s, r, offset, best_s, best_i, r, mask, shift, lowest)

    @_kernel
    def _merge_both_kernel(s, row_offset, row_s, row_i, col_offset, col_s, col_i, mask, shift, lowest, bounded):
        R, W = s.shape
        runmax = np.empty(((R + _ROWS - 1) // _ROWS, W), dtype=s.dtype)
        for q in numba.prange(runmax.shape[0]):
            for r in range(q * _ROWS, min(q * _ROWS + _ROWS, R)):
                _merge_row(s, r, row_offset, row_s, row_i, r, mask, shift, lowest)
            _run_maxima(s, q, runmax, mask, shift)  # the run's rows are still in cache
        for t in numba.prange((W + _STRIPE - 1) // _STRIPE):
            _merge_stripe(s, t, runmax, col_offset, col_s, col_i, mask, shift, lowest, bounded)


def _int_views(s: torch.Tensor, best_s: torch.Tensor, best_i: torch.Tensor):
    if s.device.type != "cpu" or s.dtype != best_s.dtype or not available(s.dtype):
        raise ValueError(f"the kernels merge CPU bfloat16 or float32 scores, got {s.dtype} on {s.device}")
    if not (best_s.is_contiguous() and best_i.is_contiguous() and best_i.dtype == torch.int64):
        raise ValueError("best_s and best_i must be contiguous, best_i int64")
    # as many threads as torch's CPU ops use (torch.set_num_threads), at most numba's pool
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    int_dtype, mask, shift, lowest = _INT_VIEW[s.dtype]
    return s.view(int_dtype).numpy(), best_s.view(int_dtype).numpy(), best_i.numpy(), mask, shift, lowest


def merge_rows_(s: torch.Tensor, offset: int, best_s: torch.Tensor, best_i: torch.Tensor) -> None:
    """Merge each row of a score block into its running top-K list, in place.

    Parameters
    ----------
    s : torch.Tensor, shape (R, W), bfloat16 or float32, CPU
        Scores of R rows against W columns; column ``j`` has index ``offset + j``. Rows may be strided.
    offset : int
    best_s : torch.Tensor, shape (R, K), dtype of ``s``, contiguous
        The K largest scores of each row so far (any order; ``-inf`` for empty slots); updated.
    best_i : torch.Tensor, shape (R, K), int64, contiguous
        Their column indices; updated.
    """
    ss, bs, bi, *key = _int_views(s, best_s, best_i)
    if s.shape[0] != best_s.shape[0]:
        raise ValueError(f"{s.shape[0]} rows of scores for {best_s.shape[0]} lists")
    if s.numel() == 0:
        return
    _merge_rows_kernel(ss, int(offset), bs, bi, *key)
    _set_loaded()


def merge_both_(s: torch.Tensor, row_offset: int, row_s: torch.Tensor, row_i: torch.Tensor, col_offset: int,
                col_s: torch.Tensor, col_i: torch.Tensor) -> None:
    """Merge each row of a score block into its list (:func:`merge_rows_`) and each column into its own, in
    place, reading the block once.

    Parameters
    ----------
    s : torch.Tensor, shape (R, W), bfloat16 or float32, CPU
    row_offset : int
        Index of column 0 in the row lists.
    row_s, row_i : torch.Tensor, shape (R, K)
        The rows' lists, as in :func:`merge_rows_`.
    col_offset : int
        Index of row 0 in the column lists.
    col_s, col_i : torch.Tensor, shape (W, K)
        The columns' lists: the K largest scores of each column so far, and their row indices.
    """
    ss, bs, bi, *key = _int_views(s, row_s, row_i)
    _, cs, ci, *_ = _int_views(s, col_s, col_i)
    if s.shape[0] != row_s.shape[0] or s.shape[1] != col_s.shape[0]:
        raise ValueError(f"a {tuple(s.shape)} block of scores for {row_s.shape[0]} row and {col_s.shape[0]} "
                         f"column lists")
    if s.numel() == 0:
        return
    # Lists still filling (empty slots) need a bound from the block itself; full ones (after a first block
    # of rows) have K-th scores that few new scores beat, a cheaper filter.
    bounded = bool(torch.isneginf(col_s).any())
    _merge_both_kernel(ss, int(row_offset), bs, bi, int(col_offset), cs, ci, *key, bounded)
    _set_loaded()


def _set_loaded() -> None:
    global _loaded
    _loaded = True
