"""Command-line options shared by ``gen_images_hub.py`` and the patched ``gen_images.py``.

:func:`add_hubness_options` adds ``--sampler`` and the hubness options to a click command;
:func:`with_hubness_sampling` also routes a command to the extension when any of them is given and
otherwise runs the command unchanged (the official ``gen_images.py`` behaviour); :func:`run` calls
:func:`extensions.stylegan.generate.generate_images` and turns bad input into a one-line click error.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import sys
from typing import List, Optional, Tuple

import click
import numpy as np

from .._checks import HubnessError, ThresholdUnreachableError
from ..distributed import is_active, rank_device, spawn
from ..pools import MAX_SEED
from .checkout import imported_checkout
from .generate import KNN_BACKENDS, SAMPLER_NAMES, follow_sampling, generate_images, parse_grid

#: Parameter names of the options :func:`add_hubness_options` adds.
HUB_PARAMS = ("sampler", "num", "k", "t", "t_lq", "pool_size", "space", "knn_backend", "include_self", "device",
              "batch_size", "max_pools", "grid", "clean", "gpus")
#: Seeds one command line may name; far more than any pool fits in memory (see extensions.pools).
MAX_SEEDS = 10_000_000


def parse_seeds(text: str, limit: int = MAX_SEEDS, noun: str = "seed") -> np.ndarray:
    """``'0,1,4-6'`` -> ``[0, 1, 4, 5, 6]`` (int64): comma-separated seeds (or other indices, ``noun`` in
    errors) and inclusive ranges.

    The count is checked before anything is allocated, so ``0-99999999999`` fails at once.
    """
    ranges = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if match is None:
            raise ValueError(f"{part!r} is neither a {noun} nor a range like 4-6")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"range {part!r} is empty; write it low-high")
        if hi > MAX_SEED:
            raise ValueError(f"seed {hi} is out of range: seeds are 0..{MAX_SEED} (numpy RandomState)")
        ranges.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if count > limit:
        raise ValueError(f"{text!r} names {count:,} seeds, more than the {limit:,} one pool can hold; use fewer "
                         f"seeds, e.g. --seeds 0-9999 --num N, which draws further pools as needed")
    return np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in ranges])


class SeedList(click.ParamType):
    """Comma-separated seeds and ranges, e.g. ``0,1,4-6``."""

    name = "seeds"

    def __init__(self, noun: str = "seed"):
        self.noun = noun

    def convert(self, value, param, ctx):
        if isinstance(value, (list, np.ndarray)):
            return value
        try:
            return parse_seeds(value, noun=self.noun)
        except ValueError as exc:
            self.fail(f"{exc} (e.g. '0,1,4-6')", param, ctx)


class Vec2(click.ParamType):
    """Two comma-separated numbers, e.g. ``0.3,1``."""

    name = "vec2"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            return float(parts[0]), float(parts[1])
        except ValueError:
            self.fail(f"{value!r} is not two comma-separated numbers (e.g. '0.3,1')", param, ctx)


class GridType(click.ParamType):
    """``WxH`` (columns x rows), or ``auto``."""

    name = "grid"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        try:
            return parse_grid(value)
        except HubnessError as exc:
            self.fail(str(exc), param, ctx)


_OPTIONS = [
    click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="random", show_default=True,
                 help="How latents are chosen: random = the seeds in order (gen_images.py); truncation = the "
                      "same with --trunc; hubness = hub value m >= --t, largest first; hubness-lq = m <= --t-lq"),
    click.option("--num", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Images to render [default: all that --seeds yield]; more than the seeds yield draws "
                      "further seeds after the largest one"),
    click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="k-NN list size for hub values"),
    click.option("--t", type=click.FloatRange(min=0), default=50, show_default=True,
                 help="Hub-value threshold of --sampler hubness (--t 0: the largest m, as many latents as asked for)"),
    click.option("--t-lq", "t_lq", type=click.FloatRange(min=0), default=1, show_default=True,
                 help="Hub-value threshold of --sampler hubness-lq"),
    click.option("--pool-size", type=click.IntRange(min=2), default=None, metavar="N",
                 help="Latents per further pool [default: the number of --seeds]"),
    click.option("--space", type=click.Choice(["w", "z"]), default=None,
                 help="Where hub values are computed [default: w for StyleGAN networks, z otherwise]"),
    click.option("--knn-backend", type=click.Choice(KNN_BACKENDS), default="exact", show_default=True,
                 help="k-NN search: exact, approx (pynndescent, recall measured) or auto"),
    click.option("--include-self", is_flag=True, default=False,
                 help="Count each latent as its own neighbour (the authors' reference code)"),
    click.option("--device", type=str, default=None, help="torch device [default: cuda if available, else cpu]"),
    click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
                 help="Latents per mapping batch"),
    click.option("--max-pools", type=click.IntRange(min=1), default=50, show_default=True,
                 help="Pools drawn at most before giving up"),
    click.option("--grid", type=GridType(), is_flag=False, flag_value="auto", default=None, metavar="[WxH]",
                 help="Also write grid.png of the chosen images: W columns x H rows (gen_video.py's --grid), "
                      "or a near-square layout when no value is given"),
    click.option("--clean", is_flag=True, default=False,
                 help="Remove images of earlier runs in --outdir that this run does not produce or vouch for "
                      "[default: stop and name them]"),
    click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, metavar="INT",
                 help="Processes sharing the hub-value work, one per GPU (rank r on cuda:r; with --device cpu or "
                      "without CUDA, all on the CPU); rank 0 renders and writes"),
]


def _use_studiogan(ctx, param, value):
    if value is not None:
        from ..generators.studiogan import set_checkout
        set_checkout(value)
    return value


#: ``--studiogan DIR``: the StudioGAN checkout for StudioGAN runs; it sets ``$STUDIOGAN_DIR`` (eagerly, before
#: the network loads) and passes no parameter to the command.
studiogan_option = click.option("--studiogan", type=click.Path(file_okay=False), default=None, metavar="DIR",
                                expose_value=False, is_eager=True, callback=_use_studiogan,
                                help="PyTorch-StudioGAN checkout, for --network CONFIG.yaml:CHECKPOINT.pth or a "
                                     "StudioGAN run folder [default: $STUDIOGAN_DIR]")


def add_hubness_options(f, names=None):
    """Add ``--sampler`` and the hubness options (parameters :data:`HUB_PARAMS`, or those of them in
    ``names``) to a click command function, and ``--studiogan`` (which passes no parameter)."""
    for name, option in reversed(list(zip(HUB_PARAMS, _OPTIONS))):
        if names is None or name in names:
            f = option(f)
    return studiogan_option(f)


def hubness_options(*names):
    """Decorator form of :func:`add_hubness_options` for the options ``names`` (parameter names)."""
    unknown = set(names) - set(HUB_PARAMS)
    if unknown:
        raise ValueError(f"not hubness options: {sorted(unknown)}")
    return lambda f: add_hubness_options(f, names)


def run(network_pkl: str, seeds: List[int], truncation_psi: float = 1, class_idx: Optional[int] = None,
        noise_mode: str = "const", translate: Tuple[float, float] = (0, 0), rotate: float = 0, outdir: str = "out",
        stylegan3: Optional[str] = None, gpus: int = 1, **hub):
    """Run :func:`~extensions.stylegan.generate.generate_images` from parsed options, with progress bars.

    Bad input and unreachable thresholds become :class:`click.ClickException` (one line, exit status 1);
    an interrupt (Ctrl-C or SIGTERM) exits with 130 / 143, leaving only complete files. ``gpus > 1`` runs
    ``gpus`` processes (:func:`extensions.distributed.spawn`) that share the hub values of every pool;
    rank 0 renders and writes.
    """
    options = dict(network_pkl=network_pkl, seeds=seeds, truncation_psi=truncation_psi, class_idx=class_idx,
                   noise_mode=noise_mode, translate=translate, rotate=rotate, outdir=outdir, stylegan3=stylegan3,
                   **hub)
    return in_processes(run_rank, options, gpus)


def in_processes(run_rank, options: dict, gpus: int, option: str = "--outdir"):
    """``run_rank(0, options)`` in this process, or with ``gpus > 1`` ``run_rank(r, options)`` in ``gpus``
    processes (:func:`extensions.distributed.spawn`, rank r on its own device), whose one-line errors stay
    one line; returns rank 0's result when it runs here."""
    if gpus == 1:
        return run_rank(0, options)
    with one_line_errors(option):
        rank_device(gpus - 1, options.get("device"))  # enough GPUs, before any process starts
        spawn(run_rank, args=(options,), nprocs=gpus, device=options.get("device"))
    return None


