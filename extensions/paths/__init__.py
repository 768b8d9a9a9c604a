"""Latent paths: interpolations between latents, with methods that keep a Gaussian prior along the path.

:func:`interpolate` (methods ``linear``, ``slerp``, ``normalized``, ``cauchy``, ``spherical-cauchy``; see
:mod:`.interpolation`) and the one-dimensional prior-to-Cauchy maps it builds on (:mod:`.maps`);
:func:`discriminator_path`, the shortest path under a D-weighted image-space metric (:mod:`.discriminator`);
interpolation videos in the layout of stylegan3's ``gen_video.py`` (:mod:`.video`);
:func:`local_basis` (the right singular vectors of a Jacobian, matrix-free), :func:`curve_traversal`,
:func:`linear_traversal` and :func:`grassmann_distance` (:mod:`.local_basis`); :class:`PartialNetwork`, a
StyleGAN generator as a function from one W latent to a synthesis block's feature map, with coarse / middle
/ fine layer subsets (:mod:`.partial`).
"""

from .interpolation import GAUSSIAN_METHODS, INTERPOLATIONS, interpolate, register_interpolation
from .discriminator import PathResult, adapter_functions, digits_functions, discriminator_path, path_energy
from .maps import TAIL_FLOOR, cauchy_to_chi, cauchy_to_gaussian, chi_to_cauchy, gaussian_to_cauchy
from .local_basis import (LocalBasis, curve_traversal, grassmann_distance, linear_traversal, local_basis,
                          principal_angles)
from .partial import LAYER_SUBSETS, PartialNetwork, SynthesisLayout, resolve_block, synthesis_layout

__all__ = [
    "GAUSSIAN_METHODS", "INTERPOLATIONS", "interpolate", "register_interpolation", "TAIL_FLOOR",
    "cauchy_to_chi", "cauchy_to_gaussian", "chi_to_cauchy", "gaussian_to_cauchy", "PathResult", "adapter_functions",
    "digits_functions", "discriminator_path", "path_energy",
    "LocalBasis", "curve_traversal", "grassmann_distance", "linear_traversal", "local_basis", "principal_angles",
    "LAYER_SUBSETS", "PartialNetwork", "SynthesisLayout", "resolve_block", "synthesis_layout",
]
