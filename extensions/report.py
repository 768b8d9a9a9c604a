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

import contextlib
import io
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import click
import numpy as np
import torch

from ._checks import HubnessError, NonFiniteError, check_count, check_threshold, check_truncation_psi, resolve_device
from .hubness import compute_hubness, hubness_stats
from .pools import MAX_SEED, SeedPools, check_pool_memory
from .render import atomic_files, created_folder, image_grid, remove_stale_temps, to_uint8
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


#: Columns and rows of a grid given as ``auto``: near-square, 64 images.
AUTO_GRID = (8, 8)


def check_grid(grid) -> tuple:
    """``grid`` as (columns, rows): ``'WxH'`` as stylegan3's ``gen_video.py --grid`` (columns x rows), two
    positive integers, or ``'auto'`` (:data:`AUTO_GRID`).

    Raises
    ------
    HubnessError
        Quoting anything else.
    """
    from .stylegan.generate import parse_grid  # the integration imports the engine, not the other way round
    shape = parse_grid(grid) if grid is not None else None
    if shape is None:
        raise HubnessError(f"grid {grid!r} is not WxH (columns x rows), e.g. 8x8")
    return AUTO_GRID if shape == (0, 0) else shape


def check_outdir(outdir) -> Path:
    """``outdir`` as a Path, if it is a directory or can be made one; nothing is created.

    Raises
    ------
    HubnessError
        When it is a file, lies under a file, or its nearest existing folder is not writable.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise HubnessError(f"outdir {str(outdir)!r} exists and is not a directory; choose another outdir")
    existing = next(p for p in (outdir, *outdir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise HubnessError(f"outdir {str(outdir)!r} lies under the file {str(existing)!r}; choose another outdir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HubnessError(f"outdir {str(outdir)!r}: {str(existing)!r} is not writable; choose another outdir")
    return outdir


#: Largest float32: latents, images and the network's arithmetic are float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _name(names: Optional[dict], param: str) -> str:
    """How errors call parameter ``param``: its CLI option (``names``, e.g. {'psi': '--psi'}) or its own name."""
    return (names or {}).get(param, param)


def check_seed(seed, names: Optional[dict] = None) -> int:
    """``seed`` (the first seed of a pool) as an int >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HubnessError(f"{_name(names, 'seed')} must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_pool_seeds(seed, pool_size, names: Optional[dict] = None) -> None:
    """The seeds ``seed .. seed + pool_size - 1`` of a pool must lie in numpy's range [0, 2**32).

    Raises
    ------
    HubnessError
        Naming the option at fault (``names``: parameter -> CLI option) and the values that work.
    """
    seed_opt, pool_opt = _name(names, "seed"), _name(names, "pool_size")
    limit = MAX_SEED + 1  # 2**32
    if seed > MAX_SEED:
        raise HubnessError(f"{seed_opt} {seed} is out of range: seeds lie in 0..{MAX_SEED} (below 2**32); "
                           f"use a smaller {seed_opt}")
    if seed + pool_size > limit:
        if pool_size > limit:
            raise HubnessError(f"{pool_opt} {pool_size} is too large: the seeds of a pool must stay below 2**32; use "
                               f"{pool_opt} {limit - seed} or less (with {seed_opt} {seed})")
        raise HubnessError(f"{seed_opt} {seed} is too large for {pool_opt} {pool_size}: the pool's seeds "
                           f"{seed}..{seed + pool_size - 1} must stay below 2**32; use {seed_opt} "
                           f"{limit - pool_size} or less, or a smaller {pool_opt}")


def check_k_for_pool(k, pool_size, names: Optional[dict] = None) -> int:
    """``k`` must be an integer with 1 <= k < pool_size (a latent's neighbours are the other latents)."""
    k_opt, pool_opt = _name(names, "k"), _name(names, "pool_size")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise HubnessError(f"{k_opt} must be a positive integer, got {k!r}")
    if k >= pool_size:
        raise HubnessError(f"{k_opt} {k} must be below {pool_opt} {pool_size}: each latent's {k} nearest "
                           f"neighbours come from the other latents of the pool; lower {k_opt} or raise {pool_opt}")
    return int(k)


def check_psi(psi, names: Optional[dict] = None) -> float:
    """A truncation psi: a finite number that float32 arithmetic can hold."""
    return check_truncation_psi(psi, _name(names, "psi"))


def check_options(outdir, *, seed, pool_size, k, t, t_lq, psi, names: Optional[dict] = None) -> None:
    """The checks a figure command runs before it loads the network (a wrong option fails in a second, not
    after the pool is mapped): the output folder, finite thresholds, the pool's seed range, k and psi."""
    check_outdir(outdir)
    for param, value in (("psi", psi), ("t", t), ("t_lq", t_lq)):
        if not math.isfinite(value):
            raise HubnessError(f"{_name(names, param)} {value} is not a finite number")
    check_pool_seeds(seed, pool_size, names)
    check_k_for_pool(k, pool_size, names)
    check_psi(psi, names)


def check_mean_latent(adapter, space: str, network: str = "") -> torch.Tensor:
    """The generator's mean latent in ``space`` (float32, shape (d,)): ``G.mapping.w_avg`` in W, the origin in Z
    (or what the generator truncates towards); it must be finite.

    Raises
    ------
    NonFiniteError
        When it holds NaN or inf (a broken network: ``G.mapping.w_avg``), naming ``network``.
    """
    try:
        mean = adapter.mean_latent(space)
    except HubnessError:
        if space != "z":
            raise
        mean = torch.zeros(adapter.z_dim)  # a generator without a mapping network: the origin of Z
    mean = mean.detach().to(torch.float32)
    if not bool(torch.isfinite(mean).all()):
        who = f"network {network!r}" if network else "the network"
        raise NonFiniteError(f"{who} has NaN or inf in its mean latent (w_avg), from which distances and truncation "
                             f"are measured; the network is broken: check its weights or use another snapshot")
    return mean


def check_pool_fits(pool_size: int, z_dim: int, d: int, device, names: Optional[dict] = None) -> None:
    """Refuse a pool (and its k-NN search) that would take more than half the memory available, before
    drawing it."""
    check_pool_memory(pool_size, z_dim, d, hub=True, device=device, option=_name(names, "pool_size"))


def non_finite_entry(value, where: str = ""):
    """(path, value) of the first number in nested dicts/lists ``value`` that is NaN or inf, else None."""
    if isinstance(value, dict):
        items = ((f"{where}[{key!r}]", v) for key, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        if isinstance(value, (float, np.floating)) and not np.isfinite(value):
            return where, value
        return None
    for path, v in items:
        found = non_finite_entry(v, path)
        if found is not None:
            return found
    return None


def json_bytes(summary: dict, name: str) -> bytes:
    """``summary`` as indented JSON; NaN or inf anywhere in it is a :class:`NonFiniteError` naming the entry."""
    found = non_finite_entry(summary)
    if found is not None:
        raise NonFiniteError(f"{name} would hold {found[1]} in {found[0]}, not a finite number; nothing was written")
    return json.dumps(summary, indent=2, allow_nan=False).encode("utf-8")


def figure_png(fig, **savefig) -> bytes:
    """``fig`` as PNG bytes (in memory: nothing reaches the output folder before the commit); closes it."""
    plt = _pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", **savefig)
        return buf.getvalue()
    finally:
        plt.close(fig)


def commit_files(outdir, contents: dict) -> dict:
    """Write ``contents`` (file name -> bytes) into ``outdir`` as one result: all of them or none.

    ``outdir`` and its missing parents are created, and removed again if the commit fails. Every file is
    written to a temporary next to its destination and the group is renamed into place together
    (:func:`~extensions.render.atomic_files`); Ctrl-C and SIGTERM wait for the renames to end, so only
    ``kill -9`` can leave a mix of this result's and an earlier result's complete files.

    Returns
    -------
    dict of str -> Path
        File name -> path, in the order of ``contents``.

    Raises
    ------
    HubnessError
        When a folder stands where a file goes (checked before anything is written).
    OSError
        When a file cannot be written (the folder is then as it was).
    """
    outdir = Path(outdir)
    paths = {name: outdir / name for name in contents}
    for path in paths.values():
        if path.is_dir() and not path.is_symlink():
            raise HubnessError(f"cannot write {str(path)!r}: a folder of that name is in the way; move it or "
                               f"choose another --outdir")
    with created_folder(outdir):
        with atomic_files(list(paths.values())) as temps:
            for name, data in contents.items():
                with open(temps[paths[name]], "wb") as f:
                    f.write(data)
    return paths


def figure_options(*, outdir_help: str, pool_help: str, t_help: str, t_lq_help: str):
    """The options ``hubness_report.py`` and ``compare_samplers.py`` share: --network, --outdir, --pool-size,
    --seed, --k, --t, --t-lq, then (after the script's own) --include-self, --space, --device, --stylegan3."""
    from .digits.network import NETWORK_NAME  # late: extensions.digits pulls in the stylegan integration

    head = [
        click.option("--network", "network_pkl", default=None, metavar="PKL",
                     help=f"Network pickle filename or URL [default: the embedded '{NETWORK_NAME}' generator]"),
        click.option("--outdir", type=click.Path(file_okay=False), required=True, metavar="DIR", help=outdir_help),
        click.option("--pool-size", type=click.IntRange(min=2), default=10000, show_default=True, help=pool_help),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="First seed of the pool (latent i = RandomState(seed + i).randn(z_dim), as gen_images.py)"),
        click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="k-NN list size"),
        click.option("--t", type=click.FloatRange(min=0), default=50, show_default=True, help=t_help),
        click.option("--t-lq", "t_lq", type=click.FloatRange(min=0), default=1, show_default=True, help=t_lq_help),
    ]
    tail = [
        click.option("--include-self", is_flag=True, default=False,
                     help="Count each latent as its own neighbour (the authors' reference code)"),
        click.option("--space", type=click.Choice(["w", "z"]), default=None,
                     help="Where hub values are computed [default: w for StyleGAN networks, z otherwise]"),
        click.option("--device", type=str, default=None, help="torch device [default: cuda if available, else cpu]"),
        click.option("--stylegan3", type=click.Path(file_okay=False), default=None, metavar="DIR",
                     help="stylegan3 or stylegan2-ada-pytorch checkout [default: $STYLEGAN3_DIR, else importable "
                          "modules, else the draggan wheel's]"),
    ]

    def decorate(own_options):
        def apply(f):
            for option in reversed(head + list(own_options) + tail):
                f = option(f)
            return f
        return apply

    return decorate


