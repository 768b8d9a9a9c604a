"""Hub values (k-occurrence) of a pool of latents, and the hubness statistics that describe them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from . import distributed as _distributed
from ._checks import HubnessError, as_latents, check_k, resolve_device
from .knn import KnnResult, knn


@dataclass
class HubnessResult:
    """Hub values of a pool.

    Attributes
    ----------
    m : np.ndarray, shape (n,), int64
        m[i] = number of k-NN lists that contain latent i. ``m.sum() == n * k``.
    neighbors : np.ndarray, shape (n, k), int64, or None
        Each latent's neighbours, nearest first (ties: lower index). Under ``include_self`` the first
        column is the latent itself. None when ``compute_hubness(neighbors=False)``.
    k : int
    include_self : bool
    backend : str
        'exact' or 'approx' (what actually ran).
    recall : float or None
        Measured recall@k of an approximate search; None when the search was exact.
    info : dict
        Diagnostics of the k-NN search.
    """

    m: np.ndarray
    neighbors: Optional[np.ndarray]
    k: int
    include_self: bool
    backend: str
    recall: Optional[float] = None
    info: dict = field(default_factory=dict)


def compute_hubness(latents, k: int = 5, *, include_self: bool = False, backend: str = "exact", device=None,
                    distributed: Optional[bool] = None, neighbors: bool = True, **knn_kwargs) -> HubnessResult:
    """Hub value of every latent of a pool.

    Parameters
    ----------
    latents : array-like, shape (n, d)
        The pool (W-space latents for StyleGAN, Z otherwise).
    k : int
        Size of each k-NN list, ``1 <= k < n``.
    include_self : bool
        False (default): the paper's definition, a latent is never its own neighbour. True: the
        convention of the authors' reference code (scikit-learn ``kneighbors_graph(X)``), where each
        query is its own first neighbour and contributes k-1 other neighbours; every m is then one
        larger than the paper's value at k-1. Thresholds from the authors' code assume True.
    backend : {'exact', 'approx', 'auto'}
        See :func:`extensions.knn.knn`.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    distributed : bool, optional
        Share the work between the processes of the ``torch.distributed`` group (see
        :mod:`extensions.distributed`): each rank searches the rows of its share and the counts are summed,
        equal bit for bit to one process's. Every rank must then call this with the same pool and options.
        None (default): when a group of more than one process is initialised. False: this process alone.
    neighbors : bool
        Keep the (n, k) neighbour lists; False skips gathering them across processes (``neighbors`` is
        then None).
    **knn_kwargs
        Passed to the k-NN backend (``memory_budget_mb``, ``precision``, ``recall_threshold``, ...).

    Returns
    -------
    HubnessResult
    """
    device = resolve_device(device)
    x = as_latents(latents, "latents", device)
    n = x.shape[0]
    k = check_k(k, n)
    k_others = k - 1 if include_self else k
    if _distributed.use_processes(distributed):
        shared = _distributed.shared_neighbors(x, k, include_self=include_self, backend=backend, neighbors=neighbors,
                                               device=device, **knn_kwargs)
        return HubnessResult(shared.counts, shared.neighbors, k, include_self, shared.backend, shared.recall,
                             shared.info)
    if k_others == 0:
        nbrs = torch.empty(n, 0, dtype=torch.int64)
        result = KnnResult(nbrs, torch.empty(n, 0), "exact")
    else:
        result = knn(x, k_others, backend=backend, device=device, **knn_kwargs)
        nbrs = result.indices.cpu()
    if include_self:
        nbrs = torch.cat([torch.arange(n)[:, None], nbrs], 1)
    nbrs = nbrs.numpy()
    m = np.bincount(nbrs.ravel(), minlength=n).astype(np.int64)
    return HubnessResult(m, nbrs if neighbors else None, k, include_self, result.backend, result.recall,
                         dict(result.info))


def hub_values(latents, k: int = 5, *, include_self: bool = False, return_neighbors: bool = False, **kwargs):
    """Hub values m (shape (n,), int64) of a pool; with ``return_neighbors`` also the (n, k) neighbours.

    Thin wrapper of :func:`compute_hubness`, which also reports the backend and measured recall.
    """
    res = compute_hubness(latents, k, include_self=include_self, neighbors=return_neighbors, **kwargs)
    return (res.m, res.neighbors) if return_neighbors else res.m


@dataclass
class HubnessStats:
    """Summary of a hub-value distribution, in scikit-hubness' terms.

    skewness : third standardised moment of m (k-occurrence skewness; > 0 means a long tail of hubs).
    hub_share : fraction of latents with m >= hub_size * k.
    antihub_share : fraction of latents with m == 0 (in no k-NN list).
    max : largest m.
    count_at_least : {t: number of latents with m >= t} for the thresholds asked for.
    """

    n: int
    k: int
    skewness: float
    hub_share: float
    antihub_share: float
    max: int
    hub_size: float
    count_at_least: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def hubness_stats(m, k: int, *, hub_size: float = 2.0, thresholds=(50,)) -> HubnessStats:
    """Statistics of hub values ``m`` (shape (n,)) computed with k-NN lists of size ``k``."""
    m = np.asarray(m)
    if m.ndim != 1 or m.size == 0:
        raise HubnessError(f"m must be a non-empty 1-d array of hub values, got shape {m.shape}")
    if hub_size <= 0:
        raise HubnessError(f"Expected hub_size > 0, but hub_size = {hub_size}")
    mf = m.astype(np.float64)
    centred = mf - mf.mean()
    sd = np.sqrt((centred ** 2).mean())
    skew = float((centred ** 3).mean() / sd ** 3) if sd > 0 else 0.0
    return HubnessStats(n=int(m.size), k=int(k), skewness=skew, hub_share=float((mf >= hub_size * k).mean()),
                        antihub_share=float((m == 0).mean()), max=int(m.max()), hub_size=float(hub_size),
                        count_at_least={t: int((m >= t).sum()) for t in thresholds})
