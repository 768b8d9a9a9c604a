"""Validation of feature matrices handed to the metric math."""

from __future__ import annotations

import numpy as np
import torch

from .._checks import HubnessError, as_latents
from .errors import MetricError


def as_features(x, name: str, device=None) -> torch.Tensor:
    """Return ``x`` as a finite float32 tensor of shape (n, d) on ``device``; MetricError otherwise."""
    try:
        return as_latents(x, name, device)
    except HubnessError as exc:
        message = str(exc).replace("those latents", "those rows").replace("dimension per latent", "feature per row")
        raise MetricError(message) from None


def check_same_dim(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricError(f"{name_a} have {a.shape[1]} features per row but {name_b} have {b.shape[1]}; "
                          f"compute both with the same detector")


def check_nhood(k, n: int, name: str) -> int:
    """k-NN radius size: an integer with 1 <= k < n (a point is never its own neighbour)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MetricError(f"the neighbourhood size must be a positive integer, got {k!r}")
    if k >= n:
        raise MetricError(f"the neighbourhood size k = {int(k)} needs more than k {name}, got {n}; "
                          f"use more {name} or a smaller k")
    return int(k)
