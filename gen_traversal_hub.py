"""Walk the local coordinates of W around sampled seeds: a strip of images and the latents per seed.

At a seed's W latent the local basis is the ordered right singular vectors of the Jacobian of the partial
network (W -> a synthesis block's feature map; Choi et al. 2021, "Do Not Escape From the Manifold"). Each
chosen direction is walked both ways, by iterative curve traversal (the basis taken again at every step) or
along a straight line, moving all ws rows or StyleGAN's coarse, middle or fine ones. Seeds come from
--seeds as gen_images.py draws them, or from the hubs among them (--sampler hubness). Runs on CUDA when
available, else on the CPU.
"""

import os
import signal

if __name__ == "__main__":  # Ctrl-C while the modules load (nothing written yet): exit 130, no traceback
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))  # an exception could abort a C import

import click  # noqa: E402

from extensions.digits import NETWORK_NAME  # noqa: E402
from extensions.paths.traversal_cli import run, traversal_options  # noqa: E402
from extensions.stylegan.cli import SeedList  # noqa: E402


@click.command()
@click.option("--network", "network_pkl", default=NETWORK_NAME, metavar="PKL",
              help=f"Network pickle filename or URL [default: {NETWORK_NAME}, the embedded digits generator]")
@click.option("--seeds", type=SeedList(), required=True,
              help="List of random seeds (e.g. '0,1,4-6'): the seeds to traverse, or the pool a hub sampler "
                   "chooses from")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, help="Truncation psi")
@click.option("--class", "class_idx", type=int, default=None, help="Class label (unconditional if not specified)")
@click.option("--outdir", type=str, required=True, metavar="DIR",
              help="Where to save seed*_traversal.png, seed*_traversal.npz and manifest.json")
@click.option("--stylegan3", "stylegan3", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="stylegan3 or stylegan2-ada-pytorch checkout [default: $STYLEGAN3_DIR, else importable modules]")
@traversal_options
def generate_traversals(**options):
    """Traverse the local basis of W at each seed: one PNG strip and one .npz per seed.

    Examples:

    \b
    # The embedded digits network: the 5 strongest directions at seeds 0-3, 5 steps of 0.5 each way:
    python gen_traversal_hub.py --seeds=0-3 --outdir=out/traversal

    \b
    # The 4 largest hubs of seeds 0-999, the coarse layers only, iterative against linear:
    python gen_traversal_hub.py --seeds=0-999 --sampler=hubness --t=0 --num=4 --layers=coarse --outdir=out/it
    python gen_traversal_hub.py --seeds=0-999 --sampler=hubness --t=0 --num=4 --layers=coarse \\
        --method=linear --outdir=out/lin

    \b
    # A stylegan3 pickle, partial network up to layer L4, 8 steps of 2 each way:
    python gen_traversal_hub.py --network=network-snapshot.pkl --seeds=0-7 --block=L4 --steps=8 \\
        --step-size=2 --outdir=out/sg3
    """
    run(**options)


if __name__ == "__main__":
    generate_traversals()  # pylint: disable=no-value-for-parameter
