"""Samplers: turn a stream of pools into the latents a user asked for, behind one interface.

=============  ==========================================================================================
``random``     the first N latents of the pools, in order (the official behaviour)
``truncation`` the same latents moved towards a mean latent: ``mean + psi * (w - mean)``
``hubness``    latents with hub value m >= t, highest m first (paper Algorithm 1 and section 4.4: take the
               top N of a pool when it holds enough, else keep every m >= t and draw further pools);
               or, with ``top=q``, the q largest m of each pool
``hubness-lq`` latents with m <= t_lq, lowest m first (paper Algorithm 2)
=============  ==========================================================================================

Example
-------
>>> pools = SeedPools(z_dim=512, pool_size=10000, transform=mapping_to_w)   # doctest: +SKIP
>>> chosen = make_sampler("hubness", k=5, t=50).sample(pools, 64)          # doctest: +SKIP
>>> chosen.latents.shape, chosen.seeds[:3], chosen.m[:3]                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

import numpy as np
import torch

from ._checks import HubnessError, ThresholdUnreachableError, check_count, check_threshold
from .hubness import compute_hubness
from .pools import Pool
from .selection import select_low_quality, select_threshold, spectrum_ranks

log = logging.getLogger(__name__)

SAMPLERS: dict[str, type["Sampler"]] = {}


def register_sampler(cls):
    """Class decorator: make a sampler available to :func:`make_sampler` under ``cls.name``."""
    SAMPLERS[cls.name] = cls
    return cls


def make_sampler(name: str, **params) -> "Sampler":
    """Sampler ``name`` ('random', 'truncation', 'hubness', 'hubness-lq') with its parameters."""
    if name not in SAMPLERS:
        raise HubnessError(f"unknown sampler {name!r}; choose one of {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name](**params)


@dataclass
class PoolRecord:
    """What a sampler did with one pool: every seed, its hub value and rank, and whether it was chosen.

    ``m`` and ``rank`` are None for samplers that compute no hub values. ``rank`` 1 = highest m.
    """

    index: int
    seeds: np.ndarray
    chosen: np.ndarray
    m: Optional[np.ndarray] = None
    rank: Optional[np.ndarray] = None
    stats: dict = field(default_factory=dict)


@dataclass
class Selection:
    """Latents chosen by a sampler, in output order.

    Attributes
    ----------
    latents : torch.Tensor, shape (N, d)
        In the sampling space (W or Z), truncation applied where asked.
    z : torch.Tensor, shape (N, z_dim)
    seeds : np.ndarray, shape (N,), int64
    m : np.ndarray, shape (N,), or None
    pool_index : np.ndarray, shape (N,)
    records : list of PoolRecord
        One per pool drawn.
    sampler : dict
        Name and parameters of the sampler, for provenance.
    """

    latents: torch.Tensor
    z: torch.Tensor
    seeds: np.ndarray
    m: Optional[np.ndarray]
    pool_index: np.ndarray
    records: list
    sampler: dict


def truncate(latents: torch.Tensor, mean, psi: float) -> torch.Tensor:
    """The truncation trick: ``mean + psi * (latents - mean)``; ``mean`` has shape (d,)."""
    if psi == 1:
        return latents
    if mean is None:
        raise HubnessError("truncation needs the mean latent (for StyleGAN: G.mapping.w_avg)")
    mean = torch.as_tensor(mean, dtype=latents.dtype, device=latents.device).reshape(1, -1)
    if mean.shape[1] != latents.shape[1]:
        raise HubnessError(f"mean latent has dimension {mean.shape[1]} but latents have {latents.shape[1]}")
    return mean + psi * (latents - mean)


def _check_psi(psi) -> float:
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not np.isfinite(psi):
        raise HubnessError(f"psi must be a finite number, got {psi!r}")
    return float(psi)


class Sampler:
    """Base class. Subclasses set ``name`` and implement :meth:`choose`."""

    name: ClassVar[str] = ""
    computes_hub_values: ClassVar[bool] = False

    def __init__(self, *, psi: float = 1.0, mean=None, max_pools: int = 50):
        self.psi = _check_psi(psi)
        self.mean = mean
        self.max_pools = check_count(max_pools, "max_pools")
        if self.psi != 1 and mean is None:
            raise HubnessError(f"psi = {self.psi} needs the mean latent (for StyleGAN: G.mapping.w_avg)")

    def params(self) -> dict:
        return dict(psi=self.psi)

    def describe(self) -> dict:
        """Name and parameters, JSON-serialisable."""
        return dict(sampler=self.name, **self.params())

    def choose(self, pool: Pool, remaining: int) -> tuple[np.ndarray, Optional[np.ndarray], dict]:
        """Indices into ``pool`` to output (at most ``remaining``), the pool's hub values or None, stats."""
        raise NotImplementedError

    def sample(self, pools, num: Optional[int], *, progress: Optional[Callable[[Pool], None]] = None) -> Selection:
        """Draw pools ``pools.draw(0), pools.draw(1), ...`` until ``num`` latents are chosen.

        Parameters
        ----------
        pools : object with ``draw(index) -> Pool`` (e.g. :class:`extensions.pools.SeedPools`)
        num : int or None
            None: every latent the first pool yields (at least one), and no further pool.
        progress : callable, optional
            ``progress(pool, record, collected)`` after each pool: the pool, its :class:`PoolRecord` and the
            number of latents chosen so far.

        Raises
        ------
        ThresholdUnreachableError
            When ``max_pools`` pools did not yield ``num`` latents (``num=None``: the first pool yielded none).
        """
        whole_pool = num is None
        num = None if whole_pool else check_count(num, "num")
        picks, records = [], []
        collected = 0
        largest_m = None
        for index in range(1 if whole_pool else self.max_pools):
            pool = pools.draw(index)
            remaining = len(pool.seeds) if whole_pool else num - collected
            idx, m, stats = self.choose(pool, remaining)
            idx = np.asarray(idx, dtype=np.int64)[:remaining]
            chosen = np.zeros(len(pool.seeds), dtype=bool)
            chosen[idx] = True
            records.append(PoolRecord(pool.index, pool.seeds, chosen, m, None if m is None else spectrum_ranks(m), stats))
            if m is not None:
                largest_m = int(m.max()) if largest_m is None else max(largest_m, int(m.max()))
            # Keep only the chosen rows, not the pool: a metric may walk hundreds of pools.
            rows = torch.as_tensor(idx, device=pool.latents.device)
            picks.append((Pool(pool.index, pool.seeds[idx], pool.z[rows.to(pool.z.device)], pool.latents[rows]),
                          None if m is None else m[idx]))
            collected += len(idx)
            if progress is not None:
                progress(pool, records[-1], collected)
            if not whole_pool and collected >= num:
                break
            if collected == 0 and index + 1 >= 3 and self.computes_hub_values:
                break  # three pools without a single match: the criterion is out of reach
        if collected < (1 if whole_pool else num):
            found = (f"found no latents among {len(records[0].seeds)}" if whole_pool else
                     f"collected {collected} of {num} latents after {len(records)} pool(s) of {len(records[0].seeds)}")
            raise ThresholdUnreachableError(f"{self.name} sampler {found} ({self.criterion()}; largest m seen: "
                                            f"{largest_m}); {self.advice()}")
        latents = torch.cat([p.latents for p, _ in picks])
        z = torch.cat([p.z for p, _ in picks])
        seeds = np.concatenate([p.seeds for p, _ in picks])
        m = None if picks[0][1] is None else np.concatenate([mm for _, mm in picks])
        pool_index = np.concatenate([np.full(len(p.seeds), p.index) for p, _ in picks])
        return Selection(truncate(latents, self.mean, self.psi), z, seeds, m, pool_index, records, self.describe())

    def criterion(self) -> str:
        return "no criterion"

    def advice(self) -> str:
        return "raise max_pools"


