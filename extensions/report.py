"""The paper's figures for any generator, from one pool of latents.

==========================  ===================================================================================
``hub_histogram.png``       Fig. 2: histogram of hub values m, log y-axis, thresholds t and t_lq marked
``distance_to_mean.png``    Fig. 9: distance to the mean latent of hubs, random latents and truncated latents
``hubness_spectrum.png``    Fig. 15: images ordered by m, one row per band of the hubness spectrum
``quality_grids.png``       Fig. 3: high-quality latents (m >= t) beside low-quality latents (m <= t_lq)
``report.json``             the numbers behind the figures (hub statistics, counts, distances)
==========================  ===================================================================================

Hub values are computed in the sampling space of the generator (W for StyleGAN networks, the first row
of the mapping output at truncation_psi = 1; Z otherwise), the mean latent is ``G.mapping.w_avg`` (the
origin in Z). A network whose pool has fewer than ``min_hubs`` latents with m >= t falls back to the
largest hub values for the "hubs" of Fig. 3 and Fig. 9, and the figure titles say so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ._checks import HubnessError, check_count, check_threshold, resolve_device
from .hubness import compute_hubness, hubness_stats
from .pools import SeedPools
from .render import atomic_file, image_grid, to_uint8
from .selection import hubness_spectrum, select_low_quality, select_threshold

log = logging.getLogger(__name__)

FIGURES = ("hub_histogram.png", "distance_to_mean.png", "hubness_spectrum.png", "quality_grids.png")


@dataclass
class Report:
    """Where the figures went and what they show.

    Attributes
    ----------
    files : dict of str -> Path
        Figure name (see :data:`FIGURES`) and ``report.json`` -> path.
    summary : dict
        JSON-serialisable numbers: hub statistics, counts of the high- and low-quality sets, mean
        distances to the mean latent.
    """

    files: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the report's figures need matplotlib: pip install matplotlib") from exc
    return plt


def _render(adapter, latents: torch.Tensor, space: str, noise_mode: str, batch: int = 64) -> np.ndarray:
    """uint8 images (n, H, W, C) of latents in ``space``."""
    out = []
    with torch.no_grad():
        for start in range(0, len(latents), batch):
            part = latents[start:start + batch].to(adapter.device)
            if space == "w":
                img = adapter.synthesize(part, noise_mode=noise_mode)
            else:
                img = adapter.generate(part, noise_mode=noise_mode)
            out.append(to_uint8(img))
    return np.concatenate(out)


def _show(ax, image: np.ndarray) -> None:
    if image.shape[2] == 1:
        ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path


def hubness_report(G: torch.nn.Module, outdir, *, pool_size: int = 10000, k: int = 5, t: float = 50,
                   t_lq: float = 1, psi: float = 0.7, seed: int = 0, grid: int = 64, spectrum_rows: int = 8,
                   spectrum_cols: int = 12, min_hubs: int = 16, include_self: bool = False,
                   space: Optional[str] = None, noise_mode: str = "const", device=None,
                   title: str = "") -> Report:
    """Write the paper's hubness figures for generator ``G`` into ``outdir``.

    Parameters
    ----------
    G : torch.nn.Module
        A StyleGAN generator (stylegan3 / stylegan2-ada ``G_ema``) or any module with ``z_dim`` and ``G(z, c)``
        (unconditional).
    outdir : str or Path
        Created when missing.
    pool_size : int
        Latents in the pool (seeds ``seed .. seed + pool_size - 1``, drawn as ``gen_images.py`` draws them).
    k : int
        k-NN list size.
    t, t_lq : float
        High-quality (m >= t) and low-quality (m <= t_lq) thresholds.
    psi : float
        Truncation factor of the truncated latents in Fig. 9.
    seed : int
        First seed of the pool.
    grid : int
        Images in each of the two grids of Fig. 3.
    spectrum_rows, spectrum_cols : int
        Shape of Fig. 15: rows are evenly spaced bands of the spectrum, from the largest m down.
    min_hubs : int
        Below this many latents with m >= t, the "hubs" are the ``grid`` largest hub values instead.
    include_self : bool
        Counting convention of hub values (see :func:`extensions.hubness.compute_hubness`).
    space : {'w', 'z'}, optional
        Default W for StyleGAN generators, Z otherwise.
    noise_mode : {'const', 'random', 'none'}
        Synthesis noise of StyleGAN generators.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    title : str
        Network name shown in the figure titles.

    Returns
    -------
    Report
    """
    from .stylegan.adapter import make_adapter  # the integration imports the engine, not the other way round

    pool_size = check_count(pool_size, "pool_size")
    grid = check_count(grid, "grid")
    spectrum_rows = check_count(spectrum_rows, "spectrum_rows")
    spectrum_cols = check_count(spectrum_cols, "spectrum_cols")
    t, t_lq = check_threshold(t), check_threshold(t_lq, "t_lq")
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not np.isfinite(psi):
        raise HubnessError(f"psi must be a finite number, got {psi!r}")
    if spectrum_rows * spectrum_cols > pool_size or grid > pool_size:
        raise HubnessError(f"pool_size = {pool_size} is too small for a spectrum of {spectrum_rows} x {spectrum_cols} "
                           f"and grids of {grid}; raise pool_size or shrink the figures")
    plt = _pyplot()
    device = resolve_device(device)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    adapter = make_adapter(G.to(device))
    if adapter.c_dim > 0:
        raise HubnessError(f"the report needs an unconditional network; this one has {adapter.c_dim} classes")
    space = adapter.check_space(space)
    name = f"{title}, " if title else ""

    pool = SeedPools(adapter.z_dim, pool_size, start=seed, transform=adapter.transform(space), device=device).draw(0)
    res = compute_hubness(pool.latents, k, include_self=include_self, device=device)
    m = res.m
    stats = hubness_stats(m, k, thresholds=(t,))
    order = hubness_spectrum(m)
    hubs = select_threshold(m, t)
    hubs_label = f"hubs (m >= {t:g})"
    if len(hubs) < min_hubs:
        hubs = order[:grid]
        hubs_label = f"top {grid} hub values (m >= {int(m[hubs[-1]])}; only {int((m >= t).sum())} with m >= {t:g})"
    low = select_low_quality(m, t_lq)
    summary = dict(network=title, space=space, pool_size=pool_size, k=k, include_self=include_self, seed=seed,
                   t=t, t_lq=t_lq, psi=psi, stats=dict(stats.as_dict(), count_at_least={str(t): int((m >= t).sum())}),
                   hubs=dict(label=hubs_label, count=int(len(hubs)), seeds=pool.seeds[hubs[:grid]].tolist()),
                   low_quality=dict(count=int(len(low)), seeds=pool.seeds[low[:grid]].tolist()))
    files = {}

    # Fig. 2: the long right tail is what a log y-axis makes visible.
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.hist(m, bins=np.arange(m.max() + 2) - 0.5 if m.max() < 80 else 80, color="#4477aa")
    ax.set_yscale("log")
    ax.axvline(t, color="#cc3311", linestyle="--", label=f"t = {t:g} ({int((m >= t).sum())} latents)")
    ax.axvline(t_lq, color="#009988", linestyle=":", label=f"t_lq = {t_lq:g} ({len(low)} latents)")
    ax.set_xlabel(f"hub value m (k = {k})")
    ax.set_ylabel("latents (log scale)")
    ax.set_title(f"{name}{space.upper()} space, n = {pool_size}: skewness {stats.skewness:.2f}, max m = {stats.max}")
    ax.legend()
    files["hub_histogram.png"] = _save(fig, outdir / "hub_histogram.png")
    plt.close(fig)

    # Fig. 9: hubs sit close to the mean latent, as truncated latents do.
    mean = adapter.mean_latent(space).to(pool.latents.device, torch.float32)
    dist = (pool.latents - mean).norm(dim=1).cpu().numpy()
    groups = {hubs_label: dist[hubs], "random latents": dist, f"truncated, psi = {psi:g}": abs(psi) * dist}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    bins = np.linspace(0, dist.max() * 1.02, 60)
    for (label, values), colour in zip(groups.items(), ("#cc3311", "#4477aa", "#999933")):
        ax.hist(values, bins=bins, density=True, alpha=0.55, color=colour, label=f"{label}: mean {values.mean():.2f}")
    ax.set_xlabel("distance to the mean latent" + (" (w_avg)" if space == "w" else " (origin)"))
    ax.set_ylabel("density")
    ax.set_title(f"{name}distance to the mean latent")
    ax.legend(fontsize=8)
    files["distance_to_mean.png"] = _save(fig, outdir / "distance_to_mean.png")
    plt.close(fig)
    summary["distance_to_mean"] = {label: float(values.mean()) for label, values in groups.items()}

    # Fig. 15: bands of the spectrum, from the largest hub values to the smallest.
    starts = np.linspace(0, pool_size - spectrum_cols, spectrum_rows).round().astype(int)
    rows = [order[s:s + spectrum_cols] for s in starts]
    images = _render(adapter, pool.latents[torch.as_tensor(np.concatenate(rows), device=pool.latents.device)],
                     space, noise_mode)
    fig, axes = plt.subplots(spectrum_rows, 1, figsize=(spectrum_cols * 0.75, spectrum_rows * 0.95), squeeze=False)
    for r, (s, idx) in enumerate(zip(starts, rows)):
        ax = axes[r, 0]
        row = list(images[r * spectrum_cols:(r + 1) * spectrum_cols])
        _show(ax, image_grid(row, spectrum_cols, min_cell=1, gap=1))
        ax.set_ylabel(f"ranks {s + 1}-{s + len(idx)}\nm {int(m[idx[-1]])}-{int(m[idx[0]])}", rotation=0,
                      ha="right", va="center", fontsize=8)
    fig.subplots_adjust(top=1 - 0.45 / (spectrum_rows * 0.95), bottom=0.01, hspace=0.12)
    fig.suptitle(f"{name}hubness spectrum: rows from the largest hub values (top) to the smallest (bottom)",
                 fontsize=10)
    files["hubness_spectrum.png"] = _save(fig, outdir / "hubness_spectrum.png")
    plt.close(fig)

    # Fig. 3: high- vs low-quality latents, same number of each.
    chosen_low = low[:grid] if len(low) else np.argsort(m, kind="stable")[:grid]
    low_label = f"low quality (m <= {t_lq:g})" if len(low) else f"smallest hub values (none with m <= {t_lq:g})"
    cols = int(np.ceil(np.sqrt(grid)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, idx, label in ((axes[0], hubs[:grid], hubs_label), (axes[1], chosen_low, low_label)):
        imgs = _render(adapter, pool.latents[torch.as_tensor(idx, device=pool.latents.device)], space, noise_mode)
        _show(ax, image_grid(list(imgs), cols, min_cell=1, gap=1))
        ax.set_title(f"{label}\n{len(idx)} images, m {int(m[idx].min())}-{int(m[idx].max())}", fontsize=9)
    fig.subplots_adjust(top=0.84, wspace=0.08)
    fig.suptitle(f"{name}high- vs low-quality latents by hub value (k = {k}, pool of {pool_size})")
    files["quality_grids.png"] = _save(fig, outdir / "quality_grids.png")
    plt.close(fig)

    with atomic_file(outdir / "report.json", "w") as f:
        json.dump(summary, f, indent=2)
    files["report.json"] = outdir / "report.json"
    log.info("hubness report of %s written to %s", title or "the network", outdir)
    return Report(files, summary)
