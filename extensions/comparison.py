"""The samplers side by side: random | truncation | hubness | hubness-lq, all from one pool of latents.

One pool (seeds ``seed .. seed + pool_size - 1``, drawn as ``gen_images.py`` draws them, in the
generator's sampling space) is mapped once and its hub values computed once. Each sampler then takes
what it takes from that pool: ``random`` every latent in seed order, ``truncation`` the same latents
moved towards the mean latent, ``hubness`` the latents with m >= t (largest m first), ``hubness-lq``
those with m <= t_lq (smallest m first). A panel shows the first ``cols x rows`` of them.

With a judge (:class:`DigitsJudge` for the embedded digits network) each panel is titled with the mean
classifier confidence and the precision of *all* the latents the sampler takes from the pool, the
numbers of ``benchmarks/quality.py``; a panel's 64 images alone would leave them to chance. Without
one (any network pickle) the titles give the number of latents and their hub values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch

from ._checks import HubnessError, NonFiniteError, check_count, check_threshold, resolve_device
from .hubness import compute_hubness, hubness_stats
from .pools import SeedPools
from .render import image_grid, remove_stale_temps, to_uint8
from .report import (FLOAT32_MAX, Progress, _name, _pyplot, _show, check_grid, check_k_for_pool, check_mean_latent,
                     check_outdir, check_pool_fits, check_pool_seeds, check_psi, check_seed, commit_files,
                     figure_adapter, figure_png, json_bytes, render_latents)
from .samplers import make_sampler
from .selection import select_low_quality, select_threshold

log = logging.getLogger(__name__)

FIGURE = "comparison.png"
NUMBERS = "comparison.json"
#: Images larger than this (pixels per side) are shrunk for the figure; smaller ones are enlarged to it.
CELL = 64
MAX_CELL = 128
DPI = 100


class DigitsJudge:
    """The embedded digits classifier as a judge: confidence and precision as ``benchmarks/quality.py``.

    confidence = mean largest softmax probability of the images; precision (Kynkaanniemi et al., k = 3) =
    share of the images whose 128-d classifier features lie inside the k-NN balls of the 1,797 real
    digits' features (:func:`extensions.metrics.precision_recall`).

    Parameters
    ----------
    classifier : DigitClassifier, optional
        Default: the embedded one (``extensions.digits.load_classifier``).
    k : int
        Neighbourhood of precision.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    batch : int
        Images per classifier call.
    """

    def __init__(self, classifier=None, *, k: int = 3, device=None, batch: int = 500):
        from .digits import RESOLUTION, FeatureDetector, digit_images, load_classifier
        self.device = resolve_device(device)
        self.k = check_count(k, "k")
        self.batch = check_count(batch, "batch")
        net = classifier if classifier is not None else load_classifier(device=self.device)
        self.detector = FeatureDetector(net.to(self.device)).eval()
        images, _ = digit_images(RESOLUTION)
        # The real digits go through the same uint8 conversion as the generated images.
        self.real = self.features(to_uint8(images))

    def features(self, images: np.ndarray) -> torch.Tensor:
        """Classifier features (n, 128), on the CPU, of uint8 images (n, H, W, C)."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            return torch.cat([self.detector(x[s:s + self.batch].to(self.device)).cpu()
                              for s in range(0, len(x), self.batch)])

    def score(self, features: torch.Tensor) -> dict:
        """``confidence`` and ``precision`` (floats in [0, 1]) of images with these features (n, 128)."""
        from .metrics import precision_recall
        with torch.no_grad():
            confidence = float(self.detector.probabilities(features).max(dim=1).values.mean())
        precision = precision_recall(self.real, features, k=self.k, device=self.device).precision
        return dict(confidence=confidence, precision=float(precision))


