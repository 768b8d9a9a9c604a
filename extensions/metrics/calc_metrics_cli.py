"""Command-line options of the patched ``calc_metrics.py``: samplers, hubness options, offline detectors.

``patches/calc_metrics.patch`` adds :func:`calc_metrics_options` to the command, calls :func:`configure`
before the metric names are validated (which also registers the hub entries) and :func:`install` in
every worker process, takes the worker's device from :func:`worker_device` and starts ``--gpus > 1``
workers with :func:`spawn`.

Failures a user can fix (an unreachable hub-value threshold, a detector that is missing offline or is
not a detector, an OSError) end the run with one line that says what to do (:func:`error_line`), as a
:class:`click.ClickException` raised in the worker; :func:`spawn` carries it out of worker processes.
Anything else keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Optional

import click
import torch

from .. import distributed
from .._checks import HubnessError, ThresholdUnreachableError
from ..stylegan.generate import KNN_BACKENDS, SAMPLER_NAMES
from . import stylegan_hooks
from .detectors import download_cache_dir, parse_detector_option
from .errors import DetectorUnavailableError, MetricError, os_error_message
from .generator_features import SamplerSpec
from .stylegan_hooks import OWN_LATENT_PREFIXES, hub_spec, make_config, official_spec

log = logging.getLogger(__name__)

_DEFAULTS = SamplerSpec()

_OPTIONS = [
    click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
                 help="Latents of every FID/KID/PR/IS metric: random (seeded pools), truncation (with --trunc), "
                      "hubness (m >= --t), hubness-lq (m <= --t-lq)  [default: the official random latents; "
                      "hub metrics: hubness]"),
    click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, metavar="PSI",
                 help="Truncation psi applied to the chosen latents (alone: --sampler truncation)"),
    click.option("--k", type=click.IntRange(min=1), default=_DEFAULTS.k, show_default=True,
                 help="k-NN list size for hub values"),
    click.option("--t", type=click.FloatRange(min=0), default=_DEFAULTS.t, show_default=True,
                 help="Hub-value threshold of --sampler hubness"),
    click.option("--top", type=click.IntRange(min=1), default=None, metavar="Q",
                 help="Hubness: take the Q largest hub values of every pool instead of m >= --t"),
    click.option("--t-lq", "t_lq", type=click.FloatRange(min=0), default=_DEFAULTS.t_lq, show_default=True,
                 help="Hub-value threshold of --sampler hubness-lq"),
    click.option("--pool-size", type=click.IntRange(min=2), default=_DEFAULTS.pool_size, show_default=True,
                 help="Latents per pool (hub values are computed within a pool)"),
    click.option("--seed", type=click.IntRange(min=0), default=_DEFAULTS.seed, show_default=True,
                 help="First seed of the pools (pool p holds the next --pool-size seeds)"),
    click.option("--max-pools", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Pools drawn at most  [default: enough for a 0.5% yield (hubness), or exactly enough]"),
    click.option("--space", type=click.Choice(["w", "z"]), default=None,
                 help="Where hub values are computed  [default: w for StyleGAN networks, z otherwise]"),
    click.option("--knn-backend", type=click.Choice(KNN_BACKENDS), default=_DEFAULTS.backend, show_default=True,
                 help="k-NN search for hub values: exact, approx (pynndescent, recall measured) or auto"),
    click.option("--include-self", is_flag=True, default=False,
                 help="Count each latent as its own neighbour (the authors' reference code)"),
    click.option("--noise-mode", type=click.Choice(["random", "const", "none"]), default=_DEFAULTS.noise_mode,
                 show_default=True, help="Synthesis noise of sampled images (the official metrics: random)"),
    click.option("--detector", "detectors", multiple=True, metavar="PATH|DIR|NAME=PATH",
                 help="Local detector pickle(s) instead of downloads: inception-2015-12-05.pkl, vgg16.pkl, a "
                      "folder holding them, or NAME=PATH (repeatable)"),
]

#: Parameter names of the options :func:`calc_metrics_options` adds.
OPTION_NAMES = ("sampler", "truncation_psi", "k", "t", "top", "t_lq", "pool_size", "seed", "max_pools", "space",
                "knn_backend", "include_self", "noise_mode", "detectors")


def calc_metrics_options(f):
    """Add the options of :data:`OPTION_NAMES` to a click command function."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def build_config(metrics, *, sampler=None, truncation_psi=1.0, k=_DEFAULTS.k, t=_DEFAULTS.t, top=None,
                 t_lq=_DEFAULTS.t_lq, pool_size=_DEFAULTS.pool_size, seed=_DEFAULTS.seed, max_pools=None,
                 space=None, knn_backend=_DEFAULTS.backend, include_self=False, noise_mode=_DEFAULTS.noise_mode,
                 detectors=()) -> dict:
    """The hook configuration for these options (see :func:`~extensions.metrics.stylegan_hooks.make_config`).

    Raises
    ------
    MetricError
        Bad options, or a sampler together with metrics that draw their own latents (PPL, equivariance).
    """
    params = dict(psi=float(truncation_psi), k=k, t=float(t), top=top, t_lq=float(t_lq), pool_size=pool_size,
                  seed=seed, max_pools=max_pools, space=space, backend=knn_backend,
                  include_self=bool(include_self), noise_mode=noise_mode)
    config = make_config(sampler, parse_detector_option(detectors), **params)
    if official_spec(config) is not None:
        own = [m for m in metrics if m.startswith(OWN_LATENT_PREFIXES)]
        if own:
            raise MetricError(f"{', '.join(own)} draw their own latents, so --sampler/--trunc cannot apply to "
                              f"them; compute them in a separate run without --sampler and --trunc")
    return config


