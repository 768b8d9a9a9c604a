"""CUDA check of the exact k-NN: bf16 screen == float32 == CPU results, and GPU timings.

Compares, on the GPU, the engine's exact search (bf16 screen) with a plain float32 peer in the same run
(one GEMM + top-k per row block, the usual torch recipe), and checks the neighbours are identical to
the engine's float32 screen and to the CPU result.

    python benchmarks/knn_cuda.py --sizes 10000 40000 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from extensions.knn import exact_knn  # noqa: E402


def timed(fn, repeats=3):
    best, out = float("inf"), None
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def torch_fp32_peer(x, k, rows=4096):
    """Plain float32 GEMM + top-k (self excluded), the usual torch recipe."""
    sq = (x * x).sum(1)
    out = []
    for r0 in range(0, x.shape[0], rows):
        d = torch.addmm(sq[None], x[r0:r0 + rows], x.T, alpha=-2).add_(sq[r0:r0 + rows, None])
        d[torch.arange(d.shape[0]), torch.arange(r0, r0 + d.shape[0])] = float("inf")
        out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 40000, 100000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    g = torch.Generator().manual_seed(0)
    checks = {
        "gaussian": torch.randn(20000, args.dim, generator=g),
        "w-like (anisotropic, off-centre)": torch.randn(20000, args.dim, generator=g) @ (torch.randn(args.dim, args.dim, generator=g) / 30) + 40,
        "integer ties": torch.randint(-2, 3, (20000, 8), generator=g).float(),
    }
    for name, x in checks.items():
        cpu = exact_knn(x, args.k, precision="fp32", device="cpu")
        f32 = exact_knn(x, args.k, precision="fp32", device=dev)
        b16 = exact_knn(x, args.k, precision="bf16", device=dev)
        same = (torch.equal(f32.indices.cpu(), cpu.indices) and torch.equal(b16.indices.cpu(), cpu.indices)
                and torch.equal(b16.distances.cpu(), cpu.distances))
        print(f"check {name}: cuda bf16 == cuda fp32 == cpu: {same} (bf16 rows re-screened: {b16.info['fallback_rows']})")
    print("| n | engine exact (bf16 screen) | torch fp32 GEMM + topk | ratio | same neighbours |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        x = torch.randn(n, args.dim, generator=torch.Generator().manual_seed(n)).to(dev)
        t_e, res = timed(lambda: exact_knn(x, args.k, device=dev))
        t_p, peer = timed(lambda: torch_fp32_peer(x, args.k))
        agree = (torch.sort(res.indices, 1).values == torch.sort(peer, 1).values).float().mean().item()
        print(f"| {n:,} | {t_e:.3f} s | {t_p:.3f} s | {t_e / t_p:.2f} | {agree:.4f} |", flush=True)


if __name__ == "__main__":
    main()
