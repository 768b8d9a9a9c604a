"""Latent paths on the embedded digits generator: how realistic the images stay between two endpoints.

For ``--pairs`` pairs of endpoints of two kinds, drawn from one pool of ``--pool-size`` seeds (W space):

* random: seeds chosen uniformly from the pool;
* hubs: the ``2 x pairs`` largest hub values of the pool in W (k = ``--k``, ``compute_hubness`` and
  ``select_top``), paired at random;

every method of :mod:`extensions.paths` draws a path of ``--steps`` points (odd, so that the middle point
is t = 1/2): ``linear`` and ``slerp`` in W; ``normalized``, ``cauchy``, ``spherical-cauchy`` and ``linear``
in Z (each point mapped to W); and the discriminator-aware path in W (strength ``--strength``,
``--iterations`` Adam steps from the linear path). Per path:

* lowest and mean classifier confidence (largest softmax probability of the embedded digits classifier,
  the images converted to uint8 as ``benchmarks/quality.py`` does) and the mean discriminator logit;
* the middle point's norm against the prior's typical norm: ``|z_mid| / sqrt(z_dim)`` for Z paths,
  ``|w_mid - w_avg|`` over the pool's mean ``|w - w_avg|`` for every path (``mid W``);
* image-space length ``sum_i |x_{i+1} - x_i|`` and the largest step (L2 over pixels in [-1, 1]);
* seconds per path (latents and images, without the judging).

The table gives mean +- standard deviation (ddof = 1) over pairs, and per method the ratio of its mean
to the mean of the linear path in the same space and run (W methods against linear W, Z methods against
linear Z) for the dip (1 - lowest confidence), the length and the time. The closing section tests the
claims with the paired difference of the lowest confidence (held: more than 2 standard errors better
than linear).

    python benchmarks/paths.py                          # 200 pairs, 17 points, pools of 10,000
    python benchmarks/paths.py --pairs 50 --out /tmp/paths.md        # default out: benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from extensions.digits import FeatureDetector, load_classifier  # noqa: E402
from extensions.hubness import compute_hubness  # noqa: E402
from extensions.paths import digits_functions, discriminator_path, interpolate  # noqa: E402
from extensions.pools import SeedPools  # noqa: E402
from extensions.selection import select_top  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "paths.md")
#: (label, space, interpolation method or None for the discriminator path, label of its linear reference)
METHODS = (("linear W", "w", "linear", "linear W"), ("slerp W", "w", "slerp", "linear W"),
           ("linear Z", "z", "linear", "linear Z"), ("normalized Z", "z", "normalized", "linear Z"),
           ("cauchy Z", "z", "cauchy", "linear Z"), ("spherical-cauchy Z", "z", "spherical-cauchy", "linear Z"),
           ("discriminator W", "w", None, "linear W"))
KINDS = ("random", "hubs")
COLUMNS = ("lowest conf", "mean conf", "D score", "mid ‖z‖/√d", "mid W", "length", "largest step", "s/path")


class UsageError(Exception):
    """Bad command-line input: reported as one line."""


def endpoints(kind: str, pool, m: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Pool indices of the pairs, shape (pairs, 2)."""
    if kind == "random":
        chosen = rng.choice(len(pool.seeds), 2 * pairs, replace=False)
    else:
        chosen = rng.permutation(select_top(m, 2 * pairs))
    return chosen.reshape(pairs, 2)


def path_latents(adapter, G_fn, D_fn, space: str, method, za, zb, wa, wb, steps: int, args):
    """W latents (steps, w_dim) of one path, and its Z latents (steps, z_dim) for Z paths (else None)."""
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    if method is None:
        res = discriminator_path(G_fn, D_fn, wa, wb, steps=steps, strength=args.strength,
                                 iterations=args.iterations, device="cpu")
        return res.latents.float(), None
    if space == "w":
        return interpolate(wa, wb, t, method=method), None
    z = interpolate(za, zb, t, method=method)
    with torch.no_grad():
        return adapter.map(z), z


