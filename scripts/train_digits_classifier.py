"""Train the embedded digits classifier, the feature detector and quality judge of the embedded generator.

The 1,797 digits (16x16, as the generator draws them) are split 80/20 with a fixed seed; the network
trains on the 80% with random one-pixel shifts and reports its accuracy on the held-out 20%. Seeded;
runs on a CPU in about a minute.

    python scripts/train_digits_classifier.py --out extensions/data/digits_classifier.npz
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from extensions.digits import DigitClassifier, digit_images, save_weights, translate


def accuracy(net, images, labels) -> float:
    net.eval()
    with torch.no_grad():
        correct = (net(images).argmax(dim=1) == labels).float().mean().item()
    net.train()
    return correct


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="extensions/data/digits_classifier.npz", help="weights file to write")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of images held out for testing")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels = digit_images(16)
    order = torch.from_numpy(np.random.RandomState(args.seed).permutation(len(images)))
    n_test = int(round(args.holdout * len(images)))
    test, train = order[:n_test], order[n_test:]
    x_train, y_train, x_test, y_test = images[train], labels[train], images[test], labels[test]

    net_args = dict(channels=32, feature_dim=128, resolution=16, dropout=0.3)
    net = DigitClassifier(**net_args).train()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    print(f"{len(train)} training and {len(test)} held-out images; "
          f"{sum(p.numel() for p in net.parameters())} parameters", flush=True)
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(train))
        total = 0.0
        for i in range(0, len(train), args.batch):
            idx = perm[i:i + args.batch]
            # Two-pixel shifts at 16x16 are one pixel of the original 8x8 digits.
            x = translate(x_train[idx], 2, 0.8)
            loss = F.cross_entropy(net(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 5 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}  loss {total / len(train):.4f}  train acc {accuracy(net, x_train, y_train):.4f}  "
                  f"held-out acc {accuracy(net, x_test, y_test):.4f}  {time.time() - start:.0f} s", flush=True)

    test_acc = accuracy(net, x_test, y_test)
    meta = dict(summary=f"digits CNN, held-out accuracy {test_acc:.4f}, seed {args.seed}",
                data="sklearn.datasets.load_digits, 1797 images, 8x8 -> 16x16 bilinear, [-1, 1]",
                split=dict(seed=args.seed, holdout=args.holdout, n_train=len(train), n_test=n_test),
                heldout_accuracy=round(test_acc, 4), script="scripts/train_digits_classifier.py",
                options={key: value for key, value in vars(args).items() if key != "out"},
                seconds=round(time.time() - start), torch=torch.__version__,
                machine=platform.machine())
    path = save_weights(args.out, net.eval(), net_args, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); held-out accuracy {test_acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
