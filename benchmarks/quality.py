"""Quality of every sampler on the embedded digits generator, judged by the embedded digits classifier.

For each sampler (random; truncation psi 0.9, 0.7, 0.5; hubness at several thresholds t and a top-N
variant; hubness-lq) and each seed, ``--num`` images are generated from the latents the sampler chooses
out of pools of ``--pool-size`` seeds, and compared with the 1,797 real digits in the classifier's
feature space (penultimate layer, 128-d):

* precision and recall (k = 3), density and coverage (k = 5), FID (Frechet distance of Gaussian fits)
  against all real digits;
* FID half 1, FID half 2: the paper's Table 2 protocol (``fid2k2k_hub``) scaled to this data set, FID
  against each of two disjoint halves of the real digits (a fixed random split, 898 each); the reference
  row gives the two halves against each other (real vs real);
* confidence: the classifier's mean largest softmax probability on the generated images;
* IS classes: the Inception-Score-style class balance exp(E KL(p(y|x) || p(y))) under the classifier, in
  [1, 10]: high for confident and balanced classes (the paper's Fig. 10 / Table 5);
* W1 classes: Wasserstein-1 distance between the sampler's histogram of predicted classes and random
  sampling's (same seed), with the classes 0..9 as points on a line (the paper's Fig. 10).

Samplers of one seed share their pools (pool 0 starts at seed * 1,000,000), so their differences are
paired. The table gives mean +- standard deviation (ddof = 1) over the seeds.

    python benchmarks/quality.py                                  # 3 seeds, 2000 images, pools of 10,000
    python benchmarks/quality.py --seeds 0-4 --out /tmp/quality.md     # default out: benchmarks/results/
    python benchmarks/quality.py --generator digits-w512 --t 20,50 --top 100   # the 512-d W network
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extensions.digits import FeatureDetector, digit_images, load_classifier, load_generator  # noqa: E402
from extensions.digits.network import EMBEDDED_NETWORKS, NETWORK_NAME  # noqa: E402
from extensions.digits.weights import WeightsFileError  # noqa: E402
from extensions.metrics import (SamplerSpec, density_coverage, frechet_distance_features,  # noqa: E402
                                generator_features, mean_cov, precision_recall)
from extensions.metrics.class_balance import class_balance_score  # noqa: E402
from extensions.metrics.frechet import frechet_distance_two_subsets  # noqa: E402
from tables import count, finite, write_tables  # noqa: E402

COLUMNS = ("precision", "recall", "density", "coverage", "FID", "FID half 1", "FID half 2", "confidence",
           "IS classes", "W1 classes")
SEED_STRIDE = 1_000_000
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "quality.md")


def parse_list(text: str, kind=float) -> list:
    """``'0,1,4-6'`` -> [0, 1, 4, 5, 6] (ranges for integers only); ``'10,20'`` -> [10.0, 20.0]."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if kind is int and "-" in part[1:]:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(kind(part))
    return out


def sampler_specs(ts, tops, psis, t_lq: float, k: int, pool_size: int) -> list:
    """(label, SamplerSpec keyword arguments) of every sampler in the table, in order."""
    specs = [("random", dict(name="random"))]
    specs += [(f"truncation psi={psi:g}", dict(name="truncation", psi=psi)) for psi in psis]
    specs += [(f"hubness t={t:g}", dict(name="hubness", t=t, k=k, pool_size=pool_size)) for t in ts]
    specs += [(f"hubness top={top}/pool", dict(name="hubness", top=top, k=k, pool_size=pool_size)) for top in tops]
    specs.append((f"hubness-lq t_lq={t_lq:g}", dict(name="hubness-lq", t_lq=t_lq, k=k, pool_size=pool_size)))
    return specs