def run_rank(rank: int, options: dict):
    """Rank ``rank``'s part of :func:`run`: rank 0 generates the images; the others draw the same pools and
    share the hub-value work (:func:`~extensions.stylegan.generate.follow_sampling`), writing nothing."""
    options = dict(options)
    hub_sampler = options.get("sampler") == "hubness"
    with one_line_errors():
        try:
            if rank == 0:
                if is_active():  # a run of several processes: rank 0 on its own device
                    options["device"] = rank_device(0, options.get("device"))
                network = options.pop("network_pkl")
                seeds = options.pop("seeds")
                outdir = options.pop("outdir")
                return generate_images(network, seeds, outdir, progress=True, echo=click.echo, **options)
            options["device"] = rank_device(rank, options.get("device"))
            for name in ("outdir", "translate", "rotate", "grid", "clean"):
                options.pop(name, None)
            return follow_sampling(options.pop("network_pkl"), options.pop("seeds"), **options)
        except ThresholdUnreachableError as exc:
            if not hub_sampler:
                raise
            raise ThresholdUnreachableError(f"{exc} (--t 0 --num {options.get('num') or 64})") from exc


@contextlib.contextmanager
def one_line_errors(option: str = "--outdir"):
    """Inside the block, bad input and unreachable thresholds become one-line click errors (exit status 1),
    OSErrors name their file (and ``option`` as the way out), Ctrl-C exits 130 and SIGTERM 143 (see
    :class:`interrupts_exit`)."""
    with interrupts_exit():
        try:
            yield
        except (HubnessError, ThresholdUnreachableError) as exc:
            text = " ".join(str(exc).split()).replace("raise max_pools", "raise --max-pools")
            raise click.ClickException(text) from exc
        except OSError as exc:  # the disk is full, a file cannot be replaced, ...
            raise click.ClickException(os_error_message(exc, option)) from exc


