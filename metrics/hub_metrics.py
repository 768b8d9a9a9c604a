"""calc_metrics entries of stylegan3-hubness: metrics of images whose latents a sampler chooses.

Loaded by the patched ``calc_metrics.py`` (through :func:`extensions.metrics.stylegan_hooks.install`),
which registers them in the checkout's ``metrics.metric_main``. This folder has no ``__init__.py`` on
purpose: a checkout's own ``metrics`` package must stay the one ``import metrics`` finds.

Every entry uses the sampler chosen with ``--sampler`` / ``--trunc``, or hubness with the paper's
defaults (k = 5, t = 50, pools of 10,000 W latents) when none was chosen; the result line records it.
Real-image statistics come from the checkout (and its cache, shared with the official metrics).

=====================  ===================================================================================
``fid50k_full_hub``    FID, 50,000 generated images against the full dataset (as ``fid50k_full``)
``fid2k_hub``          FID, 2,000 generated images against the full dataset (the paper's protocol)
``fid2k2k_hub``        FID, 2,000 generated images against two disjoint 2,000-image real subsets (the
                       dataset's images 0-1999 and 2000-3999), plus the two subsets against each other
                       (the paper's Table 2: ``_subset1``, ``_subset2``, ``_real_vs_real``)
``pr50k3_full_hub``    improved precision / recall, k = 3, 50,000 generated against up to 200,000 real
                       VGG16 features (as ``pr50k3_full``, in float32 rather than float16)
``dc50k5_full_hub``    density / coverage (Naeem et al. 2020), k = 5, same features and sizes
=====================  ===================================================================================
"""

from metrics import metric_main, metric_utils

from extensions.metrics.density_coverage import density_coverage
from extensions.metrics.detectors import INCEPTION_URL, VGG16_URL
from extensions.metrics.frechet import frechet_distance, frechet_distance_two_subsets, real_subsets
from extensions.metrics.precision_recall import precision_recall
from extensions.metrics.stylegan_hooks import hub_generator_stats

_FEATURES = dict(return_features=True)  # raw features before the detectors' last layer


def _hub_fid(opts, max_real, num_gen):
    url = INCEPTION_URL
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=url, detector_kwargs=_FEATURES, rel_lo=0, rel_hi=0, capture_mean_cov=True,
        max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = hub_generator_stats(opts, url, _FEATURES, rel_lo=0, rel_hi=1, capture_mean_cov=True,
                                            max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float("nan")
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)


def _vgg_features(opts, max_real, num_gen):
    real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=VGG16_URL, detector_kwargs=_FEATURES, rel_lo=0, rel_hi=0, capture_all=True,
        max_items=max_real).get_all()
    gen = hub_generator_stats(opts, VGG16_URL, _FEATURES, rel_lo=0, rel_hi=1, capture_all=True,
                              max_items=num_gen).get_all()
    return real, gen


def fid_entry(name, *, max_real, num_gen):
    """A FID entry named ``name``: ``num_gen`` generated images against ``max_real`` real (None: all)."""
    def entry(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        return {name: _hub_fid(opts, max_real=max_real, num_gen=num_gen)}
    entry.__name__ = entry.__qualname__ = name
    return entry


def fid_subsets_entry(name, *, num_real, num_gen):
    """A FID entry named ``name`` under the paper's Table 2 protocol: ``num_gen`` generated images against
    the dataset's first and second ``num_real`` images, and those two subsets against each other."""
    fields = ("subset1", "subset2", "real_vs_real")

    def entry(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        real = metric_utils.compute_feature_stats_for_dataset(
            opts=opts, detector_url=INCEPTION_URL, detector_kwargs=_FEATURES, rel_lo=0, rel_hi=0, capture_all=True,
            max_items=2 * num_real).get_all()
        real_subsets(real, num_real)  # too small a dataset stops here, before any image is generated
        mu_gen, sigma_gen = hub_generator_stats(opts, INCEPTION_URL, _FEATURES, rel_lo=0, rel_hi=1,
                                                capture_mean_cov=True, max_items=num_gen).get_mean_cov()
        if opts.rank != 0:
            return {f"{name}_{f}": float("nan") for f in fields}
        result = frechet_distance_two_subsets(real, mu_gen, sigma_gen, num_real)
        return {f"{name}_{f}": result[f] for f in fields}
    entry.__name__ = entry.__qualname__ = name
    return entry


def _manifold_entry(name, metric, fields, *, max_real, num_gen, k):
    """An entry named ``name`` reporting ``fields`` of ``metric(real, gen, k=k)`` on VGG16 features."""
    def entry(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        real, gen = _vgg_features(opts, max_real=max_real, num_gen=num_gen)
        if opts.rank != 0:
            return {f"{name}_{f}": float("nan") for f in fields}
        result = metric(real, gen, k=k, device=opts.device)
        return {f"{name}_{f}": getattr(result, f) for f in fields}
    entry.__name__ = entry.__qualname__ = name
    return entry


def pr_entry(name, *, max_real, num_gen, k):
    """An improved precision/recall entry named ``name`` with k-NN radii of size ``k``."""
    return _manifold_entry(name, precision_recall, ("precision", "recall"), max_real=max_real, num_gen=num_gen, k=k)


def dc_entry(name, *, max_real, num_gen, k):
    """A density/coverage entry named ``name`` with real k-NN radii of size ``k``."""
    return _manifold_entry(name, density_coverage, ("density", "coverage"), max_real=max_real, num_gen=num_gen, k=k)


fid50k_full_hub = metric_main.register_metric(fid_entry("fid50k_full_hub", max_real=None, num_gen=50000))
fid2k_hub = metric_main.register_metric(fid_entry("fid2k_hub", max_real=None, num_gen=2000))
fid2k2k_hub = metric_main.register_metric(fid_subsets_entry("fid2k2k_hub", num_real=2000, num_gen=2000))
pr50k3_full_hub = metric_main.register_metric(pr_entry("pr50k3_full_hub", max_real=200000, num_gen=50000, k=3))
dc50k5_full_hub = metric_main.register_metric(dc_entry("dc50k5_full_hub", max_real=200000, num_gen=50000, k=5))

#: The entries above, by name.
ENTRIES = ("fid50k_full_hub", "fid2k_hub", "fid2k2k_hub", "pr50k3_full_hub", "dc50k5_full_hub")
