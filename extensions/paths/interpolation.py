"""Interpolation paths between latents, and which of them keep a Gaussian prior.

The points of a linear path between two independent N(0, I) latents are Gaussian with a smaller variance:
the midpoint ``(a + b) / 2`` is N(0, I / 2), with norm about sqrt(d / 2) instead of sqrt(d), a shell the
generator almost never saw in training (Lesniak, Sieradzki and Podolak, "On latent distributions without
finite mean in generative models", 2018). The methods differ in what they keep:

====================  =====================================================================================
``linear``            ``(1 - t) a + t b``
``slerp``             the direction along the great circle from a/|a| to b/|b| (Shoemake's slerp of the unit
                      directions), the norm linear in t: ``((1 - t)|a| + t|b|) slerp(a/|a|, b/|b|, t)``.
                      Equal to the classic GAN slerp ``sin((1-t)W)/sin(W) a + sin(tW)/sin(W) b`` (W the angle
                      between a and b; White, "Sampling generative networks", 2016) when |a| = |b|, so it keeps
                      a sphere; unlike that formula it stays bounded for opposite directions of unequal norm.
``normalized``        ``((1 - t) a + t b) / sqrt((1 - t)^2 + t^2)``
``cauchy``            each coordinate mapped to a standard Cauchy variable, ``F_C^-1(Phi(z))``, interpolated
                      linearly there and mapped back: a convex combination of independent standard Cauchy
                      variables is standard Cauchy (see :mod:`.maps`)
``spherical-cauchy``  the direction as in ``slerp``; the norm mapped through the CDF of the chi distribution
                      with d degrees of freedom to a Cauchy variable, interpolated linearly there and mapped
                      back
====================  =====================================================================================

**The prior matters.** ``normalized``, ``cauchy`` and ``spherical-cauchy`` (:data:`GAUSSIAN_METHODS`) assume
the standard normal prior of Z (StyleGAN's and BigGAN's input latents): for independent a, b ~ N(0, I) every
point of their paths is again exactly N(0, I), at every t. In other spaces (StyleGAN's W, a truncated Z, an
encoder's codes) they are merely curved paths with no such guarantee. ``linear`` and ``slerp`` assume no
prior and suit any space, W included.

Exactness and numerics: t = 0 returns ``a`` and t = 1 returns ``b`` bit for bit (the endpoints are set, not
computed). The paths are computed in float64: the Cauchy maps work from tail probabilities (accurate to
|z| = 37; farther coordinates and norms are held at the quantile of probability 1e-300, see
:data:`.maps.TAIL_FLOOR`); the angle between directions is ``2 atan2(|u - v|, |u + v|)``, accurate for
nearly parallel and nearly opposite directions. A zero vector has no direction: the spherical methods then
take the other latent's direction (for ``slerp`` the path is the straight line). Exactly opposite
directions span no unique great circle: the path then turns through the coordinate axis least aligned
with a (deterministic, and the limit of nearby pairs within 1e-8 of opposite).

Example
-------
>>> a, b = torch.randn(512), torch.randn(512)
>>> path = interpolate(a, b, torch.linspace(0, 1, 9), method="spherical-cauchy")   # (9, 512), float32
>>> bool((path[0] == a).all()), bool((path[-1] == b).all())
(True, True)

A further method joins with :func:`register_interpolation`.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np
import torch

from .._checks import HubnessError, real_values
from .maps import cauchy_to_chi, cauchy_to_gaussian, chi_to_cauchy, gaussian_to_cauchy

__all__ = ["GAUSSIAN_METHODS", "INTERPOLATIONS", "interpolate", "register_interpolation"]

INTERPOLATIONS: dict[str, Callable] = {}

#: Methods whose paths keep N(0, I) only when the latents are drawn from N(0, I) (StyleGAN's or BigGAN's Z).
GAUSSIAN_METHODS = ("normalized", "cauchy", "spherical-cauchy")

# Below this |b/|b| - ((a.b)/(|a||b|)) a/|a||, nearly opposite directions span a plane set by rounding noise.
_OPPOSITE_TOL = 1e-8


def register_interpolation(name: str):
    """Decorator: make ``fn`` available to :func:`interpolate` as ``method=name``.

    ``fn(a, b, t, **options)`` receives validated float64 tensors on one device, ``a`` and ``b`` of shape
    (n, d) and ``t`` of shape (T,) in [0, 1], and returns the paths, shape (n, T, d). :func:`interpolate`
    converts them to the caller's kind and dtype and sets the endpoints t = 0 and t = 1 exactly.
    """
    def decorate(fn):
        INTERPOLATIONS[name] = fn
        return fn
    return decorate


def interpolate(a, b, t, method: str = "linear", **options):
    """Points along the path from latent ``a`` to latent ``b`` at fractions ``t``.

    Parameters
    ----------
    a, b : torch.Tensor or numpy.ndarray, shape (d,) or (n, d), the same shape
        Finite real latents (pairs row by row for (n, d)). Tensors must share a device.
    t : array_like or torch.Tensor, shape (T,)
        Fractions in [0, 1]; t = 0 gives ``a`` and t = 1 gives ``b`` exactly.
    method : str
        ``linear``, ``slerp``, ``normalized``, ``cauchy``, ``spherical-cauchy`` (see the module docstring;
        the last three assume a standard normal prior, :data:`GAUSSIAN_METHODS`), or a registered method.
    **options
        Passed to the method (the built-in methods take none).

    Returns
    -------
    torch.Tensor or numpy.ndarray, shape (T, d) for (d,) inputs, (n, T, d) for (n, d) inputs
        A tensor (on the inputs' device) when ``a`` or ``b`` is one: float64 when either is float64, else
        float32. Otherwise an array: float32 when both are float16/float32, else float64. No gradient flows.

    Raises
    ------
    HubnessError
        Unknown method or option, non-real or non-finite latents, shapes that are not (d,) or (n, d) or
        differ, tensors on different devices, t not of shape (T,), t non-finite or outside [0, 1], and
        ``d = 1`` for the spherical methods.
    """
    if not isinstance(method, str) or method not in INTERPOLATIONS:
        raise HubnessError(f"unknown interpolation method {method!r}; choose one of "
                           f"{', '.join(sorted(INTERPOLATIONS))}")
    fn = INTERPOLATIONS[method]
    try:
        inspect.signature(fn).bind(None, None, None, **options)
    except TypeError as exc:
        raise HubnessError(f"interpolation method {method!r} does not take the option(s) "
                           f"{', '.join(map(repr, sorted(options)))}") from exc
    a_values, b_values, as_numpy, out_dtype = _as_pair(a, b)
    device = a_values.device
    ts = _as_fractions(t, device)
    single = a_values.ndim == 1
    a_rows, b_rows = (a_values[None], b_values[None]) if single else (a_values, b_values)
    n, d = a_rows.shape
    path = fn(a_rows.to(torch.float64), b_rows.to(torch.float64), ts, **options)
    if not isinstance(path, torch.Tensor) or tuple(path.shape) != (n, len(ts), d):
        got = tuple(path.shape) if isinstance(path, torch.Tensor) else type(path).__name__
        raise RuntimeError(f"interpolation method {method!r} returned {got}, expected a tensor of shape "
                           f"{(n, len(ts), d)}")
    path = path.detach().to(device=device, dtype=out_dtype)
    path[:, ts == 0] = a_rows.to(out_dtype)[:, None]
    path[:, ts == 1] = b_rows.to(out_dtype)[:, None]
    if single:
        path = path[0]
    return path.cpu().numpy() if as_numpy else path


# ---------------------------------------------------------------------------------------------- input checks

def _as_pair(a, b):
    (av, a_tensor), (bv, b_tensor) = real_values(a, "a"), real_values(b, "b")
    for name, v in (("a", av), ("b", bv)):
        if v.ndim not in (1, 2) or v.shape[-1] < 1:
            raise HubnessError(f"{name} must have shape (d,) or (n, d) with d >= 1, got shape {tuple(v.shape)}")
    if av.shape != bv.shape:
        raise HubnessError(f"a and b must have the same shape, got {tuple(av.shape)} and {tuple(bv.shape)}")
    if a_tensor and b_tensor and av.device != bv.device:
        raise HubnessError(f"a and b must be on the same device, got {av.device} and {bv.device}")
    device = av.device if a_tensor else bv.device
    av, bv = av.to(device), bv.to(device)
    for name, v in (("a", av), ("b", bv)):
        bad = ~torch.isfinite(v)
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise HubnessError(f"{name} holds {int(bad.sum())} non-finite value(s), the first "
                               f"{float(v[index])} at index {index if v.ndim > 1 else index[0]}; "
                               "interpolate finite latents only")
    if a_tensor or b_tensor:
        out_dtype = torch.float64 if torch.float64 in (av.dtype, bv.dtype) else torch.float32
    else:
        small = (torch.float16, torch.float32)
        out_dtype = torch.float32 if av.dtype in small and bv.dtype in small else torch.float64
    return av, bv, not (a_tensor or b_tensor), out_dtype


def _as_fractions(t, device) -> torch.Tensor:
    t = real_values(t, "t")[0].to("cpu", torch.float64).numpy()
    if t.ndim != 1:
        raise HubnessError(f"t must have shape (T,), got shape {t.shape}"
                           + ("; wrap a single fraction as [t]" if t.ndim == 0 else ""))
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        raise HubnessError(f"t must be finite, got {t[bad[0]]} at index {bad[0]}")
    bad = np.flatnonzero((t < 0) | (t > 1))
    if len(bad):
        raise HubnessError(f"t must lie in [0, 1], got {t[bad[0]]} at index {bad[0]}")
    return torch.as_tensor(t, device=device)


# ------------------------------------------------------------------------------------------------- geometry

def _norms(x: torch.Tensor) -> torch.Tensor:
    """Row norms, shape (n, 1), without overflow or underflow of the squares."""
    scale = x.abs().amax(dim=-1, keepdim=True)
    unit = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale * torch.linalg.vector_norm(x / unit, dim=-1, keepdim=True)


def _directions(x: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    return torch.where(norms > 0, x / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(x))


def _slerp_directions(ua: torch.Tensor, ub: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Unit directions along the great circle from ``ua`` to ``ub`` (rows unit or zero), shape (n, T, d)."""
    a_zero = ~(ua != 0).any(dim=-1, keepdim=True)
    b_zero = ~(ub != 0).any(dim=-1, keepdim=True)
    ua = torch.where(a_zero, ub, ua)
    ub = torch.where(b_zero, ua, ub)
    # Kahan's form: acos(ua . ub) loses half the digits near 0 and pi.
    omega = 2 * torch.atan2(torch.linalg.vector_norm(ua - ub, dim=-1, keepdim=True),
                            torch.linalg.vector_norm(ua + ub, dim=-1, keepdim=True))
    # The unit vector orthogonal to ua in the plane of ua and ub, re-orthogonalised once against rounding.
    w = ub - (ua * ub).sum(-1, keepdim=True) * ua
    w = w - (w * ua).sum(-1, keepdim=True) * ua
    w_norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    v = w / torch.where(w_norm > 0, w_norm, torch.ones_like(w_norm))
    # Nearly opposite directions: w is rounding noise, so turn through the axis least aligned with ua.
    # (Nearly parallel ones keep the noisy v: sin(t omega) ~ omega makes its error negligible.)
    axis = torch.zeros_like(ua).scatter_(-1, ua.abs().argmin(dim=-1, keepdim=True), 1.0)
    f = axis - (axis * ua).sum(-1, keepdim=True) * ua
    f = f / torch.linalg.vector_norm(f, dim=-1, keepdim=True)
    v = torch.where((w_norm <= _OPPOSITE_TOL) & (omega > math.pi / 2), f, v)
    angle = (omega * t)[..., None]                        # (n, T, 1)
    return torch.cos(angle) * ua[:, None] + torch.sin(angle) * v[:, None]


def _check_spherical(a: torch.Tensor, method: str):
    if a.shape[-1] < 2:
        raise HubnessError(f"method {method!r} needs latents of dimension d >= 2 (d = 1 has no great circle "
                           f"between opposite signs), got d = {a.shape[-1]}; use 'linear'")


# -------------------------------------------------------------------------------------------------- methods

@register_interpolation("linear")
def _linear(a, b, t):
    s = t[:, None]
    return (1 - s) * a[:, None] + s * b[:, None]


@register_interpolation("normalized")
def _normalized(a, b, t):
    return _linear(a, b, t) / torch.sqrt((1 - t) ** 2 + t ** 2)[:, None]


@register_interpolation("slerp")
def _slerp(a, b, t):
    _check_spherical(a, "slerp")
    ra, rb = _norms(a), _norms(b)
    radius = (1 - t) * ra + t * rb                        # (n, T)
    return radius[..., None] * _slerp_directions(_directions(a, ra), _directions(b, rb), t)


@register_interpolation("cauchy")
def _cauchy(a, b, t):
    return cauchy_to_gaussian(_linear(gaussian_to_cauchy(a), gaussian_to_cauchy(b), t))


@register_interpolation("spherical-cauchy")
def _spherical_cauchy(a, b, t):
    _check_spherical(a, "spherical-cauchy")
    d = a.shape[-1]
    ra, rb = _norms(a), _norms(b)
    radius = cauchy_to_chi((1 - t) * chi_to_cauchy(ra, d) + t * chi_to_cauchy(rb, d), d)   # (n, T)
    return radius[..., None] * _slerp_directions(_directions(a, ra), _directions(b, rb), t)