@dataclass
class Panel:
    """One sampler's column of the figure.

    Attributes
    ----------
    label : str
        The sampler and its parameter, e.g. ``'hubness, m >= 15'``.
    sampler : dict
        Name and parameters (``Sampler.describe()``).
    seeds : np.ndarray, shape (n,)
        Every seed the sampler takes from the pool, in its order; the panel shows the first ones.
    m : np.ndarray, shape (n,)
        Hub values of those latents in the pool (before any truncation).
    images : np.ndarray, shape (shown, H, W, C), uint8
        The panel's images.
    scores : dict
        ``confidence`` and ``precision`` over all ``n`` latents; empty without a judge.
    """

    label: str
    sampler: dict
    seeds: np.ndarray
    m: np.ndarray
    images: np.ndarray
    scores: dict = field(default_factory=dict)

    def title(self, pool_size: int) -> str:
        shown = self.m[:len(self.images)]
        lines = [self.label]
        if self.scores:
            lines.append(f"confidence {self.scores['confidence']:.3f}, precision {self.scores['precision']:.3f}")
        lines.append(f"{len(self.seeds)} of {pool_size} latents; {len(shown)} shown, m {int(shown.min())}-"
                     f"{int(shown.max())}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        shown = self.m[:len(self.images)]
        return dict(label=self.label, sampler=self.sampler, count=int(len(self.seeds)), shown=int(len(shown)),
                    shown_seeds=self.seeds[:len(shown)].tolist(), shown_m=[int(shown.min()), int(shown.max())],
                    **self.scores)


@dataclass
class Comparison:
    """What :func:`compare_samplers` wrote.

    Attributes
    ----------
    panels : list of Panel
        random, truncation (StyleGAN generators only), hubness, hubness-lq.
    files : dict of str -> Path
        :data:`FIGURE` and :data:`NUMBERS`.
    summary : dict
        The JSON of :data:`NUMBERS`.
    """

    panels: list
    files: dict
    summary: dict


class _OnePool:
    """A stream of pools that holds one pool: every sampler sees the same latents."""

    def __init__(self, pool):
        self.pool = pool

    def draw(self, index: int):
        if index != 0:
            raise HubnessError("the comparison draws a single pool")
        return self.pool


def _display(images: Sequence[np.ndarray], cols: int) -> np.ndarray:
    """A grid of the images for the figure: tiny images enlarged, large ones shrunk, gaps between cells."""
    side = max(images[0].shape[:2])
    if side > MAX_CELL:
        size = tuple(round(s * MAX_CELL / side) for s in images[0].shape[1::-1])
        images = [_resize(im, size) for im in images]
    return image_grid(list(images), cols, min_cell=CELL, gap=max(2, CELL // 16))


def _resize(image: np.ndarray, size: tuple) -> np.ndarray:
    mode = "L" if image.shape[2] == 1 else None
    pil = PIL.Image.fromarray(image[:, :, 0] if mode else image, mode)
    out = np.asarray(pil.resize(size, PIL.Image.LANCZOS))
    return out[:, :, None] if out.ndim == 2 else out


def compare_samplers(G: torch.nn.Module, outdir, *, pool_size: int = 10000, seed: int = 0, k: int = 5,
                     t: float = 50, t_lq: float = 1, psi: float = 0.7, grid: Union[str, Sequence[int]] = (8, 8),
                     include_self: bool = False, space: Optional[str] = None, noise_mode: str = "const",
                     judge: Optional[DigitsJudge] = None, device=None, title: str = "", batch: int = 256,
                     progress: bool = False, network: str = "", names: Optional[dict] = None) -> Comparison:
    """Write :data:`FIGURE` (the samplers side by side) and :data:`NUMBERS` into ``outdir``.

    Parameters
    ----------
    G : torch.nn.Module
        Unconditional StyleGAN generator, or any module with ``z_dim`` and ``G(z, c)`` (no truncation
        panel: it has no mean latent).
    outdir : str or Path
        Created when the figure is ready. :data:`FIGURE` and :data:`NUMBERS` are committed together
        (:func:`extensions.report.commit_files`): a failed or interrupted run leaves the folder as it was;
        temporary files that killed runs left in it are removed.
    pool_size, seed : int
        The pool: seeds ``seed .. seed + pool_size - 1``.
    k : int
        k-NN list size of the hub values.
    t, t_lq : float
        Thresholds of the hubness (m >= t) and hubness-lq (m <= t_lq) panels; each needs at least
        ``cols x rows`` latents of the pool.
    psi : float
        Truncation factor of the truncation panel.
    grid : (int, int) or str
        Columns and rows of each panel, e.g. (8, 8) or ``'8x8'``.
    include_self : bool
        Counting convention of hub values (see :func:`extensions.hubness.compute_hubness`).
    space : {'w', 'z'}, optional
        Default W for StyleGAN generators, Z otherwise.
    noise_mode : {'const', 'random', 'none'}
        Synthesis noise of StyleGAN generators.
    judge : DigitsJudge, optional
        Scores every latent each sampler takes (all ``pool_size`` of them for random and truncation).
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    title : str
        Network name shown in the figure.
    batch : int
        Images per synthesis call.
    progress : bool
        tqdm bars on stderr (mapping, k-NN, synthesis).
    network : str
        The network's name or path in error messages (default: ``title``).
    names : dict, optional
        How error messages call the parameters, e.g. ``{'pool_size': '--pool-size', 'psi': '--trunc'}``.

    Returns
    -------
    Comparison

    Raises
    ------
    HubnessError
        Bad input, or a threshold that fewer than ``cols x rows`` latents of the pool meet (the message
        names the threshold that would do); raised before any file is written. A psi that moves latents to
        NaN or inf.
    NonFiniteError
        A network whose mean latent or images hold NaN or inf; nothing is written.
    """
    from .stylegan.adapter import StyleGANAdapter

    pool_size = check_count(pool_size, _name(names, "pool_size"))
    seed = check_seed(seed, names)
    check_pool_seeds(seed, pool_size, names)
    cols, rows = check_grid(grid)
    num = cols * rows
    k = check_k_for_pool(k, pool_size, names)
    t, t_lq = check_threshold(t, _name(names, "t")), check_threshold(t_lq, _name(names, "t_lq"))
    batch = check_count(batch, "batch")
    psi = check_psi(psi, names)
    psi_opt = _name(names, "psi")
    if num > pool_size:
        raise HubnessError(f"a grid of {cols}x{rows} needs {num} latents, but the pool holds {pool_size}; "
                           f"raise pool_size or shrink the grid")
    outdir = check_outdir(outdir)
    if outdir.is_dir():
        remove_stale_temps(outdir)  # what runs killed here before left
    plt = _pyplot()
    adapter, space, device = figure_adapter(G, device, space, "comparison")
    truncating = isinstance(adapter, StyleGANAdapter)
    mean = check_mean_latent(adapter, space, network or title) if truncating else None
    check_pool_fits(pool_size, adapter.z_dim, adapter.z_dim if mean is None else len(mean), device, names)

    bars = Progress(progress)
    try:
        pool = SeedPools(adapter.z_dim, pool_size, start=seed, transform=adapter.transform(space), device=device,
                         batch_size=batch, progress=bars.mapping).draw(0)
        with bars.step(f"k-NN of {pool_size} latents (k = {k})"):
            m = compute_hubness(pool.latents, k, include_self=include_self, device=device).m
        position = {int(s): i for i, s in enumerate(pool.seeds)}
        stats = hubness_stats(m, k, thresholds=(t,))

        # (label, sampler description, latents in output order, their indices in the pool)
        choices = []
        stream = _OnePool(pool)
        for name, params, label in (("random", {}, "random"),
                                    ("truncation", dict(psi=psi), f"truncation, psi = {psi:g}")):
            if name == "truncation" and not truncating:
                log.info("no truncation panel: this %s generator has no mean latent", adapter.kind)
                continue
            if name == "truncation":
                params["mean"] = mean
            sel = make_sampler(name, **params).sample(stream, None)
            if name == "truncation" and not bool(torch.isfinite(sel.latents).all()):
                spread = float((pool.latents.double() - mean.to(pool.latents.device, torch.float64)).abs().max())
                raise HubnessError(f"{psi_opt} {psi:g} moves truncated latents beyond float32's range (for this "
                                   f"pool, any psi above about {FLOAT32_MAX / max(spread, 1e-30):.3g} in magnitude "
                                   f"does); use a truncation psi of moderate size (e.g. 0.5 to 1)")
            choices.append((label, sel.sampler, sel.latents, np.array([position[int(s)] for s in sel.seeds])))
        hub_params = dict(k=k, include_self=include_self, backend="exact")
        for name, chosen, label, params in (
                ("hubness", select_threshold(m, t), f"hubness, m >= {t:g}", dict(hub_params, t=t)),
                ("hubness-lq", select_low_quality(m, t_lq), f"hubness-lq, m <= {t_lq:g}", dict(hub_params, t_lq=t_lq))):
            if len(chosen) < num:
                order = np.sort(m)[::-1] if name == "hubness" else np.sort(m)
                fix = f"lower t to {int(order[num - 1])}" if name == "hubness" else \
                    f"raise t_lq to {int(order[num - 1])}"
                raise HubnessError(f"{label} holds {len(chosen)} of the {pool_size} latents (k = {k}, m from "
                                   f"{int(m.min())} to {int(m.max())}), but a {cols}x{rows} panel needs {num}; "
                                   f"{fix}, raise pool_size or shrink the grid")
            rows_ = torch.as_tensor(chosen, device=pool.latents.device)
            choices.append((label, dict(sampler=name, psi=1.0, **params), pool.latents[rows_], chosen))

        # A judge scores everything a sampler takes; without one only the shown images are rendered.
        total = sum(len(idx) if judge is not None else num for *_, idx in choices)
        bar = bars.counter("synthesis", total, "img")
        panels = []
        try:
            for label, described, latents, idx in choices:
                count = len(idx) if judge is not None else num
                shown, feats = [], []
                for s in range(0, count, batch):
                    part = slice(s, min(s + batch, count))
                    try:
                        images = render_latents(adapter, latents[part], space, noise_mode, batch=batch, bar=bar,
                                                seeds=pool.seeds[idx[part]])
                    except NonFiniteError as exc:
                        if described.get("sampler") != "truncation":
                            raise
                        # The random panel rendered these seeds untruncated: psi is to blame.
                        raise HubnessError(f"{psi_opt} {psi:g} makes the generator produce NaN or inf (first seed "
                                           f"{exc.seed}); use a truncation psi of moderate size (e.g. 0.5 to 1)") \
                            from exc
                    if s < num:
                        shown.append(images[:num - s])
                    if judge is not None:
                        feats.append(judge.features(images))
                scores = judge.score(torch.cat(feats)) if judge is not None else {}
                panels.append(Panel(label, described, pool.seeds[idx], m[idx], np.concatenate(shown), scores))
        finally:
            bar.close()
    finally:
        bars.close()

    name = f"{title}, " if title else ""
    seeds = f"seeds {seed}-{seed + pool_size - 1}"
    what = (f"{name}{space.upper()} space, one pool ({seeds}), k = {k}, max m = {stats.max}: each panel shows the "
            f"first {num} latents its sampler takes from the pool")
    if judge is not None:
        what += ("\nconfidence: classifier's mean top probability; precision (k = 3): share inside the real digits' "
                 "manifold; both over every latent the sampler takes")
    # One figure pixel per grid pixel: cells and the gaps between them stay crisp.
    grids = [_display(panel.images, cols) for panel in panels]
    height, width = grids[0].shape[:2]
    lines = panels[0].title(pool_size).count("\n") + what.count("\n") + 2
    pad, head = 24, 18 * lines + 36
    fig_w, fig_h = len(grids) * (width + pad) + pad, height + head + pad
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    for i, (panel, image) in enumerate(zip(panels, grids)):
        ax = fig.add_axes([(pad + i * (width + pad)) / fig_w, pad / fig_h, width / fig_w, height / fig_h])
        _show(ax, image)
        ax.set_title(panel.title(pool_size), fontsize=10)
    fig.suptitle(what, fontsize=10, y=1 - 8 / fig_h, va="top")
    summary = dict(network=title, space=space, pool_size=pool_size, seed=seed, k=k, include_self=include_self,
                   t=t, t_lq=t_lq, psi=psi, grid=[cols, rows], max_m=int(stats.max),
                   judge=None if judge is None else type(judge).__name__, panels=[p.as_dict() for p in panels])
    try:
        numbers = json_bytes(summary, NUMBERS)
    except BaseException:
        plt.close(fig)
        raise
    # One commit: the figure and its numbers replace an earlier comparison together.
    written = commit_files(outdir, {FIGURE: figure_png(fig, dpi=DPI), NUMBERS: numbers})
    files = dict(figure=written[FIGURE], numbers=written[NUMBERS])
    log.info("sampler comparison written to %s", files["figure"])
    return Comparison(panels, files, summary)
