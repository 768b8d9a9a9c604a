"""Render latent interpolation videos, with keyframes chosen by their hubness prior.

A superset of stylegan3's gen_video.py: its options keep their meaning (with --interp cubic and --sampler
random, the defaults, every frame is the official script's frame), --sampler hubness makes the video run
through hub latents (Liang et al., ICML 2022), --interp picks slerp, the prior-keeping Gaussian paths of
extensions.paths or discriminator-aware geodesics (which need the network's discriminator), and --strip
writes a contact sheet. Generators without a mapping network (BigGAN, StudioGAN, module:callable) make
Z-space videos: the seeds' Z latents as gen_images_hub.py draws them, each frame the generator on the
interpolated Z. Runs on CUDA when available, else on the CPU.
"""

import os
import signal

if __name__ == "__main__":  # Ctrl-C while the modules load (nothing written yet): exit 130, no traceback
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))  # an exception could abort a C import

import click  # noqa: E402

from extensions.digits import NETWORK_NAME  # noqa: E402
from extensions.paths.video import MAX_SHUFFLE_SEED  # noqa: E402
from extensions.paths.video_cli import VIDEO_CONTAINERS, run, video_options  # noqa: E402
from extensions.stylegan.cli import GridType, SeedList  # noqa: E402


@click.command()
@click.option("--network", "network_pkl", default=NETWORK_NAME, metavar="PKL",
              help=f"Network pickle filename or URL, biggan-deep-128|256|512 or a BigGAN folder, or module:callable "
                   f"[default: {NETWORK_NAME}, the embedded digits generator]")
@click.option("--seeds", type=SeedList(), required=True,
              help="List of random seeds (e.g. '0-31'): the keyframes, or the pool a hub sampler chooses from")
@click.option("--shuffle-seed", type=click.IntRange(0, MAX_SHUFFLE_SEED), default=None,
              help="Random seed to use for shuffling seed order")
@click.option("--grid", type=GridType(), default="1x1", show_default=True, metavar="WxH",
              help="Grid width/height, e.g. '4x3'")
@click.option("--num-keyframes", type=int, default=None,
              help="Number of seeds to interpolate through [default: seeds / (W*H); hub samplers: the chosen "
                   "seeds / (W*H), rounded up]")
@click.option("--w-frames", type=int, default=120, show_default=True,
              help="Number of frames to interpolate between latents")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, help="Truncation psi")
@click.option("--output", type=str, default=None, metavar="FILE",
              help=f"Output video filename ({', '.join(VIDEO_CONTAINERS)}: H.264, 60 fps); missing folders are made")
@video_options
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
    # BigGAN: Z-space slerp through the 4 largest hubs of seeds 0-999, class 207, truncation 0.4:
    python gen_video_hub.py --network=biggan-deep-128 --class=207 --trunc=0.4 --seeds=0-999 \\
        --sampler=hubness --t=0 --num-keyframes=4 --interp=slerp --output=biggan.mp4

    \b
    # Discriminator-aware geodesics between the keyframes (the network pickle must hold D):
    python gen_video_hub.py --seeds=0-3 --interp=discriminator --w-frames=30 --output=geodesic.mp4
    """
    run(**options)


if __name__ == "__main__":
    generate_video()  # pylint: disable=no-value-for-parameter
