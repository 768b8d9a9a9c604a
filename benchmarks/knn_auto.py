"""Where does approximate k-NN pay off? Exact search against pynndescent on Gaussian and W-like latents.

For each kind of data and pool size, in one run on the same data and thread count: the engine's exact
search, the approximate path with its shipped parameters (``approximate_knn``: NN-descent plus the recall
check it always runs), its recall@k over *all* queries (against the exact result), and what
``backend="auto"`` would cost if it chose the approximate path (below recall 0.95 it falls back to exact,
so that costs both). pynndescent's one-off numba compilation is excluded (a warm-up call). Each time is
given as wall time and, in brackets, the process's CPU time (all threads): on a machine shared with other
jobs the CPU time moves less than the wall time.

Data: ``gaussian`` (N(0, I), d = 512: Z of StyleGAN and most GANs), ``digits-w`` (W of the embedded network,
d = 64: a real 8-layer mapping network's output), ``sg3-w`` (W of a 1024-px stylegan3 Generator's 2-layer
mapping with random weights, d = 512; needs ``STYLEGAN3_DIR``).

Last, the times of the two largest sizes are fitted with power laws and the crossover (where the approximate
path would become faster) is extrapolated: a lead for a longer run, not a measurement.

    python benchmarks/knn_auto.py --sizes 20000 50000                # a few minutes on 2 cores
    python benchmarks/knn_auto.py --sizes 50000 100000 200000 --data digits-w gaussian
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
from extensions.knn import approximate_knn, exact_knn  # noqa: E402
from tables import print_table  # noqa: E402

RECALL_MIN = 0.95
DATA = ("gaussian", "digits-w", "sg3-w")


def latents(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """n latents of the given kind, float32 on the CPU."""
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(n, 512, generator=g)
    if kind == "digits-w":
        from extensions.digits import load_generator
        from extensions.stylegan.adapter import make_adapter
        adapter = make_adapter(load_generator(device="cpu"))
        z = torch.randn(n, adapter.z_dim, generator=g)
        with torch.no_grad():
            return torch.cat([adapter.map(z[i:i + 4096]) for i in range(0, n, 4096)]).float()
    if kind == "sg3-w":
        from extensions.stylegan.adapter import make_adapter
        from extensions.stylegan.checkout import activate, find_checkout
        activate(find_checkout())
        from training import networks_stylegan3
        torch.manual_seed(0)
        G = networks_stylegan3.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                                         mapping_kwargs=dict(num_layers=2)).eval().requires_grad_(False)
        adapter = make_adapter(G)
        z = torch.randn(n, 512, generator=g)
        with torch.no_grad():
            return torch.cat([adapter.map(z[i:i + 4096]) for i in range(0, n, 4096)]).float()
    raise ValueError(f"unknown data {kind!r}; use one of {', '.join(DATA)}")


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true k neighbours found, over all rows."""
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(found, truth)]) / k)


def crossover(ns, t_exact, t_approx):
    """Extrapolated n where the approximate path becomes faster, from power laws through the last two sizes."""
    if len(ns) < 2:
        return "needs two sizes"
    (n0, n1), (e0, e1), (a0, a1) = ns[-2:], t_exact[-2:], t_approx[-2:]
    p, q = math.log(e1 / e0) / math.log(n1 / n0), math.log(a1 / a0) / math.log(n1 / n0)
    if a1 <= e1:
        return f"already faster at {n1:,} (exact ~ n^{p:.2f}, approx ~ n^{q:.2f})"
    if p <= q:
        return f"never on this trend (exact ~ n^{p:.2f}, approx ~ n^{q:.2f})"
    return f"~{n1 * (a1 / e1) ** (1 / (p - q)):,.0f} (exact ~ n^{p:.2f}, approx ~ n^{q:.2f})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000])
    ap.add_argument("--data", nargs="+", choices=DATA,
                    default=["gaussian", "digits-w"] + (["sg3-w"] if os.environ.get("STYLEGAN3_DIR") else []))
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {threads} threads; k = {args.k}; shipped NN-descent parameters", "",
             "| data | d | n | exact | approximate (incl. its recall check) | approx / exact | recall@k, all queries "
             "| recall@k, measured (256 queries) | backend='auto' would cost if approximate |",
             "|---|---|---|---|---|---|---|---|---|"]
    approximate_knn(torch.randn(2000, 64), args.k, on_low_recall="warn")  # numba compilation
    exact_knn(torch.randn(2000, 64), args.k, device="cpu")
    leads = []
    for kind in args.data:
        ns, te, ta = [], [], []
        for n in args.sizes:
            x = latents(kind, n, seed=n)
            start, cpu = time.perf_counter(), time.process_time()
            ex = exact_knn(x, args.k, device="cpu")
            t_ex, c_ex = time.perf_counter() - start, time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            res = approximate_knn(x, args.k, on_low_recall="warn", recall_threshold=0.0)
            t_ap, c_ap = time.perf_counter() - start, time.process_time() - cpu
            r_all = recall(res.indices.numpy(), ex.indices.numpy())
            auto_cost = t_ap if res.recall >= RECALL_MIN else t_ap + t_ex
            ns.append(n), te.append(t_ex), ta.append(t_ap)
            lines.append(f"| {kind} | {x.shape[1]} | {n:,} | {t_ex:.1f} s ({c_ex:.1f} s) | "
                         f"{t_ap:.1f} s ({c_ap:.1f} s) | "
                         f"{t_ap / t_ex:.2f} ({c_ap / c_ex:.2f}) | "
                         f"{r_all:.3f} | {res.recall:.3f} | {auto_cost:.1f} s"
                         f"{'' if res.recall >= RECALL_MIN else ' (falls back to exact)'} |")
            print(lines[-1], flush=True)
        leads.append(f"- {kind}: approximate faster than exact from n = {crossover(ns, te, ta)}")
    print_table(lines + ["", "Extrapolated crossover (power laws through the two largest sizes; a lead, "
                          "not a measurement):"] + leads, args.out)


if __name__ == "__main__":
    main()