def measure(images: torch.Tensor, detector: FeatureDetector, D_fn) -> dict:
    """Judged numbers of one path's images (steps, 1, H, W)."""
    with torch.no_grad():
        uint8 = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        conf = detector.probabilities(detector(uint8)).max(dim=1).values
        scores = D_fn(images)
        x = images.clamp(-1, 1).flatten(1).double()
        steps = torch.linalg.vector_norm(x[1:] - x[:-1], dim=1)
    return {"lowest conf": float(conf.min()), "mean conf": float(conf.mean()), "D score": float(scores.mean()),
            "length": float(steps.sum()), "largest step": float(steps.max())}


def summary(values) -> tuple:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def format_table(results: dict, pairs: int) -> str:
    """Markdown table: mean +- sd over pairs, and ratios of means against the linear path of the same space."""
    head = ("| endpoints | method | " + " | ".join(COLUMNS) + " | dip ÷ linear | length ÷ linear | time ÷ linear |")
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    for kind in KINDS:
        for label, space, _, ref in METHODS:
            r, base = results[kind][label], results[kind][ref]
            cells = []
            for col in COLUMNS:
                if col == "mid ‖z‖/√d" and space == "w":
                    cells.append("–")
                    continue
                mean, sd = summary(r[col])
                digits = 4 if col == "s/path" else 3
                cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
            dip = np.mean(1 - np.asarray(r["lowest conf"])) / np.mean(1 - np.asarray(base["lowest conf"]))
            length = np.mean(r["length"]) / np.mean(base["length"])
            secs = np.mean(r["s/path"]) / np.mean(base["s/path"])
            lines.append(f"| {kind} | {label} | " + " | ".join(cells) + f" | {dip:.2f} | {length:.2f} | {secs:.1f} |")
    return "\n".join(lines)


def paired(results: dict, kind: str, label: str, col: str = "lowest conf") -> tuple:
    """Mean paired difference (method - its linear reference) of ``col`` and its standard error."""
    ref = next(r for lab, _, _, r in METHODS if lab == label)
    d = np.asarray(results[kind][label][col]) - np.asarray(results[kind][ref][col])
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def verdict(diff: float, se: float) -> str:
    if diff > 2 * se:
        return "held"
    if diff < -2 * se:
        return "did not hold (the opposite: it dips more)"
    return "did not hold (no difference beyond 2 standard errors)"


def findings(results: dict) -> str:
    """The 'what held / what did not' section, worded from the measured numbers only."""
    out = ["**What held / what did not** (paired difference of the lowest confidence against the linear path "
           "of the same space, mean ± standard error over pairs; held = more than 2 standard errors higher)", ""]
    for kind in KINDS:
        r = results[kind]
        out.append(f"*{kind} endpoints*")
        out.append("")
        zmid = np.mean(r["linear Z"]["mid ‖z‖/√d"])
        out.append(f"* Linear Z's middle point has |z|/√d = {zmid:.3f} (theory for independent Gaussian endpoints: "
                   f"0.707); normalized, cauchy and spherical-cauchy keep "
                   + ", ".join(f"{np.mean(r[lab]['mid ‖z‖/√d']):.3f}" for lab in
                               ("normalized Z", "cauchy Z", "spherical-cauchy Z")) + ".")
        for label in ("normalized Z", "cauchy Z", "spherical-cauchy Z"):
            diff, se = paired(results, kind, label)
            if np.allclose(r[label]["length"], r["linear Z"]["length"], rtol=1e-4, atol=1e-6):
                # StyleGAN's mapping network scales each z to unit second moment before its first layer.
                out.append(f"* {label} renders the images of linear Z on every pair (path lengths equal within "
                           "1e-4): the mapping network normalises each z, so paths that differ from it only in "
                           "norm reach the same W.")
                continue
            out.append(f"* Distribution-preserving paths dip less than linear ones, {label}: {verdict(diff, se)}: "
                       f"lowest confidence {np.mean(r[label]['lowest conf']):.3f} vs "
                       f"{np.mean(r['linear Z']['lowest conf']):.3f} ({diff:+.4f} ± {se:.4f}); length × "
                       f"{np.mean(r[label]['length']) / np.mean(r['linear Z']['length']):.2f}, time × "
                       f"{np.mean(r[label]['s/path']) / np.mean(r['linear Z']['s/path']):.1f}.")
        diff, se = paired(results, kind, "discriminator W")
        out.append(f"* D-aware paths dip less than linear ones: {verdict(diff, se)}: lowest confidence "
                   f"{np.mean(r['discriminator W']['lowest conf']):.3f} vs {np.mean(r['linear W']['lowest conf']):.3f} "
                   f"({diff:+.4f} ± {se:.4f}); mean D score {np.mean(r['discriminator W']['D score']):.3f} vs "
                   f"{np.mean(r['linear W']['D score']):.3f}; cost: length × "
                   f"{np.mean(r['discriminator W']['length']) / np.mean(r['linear W']['length']):.2f}, time × "
                   f"{np.mean(r['discriminator W']['s/path']) / np.mean(r['linear W']['s/path']):.0f}.")
        diff, se = paired(results, kind, "slerp W")
        out.append(f"* slerp in W (no prior to keep there) against linear W: {diff:+.4f} ± {se:.4f} in lowest "
                   f"confidence ({'higher' if diff > 2 * se else 'lower' if diff < -2 * se else 'no difference'} "
                   "beyond 2 standard errors).")
        out.append("")
    return "\n".join(out).rstrip()


