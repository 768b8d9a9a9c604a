"""``--sampler`` and the hub options inside StudioGAN's own evaluation (``patches/studiogan.patch``).

The patch adds :func:`add_arguments` to ``src/main.py``'s parser and calls :func:`configure` on the
parsed arguments; ``src/utils/sample.py``'s ``generate_images`` then passes the latents of every
evaluation batch (``is_train=False``) through :func:`eval_latents`. With ``--sampler random`` (the
default) nothing changes: StudioGAN draws its latents as before. With ``hubness`` / ``hubness-lq`` the
latents are the seeds of pools of ``--hub_pool_size`` consecutive seeds (from ``--hub_seed``) whose hub
value in Z is ``m >= --hub_t`` / ``m <= --hub_t_lq`` (k = ``--hub_k``), in seed order, seed s drawn as
``RandomState(s).randn(1, z_dim)``; StudioGAN's ``--truncation_factor t`` maps them onto the normal
truncated to [-t, t] (:func:`extensions.generators.studiogan.quantile_map`; StyleGAN backbones truncate
in W themselves). Hub values do not depend on the network in Z, so StyleGAN backbones are sampled by
their Z hub values here (W-space hubs: ``gen_images_hub.py`` on the run). Labels stay StudioGAN's.

The choice reaches processes StudioGAN spawns through ``$STYLEGAN3_HUBNESS_STUDIOGAN`` (JSON). Under
DDP, rank r of w takes rows r, r + w, ... of each group of w batches, so the ranks render disjoint
latents of one sequence.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Optional

import numpy as np
import torch

from .._checks import HubnessError
from ..hubness import compute_hubness
from ..stylegan.generate import KNN_BACKENDS
from ..pools import seed_latents
from .studiogan import quantile_map

log = logging.getLogger(__name__)

ENV_VAR = "STYLEGAN3_HUBNESS_STUDIOGAN"
SAMPLERS = ("random", "hubness", "hubness-lq")


def add_arguments(parser) -> None:
    """Add ``--sampler`` and the ``--hub_*`` options to StudioGAN's ``ArgumentParser``."""
    group = parser.add_argument_group("stylegan3-hubness (latents of the evaluation)")
    group.add_argument("--sampler", choices=SAMPLERS, default="random",
                       help="random: StudioGAN's own latents; hubness: seeds with hub value m >= --hub_t; "
                            "hubness-lq: m <= --hub_t_lq")
    group.add_argument("--hub_k", type=int, default=5, help="k-NN list size for hub values")
    group.add_argument("--hub_t", type=float, default=50, help="hub-value threshold of --sampler hubness")
    group.add_argument("--hub_t_lq", type=float, default=1, help="hub-value threshold of --sampler hubness-lq")
    group.add_argument("--hub_pool_size", type=int, default=10000, help="seeds per pool")
    group.add_argument("--hub_seed", type=int, default=0, help="first seed of the first pool")
    group.add_argument("--hub_max_pools", type=int, default=1000,
                       help="pools drawn at most for one batch before giving up")
    group.add_argument("--hub_knn_backend", choices=KNN_BACKENDS, default="exact",
                       help="k-NN search: exact, approx (pynndescent) or auto")


def check_config(config: dict) -> dict:
    """``config`` (the options without their ``hub_`` prefix) checked; raises :class:`HubnessError`."""
    if config["sampler"] not in SAMPLERS:
        raise HubnessError(f"--sampler {config['sampler']!r} is not one of {', '.join(SAMPLERS)}")
    if int(config["pool_size"]) < 2:
        raise HubnessError(f"--hub_pool_size {config['pool_size']} is too small: use at least 2 (e.g. 10000)")
    if not 1 <= int(config["k"]) < int(config["pool_size"]):
        raise HubnessError(f"--hub_k {config['k']} must be at least 1 and below --hub_pool_size "
                           f"{config['pool_size']}")
    for name in ("t", "t_lq"):
        if not np.isfinite(float(config[name])) or float(config[name]) < 0:
            raise HubnessError(f"--hub_{name} {config[name]} must be a finite number >= 0")
    if not (0 <= int(config["seed"]) and int(config["seed"]) + int(config["pool_size"]) <= 2 ** 32):
        raise HubnessError(f"--hub_seed {config['seed']} is out of range: seeds are 0 .. 2**32 - 1")
    if int(config["max_pools"]) < 1:
        raise HubnessError(f"--hub_max_pools {config['max_pools']} must be at least 1")
    return config


