"""Hooks into a stylegan3 / stylegan2-ada checkout's ``metrics`` package, installed at run time.

:func:`install` (called by the patched ``calc_metrics.py`` in every worker process) makes, for this
process only:

* ``metric_utils.get_feature_detector`` load detectors through :mod:`.detectors` (local files given with
  ``--detector``, the download cache, or a download whose failure says which file to put where) and
  check that each works as a feature detector, keeping the checkout's per-(url, device) cache;
* ``metric_utils.compute_feature_stats_for_generator`` draw its latents from the chosen sampler when one
  was chosen (``--sampler`` or ``--trunc``), so every FID / KID / PR / IS metric runs under any sampler;
  without one it is the checkout's own loop, untouched;
* the hub metric entries of the project's ``metrics/hub_metrics.py`` registered in ``metric_main``;
* ``metric_main.calc_metric`` add ``sampler`` (the sampler and its parameters) to the result of every
  metric whose images came through the sampler loop, so the jsonl line records it.

The checkout's ``metrics`` package is imported by name; the project's ``metrics/`` folder has no
``__init__.py`` and so never shadows it (a regular package wins over a namespace portion wherever it is
on ``sys.path``). The entries file is loaded by path under a private module name.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Optional

import torch

from .detectors import check_detector, detector_name, detector_path, load_detector_file, register_detector_files
from .errors import MetricError
from .generator_features import SamplerSpec, dataset_labels, generator_features

log = logging.getLogger(__name__)

#: The calc_metrics entries (fid50k_full_hub, ...), in the project's top-level ``metrics/`` folder.
ENTRIES_FILE = Path(__file__).resolve().parents[2] / "metrics" / "hub_metrics.py"
_ENTRIES_MODULE = "stylegan3_hubness_metric_entries"

#: Metrics that draw their own latents instead of going through the generator feature loop.
OWN_LATENT_PREFIXES = ("ppl", "eq")


class _State:
    def __init__(self):
        self.config: Optional[dict] = None
        self.originals: dict = {}
        self.used: list = []


_state = _State()


def _metrics_modules():
    try:
        return importlib.import_module("metrics.metric_main"), importlib.import_module("metrics.metric_utils")
    except ImportError as exc:
        raise MetricError(f"the stylegan3 metrics package is not importable ({exc}); run calc_metrics.py of a "
                          f"stylegan3 or stylegan2-ada-pytorch checkout, or put the checkout on sys.path") from exc


def official_spec(config: Optional[dict]) -> Optional[SamplerSpec]:
    """Sampler of the checkout's own metrics: the one chosen, truncation for a bare ``--trunc``, else None."""
    if not config:
        return None
    params = dict(config.get("params") or {})
    name = config.get("sampler")
    if name is None:
        if params.get("psi", 1.0) == 1.0:
            return None
        name = "truncation"
    return SamplerSpec(name=name, **params)


def hub_spec(config: Optional[dict]) -> SamplerSpec:
    """Sampler of the hub entries: the one chosen, hubness (paper defaults) otherwise."""
    config = config or {}
    return SamplerSpec(name=config.get("sampler") or "hubness", **dict(config.get("params") or {}))


def make_config(sampler: Optional[str] = None, detectors: Optional[dict] = None, **params) -> dict:
    """A JSON-able configuration for :func:`install`; raises MetricError on bad options.

    Parameters
    ----------
    sampler : str, optional
        None: the checkout's metrics keep their own random latents (``psi != 1``: truncation) and the
        hub entries use hubness.
    detectors : dict, optional
        Detector name -> local file.
    **params
        :class:`~extensions.metrics.generator_features.SamplerSpec` fields (psi, k, t, top, t_lq, ...).
    """
    unknown = set(params) - set(SamplerSpec.__dataclass_fields__) - {"name"}
    if unknown or "name" in params:
        raise MetricError(f"unknown sampler option(s) {sorted(unknown | ({'name'} & set(params)))}")
    config = dict(sampler=sampler, params=params, detectors=dict(detectors or {}))
    hub_spec(config)  # validate both readings now, before any worker starts
    official_spec(config)
    return config


def install(config: Optional[dict] = None) -> None:
    """Install the hooks of the module docstring into the importable checkout's ``metrics`` package.

    Calling it again replaces the configuration; the hooks are installed once per process.
    """
    metric_main, metric_utils = _metrics_modules()
    config = config or {}
    config = make_config(config.get("sampler"), config.get("detectors"), **dict(config.get("params") or {}))
    register_detector_files(config["detectors"])
    _state.config = config
    if not _state.originals:
        _state.originals = dict(get_feature_detector=metric_utils.get_feature_detector,
                                compute_feature_stats_for_generator=metric_utils.compute_feature_stats_for_generator,
                                calc_metric=metric_main.calc_metric)
        metric_utils.get_feature_detector = get_feature_detector
        metric_utils.compute_feature_stats_for_generator = compute_feature_stats_for_generator
        metric_main.calc_metric = calc_metric
    load_entries()
    spec = official_spec(config)
    log.info("metrics: %s; hub entries: %s", "official latents" if spec is None else spec.describe(),
             hub_spec(config).describe())


