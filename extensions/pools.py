"""Pools of latents drawn from integer seeds, exactly as stylegan3's ``gen_images.py`` draws them.

Latent i of a pool is ``np.random.RandomState(seed_i).randn(1, z_dim)``: a seed chosen by any sampler
renders the same image with the official ``gen_images.py --seeds=<seed>``. Pool 0 holds the seeds the
caller gives (default ``range(start, start + pool_size)``); pool p > 0 holds the next ``pool_size``
unused seeds, counting up from one past the largest seed of pool 0. A pool is a pure function of its
index, so every sampler that walks pools in order is deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ._checks import HubnessError, NonFiniteError, check_count, resolve_device

MAX_SEED = 2 ** 32 - 1  # numpy RandomState accepts seeds in [0, 2**32)


def seed_latents(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """Z latents of ``seeds`` as ``gen_images.py`` draws them, shape (len(seeds), z_dim), float64."""
    z_dim = check_count(z_dim, "z_dim")
    out = np.empty((len(seeds), z_dim), dtype=np.float64)
    for row, seed in enumerate(seeds):
        out[row] = np.random.RandomState(int(seed)).randn(1, z_dim)[0]
    return out


@dataclass
class Pool:
    """One pool of latents.

    Attributes
    ----------
    index : int
        Position in the stream of pools.
    seeds : np.ndarray, shape (n,), int64
    z : torch.Tensor, shape (n, z_dim), float32
    latents : torch.Tensor, shape (n, d), float32
        The space where hub values are computed and outputs are taken (W for StyleGAN, else Z).
    """

    index: int
    seeds: np.ndarray
    z: torch.Tensor
    latents: torch.Tensor


class SeedPools:
    """A deterministic stream of pools made from consecutive seeds.

    Parameters
    ----------
    z_dim : int
    pool_size : int, optional
        Latents per pool. Default: ``len(seeds)`` when seeds are given, else 10000.
    seeds : sequence of int, optional
        Seeds of pool 0 (e.g. the ``--seeds`` of gen_images).
    start : int
        First seed of pool 0 when ``seeds`` is None.
    transform : callable, optional
        Maps a batch of z (b, z_dim) on ``device`` to latents (b, d), e.g. a mapping network to W.
        Default: identity (Z space).
    batch_size : int
        Latents per call of ``transform``.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    progress : callable, optional
        ``progress(done, total)`` after each transform batch.
    sample_z : callable, optional
        ``sample_z(seeds) -> (n, z_dim)`` array: the z of each seed for generators that draw their latents
        otherwise (BigGAN's truncated normal). Default: :func:`seed_latents`.
    """

    def __init__(self, z_dim: int, pool_size: Optional[int] = None, *, seeds: Optional[Sequence[int]] = None,
                 start: int = 0, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 batch_size: int = 1024, device=None, progress: Optional[Callable[[int, int], None]] = None,
                 sample_z: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.z_dim = check_count(z_dim, "z_dim")
        if seeds is not None:
            seeds = np.asarray(list(seeds), dtype=np.int64)
            if seeds.ndim != 1 or seeds.size == 0:
                raise HubnessError("seeds must be a non-empty list of integers")
            if seeds.min() < 0 or seeds.max() > MAX_SEED:
                raise HubnessError(f"seeds must lie in [0, {MAX_SEED}], got {int(seeds.min())}..{int(seeds.max())}")
            if np.unique(seeds).size != seeds.size:
                raise HubnessError("seeds contain duplicates; each seed may appear once in a pool")
        self.pool_size = check_count(pool_size if pool_size is not None else (len(seeds) if seeds is not None else 10000),
                                     "pool_size")
        if seeds is None:
            if self.pool_size > MAX_SEED + 1:
                raise HubnessError(f"a pool of {self.pool_size} seeds is more than the 2**32 seeds there are; use a "
                                   f"smaller pool size")
            if start < 0 or start + self.pool_size - 1 > MAX_SEED:
                raise HubnessError(f"a pool of {self.pool_size} seeds from seed {start} needs seeds in [0, {MAX_SEED}]; "
                                   f"start at a seed in [0, {MAX_SEED - self.pool_size + 1}]")
            seeds = np.arange(start, start + self.pool_size, dtype=np.int64)
        self.first_seeds = seeds
        self.next_seed = int(seeds.max()) + 1
        self.transform = transform
        self.batch_size = check_count(batch_size, "batch_size")
        self.device = resolve_device(device)
        self.progress = progress
        self.sample_z = sample_z

    def seeds_for(self, index: int) -> np.ndarray:
        """Seeds of pool ``index``."""
        if index < 0:
            raise HubnessError(f"pool index must be >= 0, got {index}")
        if index == 0:
            return self.first_seeds
        first = self.next_seed + (index - 1) * self.pool_size
        if first + self.pool_size - 1 > MAX_SEED:
            raise HubnessError(f"pool {index} would need seeds beyond {MAX_SEED}; use smaller --seeds or a smaller "
                               f"--pool-size")
        return np.arange(first, first + self.pool_size, dtype=np.int64)

    def draw(self, index: int) -> Pool:
        """Pool ``index``: its seeds, z and latents."""
        seeds = self.seeds_for(index)
        z = seed_latents(seeds, self.z_dim) if self.sample_z is None else np.asarray(self.sample_z(seeds))
        z = torch.from_numpy(z).to(self.device, torch.float32)
        if self.transform is None:
            latents = z
        else:
            parts = []
            with torch.no_grad():
                for start in range(0, len(seeds), self.batch_size):
                    parts.append(self.transform(z[start:start + self.batch_size]).to(torch.float32))
                    if self.progress is not None:
                        self.progress(min(start + self.batch_size, len(seeds)), len(seeds))
            latents = torch.cat(parts)
            if latents.ndim != 2 or latents.shape[0] != len(seeds):
                raise HubnessError(f"transform must map (b, z_dim) to (b, d), got {tuple(latents.shape)} "
                                   f"for {len(seeds)} latents")
            bad = ~torch.isfinite(latents).all(dim=1)
            if bool(bad.any()):
                rows = bad.nonzero()[:, 0]
                seed = int(seeds[int(rows[0])])
                raise NonFiniteError(f"the transform returned NaN or inf for {len(rows)} of {len(seeds)} latents of "
                                     f"pool {index}, the first at seed {seed}", seed)
        return Pool(index, seeds, z, latents)


def pool_bytes(n: int, z_dim: int, d: int, *, hub: bool) -> int:
    """Peak memory of one pool of ``n`` latents: z in float64 and float32, the latents (and their mapped
    batches), and with ``hub`` the k-NN screen's working copies (two rows of (d + 16) per latent, at most
    float32) and per-row candidate lists."""
    per = z_dim * 12 + d * 8 + ((2 * (d + 16) * 4 + 3 * 8 + 32 * 12) if hub else 0)
    return int(n) * per


def available_memory(device=None) -> Optional[int]:
    """Bytes free for a new allocation on ``device`` (host memory for the CPU), or None when unknown."""
    device = resolve_device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def check_pool_memory(n: int, z_dim: int, d: int, *, hub: bool, device=None, fraction: float = 0.5,
                      option: str = "--seeds") -> None:
    """Refuse a pool that would take more than ``fraction`` of the memory available, before allocating it;
    ``option`` is what set its size (--seeds, or --pool-size for the further pools).

    Raises
    ------
    HubnessError
        Naming the pool size, the estimate, what is available and the way around it.
    """
    need = pool_bytes(n, z_dim, d, hub=hub)
    free = available_memory(device)
    if free is not None and need > fraction * free:
        fits = max(2, int(fraction * free // max(1, pool_bytes(1, z_dim, d, hub=hub))))
        where = "the GPU" if resolve_device(device).type == "cuda" else "this machine"
        advice = ("use fewer --seeds, e.g. --seeds 0-9999 --num N, which draws further pools of --pool-size seeds "
                  "as needed" if option == "--seeds" else f"use a smaller {option}")
        raise HubnessError(f"a pool of {n:,} latents needs about {_gib(need)} but {where} has {_gib(free)} "
                           f"available (pools of at most about {fits:,} fit); {advice}")
