"""Latent paths: interpolations between latents, with methods that keep a Gaussian prior along the path.

:func:`interpolate` (methods ``linear``, ``slerp``, ``normalized``, ``cauchy``, ``spherical-cauchy``; see
:mod:`.interpolation`) and the one-dimensional prior-to-Cauchy maps it builds on (:mod:`.maps`).
"""

from .interpolation import GAUSSIAN_METHODS, INTERPOLATIONS, interpolate, register_interpolation
from .maps import TAIL_FLOOR, cauchy_to_chi, cauchy_to_gaussian, chi_to_cauchy, gaussian_to_cauchy

__all__ = [
    "GAUSSIAN_METHODS", "INTERPOLATIONS", "interpolate", "register_interpolation", "TAIL_FLOOR",
    "cauchy_to_chi", "cauchy_to_gaussian", "chi_to_cauchy", "gaussian_to_cauchy",
]
