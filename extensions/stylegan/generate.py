"""Render the images of sampled latents from a network pickle.

The library behind ``gen_images_hub.py`` and the patched ``gen_images.py``. Pool 0 holds the latents of
the given seeds, each drawn as ``gen_images.py`` draws it; a sampler chooses among them (drawing further
pools of consecutive seeds when it needs more), and every chosen seed is rendered through the same
operations as ``gen_images.py --seeds=<seed>``, one image at a time, so both write the same image.

Outputs in ``outdir``:

==================  ======================================================================================
``seed%04d.png``    one image per chosen latent (already present ones are kept, not rendered again)
``pool.csv``        every pool seed: pool, seed, hub value m, rank of m in its pool (1 = largest), chosen,
                    output order
``latents.npz``     the chosen latents: seeds, z (n, z_dim) float64, w (n, w_dim) float32 as rendered
                    (StyleGAN only; truncation applied), m and pool (hub samplers), meta (JSON string)
``grid.png``        optional, the chosen images in output order
==================  ======================================================================================
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import __version__
from .._checks import HubnessError, check_count
from ..pools import SeedPools, seed_latents
from ..render import image_grid, load_png, save_png, seed_filename, to_uint8, write_csv, write_npz
from ..samplers import Selection, make_sampler
from .adapter import NOISE_MODES, GeneratorAdapter, StyleGANAdapter, make_adapter
from .loader import is_url, load_network

log = logging.getLogger(__name__)

SAMPLER_NAMES = ("random", "truncation", "hubness", "hubness-lq")
HUB_SAMPLERS = ("hubness", "hubness-lq")
KNN_BACKENDS = ("exact", "approx", "auto")
CSV_NAME = "pool.csv"
NPZ_NAME = "latents.npz"
GRID_NAME = "grid.png"


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
        Images rendered now / already present and kept.
    further_pools : list of (pool index, first seed, last seed)
        Pools drawn beyond the given seeds.
    files : dict
        'csv', 'npz' and (with a grid) 'grid' paths.
    """

    selection: Selection
    outdir: Path
    images: list
    written: int
    skipped: int
    further_pools: list = field(default_factory=list)
    files: dict = field(default_factory=dict)


