"""A small CNN classifier of the digits: the feature detector and per-image quality judge of the
embedded generator (penultimate activations as features, the largest softmax probability as confidence)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import HubnessError
from .data import NUM_CLASSES, RESOLUTION, resize


class DigitClassifier(torch.nn.Module):
    """Conv(1->c) -> Conv(c->c) -> pool -> Conv(c->2c) -> pool -> FC(feature_dim) -> FC(10).

    Parameters
    ----------
    channels : int
        Channels of the first two convolutions.
    feature_dim : int
        Width of the penultimate layer, the feature space of the metrics.
    resolution : int
        Input side; other sizes are resized to it.
    dropout : float
        Dropout before the last layer, active in training mode only.
    """

    def __init__(self, channels: int = 32, feature_dim: int = 128, resolution: int = RESOLUTION,
                 dropout: float = 0.3):
        super().__init__()
        self.resolution = int(resolution)
        self.feature_dim = int(feature_dim)
        self.conv1 = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(channels, 2 * channels, 3, padding=1)
        side = self.resolution // 4
        self.fc = torch.nn.Linear(2 * channels * side * side, feature_dim)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(feature_dim, NUM_CLASSES)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise HubnessError(f"images must be a tensor of shape (n, 1 or 3, H, W) in [-1, 1], got "
                               f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        images = images.to(self.head.weight.device, torch.float32)
        if images.shape[1] == 3:
            images = images.mean(dim=1, keepdim=True)
        return resize(images, self.resolution).clamp(-1, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, shape (n, feature_dim), of images (n, 1 or 3, H, W) in [-1, 1]."""
        x = self._prepare(images)
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (n, 10)."""
        return self.head(self.dropout(self.features(images)))

    @torch.no_grad()
    def judge(self, images: torch.Tensor, batch_size: int = 512) -> dict:
        """Features, predicted class and confidence of each image, in evaluation mode.

        Returns
        -------
        dict with ``features`` (n, feature_dim) float32, ``label`` (n,) int64 and ``confidence`` (n,),
        the largest softmax probability.
        """
        was_training = self.training
        self.eval()
        feats, labels, conf = [], [], []
        for start in range(0, len(images), batch_size):
            f = self.features(images[start:start + batch_size])
            p = F.softmax(self.head(f), dim=1)
            c, y = p.max(dim=1)
            feats.append(f.cpu())
            labels.append(y.cpu())
            conf.append(c.cpu())
        self.train(was_training)
        return dict(features=torch.cat(feats), label=torch.cat(labels), confidence=torch.cat(conf))


class FeatureDetector(torch.nn.Module):
    """A :class:`DigitClassifier` as a metric detector: uint8 images (n, 1 or 3, H, W) in [0, 255], as
    stylegan3's metric loop passes them, -> penultimate features (n, feature_dim).

    The class probabilities follow from the features: ``softmax(classifier.head(features))``.
    """

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise HubnessError(f"the detector takes uint8 images, got "
                               f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}")
        # Inverse of the generator's conversion x * 127.5 + 128, so real and generated images meet in [-1, 1].
        return self.classifier.features((images.to(torch.float32) - 128) / 127.5)

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, 10) of features (n, feature_dim)."""
        return F.softmax(self.classifier.head(features.to(self.classifier.head.weight.device)), dim=1)
