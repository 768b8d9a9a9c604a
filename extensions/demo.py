"""Demo of the engine: hub values of a pool of Gaussian latents, its statistics and its selections."""

from __future__ import annotations

import time

import click

from . import HubnessError, SeedPools, compute_hubness, hubness_stats, make_sampler
from .stylegan.cli import one_line_errors


@click.command()
@click.option("--pool-size", type=click.IntRange(min=2), default=10000, show_default=True, help="Latents per pool")
@click.option("--dim", type=click.IntRange(min=1), default=512, show_default=True, help="Latent dimension")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="k-NN list size")
@click.option("--t", type=click.FloatRange(min=0), default=50, show_default=True, help="Hub-value threshold")
@click.option("--num", type=click.IntRange(min=1), default=16, show_default=True, help="Latents to select")
def main(pool_size, dim, k, t, num):
    """Compute hub values of one pool of N(0, I) latents and select hubs from it."""
    with one_line_errors():
        _demo(pool_size, dim, k, t, num)


def _demo(pool_size, dim, k, t, num):
    if k >= pool_size:
        raise HubnessError(f"--k {k} must be below --pool-size {pool_size}")
    if pool_size * dim > 2 ** 31:
        raise HubnessError(f"--pool-size {pool_size} x --dim {dim} is too large for a demo (at most 2**31 values)")
    pools = SeedPools(dim, pool_size)
    pool = pools.draw(0)
    start = time.perf_counter()
    res = compute_hubness(pool.latents, k)
    seconds = time.perf_counter() - start
    st = hubness_stats(res.m, k, thresholds=(t,))
    click.echo(f"pool: {pool_size} latents of dimension {dim} (seeds {pool.seeds[0]}..{pool.seeds[-1]})")
    click.echo(f"k-NN: {res.backend}, {res.info.get('precision', '')}, {seconds:.2f} s")
    click.echo(f"hub values: max {st.max}, skewness {st.skewness:.2f}, hubs (m >= {2 * k}) {st.hub_share:.1%}, "
               f"anti-hubs (m = 0) {st.antihub_share:.1%}, m >= {t}: {st.count_at_least[t]}")
    chosen = make_sampler("hubness", k=k, t=t).sample(pools, num)
    click.echo(f"hubness sampler, {num} latents with m >= {t}: seeds {chosen.seeds.tolist()}")
    click.echo(f"  their m: {chosen.m.tolist()}")


if __name__ == "__main__":
    main()
