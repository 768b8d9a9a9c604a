"""The samplers side by side (random | truncation | hubness | hubness-lq), all from one pool of latents.

Without --network it uses the embedded digits generator and titles each panel with the embedded
classifier's mean confidence and precision; any other network gets the number of latents and their hub
values. Writes comparison.png and comparison.json.
"""

import os
import signal

if __name__ == "__main__":  # Ctrl-C while the modules load (nothing written yet): exit 130, no traceback
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))  # an exception could abort a C import

import logging  # noqa: E402

import click  # noqa: E402

from extensions._checks import HubnessError, resolve_device  # noqa: E402
from extensions.stylegan.cli import one_line_errors  # noqa: E402
from extensions.comparison import DigitsJudge, compare_samplers  # noqa: E402
from extensions.digits import NETWORK_NAME, is_embedded, load_any_network  # noqa: E402
from extensions.report import (GridShape, check_options,  # noqa: E402
                               figure_options)

#: How error messages name the library's parameters: by this command's options.
OPTIONS = {"pool_size": "--pool-size", "seed": "--seed", "k": "--k", "t": "--t", "t_lq": "--t-lq", "psi": "--trunc"}


@click.command()
@figure_options(outdir_help="Where to write comparison.png and comparison.json",
                pool_help="Latents in the pool every sampler draws from",
                t_help="Hubness panel: latents with m >= t, largest first",
                t_lq_help="Hubness-lq panel: latents with m <= t_lq, smallest first")([
    click.option("--trunc", "psi", type=float, default=0.7, show_default=True,
                 help="Truncation psi of the truncation panel"),
    click.option("--grid", type=GridShape(), default="8x8", show_default=True,
                 help="Columns x rows (WxH, as gen_video.py) of each panel"),
])
def main(network_pkl, outdir, pool_size, seed, k, t, t_lq, psi, grid, include_self, space, device, stylegan3):
    """Write comparison.png: four panels from the same pool, titled with their quality.

    Examples:

    \b
    # The embedded digits generator (its W space has m up to 27, so t = 15):
    python compare_samplers.py --t=15 --outdir=out/compare

    \b
    # A stylegan3 network, the paper's thresholds (t = 50, t_lq = 1):
    python compare_samplers.py --network=stylegan3-r-ffhq-1024x1024.pkl --outdir=out/ffhq-compare
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    cols, rows = grid
    with one_line_errors():
        # Checked before any work: a wrong option fails in a second, not after the pool is mapped.
        check_options(outdir, seed=seed, pool_size=pool_size, k=k, t=t, t_lq=t_lq, psi=psi, names=OPTIONS)
        if cols * rows > pool_size:
            raise HubnessError(f"--grid {cols}x{rows} needs {cols * rows} latents, but --pool-size is {pool_size}; "
                               f"raise --pool-size or shrink --grid")
        device = resolve_device(device)
        G = load_any_network(network_pkl, stylegan3=stylegan3, device=device)
        title = NETWORK_NAME if is_embedded(network_pkl) else str(network_pkl).rstrip("/").rsplit("/", 1)[-1]
        judge = DigitsJudge(device=device) if is_embedded(network_pkl) else None
        result = compare_samplers(G, outdir, pool_size=pool_size, seed=seed, k=k, t=t, t_lq=t_lq, psi=psi, grid=grid,
                                  include_self=include_self, space=space, judge=judge, device=device, title=title,
                                  progress=True, network=title if is_embedded(network_pkl) else str(network_pkl),
                                  names=OPTIONS)
    for panel in result.panels:
        shown = panel.m[:len(panel.images)]
        scores = ", ".join(f"{key} {value:.3f}" for key, value in panel.scores.items())
        click.echo(f"{panel.label:22s} {len(panel.seeds):6d} latents{', ' + scores if scores else ''}; "
                   f"shown {len(shown)}, m {int(shown.min())}-{int(shown.max())}")
    for path in result.files.values():
        click.echo(f"  {path}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
