"""k-NN benchmark: the engine's exact path next to scikit-learn brute force and faiss IndexFlatL2.

Every peer runs in the same process on the same data with the same thread count, and the table gives
the engine's time as a ratio to each (and to itself with the other way of merging score blocks: the numba
kernels of extensions/block_topk.py or ``torch.topk``) and to the floor: a bfloat16 GEMM over the upper
triangle of the n x n score matrix (n^2/2 * d multiply-adds, tiled, timed in the same run), the arithmetic
no exact search can skip. The engine runs in a process that has loaded the numba kernels (as a metric's
second pool does); the first search of a new process, which loads them only from about 22k latents, is
timed too. Also times the approximate path (pynndescent) with its measured recall@k, and the engine's
exact path at that size.

    python benchmarks/knn.py                       # n = 10k, 40k; approximate at 100k
    python benchmarks/knn.py --sizes 10000 --approx-n 0 --out table.md
    python benchmarks/knn.py --engine-only --sizes 1000000     # time and peak memory only
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from extensions import knn as knn_module  # noqa: E402
from extensions.knn import approximate_knn, exact_knn  # noqa: E402
from knn_cuda import bf16_floor, rate  # noqa: E402
from tables import count, print_table  # noqa: E402


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def overlap(a, b):
    """Mean fraction of shared neighbours between two (n, k) index arrays."""
    return float(np.mean([len(np.intersect1d(x, y)) for x, y in zip(a, b)]) / a.shape[1])


def first_search(n, dim, k):
    """Seconds of the first exact search in a new process (numba's start-up included where the search loads
    the kernels), and its merges."""
    code = (f"import sys, time, torch; sys.path.insert(0, {ROOT!r}); from extensions.knn import exact_knn; "
            f"x = torch.randn({n}, {dim}, generator=torch.Generator().manual_seed({n})); "
            f"t = time.perf_counter(); r = exact_knn(x, {k}); print(time.perf_counter() - t, r.info['merges'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1]


def engine_only(args):
    """One exact search per size: seconds, peak resident memory of the process, and the input's size."""
    import resource
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; d = {args.dim}, k = {args.k}, N(0, I) latents, default memory "
             f"budget", "", "| n | engine exact | hub values: largest m | input (float32) | peak resident memory |",
             "|---|---|---|---|---|"]
    for n in args.sizes:
        x = torch.randn(n, args.dim, generator=torch.Generator().manual_seed(n))
        start = time.perf_counter()
        res = exact_knn(x, args.k)
        t = time.perf_counter() - start
        m = np.bincount(res.indices.numpy().ravel(), minlength=n)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
        lines.append(f"| {n:,} | {t:.1f} s ({res.info['precision']}, {res.info['fallback_rows']} rows recomputed) | "
                     f"{m.max()} | {x.numel() * 4 / 2 ** 30:.2f} GiB | {peak:.2f} GiB |")
        print(lines[-1], flush=True)
        del x, res
    print_table(lines, args.out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=count(2), nargs="+", default=[10000, 40000])
    ap.add_argument("--dim", type=count(1), default=512)
    ap.add_argument("--k", type=count(1), default=5)
    ap.add_argument("--approx-n", type=count(0), default=100000, help="pool size for the approximate path (0: skip)")
    ap.add_argument("--repeats", type=count(1), default=3, help="best of this many runs below n = 100000, else 1")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--engine-only", action="store_true",
                    help="time the engine alone, once per size, with the process's peak memory (for n = 1M)")
    args = ap.parse_args(argv)
    if args.k >= min(args.sizes + ([args.approx_n] if args.approx_n else [])):
        ap.error(f"--k {args.k} must be below every size (--sizes, --approx-n)")
    if args.engine_only:
        return engine_only(args)

    threads = torch.get_num_threads()
    try:
        import faiss
        faiss.omp_set_num_threads(threads)
    except ImportError:
        faiss = None
    from sklearn.neighbors import NearestNeighbors

    k = args.k
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{threads} threads; d = {args.dim}, k = {k}, N(0, I) latents", "",
             "| n | engine exact (merges) | floor (bf16 GEMM, upper triangle) | engine / floor | first search of a "
             "fresh process | / floor | the other merges | ratio | sklearn brute | ratio | faiss IndexFlatL2 | ratio "
             "| same neighbours as faiss |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    exact_knn(torch.randn(2000, args.dim), k)  # warm-up: bf16 probe
    knn_module.CPU_MERGES = "numba"
    exact_knn(torch.randn(2000, args.dim), k)  # numba kernels compiled or loaded: from here on "auto" uses them
    knn_module.CPU_MERGES = "auto"
    for n in args.sizes:
        x = torch.randn(n, args.dim, generator=torch.Generator().manual_seed(n))
        xn = x.numpy()
        reps = args.repeats if n < 100000 else 1
        t_eng, res = best_of(lambda: exact_knn(x, k), reps)
        t_floor, flops = bf16_floor(n, args.dim, torch.device("cpu"), repeats=reps)
        t_first, first_merges = first_search(n, args.dim, k)
        # the same search with the other way of merging score blocks (numba kernels or torch.topk)
        merges = (res.info["merges"], "torch.topk" if res.info["merges"] == "numba" else "numba")
        knn_module.CPU_MERGES = merges[1]
        t_other, res_other = best_of(lambda: exact_knn(x, k), reps)
        knn_module.CPU_MERGES = "auto"
        if not (torch.equal(res.indices, res_other.indices) and torch.equal(res.distances, res_other.distances)):
            raise SystemExit(f"n = {n}: the numba kernels and torch.topk merges disagree")
        t_sk, _ = best_of(lambda: NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(xn).kneighbors(xn), reps)
        if faiss is not None:
            def run_faiss():
                index = faiss.IndexFlatL2(args.dim)
                index.add(xn)
                return index.search(xn, k + 1)[1]
            t_fa, fa_idx = best_of(run_faiss, reps)
            # drop each query itself (faiss returns it first unless a duplicate ties)
            fa = np.array([[j for j in row if j != i][:k] for i, row in enumerate(fa_idx)])
            fa_cols = f"{t_fa:.2f} s | {t_eng / t_fa:.2f} | {overlap(res.indices.numpy(), fa):.4f}"
        else:
            fa_cols = "not installed | - | -"
        lines.append(f"| {n:,} | {t_eng:.2f} s ({merges[0]}; {res.info['precision']}, {res.info['fallback_rows']} "
                     f"rows recomputed) | {t_floor:.3f} s ({rate(flops)}) | {t_eng / t_floor:.2f} | {t_first:.2f} s "
                     f"({first_merges}) | {t_first / t_floor:.2f} | {t_other:.2f} s "
                     f"({merges[1]}) | {t_eng / t_other:.2f} | {t_sk:.2f} s | "
                     f"{t_eng / t_sk:.2f} | {fa_cols} |")
        print(lines[-1], flush=True)
    if args.approx_n:
        n = args.approx_n
        x = torch.randn(n, args.dim, generator=torch.Generator().manual_seed(n))
        t_ex, ex = best_of(lambda: exact_knn(x, k), 1)
        t_ap, ap_res = best_of(lambda: approximate_knn(x, k, on_low_recall="warn", recall_sample=500), 1)
        true_recall = overlap(ap_res.indices.numpy(), ex.indices.numpy())
        lines += ["", "| n | engine exact | approximate (pynndescent) | ratio | recall@k measured (500 queries) | "
                  "recall@k over all queries |", "|---|---|---|---|---|---|",
                  f"| {n:,} | {t_ex:.1f} s | {t_ap:.1f} s | {t_ap / t_ex:.2f} | {ap_res.recall:.3f} | {true_recall:.3f} |"]
        print(lines[-1], flush=True)
    print_table(lines, args.out)


if __name__ == "__main__":
    main()