def figure_adapter(G: torch.nn.Module, device, space: Optional[str], figure: str) -> tuple:
    """(adapter, space, device) of an unconditional generator moved to ``device``, for a figure.

    Raises
    ------
    HubnessError
        For conditional networks and spaces the generator lacks.
    """
    from .stylegan.adapter import make_adapter  # the integration imports the engine, not the other way round
    device = resolve_device(device)
    adapter = make_adapter(G.to(device))
    if adapter.c_dim > 0:
        raise HubnessError(f"the {figure} needs an unconditional network; this one has {adapter.c_dim} classes")
    return adapter, adapter.check_space(space), device


class GridShape(click.ParamType):
    """Click type of ``--grid WxH`` (columns x rows, e.g. ``8x8``; ``auto``: 8x8) -> (columns, rows)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return check_grid(value)
        except HubnessError as exc:
            self.fail(str(exc), param, ctx)


class Progress:
    """tqdm bars on stderr for the steps of a figure command; every method is a no-op when disabled.

    Counted steps (mapping the pool, synthesising images) get bars with their units; one-shot steps
    (a k-NN search) get a line that shows the elapsed time while they run, since they have no rate.
    """

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self._mapping = None

    @staticmethod
    def _tqdm(**kwargs):
        from tqdm.auto import tqdm
        return tqdm(dynamic_ncols=True, leave=True, **kwargs)

    def mapping(self, done: int, total: int) -> None:
        """``SeedPools`` progress callback: latents mapped to the sampling space so far."""
        if not self.enabled:
            return
        if self._mapping is None:
            self._mapping = self._tqdm(total=total, desc="mapping", unit="latent")
        self._mapping.update(done - self._mapping.n)
        if done >= total:
            self._mapping.close()
            self._mapping = None

    def counter(self, desc: str, total: int, unit: str):
        """A bar with ``update(n)`` and ``close()``; a silent stand-in when disabled."""
        return self._tqdm(total=total, desc=desc, unit=unit) if self.enabled else _NullBar()

    @contextlib.contextmanager
    def step(self, desc: str):
        """A one-shot step: its line shows the elapsed time, refreshed twice a second, until it ends."""
        if not self.enabled:
            yield
            return
        bar = self._tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}")
        stop = threading.Event()

        def tick():
            while not stop.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            bar.close()

    def close(self) -> None:
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def render_latents(adapter, latents: torch.Tensor, space: str, noise_mode: str = "const", *, batch: int = 16,
                   bar=None, seeds: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 images (n, H, W, C) of latents (n, d) in ``space`` ('w': synthesis only; 'z': the whole generator).

    ``bar.update(b)`` follows each batch of ``b`` images. ``seeds`` (n,) name the culprit of an error.

    Raises
    ------
    NonFiniteError
        When the generator returns NaN or inf (never a black image).
    """
    out = []
    with torch.no_grad():
        for start in range(0, len(latents), batch):
            part = latents[start:start + batch].to(adapter.device)
            if space == "w":
                img = adapter.synthesize(part, noise_mode=noise_mode)
            else:
                img = adapter.generate(part, noise_mode=noise_mode)
            finite = torch.isfinite(img).flatten(1).all(dim=1)
            if not bool(finite.all()):
                row = start + int((~finite).nonzero()[0, 0])
                seed = None if seeds is None else int(seeds[row])
                raise NonFiniteError(f"the generator produced NaN or inf in {int((~finite).sum())} image(s), first "
                                     f"{'seed ' + str(seed) if seed is not None else 'latent ' + str(row)}; "
                                     f"check the network pickle", seed)
            out.append(to_uint8(img))
            if bar is not None:
                bar.update(len(part))
    return np.concatenate(out)


