"""stylegan3-hubness: hubness-prior latent sampling for stylegan3 and stylegan2-ada networks.

The engine: exact and approximate k-NN (:mod:`.knn`), hub values and statistics (:mod:`.hubness`),
selections (:mod:`.selection`), seed pools (:mod:`.pools`) and samplers (:mod:`.samplers`).
"""

from ._checks import HubnessError, ThresholdUnreachableError
from .hubness import HubnessResult, HubnessStats, compute_hubness, hub_values, hubness_stats
from .knn import KnnResult, approximate_knn, exact_knn, measure_recall, sqdist_blocks
from .pools import Pool, SeedPools, seed_latents
from .samplers import SAMPLERS, Sampler, Selection, make_sampler, register_sampler, truncate
from .selection import hubness_spectrum, select_low_quality, select_threshold, select_top, spectrum_ranks

__version__ = "0.1.0"

__all__ = [
    "HubnessError", "ThresholdUnreachableError", "HubnessResult", "HubnessStats", "compute_hubness",
    "hub_values", "hubness_stats", "KnnResult", "approximate_knn", "exact_knn", "measure_recall",
    "sqdist_blocks", "Pool", "SeedPools", "seed_latents", "SAMPLERS", "Sampler", "Selection", "make_sampler",
    "register_sampler", "truncate", "hubness_spectrum", "select_low_quality", "select_threshold", "select_top",
    "spectrum_ranks",
]