@register_sampler
class RandomSampler(Sampler):
    """The pools' latents in order, untouched (psi = 1)."""

    name = "random"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def choose(self, pool, remaining):
        return np.arange(min(remaining, len(pool.seeds))), None, {}


@register_sampler
class TruncationSampler(RandomSampler):
    """The pools' latents in order, truncated towards ``mean`` with factor ``psi``."""

    name = "truncation"

    def __init__(self, psi: float = 0.7, mean=None, **kwargs):
        if mean is None:
            raise HubnessError("the truncation sampler needs the mean latent (for StyleGAN: G.mapping.w_avg)")
        super().__init__(psi=psi, mean=mean, **kwargs)


class _HubSampler(Sampler):
    computes_hub_values = True

    def __init__(self, k: int = 5, *, include_self: bool = False, backend: str = "exact", device=None,
                 knn_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise HubnessError(f"Expected k >= 1, but k = {k!r}")
        self.k = int(k)
        self.include_self = bool(include_self)
        self.backend = backend
        self.device = device
        self.knn_kwargs = dict(knn_kwargs or {})

    def params(self):
        return dict(super().params(), k=self.k, include_self=self.include_self, backend=self.backend)

    def hubness(self, pool: Pool):
        res = compute_hubness(pool.latents, self.k, include_self=self.include_self, backend=self.backend,
                              device=self.device, **self.knn_kwargs)
        stats = dict(backend=res.backend, recall=res.recall, max_m=int(res.m.max()))
        log.info("pool %d: %d latents, k = %d, max m = %d, backend %s%s", pool.index, len(res.m), self.k,
                 stats["max_m"], res.backend, "" if res.recall is None else f", recall {res.recall:.3f}")
        return res.m, stats


@register_sampler
class HubnessSampler(_HubSampler):
    """High-quality latents: hub value m >= t (or the ``top`` largest m of each pool).

    Parameters
    ----------
    k : int
        k-NN list size (paper: 5).
    t : float
        Hub-value threshold (paper: 50). Ignored when ``top`` is given.
    top : int, optional
        Take the ``top`` largest hub values of every pool instead of thresholding.
    psi, mean : truncation applied to the chosen latents (psi = 1: none).
    include_self, backend, device, knn_kwargs : see :func:`extensions.hubness.compute_hubness`.
    max_pools : int
        Pools drawn at most before giving up.
    """

    name = "hubness"

    def __init__(self, k: int = 5, t: float = 50, top: Optional[int] = None, **kwargs):
        super().__init__(k, **kwargs)
        self.t = check_threshold(t)
        self.top = None if top is None else check_count(top, "top")

    def params(self):
        extra = dict(top=self.top) if self.top is not None else dict(t=self.t)
        return dict(super().params(), **extra)

    def choose(self, pool, remaining):
        m, stats = self.hubness(pool)
        if self.top is not None:
            idx = select_threshold(m, 0)[: min(self.top, remaining)]
        else:
            idx = select_threshold(m, self.t)[:remaining]
        stats["matches"] = len(idx)
        return idx, m, stats

    def criterion(self):
        return f"top {self.top} per pool" if self.top is not None else f"m >= {self.t:g}, k = {self.k}"

    def advice(self):
        return "lower t, use a larger pool, raise max_pools, or take the N largest hub values instead"


@register_sampler
class LowQualitySampler(_HubSampler):
    """Low-quality latents: hub value m <= t_lq (paper Algorithm 2), lowest m first."""

    name = "hubness-lq"

    def __init__(self, k: int = 5, t_lq: float = 1, **kwargs):
        super().__init__(k, **kwargs)
        self.t_lq = check_threshold(t_lq, "t_lq")

    def params(self):
        return dict(super().params(), t_lq=self.t_lq)

    def choose(self, pool, remaining):
        m, stats = self.hubness(pool)
        idx = select_low_quality(m, self.t_lq)[:remaining]
        stats["matches"] = len(idx)
        return idx, m, stats

    def criterion(self):
        return f"m <= {self.t_lq:g}, k = {self.k}"

    def advice(self):
        return "raise t_lq, use a larger pool, or raise max_pools"