def check_args(args) -> None:
    if args.pairs < 2:
        raise UsageError(f"--pairs must be >= 2 (a standard deviation needs two pairs), got {args.pairs}")
    if args.steps < 3 or args.steps % 2 == 0:
        raise UsageError(f"--steps must be odd and >= 3 (the middle point is t = 1/2), got {args.steps}")
    if args.pool_size < 2 * args.pairs + 1 or args.pool_size <= args.k:
        raise UsageError(f"--pool-size must exceed 2 x --pairs ({2 * args.pairs}) and --k ({args.k}), "
                         f"got {args.pool_size}")
    if args.k < 1 or args.iterations < 0 or not (math.isfinite(args.strength) and args.strength >= 0):
        raise UsageError(f"use --k >= 1, --iterations >= 0 and a finite --strength >= 0 (got {args.k}, "
                         f"{args.iterations}, {args.strength})")
    if args.out and os.path.splitext(args.out)[1] != ".md":
        raise UsageError(f"--out must name a .md file (the .json goes beside it), got {args.out!r}")


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    G_fn, D_fn, adapter = digits_functions("cpu")
    detector = FeatureDetector(load_classifier(device="cpu")).eval()
    pool = SeedPools(adapter.z_dim, args.pool_size, start=args.seed * 1_000_000, transform=adapter.transform("w"),
                     device="cpu").draw(0)
    w_avg = adapter.mean_latent("w").cpu()
    typical_w = float(torch.linalg.vector_norm(pool.latents - w_avg, dim=1).mean())
    m = compute_hubness(pool.latents, args.k, device="cpu").m
    rng = np.random.default_rng(args.seed)
    mid = args.steps // 2
    print(f"{args.pairs} pairs x {len(KINDS)} endpoint kinds x {len(METHODS)} methods, {args.steps} points; pool of "
          f"{args.pool_size} (seeds from {args.seed * 1_000_000}), k = {args.k}, largest hub value {int(m.max())}; "
          f"discriminator path: strength {args.strength:g}, {args.iterations} Adam iterations; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    results, chosen = {}, {}
    begin = time.perf_counter()
    for kind in KINDS:
        idx = endpoints(kind, pool, m, args.pairs, rng)
        chosen[kind] = dict(seeds=pool.seeds[idx].tolist(), m=m[idx].tolist())
        results[kind] = {label: {col: [] for col in COLUMNS} for label, *_ in METHODS}
        start = time.perf_counter()
        for p, (i, j) in enumerate(idx):
            za, zb, wa, wb = pool.z[i], pool.z[j], pool.latents[i], pool.latents[j]
            for label, space, method, _ in METHODS:
                tic = time.perf_counter()
                w, z = path_latents(adapter, G_fn, D_fn, space, method, za, zb, wa, wb, args.steps, args)
                with torch.no_grad():
                    images = G_fn(w)
                seconds = time.perf_counter() - tic
                if not bool(torch.isfinite(images).all()):
                    raise RuntimeError(f"{label} gave non-finite images for {kind} pair {p} "
                                       f"(seeds {pool.seeds[i]}, {pool.seeds[j]})")
                r = measure(images, detector, D_fn)
                r["s/path"] = seconds
                r["mid ‖z‖/√d"] = float(torch.linalg.vector_norm(z[mid].double())) / math.sqrt(adapter.z_dim) \
                    if z is not None else float("nan")
                r["mid W"] = float(torch.linalg.vector_norm(w[mid] - w_avg)) / typical_w
                for col in COLUMNS:
                    results[kind][label][col].append(r[col])
            if (p + 1) % max(1, args.pairs // 10) == 0 or p + 1 == args.pairs:
                print(f"{kind}: {p + 1}/{args.pairs} pairs, {time.perf_counter() - start:.0f} s", flush=True)
    elapsed = time.perf_counter() - begin
    table = format_table(results, args.pairs)
    text = findings(results)
    print()
    print(table)
    print()
    print(text)
    raw = dict(pairs=args.pairs, steps=args.steps, pool_size=args.pool_size, pool_start=args.seed * 1_000_000,
               k=args.k, strength=args.strength, iterations=args.iterations, seed=args.seed,
               typical_w_distance=typical_w, largest_hub_value=int(m.max()), endpoints=chosen,
               torch=torch.__version__, threads=torch.get_num_threads(),
               machine=platform.processor() or platform.machine(),
               results={kind: {label: {col: [None if isinstance(v, float) and math.isnan(v) else v for v in vals]
                                       for col, vals in results[kind][label].items()}
                               for label in results[kind]} for kind in KINDS})
    if args.out:
        out = os.path.abspath(args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        command = "python benchmarks/paths.py " + " ".join(args.argv)
        shrunk = "" if args.pairs >= 200 else (
            f" This run uses {args.pairs} pairs, fewer than the default 200, to stay within the time of a shared "
            f"CPU; the full run is `python benchmarks/paths.py` (about {elapsed / 60 * 200 / args.pairs:.0f} min "
            "at this speed).")
        body = (f"Latent paths on the embedded digits network: {args.pairs} pairs per endpoint kind, {args.steps} "
                f"points per path, pool of {args.pool_size} (k = {args.k}); discriminator path strength "
                f"{args.strength:g}, {args.iterations} Adam iterations. Mean ± sd over pairs; ratios are of means "
                f"against the linear path of the same space (W or Z). `{command.strip()}` "
                f"(CPU threads: {torch.get_num_threads()}, {elapsed / 60:.1f} min).{shrunk}\n\n{table}\n\n{text}\n")
        json_path = os.path.splitext(out)[0] + ".json"
        # Written beside the targets, then renamed: a failed run leaves no half-written results.
        for path, content in ((out, body), (json_path, json.dumps(raw, indent=1))):
            tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, path)
        print(f"\nwrote {out} and {json_path}")
    return dict(table=table, findings=text, **raw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="pairs of endpoints per endpoint kind")
    ap.add_argument("--steps", type=int, default=17, help="points per path, endpoints included (odd)")
    ap.add_argument("--pool-size", type=int, default=10000, help="seeds in the pool of endpoints")
    ap.add_argument("--k", type=int, default=5, help="k-NN list size of the hub values")
    ap.add_argument("--strength", type=float, default=1.0, help="discriminator path strength lambda")
    ap.add_argument("--iterations", type=int, default=40, help="Adam iterations of the discriminator path")
    ap.add_argument("--seed", type=int, default=0, help="pool start (seed x 1,000,000) and pairing seed")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="write the table (markdown) here and the raw values as .json beside it ('': do not write)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    args.argv = argv
    try:
        check_args(args)
        run(args)
    except UsageError as exc:
        print(f"paths.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
