"""GPU k-NN benchmark: the engine's exact path against a float32 GEMM + top-k peer, faiss-gpu and the floor.

For each pool size n (d = 512 Gaussian latents, k = 5, self excluded), in one run on the same data:

* the engine's exact search (``exact_knn``: bfloat16 screen, float32 re-rank, exact result);
* a plain float32 peer: one GEMM + ``torch.topk`` per row block (no TF32), the usual torch recipe. Above
  ``--peer-full-max`` it runs on ``--check-rows`` random query rows only and its time is extrapolated to
  all n rows (the table says so);
* faiss ``GpuIndexFlatL2`` when faiss with GPU support imports;
* the floor: a bfloat16 GEMM over the upper triangle of the n x n score matrix (n^2/2 * d multiply-adds),
  tiled, timed in the same run. No exact method does less arithmetic than this GEMM.

Neighbour sets are compared with the peer on every row (on the checked rows above ``--peer-full-max``).
Rows that differ are near-ties: the table gives the largest relative gap between the two k-th distances
(float64) and in how many rows the engine's set is the closer one by its own definition (float32 distances
from differences, which the peer's GEMM expansion |x|^2 - 2<x, y> + |y|^2 rounds differently).
Peak memory is ``torch.cuda.max_memory_allocated`` above the input latents.

``--e2e`` times a 10,000-latent pool end to end (seeds -> Z -> W by the mapping network -> k-NN -> hub
values) for a 1024-px stylegan3 Generator with random weights, built from the official code found through
``STYLEGAN3_DIR`` (mapping with 2 layers as in the stylegan3-t/r configs; only the mapping runs).

    python benchmarks/knn_cuda.py                                   # n = 10k, 100k, 1M on CUDA
    STYLEGAN3_DIR=~/stylegan3 python benchmarks/knn_cuda.py --e2e
    python benchmarks/knn_cuda.py --device cpu --sizes 2000         # smoke test without a GPU
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
from extensions.knn import exact_knn, strict_matmul  # noqa: E402

TARGET_N, TARGET_S = 1_000_000, 10.0


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, repeats=1):
    """Best wall time of ``repeats`` calls (synchronised), the last output and peak memory above the start."""
    best, out, peak = float("inf"), None, 0
    for _ in range(repeats):
        out = None
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        start = time.perf_counter()
        out = fn()
        sync(dev)
        best = min(best, time.perf_counter() - start)
        if dev.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(dev) - base)
    return best, out, peak


def torch_fp32_peer(x, k, rows, budget_bytes=2 ** 31):
    """k nearest rows of ``x`` for the query rows ``rows``: float32 GEMM + topk per block, self excluded."""
    n = x.shape[0]
    sq = (x * x).sum(1)
    step = max(1, min(8192, budget_bytes // (4 * n)))
    out = []
    with strict_matmul(x.device):
        for r0 in range(0, len(rows), step):
            r = rows[r0:r0 + step]
            d = torch.addmm(sq[None], x[r], x.T, alpha=-2).add_(sq[r, None])
            d[torch.arange(len(r), device=x.device), r] = float("inf")
            out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out)


def faiss_gpu_knn(x, k):
    """faiss GpuIndexFlatL2 self-k-NN (self dropped), or a string saying why it cannot run."""
    try:
        import faiss
    except ImportError:
        return "not installed"
    if not hasattr(faiss, "StandardGpuResources"):
        return "installed without GPU support"
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatL2(res, x.shape[1])
    xn = x.cpu().numpy()

    def run():
        index.reset()
        index.add(xn)
        return index.search(xn, k + 1)[1]
    return run


def drop_self(idx, k):
    """(n, k+1) neighbour lists that may contain the query itself -> (n, k) without it."""
    n = idx.shape[0]
    own = idx == np.arange(n)[:, None]
    keep = ~own
    keep[own.sum(1) == 0, -1] = False  # the query was not returned: drop the farthest instead
    return idx[keep].reshape(n, k)


def compare(x, rows, eng_idx, peer_idx):
    """Rows whose neighbour sets differ, and why.

    Returns (rows differing, of which the engine's k-th distance <= the peer's in float32 from differences,
    the engine's definition; largest relative gap of the two k-th distances in float64).
    """
    a = torch.sort(eng_idx, 1).values
    b = torch.sort(peer_idx, 1).values
    diff = (a != b).any(1).nonzero().squeeze(1)
    if len(diff) == 0:
        return 0, 0, 0.0
    r = rows[diff]

    def kth(idx, dtype):
        q = x[r].to(dtype)
        return ((x[idx[diff]].to(dtype) - q[:, None]) ** 2).sum(-1).max(1).values
    e32, p32 = kth(eng_idx, torch.float32), kth(peer_idx, torch.float32)
    e64, p64 = kth(eng_idx, torch.float64), kth(peer_idx, torch.float64)
    gap = float(((e64 - p64).abs() / p64).max())
    return len(diff), int((e32 <= p32).sum()), gap


def bf16_floor(n, dim, dev, seed=0, repeats=None):
    """Seconds of a bfloat16 GEMM over the upper triangle of an n x n product (tiled; best of ``repeats``,
    default 2 up to n = 200,000), and its FLOP/s."""
    xb = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)).to(dev, torch.bfloat16)
    tile = 8192 if dev.type == "cuda" else 2048
    width = max(tile, (2 ** 29 if dev.type == "cuda" else 2 ** 26) // (2 * tile))
    buf = torch.empty(tile * width, dtype=torch.bfloat16, device=dev)

    def run():
        for r0 in range(0, n, tile):
            r1 = min(r0 + tile, n)
            for c0 in range(r0, n, width):
                c1 = min(c0 + width, n)
                torch.mm(xb[r0:r1], xb[c0:c1].T, out=buf[:(r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0))
    run()  # warm-up
    t, _, _ = timed(run, dev, repeats=repeats or (2 if n <= 200_000 else 1))
    macs = sum((min(r0 + tile, n) - r0) * (n - r0) for r0 in range(0, n, tile)) * dim
    return t, 2 * macs / t


def secs(t):
    return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.3g} ms"


def rate(flops):
    return f"{flops / 1e12:.2f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.0f} GFLOP/s"


def gib(b):
    return f"{b / 2 ** 30:.2f} GiB"


def run_sizes(args, dev):
    k = args.k
    head = ("| n | engine exact | torch fp32 GEMM + topk | faiss GpuIndexFlatL2 | floor (bf16 GEMM, upper triangle) "
            "| engine / floor | peer / floor | engine / peer | same neighbours as peer |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    mem = ["| n | engine peak | peer peak | faiss peak |", "|---|---|---|---|"]
    target = None
    exact_knn(torch.randn(4096, args.dim, device=dev), k, device=dev)  # warm-up: kernels, handles
    for n in args.sizes:
        x = torch.randn(n, args.dim, generator=torch.Generator().manual_seed(n)).to(dev)
        reps = args.repeats if n <= 200_000 else 1
        t_e, res, m_e = timed(lambda: exact_knn(x, k, device=dev), dev, reps)
        eng = res.indices
        t_f, flops = bf16_floor(n, args.dim, dev)
        full = n <= args.peer_full_max
        if full:
            rows = torch.arange(n, device=dev)
        else:
            g = torch.Generator().manual_seed(1)
            rows = torch.sort(torch.randperm(n, generator=g)[:args.check_rows]).values.to(dev)
        torch_fp32_peer(x, k, rows[:64])  # warm-up
        t_p, peer, m_p = timed(lambda: torch_fp32_peer(x, k, rows), dev, reps if full else 1)
        peer_note = ""
        if not full:
            t_p *= n / len(rows)
            peer_note = f" (timed on {len(rows):,} rows, x {n / len(rows):.0f})"
        n_diff, n_engine_ok, gap = compare(x, rows, eng[rows], peer)
        agree = f"{len(rows) - n_diff:,} / {len(rows):,} rows"
        if n_diff:
            agree += (f"; the {n_diff} others are near-ties: k-th distances differ by <= {gap:.1e} relative "
                      f"(float64), and the engine's is the smaller in float32 from differences in {n_engine_ok}")
        fa = faiss_gpu_knn(x, k) if dev.type == "cuda" else "CUDA only"
        if callable(fa):
            t_a, fa_idx, m_a = timed(fa, dev, reps)
            same_fa = float((np.sort(drop_self(fa_idx, k), 1) == np.sort(eng.cpu().numpy(), 1)).all(1).mean())
            fa_col, m_a = f"{secs(t_a)} (same sets as engine: {same_fa:.4f})", gib(m_a)
        else:
            fa_col, m_a = fa, "-"
        lines.append(f"| {n:,} | {secs(t_e)} ({res.info['fallback_rows']} rows re-screened) | {secs(t_p)}{peer_note} "
                     f"| {fa_col} | {secs(t_f)} ({rate(flops)}) | {t_e / t_f:.2f} | {t_p / t_f:.2f} "
                     f"| {t_e / t_p:.2f} | {agree} |")
        mem.append(f"| {n:,} | {gib(m_e)} | {gib(m_p)}{' (row subset)' if not full else ''} | {m_a} |")
        print(lines[-1], flush=True)
        if n == TARGET_N:
            target = t_e
        x = res = eng = peer = None  # free the pool before the next size
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    out = lines + [""]
    if dev.type == "cuda":
        out += ["Peak GPU memory above the input latents (torch.cuda.max_memory_allocated):", ""] + mem + [""]
    if target is not None:
        out.append(f"Target: {TARGET_N:,} exact <= {TARGET_S:.0f} s: {'met' if target <= TARGET_S else 'NOT met'} "
                   f"({target:.2f} s)")
    else:
        out.append(f"Target: {TARGET_N:,} exact <= {TARGET_S:.0f} s: not measured (n = {TARGET_N:,} not in --sizes)")
    return out


def run_checks(args, dev):
    """bf16 screen == float32 screen on the device == float32 on the CPU, bit for bit, on three kinds of data,
    for the whole pool and for a share of its rows searched as queries."""
    g = torch.Generator().manual_seed(0)
    n = args.check_n
    checks = {
        "gaussian": torch.randn(n, args.dim, generator=g),
        "W-like (anisotropic, off-centre)": torch.randn(n, args.dim, generator=g)
        @ (torch.randn(args.dim, args.dim, generator=g) / 30) + 40,
        "integer ties": torch.randint(-2, 3, (n, 8), generator=g).float(),
    }
    out = [f"| data (n = {n:,}) | {dev.type} bf16 == {dev.type} fp32 == cpu fp32 (indices and distances) "
           f"| rows n/3..2n/3 as queries (one rank's share), {dev.type} bf16 == cpu fp32 | bf16 rows re-screened |",
           "|---|---|---|---|"]
    ok = True
    for name, x in checks.items():
        cpu = exact_knn(x, args.k, precision="fp32", device="cpu")
        f32 = exact_knn(x, args.k, precision="fp32", device=dev)
        b16 = exact_knn(x, args.k, precision="bf16", device=dev)
        same = all(torch.equal(r.indices.cpu(), cpu.indices) and torch.equal(r.distances.cpu(), cpu.distances)
                   for r in (f32, b16))
        # one rank's share of a multi-process search: query rows against the whole pool
        lo, hi = n // 3, 2 * n // 3
        share = exact_knn(x, args.k, queries=x[lo:hi], query_indices=torch.arange(lo, hi), precision="bf16",
                          device=dev)
        same_share = (torch.equal(share.indices.cpu(), cpu.indices[lo:hi])
                      and torch.equal(share.distances.cpu(), cpu.distances[lo:hi]))
        ok &= same and same_share
        out.append(f"| {name} | {same} | {same_share} | {b16.info['fallback_rows']} |")
        print(out[-1], flush=True)
    return out, ok


def run_e2e(args, dev):
    """10k pool end to end through a 1024-px stylegan3 Generator (random weights): rows of a markdown table."""
    if not os.environ.get("STYLEGAN3_DIR"):
        return ["End to end: skipped (set STYLEGAN3_DIR to an NVlabs/stylegan3 checkout)"]
    from extensions import compute_hubness
    from extensions.pools import SeedPools, seed_latents
    from extensions.stylegan.adapter import make_adapter
    from extensions.stylegan.checkout import activate, find_checkout
    activate(find_checkout())
    from training import networks_stylegan3
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                                     mapping_kwargs=dict(num_layers=2)).eval().requires_grad_(False).to(dev)
    adapter = make_adapter(G)
    n = args.e2e_n
    pools = SeedPools(z_dim=512, pool_size=n, transform=adapter.transform(), device=dev)
    t0 = time.perf_counter()
    pools.draw(0).latents[:8]  # warm-up (custom-op build on first use)
    sync(dev)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed_latents(pools.seeds_for(0), 512)
    t_seeds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = pools.draw(0)
    sync(dev)
    t_pool = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = compute_hubness(pool.latents, k=args.k, device=dev)
    int(res.m.max())
    sync(dev)
    t_hub = time.perf_counter() - t0
    params = sum(p.numel() for p in G.parameters())
    return [f"End to end, {n:,}-latent pool of a 1024-px stylegan3 Generator (random weights, {params / 1e6:.1f} M "
            f"parameters, 2-layer mapping), {dev.type}:", "",
            "| step | time |", "|---|---|",
            f"| seeds -> Z (numpy RandomState per seed, as gen_images.py) | {t_seeds:.3f} s |",
            f"| Z -> W (mapping network) | {t_pool - t_seeds:.3f} s |",
            f"| k-NN + hub values (exact, k = {args.k}) | {t_hub:.3f} s |",
            f"| total | {t_pool + t_hub:.3f} s |", "",
            f"(first call, with custom-op set-up, took {warm:.1f} s and is not counted; "
            f"largest m = {int(res.m.max())})"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs up to n = 200,000, else 1")
    ap.add_argument("--peer-full-max", type=int, default=100_000,
                    help="largest n where the float32 peer runs on every row (above: --check-rows, extrapolated)")
    ap.add_argument("--check-rows", type=int, default=16384, help="query rows checked and timed above --peer-full-max")
    ap.add_argument("--check-n", type=int, help="pool size of the bit-for-bit checks (0: skip; default 20,000 on "
                    "CUDA, the smallest size on the CPU)")
    ap.add_argument("--e2e", action="store_true", help="also time a pool end to end (needs STYLEGAN3_DIR)")
    ap.add_argument("--e2e-n", type=int, default=10_000)
    ap.add_argument("--out", help="also write the tables (markdown) here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or pass --device cpu for a smoke test", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    if args.check_n is None:
        args.check_n = 20_000 if dev.type == "cuda" else min(args.sizes)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    lines = [f"device: {name}, torch {torch.__version__}; d = {args.dim}, k = {args.k}, N(0, I) latents", ""]
    print(lines[0], flush=True)
    ok = True
    if args.check_n:
        check, ok = run_checks(args, dev)
        lines += check + [""]
    lines += run_sizes(args, dev)
    if args.e2e:
        lines += [""] + run_e2e(args, dev)
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
