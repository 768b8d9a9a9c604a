"""Command-line options and runner shared by ``gen_video_hub.py`` and the patched ``gen_video.py``.

:func:`video_options` adds ``--interp``, ``--space``, the discriminator-path options, ``--strip``,
``--class``, ``--stylegan3`` and the hubness options of ``gen_images_hub.py`` (those that keep their meaning
here) to a click command that has ``gen_video.py``'s own options; :func:`run` renders the video with
one-line errors; :func:`with_hubness_video` routes ``gen_video.py``'s command to :func:`run` when any of the
added options is given, and otherwise runs it unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import tempfile
from pathlib import Path

import click

from .._checks import HubnessError, resolve_device
from ..render import image_grid, save_png
from ..stylegan.checkout import imported_checkout
from ..stylegan.cli import hubness_options, in_processes, one_line_errors
from .video import (VIDEO_METHODS, check_discriminator_options, check_method, check_video_space, plan_video,
                    sampled_keyframe_seeds, strip_frames as strip_frame_indices)

#: Hub options of gen_images_hub.py that keep their meaning here (--grid and --space mean other things).
HUB_OPTIONS = ("sampler", "k", "t", "t_lq", "pool_size", "knn_backend", "include_self", "device", "batch_size",
               "max_pools", "gpus")
#: Parameter names of the options :func:`video_options` adds to gen_video.py's own.
VIDEO_PARAMS = ("class_idx", "interp", "interp_space", "d_strength", "d_iterations", "strip", "strip_frames",
                "stylegan3") + HUB_OPTIONS

_OPTIONS = [
    click.option("--class", "class_idx", type=int, default=None, help="Class label (conditional networks)"),
    click.option("--interp", type=click.Choice(VIDEO_METHODS), default="cubic", show_default=True,
                 help="cubic/linear: scipy interp1d through the keyframes (gen_video.py); slerp, normalized, cauchy, "
                      "spherical-cauchy: piecewise paths of extensions.paths (normalized, cauchy, spherical-cauchy need "
                      "--space z; not for BigGAN's truncated latents); discriminator: D-aware geodesics in W (needs a "
                      "StyleGAN training snapshot with 'D')"),
    click.option("--space", "interp_space", type=click.Choice(["w", "z"]), default=None,
                 help="Interpolate W latents, or Z latents mapped frame by frame [default: w; generators without a "
                      "mapping network (BigGAN, module:callable): z, the only choice]"),
    click.option("--d-strength", type=float, default=1.0, show_default=True,
                 help="--interp discriminator: how strongly images D finds unrealistic lengthen the path (0: image-space "
                      "geodesic)"),
    click.option("--d-iterations", type=int, default=50, show_default=True,
                 help="--interp discriminator: optimiser steps per segment between keyframes"),
    click.option("--strip", type=str, default=None, metavar="PNG",
                 help="Also write a contact sheet of --strip-frames frames at evenly spaced t, labelled"),
    click.option("--strip-frames", type=click.IntRange(min=1), default=8, show_default=True,
                 help="Frames in the --strip contact sheet"),
    click.option("--stylegan3", "stylegan3", type=click.Path(file_okay=False), default=None, metavar="DIR",
                 help="stylegan3 or stylegan2-ada-pytorch checkout [default: $STYLEGAN3_DIR, else importable modules]"),
]


def video_options(f):
    """Add the options of :data:`VIDEO_PARAMS` to a click command function."""
    f = hubness_options(*HUB_OPTIONS)(f)
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def run(gpus: int = 1, **options) -> None:
    """Render a video from parsed options: bad input and unreachable thresholds become one-line click errors,
    Ctrl-C exits 130 and SIGTERM 143, and no partial file is left. ``gpus > 1`` runs ``gpus`` processes
    (:func:`extensions.distributed.spawn`) that share the hub values of the keyframe pools; rank 0 renders
    and writes."""
    in_processes(_run_rank, options, gpus, "--output")


def _run_rank(rank: int, options: dict) -> None:
    from ..distributed import is_active, rank_device
    if is_active():  # a run of several processes: each rank on its own device
        options = dict(options, device=rank_device(rank, options.get("device")))
    with one_line_errors("--output"):
        render_video(**options, follower=rank > 0)


def with_hubness_video(f):
    """Decorator for ``gen_video.py``'s command function: add :func:`video_options`; when any of them is
    given, render through :func:`run`, else call ``f`` unchanged."""

    @functools.wraps(f)
    def wrapper(**kwargs):
        extra = {name: kwargs.pop(name) for name in VIDEO_PARAMS}
        ctx = click.get_current_context()
        given = [name for name in VIDEO_PARAMS
                 if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
        if not given:
            return f(**kwargs)
        if extra["stylegan3"] is None:  # the script's own checkout, already imported, comes first
            extra["stylegan3"] = imported_checkout()
        return run(**kwargs, **extra)

    return video_options(wrapper)


def check_ffmpeg() -> None:
    """Raise HubnessError unless imageio can run an ffmpeg executable."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise HubnessError(f"writing mp4 needs imageio and ffmpeg ({exc.__class__.__name__}: {exc}); "
                           f"pip install imageio imageio-ffmpeg") from None
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise HubnessError(f"ffmpeg {exe!r} is not an executable file; pip install imageio-ffmpeg or fix "
                           f"IMAGEIO_FFMPEG_EXE")