class _Progress:
    """tqdm bars for mapping, k-NN and synthesis; no-ops when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._mapping = None
        self._mapped = 0
        self._knn = None

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

    def pool(self, pool) -> None:
        if not self.enabled:
            return
        if self._knn is None:
            self._knn = self._bar("k-NN", None, "pool")
        self._knn.update(1)

    def synthesis(self, total: int):
        if not self.enabled:
            return _NullBar()
        return self._bar("synthesis", total, "img")

    def close(self) -> None:
        for bar in (self._mapping, self._knn):
            if bar is not None:
                bar.close()
        self._mapping = self._knn = None


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def unique_seeds(seeds: Sequence[int]) -> list:
    """``seeds`` without repeats, first occurrence kept (a repeated seed renders the same file again)."""
    out, seen = [], set()
    for s in seeds:
        s = int(s)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _network_id(network: str) -> str:
    from ..digits.network import NETWORK_NAME
    if network == NETWORK_NAME:
        return network  # the embedded generator is a name, not a path
    return network if is_url(network) else os.path.abspath(os.path.expanduser(network))


def _check_outdir(outdir: Path, render: dict) -> None:
    """Refuse an outdir whose images were rendered with other settings: skipping them would mix the two."""
    npz = outdir / NPZ_NAME
    if not npz.is_file() or not any(outdir.glob("seed*.png")):
        return
    try:
        with np.load(npz, allow_pickle=False) as data:
            previous = json.loads(str(data["meta"]))["render"]
    except Exception as exc:
        raise HubnessError(f"cannot read {str(npz)!r} ({type(exc).__name__}) to check how the images in "
                           f"{str(outdir)!r} were rendered; delete it or use another --outdir") from exc
    diff = {k: (previous.get(k), v) for k, v in render.items() if previous.get(k) != v}
    if diff:
        what = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in diff.items())
        raise HubnessError(f"--outdir {str(outdir)!r} holds images rendered with other settings ({what}); "
                           f"use another --outdir so that kept images match the new ones")


def _pool_rows(selection: Selection):
    order = {int(s): i + 1 for i, s in enumerate(selection.seeds)}
    for rec in selection.records:
        for j, seed in enumerate(rec.seeds):
            seed = int(seed)
            yield (seed, rec.index, None if rec.m is None else int(rec.m[j]),
                   None if rec.rank is None else int(rec.rank[j]), int(bool(rec.chosen[j])),
                   order.get(seed) if rec.chosen[j] else None)


def generate_images(network: str, seeds: Sequence[int], outdir, *, sampler: str = "random",
                    num: Optional[int] = None, truncation_psi: float = 1.0, class_idx: Optional[int] = None,
                    noise_mode: str = "const", translate: Sequence[float] = (0, 0), rotate: float = 0.0,
                    k: int = 5, t: float = 50.0, t_lq: float = 1.0, pool_size: Optional[int] = None,
                    space: Optional[str] = None, knn_backend: str = "exact", include_self: bool = False,
                    device=None, batch_size: int = 256, max_pools: int = 50, grid: bool = False,
                    stylegan3=None, progress: bool = False,
                    echo: Optional[Callable[[str], None]] = None) -> GenerationResult:
    """Choose latents with a sampler and render their images into ``outdir``.

    Parameters
    ----------
    network : str
        Network pickle: path or URL; ``'digits'``: the embedded digits generator.
    seeds : sequence of int
        Pool 0, each latent ``RandomState(seed).randn(1, z_dim)`` as in ``gen_images.py``.
    outdir : str or Path
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
    grid : bool
        Also write ``grid.png``.
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
        Bad input (each error names the option to fix); raised before any file is written.
    extensions.ThresholdUnreachableError
        When the sampler cannot collect the latents asked for; raised before any file is written.
    """
    say = echo or log.info
    if sampler not in SAMPLER_NAMES:
        raise HubnessError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    if noise_mode not in NOISE_MODES:
        raise HubnessError(f"--noise-mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
    if knn_backend not in KNN_BACKENDS:
        raise HubnessError(f"k-NN backend {knn_backend!r} is not one of {', '.join(KNN_BACKENDS)}")
    given = list(seeds)
    seeds = unique_seeds(given)
    if not seeds:
        raise HubnessError("--seeds is empty; give at least one seed, e.g. --seeds 0-99")
    if len(seeds) < len(given):
        say(f"note: {len(given) - len(seeds)} repeated seed(s) in --seeds rendered once")
    num = None if num is None else check_count(num, "--num")
    pool_size = len(seeds) if pool_size is None else check_count(pool_size, "--pool-size")
    batch_size = check_count(batch_size, "--batch-size")
    max_pools = check_count(max_pools, "--max-pools")
    hub = sampler in HUB_SAMPLERS
    if hub:
        k = check_count(k, "--k")
        for size, source in ((len(seeds), "--seeds"), (pool_size, "--pool-size")):
            if k >= size:
                raise HubnessError(f"--k {k} needs pools of more than {k} latents, but {source} gives {size}; "
                                   f"lower --k or use more seeds")
    truncation_psi = float(truncation_psi)
    if not np.isfinite(truncation_psi):
        raise HubnessError(f"--trunc must be a finite number, got {truncation_psi}")
    if sampler == "truncation" and truncation_psi == 1:
        raise HubnessError("--sampler truncation needs --trunc other than 1 (e.g. --trunc 0.7)")
    translate = tuple(float(v) for v in translate)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise HubnessError(f"--outdir {str(outdir)!r} exists and is not a directory; choose another --outdir")

    say(f'Loading networks from "{network}"...')
    G = load_network(network, stylegan3=stylegan3, device=device)
    adapter = make_adapter(G)
    space = adapter.check_space(space)
    if class_idx is not None and adapter.c_dim == 0:
        say("warn: --class=lbl ignored when running on an unconditional network")
        class_idx = None
    labels = adapter.labels(class_idx)
    if truncation_psi != 1:
        adapter.mean_latent(space)  # generators without a mapping network cannot truncate
    moved = translate != (0.0, 0.0) or float(rotate) != 0
    if not adapter.set_input_transform(translate, rotate) and moved:
        say("warn: --translate/--rotate ignored: only stylegan3 networks have an input transform")
    render = dict(network=_network_id(network), truncation_psi=truncation_psi, class_idx=class_idx,
                  noise_mode=noise_mode, translate=list(translate), rotate=float(rotate))
    _check_outdir(outdir, render)

    bars = _Progress(progress)
    try:
        pools = SeedPools(adapter.z_dim, pool_size, seeds=seeds, transform=adapter.transform(space, labels),
                          batch_size=batch_size, device=adapter.device, progress=bars.mapping)
        params = dict(max_pools=max_pools)
        if hub:
            params.update(k=k, include_self=include_self, backend=knn_backend, device=adapter.device)
            if sampler == "hubness":
                params.update(t=t)
            else:
                params.update(t_lq=t_lq)
        if sampler == "truncation":
            params.update(psi=truncation_psi, mean=adapter.mean_latent(space))
        chooser = make_sampler(sampler, **params)
        selection = chooser.sample(pools, num, progress=bars.pool if hub else None)
    finally:
        bars.close()

    further = [(r.index, int(r.seeds[0]), int(r.seeds[-1])) for r in selection.records[1:]]
    first = selection.records[0]
    for index, lo, hi in further:
        say(f"pool {index}: drew further seeds {lo}-{hi} (the {len(first.seeds)} given seeds yielded "
            f"{int(first.chosen.sum())} of {num})")
    if hub:
        say(f"{sampler}: chose {len(selection.seeds)} of {sum(len(r.seeds) for r in selection.records)} latents "
            f"({chooser.criterion()}; {space.upper()} space), m from {int(selection.m.min())} to "
            f"{int(selection.m.max())}")

    z = seed_latents(selection.seeds, adapter.z_dim)
    w = None
    if isinstance(adapter, StyleGANAdapter):
        # One latent per call, as gen_images.py: batched matmuls may round differently.
        with torch.no_grad():
            w = torch.cat([adapter.map(z[i:i + 1], labels, truncation_psi=truncation_psi)
                           for i in range(len(z))]).cpu()

    outdir.mkdir(parents=True, exist_ok=True)
    meta = dict(render=render, sampler=selection.sampler, space=space, generator=adapter.kind,
                z_dim=adapter.z_dim, w_dim=adapter.w_dim, c_dim=adapter.c_dim, num_ws=adapter.num_ws,
                given_seeds=len(seeds), pool_size=pool_size, version=__version__)
    files = _write_tables(outdir, selection, z, w, meta)
    images, written = _render_images(adapter, selection.seeds, z, w, labels, noise_mode, outdir, bars)
    skipped = len(images) - written
    if grid:
        files["grid"] = outdir / GRID_NAME
        save_png(image_grid([load_png(p) for p in images]), files["grid"])
    say(f"wrote {written} image(s) to {str(outdir)!r}" + (f", kept {skipped} already there" if skipped else ""))
    return GenerationResult(selection, outdir, images, written, skipped, further, files)


def _write_tables(outdir: Path, selection: Selection, z: np.ndarray, w: Optional[torch.Tensor], meta: dict) -> dict:
    """``pool.csv`` (every pool seed) and ``latents.npz`` (the chosen ones); returns their paths."""
    arrays = dict(seeds=selection.seeds.astype(np.int64), z=z, pool=selection.pool_index.astype(np.int64),
                  meta=np.array(json.dumps(meta)))
    if w is not None:
        arrays["w"] = w.numpy().astype(np.float32)
    if selection.m is not None:
        arrays["m"] = selection.m.astype(np.int64)
    files = dict(csv=outdir / CSV_NAME, npz=outdir / NPZ_NAME)
    write_csv(files["csv"], ("seed", "pool", "m", "rank", "chosen", "order"), _pool_rows(selection))
    write_npz(files["npz"], **arrays)
    return files


def _render_images(adapter: GeneratorAdapter, seeds: np.ndarray, z: np.ndarray, w: Optional[torch.Tensor],
                   labels: torch.Tensor, noise_mode: str, outdir: Path, bars: _Progress) -> tuple:
    """Write ``seed%04d.png`` for each seed not already in ``outdir``; returns (all paths, number written)."""
    images, written = [], 0
    bar = bars.synthesis(len(seeds))
    try:
        with torch.no_grad():
            for i, seed in enumerate(seeds):
                path = outdir / seed_filename(seed)
                images.append(path)
                if not path.exists():
                    save_png(to_uint8(_render_one(adapter, z[i:i + 1], None if w is None else w[i:i + 1],
                                                  labels, noise_mode))[0], path)
                    written += 1
                bar.update(1)
    finally:
        bar.close()
    return images, written


def _render_one(adapter: GeneratorAdapter, z: np.ndarray, w: Optional[torch.Tensor], labels: torch.Tensor,
                noise_mode: str) -> torch.Tensor:
    if w is not None:
        return adapter.synthesize(w, noise_mode=noise_mode)
    return adapter.generate(torch.from_numpy(z), labels, noise_mode=noise_mode)
