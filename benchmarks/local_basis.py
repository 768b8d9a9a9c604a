"""Local coordinates of W on the embedded digits generator: traversals, warpage and the geometry of hubs.

The partial network is :class:`extensions.paths.partial.PartialNetwork` (default block ``auto``: b8 of the
16-px embedded network, feature map 32 x 8 x 8; ``--layers all``). From one pool of ``--pool-size`` seeds
(W space, hub values with k = ``--k``):

1. *Traversals.* For ``--seeds`` seeds drawn from the pool and each of the top ``--directions`` local
   directions, the iterative curve (:func:`curve_traversal`) and the straight line along the same direction
   (:func:`linear_traversal`), ``--steps`` steps each way of length ``--max-distance`` x (typical W distance)
   / steps, where the typical W distance is the pool's mean ``|w - w_avg|``. Every image (the full
   generator, the moved latent in every ws row) is judged by the embedded classifier (largest softmax
   probability, images converted to uint8 as ``benchmarks/quality.py`` does). Both paths have the same
   arc length at step s; the curve's straight-line displacement from the seed is shorter where it bends,
   so the line is also judged only as far from the seed as the curve got ("same displacement").
2. *Warpage.* The Grassmannian distance (geodesic and projection, :func:`grassmann_distance`) between the
   top-``--directions`` local subspaces at each seed and at the seed moved by ``t`` x typical distance in a
   random direction, for several t, and between the seeds of consecutive pairs; against the distance of two
   uniformly random subspaces of the same dimension (flat W: 0; unrelated subspaces: that baseline).
3. *Hubs vs anti-hubs.* The full spectrum of the local basis (``gram``, all w_dim singular values) at the
   ``--hubs`` largest and the ``--hubs`` smallest hub values of the pool, at the random seeds, and at one
   non-hub per hub (hub value at most the pool's median) at the hub's distance to w_avg (hubs lie near
   w_avg, so this control separates hubness from that distance):
   sigma_1, sigma_5 / sigma_1, the share of ``sum sigma^2`` in the top 5, and the effective rank
   ``exp(H(p))``, ``p = sigma / sum sigma`` (Roy & Vetterli 2007).
4. *Time* per local basis on the CPU (full ``gram`` basis and top-``--directions`` ``krylov`` basis).

``--stylegan3-sized`` instead times one local basis of a stylegan3-t generator of the official
configuration's size with random weights (``benchmarks/sized_networks.py``; needs the official code,
``--stylegan3 DIR`` or ``STYLEGAN3_DIR``), e.g. 1024 px on CUDA.

    python benchmarks/local_basis.py                    # 100 seeds, 5 directions, pool of 10,000 (CPU)
    python benchmarks/local_basis.py --seeds 4 --hubs 4 --steps 3 --out ''          # a quick check
    STYLEGAN3_DIR=~/stylegan3 python benchmarks/local_basis.py --stylegan3-sized --device cuda   # 1024 px
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
from extensions._checks import HubnessError  # noqa: E402
from extensions.paths import (curve_traversal, grassmann_distance, linear_traversal, local_basis,  # noqa: E402
                              principal_angles)
from extensions.paths.partial import PartialNetwork  # noqa: E402
from extensions.render import atomic_file  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "local_basis.md")
#: Perturbation sizes of the warpage curve, in typical W distances.
WARP_DISTANCES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
GROUPS = ("random", "hubs", "anti-hubs", "matched non-hubs")
#: Comparisons of the geometry table and findings: (group, control).
CONTRASTS = (("hubs", "anti-hubs"), ("hubs", "matched non-hubs"))
GEOMETRY = ("sigma_1", "sigma_5 / sigma_1", "top-5 energy", "effective rank")


class UsageError(Exception):
    """Bad command-line input: reported as one line."""


def mean_sd(values) -> tuple:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def mean_se(values) -> tuple:
    mean, sd = mean_sd(values)
    return mean, sd / math.sqrt(max(1, np.asarray(values).size))


def geometry(singular_values: torch.Tensor) -> dict:
    """The spectrum's summary numbers (see the module docstring)."""
    s = singular_values.double().cpu()
    p = s / s.sum()
    entropy = -float((p[p > 0] * p[p > 0].log()).sum())
    energy = s ** 2
    return {"sigma_1": float(s[0]), "sigma_5 / sigma_1": float(s[min(4, len(s) - 1)] / s[0]),
            "top-5 energy": float(energy[:5].sum() / energy.sum()), "effective rank": math.exp(entropy)}


