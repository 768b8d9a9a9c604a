"""Generate images from a network pickle, choosing latents by their hubness prior.

A superset of stylegan3's gen_images.py: its options keep their meaning (with --sampler random, the
default, it renders the same images), and --sampler hubness renders only the seeds whose latents are
hubs (Liang et al., ICML 2022). Runs on CUDA when available, else on the CPU.
"""

import os
import signal

if __name__ == "__main__":  # Ctrl-C while the modules load (nothing written yet): exit 130, no traceback
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))  # an exception could abort a C import

import click  # noqa: E402

from extensions.digits import NETWORK_NAME  # noqa: E402
from extensions.stylegan.cli import SeedList, Vec2, add_hubness_options, run  # noqa: E402


@click.command()
@click.option("--network", "network_pkl", default=NETWORK_NAME, metavar="PKL",
              help=f"Network pickle filename or URL, biggan-deep-128|256|512 or a BigGAN folder, or "
                   f"module:callable [default: {NETWORK_NAME}, the embedded generator trained on "
                   f"scikit-learn's 8x8 digits]")
@click.option("--seeds", type=SeedList(), help="List of random seeds (e.g., '0,1,4-6'); pool 0 of the sampler",
              required=True)
@click.option("--trunc", "truncation_psi", type=float, help="Truncation psi", default=1, show_default=True)
@click.option("--class", "class_idx", type=int, help="Class label (unconditional if not specified)")
@click.option("--noise-mode", help="Noise mode", type=click.Choice(["const", "random", "none"]), default="const",
              show_default=True)
@click.option("--translate", help="Translate XY-coordinate (e.g. '0.3,1')", type=Vec2(), default="0,0",
              show_default=True, metavar="VEC2")
@click.option("--rotate", help="Rotation angle in degrees", type=float, default=0, show_default=True,
              metavar="ANGLE")
@click.option("--outdir", help="Where to save the output images", type=str, required=True, metavar="DIR")
@click.option("--stylegan3", "stylegan3", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="stylegan3 or stylegan2-ada-pytorch checkout [default: $STYLEGAN3_DIR, else importable modules]")
@add_hubness_options
def generate_images(**options):
    """Generate images using a pretrained network pickle, sampling latents by hubness.

    Examples:

    \b
    # No --network: the embedded digits generator; 64 hubs (m >= 15) of seeds 0-9999, largest m first:
    python gen_images_hub.py --seeds=0-9999 --sampler=hubness --t=15 --num=64 --grid --outdir=out/hubness

    \b
    # 32 hub latents of seeds 0-9999 (k = 5, m >= 50, largest m first; more seeds if needed), and a grid:
    python gen_images_hub.py --network=network-snapshot.pkl --seeds=0-9999 \\
        --sampler=hubness --num=32 --grid --outdir=out

    \b
    # Every seed of 0-999 whose hub value is at least 20, with truncation psi 0.7:
    python gen_images_hub.py --network=network-snapshot.pkl --seeds=0-999 \\
        --sampler=hubness --t=20 --trunc=0.7 --outdir=out
    """
    run(**options)


if __name__ == "__main__":
    generate_images()  # pylint: disable=no-value-for-parameter
