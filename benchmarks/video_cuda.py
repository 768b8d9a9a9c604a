"""Time of a gen_video_hub.py video with discriminator-aware paths for a full-size StyleGAN snapshot.

Builds a snapshot (G and D, random weights) of the official configuration (``sized_networks.py``), warms
the custom CUDA ops up, times one pass of G and D over a batch of path points with and without autograd,
then renders the video through gen_video_hub.py's command in this process (the pickle is read from disk
as in a user's run) and prints the wall time and the peak GPU memory.

    STYLEGAN3_DIR=~/stylegan3 python benchmarks/video_cuda.py --cfg stylegan3-t --resolution 1024 \\
        --num-keyframes 2 --w-frames 120 --d-iterations 50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sized_networks import CONFIGS, build_network, write_snapshot  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", choices=CONFIGS, default="stylegan3-t")
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--cbase", type=int, default=32768)
    ap.add_argument("--cmax", type=int, default=512)
    ap.add_argument("--num-keyframes", type=int, default=2)
    ap.add_argument("--w-frames", type=int, default=120)
    ap.add_argument("--d-iterations", type=int, default=50)
    ap.add_argument("--device", default=None, help="default: cuda when available")
    ap.add_argument("--workdir", default=None, help="where the snapshot and the video go (default: a temp dir)")
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {args.cfg} at {args.resolution} px")

    from extensions.paths.discriminator import adapter_functions, points_per_pass
    start = time.perf_counter()
    G, D = build_network(args.cfg, resolution=args.resolution, channel_base=args.cbase, channel_max=args.cmax,
                         device=device)
    G_fn, D_fn, adapter = adapter_functions(G, D)             # builds D's context images: compiles the ops
    sync(device)
    print(f"build + custom ops warm-up: {time.perf_counter() - start:.1f} s")
    batch = points_per_pass((3, args.resolution, args.resolution), args.w_frames + 1)
    w = adapter.map(torch.randn(batch, adapter.z_dim, device=device))

    def no_grad_pass():
        with torch.no_grad():
            D_fn(G_fn(w))

    def grad_pass():
        x = w.clone().requires_grad_(True)
        D_fn(G_fn(x)).sum().backward()

    t0, t1 = timed(no_grad_pass, device), timed(grad_pass, device)
    steps = args.w_frames + 1
    per_iteration = (t0 + t1) * steps / batch
    segments = args.num_keyframes
    frames = args.num_keyframes * args.w_frames
    print(f"| points per pass | G+D pass, no autograd | G+D pass with backward | est. per iteration ({steps} points) |")
    print("|---|---|---|---|")
    print(f"| {batch} | {t0 * 1e3:.0f} ms | {t1 * 1e3:.0f} ms | {per_iteration:.2f} s |")

    from gen_video_hub import generate_video
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        pkl = write_snapshot(Path(tmp) / "snapshot.pkl", G, D)
        del G, D, G_fn, D_fn, adapter
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        output = Path(tmp) / "video.mp4"
        argv = [f"--network={pkl}", f"--seeds=0-{args.num_keyframes - 1}", f"--num-keyframes={args.num_keyframes}",
                f"--w-frames={args.w_frames}", "--interp=discriminator", f"--d-iterations={args.d_iterations}",
                f"--output={output}", f"--device={device.type}"]
        print("python gen_video_hub.py " + " ".join(argv))
        start = time.perf_counter()
        generate_video.main(argv, standalone_mode=False)
        wall = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        size = output.stat().st_size / 2**20
    print()
    print("| frames | segments x points | iterations | wall time | per frame | peak GPU memory | mp4 |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {frames} | {segments} x {steps} | {args.d_iterations} | {wall:.0f} s | {wall / frames:.2f} s | "
          f"{peak:.1f} GiB | {size:.1f} MiB |")


if __name__ == "__main__":
    main()