def os_error_message(exc: OSError, option: str = "--outdir") -> str:
    """One line naming the file and what to do."""
    what = exc.strerror or type(exc).__name__
    where = f"cannot write {exc.filename!r}: " if exc.filename else ""
    return f"{where}{what}; free space or fix permissions, or choose another {option}"


class interrupts_exit:
    """Ctrl-C exits with status 130 and SIGTERM with 143 (the shell's conventions) and one line, after the
    ``finally`` blocks and context managers of the run have cleaned up."""

    def __enter__(self):
        self._saved = {}
        try:
            self._saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
            self._saved[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        except (ValueError, OSError):  # not the main thread: keep the handlers
            pass
        return self

    @staticmethod
    def _on_term(signum, frame):
        raise _Terminated()

    def __exit__(self, exc_type, exc, tb):
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            code = 143 if issubclass(exc_type, _Terminated) else 130
            click.echo("Interrupted: the output folder holds complete files only; run the command again to finish",
                       err=True)
            sys.exit(code)
        return False


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C."""


def with_hubness_sampling(f):
    """Decorator for ``gen_images.py``'s command function: add the hubness options; when any is given,
    render through :func:`run`, else call ``f`` unchanged."""

    @functools.wraps(f)
    def wrapper(**kwargs):
        hub = {name: kwargs.pop(name) for name in HUB_PARAMS}
        ctx = click.get_current_context()
        given = [name for name in HUB_PARAMS
                 if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
        if not given:
            return f(**kwargs)
        # The script's own checkout, already imported, comes before $STYLEGAN3_DIR.
        return run(**kwargs, **hub, stylegan3=imported_checkout())

    return add_hubness_options(wrapper)
