"""Quality metrics of generated images under any sampler.

Math (feature sets or statistics in, numbers out), reusing the engine's blocked distances and exact
k-NN: :mod:`.frechet` (FID), :mod:`.precision_recall` (improved precision/recall),
:mod:`.density_coverage` (density and coverage), on top of :mod:`.manifold` (k-NN radii and ball
membership). :mod:`.generator_features` feeds a detector with images whose latents a sampler chooses;
:mod:`.detectors` finds detector pickles offline. :mod:`.stylegan_hooks` and :mod:`.calc_metrics_cli`
connect all of it to a stylegan3 checkout's ``calc_metrics.py`` (see ``patches/calc_metrics.patch``).
"""

from .density_coverage import DensityCoverage, density_coverage
from .detectors import INCEPTION_URL, VGG16_URL, open_detector, parse_detector_option, register_detector_files
from .errors import DetectorUnavailableError, MetricError
from .frechet import frechet_distance, frechet_distance_features, mean_cov
from .generator_features import GeneratorFeatures, SamplerSpec, dataset_labels, generator_features
from .manifold import BallCounts, ball_counts, knn_radii
from .precision_recall import PrecisionRecall, precision_recall

__all__ = [
    "DensityCoverage", "density_coverage", "INCEPTION_URL", "VGG16_URL", "open_detector", "parse_detector_option",
    "register_detector_files", "DetectorUnavailableError", "MetricError", "frechet_distance",
    "frechet_distance_features", "mean_cov", "GeneratorFeatures", "SamplerSpec", "dataset_labels",
    "generator_features", "BallCounts", "ball_counts", "knn_radii", "PrecisionRecall", "precision_recall",
]
