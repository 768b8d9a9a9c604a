"""Detector features of generated images whose latents come from any sampler.

stylegan3's metric loop draws ``torch.randn`` latents itself. Here a sampler (random, truncation,
hubness, hubness-lq) chooses the latents from deterministic pools of seeds (:class:`extensions.pools.SeedPools`,
latent i = ``RandomState(seed_i).randn(z_dim)`` as ``gen_images.py`` draws it); hub samplers draw pools
until they hold as many latents as the metric needs. The chosen latents are synthesised in batches,
converted to uint8 as stylegan3 converts them, and fed to the detector; features go to a sink that
stylegan3's ``FeatureStats`` can be (``append_torch``, ``is_full``) or are returned as one tensor.

StyleGAN generators sample in W (the first row of the mapping output, truncation_psi = 1) and
synthesise from the chosen W with stylegan3's metric default ``noise_mode='random'``, its noise drawn
from a torch generator seeded by the same seed, so a run is repeatable. Other generators sample in Z;
BigGAN draws each seed's z as its package does and renders with the spec's psi (see
:mod:`extensions.generators.biggan`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from .._checks import check_count, non_finite_pixels, resolve_device
from ..distributed import is_active
from ..pools import Pool, SeedPools
from ..samplers import Selection, make_sampler
from ..stylegan.adapter import NOISE_MODES, GeneratorAdapter, StyleGANAdapter, make_adapter
from ..stylegan.generate import HUB_SAMPLERS
from .errors import MetricError

log = logging.getLogger(__name__)

#: Parameters each sampler takes from a :class:`SamplerSpec` (besides psi, the truncation factor).
_SAMPLER_PARAMS = {
    "random": (),
    "truncation": (),
    "hubness": ("k", "t", "top", "include_self", "backend"),
    "hubness-lq": ("k", "t_lq", "include_self", "backend"),
}
#: Pools a threshold sampler may draw per pool's worth of images asked for: enough at a 0.5% yield
#: (the paper's t = 50 at k = 5 keeps ~1.5-1.8% of N(0, I) latents), plus a margin for small requests.
_POOLS_PER_POOL_ASKED = 200
_MIN_MAX_POOLS = 50


@dataclass
class SamplerSpec:
    """A sampler and how a metric draws from it; JSON-serialisable (calc_metrics passes it to its workers).

    Attributes
    ----------
    name : {'random', 'truncation', 'hubness', 'hubness-lq'}
    psi : float
        Truncation factor applied to the chosen latents (1: none); 'truncation' needs psi != 1.
    k, t, top, t_lq, include_self, backend
        Hub-value options of the hub samplers (see :class:`extensions.samplers.HubnessSampler`).
    pool_size : int
        Latents per pool (hub values are computed within a pool; paper: 10000).
    seed : int
        First seed of pool 0; pool p holds the next ``pool_size`` seeds.
    max_pools : int, optional
        Pools drawn at most. None: just enough for random/truncation; for hub samplers enough for a 0.5%
        yield (``200 * num / pool_size``, at least 50), or ``num / top`` with ``top``. A criterion that no
        latent of the first three pools meets stops the search at once.
    space : {'w', 'z'}, optional
        Sampling space; default W for StyleGAN generators, Z otherwise.
    noise_mode : {'random', 'const', 'none'}
        Synthesis noise (stylegan3's metrics: 'random').
    """

    name: str = "random"
    psi: float = 1.0
    k: int = 5
    t: float = 50.0
    top: Optional[int] = None
    t_lq: float = 1.0
    include_self: bool = False
    backend: str = "exact"
    pool_size: int = 10000
    seed: int = 0
    max_pools: Optional[int] = None
    space: Optional[str] = None
    noise_mode: str = "random"

    def __post_init__(self):
        if self.name not in _SAMPLER_PARAMS:
            raise MetricError(f"unknown sampler {self.name!r}; choose one of {', '.join(_SAMPLER_PARAMS)}")
        if isinstance(self.psi, bool) or not isinstance(self.psi, (int, float)) or not math.isfinite(self.psi):
            raise MetricError(f"psi (--trunc) must be a finite number, got {self.psi!r}")
        if self.name == "truncation" and self.psi == 1:
            raise MetricError("the truncation sampler needs psi other than 1 (e.g. --trunc 0.7)")
        if self.noise_mode not in NOISE_MODES:
            raise MetricError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        for name in ("t", "t_lq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise MetricError(f"{name} must be a number >= 0, got {value!r}")
            setattr(self, name, float(value))
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
            raise MetricError(f"k must be an integer, got {self.k!r}")
        if self.top is not None:
            self.top = check_count(self.top, "top")
        if self.backend not in ("exact", "approx", "auto"):
            raise MetricError(f"backend must be 'exact', 'approx' or 'auto', got {self.backend!r}")
        self.psi = float(self.psi)
        self.pool_size = check_count(self.pool_size, "pool_size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise MetricError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.max_pools is not None:
            self.max_pools = check_count(self.max_pools, "max_pools")
        if self.name in HUB_SAMPLERS and not 1 <= self.k < self.pool_size:
            raise MetricError(f"k = {self.k} needs pools of more than k latents, but pool_size = {self.pool_size}; "
                              f"raise pool_size or lower k")

    @property
    def is_hub(self) -> bool:
        return self.name in HUB_SAMPLERS

    def pools_for(self, num: int) -> int:
        """Pools drawn at most to collect ``num`` latents."""
        if self.max_pools is not None:
            return self.max_pools
        needed = math.ceil(num / self.pool_size)
        if not self.is_hub:
            return needed
        if self.name == "hubness" and self.top is not None:
            return max(needed, math.ceil(num / min(self.top, self.pool_size)))
        return max(_MIN_MAX_POOLS, _POOLS_PER_POOL_ASKED * needed)

    def sampler_params(self) -> dict:
        params = {name: getattr(self, name) for name in _SAMPLER_PARAMS[self.name]}
        if self.name == "hubness":
            params.pop("top" if self.top is None else "t")  # with top, t plays no part
        return params

    def describe(self) -> dict:
        """The spec as recorded with a metric result."""
        out = dict(sampler=self.name, psi=self.psi, **self.sampler_params())
        if self.is_hub:  # other samplers take seeds in order, whatever the pool size
            out["pool_size"] = self.pool_size
            if self.max_pools is not None:
                out["max_pools"] = self.max_pools
        out.update(seed=int(self.seed), space=self.space, noise_mode=self.noise_mode)
        return out


def seed_label_indices(seeds, n: int) -> np.ndarray:
    """A fixed pseudo-random index in [0, n) per seed (splitmix64 of the seed), shape (len(seeds),).

    Conditional generators take one label per latent, drawn from a label source by this index, so a
    seed keeps its label whatever pool it falls in.
    """
    with np.errstate(over="ignore"):
        x = np.asarray(seeds, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n)).astype(np.int64)


def dataset_labels(dataset) -> Callable[[np.ndarray], np.ndarray]:
    """Label source drawing from a stylegan3 dataset (``len`` and ``get_label``), as its metrics do."""
    size = len(dataset)
    if size < 1:
        raise MetricError("the dataset is empty, so conditional labels cannot be drawn from it")

    def labels(seeds: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(dataset.get_label(int(i)), dtype=np.float32)
                         for i in seed_label_indices(seeds, size)])

    return labels


def class_labels(c_dim: int, class_idx: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    """Label source of one-hot labels (n, c_dim): every image of class ``class_idx``, or (None) a fixed
    pseudo-random class per seed (:func:`seed_label_indices`), e.g. for BigGAN's 1000 ImageNet classes."""
    c_dim = check_count(c_dim, "c_dim")
    if class_idx is not None and (isinstance(class_idx, bool) or not isinstance(class_idx, (int, np.integer))
                                  or not 0 <= class_idx < c_dim):
        raise MetricError(f"class {class_idx!r} is out of range: the generator has {c_dim} classes, 0..{c_dim - 1}")

    def labels(seeds: np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        index = np.full(len(seeds), int(class_idx)) if class_idx is not None else seed_label_indices(seeds, c_dim)
        out = np.zeros((len(seeds), c_dim), dtype=np.float32)
        out[np.arange(len(seeds)), index] = 1
        return out

    return labels


class _LabelledPools:
    """Pools of a conditional StyleGAN generator: each latent mapped to W with its own seed's label."""

    def __init__(self, base: SeedPools, adapter: StyleGANAdapter, labels: Callable, batch_size: int):
        self.base, self.adapter, self.labels, self.batch_size = base, adapter, labels, batch_size

    def draw(self, index: int) -> Pool:
        pool = self.base.draw(index)
        c = torch.as_tensor(self.labels(pool.seeds), dtype=torch.float32, device=self.adapter.device)
        with torch.no_grad():
            w = torch.cat([self.adapter.map(pool.z[i:i + self.batch_size], c[i:i + self.batch_size])
                           for i in range(0, len(pool.seeds), self.batch_size)])
        return Pool(index, pool.seeds, pool.z, w.to(torch.float32))


@dataclass
class GeneratorFeatures:
    """What :func:`generator_features` produced.

    Attributes
    ----------
    features : torch.Tensor, shape (num, n_features), or None
        On the CPU; None when a sink received them.
    selection : extensions.samplers.Selection
        The chosen latents (seeds, hub values, pools drawn).
    sampler : dict
        Provenance: the spec, the number of images and of pools drawn, hub-value range of the chosen.
    """

    features: Optional[torch.Tensor]
    selection: Selection
    sampler: dict = field(default_factory=dict)


class _FeatureList:
    """The sink of a single-process run: keeps the first ``max_items`` rows on the CPU."""

    def __init__(self, max_items: int):
        self.max_items, self.num_items, self.parts = max_items, 0, []

    def append_torch(self, x: torch.Tensor, num_gpus: int = 1, rank: int = 0) -> None:
        x = x[: self.max_items - self.num_items].detach().to("cpu", torch.float32)
        self.parts.append(x)
        self.num_items += len(x)


def select_latents(adapter: GeneratorAdapter, spec: SamplerSpec, num: int, *,
                   labels: Optional[Callable] = None, device=None, batch_size: int = 1024,
                   distributed: bool = False) -> Selection:
    """Latents of ``num`` images chosen by ``spec``'s sampler, in the adapter's sampling space.

    Parameters
    ----------
    adapter : GeneratorAdapter
    spec : SamplerSpec
    num : int
    labels : callable, optional
        ``labels(seeds) -> (n, c_dim)`` for conditional generators (see :func:`dataset_labels`).
    device : torch.device, optional
        Where hub values are computed; default the generator's device.
    batch_size : int
        Latents per mapping batch.
    distributed : bool
        Share each pool's hub values between the processes of the ``torch.distributed`` group (every
        process must then select with the same arguments); see :mod:`extensions.distributed`.

    Returns
    -------
    extensions.samplers.Selection
    """
    space = adapter.check_space(spec.space)
    adapter.check_truncation(spec.psi)
    if adapter.c_dim > 0 and labels is None:
        raise MetricError(f"the generator is conditional ({adapter.c_dim} classes) but no label source was given; "
                          f"pass labels=dataset_labels(dataset)")
    device = adapter.device if device is None else device
    pool_size = min(spec.pool_size, num) if not spec.is_hub else spec.pool_size
    conditional_w = adapter.c_dim > 0 and space == "w"
    base = SeedPools(adapter.z_dim, pool_size, start=spec.seed, device=adapter.device, batch_size=batch_size,
                     transform=None if conditional_w else adapter.transform(space), sample_z=adapter.sample_z)
    pools = _LabelledPools(base, adapter, labels, batch_size) if conditional_w else base
    params = dict(spec.sampler_params(), max_pools=spec.pools_for(num))
    if spec.psi != 1:
        params.update(psi=spec.psi, mean=adapter.mean_latent(space))
    if spec.is_hub:
        params.update(device=device, knn_kwargs=dict(distributed=distributed))
    sampler = make_sampler(spec.name, **params)
    return sampler.sample(pools, num)


def _images(adapter: GeneratorAdapter, G: torch.nn.Module, latents: torch.Tensor, z_seeds: np.ndarray,
            space: str, labels: Optional[Callable], noise_mode: str, G_kwargs: dict, psi: float = 1) -> torch.Tensor:
    """uint8 images (n, 3 or C, H, W) of chosen latents, converted as stylegan3's metrics convert them (BigGAN:
    as its package converts them). Z latents of other generators are rendered with truncation ``psi``
    (BigGAN's latents already carry it; the model takes it too)."""
    if space == "w":
        img = G.synthesis(adapter.broadcast(latents), noise_mode=noise_mode, **G_kwargs)
    else:
        c = adapter.labels(None, len(latents)) if adapter.c_dim == 0 else \
            torch.as_tensor(labels(z_seeds), dtype=torch.float32, device=adapter.device)
        img = G(latents, c, noise_mode=noise_mode, **G_kwargs) if isinstance(adapter, StyleGANAdapter) \
            else adapter.generate(latents, c, truncation_psi=psi)
    finite = torch.isfinite(img.flatten(1)).all(1)
    if not bool(finite.all()):  # quantised, NaN would turn into black images that the metric scores
        seed = int(z_seeds[int((~finite).nonzero()[0, 0])])
        raise non_finite_pixels(None, f"for seed {seed}", truncation_psi=psi, seed=seed, after="")
    img = adapter.quantize(img)
    return img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img


def generator_features(G: torch.nn.Module, detector: torch.nn.Module, num: int, *,
                       spec: Optional[SamplerSpec] = None, detector_kwargs: Optional[dict] = None,
                       G_kwargs: Optional[dict] = None, labels: Optional[Callable] = None,
                       batch_size: int = 64, batch_gen: Optional[int] = None, sink=None,
                       num_gpus: int = 1, rank: int = 0, device=None,
                       progress: Optional[Callable[[int], None]] = None) -> GeneratorFeatures:
    """Detector features of ``num`` generated images whose latents ``spec``'s sampler chooses.

    Parameters
    ----------
    G : torch.nn.Module
        Generator (stylegan3 / stylegan2-ada ``G_ema``, or any module with ``z_dim`` and ``G(z, c)``).
        A copy is used; ``G`` is not modified.
    detector : torch.nn.Module
        Called as ``detector(images, **detector_kwargs)`` on uint8 images (b, 3, H, W); returns (b, n_features).
    num : int
        Images, hence feature rows.
    spec : SamplerSpec, optional
        Default: random latents.
    detector_kwargs : dict, optional
        E.g. ``dict(return_features=True)`` for stylegan3's Inception and VGG16 pickles.
    G_kwargs : dict, optional
        Extra synthesis arguments (stylegan3's ``opts.G_kwargs``, e.g. ``force_fp32``).
    labels : callable, optional
        ``labels(seeds) -> (n, c_dim)`` for conditional generators.
    batch_size : int
        Images per detector call (per process).
    batch_gen : int, optional
        Images per synthesis call; default ``min(batch_size, 4)`` as stylegan3.
    sink : object, optional
        Receives features through ``append_torch(x, num_gpus=, rank=)`` (stylegan3's ``FeatureStats``
        with ``max_items=num``); None: they are returned.
    num_gpus, rank : int
        Multi-process runs: every process chooses the same latents, renders every ``num_gpus``-th
        image from offset ``rank``, and the sink interleaves them back into order. When the
        ``torch.distributed`` group holds the ``num_gpus`` processes (as under ``calc_metrics.py --gpus``),
        each computes the k-NN rows of its share of every pool and the hub values are summed between them.
    device : torch.device, optional
        Where the generator and detector run; None: CUDA when available, else CPU.
    progress : callable, optional
        ``progress(images_done)`` after each detector batch.

    Returns
    -------
    GeneratorFeatures
    """
    num = check_count(num, "num")
    batch_size = check_count(batch_size, "batch_size")
    batch_gen = min(batch_size, 4) if batch_gen is None else check_count(batch_gen, "batch_gen")
    if not (isinstance(num_gpus, int) and num_gpus >= 1 and isinstance(rank, int) and 0 <= rank < num_gpus):
        raise MetricError(f"need 0 <= rank < num_gpus, got rank = {rank!r}, num_gpus = {num_gpus!r}")
    if sink is None and num_gpus > 1:
        raise MetricError("a multi-process run needs a sink that gathers the processes' features "
                          "(stylegan3's FeatureStats)")
    spec = spec or SamplerSpec()
    device = resolve_device(device)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    adapter = make_adapter(G)
    space = adapter.check_space(spec.space)
    detector_kwargs, G_kwargs = dict(detector_kwargs or {}), dict(G_kwargs or {})

    share = num_gpus > 1 and is_active() and dist.get_world_size() == num_gpus
    selection = select_latents(adapter, spec, num, labels=labels, device=device, distributed=share)
    latents = selection.latents.to(device)
    log.info("%s sampler: %d latents from %d pool(s) of %d", spec.name, num, len(selection.records),
             len(selection.records[0].seeds))

    collector = sink if sink is not None else _FeatureList(num)
    step = batch_size * num_gpus
    # noise_mode='random' draws from torch's global RNG: seed it, and give the caller's state back after.
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.random.default_generator.manual_seed(int(spec.seed))
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(int(spec.seed))
        for base in range(0, num, step):
            idx = base + rank + num_gpus * np.arange(batch_size)
            # Equal batches on every process keep the gather in step; extra rows land beyond num and
            # the sink drops them.
            idx = idx % num if num_gpus > 1 else idx[idx < num]
            images = [_images(adapter, G, latents[torch.as_tensor(part, device=device)], selection.seeds[part],
                              space, labels, spec.noise_mode, G_kwargs, spec.psi)
                      for part in np.array_split(idx, max(1, math.ceil(len(idx) / batch_gen)))]
            features = detector(torch.cat(images), **detector_kwargs)
            if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != len(idx):
                shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
                raise MetricError(f"the detector returned {shape} for {len(idx)} images; expected (images, features)")
            collector.append_torch(features, num_gpus=num_gpus, rank=rank)
            if progress is not None:
                progress(min(num, base + step))

    described = dict(spec.describe(), space=space, num=num, pools_drawn=len(selection.records),
                     latents_drawn=int(sum(len(r.seeds) for r in selection.records)))
    if selection.m is not None:
        described.update(m_min=int(selection.m.min()), m_max=int(selection.m.max()))
    out = None if sink is not None else torch.cat(collector.parts)
    return GeneratorFeatures(out, selection, described)

