"""Command-line options and runner shared by ``gen_video_hub.py`` and the patched ``gen_video.py``.

:func:`video_options` adds ``--interp``, ``--space``, the discriminator-path options, ``--strip``,
``--class``, ``--stylegan3`` and the hubness options of ``gen_images_hub.py`` (those that keep their meaning
here) to a click command that has ``gen_video.py``'s own options; :func:`run` renders the video with
one-line errors (:func:`write_video` checks ffmpeg's exit status and the frames of the file it wrote; the
video and the strip are renamed into place together, see :func:`extensions.render.atomic_files`); :func:`with_hubness_video` routes ``gen_video.py``'s command to :func:`run` when any of the
added options is given, and otherwise runs it unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Optional

import click
import numpy as np

from .._checks import HubnessError, check_truncation_psi, resolve_device
from ..render import atomic_files, created_folder, image_grid, remove_stale_temps, to_pil
from ..stylegan.checkout import imported_checkout
from ..stylegan.cli import hubness_options, in_processes, one_line_errors
from .video import (MAX_SHUFFLE_SEED, VIDEO_METHODS, check_discriminator_options, check_method, check_video_size,
                    check_video_space, plan_video, sampled_keyframe_seeds, strip_frames as strip_frame_indices)

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


#: Containers that hold the video this command writes (H.264 from libx264, yuv420p): the --output extension ->
#: ffmpeg's muxer. Others are refused (.webm holds VP8/VP9/AV1 only; .gif and .png are images).
VIDEO_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def check_ffmpeg() -> None:
    """Raise HubnessError unless imageio-ffmpeg can name an executable ffmpeg."""
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise HubnessError(f"writing a video needs imageio-ffmpeg and its ffmpeg ({exc.__class__.__name__}: {exc}); "
                           f"pip install imageio-ffmpeg") from None
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise HubnessError(f"ffmpeg {exe!r} is not an executable file; pip install imageio-ffmpeg or fix "
                           f"IMAGEIO_FFMPEG_EXE")


def check_output_names(output: Optional[str], strip: Optional[str]) -> None:
    """Refuse an --output and a --strip that name one file, folders (or paths through a file), a video extension
    no container for H.264 has, and a --strip that is not a .png (checked before any work starts)."""
    if output is not None and strip is not None and same_file(output, strip):
        raise HubnessError(f"--output {output!r} and --strip {strip!r} name the same file; give the video and the "
                           f"contact sheet different names (e.g. --output video.mp4 --strip strip.png)")
    for path, option in ((output, "--output"), (strip, "--strip")):
        if path is not None:
            check_output_folder(Path(path), option)
    *most, last = VIDEO_CONTAINERS
    accepted = f"{', '.join(most)} or {last}"
    if output is not None and Path(output).suffix.lower() not in VIDEO_CONTAINERS:
        suffix = Path(output).suffix
        what = f"a {suffix} file" if suffix else "a name without an extension"
        raise HubnessError(f"--output {output!r}: {what} cannot hold the H.264 video this command writes; give a "
                           f"name ending in {accepted} (e.g. --output video.mp4)")
    if strip is not None and Path(strip).suffix.lower() != ".png":
        raise HubnessError(f"--strip {strip!r}: the contact sheet is a PNG image; give a name ending in .png "
                           f"(e.g. --strip strip.png)")


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same path once symbolic links are resolved (also for files
    that do not exist yet), or hard links of one existing file."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_output_folder(path: Path, option: str) -> None:
    """Refuse ``path`` when it is a folder, or when the nearest existing folder on its way is a file."""
    if path.is_dir():
        raise HubnessError(f"{option} {str(path)!r} is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise HubnessError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a folder; choose another path")


def render_video(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi, class_idx,
                 output, interp, interp_space, strip, strip_frames, stylegan3, sampler, device, d_strength=1.0,
                 d_iterations=50, follower=False, **hub):
    """Validate everything cheap, load the network, choose keyframes, write the strip and the mp4.

    ``follower``: a rank other than 0 of a multi-process run, which validates and chooses the keyframes as
    rank 0 does (sharing their hub values), then stops: it prints, loads and writes nothing else.
    """
    if output is None and strip is None:
        raise HubnessError("nothing to write: give --output FILE.mp4 and/or --strip FILE.png")
    check_output_names(output, strip)
    truncation_psi = check_truncation_psi(truncation_psi)
    if shuffle_seed is not None and not 0 <= shuffle_seed <= MAX_SHUFFLE_SEED:
        raise HubnessError(f"--shuffle-seed must be an integer in 0..{MAX_SHUFFLE_SEED} (numpy RandomState), got "
                           f"{shuffle_seed}")
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
    if num_keyframes is not None:
        check_video_size(num_keyframes, cells, w_frames)
    if sampler in ("random", "truncation"):
        # As gen_video.py, before anything loads.
        from extensions.paths.video import keyframe_seeds
        check_video_size(len(keyframe_seeds(seeds, grid, num_keyframes, shuffle_seed)) // cells, cells, w_frames)

    from extensions.stylegan.adapter import make_adapter
    from extensions.stylegan.loader import load_discriminator_of, load_network, reading_once
    say = (lambda text: None) if follower else click.echo
    if follower:
        from extensions.stylegan.generate import HUB_SAMPLERS
        if sampler not in HUB_SAMPLERS:  # no hub values to share
            return
    with contextlib.ExitStack() as stack:
        tmps = {}
        if not follower:
            # Missing folders are made now (and removed again if the run fails), so that an unwritable place fails
            # before any work; temporary files of killed runs go first; the outputs are written to hidden
            # temporary files next to them and renamed into place together once all are complete.
            for folder in dict.fromkeys(t.parent for t in targets):
                stack.enter_context(created_folder(folder))
                remove_stale_temps(folder)
            tmps = stack.enter_context(atomic_files(targets))
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
            to_pil(sheet).save(tmps[Path(strip)], format="PNG")
        if output is not None:
            from tqdm.auto import tqdm
            frames = tqdm(plan.frames(), total=plan.num_frames, desc="video", unit="frame", dynamic_ncols=True)
            try:
                write_video(frames, tmps[Path(output)], VIDEO_CONTAINERS[Path(output).suffix.lower()],
                            num_frames=plan.num_frames, name=output)
            finally:
                frames.close()
    if output is not None:
        click.echo(f"wrote {output!r} ({plan.num_frames} frames)")
    if strip is not None:
        click.echo(f"wrote {strip!r}")


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


class VideoWriteError(HubnessError):
    """ffmpeg failed, or the file it wrote does not hold every frame."""


def write_video(frames: Iterable[np.ndarray], path, muxer: str = "mp4", *, num_frames: Optional[int] = None,
                fps: int = 60, bitrate: str = "12M", name: Optional[str] = None) -> int:
    """Encode uint8 frames (H, W, C), C = 1, 2, 3 or 4, to ``path`` as H.264 (libx264, yuv420p) in ``muxer``'s
    container, as ``imageio.get_writer(path, fps=fps, codec="libx264", bitrate=bitrate)`` encodes them
    (gen_video.py's writer: frames whose sides are not multiples of 16 are scaled up to the next ones).

    ffmpeg runs in a session of its own (Ctrl-C reaches this process only, which stops it); its exit status
    and its errors are checked, then the file is read back (packets only, no decoding) to count its frames,
    which must equal the frames sent (and ``num_frames`` when given). Returns the frame count.

    Raises
    ------
    VideoWriteError
        One line naming ``name`` (default ``path``) and ffmpeg's first error: a container that refuses the
        stream, a full disk, a killed ffmpeg, a file without every frame.
    """
    import imageio_ffmpeg
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    name = str(path if name is None else name)
    target = "file:" + os.path.abspath(path)  # no protocol or option read into the name
    errors = collections.deque(maxlen=50)
    proc = reader = None
    sent = 0
    broken = False
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] > 4):
                raise VideoWriteError(f"video frames must be uint8 (H, W) or (H, W, 1..4), got {frame.dtype} "
                                      f"{frame.shape}")
            if proc is None:
                shape = frame.shape
                proc = subprocess.Popen(_encode_command(exe, shape, fps, bitrate, muxer, target),
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        bufsize=0, start_new_session=True)
                reader = threading.Thread(target=_collect_lines, args=(proc.stderr, errors), daemon=True)
                reader.start()
            elif frame.shape != shape:
                raise VideoWriteError(f"video frame {sent} has shape {frame.shape}, the first {shape}")
            try:
                proc.stdin.write(memoryview(frame).cast("B"))
            except OSError:  # ffmpeg quit (BrokenPipeError): its errors say why
                broken = True
                break
            sent += 1
        if proc is None:
            raise VideoWriteError(f"no frames to write into {name!r}")
        with contextlib.suppress(OSError):
            proc.stdin.close()
        status = proc.wait()
        reader.join()
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        if proc is not None:
            for stream in (proc.stdin, proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
    if status != 0 or broken:
        reason = _reason(errors, status)
        if not errors and status == 0:
            reason = f"ffmpeg stopped reading frames after {sent}"
        raise VideoWriteError(f"ffmpeg could not write the video {name!r}: {reason}; nothing was written: free space "
                              f"or fix permissions, or choose another --output")
    count = count_video_frames(path, name=name)
    expected = sent if num_frames is None else num_frames
    if count != sent or count != expected:
        raise VideoWriteError(f"ffmpeg wrote {count} of {expected} frames into {name!r}; nothing was written: check "
                              f"the disk and ffmpeg ({exe}), or choose another --output")
    return count


def count_video_frames(path, name: Optional[str] = None) -> int:
    """The frames of the first video stream of ``path``, counted by ffmpeg from the container's packets (no
    decoding). Raises VideoWriteError when ffmpeg cannot read the file (e.g. an mp4 without its moov atom)."""
    import imageio_ffmpeg
    name = str(path if name is None else name)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i",
           "file:" + os.path.abspath(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
    errors = done.stderr.decode(errors="replace").splitlines()
    counts = [line.split("=", 1)[1] for line in done.stdout.decode(errors="replace").splitlines()
              if line.startswith("frame=")]
    if done.returncode != 0 or not counts or not counts[-1].strip().isdigit():
        raise VideoWriteError(f"the video ffmpeg wrote for {name!r} cannot be read back: "
                              f"{_reason(errors, done.returncode)}; nothing was written: free space or choose "
                              f"another --output")
    return int(counts[-1])


def _encode_command(exe: str, shape: tuple, fps: int, bitrate: str, muxer: str, target: str) -> list:
    """imageio-ffmpeg's ``write_frames`` command for these frames, with the container named (``-f``), since the
    temporary file's name has no video extension, and errors only on stderr."""
    h, w = shape[:2]
    channels = 1 if len(shape) == 2 else shape[2]
    pix_fmt = {1: "gray", 2: "gray8a", 3: "rgb24", 4: "rgba"}[channels]
    cmd = [exe, "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}", "-pix_fmt", pix_fmt,
           "-r", str(fps), "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-b:v", str(bitrate)]
    if w % 16 or h % 16:  # imageio's macro_block_size=16
        cmd += ["-vf", f"scale={-(-w // 16) * 16}:{-(-h // 16) * 16}"]
    return cmd + ["-v", "error", "-f", muxer, target]


def _collect_lines(stream, lines: collections.deque) -> None:
    """Read ffmpeg's stderr until it closes, keeping its last lines (a thread: ffmpeg never blocks on it)."""
    with contextlib.suppress(OSError, ValueError):
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode(errors="replace").rstrip())


def _reason(lines, status) -> str:
    """ffmpeg's first error line, without its ``[muxer @ 0x...]`` prefix, and its exit status, on one line."""
    texts = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip() for line in lines]
    texts = [t for t in texts if t]
    first = " ".join(texts[0].split())[:300] if texts else "ffmpeg printed no error"
    if status is None or status == 0:
        return first
    how = f"exit status {status}"
    if status < 0:
        try:
            how = f"killed by {signal.Signals(-status).name}"
        except ValueError:
            how = f"killed by signal {-status}"
    return f"{first} ({how})"