def _show(ax, image: np.ndarray) -> None:
    if image.shape[2] == 1:
        ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def hubness_report(G: torch.nn.Module, outdir, *, pool_size: int = 10000, k: int = 5, t: float = 50,
                   t_lq: float = 1, psi: float = 0.7, seed: int = 0, grid: Union[str, Sequence[int]] = (8, 8),
                   spectrum_rows: int = 8, spectrum_cols: int = 12, min_hubs: int = 16, include_self: bool = False,
                   space: Optional[str] = None, noise_mode: str = "const", device=None, title: str = "",
                   progress: bool = False, network: str = "", names: Optional[dict] = None) -> Report:
    """Write the paper's hubness figures for generator ``G`` into ``outdir``.

    Parameters
    ----------
    G : torch.nn.Module
        A StyleGAN generator (stylegan3 / stylegan2-ada ``G_ema``) or any module with ``z_dim`` and ``G(z, c)``
        (unconditional).
    outdir : str or Path
        Created when missing, once every figure is rendered (bad input leaves no folder behind). The four
        figures and ``report.json`` are committed together (:func:`commit_files`): a failed or interrupted
        run leaves the folder as it was; temporary files that killed runs left in it are removed.
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
    grid : (int, int) or str
        Columns and rows of each of the two grids of Fig. 3, e.g. (8, 8) or ``'8x8'``.
    spectrum_rows, spectrum_cols : int
        Shape of Fig. 15: rows are evenly spaced bands of the spectrum, from the largest m down.
    min_hubs : int
        Below this many latents with m >= t, the "hubs" are the largest hub values instead.
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
    progress : bool
        Show tqdm bars on stderr (mapping, k-NN, synthesis, figures).
    network : str
        The network's name or path in error messages (default: ``title``).
    names : dict, optional
        How error messages call the parameters, e.g. ``{'pool_size': '--pool-size', 'psi': '--psi'}``.

    Returns
    -------
    Report

    Raises
    ------
    HubnessError
        Bad input (before any work); a psi whose truncated latents float32 cannot hold.
    NonFiniteError
        A network whose mean latent or images hold NaN or inf; nothing is written.
    """

    pool_size = check_count(pool_size, _name(names, "pool_size"))
    seed = check_seed(seed, names)
    check_pool_seeds(seed, pool_size, names)
    k = check_k_for_pool(k, pool_size, names)
    cols, grid_rows = check_grid(grid)
    num = cols * grid_rows
    spectrum_rows = check_count(spectrum_rows, "spectrum_rows")
    spectrum_cols = check_count(spectrum_cols, "spectrum_cols")
    t, t_lq = check_threshold(t, _name(names, "t")), check_threshold(t_lq, _name(names, "t_lq"))
    psi = check_psi(psi, names)
    if spectrum_rows * spectrum_cols > pool_size or num > pool_size:
        raise HubnessError(f"pool_size = {pool_size} is too small for a spectrum of {spectrum_rows} x {spectrum_cols} "
                           f"and grids of {cols}x{grid_rows}; raise pool_size or shrink the figures")
    outdir = check_outdir(outdir)
    if outdir.is_dir():
        remove_stale_temps(outdir)  # what runs killed here before left
    plt = _pyplot()
    adapter, space, device = figure_adapter(G, device, space, "report")
    mean = check_mean_latent(adapter, space, network or title)
    check_pool_fits(pool_size, adapter.z_dim, len(mean), device, names)
    name = f"{title}, " if title else ""

    bars = Progress(progress)
    try:
        pool = SeedPools(adapter.z_dim, pool_size, start=seed, transform=adapter.transform(space), device=device,
                         batch_size=256, progress=bars.mapping, sample_z=adapter.sample_z).draw(0)
        with bars.step(f"k-NN of {pool_size} latents (k = {k})"):
            res = compute_hubness(pool.latents, k, include_self=include_self, device=device)
        m = res.m
        stats = hubness_stats(m, k, thresholds=(t,))
        order = hubness_spectrum(m)
        hubs = select_threshold(m, t)
        hubs_label = f"hubs (m >= {t:g})"
        if len(hubs) < min_hubs:
            hubs = order[:num]
            hubs_label = f"top {num} hub values (m >= {int(m[hubs[-1]])}; only {int((m >= t).sum())} with m >= {t:g})"
        low = select_low_quality(m, t_lq)
        chosen_low = low[:num] if len(low) else np.argsort(m, kind="stable")[:num]
        low_label = f"low quality (m <= {t_lq:g})" if len(low) else f"smallest hub values (none with m <= {t_lq:g})"

        # Fig. 9's distances (float64: exact for float32 latents), checked before any image is rendered.
        dist = (pool.latents.double() - mean.to(pool.latents.device, torch.float64)).norm(dim=1).cpu().numpy()
        if not np.isfinite(dist).all():
            raise NonFiniteError("the distances of the pool's latents to the mean latent are not finite; the network "
                                 "is broken: check its weights or use another snapshot")
        truncated = abs(psi) * dist
        if truncated.max() > FLOAT32_MAX:
            limit, psi_opt = FLOAT32_MAX / dist.max(), _name(names, "psi")
            raise HubnessError(f"{psi_opt} {psi:g} puts truncated latents up to {truncated.max():.3g} from the mean "
                               f"latent, beyond float32's range ({FLOAT32_MAX:.3g}); use {psi_opt} of magnitude at "
                               f"most {limit:.3g} for this network (e.g. 0.5 to 1)")
        groups = {hubs_label: dist[hubs], "random latents": dist, f"truncated, psi = {psi:g}": truncated}

        # Every image first, then the figures, in memory: an error leaves no half-written report.
        starts = np.linspace(0, pool_size - spectrum_cols, spectrum_rows).round().astype(int)
        bands = [order[s:s + spectrum_cols] for s in starts]
        parts = bands + [hubs[:num], chosen_low]
        idx = np.concatenate(parts)
        bar = bars.counter("synthesis", len(idx), "img")
        try:
            images = render_latents(adapter, pool.latents[torch.as_tensor(idx, device=pool.latents.device)], space,
                                    noise_mode, bar=bar, seeds=pool.seeds[idx])
        finally:
            bar.close()
        images = np.split(images, np.cumsum([len(p) for p in parts])[:-1])

        summary = dict(network=title, space=space, pool_size=pool_size, k=k, include_self=include_self, seed=seed,
                       t=t, t_lq=t_lq, psi=psi, grid=[cols, grid_rows],
                       stats=dict(stats.as_dict(), count_at_least={str(t): int((m >= t).sum())}),
                       hubs=dict(label=hubs_label, count=int(len(hubs)), seeds=pool.seeds[hubs[:num]].tolist()),
                       low_quality=dict(count=int(len(low)), seeds=pool.seeds[low[:num]].tolist()),
                       distance_to_mean={label: float(values.mean()) for label, values in groups.items()})
        content = {}
        bar = bars.counter("figures", len(FIGURES) + 1, "file")
        try:
            # Fig. 2: the long right tail is what a log y-axis makes visible.
            fig, ax = plt.subplots(figsize=(6.4, 4))
            ax.hist(m, bins=np.arange(m.max() + 2) - 0.5 if m.max() < 80 else 80, color="#4477aa")
            ax.set_yscale("log")
            ax.axvline(t, color="#cc3311", linestyle="--", label=f"t = {t:g} ({int((m >= t).sum())} latents)")
            ax.axvline(t_lq, color="#009988", linestyle=":", label=f"t_lq = {t_lq:g} ({len(low)} latents)")
            ax.set_xlabel(f"hub value m (k = {k})")
            ax.set_ylabel("latents (log scale)")
            ax.set_title(f"{name}{space.upper()} space, n = {pool_size}: skewness {stats.skewness:.2f}, "
                         f"max m = {stats.max}")
            ax.legend()
            content["hub_histogram.png"] = figure_png(fig, dpi=110, bbox_inches="tight")
            bar.update(1)

            # Fig. 9: hubs sit close to the mean latent, as truncated latents do.
            fig, ax = plt.subplots(figsize=(6.4, 4))
            top = max(float(values.max()) for values in groups.values())  # |psi| > 1 reaches beyond the pool
            bins = np.linspace(0, top * 1.02 if top > 0 else 1.0, 60)
            for (label, values), colour in zip(groups.items(), ("#cc3311", "#4477aa", "#999933")):
                ax.hist(values, bins=bins, density=True, alpha=0.55, color=colour,
                        label=f"{label}: mean {values.mean():.2f}")
            ax.set_xlabel("distance to the mean latent" + (" (w_avg)" if space == "w" else " (origin)"))
            ax.set_ylabel("density")
            ax.set_title(f"{name}distance to the mean latent")
            ax.legend(fontsize=8)
            content["distance_to_mean.png"] = figure_png(fig, dpi=110, bbox_inches="tight")
            bar.update(1)

            # Fig. 15: bands of the spectrum, from the largest hub values to the smallest.
            fig, axes = plt.subplots(spectrum_rows, 1, figsize=(spectrum_cols * 0.75, spectrum_rows * 0.95),
                                     squeeze=False)
            for r, (s, band) in enumerate(zip(starts, bands)):
                ax = axes[r, 0]
                _show(ax, image_grid(list(images[r]), spectrum_cols, min_cell=1, gap=1))
                ax.set_ylabel(f"ranks {s + 1}-{s + len(band)}\nm {int(m[band[-1]])}-{int(m[band[0]])}", rotation=0,
                              ha="right", va="center", fontsize=8)
            fig.subplots_adjust(top=1 - 0.45 / (spectrum_rows * 0.95), bottom=0.01, hspace=0.12)
            fig.suptitle(f"{name}hubness spectrum: rows from the largest hub values (top) to the smallest (bottom)",
                         fontsize=10)
            content["hubness_spectrum.png"] = figure_png(fig, dpi=110, bbox_inches="tight")
            bar.update(1)

            # Fig. 3: high- vs low-quality latents, same number of each.
            fig, axes = plt.subplots(1, 2, figsize=(10, 4.8 * grid_rows / cols + 0.6))
            for ax, chosen, imgs, label in ((axes[0], hubs[:num], images[-2], hubs_label),
                                            (axes[1], chosen_low, images[-1], low_label)):
                _show(ax, image_grid(list(imgs), cols, min_cell=1, gap=1))
                ax.set_title(f"{label}\n{len(chosen)} images, m {int(m[chosen].min())}-{int(m[chosen].max())}",
                             fontsize=9)
            fig.subplots_adjust(top=0.84, wspace=0.08)
            fig.suptitle(f"{name}high- vs low-quality latents by hub value (k = {k}, pool of {pool_size})")
            content["quality_grids.png"] = figure_png(fig, dpi=110, bbox_inches="tight")
            bar.update(1)

            content["report.json"] = json_bytes(summary, "report.json")
            # One commit: the four figures and report.json replace an earlier report together.
            files = commit_files(outdir, content)
            bar.update(1)
        finally:
            bar.close()
    finally:
        bars.close()
    log.info("hubness report of %s written to %s", title or "the network", outdir)
    return Report(files, summary)
