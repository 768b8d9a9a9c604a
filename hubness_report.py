"""Write the paper's hubness figures (Figs. 2, 3, 9 and 15 of Liang et al., ICML 2022) for a network.

Without --network it uses the embedded digits generator, so it runs on a fresh machine with no download.
"""

import os
import signal

if __name__ == "__main__":  # Ctrl-C while the modules load (nothing written yet): exit 130, no traceback
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))  # an exception could abort a C import

import logging  # noqa: E402

import click  # noqa: E402

from extensions._checks import HubnessError, resolve_device  # noqa: E402
from extensions.stylegan.cli import one_line_errors  # noqa: E402
from extensions.digits import NETWORK_NAME, is_embedded, load_any_network  # noqa: E402
from extensions.report import (GridShape, check_options,  # noqa: E402
                               figure_options, hubness_report)

#: How error messages name the library's parameters: by this command's options.
OPTIONS = {"pool_size": "--pool-size", "seed": "--seed", "k": "--k", "t": "--t", "t_lq": "--t-lq", "psi": "--psi"}


@click.command()
@figure_options(outdir_help="Where to write the figures",
                pool_help="Latents in the pool whose hub values are shown",
                t_help="High-quality threshold: m >= t (fewer than 16 such latents: the largest m are shown instead)",
                t_lq_help="Low-quality threshold: m <= t_lq")([
    click.option("--psi", type=float, default=0.7, show_default=True, help="Truncation psi of the Fig. 9 comparison"),
    click.option("--grid", type=GridShape(), default="8x8", show_default=True,
                 help="Columns x rows (WxH, as gen_video.py) of each grid of the high- vs low-quality figure"),
    click.option("--class", "class_idx", type=int, default=None,
                 help="Class of every image, for class-conditional BigGAN networks (0..999)"),
])
def main(network_pkl, outdir, pool_size, seed, k, t, t_lq, psi, grid, class_idx, include_self, space, device,
         stylegan3):
    """Write hub_histogram.png, distance_to_mean.png, hubness_spectrum.png, quality_grids.png and report.json.

    Examples:

    \b
    # The embedded digits generator, thresholds suited to its W space:
    python hubness_report.py --outdir=out/report --t=15

    \b
    # A stylegan3 network, the paper's defaults (n = 10000, k = 5, t = 50, t_lq = 1):
    python hubness_report.py --network=stylegan3-r-ffhq-1024x1024.pkl --outdir=out/ffhq

    \b
    # BigGAN-deep 128, class 207 (golden retriever), hub values in Z:
    python hubness_report.py --network=biggan-deep-128 --class=207 --outdir=out/biggan
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    with one_line_errors():
        # Checked before the network loads: a wrong option fails in a second, not after minutes of work.
        check_options(outdir, seed=seed, pool_size=pool_size, k=k, t=t, t_lq=t_lq, psi=psi, names=OPTIONS)
        device = resolve_device(device)
        G = load_any_network(network_pkl, stylegan3=stylegan3, device=device)
        if hasattr(G, "bind_class") and G.c_dim:  # the figures take unconditional generators: fix the class
            if class_idx is None:
                raise HubnessError(f"this network is conditional ({G.c_dim} classes): give a class label with --class "
                                   f"(0..{G.c_dim - 1})")
            G = G.bind_class(class_idx)
        elif class_idx is not None:
            click.echo("warn: --class ignored: it applies to class-conditional BigGAN networks")
        title = NETWORK_NAME if is_embedded(network_pkl) else str(network_pkl).rstrip("/").rsplit("/", 1)[-1]
        if getattr(G, "class_idx", None) is not None:
            title += f" class {G.class_idx}"
        report = hubness_report(G, outdir, pool_size=pool_size, k=k, t=t, t_lq=t_lq, psi=psi, seed=seed, grid=grid,
                                include_self=include_self, space=space, device=device, title=title, progress=True,
                                network=title if is_embedded(network_pkl) else str(network_pkl), names=OPTIONS)
    stats = report.summary["stats"]
    click.echo(f"{title}: pool of {pool_size} in {report.summary['space'].upper()} space, k = {k}: max m = "
               f"{stats['max']}, skewness {stats['skewness']:.2f}, {report.summary['hubs']['label']}: "
               f"{report.summary['hubs']['count']}, m <= {t_lq:g}: {report.summary['low_quality']['count']}")
    for name, path in report.files.items():
        click.echo(f"  {path}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