def configure(ctx: click.Context, metrics, **options) -> dict:
    """Validate the options (a click error on bad ones), install the hooks in this process so the hub
    entries are registered before the metric names are checked, and return the configuration that
    every worker process passes to :func:`install`."""
    try:
        config = build_config(metrics, **options)
        install(config)
    except HubnessError as exc:  # MetricError and the engine's own input errors
        ctx.fail(" ".join(str(exc).split()))
    return config


def install(config: Optional[dict] = None) -> None:
    """:func:`~extensions.metrics.stylegan_hooks.install`, with ``metric_main.calc_metric`` and
    ``report_metric`` turning the failures of :func:`error_line` into one-line click errors."""
    stylegan_hooks.install(config)
    metric_main = importlib.import_module("metrics.metric_main")
    for name, metric_of in (("calc_metric", lambda metric, **_: metric),
                            ("report_metric", lambda result_dict, *_, **__: result_dict.get("metric"))):
        function = getattr(metric_main, name)
        if not getattr(function, "_one_line_errors", False):
            setattr(metric_main, name, _one_line_errors(function, metric_of))


def _one_line_errors(function, metric_of):
    """``function`` raising click errors for the failures of :func:`error_line`, prefixed with the metric
    name that ``metric_of(*args, **kwargs)`` finds in its arguments."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            line = error_line(exc)
            if line is None:
                raise
            try:
                metric = metric_of(*args, **kwargs)
            except (TypeError, AttributeError):
                metric = None
            raise click.ClickException(f"{metric}: {line}" if metric else line) from exc

    wrapper._one_line_errors = True
    return wrapper


def unreachable_advice(spec: SamplerSpec) -> str:
    """What to change on the calc_metrics command line when ``spec``'s sampler runs out of pools."""
    if spec.name == "hubness-lq":
        return "raise --t-lq, or raise --pool-size or --max-pools"
    if spec.top is not None:
        return "raise --top or --max-pools"
    return ("lower --t (to at most the largest m seen), raise --pool-size or --max-pools, or pass --top Q to take "
            "the Q largest hub values of every pool")


def error_line(exc: BaseException, config: Optional[dict] = None) -> Optional[str]:
    """One line for a failure the user can fix, or None (the error is a bug and keeps its traceback).

    Parameters
    ----------
    exc : BaseException
        ThresholdUnreachableError (the sampler's diagnosis, then the options to change), HubnessError
        (MetricError: e.g. a file that is not a detector), DetectorUnavailableError, or OSError (the real
        file, not a temporary one, and what to do).
    config : dict, optional
        The hook configuration; default the one installed in this process.
    """
    if isinstance(exc, ThresholdUnreachableError):
        config = stylegan_hooks.active_config() if config is None else config
        spec = hub_spec(config)  # the failing sampler: a hub sampler is the hub entries' one too
        text = " ".join(str(exc).split())
        library_advice = _library_advice(spec)
        if library_advice and text.endswith("; " + library_advice):
            text = text[: -len(library_advice) - 2]
        return f"{text}; {unreachable_advice(spec)}"
    if isinstance(exc, (HubnessError, DetectorUnavailableError)):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return os_error_message(exc, os.path.dirname(download_cache_dir()))
    return None


def _library_advice(spec: SamplerSpec) -> Optional[str]:
    """The advice the engine's sampler appends (in library terms), to be replaced by option names."""
    from ..samplers import make_sampler
    try:
        return make_sampler(spec.name, **spec.sampler_params()).advice()
    except (HubnessError, TypeError):
        return None


def spawn(fn, args=(), nprocs: int = 1) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs)``, where a worker's click error stays one line.

    A worker that raises :class:`click.ClickException` leaves its message behind; the parent raises it
    again (the lowest rank's) instead of the worker's traceback. Other failures propagate unchanged.
    ``fn`` (calc_metrics.py's ``subprocess_fn``) initialises the process group itself.
    """
    distributed.spawn(fn, args, nprocs, init_group=False)


def worker_device(rank: int) -> torch.device:
    """The device of calc_metrics worker ``rank``: ``cuda:rank`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", rank)
    log.warning("CUDA is not available: computing metrics on the CPU")
    return torch.device("cpu")


def process_group_backend() -> str:
    """torch.distributed backend of the ``--gpus > 1`` workers: nccl on CUDA, gloo on the CPU."""
    return distributed.backend_for("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["calc_metrics_options", "build_config", "configure", "install", "error_line", "spawn", "worker_device",
           "process_group_backend", "OPTION_NAMES"]