def class_w1(labels_a: np.ndarray, labels_b: np.ndarray, classes: int = 10) -> float:
    """Wasserstein-1 distance between the class histograms of two label arrays (classes on a line)."""
    from scipy.stats import wasserstein_distance
    ha = np.bincount(labels_a, minlength=classes).astype(np.float64)
    hb = np.bincount(labels_b, minlength=classes).astype(np.float64)
    points = np.arange(classes, dtype=np.float64)
    return float(wasserstein_distance(points, points, ha, hb))


def real_features(detector: FeatureDetector) -> torch.Tensor:
    """Features of the real digits, converted to uint8 exactly as generated images are."""
    images, _ = digit_images(16)
    uint8 = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    with torch.no_grad():
        return detector(uint8)


def real_halves(real: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, int]:
    """The real features in a fixed random order and the size of each half: rows [0, h) and [h, 2h) are the
    two disjoint subsets of the Table 2 protocol (the data set's own order groups its writers)."""
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(real)))
    return real[order], len(real) // 2


def evaluate(G, detector: FeatureDetector, real: torch.Tensor, spec: SamplerSpec, num: int) -> dict:
    """Metrics of ``num`` images of ``spec``'s sampler; also the predicted labels (for W1) and hub values.

    ``real`` (n, d) are the real features in the order of :func:`real_halves`."""
    start = time.perf_counter()
    out = generator_features(G, detector, num, spec=spec, batch_size=256, batch_gen=256, device="cpu")
    fake = out.features
    with torch.no_grad():
        probs = detector.probabilities(fake)
    pr = precision_recall(real, fake, k=3, device="cpu")
    dc = density_coverage(real, fake, k=5, device="cpu")
    halves = frechet_distance_two_subsets(real, *mean_cov(fake), len(real) // 2)
    sel = out.selection
    return dict(precision=pr.precision, recall=pr.recall, density=dc.density, coverage=dc.coverage,
                FID=frechet_distance_features(real, fake), **{"FID half 1": halves["subset1"],
                                                              "FID half 2": halves["subset2"]},
                confidence=float(probs.max(dim=1).values.mean()), **{"IS classes": class_balance_score(probs.numpy())},
                labels=probs.argmax(dim=1).numpy(), pools=len(sel.records),
                m_range=None if sel.m is None else [int(sel.m.min()), int(sel.m.max())],
                seconds=time.perf_counter() - start)


def format_table(labels, results, seeds, reference: dict) -> str:
    """Markdown table of mean +- std over seeds, and a reference row of the real digits (``reference``: column
    -> value; the other columns show a dash)."""
    head = "| sampler | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for label in labels:
        cells = []
        for col in COLUMNS:
            values = np.array([results[label][s][col] for s in seeds], dtype=np.float64)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            digits = 2 if col.startswith("FID") else 3
            cells.append(f"{values.mean():.{digits}f} ± {std:.{digits}f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ref = [f"{reference[col]:.{2 if col.startswith('FID') else 3}f}" if col in reference else "–" for col in COLUMNS]
    lines.append("| real digits (reference) | " + " | ".join(ref) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-2", help="benchmark seeds, e.g. '0-2' or '0,1,2' (at least 3 advised)")
    ap.add_argument("--num", type=count(1), default=2000, help="generated images per sampler and seed")
    ap.add_argument("--pool-size", type=count(2), default=10000, help="latents per pool of the hub samplers")
    ap.add_argument("--k", type=count(1), default=5)
    ap.add_argument("--t", default="10,15,20", help="thresholds of the hubness sampler, comma-separated")
    ap.add_argument("--top", default="1000", help="top-N-per-pool variants of the hubness sampler")
    ap.add_argument("--psi", default="0.9,0.7,0.5", help="truncation factors")
    ap.add_argument("--t-lq", type=finite, default=1)
    ap.add_argument("--generator", default=None,
                    help="generator weights (.npz) or an embedded network's name (digits, digits-w512); default digits")
    ap.add_argument("--classifier", default=None, help="classifier weights (.npz); default the embedded one")
    ap.add_argument("--threads", type=count(1), default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", default=None,
                    help="write the table (markdown) here, and the raw results as .json beside it ('' : do not write; "
                         "default results/quality.md, results/quality_<name>.md for another embedded network)")
    args = ap.parse_args(argv)
    if args.out is None:
        name = args.generator if args.generator in EMBEDDED_NETWORKS and args.generator != NETWORK_NAME else None
        args.out = DEFAULT_OUT if name is None else os.path.join(os.path.dirname(DEFAULT_OUT), f"quality_{name}.md")

    if args.threads:
        torch.set_num_threads(args.threads)
    lists = {}
    for option, kind in (("seeds", int), ("t", float), ("top", int), ("psi", float)):
        try:
            lists[option] = parse_list(getattr(args, option), kind)
        except ValueError:
            ap.error(f"--{option} {getattr(args, option)!r} is not a comma-separated list of "
                     f"{'integers (ranges a-b allowed)' if kind is int else 'numbers'}")
        if not all(math.isfinite(v) and (v >= 0 or option == "psi") for v in lists[option]):
            ap.error(f"--{option} {getattr(args, option)!r}: every value must be finite"
                     + ("" if option == "psi" else " and >= 0"))
    seeds = lists["seeds"]
    if len(seeds) < 1:
        ap.error(f"--seeds {args.seeds!r} holds no seed")
    if args.k >= args.pool_size:
        ap.error(f"--k {args.k} must be below --pool-size {args.pool_size}")
    try:
        G = load_generator(args.generator, device="cpu")
        detector = FeatureDetector(load_classifier(args.classifier, device="cpu")).eval()
    except WeightsFileError as exc:
        ap.error(str(exc))
    real, half = real_halves(real_features(detector))
    with torch.no_grad():
        real_probs = detector.probabilities(real)
    real_conf = float(real_probs.max(dim=1).values.mean())
    real_vs_real = frechet_distance_features(real[:half], real[half:2 * half])
    reference = {"FID half 1": real_vs_real, "FID half 2": real_vs_real, "confidence": real_conf,
                 "IS classes": class_balance_score(real_probs.numpy())}
    specs = sampler_specs(lists["t"], lists["top"], lists["psi"], args.t_lq, args.k, args.pool_size)
    print(f"{len(specs)} samplers x {len(seeds)} seeds, {args.num} images each; pools of {args.pool_size}, "
          f"k = {args.k}; {len(real)} real digits; torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)

    results = {label: {} for label, _ in specs}
    for seed in seeds:
        for label, kwargs in specs:
            spec = SamplerSpec(seed=seed * SEED_STRIDE, **kwargs)
            results[label][seed] = evaluate(G, detector, real, spec, args.num)
        random_labels = results["random"][seed]["labels"]
        for label, _ in specs:
            r = results[label][seed]
            r["W1 classes"] = class_w1(r["labels"], random_labels)
            print(f"seed {seed}  {label:24s} " + "  ".join(f"{c} {r[c]:.3f}" for c in COLUMNS) +
                  f"  pools {r['pools']}  m {r['m_range']}  {r['seconds']:.1f} s", flush=True)

    labels = [label for label, _ in specs]
    table = format_table(labels, results, seeds, reference)
    print()
    print(table)
    raw = dict(seeds=seeds, num=args.num, pool_size=args.pool_size, k=args.k, columns=list(COLUMNS),
               real_confidence=real_conf, reference=reference, real_halves=half, torch=torch.__version__, threads=torch.get_num_threads(),
               machine=platform.processor() or platform.machine(),
               results={label: {str(s): {key: (value.tolist() if isinstance(value, np.ndarray) else value)
                                         for key, value in results[label][s].items() if key != "labels"}
                                for s in seeds} for label in labels},
               class_histograms={label: {str(s): np.bincount(results[label][s]["labels"], minlength=10).tolist()
                                         for s in seeds} for label in labels})
    if args.out:
        write_tables(args.out, table, raw)
    return dict(table=table, **raw)


if __name__ == "__main__":
    main()
