"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside the scikit-learn package) as
images in the generator's format: (n, 1, R, R) float32 in [-1, 1], ink bright on a dark background."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import HubnessError

#: Side of the generator's images; the 8x8 digits are upsampled bilinearly to it.
RESOLUTION = 16
NUM_CLASSES = 10


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images (n, C, H, W) to (n, C, resolution, resolution): bilinear up, area down."""
    if images.ndim != 4:
        raise HubnessError(f"images must have shape (n, C, H, W), got {tuple(images.shape)}")
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    if resolution > images.shape[-1]:
        return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return F.interpolate(images, size=(resolution, resolution), mode="area")


def digit_images(resolution: int = RESOLUTION) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits data set.

    Parameters
    ----------
    resolution : int
        Output side; 8 is the native size.

    Returns
    -------
    images : torch.Tensor, shape (1797, 1, resolution, resolution), float32 in [-1, 1]
    labels : torch.Tensor, shape (1797,), int64 in 0..9
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 8:
        raise HubnessError(f"resolution must be an integer >= 8, got {resolution!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits data set ships with scikit-learn: pip install scikit-learn") from exc
    digits = load_digits()
    # Pixel values are ink counts 0..16; map them linearly to the generator's [-1, 1].
    images = torch.from_numpy(digits.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return resize(images, int(resolution)).clamp(-1, 1), labels


def translate(img: torch.Tensor, max_shift: int, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shift each image (n, 1, H, W) with probability ``p`` by up to ``max_shift`` pixels in x and y,
    filling with the background value -1; returns (n, 1, H, W). Differentiable in ``img``.

    As a GAN augmentation it is applied to real and generated images alike; with p < 1 the shifted
    distribution still determines the unshifted one, so the shift does not leak into the generator.
    """
    if img.ndim != 4 or img.shape[1] != 1:
        raise HubnessError(f"translate expects images of shape (n, 1, H, W), got {tuple(img.shape)}")
    if max_shift == 0 or p == 0:
        return img
    n, _, h, w = img.shape
    padded = F.pad(img, [max_shift] * 4, value=-1.0)
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    shift[torch.rand(n, generator=generator) >= p] = 0
    rows = (torch.arange(h)[None, :] + max_shift - shift[:, :1])              # (n, h)
    cols = (torch.arange(w)[None, :] + max_shift - shift[:, 1:])              # (n, w)
    batch = torch.arange(n)[:, None, None]
    return padded[:, 0][batch, rows[:, :, None], cols[:, None, :]][:, None]
