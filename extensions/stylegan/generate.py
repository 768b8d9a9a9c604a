"""Render the images of sampled latents from a network pickle.

The library behind ``gen_images_hub.py`` and the patched ``gen_images.py``. Pool 0 holds the latents of
the given seeds, each drawn as ``gen_images.py`` draws it; a sampler chooses among them (drawing further
pools of consecutive seeds when it needs more), and every chosen seed is rendered through the same
operations as ``gen_images.py --seeds=<seed>``, one image at a time, so both write the same image.

Outputs in ``outdir`` (an :class:`extensions.outdir.OutputDir`: locked for the run, written all at once at
the end, vouched for by ``manifest.json``):

==================  ======================================================================================
``seed%04d.png``    one image per chosen latent (images the manifest vouches for are kept, not rendered again)
``pool.csv``        every pool seed: pool, seed, hub value m, rank of m in its pool (1 = largest), chosen,
                    output order
``latents.npz``     the chosen latents: seeds, z (n, z_dim) float64, w (n, w_dim) float32 as rendered
                    (StyleGAN only; truncation applied), m and pool (hub samplers), meta (JSON string)
``grid.png``        optional, the chosen images in output order, labelled with their seeds
``manifest.json``   every file above with its SHA-256, and the render settings
==================  ======================================================================================
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import __version__
from .._checks import (HubnessError, NonFiniteError, check_count, check_threshold, check_truncation_psi,
                       non_finite_pixels, resolve_device)
from ..outdir import OutputDir
from ..pools import MAX_SEED, SeedPools, check_pool_memory
from ..render import image_grid, load_png, save_png, seed_filename, write_csv, write_npz
from ..samplers import Selection, make_sampler
from .adapter import NOISE_MODES, GeneratorAdapter, StyleGANAdapter, make_adapter
from .loader import load_network

log = logging.getLogger(__name__)

SAMPLER_NAMES = ("random", "truncation", "hubness", "hubness-lq")
HUB_SAMPLERS = ("hubness", "hubness-lq")
KNN_BACKENDS = ("exact", "approx", "auto")
CSV_NAME = "pool.csv"
NPZ_NAME = "latents.npz"
GRID_NAME = "grid.png"
#: Names of the images this command writes (``seed%04d.png``).
IMAGE_RE = re.compile(r"seed[0-9]{4,}\.png")
#: Every file of a result but the manifest.
RESULT_RE = re.compile(rf"{IMAGE_RE.pattern}|{re.escape(CSV_NAME)}|{re.escape(NPZ_NAME)}|{re.escape(GRID_NAME)}")


@dataclass
class GenerationResult:
    """What :func:`generate_images` did.

    Attributes
    ----------
    selection : extensions.samplers.Selection
    outdir : Path
    images : list of Path
        One per chosen latent, in output order.
    written, skipped : int
        Images rendered now / vouched for by the manifest and kept.
    further_pools : list of (pool index, first seed, last seed)
        Pools drawn beyond the given seeds.
    files : dict
        'csv', 'npz', 'manifest' and (with a grid) 'grid' paths.
    removed : list of str
        Files of earlier runs removed because of ``clean``.
    """

    selection: Selection
    outdir: Path
    images: list
    written: int
    skipped: int
    further_pools: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    removed: list = field(default_factory=list)


class _Progress:
    """tqdm bars for mapping, pools (mapping + hub values) and synthesis; no-ops when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._mapping = None
        self._mapped = 0
        self._pools = None

    def _bar(self, desc, total, unit):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)

    def mapping(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._mapping is None:
            self._mapping = self._bar("mapping", total, "latent")
        elif self._mapped == 0:  # first batch of a further pool: the bar grows by the pool's size
            self._mapping.total += total
            self._mapping.refresh()
        self._mapping.update(done - self._mapped)
        self._mapped = 0 if done >= total else done

    def start_pools(self, total: Optional[int]) -> None:
        """Open the pool bar before the first pool is drawn, so its clock covers mapping and k-NN."""
        if self.enabled:
            self._pools = self._bar("pools", total, "pool")

    def pool(self, chosen: int, wanted: Optional[int], largest_m: Optional[int]) -> None:
        if self._pools is None:
            return
        text = f"chosen {chosen}" + (f"/{wanted}" if wanted else "")
        if largest_m is not None:
            text += f", max m {largest_m}"
        self._pools.set_postfix_str(text, refresh=False)
        self._pools.update(1)

    def synthesis(self, total: int):
        if not self.enabled:
            return _NullBar()
        return self._bar("synthesis", total, "img")

    def close(self) -> None:
        for bar in (self._mapping, self._pools):
            if bar is not None:
                bar.close()
        self._mapping = self._pools = None


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def unique_seeds(seeds: Sequence[int]) -> np.ndarray:
    """``seeds`` without repeats, first occurrence kept, as int64 (a repeated seed renders the same file)."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    _, first = np.unique(seeds, return_index=True)
    return seeds[np.sort(first)]


def parse_grid(value) -> Optional[tuple]:
    """``--grid`` as stylegan3's ``gen_video.py`` reads it: ``'WxH'`` -> (columns, rows).

    None/False: no grid; True, ``'auto'`` or (0, 0): (0, 0), a near-square layout of all images.

    Raises
    ------
    HubnessError
        For anything else, quoting the value.
    """
    if value is None or value is False:
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() == "auto") or \
            (isinstance(value, tuple) and value == (0, 0)):
        return (0, 0)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        cols, rows = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", str(value))  # as gen_video.py: 4x2 or 4,2
        if match is None:
            raise HubnessError(f"--grid {value!r} is not WxH (columns x rows, e.g. 8x4) or auto")
        cols, rows = int(match.group(1)), int(match.group(2))
    if isinstance(cols, bool) or isinstance(rows, bool) or not all(isinstance(v, (int, np.integer)) for v in (cols, rows)) \
            or cols < 1 or rows < 1 or cols * rows > 100_000:
        raise HubnessError(f"--grid {value!r} must be WxH with W, H >= 1 (e.g. 8x4) and at most 100,000 cells")
    return int(cols), int(rows)


def network_identity(network: str) -> dict:
    """What identifies a network's images in the manifest: the embedded name, the URL, or the local file
    with the SHA-256 of its content (a snapshot overwritten in place renders other images); see
    :meth:`extensions.generators.NetworkSource.identity` for the other sources."""
    from ..generators import network_identity as identity  # the registry imports this package
    return identity(network)


def _pool_rows(selection: Selection):
    order = {int(s): i + 1 for i, s in enumerate(selection.seeds)}
    for rec in selection.records:
        for j, seed in enumerate(rec.seeds):
            seed = int(seed)
            yield (seed, rec.index, None if rec.m is None else int(rec.m[j]),
                   None if rec.rank is None else int(rec.rank[j]), int(bool(rec.chosen[j])),
                   order.get(seed) if rec.chosen[j] else None)


def validate_options(sampler, noise_mode, knn_backend, seeds, num, pool_size, batch_size, max_pools, k, t, t_lq,
                     truncation_psi, echo) -> tuple:
    """Check the sampling options of a command (raises :class:`HubnessError` naming the option).

    Returns
    -------
    (seeds without repeats as int64, num, pool_size, truncation_psi as float)
    """
    if sampler not in SAMPLER_NAMES:
        raise HubnessError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    if noise_mode not in NOISE_MODES:
        raise HubnessError(f"--noise-mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
    if knn_backend not in KNN_BACKENDS:
        raise HubnessError(f"k-NN backend {knn_backend!r} is not one of {', '.join(KNN_BACKENDS)}")
    given = np.asarray(seeds, dtype=np.int64).reshape(-1) if len(seeds) else np.zeros(0, np.int64)
    if given.size == 0:
        raise HubnessError("--seeds is empty; give at least one seed, e.g. --seeds 0-99")
    if given.min() < 0 or given.max() > MAX_SEED:
        raise HubnessError(f"--seeds must lie in 0..{MAX_SEED} (numpy RandomState seeds), got "
                           f"{int(given.min())}..{int(given.max())}")
    seeds = unique_seeds(given)
    if len(seeds) < len(given):
        echo(f"note: {len(given) - len(seeds)} repeated seed(s) in --seeds rendered once")
    num = None if num is None else check_count(num, "--num")
    pool_size = len(seeds) if pool_size is None else check_count(pool_size, "--pool-size")
    check_count(batch_size, "--batch-size")
    check_count(max_pools, "--max-pools")
    if num is not None and sampler not in HUB_SAMPLERS and num > len(seeds) + (max_pools - 1) * pool_size:
        raise HubnessError(f"--num {num} is more than --seeds ({len(seeds)}) and {max_pools - 1} further pools of "
                           f"--pool-size {pool_size} hold; give more seeds or raise --max-pools")
    if sampler in HUB_SAMPLERS:
        k = check_count(k, "--k")
        check_threshold(t, "--t")
        check_threshold(t_lq, "--t-lq")
        for size, source in ((len(seeds), "--seeds"), (pool_size, "--pool-size")):
            if k >= size:
                raise HubnessError(f"--k {k} needs pools of more than {k} latents, but {source} gives {size}; "
                                   f"lower --k or use more seeds")
    truncation_psi = check_truncation_psi(truncation_psi)
    if sampler == "truncation" and truncation_psi == 1:
        raise HubnessError("--sampler truncation needs --trunc other than 1 (e.g. --trunc 0.7)")
    return seeds, num, pool_size, truncation_psi


def generate_images(network: str, seeds: Sequence[int], outdir, *, sampler: str = "random",
                    num: Optional[int] = None, truncation_psi: float = 1.0, class_idx: Optional[int] = None,
                    noise_mode: str = "const", translate: Sequence[float] = (0, 0), rotate: float = 0.0,
                    k: int = 5, t: float = 50.0, t_lq: float = 1.0, pool_size: Optional[int] = None,
                    space: Optional[str] = None, knn_backend: str = "exact", include_self: bool = False,
                    device=None, batch_size: int = 256, max_pools: int = 50, grid=None, clean: bool = False,
                    stylegan3=None, progress: bool = False,
                    echo: Optional[Callable[[str], None]] = None) -> GenerationResult:
    """Choose latents with a sampler and render their images into ``outdir``.

    Parameters
    ----------
    network : str
        Network pickle: path or URL; ``'digits'``: the embedded digits generator; any value a network
        source takes (:mod:`extensions.generators`: BigGAN, ``module:callable``).
    seeds : sequence of int
        Pool 0, each latent ``RandomState(seed).randn(1, z_dim)`` as in ``gen_images.py`` (BigGAN:
        ``truncated_noise_sample(truncation=psi, seed=seed)``, hub values from the draws at psi = 1).
    outdir : str or Path
        Locked for the run; see :class:`extensions.outdir.OutputDir`.
    sampler : {'random', 'truncation', 'hubness', 'hubness-lq'}
        'random' renders the seeds in order (``gen_images.py``); 'truncation' the same with
        ``truncation_psi``; 'hubness' the latents with hub value m >= ``t``, largest m first;
        'hubness-lq' those with m <= ``t_lq``, smallest first.
    num : int, optional
        Images to render. None: everything pool 0 yields. More than pool 0 yields: further pools of
        ``pool_size`` consecutive seeds after the largest given seed are drawn until ``num`` are chosen.
    truncation_psi, class_idx, noise_mode, translate, rotate
        As ``gen_images.py``'s --trunc, --class, --noise-mode, --translate, --rotate. Hub values are
        computed without truncation; the chosen latents are rendered with it.
    k, t, t_lq, include_self, knn_backend
        Hub values: k-NN list size, thresholds, counting convention, k-NN backend ('exact', 'approx',
        'auto'); see :func:`extensions.hubness.compute_hubness`.
    pool_size : int, optional
        Size of further pools; default ``len(seeds)``.
    space : {'w', 'z'}, optional
        Where hub values are computed; default W for StyleGAN networks, Z for other generators.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    batch_size : int
        Latents per mapping batch.
    max_pools : int
        Pools drawn at most.
    grid : None, True, 'auto', 'WxH' or (columns, rows)
        Also write ``grid.png`` (see :func:`parse_grid`).
    clean : bool
        Remove images of earlier runs that this result does not vouch for, instead of stopping.
    stylegan3 : str or Path, optional
        stylegan3 checkout (else ``$STYLEGAN3_DIR``, else importable modules).
    progress : bool
        Show tqdm progress bars on stderr.
    echo : callable, optional
        Receives one-line status messages; default: the module logger.

    Returns
    -------
    GenerationResult

    Raises
    ------
    HubnessError
        Bad input, a busy or foreign output folder, non-finite latents or images (each error names the
        option or the seed); the output folder is left as it was.
    extensions.ThresholdUnreachableError
        When the sampler cannot collect the latents asked for; the output folder is left as it was.
    """
    say = echo or log.info
    resolve_device(device)  # before the folder is locked or anything loads
    seeds, num, pool_size, truncation_psi = validate_options(sampler, noise_mode, knn_backend, seeds, num, pool_size,
                                                      batch_size, max_pools, k, t, t_lq, truncation_psi, say)
    layout = parse_grid(grid)
    translate = tuple(float(v) for v in translate)
    if not all(np.isfinite(v) for v in (*translate, float(rotate))):
        raise HubnessError(f"--translate {','.join(f'{v:g}' for v in translate)} --rotate {float(rotate):g} must be "
                           f"finite numbers (e.g. --translate 0.3,1 --rotate 10)")
    hub = sampler in HUB_SAMPLERS

    with OutputDir(outdir, tool="gen_images_hub", clean=clean) as out:
        say(f'Loading networks from "{network}"...')
        G = load_network(network, stylegan3=stylegan3, device=device)
        adapter = make_adapter(G)
        space = adapter.check_space(space)
        adapter.check_truncation(truncation_psi)
        if class_idx is not None and adapter.c_dim == 0:
            say("warn: --class=lbl ignored when running on an unconditional network")
            class_idx = None
        labels = adapter.labels(class_idx)
        if truncation_psi != 1:  # generators without a mapping network cannot truncate
            if not bool(torch.isfinite(adapter.mean_latent(space)).all()):
                raise NonFiniteError(f"network {network!r} has NaN or inf in its mean latent (w_avg), which --trunc "
                                     f"{truncation_psi:g} moves every latent towards; the network is broken: check "
                                     f"its weights, use another snapshot, or leave --trunc at 1")
        moved = translate != (0.0, 0.0) or float(rotate) != 0
        if not adapter.set_input_transform(translate, rotate) and moved:
            say("warn: --translate/--rotate ignored: only stylegan3 networks have an input transform")
            moved = False
        settings = dict(network_identity(network), truncation_psi=truncation_psi, class_idx=class_idx,
                        noise_mode=noise_mode, translate=list(translate), rotate=float(rotate))
        changed = out.settings_changed(settings)
        if changed and out.results_present(IMAGE_RE) and not out.clean:
            what = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
            raise HubnessError(f"--outdir {str(out.path)!r} holds images rendered with other settings ({what}); "
                               f"pass --clean to replace them, or choose another --outdir")
        d = adapter.w_dim if space == "w" else adapter.z_dim
        check_pool_memory(max(len(seeds), pool_size), adapter.z_dim, d, hub=hub, device=adapter.device,
                          option="--seeds" if len(seeds) >= pool_size else "--pool-size")

        selection, further = sample_seeds(adapter, network, seeds, sampler, num, space, labels, truncation_psi,
                                     pool_size, batch_size, max_pools, k, t, t_lq, include_self, knn_backend,
                                     progress, say)
        z = adapter.seed_latents(selection.seeds, truncation_psi)
        w = _rendered_w(adapter, network, z, labels, truncation_psi, selection.seeds)

        names = [seed_filename(s) for s in selection.seeds]
        status = out.vouched(names, settings)
        wanted = set(names)
        produced = wanted | {CSV_NAME, NPZ_NAME} | ({GRID_NAME} if layout is not None else set())
        ours = set(out.manifest["files"]) if out.manifest is not None else set()
        unwanted = [n for n in out.results_present(RESULT_RE) if n not in produced or status.get(n) == "other"
                    or (n not in status and n not in ours)]
        remove = out.refuse_or_clean(unwanted, "results of another selection or settings, or files no run of "
                                               "gen_images_hub wrote")
        damaged = [n for n in names if status[n] == "damaged"]
        if damaged:
            say(f"note: rendering again {len(damaged)} image(s) that manifest.json lists but that are missing or "
                f"changed")
        staged = out.prepare_staging(settings, wanted)
        written = _render_images(adapter, network, selection.seeds, z, w, labels, noise_mode, out,
                                 [n for n in names if status[n] != "ok" and n not in staged], progress,
                                 truncation_psi, moved)
        meta = dict(render=settings, sampler=selection.sampler, space=space, generator=adapter.kind,
                    z_dim=adapter.z_dim, w_dim=adapter.w_dim, c_dim=adapter.c_dim, num_ws=adapter.num_ws,
                    given_seeds=len(seeds), pool_size=pool_size, version=__version__)
        _write_tables(out, selection, z, w, meta)
        if layout is not None:
            images = [load_png(out.staging / n if (out.staging / n).is_file() else out.path / n) for n in names]
            # Seed and hub value, short enough for a 64-pixel cell.
            captions = [str(int(s)) for s in selection.seeds]
            if selection.m is not None:
                captions = [f"{c} m{int(m)}" for c, m in zip(captions, selection.m)]
            _save(image_grid(images, layout[0] or None, rows=layout[1] or None, gap=2, labels=captions),
                  out, GRID_NAME)
        out.commit(settings, keep=[n for n in names if status[n] == "ok" and n not in staged], remove=remove)

    if remove:
        say(f"removed {len(remove)} file(s) of an earlier run (--clean)")
    skipped = len(names) - written
    say(f"wrote {written} image(s) to {str(out.path)!r}" + (f", kept {skipped} already there" if skipped else ""))
    files = dict(csv=out.path / CSV_NAME, npz=out.path / NPZ_NAME, manifest=out.path / "manifest.json")
    if layout is not None:
        files["grid"] = out.path / GRID_NAME
    return GenerationResult(selection, out.path, [out.path / n for n in names], written, skipped, further, files,
                            remove)


def follow_sampling(network: str, seeds: Sequence[int], *, sampler: str = "random", num: Optional[int] = None,
                    truncation_psi: float = 1.0, class_idx: Optional[int] = None, noise_mode: str = "const",
                    k: int = 5, t: float = 50.0, t_lq: float = 1.0, pool_size: Optional[int] = None,
                    space: Optional[str] = None, knn_backend: str = "exact", include_self: bool = False,
                    device=None, batch_size: int = 256, max_pools: int = 50, stylegan3=None) -> Optional[Selection]:
    """What a rank other than 0 does in a multi-process :func:`generate_images`: draw the same pools and
    share the hub values of each (:mod:`extensions.distributed`); write nothing.

    Takes :func:`generate_images`' sampling options (the same values as rank 0). Returns the selection,
    equal to rank 0's, or None for samplers that compute no hub values (nothing to share).
    """
    seeds, num, pool_size, truncation_psi = validate_options(sampler, noise_mode, knn_backend, seeds, num, pool_size,
                                                             batch_size, max_pools, k, t, t_lq, truncation_psi,
                                                             lambda text: None)
    if sampler not in HUB_SAMPLERS:
        return None
    adapter = make_adapter(load_network(network, stylegan3=stylegan3, device=device))
    space = adapter.check_space(space)
    labels = adapter.labels(class_idx if adapter.c_dim else None)
    selection, _ = sample_seeds(adapter, network, seeds, sampler, num, space, labels, truncation_psi, pool_size,
                                batch_size, max_pools, k, t, t_lq, include_self, knn_backend, False, lambda text: None)
    return selection


def sample_seeds(adapter, network, seeds, sampler, num, space, labels, truncation_psi, pool_size, batch_size,
                 max_pools, k, t, t_lq, include_self, knn_backend, progress, say):
    """Run the sampler over the seed pools with progress bars; returns (selection, further pools).

    Non-finite latents from the network raise :class:`NonFiniteError` naming the network and the seed.
    """
    hub = sampler in HUB_SAMPLERS
    bars = _Progress(progress)
    warned = []

    def on_pool(pool, record, collected):
        bars.pool(collected, num, None if record.m is None else int(record.m.max()))
        # A threshold that the pools rarely reach can cost dozens of pools: say so after the first one.
        if (sampler == "hubness" and num is not None and not warned and collected < num):
            warned.append(True)
            largest = int(record.m.max())
            hint = f"for the {num} largest hub values use --t 0 --num {num}"
            if collected == 0:
                say(f"note: no latent of the first pool reaches m >= {t:g} (largest m: {largest}); the sampler "
                    f"gives up after 3 such pools; {hint}")
            elif math.ceil(num / collected) > 3:
                say(f"note: the first pool yielded {collected} of {num} latents with m >= {t:g} (largest m: "
                    f"{largest}); about {min(math.ceil(num / collected), max_pools)} pools of up to {pool_size} "
                    f"seeds may be drawn (--max-pools {max_pools}); {hint}")

    try:
        pools = SeedPools(adapter.z_dim, pool_size, seeds=seeds, transform=adapter.transform(space, labels),
                          batch_size=batch_size, device=adapter.device, progress=bars.mapping,
                          sample_z=adapter.sample_z)
        params = dict(max_pools=max_pools)
        if hub:
            params.update(k=k, include_self=include_self, backend=knn_backend, device=adapter.device)
            params.update(t=t) if sampler == "hubness" else params.update(t_lq=t_lq)
        if sampler == "truncation":
            params.update(psi=truncation_psi, mean=adapter.mean_latent(space))
        chooser = make_sampler(sampler, **params)
        bars.start_pools(1 if num is None else None)
        selection = chooser.sample(pools, num, progress=on_pool)
    except NonFiniteError as exc:
        raise NonFiniteError(f"network {network!r} maps seed {exc.seed} to a {space.upper()} latent with NaN or "
                             f"inf ({exc}); the network is broken: check its weights (e.g. render the seed with "
                             f"gen_images.py) or use another snapshot", exc.seed) from exc
    finally:
        bars.close()

    further = [(r.index, int(r.seeds[0]), int(r.seeds[-1])) for r in selection.records[1:]]
    if further:
        first = selection.records[0]
        say(f"drew {len(further)} further pool(s) of {pool_size} seeds ({further[0][1]}-{further[-1][2]}): the "
            f"{len(first.seeds)} given seeds yielded {int(first.chosen.sum())} of {num}")
    if hub:
        say(f"{sampler}: chose {len(selection.seeds)} of {sum(len(r.seeds) for r in selection.records)} latents "
            f"({chooser.criterion()}; {space.upper()} space), m from {int(selection.m.min())} to "
            f"{int(selection.m.max())}")
        recalls = [r.stats["recall"] for r in selection.records if r.stats.get("recall") is not None]
        if recalls:  # an approximate search ran: its measured recall is part of the result
            exact = sum(r.stats.get("backend") == "exact" for r in selection.records if r.stats.get("recall") is not None)
            say(f"approximate k-NN: recall@{k} measured {min(recalls):.3f}" + (
                f" to {max(recalls):.3f} over {len(recalls)} pools" if len(recalls) > 1 else "") + (
                f"; {exact} pool(s) below 0.95 searched again exactly" if exact else ""))
    return selection, further


def _rendered_w(adapter, network, z, labels, truncation_psi, seeds) -> Optional[torch.Tensor]:
    """W latents as rendered (truncation applied), one per call as gen_images.py; None for Z-only generators."""
    if not isinstance(adapter, StyleGANAdapter):
        return None
    with torch.no_grad():
        # One latent per call, as gen_images.py: batched matmuls may round differently.
        w = torch.cat([adapter.map(z[i:i + 1], labels, truncation_psi=truncation_psi) for i in range(len(z))]).cpu()
    bad = ~torch.isfinite(w).all(dim=1)
    if bool(bad.any()):
        seed = int(seeds[int(bad.nonzero()[0, 0])])
        if truncation_psi != 1:
            raise NonFiniteError(f"--trunc {truncation_psi:g} moves the W latent of seed {seed} to NaN or inf; "
                                 f"use a truncation psi of moderate size (e.g. 0.5 to 1)", seed)
        raise NonFiniteError(f"network {network!r} maps seed {seed} to a W latent with NaN or inf; the network is "
                             f"broken: check its weights or use another snapshot", seed)
    return w


def _save(array: np.ndarray, out: OutputDir, name: str) -> None:
    """Stage a PNG; an OSError names the file the user will look for, not the staging path."""
    try:
        save_png(array, out.staged(name))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(out.path / name)) from exc


def _write_tables(out: OutputDir, selection: Selection, z: np.ndarray, w: Optional[torch.Tensor], meta: dict) -> None:
    """Stage ``pool.csv`` (every pool seed) and ``latents.npz`` (the chosen ones)."""
    arrays = dict(seeds=selection.seeds.astype(np.int64), z=z, pool=selection.pool_index.astype(np.int64),
                  meta=np.array(json.dumps(meta)))
    if w is not None:
        arrays["w"] = w.numpy().astype(np.float32)
    if selection.m is not None:
        arrays["m"] = selection.m.astype(np.int64)
    for name, write in ((CSV_NAME, lambda p: write_csv(p, ("seed", "pool", "m", "rank", "chosen", "order"),
                                                       _pool_rows(selection))),
                        (NPZ_NAME, lambda p: write_npz(p, **arrays))):
        try:
            write(out.staged(name))
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(out.path / name)) from exc


def _render_images(adapter: GeneratorAdapter, network: str, seeds: np.ndarray, z: np.ndarray,
                   w: Optional[torch.Tensor], labels: torch.Tensor, noise_mode: str, out: OutputDir,
                   todo: list, progress: bool, truncation_psi: float = 1, moved: bool = False) -> int:
    """Stage ``seed%04d.png`` for the seeds whose names are in ``todo``; returns how many were rendered
    (``moved``: a --translate/--rotate is applied)."""
    todo = set(todo)
    bar = _Progress(progress).synthesis(len(todo))
    written = 0
    try:
        with torch.no_grad():
            for i, seed in enumerate(seeds):
                name = seed_filename(seed)
                if name not in todo:
                    continue
                img = _render_one(adapter, z[i:i + 1], None if w is None else w[i:i + 1], labels, noise_mode,
                                  truncation_psi)
                if not bool(torch.isfinite(img).all()):
                    raise non_finite_pixels(network, f"for seed {int(seed)}", truncation_psi=truncation_psi,
                                            moved=moved, seed=int(seed))
                _save(adapter.quantize(img).permute(0, 2, 3, 1).cpu().numpy()[0], out, name)
                written += 1
                bar.update(1)
    finally:
        bar.close()
    return written


def _render_one(adapter: GeneratorAdapter, z: np.ndarray, w: Optional[torch.Tensor], labels: torch.Tensor,
                noise_mode: str, truncation_psi: float = 1) -> torch.Tensor:
    if w is not None:  # StyleGAN: truncation is already in w
        return adapter.synthesize(w, noise_mode=noise_mode)
    return adapter.generate(torch.from_numpy(z), labels, truncation_psi=truncation_psi, noise_mode=noise_mode)
