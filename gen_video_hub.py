"""Render latent interpolation videos, with keyframes chosen by their hubness prior.

A superset of stylegan3's gen_video.py: its options keep their meaning (with --interp cubic and --sampler
random, the defaults, every frame is the official script's frame), --sampler hubness makes the video run
through hub latents (Liang et al., ICML 2022), --interp picks slerp, the prior-keeping Gaussian paths of
extensions.paths or discriminator-aware geodesics (which need the network's discriminator), and --strip
writes a contact sheet. Runs on CUDA when available, else on the CPU.
"""

import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the modules load: exit 130 without a traceback
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(130))

import contextlib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402

from extensions._checks import HubnessError, ThresholdUnreachableError, resolve_device  # noqa: E402
from extensions.digits import NETWORK_NAME  # noqa: E402
from extensions.paths.video import (VIDEO_METHODS, check_discriminator_options, check_method, plan_video,  # noqa: E402
                                    sampled_keyframe_seeds, strip_frames as strip_frame_indices)
from extensions.render import image_grid, save_png  # noqa: E402
from extensions.stylegan.cli import (GridType, SeedList, hubness_options, interrupts_exit,  # noqa: E402
                                     os_error_message)

#: Hub options of gen_images_hub.py that keep their meaning here (--grid and --space mean other things).
_HUB_OPTIONS = ("sampler", "k", "t", "t_lq", "pool_size", "knn_backend", "include_self", "device", "batch_size",
                "max_pools")


@click.command()
@click.option("--network", "network_pkl", default=NETWORK_NAME, metavar="PKL",
              help=f"Network pickle filename or URL [default: {NETWORK_NAME}, the embedded digits generator]")
@click.option("--seeds", type=SeedList(), required=True,
              help="List of random seeds (e.g. '0-31'): the keyframes, or the pool a hub sampler chooses from")
@click.option("--shuffle-seed", type=int, default=None, help="Random seed to use for shuffling seed order")
@click.option("--grid", type=GridType(), default="1x1", show_default=True, metavar="WxH",
              help="Grid width/height, e.g. '4x3'")
@click.option("--num-keyframes", type=int, default=None,
              help="Number of seeds to interpolate through [default: seeds / (W*H); hub samplers: the chosen "
                   "seeds / (W*H), rounded up]")
@click.option("--w-frames", type=int, default=120, show_default=True,
              help="Number of frames to interpolate between latents")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, help="Truncation psi")
@click.option("--class", "class_idx", type=int, default=None, help="Class label (conditional networks)")
@click.option("--output", type=str, default=None, metavar="FILE", help="Output .mp4 filename")
@click.option("--interp", type=click.Choice(VIDEO_METHODS), default="cubic", show_default=True,
              help="cubic/linear: scipy interp1d through the keyframes (gen_video.py); slerp, normalized, cauchy, "
                   "spherical-cauchy: piecewise paths of extensions.paths (normalized, cauchy, spherical-cauchy need "
                   "--space z); discriminator: D-aware geodesics in W (needs a training snapshot with 'D')")
@click.option("--space", "interp_space", type=click.Choice(["w", "z"]), default="w", show_default=True,
              help="Interpolate W latents, or Z latents mapped frame by frame")
@click.option("--d-strength", type=float, default=1.0, show_default=True,
              help="--interp discriminator: how strongly images D finds unrealistic lengthen the path (0: image-space "
                   "geodesic)")
@click.option("--d-iterations", type=int, default=50, show_default=True,
              help="--interp discriminator: optimiser steps per segment between keyframes")
@click.option("--strip", type=str, default=None, metavar="PNG",
              help="Also write a contact sheet of --strip-frames frames at evenly spaced t, labelled")
