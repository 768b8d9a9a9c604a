"""One-dimensional maps between a prior and the standard Cauchy distribution, accurate in both tails.

A variable X with continuous CDF F becomes a standard Cauchy variable through ``C = F_C^-1(F(X))`` with
``F_C^-1(p) = tan(pi (p - 1/2))``, and goes back through ``X = F^-1(F_C(C))``. Computed as written, p rounds
to 1 in the upper tail (Phi(8.3) == 1.0 in float64) and tan meets its pole. Each map here works instead
from the smaller tail probability ``q = min(F(x), 1 - F(x))``, computed directly, and the side of the median
``s`` (+1 above, -1 below)::

    C = s cot(pi q)            where q < 1/4
    C = s tan(pi (1/2 - q))    elsewhere, with 1/2 - q computed without cancellation

and back with ``q = atan(1 / |C|) / pi`` for |C| > 1 and ``1/2 - q = atan(|C|) / pi`` otherwise. Everything is
computed in float64.

Two priors are covered: the standard normal (one latent coordinate of StyleGAN's or BigGAN's Z) and the chi
distribution with d degrees of freedom (the norm of a d-dimensional N(0, I) latent).

Tail probabilities below :data:`TAIL_FLOOR` (1e-300: a standard normal coordinate beyond +-37.0, a 512-d
Gaussian latent with norm below about 3.6 or above about 52.4, never drawn from the prior) are raised to it,
so that every Cauchy value is finite (|C| <= 3.2e299) and so is any convex combination of them.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch

from .._checks import HubnessError

__all__ = ["TAIL_FLOOR", "gaussian_to_cauchy", "cauchy_to_gaussian", "chi_to_cauchy", "cauchy_to_chi"]

TAIL_FLOOR = 1e-300

_SQRT2 = math.sqrt(2.0)


def _float64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _cauchy_from_tail(side: torch.Tensor, tail: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """``side * F_C^-1(1 - tail)`` from ``tail`` in [0, 1/2] and ``centre = 1/2 - tail``."""
    tail = tail.clamp(min=TAIL_FLOOR)
    return side * torch.where(tail < 0.25, 1.0 / torch.tan(math.pi * tail), torch.tan(math.pi * centre))


def _tail_from_cauchy(c: torch.Tensor):
    """Side of the median, whether |c| > 1, the tail probability (accurate where |c| > 1) and 1/2 - tail
    (accurate where |c| <= 1)."""
    size = c.abs()
    return torch.sign(c), size > 1, torch.atan(1.0 / size) / math.pi, torch.atan(size) / math.pi


def gaussian_to_cauchy(z) -> torch.Tensor:
    """``F_C^-1(Phi(z))`` elementwise: standard normal values to standard Cauchy values.

    Parameters
    ----------
    z : torch.Tensor or array_like, any shape

    Returns
    -------
    torch.Tensor, float64, same shape (and device, for a tensor)
        Relative error about 1e-14 for |z| <= 8; finite for every finite z (see :data:`TAIL_FLOOR`).
    """
    z = _float64(z)
    x = z.abs()
    # torch.special.ndtr(-x) is 1 - Phi(x) computed by subtraction (2% off at x = 8, 0 beyond 8.3); erfc is not.
    tail = 0.5 * torch.special.erfc(x / _SQRT2)
    return _cauchy_from_tail(torch.sign(z), tail, 0.5 * torch.special.erf(x / _SQRT2))


def cauchy_to_gaussian(c) -> torch.Tensor:
    """``Phi^-1(F_C(c))`` elementwise, the inverse of :func:`gaussian_to_cauchy`.

    Parameters
    ----------
    c : torch.Tensor or array_like, any shape

    Returns
    -------
    torch.Tensor, float64, same shape (and device, for a tensor); +-inf for c = +-inf.
    """
    side, far, tail, centre = _tail_from_cauchy(_float64(c))
    return side * torch.where(far, -torch.special.ndtri(tail), _SQRT2 * torch.special.erfinv(2.0 * centre))


def _check_dof(d) -> float:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise HubnessError(f"degrees of freedom d must be a positive integer, got {d!r}")
    return 0.5 * float(d)


def chi_to_cauchy(r, d: int) -> torch.Tensor:
    """``F_C^-1(F_chi_d(r))`` elementwise: norms of d-dimensional N(0, I) latents to standard Cauchy values.

    ``F_chi_d(r) = P(d/2, r^2/2)``, the regularised lower incomplete gamma function.

    Parameters
    ----------
    r : torch.Tensor or array_like, any shape
        Norms, >= 0.
    d : int
        Degrees of freedom (the latent dimension).

    Returns
    -------
    torch.Tensor, float64, same shape (and device, for a tensor); finite (see :data:`TAIL_FLOOR`).
    """
    half_d = _check_dof(d)
    r = _float64(r)
    with np.errstate(over="ignore"):  # r^2 beyond float64 is the upper tail's floor anyway
        x = 0.5 * np.square(r.cpu().numpy())
    lower, upper = scipy.special.gammainc(half_d, x), scipy.special.gammaincc(half_d, x)
    side = np.where(upper <= lower, 1.0, -1.0)
    tail = np.minimum(lower, upper)
    # lower + upper == 1, so 1/2 - tail == (larger - smaller) / 2, free of the cancellation of 0.5 - tail.
    centre = 0.5 * np.abs(lower - upper)
    as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    return _cauchy_from_tail(as_tensor(side), as_tensor(tail), as_tensor(centre)).to(r.device)


def cauchy_to_chi(c, d: int) -> torch.Tensor:
    """``F_chi_d^-1(F_C(c))`` elementwise, the inverse of :func:`chi_to_cauchy`.

    Parameters
    ----------
    c : torch.Tensor or array_like, any shape
    d : int
        Degrees of freedom (the latent dimension).

    Returns
    -------
    torch.Tensor, float64, same shape (and device, for a tensor); norms >= 0 (inf for c = +inf).
    """
    half_d = _check_dof(d)
    c = _float64(c)
    side, far, tail, centre = (v.cpu().numpy() for v in _tail_from_cauchy(c))
    with np.errstate(all="ignore"):  # each branch is evaluated everywhere; np.where keeps the valid one
        below = scipy.special.gammaincinv(half_d, tail)
        above = scipy.special.gammainccinv(half_d, tail)
        middle = scipy.special.gammaincinv(half_d, 0.5 + side * centre)
    x = np.where(far, np.where(side > 0, above, below), middle)
    return torch.as_tensor(np.sqrt(2.0 * x), dtype=torch.float64).to(c.device)