def uninstall() -> None:
    """Restore the checkout's functions (the registered hub entries stay)."""
    if not _state.originals:
        return
    metric_main, metric_utils = _metrics_modules()
    metric_utils.get_feature_detector = _state.originals["get_feature_detector"]
    metric_utils.compute_feature_stats_for_generator = _state.originals["compute_feature_stats_for_generator"]
    metric_main.calc_metric = _state.originals["calc_metric"]
    _state.originals, _state.config = {}, None


def load_entries():
    """Register the hub metric entries (``metrics/hub_metrics.py``) in the checkout's ``metric_main``."""
    if _ENTRIES_MODULE in sys.modules:
        return sys.modules[_ENTRIES_MODULE]
    if not ENTRIES_FILE.is_file():
        raise MetricError(f"the hub metric entries are missing: {ENTRIES_FILE} does not exist; install "
                          f"stylegan3-hubness from a clone of its repository (pip install -e .)")
    spec = importlib.util.spec_from_file_location(_ENTRIES_MODULE, ENTRIES_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_ENTRIES_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_ENTRIES_MODULE]
        raise
    return module


# --------------------------------------------------------------------------------------------- the hooks

def get_feature_detector(url, device=torch.device("cpu"), num_gpus=1, rank=0, verbose=False):
    """``metric_utils.get_feature_detector`` through :mod:`.detectors`: a local file or a download, loaded
    and checked (:func:`~extensions.metrics.detectors.check_detector`); MetricError names a bad file."""
    _, metric_utils = _metrics_modules()
    cache = metric_utils._feature_detector_cache
    key = (url, device)
    if key not in cache:
        leader = rank == 0
        if not leader and num_gpus > 1:
            torch.distributed.barrier()  # the leader downloads first
        path = detector_path(url, verbose=verbose and leader)
        detector = load_detector_file(path, detector_name(url)).to(device)
        check_detector(detector, path, url, device)
        cache[key] = detector
        if leader and num_gpus > 1:
            torch.distributed.barrier()
    return cache[key]


def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
                                        batch_gen=None, **stats_kwargs):
    """``metric_utils.compute_feature_stats_for_generator`` under the chosen sampler, if any."""
    spec = official_spec(_state.config)
    if spec is None:
        return _state.originals["compute_feature_stats_for_generator"](
            opts, detector_url, detector_kwargs, rel_lo=rel_lo, rel_hi=rel_hi, batch_size=batch_size,
            batch_gen=batch_gen, **stats_kwargs)
    return feature_stats_for_sampler(opts, spec, detector_url, detector_kwargs, rel_lo=rel_lo, rel_hi=rel_hi,
                                     batch_size=batch_size, batch_gen=batch_gen, **stats_kwargs)


def calc_metric(metric, **kwargs):
    """``metric_main.calc_metric``, its result recording the sampler its images came from."""
    start = len(_state.used)
    result = _state.originals["calc_metric"](metric, **kwargs)
    used = []
    for described in _state.used[start:]:
        if described not in used:
            used.append(described)
    del _state.used[start:]
    if used:
        result["sampler"] = used[0] if len(used) == 1 else used
    return result


# ------------------------------------------------------------------------------------ used by the entries

def feature_stats_for_sampler(opts, spec: SamplerSpec, detector_url, detector_kwargs, *, rel_lo=0, rel_hi=1,
                              batch_size=64, batch_gen=None, jit=False, **stats_kwargs):
    """Generator features under ``spec``, in the checkout's ``FeatureStats`` (``max_items`` images).

    Same arguments as the checkout's ``compute_feature_stats_for_generator`` (stylegan2-ada's ``jit``
    is accepted and ignored).
    """
    _, metric_utils = _metrics_modules()
    stats = metric_utils.FeatureStats(**stats_kwargs)
    if stats.max_items is None:
        raise MetricError("the generator feature loop needs max_items (the number of images)")
    progress = opts.progress.sub(tag="generator features", num_items=stats.max_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = metric_utils.get_feature_detector(url=detector_url, device=opts.device, num_gpus=opts.num_gpus,
                                                 rank=opts.rank, verbose=progress.verbose)
    labels = None
    if getattr(opts.G, "c_dim", 0):
        import dnnlib
        labels = dataset_labels(dnnlib.util.construct_class_by_name(**opts.dataset_kwargs))
    result = generator_features(opts.G, detector, stats.max_items, spec=spec, detector_kwargs=detector_kwargs,
                                G_kwargs=opts.G_kwargs, labels=labels, batch_size=batch_size, batch_gen=batch_gen,
                                sink=stats, num_gpus=opts.num_gpus, rank=opts.rank, device=opts.device,
                                progress=progress.update)
    _state.used.append(result.sampler)
    return stats


def hub_generator_stats(opts, detector_url, detector_kwargs, **kwargs):
    """Generator features for a hub entry: the chosen sampler, or hubness with the paper's defaults."""
    return feature_stats_for_sampler(opts, hub_spec(_state.config), detector_url, detector_kwargs, **kwargs)


def active_config() -> Optional[dict]:
    """The configuration :func:`install` was given in this process (None before)."""
    return _state.config

