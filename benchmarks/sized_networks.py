"""Full-size StyleGAN networks with random weights, for timings (the official configurations' sizes).

Built from the official NVlabs/stylegan3 code (``--stylegan3 DIR`` or ``$STYLEGAN3_DIR``), with the
hyper-parameters of its ``train.py`` for ``--cfg stylegan3-t``, ``stylegan3-r`` and ``stylegan2``
(``--cbase 32768 --cmax 512 --batch 32``, the classes' defaults otherwise: mixed precision in the 4 highest
resolutions); the weights are the classes' own random initialisation. Timings of such a
network are those of a trained one of the same configuration; its images are not.

    from sized_networks import build_network, write_snapshot
    G, D = build_network("stylegan3-t", resolution=1024, device="cuda")
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from extensions.stylegan.checkout import activate, find_checkout  # noqa: E402

CONFIGS = ("stylegan3-t", "stylegan3-r", "stylegan2")


def build_network(cfg: str = "stylegan3-t", *, resolution: int = 1024, stylegan3=None, device="cpu",
                  channel_base: int = 32768, channel_max: int = 512, seed: int = 0):
    """``(G, D)`` of the official ``cfg`` at ``resolution``, random weights, eval mode, on ``device``.

    Parameters
    ----------
    cfg : str
        One of :data:`CONFIGS`.
    resolution : int
        Image size (a power of two >= 16).
    stylegan3 : str or Path, optional
        The official checkout; default ``$STYLEGAN3_DIR``.
    channel_base, channel_max : int
        ``train.py``'s ``--cbase`` and ``--cmax`` (small values make a small network for smoke runs).
    """
    if cfg not in CONFIGS:
        raise ValueError(f"cfg must be one of {', '.join(CONFIGS)}, got {cfg!r}")
    activate(find_checkout(stylegan3))
    from training import networks_stylegan2, networks_stylegan3  # noqa: the activated checkout's modules
    torch.manual_seed(seed)
    common = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=resolution, img_channels=3)
    if cfg == "stylegan2":
        G = networks_stylegan2.Generator(**common, mapping_kwargs=dict(num_layers=8), channel_base=channel_base,
                                         channel_max=channel_max, fused_modconv_default="inference_only")
    else:
        radial = cfg == "stylegan3-r"
        G = networks_stylegan3.Generator(**common, mapping_kwargs=dict(num_layers=2),
                                         channel_base=channel_base * (2 if radial else 1),
                                         channel_max=channel_max * (2 if radial else 1),
                                         conv_kernel=1 if radial else 3, use_radial_filters=radial,
                                         magnitude_ema_beta=0.5 ** (32 / (20 * 1e3)))
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3,
                                         channel_base=channel_base, channel_max=channel_max,
                                         epilogue_kwargs=dict(mbstd_group_size=4))
    return G.eval().requires_grad_(False).to(device), D.eval().requires_grad_(False).to(device)


def write_snapshot(path, G, D) -> Path:
    """Pickle ``G`` and ``D`` as a training snapshot (``G``, ``D``, ``G_ema``) on the CPU."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(dict(G=G.cpu(), D=D.cpu(), G_ema=G.cpu(), training_set_kwargs=None, augment_pipe=None), f)
    return path
