"""Conjecture 3.2 image by image: Spearman rank correlation between the hub value m of every latent of a
pool and per-image quality scores of its image, for the embedded digits networks, in W and in Z.

For each network and seed, a pool of ``--pool-size`` latents (seeds seed * 1,000,000 onwards, drawn as
``gen_images.py`` draws them) gets hub values with k-NN lists of size ``--k`` in W (``ws[:, 0]``,
truncation 1) and in Z. Every latent's image (``noise_mode='const'``) is scored three ways:

* confidence: the embedded classifier's largest softmax probability;
* -NN distance: minus the Euclidean distance from its classifier features (128-d, penultimate layer) to
  the nearest of the 1,797 real digits (higher = closer to a real digit);
* D: the logit of the network's own discriminator, each image scored in a minibatch-std group with the
  same context images (seeds 0-2), so its score depends on that image alone.

Each cell is Spearman's rho (average ranks for ties) with a percentile-bootstrap interval over the pairs
of the pool. The hubness of each space (largest m, share with m >= 50, skewness) is reported beside it.

    python benchmarks/correlation.py                                   # both networks, seeds 0-2
    python benchmarks/correlation.py --network digits --seeds 0 --out /tmp/correlation.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extensions.digits import FeatureDetector, digit_images, load_classifier  # noqa: E402
from extensions.digits.network import EMBEDDED_NETWORKS, load_discriminator, load_generator  # noqa: E402
from extensions.digits.weights import WeightsFileError  # noqa: E402
from extensions.hubness import compute_hubness, hubness_stats  # noqa: E402
from extensions.knn import exact_knn  # noqa: E402
from extensions.metrics.correlation import spearman_bootstrap  # noqa: E402
from extensions.paths.discriminator import adapter_functions  # noqa: E402
from extensions.pools import seed_latents  # noqa: E402
from tables import write_tables  # noqa: E402

SCORES = ("confidence", "-NN distance", "D")
SPACES = ("w", "z")
SEED_STRIDE = 1_000_000
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "correlation.md")


def parse_seeds(text: str) -> list:
    """``'0,1,4-6'`` -> [0, 1, 4, 5, 6]."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8, as the metric loop converts generated images."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def pool_scores(G, D, detector: FeatureDetector, real: torch.Tensor, z: torch.Tensor, batch: int = 500) -> dict:
    """W latents and per-image scores of a pool.

    Parameters
    ----------
    z : torch.Tensor, shape (n, z_dim), float32

    Returns
    -------
    dict with ``w`` (n, w_dim) and one array (n,) per name of :data:`SCORES`.
    """
    _, D_fn, adapter = adapter_functions(G, D)
    ws, conf, dist, d = [], [], [], []
    for start in range(0, len(z), batch):
        w = adapter.map(z[start:start + batch])
        img = adapter.synthesize(w, noise_mode="const")
        feats = detector(to_uint8(img))
        conf.append(detector.probabilities(feats).max(dim=1).values)
        nearest = exact_knn(real, 1, queries=feats, device="cpu").distances[:, 0]
        dist.append(-nearest.double().sqrt())
        d.append(D_fn(img.clamp(-1, 1)))
        ws.append(w)
    scores = {"confidence": torch.cat(conf), "-NN distance": torch.cat(dist), "D": torch.cat(d)}
    out = {name: value.double().numpy() for name, value in scores.items()}
    for name, value in out.items():
        if not np.isfinite(value).all():
            raise SystemExit(f"error: score {name!r} is not finite for {int((~np.isfinite(value)).sum())} images; "
                             f"check the network's weights")
    out["w"] = torch.cat(ws)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default=",".join(EMBEDDED_NETWORKS),
                    help=f"embedded networks, comma-separated (of {', '.join(EMBEDDED_NETWORKS)})")
    ap.add_argument("--seeds", default="0-2", help="one pool per seed, e.g. '0' or '0-2'")
    ap.add_argument("--pool-size", type=int, default=10000, help="latents per pool")
    ap.add_argument("--k", type=int, default=5, help="k-NN list size of the hub values")
    ap.add_argument("--t", type=float, default=50, help="threshold whose share of the pool is reported")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="write the table (markdown) here, and the raw results as .json beside it ('' : do not write)")
    args = ap.parse_args(argv)

    networks = [n.strip() for n in args.network.split(",") if n.strip()]
    unknown = [n for n in networks if n not in EMBEDDED_NETWORKS]
    if not networks or unknown:
        ap.error(f"--network {args.network!r}: choose from {', '.join(EMBEDDED_NETWORKS)}")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError:
        ap.error(f"--seeds {args.seeds!r} is not a list like '0' or '0-2'")
    if not seeds:
        ap.error(f"--seeds {args.seeds!r} holds no seed")
    if args.pool_size <= args.k or args.k < 1:
        ap.error(f"--pool-size {args.pool_size} must exceed --k {args.k} >= 1")
    if args.resamples < 1:
        ap.error(f"--resamples {args.resamples} must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    detector = FeatureDetector(load_classifier(device="cpu")).eval()
    images, _ = digit_images(16)
    with torch.no_grad():
        real = detector(to_uint8(images))
    print(f"{len(networks)} network(s) x {len(seeds)} pool(s) of {args.pool_size}, k = {args.k}, "
          f"{args.resamples} bootstrap resamples; torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)

    try:
        nets = {name: (load_generator(name, device="cpu"), load_discriminator(name, device="cpu")) for name in networks}
    except WeightsFileError as exc:
        ap.error(str(exc))
    rows, hubness = [], []
    for name in networks:
        G, D = nets[name]
        for seed in seeds:
            start = time.perf_counter()
            z = torch.from_numpy(seed_latents(range(seed * SEED_STRIDE, seed * SEED_STRIDE + args.pool_size),
                                              G.z_dim)).float()
            scores = pool_scores(G, D, detector, real, z)
            latents = {"w": scores.pop("w"), "z": z}
            for space in SPACES:
                m = compute_hubness(latents[space], args.k, device="cpu").m
                st = hubness_stats(m, args.k, thresholds=(args.t,))
                hubness.append(dict(network=name, seed=seed, space=space, dim=int(latents[space].shape[1]),
                                    max=st.max, skewness=st.skewness, at_least_t=st.count_at_least[args.t],
                                    share_t=st.count_at_least[args.t] / st.n))
                for score in SCORES:
                    c = spearman_bootstrap(m, scores[score], resamples=args.resamples, seed=seed)
                    rows.append(dict(network=name, seed=seed, space=space, score=score, **c.as_dict()))
                    print(f"{name:12s} seed {seed}  {space.upper()}  {score:13s} rho {c.rho:+.3f} "
                          f"[{c.low:+.3f}, {c.high:+.3f}]", flush=True)
            print(f"{name:12s} seed {seed}  {time.perf_counter() - start:.1f} s", flush=True)

    lines = ["| network | space | hub values (largest m; m >= {:g}; skewness) | ".format(args.t)
             + " | ".join(f"ρ({s})" for s in SCORES) + " |", "|---|---|---|" + "---|" * len(SCORES)]
    for h in hubness:
        cells = []
        for score in SCORES:
            r = next(r for r in rows if (r["network"], r["seed"], r["space"], r["score"])
                     == (h["network"], h["seed"], h["space"], score))
            cells.append(f"{r['rho']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]")
        seed = f" (seed {h['seed']})" if len(seeds) > 1 else ""
        lines.append(f"| {h['network']}{seed} | {h['space'].upper()} ({h['dim']}-d) | {h['max']}; "
                     f"{h['at_least_t']} ({100 * h['share_t']:.1f}%); {h['skewness']:.2f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print()
    print(table)
    raw = dict(networks=networks, seeds=seeds, pool_size=args.pool_size, k=args.k, t=args.t,
               resamples=args.resamples, confidence=0.95, torch=torch.__version__, threads=torch.get_num_threads(),
               machine=platform.processor() or platform.machine(), correlations=rows, hubness=hubness)
    if args.out:
        write_tables(args.out, table, raw)
    return dict(table=table, **raw)


if __name__ == "__main__":
    main()