@click.option("--strip-frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="Frames in the --strip contact sheet")
@click.option("--stylegan3", "stylegan3", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="stylegan3 or stylegan2-ada-pytorch checkout [default: $STYLEGAN3_DIR, else importable modules]")
@hubness_options(*_HUB_OPTIONS)
def generate_video(**options):
    """Render a latent vector interpolation video, optionally through hub latents.

    Examples:

    \b
    # gen_video.py's video: a 4x2 grid of interpolations for seeds 0 through 31:
    python gen_video_hub.py --output=lerp.mp4 --trunc=1 --seeds=0-31 --grid=4x2 --network=net.pkl

    \b
    # Through the 8 largest hubs of seeds 0-9999 (embedded digits network), slerp in W, with a contact sheet:
    python gen_video_hub.py --seeds=0-9999 --sampler=hubness --t=0 --num-keyframes=8 --interp=slerp \\
        --output=hubs.mp4 --strip=hubs.png

    \b
    # Cauchy paths in Z keep every frame's latent N(0, I):
    python gen_video_hub.py --seeds=0-7 --interp=cauchy --space=z --output=cauchy.mp4

    \b
    # Discriminator-aware geodesics between the keyframes (the network pickle must hold D):
    python gen_video_hub.py --seeds=0-3 --interp=discriminator --w-frames=30 --output=geodesic.mp4
    """
    with interrupts_exit():
        try:
            render_video(**options)
        except ThresholdUnreachableError as exc:
            raise click.ClickException(" ".join(str(exc).split()).replace("raise max_pools", "raise --max-pools")) \
                from exc
        except HubnessError as exc:
            raise click.ClickException(" ".join(str(exc).split())) from exc
        except OSError as exc:
            raise click.ClickException(os_error_message(exc).replace("--outdir", "--output")) from exc


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
    removed unless the block renames it."""
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
                 d_iterations=50, **hub):
    """Validate everything cheap, load the network, choose keyframes, write the strip and the mp4."""
    if output is None and strip is None:
        raise HubnessError("nothing to write: give --output FILE.mp4 and/or --strip FILE.png")
    if w_frames < 1:
        raise HubnessError(f"--w-frames must be at least 1 frame between keyframes, got {w_frames} "
                           f"(e.g. --w-frames 120)")
    if num_keyframes is not None and num_keyframes < 2:
        raise HubnessError(f"--num-keyframes must be at least 2, got {num_keyframes}")
    check_method(interp, interp_space)
    if interp == "discriminator":
        check_discriminator_options(d_strength, d_iterations, w_frames)
    if grid == (0, 0):
        raise HubnessError("--grid auto has no meaning for a video; give WxH columns x rows (e.g. --grid 4x2)")
    grid = (1, 1) if grid is None else grid
    cells = grid[0] * grid[1]
    device = resolve_device(device)
    if output is not None:
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

    from extensions.stylegan.adapter import StyleGANAdapter, make_adapter
    from extensions.stylegan.loader import load_discriminator_of, load_network
    with contextlib.ExitStack() as stack:
        tmps = {t: stack.enter_context(temp_next_to(t, ".tmp" + t.suffix)) for t in targets}
        click.echo(f'Loading networks from "{network_pkl}"...')
        G = load_network(network_pkl, stylegan3=stylegan3, device=device)
        adapter = make_adapter(G)
        if not isinstance(adapter, StyleGANAdapter):
            raise HubnessError(f"network {network_pkl!r} has no mapping and synthesis networks; videos need a "
                               f"stylegan3 or stylegan2-ada generator")
        D = None
        if interp == "discriminator":
            D = load_discriminator_of(network_pkl, stylegan3=stylegan3, device=device)
        labels = None
        if adapter.c_dim:
            labels = adapter.labels(class_idx)
        elif class_idx is not None:
            click.echo("warn: --class ignored when running on an unconditional network")
        num = None if num_keyframes is None else num_keyframes * cells
        keyseeds, selection = sampled_keyframe_seeds(adapter, network_pkl, seeds, sampler, num=num,
                                                     truncation_psi=truncation_psi, labels=labels, progress=True,
                                                     echo=click.echo, **hub)
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


if __name__ == "__main__":
    generate_video()  # pylint: disable=no-value-for-parameter