@contextlib.contextmanager
def temp_next_to(path: Path, suffix: str):
    """A temporary file name next to ``path`` (created now, so an unwritable folder fails before any work);
    removed unless the block renames it. Temporary files a killed run left for ``path`` are removed first."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}"):
            with contextlib.suppress(OSError):
                stale.unlink()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def render_video(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi, class_idx,
                 output, interp, interp_space, strip, strip_frames, stylegan3, sampler, device, d_strength=1.0,
                 d_iterations=50, follower=False, **hub):
    """Validate everything cheap, load the network, choose keyframes, write the strip and the mp4.

    ``follower``: a rank other than 0 of a multi-process run, which validates and chooses the keyframes as
    rank 0 does (sharing their hub values), then stops: it prints, loads and writes nothing else.
    """
    if output is None and strip is None:
        raise HubnessError("nothing to write: give --output FILE.mp4 and/or --strip FILE.png")
    if w_frames < 1:
        raise HubnessError(f"--w-frames must be at least 1 frame between keyframes, got {w_frames} "
                           f"(e.g. --w-frames 120)")
    if num_keyframes is not None and num_keyframes < 2:
        raise HubnessError(f"--num-keyframes must be at least 2, got {num_keyframes}")
    if interp_space is not None:  # else the generator's default space, known once it loads
        check_method(interp, interp_space)
    if interp == "discriminator":
        check_discriminator_options(d_strength, d_iterations, w_frames)
    if grid == (0, 0):
        raise HubnessError("--grid auto has no meaning for a video; give WxH columns x rows (e.g. --grid 4x2)")
    grid = (1, 1) if grid is None else grid
    cells = grid[0] * grid[1]
    device = resolve_device(device)
    if output is not None and not follower:
        check_ffmpeg()
    targets = [Path(p) for p in (output, strip) if p is not None]
    for target in targets:
        if target.is_dir():
            raise HubnessError(f"{str(target)!r} is a folder; give a file name")
        if not target.parent.is_dir():
            raise HubnessError(f"the folder of {str(target)!r} does not exist; create it or choose another path")
    if sampler in ("random", "truncation"):
        # As gen_video.py, before anything loads.
        from extensions.paths.video import keyframe_seeds
        keyframe_seeds(seeds, grid, num_keyframes, shuffle_seed)

    from extensions.stylegan.adapter import make_adapter
    from extensions.stylegan.loader import load_discriminator_of, load_network, reading_once
    say = (lambda text: None) if follower else click.echo
    if follower:
        from extensions.stylegan.generate import HUB_SAMPLERS
        if sampler not in HUB_SAMPLERS:  # no hub values to share
            return
    with contextlib.ExitStack() as stack:
        tmps = {} if follower else {t: stack.enter_context(temp_next_to(t, ".tmp" + t.suffix)) for t in targets}
        say(f'Loading networks from "{network_pkl}"...')
        with reading_once():  # a training snapshot gives G and D in one read
            G = load_network(network_pkl, stylegan3=stylegan3, device=device)
            adapter = make_adapter(G)
            interp_space = check_video_space(adapter, interp, interp_space, truncation_psi, network_pkl)
            D = None
            if interp == "discriminator" and not follower:
                D = load_discriminator_of(network_pkl, stylegan3=stylegan3, device=device)
        labels = None
        if adapter.c_dim:
            labels = adapter.labels(class_idx)
        elif class_idx is not None:
            say("warn: --class ignored when running on an unconditional network")
        num = None if num_keyframes is None else num_keyframes * cells
        keyseeds, selection = sampled_keyframe_seeds(adapter, network_pkl, seeds, sampler, num=num,
                                                     truncation_psi=truncation_psi, labels=labels,
                                                     progress=not follower, echo=say, **hub)
        if follower:
            return
        if selection is not None:
            if num_keyframes is None:
                num_keyframes = max(2, -(-len(keyseeds) // cells))
            ms = ", ".join(f"{int(s)} (m {int(m)})" for s, m in zip(keyseeds[:8], selection.m[:8]))
            click.echo(f"{sampler}: keyframe seeds {ms}{', ...' if len(keyseeds) > 8 else ''}")
        with _segment_bar(interp == "discriminator") as progress:
            plan = plan_video(G, keyseeds, network=network_pkl, grid=grid, num_keyframes=num_keyframes,
                              shuffle_seed=shuffle_seed, w_frames=w_frames, method=interp, space=interp_space,
                              truncation_psi=truncation_psi, labels=labels, device=device, discriminator=D,
                              d_strength=d_strength, d_iterations=d_iterations, progress=progress)
        if strip is not None:
            picks = strip_frame_indices(plan.num_frames, strip_frames)
            sheet = image_grid(list(plan.frames(f for f, _ in picks)), cols=len(picks), gap=2,
                               labels=[f"t={t:g}" for _, t in picks])
            save_png(sheet, tmps[Path(strip)])
        if output is not None:
            _write_mp4(plan, tmps[Path(output)])
        mask = os.umask(0)
        os.umask(mask)
        for target, tmp in tmps.items():
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the files the usual permissions
            os.replace(tmp, target)
    for target in targets:
        click.echo(f"wrote {str(target)!r}" + (f" ({plan.num_frames} frames)" if target.suffix != ".png" else ""))


@contextlib.contextmanager
def _segment_bar(enabled: bool):
    """A ``progress(done, total)`` callback drawing a bar over the optimised path segments (None if disabled)."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="paths", unit="segment", dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _write_mp4(plan, tmp: Path) -> None:
    import imageio
    from tqdm.auto import tqdm
    writer = imageio.get_writer(str(tmp), mode="I", fps=60, codec="libx264", bitrate="12M")
    try:
        for frame in tqdm(plan.frames(), total=plan.num_frames, desc="video", unit="frame", dynamic_ncols=True):
            writer.append_data(frame)
    finally:
        writer.close()
