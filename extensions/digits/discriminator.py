"""The embedded generator's discriminator: a small equalized-learning-rate CNN with minibatch standard
deviation, trained against it by ``scripts/train_digits_gan.py`` and shipped as
``extensions/data/digits_discriminator.npz``.

It follows stylegan2's calling convention, ``D(img, c) -> logits (n, 1)`` (higher: more like the
training data), so code written for a snapshot's ``D`` can drive it too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import HubnessError


class EqualizedConv(torch.nn.Module):
    """Conv2d whose weights are stored N(0, 1) and scaled by He's constant at run time (StyleGAN's
    equalized learning rate): Adam then moves every layer at the same relative speed, as in G."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.gain, self.stride, self.padding = 1 / math.sqrt(cin * kernel * kernel), stride, (kernel - 1) // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.gain, self.bias, self.stride, self.padding)


class EqualizedLinear(torch.nn.Module):
    """Linear layer with StyleGAN's equalized learning rate (see :class:`EqualizedConv`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.gain, self.bias)


class Discriminator(torch.nn.Module):
    """Conv layers R -> R/2 -> R/4 (stride-2 downsampling), minibatch standard deviation, two dense layers.

    Parameters
    ----------
    channels : int
        Width of the first layer; the others have 2x and 4x as many channels.
    resolution : int
        Side R of the input images (a multiple of 4).
    """

    #: Images per minibatch-std group; a batch must split into whole groups (as in stylegan2).
    group_size = 4

    def __init__(self, channels: int = 32, resolution: int = 16):
        super().__init__()
        if resolution % 4 or resolution < 4:
            raise HubnessError(f"resolution must be a positive multiple of 4, got {resolution!r}")
        self.img_resolution, self.img_channels, self.c_dim = resolution, 1, 0
        c = channels
        act = torch.nn.LeakyReLU(0.2)
        self.body = torch.nn.Sequential(
            EqualizedConv(1, c, 3), act,
            EqualizedConv(c, 2 * c, 3, stride=2), act,        # R -> R/2
            EqualizedConv(2 * c, 2 * c, 3), act,
            EqualizedConv(2 * c, 4 * c, 3, stride=2), act,    # R/2 -> R/4
        )
        side = resolution // 4
        self.head = torch.nn.Sequential(
            EqualizedConv(4 * c + 1, 4 * c, 3), act, torch.nn.Flatten(),
            EqualizedLinear(4 * c * side * side, 4 * c), act, EqualizedLinear(4 * c, 1))

    def forward(self, img: torch.Tensor, c=None, **_) -> torch.Tensor:
        """Logits (n, 1) of images (n, 1, R, R) in [-1, 1]; ``c`` is ignored (the network is unconditional).

        Each image's logit also depends on the spread of its group of :attr:`group_size` images (the
        minibatch standard deviation), so score a batch of at least 4 images where possible.
        """
        shape = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != shape:
            raise HubnessError(f"the discriminator takes images of shape (n, {', '.join(map(str, shape))}), "
                               f"got {tuple(img.shape)}")
        group = min(self.group_size, img.shape[0])
        if img.shape[0] == 0 or img.shape[0] % group:
            raise HubnessError(f"the discriminator scores batches of 1-3 images or a multiple of "
                               f"{self.group_size}, got {img.shape[0]}")
        x = self.body(img)
        # Minibatch std over groups of 4 lets D see the variety of a batch, which discourages mode collapse.
        y = x.reshape(group, -1, *x.shape[1:]).std(dim=0, unbiased=False).mean(dim=[1, 2, 3])
        y = y.reshape(-1, 1, 1, 1).repeat(group, 1, x.shape[2], x.shape[3])
        return self.head(torch.cat([x, y], dim=1))