def configure(args) -> Optional[dict]:
    """Read the options from StudioGAN's parsed ``args`` and publish them (``$STYLEGAN3_HUBNESS_STUDIOGAN``)
    for this process and those it spawns. Bad values end the program with one line (exit status 2).

    Returns the configuration, or None for ``--sampler random``.
    """
    config = dict(sampler=args.sampler, k=args.hub_k, t=args.hub_t, t_lq=args.hub_t_lq, pool_size=args.hub_pool_size,
                  seed=args.hub_seed, max_pools=args.hub_max_pools, backend=args.hub_knn_backend)
    try:
        check_config(config)
    except HubnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    _STREAMS.clear()
    if config["sampler"] == "random":
        os.environ.pop(ENV_VAR, None)
        return None
    if getattr(args, "train", False):
        print("error: --sampler chooses the latents of an evaluation; drop -t/--train, or --sampler", file=sys.stderr)
        sys.exit(2)
    os.environ[ENV_VAR] = json.dumps(config)
    return config


def current_config() -> Optional[dict]:
    """The configuration :func:`configure` published, or None (StudioGAN samples as before)."""
    text = os.environ.get(ENV_VAR)
    return check_config(json.loads(text)) if text else None


class LatentStream:
    """The chosen latents, pool after pool: :meth:`take` returns the next rows of the sequence.

    Parameters
    ----------
    config : dict
        See :func:`check_config`.
    z_dim : int
    device : torch.device
        Where hub values are computed.
    """

    def __init__(self, config: dict, z_dim: int, device=None):
        self.config = config
        self.z_dim = int(z_dim)
        self.device = device
        self.next_pool = 0
        self.buffer = np.empty((0, self.z_dim))
        self.seeds = np.empty(0, dtype=np.int64)
        self.taken = []  # seeds handed out, in order

    def _draw_pool(self) -> None:
        c = self.config
        start = int(c["seed"]) + self.next_pool * int(c["pool_size"])
        seeds = np.arange(start, start + int(c["pool_size"]), dtype=np.int64)
        z = seed_latents(seeds, self.z_dim)
        m = compute_hubness(z, int(c["k"]), backend=c["backend"], device=self.device, distributed=False,
                            neighbors=False).m
        keep = m >= float(c["t"]) if c["sampler"] == "hubness" else m <= float(c["t_lq"])
        self.buffer = np.concatenate([self.buffer, z[keep]])
        self.seeds = np.concatenate([self.seeds, seeds[keep]])
        log.info("%s: pool %d (seeds %d-%d) yielded %d latents", c["sampler"], self.next_pool, seeds[0], seeds[-1],
                 int(keep.sum()))
        self.next_pool += 1

    def take(self, n: int) -> tuple:
        """The next ``n`` latents (n, z_dim), float64, and their seeds (n,)."""
        drawn = 0
        while len(self.buffer) < n:
            if drawn >= int(self.config["max_pools"]):
                c = self.config
                what = f"m >= {c['t']:g}" if c["sampler"] == "hubness" else f"m <= {c['t_lq']:g}"
                raise HubnessError(f"{drawn} pools of {c['pool_size']} seeds yielded {len(self.buffer)} of the {n} "
                                   f"latents with {what} a batch needs; lower --hub_t (raise --hub_t_lq) or raise "
                                   f"--hub_max_pools")
            self._draw_pool()
            drawn += 1
        z, seeds = self.buffer[:n], self.seeds[:n]
        self.buffer, self.seeds = self.buffer[n:], self.seeds[n:]
        self.taken.extend(int(s) for s in seeds)
        return z, seeds


_STREAMS: dict = {}


def stream(z_dim: int, device=None) -> Optional[LatentStream]:
    """This process's :class:`LatentStream` for ``z_dim``, or None when no hub sampler is configured."""
    config = current_config()
    if config is None:
        return None
    key = (json.dumps(config, sort_keys=True), int(z_dim))
    if key not in _STREAMS:
        _STREAMS[key] = LatentStream(config, z_dim, device)
    return _STREAMS[key]


def eval_latents(zs: torch.Tensor, truncation_factor: float = -1.0) -> torch.Tensor:
    """The latents of an evaluation batch: ``zs`` (n, z_dim) as StudioGAN drew them when no hub sampler
    is configured, else the next n chosen latents (this rank's share), with StudioGAN's truncation
    threshold ``truncation_factor`` (-1: none) applied, float32 on ``zs``' device."""
    chosen = stream(zs.shape[1], zs.device)
    if chosen is None:
        return zs
    n = len(zs)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    z, _ = chosen.take(n * world)
    z = torch.from_numpy(z[rank::world])
    if truncation_factor != -1:
        z = quantile_map(z, float(truncation_factor))
    return z.to(zs.device, zs.dtype)
