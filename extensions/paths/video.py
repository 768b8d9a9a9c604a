"""Interpolation videos through keyframe latents, laid out as stylegan3's ``gen_video.py`` lays them out.

The library behind ``gen_video_hub.py``. With ``method='cubic'`` (or ``'linear'``) in W and the seeds as
given, every frame equals the official ``gen_interp_video``'s frame: the keyframe seeds are tiled and
optionally shuffled the same way, their W latents come from one batched ``G.mapping`` call, each grid cell
is a :class:`scipy.interpolate.interp1d` over the keyframes repeated ``2 * wraps + 1`` times, frame ``f``
samples it at ``f / w_frames``, and each cell is synthesized on its own with ``noise_mode='const'``.

The methods of :func:`extensions.paths.interpolate` (``slerp``, ``normalized``, ``cauchy``,
``spherical-cauchy``) run piecewise instead: frame ``f`` lies between keyframe ``f // w_frames`` and the
next one (the last one joins the first, so the video loops) at ``t = (f mod w_frames) / w_frames``; a frame
at ``t = 0`` is its keyframe's image exactly. ``space='z'`` interpolates the Z latents and maps every frame;
the Gaussian methods (:data:`extensions.paths.GAUSSIAN_METHODS`) are only offered there.

Generators without a mapping network (BigGAN, StudioGAN, ``module:callable``: any
:class:`~extensions.stylegan.adapter.GeneratorAdapter` but StyleGAN's) make Z-space videos: keyframes are
the seeds' Z latents as the adapter draws them (``adapter.seed_latents``: BigGAN's truncated draw at
psi), and each cell of a frame is ``adapter.generate(z_t, c, truncation_psi=psi)`` of the interpolated
latent, quantized as the adapter quantizes (:func:`check_video_space` says which methods apply).

``method='discriminator'`` (W only) runs piecewise too, along discriminator-aware geodesics
(:func:`extensions.paths.discriminator_path`): each segment is a path of ``w_frames + 1`` points from a
keyframe to the next, optimised once when the video is planned; frame ``f`` is point ``f mod w_frames``
of its segment.

Example
-------
>>> video = plan_video(G, seeds=range(8), grid=(2, 1), w_frames=30, method="slerp")   # doctest: +SKIP
>>> for frame in video.frames():   # uint8 (H, 2 * W, C), 8 / 2 * 30 frames             # doctest: +SKIP
...     writer.append_data(frame)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import scipy.interpolate
import torch

from .._checks import HubnessError, NonFiniteError, non_finite_pixels
from ..pools import MAX_SEED, seed_latents
from ..render import to_uint8
from ..stylegan.adapter import GeneratorAdapter, StyleGANAdapter, make_adapter
from .interpolation import GAUSSIAN_METHODS, INTERPOLATIONS, interpolate

log = logging.getLogger(__name__)

#: Methods that run through scipy's interp1d over the wrapped keyframes, as gen_video.py's ``kind``.
SPLINE_METHODS = ("cubic", "linear")
#: Every ``--interp`` choice: the spline kinds, then the piecewise methods of :func:`interpolate` (linear
#: is the spline one).
VIDEO_METHODS = SPLINE_METHODS + ("slerp", "normalized", "cauchy", "spherical-cauchy", "discriminator")
#: Keyframe repeats on each side of the spline's x range (gen_video.py's ``wraps``).
WRAPS = 2
#: The largest ``shuffle_seed`` (numpy's RandomState takes 0..2**32 - 1).
MAX_SHUFFLE_SEED = 2**32 - 1
#: Keyframes (of all cells together) one video may have: as many seeds as one command line may name.
MAX_KEYFRAMES = 10_000_000
#: Frames one video may have (an mp4 counts its frames in 32 bits; at 60 fps, over a year).
MAX_FRAMES = 2**31 - 1


def check_video_size(num_keyframes: int, cells: int, w_frames: int) -> None:
    """Refuse more keyframes than :data:`MAX_KEYFRAMES` and more frames than :data:`MAX_FRAMES` (before anything
    is allocated for them)."""
    if num_keyframes * cells > MAX_KEYFRAMES:
        raise HubnessError(f"--num-keyframes {num_keyframes} x {cells} grid cells is {num_keyframes * cells:,} "
                           f"keyframes, more than the {MAX_KEYFRAMES:,} a video may have; lower --num-keyframes")
    if num_keyframes * w_frames > MAX_FRAMES:
        raise HubnessError(f"{num_keyframes} keyframes x --w-frames {w_frames} is {num_keyframes * w_frames:,} frames, "
                           f"more than the {MAX_FRAMES:,} a video may have; lower --w-frames or --num-keyframes")


def keyframe_seeds(seeds: Sequence[int], grid: tuple = (1, 1), num_keyframes: Optional[int] = None,
                   shuffle_seed: Optional[int] = None) -> np.ndarray:
    """Seeds of every cell's keyframes as ``gen_video.py`` lays them out, shape (K * grid_w * grid_h,), int64.

    The seeds are repeated to ``num_keyframes * grid_w * grid_h`` entries and, with ``shuffle_seed``,
    shuffled by ``RandomState(shuffle_seed)``; entry ``(row * grid_w + col) * K + k`` is keyframe k of cell
    (row, col). ``num_keyframes=None`` takes ``len(seeds) / (grid_w * grid_h)``, which must be whole.

    Raises
    ------
    HubnessError
        Empty or out-of-range seeds, a bad grid, seeds that do not fill the grid, fewer than 2 keyframes or more
        than :data:`MAX_KEYFRAMES`, a shuffle seed outside 0..2**32 - 1.
    """
    seeds = np.asarray(list(seeds), dtype=np.int64).reshape(-1)
    if seeds.size == 0:
        raise HubnessError("--seeds is empty; give at least two seeds, e.g. --seeds 0-7")
    if seeds.min() < 0 or seeds.max() > MAX_SEED:
        raise HubnessError(f"--seeds must lie in 0..{MAX_SEED}, got {int(seeds.min())}..{int(seeds.max())}")
    grid_w, grid_h = _grid(grid)
    cells = grid_w * grid_h
    if num_keyframes is None:
        if len(seeds) % cells != 0:
            raise HubnessError(f"{len(seeds)} seeds do not fill a {grid_w}x{grid_h} grid evenly; give a multiple of "
                               f"{cells} seeds or set --num-keyframes")
        num_keyframes = len(seeds) // cells
    if isinstance(num_keyframes, bool) or not isinstance(num_keyframes, (int, np.integer)) or num_keyframes < 2:
        raise HubnessError(f"a video needs at least 2 keyframes per cell, got {num_keyframes!r}; give more seeds "
                           f"(at least {2 * cells} for a {grid_w}x{grid_h} grid) or set --num-keyframes 2 or more")
    check_video_size(int(num_keyframes), cells, 1)
    if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, (int, np.integer))
                                     or not 0 <= shuffle_seed <= MAX_SHUFFLE_SEED):
        raise HubnessError(f"--shuffle-seed must be an integer in 0..{MAX_SHUFFLE_SEED} (numpy RandomState), got "
                           f"{shuffle_seed!r}")
    all_seeds = seeds[np.arange(int(num_keyframes) * cells) % len(seeds)]
    if shuffle_seed is not None:
        np.random.RandomState(seed=shuffle_seed).shuffle(all_seeds)
    return all_seeds


def _grid(grid) -> tuple:
    try:
        grid_w, grid_h = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise HubnessError(f"grid must be (columns, rows), got {grid!r}") from None
    if grid_w < 1 or grid_h < 1:
        raise HubnessError(f"grid {grid_w}x{grid_h} must have at least one column and one row (e.g. --grid 1x1)")
    return grid_w, grid_h


def check_method(method: str, space: str) -> None:
    """Refuse unknown methods and spaces, and the Gaussian methods in W (they assume Z's N(0, I) prior)."""
    if space not in ("w", "z"):
        raise HubnessError(f"space {space!r} is neither 'w' nor 'z'")
    if method not in VIDEO_METHODS and method not in INTERPOLATIONS:
        raise HubnessError(f"unknown interpolation {method!r}; choose one of {', '.join(VIDEO_METHODS)}")
    if method == "discriminator" and space != "w":
        raise HubnessError("--interp discriminator optimises paths in W, where StyleGAN's synthesis runs; "
                           "drop --space z")
    if method in GAUSSIAN_METHODS and space != "z":
        raise HubnessError(f"--interp {method} keeps the N(0, I) prior of Z, not of W; use --space z "
                           f"(or --interp cubic, linear or slerp in W)")


def check_video_space(adapter: GeneratorAdapter, method: str, space: Optional[str] = None,
                      truncation_psi: float = 1.0, network: str = "network") -> str:
    """The space a video of ``adapter``'s generator interpolates in (``space``, or the default: W for StyleGAN,
    Z for every other generator), after refusing what does not apply to that generator.

    Other generators have no W (``space='w'``) and no discriminator path. The Gaussian methods assume
    latents drawn from N(0, I): they apply where the adapter draws ``RandomState(seed).randn`` latents
    (``adapter.sample_z`` is None) at ``truncation_psi`` 1, and never to BigGAN, whose latents are normals
    truncated to [-2, 2] (variance about 0.77), then times psi, at every psi.

    Raises
    ------
    HubnessError
        Each of those cases, an unknown method or space, a truncation the generator cannot render.
    """
    if isinstance(adapter, StyleGANAdapter):
        space = "w" if space is None else space
        check_method(method, space)
        return space
    kind = adapter.kind
    if space == "w":
        raise HubnessError(f"--space w: network {network!r} is a {kind} generator without a mapping network (no W); "
                           f"its videos interpolate Z latents: drop --space w")
    if method == "discriminator":
        raise HubnessError(f"--interp discriminator optimises StyleGAN W paths with the network's discriminator; the "
                           f"{kind} generator {network!r} has neither: use --interp cubic, linear or slerp")
    check_method(method, "z" if space is None else space)
    psi = adapter.check_truncation(truncation_psi)
    if psi != 1:
        adapter.mean_latent("z")  # generators that cannot truncate refuse --trunc here
    if method in GAUSSIAN_METHODS and (adapter.sample_z is not None or psi != 1):
        how = ("draws its latents from another distribution (BigGAN: normals truncated to [-2, 2], times psi)"
               if adapter.sample_z is not None else f"scales its N(0, I) latents by --trunc {psi:g}")
        raise HubnessError(f"--interp {method} keeps an N(0, I) prior, but this {kind} generator {how}; use --interp "
                           f"linear, cubic or slerp" + ("" if adapter.sample_z is not None else ", or --trunc 1"))
    return "z"


def check_discriminator_options(strength, iterations, w_frames) -> None:
    """Refuse a D strength that is negative or not finite, an iteration count below 0, and segments without a
    point between their keyframes (``w_frames`` < 2)."""
    if isinstance(w_frames, (int, np.integer)) and w_frames < 2:
        raise HubnessError(f"--interp discriminator needs --w-frames 2 or more (a point between keyframes to "
                           f"optimise), got {w_frames}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)) \
            or not np.isfinite(strength) or strength < 0:
        raise HubnessError(f"--d-strength must be a finite number >= 0 (0: the plain image-space geodesic), "
                           f"got {strength!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise HubnessError(f"--d-iterations must be an integer >= 0 (0: the linear path), got {iterations!r}")


def layout_frame(images: torch.Tensor, grid_w: int, grid_h: int,
                 quantize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> np.ndarray:
    """Cells (grid_h * grid_w, C, H, W), row by row, to one uint8 frame (grid_h * H, grid_w * W, C), no gaps.

    ``quantize`` maps the cells to uint8 (n, C, H, W) (an adapter's ``quantize``); default ``gen_images.py``'s
    :func:`~extensions.render.to_uint8`.
    """
    cells = to_uint8(images) if quantize is None else quantize(images).permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, c = cells.shape
    if n != grid_w * grid_h:
        raise HubnessError(f"{n} images do not fill a {grid_w}x{grid_h} grid")
    return np.ascontiguousarray(cells.reshape(grid_h, grid_w, h, w, c).transpose(0, 2, 1, 3, 4)
                                .reshape(grid_h * h, grid_w * w, c))


@dataclass
class VideoPlan:
    """The keyframes of a video and how frames between them are made (see :func:`plan_video`).

    Attributes
    ----------
    seeds : np.ndarray, shape (grid_h * grid_w * K,), int64
        Keyframe seeds, cell by cell (``keyframe_seeds``).
    keys : torch.Tensor, shape (grid_h, grid_w, K, ...)
        Keyframe latents: W as mapped (K, num_ws, w_dim) float32, or Z (K, z_dim) float64 (as
        ``adapter.seed_latents`` draws them at ``truncation_psi`` for generators other than StyleGAN).
    num_frames : int
        ``K * w_frames``.
    paths : torch.Tensor, optional
        ``method='discriminator'``: the optimised segments, shape (grid_h, grid_w, K, w_frames + 1, w_dim),
        float32, CPU; segment k runs from keyframe k to keyframe k + 1 (the last to the first).
    adapter : GeneratorAdapter, optional
        Drives ``G`` (:func:`~extensions.stylegan.adapter.make_adapter`); None: a StyleGAN generator.
    """

    G: torch.nn.Module
    network: str
    seeds: np.ndarray
    keys: torch.Tensor
    grid: tuple
    num_keyframes: int
    w_frames: int
    method: str
    space: str
    truncation_psi: float
    labels: Optional[torch.Tensor]
    device: torch.device
    paths: Optional[torch.Tensor] = field(default=None, repr=False)
    adapter: Optional[GeneratorAdapter] = field(default=None, repr=False)
    _splines: list = field(default_factory=list, repr=False)

    @property
    def stylegan(self) -> bool:
        """True when frames go through ``G.mapping`` and ``G.synthesis``."""
        return self.adapter is None or isinstance(self.adapter, StyleGANAdapter)

    @property
    def num_frames(self) -> int:
        return self.num_keyframes * self.w_frames

    def latents(self, frame: int) -> list:
        """The latent of every cell at ``frame``, row by row: W (1, num_ws, w_dim) or Z (1, z_dim)."""
        grid_w, grid_h = self.grid
        if self.method in SPLINE_METHODS:
            if not self._splines:
                x = np.arange(-self.num_keyframes * WRAPS, self.num_keyframes * (WRAPS + 1))
                for yi in range(grid_h):
                    for xi in range(grid_w):
                        y = np.tile(self.keys[yi][xi].cpu().numpy(), [WRAPS * 2 + 1] + [1] * (self.keys.ndim - 3))
                        self._splines.append(scipy.interpolate.interp1d(x, y, kind=self.method, axis=0))
            return [torch.from_numpy(f(frame / self.w_frames)).to(self.device).unsqueeze(0) for f in self._splines]
        k, step = divmod(frame, self.w_frames)
        k %= self.num_keyframes
        if self.method == "discriminator":
            num_ws = self.keys.shape[3]
            points = self.paths[:, :, k, step].reshape(grid_w * grid_h, -1).to(self.device)
            return [row[None, None].repeat(1, num_ws, 1) for row in points]
        t = step / self.w_frames
        # Every row of a mapped W is the same latent (no truncation cutoff): interpolate the first.
        keys = self.keys[:, :, :, 0] if self.space == "w" else self.keys
        a = keys[:, :, k].reshape(grid_w * grid_h, -1)
        b = keys[:, :, (k + 1) % self.num_keyframes].reshape(grid_w * grid_h, -1)
        path = interpolate(a, b, [t], method=self.method)[:, 0]    # (cells, d)
        if self.space == "w":
            num_ws = self.keys.shape[3]
            return [row[None, None].repeat(1, num_ws, 1) for row in path]
        return [row[None] for row in path]

    def render(self, frame: int) -> np.ndarray:
        """Frame ``frame`` (0 <= frame < num_frames): uint8 (grid_h * H, grid_w * W, C).

        Raises
        ------
        NonFiniteError
            When the network renders NaN or inf pixels (naming the network and the keyframe seeds).
        """
        if not 0 <= frame < self.num_frames:
            raise HubnessError(f"frame {frame} is outside the video's 0..{self.num_frames - 1}")
        imgs = []
        with torch.no_grad():
            for cell, latent in enumerate(self.latents(frame)):
                if not self.stylegan:  # one latent per call, as the adapter renders a seed's image
                    imgs.append(self.adapter.generate(latent, self._labels(1), truncation_psi=self.truncation_psi)[0])
                    continue
                ws = latent if self.space == "w" else self.G.mapping(latent, self._labels(1),
                                                                      truncation_psi=self.truncation_psi)
                imgs.append(self.G.synthesis(ws=ws, noise_mode="const")[0])
        imgs = torch.stack(imgs)
        if not bool(torch.isfinite(imgs).all()):
            raise non_finite_pixels(self.network, f"at frame {frame} between keyframe seeds {self._around(frame)}",
                                    truncation_psi=self.truncation_psi)
        return layout_frame(imgs, *self.grid, quantize=None if self.stylegan else self.adapter.quantize)

    def frames(self, indices: Optional[Iterable[int]] = None) -> Iterator[np.ndarray]:
        """Yield the frames ``indices`` (default: all, in order) as uint8 (grid_h * H, grid_w * W, C)."""
        for frame in (range(self.num_frames) if indices is None else indices):
            yield self.render(int(frame))

    def _labels(self, n: int):
        return None if self.labels is None else self.labels[:1].repeat(n, 1)

    def _around(self, frame: int) -> str:
        k = (frame // self.w_frames) % self.num_keyframes
        per_cell = self.seeds.reshape(-1, self.num_keyframes)
        nxt = (k + 1) % self.num_keyframes
        return ", ".join(f"{int(s[k])}->{int(s[nxt])}" for s in per_cell)


def plan_video(G: torch.nn.Module, seeds: Sequence[int], *, network: str = "network", grid: tuple = (1, 1),
               num_keyframes: Optional[int] = None, shuffle_seed: Optional[int] = None, w_frames: int = 120,
               method: str = "cubic", space: Optional[str] = None, truncation_psi: float = 1.0,
               labels: Optional[torch.Tensor] = None, device=None, discriminator: Optional[torch.nn.Module] = None,
               d_strength: float = 1.0, d_iterations: int = 50,
               progress: Optional[Callable[[int, int], None]] = None) -> VideoPlan:
    """Lay out and map the keyframes of an interpolation video (and, for ``method='discriminator'``, optimise
    its paths).

    Parameters
    ----------
    G : torch.nn.Module
        A stylegan3 or stylegan2-ada generator (``mapping``, ``synthesis``, ``z_dim``) on ``device``, or any
        generator :func:`~extensions.stylegan.adapter.make_adapter` drives (BigGAN, ``module:callable``):
        Z-space videos, frames ``adapter.generate(z_t, labels, truncation_psi)``.
    seeds : sequence of int
        Keyframe seeds, tiled and shuffled by :func:`keyframe_seeds`.
    network : str
        Name used in error messages.
    grid : (columns, rows)
    num_keyframes : int, optional
        Keyframes per cell; default ``len(seeds) / (columns * rows)``.
    shuffle_seed : int, optional
    w_frames : int
        Frames from one keyframe to the next; the video has ``num_keyframes * w_frames`` frames.
    method : str
        'cubic' or 'linear' (interp1d, as gen_video.py), or 'slerp', 'normalized', 'cauchy',
        'spherical-cauchy' (piecewise, :func:`extensions.paths.interpolate`), or 'discriminator' (piecewise
        discriminator-aware geodesics in W, :func:`extensions.paths.discriminator_path`).
    space : {'w', 'z'}, optional
        Where latents are interpolated; default 'w' for StyleGAN, 'z' (the only choice) for other generators.
        The Gaussian methods need 'z', 'discriminator' needs 'w' (see :func:`check_video_space`).
    truncation_psi : float
        StyleGAN: the mapping's psi. Others: the adapter's (BigGAN: the psi of the latent draw and of the model
        call; ``module:callable``: 1 only).
    labels : torch.Tensor, optional
        One-hot class label (1, c_dim) of conditional networks; None for unconditional ones (a conditional
        generator other than StyleGAN without labels is an error).
    device : torch.device, optional
        Where latents live; default the generator's.
    discriminator : torch.nn.Module, optional
        ``D(img, c)`` of the generator (:func:`extensions.stylegan.loader.load_discriminator_of`); needed
        by 'discriminator'.
    d_strength, d_iterations
        ``strength`` and ``iterations`` of :func:`~extensions.paths.discriminator_path`.
    progress : callable, optional
        ``progress(done, total)`` after each optimised segment (``total = grid_w * grid_h * K``).

    Raises
    ------
    HubnessError
        Bad seeds, grid, keyframe count, ``w_frames``, method or space, more than :data:`MAX_FRAMES` frames;
        'discriminator' without a discriminator, or with a bad strength or iteration count; a conditional
        generator without labels.
    NonFiniteError
        When the mapping sends a keyframe to NaN or inf (naming the network and the seeds).
    """
    if isinstance(w_frames, bool) or not isinstance(w_frames, (int, np.integer)) or w_frames < 1:
        raise HubnessError(f"--w-frames must be a positive number of frames between keyframes, got {w_frames!r} "
                           f"(e.g. --w-frames 120)")
    adapter = make_adapter(G)
    space = check_video_space(adapter, method, space, truncation_psi, network)
    stylegan = isinstance(adapter, StyleGANAdapter)
    if not stylegan and labels is None:
        adapter.labels(None)  # a conditional generator needs its class
    if method == "discriminator":
        check_discriminator_options(d_strength, d_iterations, w_frames)
        if discriminator is None:
            raise HubnessError(f"--interp discriminator needs the discriminator of network {network!r}; load it "
                               f"with load_discriminator_of and pass it as discriminator=")
    grid = _grid(grid)
    all_seeds = keyframe_seeds(seeds, grid, num_keyframes, shuffle_seed)
    num_keyframes = len(all_seeds) // (grid[0] * grid[1])
    check_video_size(num_keyframes, grid[0] * grid[1], int(w_frames))
    if device is None:
        params = list(G.parameters()) + list(G.buffers())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    if not stylegan:
        keys = torch.from_numpy(adapter.seed_latents(all_seeds, truncation_psi)).to(device)
        keys = keys.reshape(grid[1], grid[0], num_keyframes, -1)
        log.info("video: %d keyframes per cell, %dx%d grid, %d frames, %s in Z (%s)", num_keyframes, grid[0],
                 grid[1], num_keyframes * int(w_frames), method, adapter.kind)
        return VideoPlan(G, network, all_seeds, keys, grid, num_keyframes, int(w_frames), method, space,
                         float(truncation_psi), labels, device, adapter=adapter)
    # float64, as gen_video.py hands them to the mapping network
    zs = torch.from_numpy(seed_latents(all_seeds, int(G.z_dim))).to(device)
    c = None if labels is None else labels[:1].repeat(len(zs), 1)
    with torch.no_grad():
        ws = G.mapping(z=zs, c=c, truncation_psi=truncation_psi)    # one batch, as gen_video.py
    bad = ~torch.isfinite(ws.reshape(len(ws), -1)).all(dim=1)
    if bool(bad.any()):
        first = int(all_seeds[int(bad.nonzero()[0, 0])])
        hint = (f"--trunc {truncation_psi:g} may be too large; " if truncation_psi != 1 else "")
        raise NonFiniteError(f"network {network!r} maps keyframe seed {first} ({int(bad.sum())} of "
                             f"{len(all_seeds)} keyframes) to NaN or inf; {hint}the network may be broken: check "
                             f"its weights or use another snapshot", first)
    keys = ws if space == "w" else zs
    keys = keys.reshape(grid[1], grid[0], num_keyframes, *keys.shape[1:])
    log.info("video: %d keyframes per cell, %dx%d grid, %d frames, %s in %s", num_keyframes, grid[0], grid[1],
             num_keyframes * int(w_frames), method, space.upper())
    paths = None
    if method == "discriminator":
        paths = _discriminator_paths(G, discriminator, keys[:, :, :, 0], int(w_frames), labels, float(d_strength),
                                     int(d_iterations), device, progress)
    return VideoPlan(G, network, all_seeds, keys, grid, num_keyframes, int(w_frames), method, space,
                     float(truncation_psi), labels, device, paths, adapter)


def _discriminator_paths(G, D, keys: torch.Tensor, w_frames: int, labels: Optional[torch.Tensor],
                         strength: float, iterations: int, device, progress) -> torch.Tensor:
    """Discriminator-aware segments between consecutive keyframes (W, (rows, cols, K, w_dim)) of every cell,
    the last keyframe joined to the first: shape (rows, cols, K, w_frames + 1, w_dim), float32, CPU."""
    from .discriminator import adapter_functions, discriminator_path
    class_idx = None
    if labels is not None and labels.numel():
        class_idx = int(labels.reshape(-1, labels.shape[-1])[0].argmax())
    G_fn, D_fn, _ = adapter_functions(G, D, class_idx=class_idx)
    rows, cols, num_keyframes = keys.shape[:3]
    total = rows * cols * num_keyframes
    segments = []
    for r in range(rows):
        for c in range(cols):
            for k in range(num_keyframes):
                result = discriminator_path(G_fn, D_fn, keys[r, c, k], keys[r, c, (k + 1) % num_keyframes],
                                            steps=w_frames + 1, strength=strength, iterations=iterations,
                                            device=device)
                segments.append(result.latents)
                if progress is not None:
                    progress(len(segments), total)
    return torch.stack(segments).reshape(rows, cols, num_keyframes, w_frames + 1, -1)


def strip_frames(num_frames: int, count: int = 8) -> list:
    """``count`` frame indices at evenly spaced t = i / count across a video, with their t (frame, t)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise HubnessError(f"a strip needs at least one frame, got {count!r}")
    count = min(int(count), int(num_frames))
    return [(i * num_frames // count, i / count) for i in range(count)]


def sampled_keyframe_seeds(adapter, network: str, seeds: Sequence[int], sampler: str, *, num: Optional[int] = None,
                           truncation_psi: float = 1.0, labels: Optional[torch.Tensor] = None, k: int = 5,
                           t: float = 50.0, t_lq: float = 1.0, pool_size: Optional[int] = None,
                           knn_backend: str = "exact", include_self: bool = False, batch_size: int = 256,
                           max_pools: int = 50, progress: bool = False, echo=None):
    """Keyframe seeds chosen by a sampler from the ``seeds`` pool, in its output order (hub samplers: largest
    m first), and the :class:`extensions.samplers.Selection`.

    'random' and 'truncation' keep ``seeds`` as given (repeats included, as gen_video.py). Hub values are
    computed in the adapter's default space (W for StyleGAN, Z for other generators: BigGAN's draws at
    psi = 1, which rank seeds as every psi does), without truncation, as
    :func:`extensions.stylegan.generate.generate_images` does.
    """
    from ..stylegan.generate import HUB_SAMPLERS, SAMPLER_NAMES, sample_seeds, validate_options
    say = echo or log.info
    if sampler not in SAMPLER_NAMES:
        raise HubnessError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    if sampler not in HUB_SAMPLERS:
        if sampler == "truncation" and truncation_psi == 1:
            raise HubnessError("--sampler truncation needs --trunc other than 1 (e.g. --trunc 0.7)")
        return np.asarray(list(seeds), dtype=np.int64), None
    pool, num, pool_size, _ = validate_options(sampler, "const", knn_backend, seeds, num, pool_size, batch_size,
                                               max_pools, k, t, t_lq, truncation_psi, say)
    space = adapter.check_space(None)
    selection, _ = sample_seeds(adapter, network, pool, sampler, num, space,
                                adapter.labels(None) if labels is None else labels, 1.0, pool_size, batch_size,
                                max_pools, k, t, t_lq, include_self, knn_backend, progress, say)
    return selection.seeds.astype(np.int64), selection
