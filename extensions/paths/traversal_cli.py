"""Local-basis traversals of sampled seeds: the library and options behind ``gen_traversal_hub.py``.

For every seed a sampler chooses (``--sampler`` and the hub options of ``gen_images_hub.py``: start from
hubs), the W latent is drawn and mapped as ``gen_images.py`` does (``--trunc``, ``--class``), its local
basis is taken from the partial network (:class:`extensions.paths.partial.PartialNetwork`: the feature map
of ``--block``, the ws rows of ``--layers`` moved), and each of ``--directions`` is walked ``--steps``
steps of ``--step-size`` both ways: ``iterative`` (:func:`extensions.paths.curve_traversal`, the basis
taken again at every step) or ``linear`` (``w + s v`` along the seed's basis vector).

Outputs in ``--outdir`` (an :class:`extensions.outdir.OutputDir`: locked for the run, written all at once
at the end, vouched for by ``manifest.json``):

==========================  ==================================================================================
``seed%04d_traversal.png``  rows: the directions; columns: steps -N..N; the centre column is the seed's image
                            as ``gen_images.py`` renders it (``--noise-mode const``)
``seed%04d_traversal.npz``  ``curves`` (directions, 2N+1, w_dim) float32, ``offsets`` (2N+1,) (step k times
                            the step size), ``singular_values`` (rank,) and ``basis`` (w_dim, directions) at
                            the seed, ``directions`` (indices), ``rows`` (the ws rows moved), ``seed``, ``z``,
                            ``w``, ``m`` (hub samplers), ``meta`` (JSON: the settings)
``manifest.json``           every file above with its SHA-256, and the settings
==========================  ==================================================================================
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import click
import numpy as np
import torch

from .. import __version__
from .._checks import HubnessError, NonFiniteError, check_count, non_finite_pixels, resolve_device
from ..outdir import OutputDir
from ..pools import seed_latents
from ..render import image_grid, save_png, to_uint8, write_npz
from ..stylegan.cli import SeedList, hubness_options, in_processes, one_line_errors
from .partial import LAYER_SUBSETS, PartialNetwork, resolve_block

log = logging.getLogger(__name__)

#: ``--method`` choices.
TRAVERSAL_METHODS = ("iterative", "linear")
#: Names of the files this command writes.
RESULT_RE = re.compile(r"seed[0-9]{4,}_traversal\.(png|npz)")
#: Hub options of gen_images_hub.py that keep their meaning here (there is no grid).
HUB_OPTIONS = ("sampler", "num", "k", "t", "t_lq", "pool_size", "space", "knn_backend", "include_self", "device",
               "batch_size", "max_pools", "clean", "gpus")
#: Directions one command may walk; each costs a basis per step.
MAX_DIRECTIONS = 4096
#: Steps per side one command may take.
MAX_STEPS = 10_000


def strip_name(seed: int) -> str:
    """``seed%04d_traversal.png``."""
    return f"seed{int(seed):04d}_traversal.png"


def npz_name(seed: int) -> str:
    """``seed%04d_traversal.npz``."""
    return f"seed{int(seed):04d}_traversal.npz"


@dataclass
class TraversalResult:
    """What :func:`render_traversals` did.

    Attributes
    ----------
    outdir : Path
    seeds : np.ndarray, shape (n,), int64
        The chosen seeds, in output order.
    strips, npzs : list of Path
        One of each per seed.
    written, skipped : int
        Seeds computed now / vouched for by the manifest and kept.
    removed : list of str
        Files of earlier runs removed because of ``clean``.
    """

    outdir: Path
    seeds: np.ndarray
    strips: list
    npzs: list
    written: int
    skipped: int
    removed: list = field(default_factory=list)


def check_traversal_options(directions, steps, step_size, method, layers, rank) -> tuple:
    """Check the traversal options (raises :class:`HubnessError` naming the option).

    Returns
    -------
    (directions as int64 without repeats, in the given order, steps, step_size as float, rank or None)
    """
    if method not in TRAVERSAL_METHODS:
        raise HubnessError(f"--method {method!r} is not one of {', '.join(TRAVERSAL_METHODS)}")
    if layers not in LAYER_SUBSETS:
        raise HubnessError(f"--layers {layers!r} is not one of {', '.join(LAYER_SUBSETS)}")
    given = np.asarray(directions, dtype=np.int64).reshape(-1) if len(directions) else np.zeros(0, np.int64)
    if given.size == 0:
        raise HubnessError("--directions is empty; give at least one, e.g. --directions 0-4")
    if given.min() < 0:
        raise HubnessError(f"--directions must be >= 0 (0 = the largest singular value), got {int(given.min())}")
    _, first = np.unique(given, return_index=True)
    directions = given[np.sort(first)]
    if len(directions) > MAX_DIRECTIONS:
        raise HubnessError(f"--directions names {len(directions)} directions, more than {MAX_DIRECTIONS}; give fewer")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise HubnessError(f"--steps must be an integer from 1 to {MAX_STEPS} (steps each way), got {steps!r}")
    try:
        step_size = float(step_size)
    except (TypeError, ValueError, OverflowError):
        raise HubnessError(f"--step-size must be a number, got {step_size!r}") from None
    if not np.isfinite(step_size) or step_size < 0 or step_size * steps > 1e6:
        raise HubnessError(f"--step-size must be a finite number >= 0 whose --steps multiple stays below 1e6 "
                           f"(e.g. --step-size 0.5), got {step_size!r}")
    if rank is not None:
        rank = check_count(rank, "--rank")
        if rank <= int(directions.max()):
            raise HubnessError(f"--rank {rank} computes directions 0..{rank - 1}, but --directions asks for "
                               f"{int(directions.max())}; raise --rank to at least {int(directions.max()) + 1}")
    return directions, int(steps), step_size, rank


def render_traversals(network: str, seeds: Sequence[int], outdir, *, directions: Sequence[int] = range(5),
                      steps: int = 5, step_size: float = 0.5, method: str = "iterative", layers: str = "all",
                      block="auto", rank: Optional[int] = None, sampler: str = "random", num: Optional[int] = None,
                      truncation_psi: float = 1.0, class_idx: Optional[int] = None, k: int = 5, t: float = 50.0,
                      t_lq: float = 1.0, pool_size: Optional[int] = None, space: Optional[str] = None,
                      knn_backend: str = "exact", include_self: bool = False, device=None, batch_size: int = 256,
                      max_pools: int = 50, memory_budget_mb: float = 256.0, clean: bool = False, stylegan3=None,
                      progress: bool = False, echo: Optional[Callable[[str], None]] = None) -> TraversalResult:
    """Choose seeds with a sampler and write a traversal strip and npz per seed into ``outdir``.

    Parameters
    ----------
    network : str
        Network pickle (path or URL) of a stylegan2/stylegan3 generator; ``'digits'``: the embedded one.
    seeds : sequence of int
        Pool 0 of the sampler, each latent ``RandomState(seed).randn(1, z_dim)`` as in ``gen_images.py``.
    outdir : str or Path
        Locked for the run; see :class:`extensions.outdir.OutputDir`.
    directions : sequence of int
        Indices into the local basis (0 = largest singular value); the strip's rows, in this order.
    steps, step_size
        Each curve has ``2 * steps + 1`` points: ``steps`` steps of length ``step_size`` (in W) each way.
    method : {'iterative', 'linear'}
        Iterative curve traversal, or the straight line along the seed's basis vector.
    layers : {'all', 'coarse', 'middle', 'fine'}
        The ws rows a step moves; see :mod:`extensions.paths.partial`.
    block : str
        The partial network's last block; 'auto': the middle one (see :mod:`extensions.paths.partial`).
    rank : int, optional
        Basis vectors computed at every point, the candidates the iterative traversal aligns its next step
        with; default ``3 * (max(directions) + 1)``, at most w_dim.
    sampler, num, truncation_psi, class_idx, k, t, t_lq, pool_size, space, knn_backend, include_self,
    batch_size, max_pools
        As :func:`extensions.stylegan.generate.generate_images`.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    memory_budget_mb : float
        Passed to :func:`extensions.paths.local_basis`.
    clean : bool
        Remove results of earlier runs that this run does not vouch for, instead of stopping.
    stylegan3 : str or Path, optional
        stylegan3 checkout (else ``$STYLEGAN3_DIR``, else importable modules).
    progress : bool
        tqdm progress bars on stderr.
    echo : callable, optional
        Receives one-line status messages; default: the module logger.

    Returns
    -------
    TraversalResult

    Raises
    ------
    HubnessError
        Bad input, a busy or foreign output folder, non-finite latents, singular values or images (naming the
        seed); the output folder is left as it was.
    extensions.ThresholdUnreachableError
        When the sampler cannot collect the seeds asked for.
    """
    from ..stylegan.adapter import StyleGANAdapter, make_adapter
    from ..stylegan.generate import _rendered_w, network_identity, sample_seeds, validate_options
    from ..stylegan.loader import load_network

    say = echo or log.info
    directions, steps, step_size, rank = check_traversal_options(directions, steps, step_size, method, layers, rank)
    device = resolve_device(device)  # before the folder is locked or anything loads
    seeds, num, pool_size, truncation_psi = validate_options(sampler, "const", knn_backend, seeds, num, pool_size,
                                                             batch_size, max_pools, k, t, t_lq, truncation_psi, say)
    with OutputDir(outdir, tool="gen_traversal_hub", clean=clean) as out:
        say(f'Loading networks from "{network}"...')
        G = load_network(network, stylegan3=stylegan3, device=device)
        adapter = make_adapter(G)
        if not isinstance(adapter, StyleGANAdapter):
            raise HubnessError(f"network {network!r} has no mapping and synthesis networks; traversals in W need a "
                               f"stylegan2 or stylegan3 generator")
        space = adapter.check_space(space)
        if class_idx is not None and adapter.c_dim == 0:
            say("warn: --class=lbl ignored when running on an unconditional network")
            class_idx = None
        labels = adapter.labels(class_idx)
        if truncation_psi != 1 and not bool(torch.isfinite(adapter.mean_latent("w")).all()):
            raise NonFiniteError(f"network {network!r} has NaN or inf in its mean latent (w_avg), which --trunc "
                                 f"{truncation_psi:g} moves every latent towards; use another snapshot or leave "
                                 f"--trunc at 1")
        block_name = resolve_block(G, block, layers)
        w_dim = adapter.w_dim
        if int(directions.max()) >= w_dim:
            raise HubnessError(f"--directions {int(directions.max())} is beyond this network's W ({w_dim} "
                               f"dimensions: directions 0..{w_dim - 1})")
        if rank is None:  # curve_traversal's default candidates for the largest direction
            rank = min(w_dim, 3 * (int(directions.max()) + 1))
        elif rank > w_dim:
            raise HubnessError(f"--rank {rank} is more than this network's W has ({w_dim} dimensions)")
        settings = dict(network_identity(network), truncation_psi=truncation_psi, class_idx=class_idx,
                        noise_mode="const", method=method, layers=layers, block=block_name, steps=steps,
                        step_size=step_size, directions=directions.tolist(), rank=rank)
        changed = out.settings_changed(settings)
        if changed and out.results_present(RESULT_RE) and not out.clean:
            what = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
            raise HubnessError(f"--outdir {str(out.path)!r} holds traversals made with other settings ({what}); "
                               f"pass --clean to replace them, or choose another --outdir")

        selection, _ = sample_seeds(adapter, network, seeds, sampler, num, space, labels, truncation_psi, pool_size,
                                    batch_size, max_pools, k, t, t_lq, include_self, knn_backend, progress, say)
        chosen = selection.seeds
        z = seed_latents(chosen, adapter.z_dim)
        w = _rendered_w(adapter, network, z, labels, truncation_psi, chosen)

        pairs = [(strip_name(s), npz_name(s)) for s in chosen]
        names = [n for pair in pairs for n in pair]
        status = out.vouched(names, settings)
        unwanted = [n for n in out.results_present(RESULT_RE) if n not in status or status[n] == "other"]
        remove = out.refuse_or_clean(unwanted, "traversals of other seeds or settings, or files no run of "
                                               "gen_traversal_hub wrote")
        staged = out.prepare_staging(settings, names)
        done = [i for i, (a, b) in enumerate(pairs) if status[a] == status[b] == "ok"]
        resumed = [i for i, (a, b) in enumerate(pairs) if a in staged and b in staged and i not in done]
        todo = [i for i in range(len(chosen)) if i not in set(done) | set(resumed)]
        damaged = [i for i in todo if "damaged" in (status[pairs[i][0]], status[pairs[i][1]])]
        if damaged:
            say(f"note: computing again {len(damaged)} traversal(s) that manifest.json lists but that are missing "
                f"or changed")
        meta = dict(render=settings, sampler=selection.sampler, space=space, generator=adapter.kind,
                    z_dim=adapter.z_dim, w_dim=w_dim, c_dim=adapter.c_dim, num_ws=adapter.num_ws, version=__version__)
        per_seed = 1 + (len(directions) * (1 + 2 * (steps - 1)) if method == "iterative" else 0)
        bar = _bar(progress, len(todo) * per_seed)
        try:
            for i in todo:
                seed = int(chosen[i])
                arrays, strip = traverse_seed(adapter, w[i], seed, directions=directions, steps=steps,
                                              step_size=step_size, method=method, layers=layers, block=block_name,
                                              rank=rank, memory_budget_mb=memory_budget_mb, network=network,
                                              on_basis=bar.update, truncation_psi=truncation_psi)
                arrays.update(z=z[i], meta=np.array(json.dumps(dict(meta, seed=seed))))
                if selection.m is not None:
                    arrays["m"] = np.int64(selection.m[i])
                _stage(out, pairs[i][0], lambda p: save_png(strip, p))
                _stage(out, pairs[i][1], lambda p: write_npz(p, **arrays))
        finally:
            bar.close()
        keep = [n for i in done for n in pairs[i]]
        out.commit(settings, keep=keep, remove=remove)

    if remove:
        say(f"removed {len(remove)} file(s) of an earlier run (--clean)")
    written = len(chosen) - len(done)
    say(f"wrote {written} traversal(s) of {len(directions)} direction(s) to {str(out.path)!r}"
        + (f", kept {len(done)} already there" if done else ""))
    return TraversalResult(out.path, chosen, [out.path / a for a, _ in pairs], [out.path / b for _, b in pairs],
                           written, len(done), remove)


def traverse_seed(adapter, w0, seed: int, *, directions, steps: int, step_size: float, method: str, layers: str,
                  block: str, rank: int, memory_budget_mb: float = 256.0, network: str = "network",
                  on_basis: Optional[Callable[[int], None]] = None, truncation_psi: float = 1) -> tuple:
    """The traversals of one seed.

    Parameters
    ----------
    adapter : extensions.stylegan.adapter.StyleGANAdapter
    w0 : torch.Tensor, shape (w_dim,) or (1, w_dim)
        The seed's W latent as rendered (truncation applied).
    on_basis : callable, optional
        Called with 1 after every local basis (the seed's, then each step of each iterative curve).
    truncation_psi : float
        The --trunc that made ``w0`` (named in the error for a non-finite image of the seed).

    Returns
    -------
    (arrays, strip)
        ``arrays``: the npz contents but ``z``, ``meta`` and ``m`` (see the module docstring);
        ``strip``: uint8 (rows, cols, C), rows the directions, columns the steps -N..N.

    Raises
    ------
    NonFiniteError
        NaN or inf in the singular values, a curve or an image, naming the seed and direction.
    """
    from .local_basis import curve_traversal, linear_traversal, local_basis

    w0 = torch.as_tensor(w0).reshape(-1).to(adapter.device, torch.float32)
    with torch.no_grad():
        centre = adapter.synthesize(w0[None], noise_mode="const")  # gen_images.py's image of the seed
    _check_images(centre, seed, None, network, truncation_psi)
    centre = to_uint8(centre)[0]
    net = PartialNetwork(adapter.G, w0, block=block, layers=layers, noise_mode="const", device=adapter.device)
    try:
        basis = local_basis(net, w0, rank=rank, memory_budget_mb=memory_budget_mb, device=adapter.device)
    except NonFiniteError as exc:
        raise NonFiniteError(f"network {network!r} gives NaN or inf at seed {seed} (block {block}: {exc}); the "
                             f"network is broken there: check its weights or use another snapshot", seed) from exc
    tick = on_basis or (lambda n: None)
    tick(1)
    sv = basis.singular_values.detach().float().cpu()
    vectors = basis.basis.detach().float()
    if not bool(torch.isfinite(sv).all()) or not bool(torch.isfinite(vectors).all()):
        raise NonFiniteError(f"the local basis of seed {seed} has NaN or inf (network {network!r}, block {block}); "
                             f"the network is broken there: try another --block or seed", seed)
    if vectors.shape[1] <= int(max(directions)):
        raise HubnessError(f"the local basis of seed {seed} has {vectors.shape[1]} directions, fewer than --directions "
                           f"{int(max(directions))} needs")
    curves, cells = [], []
    for d in directions:
        d = int(d)
        if method == "linear":
            curve = linear_traversal(w0, vectors[:, d].to(adapter.device), steps, step_size)
        else:
            try:
                curve = curve_traversal(net, w0, d, steps, step_size, rank=rank, memory_budget_mb=memory_budget_mb,
                                        device=adapter.device, progress=lambda done, total: tick(1))
            except NonFiniteError as exc:
                raise NonFiniteError(f"the traversal of seed {seed} along direction {d} reaches NaN or inf "
                                     f"(network {network!r}: {exc}); use a smaller --step-size or fewer --steps",
                                     seed) from exc
        curve = torch.as_tensor(curve).detach().float()
        if tuple(curve.shape) != (2 * steps + 1, adapter.w_dim):
            raise HubnessError(f"the traversal of seed {seed} along direction {d} has shape {tuple(curve.shape)}, "
                               f"expected ({2 * steps + 1}, {adapter.w_dim})")
        if not bool(torch.isfinite(curve).all()):
            raise NonFiniteError(f"the traversal of seed {seed} along direction {d} reaches NaN or inf latents "
                                 f"(network {network!r}); use a smaller --step-size or fewer --steps", seed)
        others = torch.cat([curve[:steps], curve[steps + 1:]])
        images = net.images(others)
        _check_images(images, seed, d, network)
        row = list(to_uint8(images))
        cells += row[:steps] + [centre] + row[steps:]
        curves.append(curve.cpu())
    cols = 2 * steps + 1
    labels = [f"v{int(d)} {j - steps:+d}" if j != steps else f"seed {seed}" for d in directions for j in range(cols)]
    strip = image_grid(cells, cols, gap=2, rows=len(directions), labels=labels)
    arrays = dict(seed=np.int64(seed), w=w0.cpu().numpy().astype(np.float32),
                  curves=torch.stack(curves).numpy().astype(np.float32),
                  offsets=(np.arange(-steps, steps + 1) * step_size).astype(np.float32),
                  singular_values=sv.numpy().astype(np.float32),
                  basis=vectors[:, [int(d) for d in directions]].cpu().numpy().astype(np.float32),
                  directions=np.asarray(directions, dtype=np.int64), rows=np.asarray(net.rows, dtype=np.int64))
    return arrays, strip


def _check_images(images: torch.Tensor, seed: int, direction: Optional[int], network: str,
                  truncation_psi: float = 1) -> None:
    if not bool(torch.isfinite(images).all()):
        if direction is None:
            raise non_finite_pixels(network, f"for the seed {seed}", truncation_psi=truncation_psi, seed=seed)
        raise NonFiniteError(f"network {network!r} renders NaN or inf pixels for seed {seed} along direction "
                             f"{direction}; use a smaller --step-size or fewer --steps", seed)


def _stage(out: OutputDir, name: str, write) -> None:
    """Write a staged file; an OSError names the file the user will look for, not the staging path."""
    try:
        write(out.staged(name))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(out.path / name)) from exc


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _bar(enabled: bool, total: int):
    if not enabled or total == 0:
        return _NullBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="local bases", unit="basis", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------------- options

_OPTIONS = [
    click.option("--directions", type=SeedList("direction"), default="0-4", show_default=True, metavar="LIST",
                 help="Local basis directions to walk (0 = largest singular value), e.g. '0-4' or '0,3'; the "
                      "strip's rows"),
    click.option("--steps", type=click.IntRange(min=1, max=MAX_STEPS), default=5, show_default=True,
                 help="Steps each way: the strip has 2N+1 columns"),
    click.option("--step-size", type=float, default=0.5, show_default=True,
                 help="Length of one step in W (0: every column is the seed's image)"),
    click.option("--method", type=click.Choice(TRAVERSAL_METHODS), default="iterative", show_default=True,
                 help="iterative: take the local basis again at every step and follow the direction best aligned "
                      "with the last step; linear: w + s v along the seed's basis vector"),
    click.option("--layers", type=click.Choice(LAYER_SUBSETS), default="all", show_default=True,
                 help="ws rows a step moves (StyleGAN's coarse / middle / fine split); the others stay at the seed"),
    click.option("--block", type=str, default="auto", show_default=True,
                 help="Last block of the partial network whose Jacobian gives the basis: b16 or 16 (stylegan2), "
                      "L3 or input (stylegan3); auto: the middle block"),
    click.option("--rank", type=click.IntRange(min=1), default=None,
                 help="Basis vectors taken at every point, the candidates each iterative step aligns with [default: "
                      "3 x (largest direction + 1), at most w_dim]"),
]


def traversal_options(f):
    """Add the traversal options and the hub options of :data:`HUB_OPTIONS` to a click command function."""
    f = hubness_options(*HUB_OPTIONS)(f)
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def run(network_pkl: str, seeds, truncation_psi: float = 1.0, class_idx: Optional[int] = None, outdir: str = "out",
        stylegan3=None, gpus: int = 1, **options) -> Optional[TraversalResult]:
    """:func:`render_traversals` from parsed options, with progress bars: bad input becomes one line (exit 1),
    Ctrl-C exits 130 and SIGTERM 143, leaving only complete files. ``gpus > 1`` runs ``gpus`` processes
    (:func:`extensions.distributed.spawn`) that share the hub values of the seed pools; rank 0 computes the
    traversals and writes (and nothing is returned)."""
    options.update(network_pkl=network_pkl, seeds=seeds, truncation_psi=truncation_psi, class_idx=class_idx,
                   outdir=outdir, stylegan3=stylegan3)
    return in_processes(_run_rank, options, gpus)


def _run_rank(rank: int, options: dict) -> Optional[TraversalResult]:
    """Rank ``rank``'s part of :func:`run`: rank 0 computes and writes the traversals; the others draw the same
    seed pools and share their hub values (:func:`extensions.stylegan.generate.follow_sampling`), writing
    nothing."""
    from ..distributed import is_active, rank_device
    from ..stylegan.generate import follow_sampling
    options = dict(options)
    if is_active():
        options["device"] = rank_device(rank, options.get("device"))
    network, seeds = options.pop("network_pkl"), options.pop("seeds")
    with one_line_errors():
        if rank == 0:
            return render_traversals(network, seeds, options.pop("outdir"), progress=True, echo=click.echo,
                                     **options)
        sampling = ("sampler", "num", "truncation_psi", "class_idx", "k", "t", "t_lq", "pool_size", "space",
                    "knn_backend", "include_self", "device", "batch_size", "max_pools", "stylegan3")
        follow_sampling(network, seeds, **{name: options[name] for name in sampling if name in options})
    return None
