"""Discriminator-aware geodesics: shortest paths in the generator's image metric that avoid images the
discriminator finds unrealistic.

A linear path between two latents is not the shortest path between their images, and the shortest path
in image space (the geodesic of the generator's pull-back metric ``J^T J``) may pass through images far
from the real data. Following "Discriminating Against Unrealistic Interpolations in Generative
Adversarial Networks", the metric is scaled by a decreasing function of the discriminator's realism score,
so that short paths through unrealistic regions become long.

The path is discretised into T points ``z_0 .. z_{T-1}`` with fixed endpoints ``z_0 = a``, ``z_{T-1} = b``,
images ``x_i = G(z_i)`` and discriminator logits ``s_i = D(x_i)``. The interior points minimise the
discrete energy

    E = sum_{i=0}^{T-2} c_i * mean((x_{i+1} - x_i)^2),
    c_i = exp(lambda * (softplus(-s_i) + softplus(-s_{i+1})) / 2),

where the mean runs over the pixels (and channels) of the images, optionally average-pooled by
``downsample`` first. ``exp(lambda * softplus(-s)) = sigmoid(s)^-lambda`` divides the metric by D's
probability of "real" to the power lambda (``strength``), so ``c_i`` is the geometric mean of that factor
at the segment's two images: always >= 1, decreasing in realism, close to 1 where D finds the images real
and growing like ``exp(-lambda s)`` where it does not. ``strength = 0`` gives ``c_i = 1``, the plain
image-space geodesic. Summing squared segment lengths (not lengths) makes the minimisers spread their
points evenly: ``E >= L^2 / (T - 1)`` for the path's metric length ``L = sum_i sqrt(c_i) |x_{i+1} - x_i|``,
with equality for segments of equal length.

StyleGAN generators are driven in W (synthesis only, the path in W broadcast to every layer); other
generators in Z. See :func:`adapter_functions` and :func:`digits_functions`.

Example
-------
>>> G_fn, D_fn, adapter = digits_functions(device="cpu")
>>> w = adapter.map(torch.randn(2, adapter.z_dim))
>>> result = discriminator_path(G_fn, D_fn, w[0], w[1], steps=12, strength=1.0, iterations=50)
>>> tuple(result.latents.shape), tuple(result.d_scores.shape)
((12, 64), (12,))
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import HubnessError, real_values, resolve_device
from .interpolation import interpolate

log = logging.getLogger(__name__)

__all__ = ["PathResult", "adapter_functions", "digits_functions", "discriminator_function", "discriminator_path",
           "path_energy", "segment_costs"]

OPTIMIZERS = ("adam", "lbfgs")
#: Default step sizes: Adam moves each coordinate by about ``lr`` per iteration (in latent units);
#: L-BFGS scales its quasi-Newton step by ``lr`` and searches along it (strong Wolfe line search).
DEFAULT_LR = {"adam": 0.01, "lbfgs": 1.0}


@dataclass
class PathResult:
    """A discriminator-aware path and how it was found.

    Attributes
    ----------
    latents : torch.Tensor, shape (T, d), float32, CPU
        The path of lowest energy seen (usually the last iterate); rows 0 and T-1 are ``a`` and ``b``
        (as float32) exactly.
    energy_history : torch.Tensor, shape (iterations + 1,), float64, CPU
        The energy of the initial path, then after each iteration.
    d_scores : torch.Tensor, shape (T,), float32, CPU
        The discriminator's logits of the images along ``latents``.
    initial_latents : torch.Tensor, shape (T, d)
        The starting path (``init``).
    initial_d_scores : torch.Tensor, shape (T,)
        The logits along the starting path.
    energy : float
        The energy of ``latents`` (the minimum of ``energy_history``).
    best_iteration : int
        The index into ``energy_history`` of ``latents``.
    strength : float
        The lambda the energy was computed with.
    """

    latents: torch.Tensor
    energy_history: torch.Tensor
    d_scores: torch.Tensor
    initial_latents: torch.Tensor
    initial_d_scores: torch.Tensor
    energy: float
    best_iteration: int
    strength: float


# ---------------------------------------------------------------------------------------------------- energy

def segment_costs(scores: torch.Tensor, strength: float) -> torch.Tensor:
    """Metric scale of each segment, ``exp(strength * (softplus(-s_i) + softplus(-s_{i+1})) / 2)``.

    Parameters
    ----------
    scores : torch.Tensor, shape (T,)
        Discriminator logits along the path (higher: more realistic).
    strength : float
        lambda >= 0; 0 gives ones.

    Returns
    -------
    torch.Tensor, shape (T - 1,)
        Values >= 1, decreasing in both logits.
    """
    penalty = F.softplus(-scores)                     # -log sigmoid(s), stable for any logit
    return torch.exp(strength * 0.5 * (penalty[:-1] + penalty[1:]))


def path_energy(images: torch.Tensor, scores: torch.Tensor, strength: float, *, downsample: int = 1
                ) -> torch.Tensor:
    """The discrete energy ``sum_i c_i * mean((x_{i+1} - x_i)^2)`` of a path's images.

    Parameters
    ----------
    images : torch.Tensor, shape (T, C, H, W)
        Images along the path.
    scores : torch.Tensor, shape (T,)
        Discriminator logits of ``images``.
    strength : float
        lambda >= 0 of :func:`segment_costs`.
    downsample : int
        Average-pool the images by this factor before comparing them (1: full resolution).

    Returns
    -------
    torch.Tensor, scalar
        Differentiable with respect to ``images`` and ``scores``.
    """
    if downsample > 1:
        images = F.avg_pool2d(images, downsample, ceil_mode=True)
    squared = (images[1:] - images[:-1]).pow(2).flatten(1).mean(dim=1)     # (T - 1,)
    return (segment_costs(scores, strength) * squared).sum()


# ------------------------------------------------------------------------------------------------- the path

#: Image values (C * H * W per image) per pass through G and D when no batch size is given: about five
#: 1024 x 1024 RGB images, whose activations with autograd fit in a 40 GB GPU for stylegan3-r and D.
POINTS_BUDGET = 1 << 24


def points_per_pass(image_shape, steps: int, budget: int = POINTS_BUDGET) -> int:
    """Path points per G/D pass for images of ``image_shape`` (C, H, W): all ``steps`` when they fit."""
    values = int(np.prod(image_shape))
    return int(max(1, min(steps, budget // max(values, 1))))


def discriminator_path(G_fn: Callable[[torch.Tensor], torch.Tensor], D_fn: Callable[[torch.Tensor], torch.Tensor],
                       a, b, *, steps: int = 16, strength: float = 1.0, iterations: int = 100,
                       lr: Optional[float] = None, init: str = "linear", optimizer: str = "adam",
                       downsample: int = 1, batch_size: Optional[int] = None, device=None,
                       progress: Optional[Callable[[int, int, float], None]] = None) -> PathResult:
    """The discriminator-aware shortest path from latent ``a`` to latent ``b`` (see the module docstring).

    Parameters
    ----------
    G_fn : callable
        Latents (n, d) -> images (n, C, H, W), differentiable (for StyleGAN: W -> synthesis).
    D_fn : callable
        Images (n, C, H, W) -> logits (n,) or (n, 1), differentiable; higher means more realistic.
    a, b : torch.Tensor or numpy.ndarray, shape (d,) or (1, d)
        Finite endpoints, kept fixed.
    steps : int
        T >= 3, the number of points on the path, endpoints included.
    strength : float
        lambda >= 0: how strongly unrealistic images lengthen the path; 0 gives the image-space geodesic.
    iterations : int
        Optimiser steps (>= 0; 0 returns the initial path).
    lr : float, optional
        Step size; default :data:`DEFAULT_LR` of the optimiser.
    init : str
        An :func:`~extensions.paths.interpolation.interpolate` method for the starting path.
    optimizer : str
        ``adam`` (one gradient evaluation per iteration) or ``lbfgs`` (one quasi-Newton step per iteration,
        with a strong Wolfe line search of up to 25 evaluations: fewer iterations, each costlier).
    downsample : int
        Average-pooling factor of the images in the distance (>= 1).
    batch_size : int, optional
        Path points per pass through G and D. None: :func:`points_per_pass` of the image size (all of them
        for small images). With fewer points than T, each gradient takes one pass without autograd over all
        points (the images and logits, whose energy gradient is exact and cheap), then a pass per batch that
        recomputes its images with autograd and back-propagates that gradient: the same gradient, with
        memory for ``batch_size`` images' activations instead of T, for one extra forward pass.
    device : str or torch.device, optional
        Where the latents live; None: CUDA when available, else CPU. G_fn and D_fn must work there.
    progress : callable, optional
        ``progress(done, iterations, energy)`` after each iteration.

    Returns
    -------
    PathResult

    Raises
    ------
    HubnessError
        For T < 3, endpoints that differ in shape or are not finite, strength < 0 or non-finite, a bad
        iteration count, step size, optimiser, downsampling factor or init method, G_fn/D_fn outputs of
        the wrong shape, and an energy or gradient that becomes non-finite.
    """
    steps = _check_int(steps, "steps", 3, "a path needs both endpoints and at least one point to move")
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1, "or None for an automatic size")
    iterations = _check_int(iterations, "iterations", 0, "use 0 for the initial path")
    downsample = _check_int(downsample, "downsample", 1, "use 1 for full-resolution images")
    strength = _check_number(strength, "strength")
    if strength < 0:
        raise HubnessError(f"strength must be >= 0 (0: the plain image-space geodesic), got {strength!r}")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise HubnessError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else _check_number(lr, "lr")
    if lr <= 0:
        raise HubnessError(f"lr must be > 0, got {lr!r}")
    device = resolve_device(device)
    a, b = _endpoint(a, "a"), _endpoint(b, "b")
    if a.shape != b.shape:
        raise HubnessError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.to(device), b.to(device)

    start = interpolate(a, b, torch.linspace(0, 1, steps, dtype=torch.float64), method=init)
    start = start.to(device=device, dtype=torch.float32)
    interior = torch.nn.Parameter(start[1:-1].clone())
    chunk = steps if batch_size is None else batch_size
    if batch_size is None:
        with torch.no_grad():
            chunk = points_per_pass(G_fn(start[:1]).shape[1:], steps)

    def path() -> torch.Tensor:
        return torch.cat([a[None], interior, b[None]])

    def forward(latents: torch.Tensor):
        n = latents.shape[0]
        images = G_fn(latents)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != n:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise HubnessError(f"G_fn returned {got} for {n} latents; expected images ({n}, C, H, W)")
        scores = D_fn(images)
        if not isinstance(scores, torch.Tensor) or scores.shape not in ((n,), (n, 1)):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise HubnessError(f"D_fn returned {got} for {n} images; expected logits ({n},) or ({n}, 1)")
        return images, scores.reshape(n)

    def energy_of(images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return path_energy(images.float(), scores.float(), strength, downsample=downsample)

    def batches():
        return [(i, min(i + chunk, steps)) for i in range(0, steps, chunk)]

    def evaluate_no_grad(latents: torch.Tensor):
        with torch.no_grad():
            parts = [forward(latents[i:j]) for i, j in batches()]
            images = torch.cat([p[0] for p in parts])
            scores = torch.cat([p[1] for p in parts]).float()
            return energy_of(images, scores), images, scores

    last = {}                                               # the latest no-autograd pass, reused by gradient()

    def measure(done: int):
        latents = path().detach()
        energy, images, scores = evaluate_no_grad(latents)
        if chunk < steps:
            last.update(latents=latents.clone(), energy=energy, images=images, scores=scores)
        value = float(energy)
        if not math.isfinite(value):
            where = "of the initial path" if done == 0 else f"after iteration {done}"
            raise HubnessError(f"the path energy {where} is {value}; lower lr ({lr}) or strength ({strength}), "
                               "or check that G_fn and D_fn give finite outputs for these latents")
        return value, scores

    def gradient() -> torch.Tensor:
        """The energy of the current path, with its gradient accumulated into ``interior.grad``."""
        if chunk >= steps:
            images, scores = forward(path())
            energy = energy_of(images, scores)
            energy.backward()
            return energy.detach()
        latents = path().detach()
        if last and torch.equal(last["latents"], latents):  # Adam: the path measured after the last step
            images, scores = last["images"], last["scores"]
        else:
            _, images, scores = evaluate_no_grad(latents)
        last.clear()
        images, scores = images.detach(), scores.detach()
        images.requires_grad_(True)
        scores.requires_grad_(True)
        energy = energy_of(images, scores)
        grad_images, grad_scores = torch.autograd.grad(energy, [images, scores])
        for i, j in batches():
            if i == 0 and j == 1 or i == steps - 1:
                continue                                    # only fixed endpoints: no gradient to pass on
            part_images, part_scores = forward(path()[i:j])
            torch.autograd.backward([part_images, part_scores],
                                    [grad_images[i:j].to(part_images.dtype), grad_scores[i:j].to(part_scores.dtype)])
        return energy.detach()

    if optimizer == "adam":
        opt = torch.optim.Adam([interior], lr=lr)
    else:
        opt = torch.optim.LBFGS([interior], lr=lr, max_iter=1, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        energy = gradient()
        if interior.grad is None:                           # a batch size that skipped every interior point
            interior.grad = torch.zeros_like(interior)
        if not (torch.isfinite(energy) and bool(torch.isfinite(interior.grad).all())):
            raise HubnessError(f"the path energy or its gradient became non-finite (energy {float(energy)}); "
                               f"lower lr ({lr}) or strength ({strength})")
        return energy

    value, scores = measure(0)
    history = [value]
    initial_scores = scores.detach().cpu()
    best = (value, 0, path().detach().clone(), scores)
    for done in range(1, iterations + 1):
        opt.step(closure)
        value, scores = measure(done)
        history.append(value)
        if value < best[0]:
            best = (value, done, path().detach().clone(), scores)
        if progress is not None:
            progress(done, iterations, value)
    log.info("discriminator path: T=%d strength=%g energy %.6g -> %.6g (best at iteration %d of %d)",
             steps, strength, history[0], best[0], best[1], iterations)
    return PathResult(latents=best[2].cpu(), energy_history=torch.tensor(history, dtype=torch.float64),
                      d_scores=best[3].detach().cpu(), initial_latents=start.cpu(),
                      initial_d_scores=initial_scores, energy=best[0], best_iteration=best[1],
                      strength=strength)


# ------------------------------------------------------------------------------------------ network helpers

def _mbstd_group(D) -> int:
    """Images per minibatch-std group of ``D``: this package's ``D.group_size`` or stylegan's
    ``D.b4.mbstd.group_size``; 1 when D has no such layer."""
    group = getattr(D, "group_size", None)
    if group is None:
        mbstd = getattr(getattr(D, "b4", None), "mbstd", None)
        group = getattr(mbstd, "group_size", None)
    return int(group) if isinstance(group, (int, np.integer)) and group > 1 else 1


def discriminator_function(D, labels: Optional[torch.Tensor] = None, context: Optional[torch.Tensor] = None
                           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``D_fn(images) -> logits (n,)`` from a ``D(img, c)`` network.

    A minibatch-std layer makes each logit depend on the other images of its group. With ``context``
    (``g - 1`` images for groups of g), every image is scored in a group with the same context images,
    so its logit depends on that image alone, as in training (groups of distinct images); the batch is
    laid out so that stylegan's and this package's layers (group member j of image i at row i + j n)
    put image i with the context. Without it the n images are scored as one batch.

    Parameters
    ----------
    D : torch.nn.Module
        ``D(img, c)`` -> logits (n, 1).
    labels : torch.Tensor, optional
        Conditioning labels, shape (1, c_dim) (the same for every image); None: zeros of ``D.c_dim``.
    context : torch.Tensor, optional
        Fixed images (g - 1, C, H, W).
    """
    c_dim = int(getattr(D, "c_dim", 0) or 0)

    def D_fn(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        if context is not None:
            ctx = context.to(images.device, images.dtype)
            images = torch.cat([images] + [ctx[j:j + 1].expand(n, *ctx.shape[1:]) for j in range(len(ctx))])
        c = labels if labels is not None else torch.zeros(1, c_dim, device=images.device)
        logits = D(images, c.to(images.device).expand(images.shape[0], -1))
        return logits.reshape(-1)[:n]

    return D_fn


def adapter_functions(G, D, *, class_idx: Optional[int] = None, noise_mode: str = "const",
                      context_seeds=None):
    """``(G_fn, D_fn, adapter)`` for :func:`discriminator_path` from a generator and its discriminator.

    Parameters
    ----------
    G : torch.nn.Module or extensions.stylegan.adapter.GeneratorAdapter
        A StyleGAN generator (the path lives in W: ``G_fn`` is the synthesis of (n, w_dim) latents, see
        ``adapter.map`` for endpoints), or any generator ``G(z, c)`` (the path lives in Z).
    D : torch.nn.Module
        ``D(img, c)`` -> logits (n, 1).
    class_idx : int, optional
        Class of conditional networks.
    noise_mode : str
        StyleGAN noise mode; ``const`` keeps G_fn deterministic.
    context_seeds : sequence of int, optional
        Seeds of the images that share D's minibatch-std groups with each path image (see
        :func:`discriminator_function`); default 0 .. g - 2 for groups of g. Drawn like ``gen_images.py``
        (``RandomState(seed).randn(z_dim)``), mapped with truncation 1.
    """
    from ..stylegan.adapter import GeneratorAdapter, make_adapter
    adapter = G if isinstance(G, GeneratorAdapter) else make_adapter(G)
    labels = adapter.labels(class_idx, 1)
    if adapter.default_space == "w":
        def G_fn(w: torch.Tensor) -> torch.Tensor:
            return adapter.synthesize(w, noise_mode=noise_mode)
    else:
        def G_fn(z: torch.Tensor) -> torch.Tensor:
            return adapter.generate(z, labels.expand(len(z), -1), noise_mode=noise_mode)
    group = _mbstd_group(D)
    seeds = list(range(group - 1)) if context_seeds is None else [int(s) for s in context_seeds]
    context = None
    if seeds:
        z = np.stack([np.random.RandomState(seed).randn(adapter.z_dim) for seed in seeds])
        with torch.no_grad():
            context = adapter.generate(torch.from_numpy(z), labels.expand(len(seeds), -1), noise_mode=noise_mode)
    return G_fn, discriminator_function(D, labels, context), adapter


def digits_functions(device=None, *, stylegan3=None):
    """``(G_fn, D_fn, adapter)`` of the embedded digits generator (W space, 64-d) and its discriminator."""
    from ..digits.network import load_discriminator, load_generator
    device = resolve_device(device)
    G = load_generator(device=device, stylegan3=stylegan3)
    D = load_discriminator(device=device)
    return adapter_functions(G, D)


# ------------------------------------------------------------------------------------------------ checks

def _check_int(value, name: str, low: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise HubnessError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise HubnessError(f"{name} must be >= {low} ({hint}), got {value!r}")
    return int(value)


def _check_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise HubnessError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _endpoint(x, name: str) -> torch.Tensor:
    """An endpoint as a finite float32 tensor of shape (d,)."""
    x = real_values(x, name)[0]
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1 or x.shape[0] < 1:
        raise HubnessError(f"{name} must have shape (d,) or (1, d), got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        index = int(torch.nonzero(bad)[0, 0])
        raise HubnessError(f"{name} holds {int(bad.sum())} non-finite value(s), the first {float(x[index])} "
                           f"at index {index}; use finite latents")
    y = x.to(torch.float32)
    if not bool(torch.isfinite(y).all()):
        raise HubnessError(f"{name} has values up to {float(x.abs().max()):.3g}, beyond float32's range")
    return y
