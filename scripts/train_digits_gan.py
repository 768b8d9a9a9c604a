"""Train the embedded generator: stylegan2-ada's Generator on scikit-learn's 8x8 digits (upsampled to 16x16).

A plain GAN loop: non-saturating logistic loss, lazy R1 penalty on real images, an exponential moving
average of the generator's weights (the network that is saved, as G_ema is in a StyleGAN snapshot), and
a small convolutional discriminator (:class:`extensions.digits.Discriminator`). Seeded; runs on a CPU.

    python scripts/train_digits_gan.py --out extensions/data/digits_generator.npz --samples grid.png

Both networks are written by :func:`extensions.digits.save_weights`: G_ema to ``--out`` (loaded by
:func:`extensions.digits.load_generator`), D to ``--out-discriminator``, by default next to it with
"generator" in the name replaced by "discriminator" (loaded by :func:`extensions.digits.load_discriminator`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from extensions.digits import Discriminator, digit_images, generator_class, save_weights, translate


def save_grid(G, path, rows: int = 8, cols: int = 16, seed: int = 0):
    """A rows x cols grid of G's images for z = N(0, I) drawn with ``seed``, 2x enlarged."""
    import PIL.Image
    z = torch.randn(rows * cols, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
    img = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    res = img.shape[-1]
    grid = img.reshape(rows, cols, res, res).permute(0, 2, 1, 3).reshape(rows * res, cols * res).numpy()
    PIL.Image.fromarray(grid, "L").resize((cols * res * 2, rows * res * 2), PIL.Image.NEAREST).save(path)


def discriminator_path(out) -> Path:
    """Where D goes by default: beside G's ``out``, with "generator" in the name replaced by "discriminator"
    (``digits_generator.npz`` -> ``digits_discriminator.npz``), else with ``_discriminator`` appended."""
    out = Path(out)
    if "generator" in out.name:
        return out.with_name(out.name.replace("generator", "discriminator"))
    return out.with_name(f"{out.stem}_discriminator{out.suffix or '.npz'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="extensions/data/digits_generator.npz", help="weights file of G_ema")
    parser.add_argument("--out-discriminator", default=None,
                        help="weights file of D (default: next to --out, 'generator' -> 'discriminator')")
    parser.add_argument("--steps", type=int, default=7000, help="training steps (one G and one D update each)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--z-dim", type=int, default=64, help="z dimension (and w's, unless --w-dim is given)")
    parser.add_argument("--w-dim", type=int, default=None, help="w dimension (default: --z-dim)")
    parser.add_argument("--mapping-layers", type=int, default=8)
    parser.add_argument("--channels", type=int, default=32, help="channel_max of G; D's base width")
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--r1-gamma", type=float, default=0.1, help="R1 penalty weight")
    parser.add_argument("--r1-every", type=int, default=16, help="lazy R1: penalise every this many steps")
    parser.add_argument("--ema-kimg", type=float, default=10.0, help="half-life of G's EMA in thousands of images")
    parser.add_argument("--shift", type=int, default=1, help="max translation (pixels) of D's inputs")
    parser.add_argument("--shift-p", type=float, default=0.5, help="probability of translating an image")
    parser.add_argument("--samples", default=None, help="PNG grid of samples written at each log and at the end")
    parser.add_argument("--log-every", type=int, default=250, help="steps between logs, sample grids and snapshots")
    args = parser.parse_args(argv)
    out_d = Path(args.out_discriminator) if args.out_discriminator else discriminator_path(args.out)
    if out_d.resolve() == Path(args.out).resolve():
        raise SystemExit(f"--out-discriminator {str(out_d)!r} is the generator's weights file; pass another path")

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    reals, _ = digit_images(16)

    w_dim = args.z_dim if args.w_dim is None else args.w_dim
    g_args = dict(z_dim=args.z_dim, c_dim=0, w_dim=w_dim, img_resolution=16, img_channels=1,
                  mapping_kwargs=dict(num_layers=args.mapping_layers), channel_base=16 * args.channels,
                  channel_max=args.channels, num_fp16_res=0, conv_clamp=None)
    G = generator_class()(**g_args).train()
    d_args = dict(channels=args.channels, resolution=16)
    D = Discriminator(**d_args).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # Adam with beta1 = 0 as in StyleGAN2; lazy regularisation rescales D's lr and betas (StyleGAN2 App. B).
    ratio = args.r1_every / (args.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
    print(f"G: {sum(p.numel() for p in G.parameters())} parameters, D: {sum(p.numel() for p in D.parameters())};"
          f" {len(reals)} real images; {args.steps} steps of batch {args.batch}", flush=True)

    def D_logits(img):
        return D(img).squeeze(1)

    data_gen = torch.Generator().manual_seed(args.seed + 1)
    start = time.time()
    for step in range(1, args.steps + 1):
        # G: non-saturating loss, softplus(-D(G(z))).
        z = torch.randn(args.batch, args.z_dim)
        loss_g = F.softplus(-D_logits(translate(G(z, None), args.shift, args.shift_p))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        # D: logistic loss on a fresh fake batch (this pass also tracks w_avg) and a real batch.
        with torch.no_grad():
            fake = G(torch.randn(args.batch, args.z_dim), None, update_emas=True)
        real = reals[torch.randint(len(reals), (args.batch,), generator=data_gen)]
        real_aug = translate(real, args.shift, args.shift_p)
        r1_step = step % args.r1_every == 0
        real_aug.requires_grad_(r1_step)
        real_logits = D_logits(real_aug)
        loss_d = (F.softplus(D_logits(translate(fake, args.shift, args.shift_p))).mean()
                  + F.softplus(-real_logits).mean())
        if r1_step:
            grad, = torch.autograd.grad(real_logits.sum(), real_aug, create_graph=True)
            loss_d = loss_d + grad.square().sum(dim=[1, 2, 3]).mean() * (args.r1_gamma / 2 * args.r1_every)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # EMA of G, ramped up over the first images so early noise fades fast.
        ema_nimg = min(args.ema_kimg * 1000, step * args.batch * 0.05)
        beta = 0.5 ** (args.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        if step % args.log_every == 0 or step == args.steps:
            elapsed = time.time() - start
            print(f"step {step:6d}  loss G {loss_g.item():.3f}  loss D {loss_d.item():.3f}  "
                  f"D(real) {real_logits.mean().item():+.2f}  {elapsed / 60:.1f} min "
                  f"({elapsed / step:.3f} s/step)", flush=True)
            if not math.isfinite(loss_g.item() + loss_d.item()):
                raise SystemExit("training diverged (non-finite loss)")
            if args.samples:
                save_grid(G_ema, args.samples)
            # Nothing depends on the total number of steps, so the snapshot of step s equals the result
            # of a run with --steps s. The output paths do not affect the weights and are left out.
            options = {key: value for key, value in vars(args).items()
                       if key not in ("out", "out_discriminator", "samples")}
            meta = dict(data="sklearn.datasets.load_digits, 1797 images, 8x8 -> 16x16 bilinear, [-1, 1]",
                        script="scripts/train_digits_gan.py", options=dict(options, steps=step), step=step,
                        minutes=round(elapsed / 60, 1), torch=torch.__version__, machine=platform.machine())
            path = save_weights(args.out, G_ema, g_args, dict(
                meta, summary=f"stylegan2 Generator, digits 16x16, {step} steps, seed {args.seed}"))
            path_d = save_weights(out_d, D, d_args, dict(
                meta, summary=f"discriminator of the digits stylegan2 Generator, {step} steps, seed {args.seed}"))

    minutes = (time.time() - start) / 60
    for written in (path, path_d):
        print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min", flush=True)
    print(json.dumps(g_args), flush=True)


if __name__ == "__main__":
    main()
