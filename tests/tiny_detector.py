"""A tiny feature detector, pickled the way stylegan3 ships its Inception and VGG16 detectors.

stylegan3's detector pickles hold ``torch_utils.persistence`` classes: the pickle carries this module's
source, so it loads wherever ``torch_utils`` is importable (an active checkout), without this file.
Import this module only after a checkout is active (``tiny_networks.use_runtime()``).

The detector takes uint8 images (n, 3, H, W) like the real ones: ``return_features=True`` gives
features (average-pooled 4x4 colours through a fixed random projection and tanh), otherwise class
probabilities (``no_output_bias=True`` drops the output bias, as the Inception Score asks).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch_utils import persistence


@persistence.persistent_class
class TinyDetector(torch.nn.Module):
    def __init__(self, num_features: int = 16, num_classes: int = 10, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(3 * 4 * 4, num_features, generator=gen) / 4)
        self.register_buffer("head", torch.randn(num_features, num_classes, generator=gen))
        self.register_buffer("bias", torch.randn(num_classes, generator=gen))

    def forward(self, img, return_features=False, no_output_bias=False):
        if img.dtype != torch.uint8 or img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected uint8 images (n, 3, H, W), got {img.dtype} {tuple(img.shape)}")
        x = torch.nn.functional.adaptive_avg_pool2d(img.to(torch.float32) / 127.5 - 1, 4).flatten(1)
        features = torch.tanh(x @ self.proj) * 4
        if return_features:
            return features
        logits = features @ self.head + (0 if no_output_bias else self.bias)
        return torch.softmax(logits, dim=1)


def write_detector(path, **kwargs) -> Path:
    """Pickle a :class:`TinyDetector` to ``path`` with plain ``pickle.dump``, as stylegan3's are."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(TinyDetector(**kwargs).eval(), f)
    return path


def write_detectors(folder, seed: int = 0) -> Path:
    """``inception-2015-12-05.pkl`` and ``vgg16.pkl`` (different weights) in ``folder``; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_detector(folder / "inception-2015-12-05.pkl", seed=seed)
    write_detector(folder / "vgg16.pkl", num_features=24, seed=seed + 1)
    return folder