def matched_controls(targets: np.ndarray, candidates: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """For each target, the unused candidate whose ``radius`` (distance to w_avg) is nearest (ties: lower index)."""
    free = np.ones(len(candidates), dtype=bool)
    out = []
    for i in targets:
        gap = np.where(free, np.abs(radius[candidates] - radius[i]), np.inf)
        j = int(np.argmin(gap))
        free[j] = False
        out.append(candidates[j])
    return np.asarray(out)


def random_subspace_distance(d: int, r: int, samples: int, gen: torch.Generator) -> tuple:
    """Mean geodesic and projection distance between two uniformly random r-dimensional subspaces of R^d."""
    geo, proj = [], []
    for _ in range(samples):
        U, _ = torch.linalg.qr(torch.randn(d, r, generator=gen, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(d, r, generator=gen, dtype=torch.float64))
        geo.append(grassmann_distance(U, V))
        proj.append(grassmann_distance(U, V, "projection"))
    return float(np.mean(geo)), float(np.mean(proj))


# ------------------------------------------------------------------------------------------ the digits run

def run(args) -> dict:
    from extensions.digits import FeatureDetector, load_classifier, load_generator
    from extensions.hubness import compute_hubness
    from extensions.pools import SeedPools
    from extensions.selection import select_top
    from extensions.stylegan.adapter import make_adapter

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    G = load_generator(device="cpu")
    adapter = make_adapter(G)
    detector = FeatureDetector(load_classifier(device="cpu")).eval()
    pool = SeedPools(adapter.z_dim, args.pool_size, start=args.seed * 1_000_000, transform=adapter.transform("w"),
                     device="cpu").draw(0)
    w_avg = adapter.mean_latent("w").cpu()
    latents = pool.latents
    typical = float(torch.linalg.vector_norm(latents - w_avg, dim=1).mean())
    m = compute_hubness(latents, args.k, device="cpu").m
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    chosen = {"random": rng.choice(len(pool.seeds), args.seeds, replace=False),
              "hubs": select_top(m, args.hubs),
              "anti-hubs": np.argsort(m, kind="stable")[:args.hubs]}
    radius = torch.linalg.vector_norm(latents - w_avg, dim=1).numpy()
    chosen["matched non-hubs"] = matched_controls(chosen["hubs"], np.flatnonzero(m <= np.median(m)), radius)
    d, r, steps = latents.shape[1], args.directions, args.steps
    h = args.max_distance * typical / steps

    def partial(i):
        return PartialNetwork(G, latents[i], block=args.block, layers=args.layers, device="cpu")

    def confidence(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            uint8 = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
            return detector.probabilities(detector(uint8)).max(dim=1).values.double().numpy()

    probe = partial(int(chosen["random"][0]))
    local_basis(probe, latents[int(chosen["random"][0])], r, device="cpu")        # warm-up (first call traces)
    print(f"{args.seeds} seeds x {r} directions, {steps} steps of {h:.4f} each way (max distance "
          f"{args.max_distance:g} x typical |w - w_avg| = {typical:.3f}); {args.hubs} hubs and anti-hubs of a pool "
          f"of {args.pool_size} (k = {args.k}, largest hub value {int(m.max())}); partial network to "
          f"{probe.block} {probe.output_shape}, layers {args.layers}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    # 1 + 2: traversals and warpage at the random seeds
    conf = {k: np.zeros((args.seeds, r, 2 * steps + 1)) for k in ("linear", "iterative", "linear, same displacement")}
    displacement = np.zeros((args.seeds, r, 2 * steps + 1))
    warp = {t: {"geodesic": [], "projection": []} for t in WARP_DISTANCES}
    seed_pairs = {"geodesic": [], "projection": [], "distance": []}
    times = {"gram": [], "krylov": [], "curve": []}
    krylov_angle = []                                   # largest principal angle, krylov top-r vs gram
    bases = []
    begin = time.perf_counter()
    for n, i in enumerate(chosen["random"]):
        net, w0 = partial(int(i)), latents[int(i)]
        top = local_basis(net, w0, r, device="cpu")
        bases.append(top.basis)
        for index in range(r):
            tic = time.perf_counter()
            curve = curve_traversal(net, w0, index, steps, h, device="cpu")
            times["curve"].append(time.perf_counter() - tic)
            line = linear_traversal(w0, top.basis[:, index], steps, h)
            conf["iterative"][n, index] = confidence(net.images(curve))
            conf["linear"][n, index] = confidence(net.images(line))
            reach = torch.linalg.vector_norm(curve - w0, dim=1)
            displacement[n, index] = reach.numpy()
            # the straight line only as far from the seed as the curve got (the curve bends back towards it)
            signs = torch.sign(torch.arange(-steps, steps + 1, dtype=torch.float32))
            short = w0 + (signs * reach)[:, None] * top.basis[:, index]
            conf["linear, same displacement"][n, index] = confidence(net.images(short))
        for t in WARP_DISTANCES:
            u = torch.randn(d, generator=gen)
            other = local_basis(net, w0 + t * typical * u / torch.linalg.vector_norm(u), r, device="cpu").basis
            for metric in ("geodesic", "projection"):
                warp[t][metric].append(grassmann_distance(top.basis, other, metric))
        if (n + 1) % max(1, args.seeds // 10) == 0 or n + 1 == args.seeds:
            print(f"traversals and warpage: {n + 1}/{args.seeds} seeds, {time.perf_counter() - begin:.0f} s",
                  flush=True)
    for a in range(0, args.seeds - 1, 2):
        i, j = int(chosen["random"][a]), int(chosen["random"][a + 1])
        seed_pairs["distance"].append(float(torch.linalg.vector_norm(latents[i] - latents[j])) / typical)
        for metric in ("geodesic", "projection"):
            seed_pairs[metric].append(grassmann_distance(bases[a], bases[a + 1], metric))
    baseline = random_subspace_distance(d, r, 500, gen)

    # 3: full spectra of random seeds, hubs and anti-hubs
    spectra = {g: {c: [] for c in GEOMETRY + ("m", "|w - w_avg|")} for g in GROUPS}
    for group in GROUPS:
        for i in chosen[group]:
            net, w0 = partial(int(i)), latents[int(i)]
            tic = time.perf_counter()
            full = local_basis(net, w0, method="gram", device="cpu")
            times["gram"].append(time.perf_counter() - tic)
            tic = time.perf_counter()
            top = local_basis(net, w0, r, method="krylov", device="cpu")
            times["krylov"].append(time.perf_counter() - tic)
            krylov_angle.append(float(principal_angles(top.basis, full.basis[:, :r]).max()))
            for key, value in geometry(full.singular_values).items():
                spectra[group][key].append(value)
            spectra[group]["m"].append(float(m[int(i)]))
            spectra[group]["|w - w_avg|"].append(float(torch.linalg.vector_norm(w0 - w_avg)) / typical)
        print(f"spectra: {group} done, {time.perf_counter() - begin:.0f} s", flush=True)
    elapsed = time.perf_counter() - begin

    tables = [traversal_table(conf, displacement, h, typical, steps), warp_table(warp, seed_pairs, baseline, r),
              geometry_table(spectra, args.hubs), time_table(times, d, r, probe, krylov_angle)]
    text = findings(conf, warp, seed_pairs, baseline, spectra, steps, r)
    report = "\n\n".join(tables) + "\n\n" + text
    print()
    print(report)
    raw = dict(seeds=args.seeds, directions=r, steps=steps, step_size=h, max_distance=args.max_distance,
               typical_w_distance=typical, pool_size=args.pool_size, pool_start=args.seed * 1_000_000, k=args.k,
               hubs=args.hubs, block=probe.block, layers=args.layers, seed=args.seed,
               chosen={g: pool.seeds[chosen[g]].tolist() for g in GROUPS},
               confidence={k: v.tolist() for k, v in conf.items()}, displacement=displacement.tolist(),
               warpage={str(t): v for t, v in warp.items()}, seed_pairs=seed_pairs,
               random_subspaces=dict(geodesic=baseline[0], projection=baseline[1]), spectra=spectra,
               times=times, krylov_largest_angle=krylov_angle, torch=torch.__version__, threads=torch.get_num_threads(),
               machine=platform.processor() or platform.machine(), minutes=elapsed / 60)
    if args.out:
        command = "python benchmarks/local_basis.py " + " ".join(args.argv)
        body = (f"Local bases of the embedded digits network (partial network to {probe.block}, layers "
                f"{args.layers}): {args.seeds} seeds, top {r} directions, {steps} steps each way up to "
                f"{args.max_distance:g} typical W distances; {args.hubs} hubs and anti-hubs of a pool of "
                f"{args.pool_size} (k = {args.k}). `{command.strip()}` (CPU threads: {torch.get_num_threads()}, "
                f"{elapsed / 60:.1f} min).\n\n{report}\n")
        write_results(args.out, body, raw)
    return dict(report=report, **raw)


def traversal_table(conf, displacement, h, typical, steps) -> str:
    lines = ["Classifier confidence along the traversals (mean over seeds, directions and both sides; paired "
             "difference iterative - linear: mean ± standard error over seeds). Linear at the same displacement: "
             "the straight line only as far from the seed as the iterative curve got.", "",
             "| step | arc length ÷ typical | linear conf | iterative conf | iterative - linear | linear < 0.5 | "
             "iterative < 0.5 | iterative displacement ÷ arc | linear conf, same displacement | iterative - that |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in range(steps + 1):
        cols = [steps - s, steps + s] if s else [steps]
        lin, it = conf["linear"][:, :, cols], conf["iterative"][:, :, cols]
        diff, se = mean_se((it - lin).mean(axis=(1, 2)))
        same = conf["linear, same displacement"][:, :, cols]
        diff2, se2 = mean_se((it - same).mean(axis=(1, 2)))
        disp = displacement[:, :, cols].mean() / (s * h) if s else float("nan")
        lines.append(f"| {s} | {s * h / typical:.3f} | {lin.mean():.3f} | {it.mean():.3f} | {diff:+.3f} ± {se:.3f} | "
                     f"{(lin < 0.5).mean():.1%} | {(it < 0.5).mean():.1%} | "
                     + ("–" if not s else f"{disp:.3f}") + f" | {same.mean():.3f} | {diff2:+.3f} ± {se2:.3f} |")
    return "\n".join(lines)


def warp_table(warp, seed_pairs, baseline, r) -> str:
    lines = [f"Warpage: Grassmannian distance between top-{r} local subspaces (mean ± sd; orthogonal subspaces: "
             f"geodesic {math.pi / 2 * math.sqrt(r):.3f}, projection {math.sqrt(r):.3f})", "",
             "| pair | W distance ÷ typical | pairs | geodesic | projection |", "|---|---|---|---|---|"]
    for t, v in warp.items():
        g, p = mean_sd(v["geodesic"]), mean_sd(v["projection"])
        lines.append(f"| seed, seed + random step | {t:g} | {len(v['geodesic'])} | {g[0]:.3f} ± {g[1]:.3f} | "
                     f"{p[0]:.3f} ± {p[1]:.3f} |")
    if seed_pairs["distance"]:
        dist = mean_sd(seed_pairs["distance"])
        g, p = mean_sd(seed_pairs["geodesic"]), mean_sd(seed_pairs["projection"])
        lines.append(f"| two seeds | {dist[0]:.3f} ± {dist[1]:.3f} | {len(seed_pairs['distance'])} | "
                     f"{g[0]:.3f} ± {g[1]:.3f} | {p[0]:.3f} ± {p[1]:.3f} |")
    lines.append(f"| two random subspaces | – | 500 | {baseline[0]:.3f} | {baseline[1]:.3f} |")
    return "\n".join(lines)


def geometry_table(spectra, hubs) -> str:
    lines = ["Local geometry of hubs and anti-hubs (full local basis; mean ± sd). Matched non-hubs: for each hub, "
             "the latent of the pool with m at most the median whose ‖w - w_avg‖ is nearest to the hub's.", "",
             "| latents | n | hub value m | ‖w - w_avg‖ ÷ typical | " + " | ".join(GEOMETRY) + " |",
             "|---|---|---|---|" + "---|" * len(GEOMETRY)]
    for group in GROUPS:
        s = spectra[group]
        cells = [f"{a:.3f} ± {b:.3f}" for a, b in (mean_sd(s[c]) for c in ("|w - w_avg|",) + GEOMETRY)]
        lines.append(f"| {group} | {len(s['m'])} | {np.mean(s['m']):.1f} | " + " | ".join(cells) + " |")
    for group, control in CONTRASTS:
        cells = []
        for c in ("|w - w_avg|",) + GEOMETRY:
            diff, se = welch(spectra[group][c], spectra[control][c])
            cells.append(f"{diff:+.3f} ± {se:.3f}")
        lines.append(f"| {group} - {control} (± se) | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_table(times, d, r, probe, krylov_angle) -> str:
    lines = [f"Time per local basis on the CPU (partial network to {probe.block}, d = {d}; median over calls). "
             f"The krylov top-{r} subspaces agree with the gram ones within {max(krylov_angle):.1e} rad "
             f"(largest principal angle over {len(krylov_angle)} latents).", "",
             "| what | calls | s (median) | s (mean) |", "|---|---|---|---|"]
    labels = {"gram": f"full basis (gram, {d} directions)", "krylov": f"top {r} (krylov)",
              "curve": "one curve (all its bases)"}
    for key, label in labels.items():
        if times[key]:
            lines.append(f"| {label} | {len(times[key])} | {np.median(times[key]):.4f} | {np.mean(times[key]):.4f} |")
    return "\n".join(lines)


def welch(a, b) -> tuple:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = math.sqrt((a.var(ddof=1) / a.size if a.size > 1 else 0) + (b.var(ddof=1) / b.size if b.size > 1 else 0))
    return float(a.mean() - b.mean()), se


def findings(conf, warp, seed_pairs, baseline, spectra, steps, r) -> str:
    """'What held / what did not', worded from the measured numbers only (held: beyond 2 standard errors)."""
    out = ["**What held / what did not** (held = beyond 2 standard errors)", ""]
    far = [0, 2 * steps]                                            # the two ends of each path
    diff, se = mean_se((conf["iterative"][:, :, far] - conf["linear"][:, :, far]).mean(axis=(1, 2)))
    claim = "held" if diff > 2 * se else "did not hold (it is lower)" if diff < -2 * se else \
        "did not hold (no difference beyond 2 standard errors)"
    out.append(f"* Iterative traversal stays realistic longer than the straight line (the seed's claim): {claim}: "
               f"confidence at the largest distance {conf['iterative'][:, :, far].mean():.3f} vs "
               f"{conf['linear'][:, :, far].mean():.3f} ({diff:+.3f} ± {se:.3f}).")
    diff, se = mean_se((conf["iterative"][:, :, far] - conf["linear, same displacement"][:, :, far]).mean(axis=(1, 2)))
    out.append(f"* ... and against the straight line only as far from the seed as the curve got "
               f"({'higher' if diff > 2 * se else 'lower' if diff < -2 * se else 'no difference'} beyond 2 standard "
               f"errors): {conf['iterative'][:, :, far].mean():.3f} vs "
               f"{conf['linear, same displacement'][:, :, far].mean():.3f} ({diff:+.3f} ± {se:.3f}).")
    geo = [np.mean(warp[t]["geodesic"]) for t in WARP_DISTANCES]
    rising = all(b >= a for a, b in zip(geo, geo[1:]))
    out.append(f"* The local subspaces turn as W distance grows ({'monotonically' if rising else 'not monotonically'}"
               f"): geodesic {geo[0]:.3f} at {WARP_DISTANCES[0]:g} typical distances, {geo[-1]:.3f} at "
               f"{WARP_DISTANCES[-1]:g}" + (f", {np.mean(seed_pairs['geodesic']):.3f} between two seeds"
                                            if seed_pairs["geodesic"] else "")
               + f"; two random top-{r} subspaces: {baseline[0]:.3f}.")
    diff, se = welch(spectra["hubs"]["|w - w_avg|"], spectra["anti-hubs"]["|w - w_avg|"])
    out.append(f"* Hubs lie {'closer to' if diff < 0 else 'farther from'} w_avg than anti-hubs: ‖w - w_avg‖ ÷ "
               f"typical {np.mean(spectra['hubs']['|w - w_avg|']):.3f} vs "
               f"{np.mean(spectra['anti-hubs']['|w - w_avg|']):.3f} ({diff:+.3f} ± {se:.3f}); the matched non-hubs "
               f"have {np.mean(spectra['matched non-hubs']['|w - w_avg|']):.3f}, so a difference that remains "
               "against them is not one of distance to w_avg.")
    for group, control in CONTRASTS:
        for c in ("effective rank", "top-5 energy", "sigma_1"):
            diff, se = welch(spectra[group][c], spectra[control][c])
            verdict = "differ" if abs(diff) > 2 * se else "do not differ beyond 2 standard errors"
            out.append(f"* {group.capitalize()} and {control} {verdict} in {c}: {np.mean(spectra[group][c]):.3f} "
                       f"vs {np.mean(spectra[control][c]):.3f} ({diff:+.3f} ± {se:.3f}).")
    return "\n".join(out)


def write_results(out: str, body: str, raw: dict) -> None:
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json_path = os.path.splitext(out)[0] + ".json"
    for path, content in ((out, body), (json_path, json.dumps(raw, indent=1))):
        with atomic_file(path, "w") as f:
            f.write(content)
    print(f"\nwrote {out} and {json_path}")


# ---------------------------------------------------------------------------------- a stylegan3-sized network

def run_sized(args) -> dict:
    """Time local bases of a stylegan3-t generator of the official size with random weights."""
    from extensions._checks import resolve_device
    from sized_networks import build_network

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    G, _ = build_network(args.cfg, resolution=args.resolution, stylegan3=args.stylegan3, device=device,
                         channel_base=args.cbase, channel_max=args.cmax, seed=args.seed)
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
        w0 = G.mapping(z, None)[0, 0]
    net = PartialNetwork(G, w0, block=args.block, layers=args.layers, device=device)
    m = int(np.prod(net.output_shape))
    runs = [("krylov", args.directions)] + ([("gram", None)] if args.full else [])
    lines = [f"Local basis of a {args.resolution}-px {args.cfg} generator with random weights (channel base "
             f"{args.cbase}, max {args.cmax}) on {device}"
             + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
             + f": partial network to {net.block}, feature map {net.output_shape} (m = {m:,}), d = {G.w_dim}, "
             f"memory budget {args.memory_budget_mb:g} MiB; torch {torch.__version__}", "",
             "| method | rank | J^T J products | s per basis (median) | s (min) | peak GPU memory |",
             "|---|---|---|---|---|---|"]
    results = []
    for method, rank in runs:
        secs, res = [], None
        for rep in range(args.repeats + 1):                     # the first call traces and warms up: not counted
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            tic = time.perf_counter()
            res = local_basis(net, w0, rank, method=method, memory_budget_mb=args.memory_budget_mb, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if rep:
                secs.append(time.perf_counter() - tic)
            print(f"{method}: call {rep + 1}/{args.repeats + 1}, {time.perf_counter() - tic:.2f} s", flush=True)
        peak = f"{torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB" if device.type == "cuda" else "–"
        lines.append(f"| {method} | {rank or G.w_dim} | {res.products} | {np.median(secs):.3f} | {min(secs):.3f} | "
                     f"{peak} |")
        results.append(dict(method=method, rank=rank or G.w_dim, products=res.products, seconds=secs,
                            singular_values=res.singular_values.cpu().tolist()))
    table = "\n".join(lines)
    print()
    print(table)
    return dict(table=table, results=results)


# ------------------------------------------------------------------------------------------------------ CLI

def check_args(args) -> None:
    if args.directions < 1:
        raise UsageError(f"--directions must be >= 1, got {args.directions}")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    if not (math.isfinite(args.memory_budget_mb) and args.memory_budget_mb > 0):
        raise UsageError(f"--memory-budget-mb must be a finite number > 0, got {args.memory_budget_mb}")
    if args.stylegan3_sized:
        return
    if args.seeds < 2 or args.hubs < 2:
        raise UsageError(f"--seeds and --hubs must be >= 2 (a standard deviation needs two), got {args.seeds}, "
                         f"{args.hubs}")
    if args.steps < 1 or not (math.isfinite(args.max_distance) and args.max_distance > 0):
        raise UsageError(f"use --steps >= 1 and a finite --max-distance > 0, got {args.steps}, {args.max_distance}")
    if args.pool_size <= max(args.seeds, 2 * args.hubs, args.k):
        raise UsageError(f"--pool-size must exceed --seeds, 2 x --hubs and --k, got {args.pool_size}")
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    if args.out and os.path.splitext(args.out)[1] != ".md":
        raise UsageError(f"--out must name a .md file (the .json goes beside it), got {args.out!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="random seeds of the traversals and the warpage curve")
    ap.add_argument("--directions", type=int, default=5, help="top local directions")
    ap.add_argument("--steps", type=int, default=8, help="steps each way of every traversal")
    ap.add_argument("--max-distance", type=float, default=2.0,
                    help="arc length of the last step, in typical W distances (mean |w - w_avg| of the pool)")
    ap.add_argument("--hubs", type=int, default=100, help="hubs and anti-hubs whose local geometry is compared")
    ap.add_argument("--pool-size", type=int, default=10000, help="seeds in the pool (hub values)")
    ap.add_argument("--k", type=int, default=5, help="k-NN list size of the hub values")
    ap.add_argument("--block", default="auto", help="last synthesis block of the partial network")
    ap.add_argument("--layers", default="all", help="ws rows a latent moves: all, coarse, middle, fine")
    ap.add_argument("--seed", type=int, default=0, help="pool start (seed x 1,000,000) and random choices")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="write the tables (markdown) here and the raw values as .json beside it ('': do not write)")
    sized = ap.add_argument_group("--stylegan3-sized: time a basis of a full-size generator with random weights")
    sized.add_argument("--stylegan3-sized", action="store_true", help="run only this timing")
    sized.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    sized.add_argument("--cfg", default="stylegan3-t", choices=("stylegan3-t", "stylegan3-r", "stylegan2"))
    sized.add_argument("--resolution", type=int, default=1024, help="image size (px)")
    sized.add_argument("--cbase", type=int, default=32768, help="channel base (train.py --cbase)")
    sized.add_argument("--cmax", type=int, default=512, help="channel maximum (train.py --cmax)")
    sized.add_argument("--stylegan3", default=None, help="official stylegan3 checkout (default: $STYLEGAN3_DIR)")
    sized.add_argument("--repeats", type=int, default=3, help="timed calls per method (after one warm-up call)")
    sized.add_argument("--full", action="store_true", help="also time the full basis (gram, w_dim directions)")
    sized.add_argument("--memory-budget-mb", type=float, default=256.0, help="local_basis memory budget")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    args.argv = argv
    try:
        check_args(args)
        if args.stylegan3_sized:
            run_sized(args)
        else:
            run(args)
    except (UsageError, HubnessError) as exc:
        print(f"local_basis.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
