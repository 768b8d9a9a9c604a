"""Genuine network pickles with tiny random networks, built on CPU from real StyleGAN classes.

The classes come from whichever stylegan3-compatible checkout is active: by default the stylegan2-ada
runtime shipped in the PyPI wheel ``draggan`` (``draggan/stylegan2``), or an NVlabs/stylegan3 checkout
(``STYLEGAN3_DIR``), which also provides the stylegan3 Generator. A pickle holds ``G``, ``D``, ``G_ema``,
``training_set_kwargs`` and ``augment_pipe`` like a training snapshot, so ``legacy.load_network_pkl``
accepts it.

Random weights are adjusted towards a trained network's statistics: ``w_avg`` is the mean W of the
mapping network (so truncation moves latents), noise strengths are non-zero (so --noise-mode matters),
and the output is scaled so that most pixels are not clipped.

Usage::

    from tiny_networks import use_runtime, write_network_pickle
    use_runtime()                                   # draggan's stylegan2-ada code on sys.path
    path = write_network_pickle(tmp_path / "net.pkl", c_dim=0)
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

#: Sizes that keep a forward pass at a few milliseconds on one CPU thread.
TINY = dict(z_dim=32, w_dim=32, resolution=16, channels=3, mapping_layers=2)


def stylegan2_ada_runtime() -> Optional[Path]:
    """``draggan/stylegan2``: a stylegan2-ada checkout inside the installed ``draggan`` wheel, or None."""
    spec = importlib.util.find_spec("draggan")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "stylegan2"
    return root if (root / "legacy.py").is_file() else None


def use_runtime(root=None):
    """Activate a checkout (default: the draggan stylegan2-ada runtime) and return it.

    Raises RuntimeError when no checkout is available.
    """
    from extensions.stylegan.checkout import activate, find_checkout
    root = root or stylegan2_ada_runtime()
    if root is None:
        raise RuntimeError("no stylegan2-ada runtime: pip install --no-deps draggan==1.1.6")
    return activate(find_checkout(root))


def _networks(arch: str):
    """The module of the active checkout that defines ``arch`` ('stylegan2' or 'stylegan3')."""
    if arch == "stylegan3":
        return importlib.import_module("training.networks_stylegan3")
    if arch != "stylegan2":
        raise ValueError(f"arch must be 'stylegan2' or 'stylegan3', got {arch!r}")
    try:
        return importlib.import_module("training.networks_stylegan2")  # stylegan3 checkout
    except ModuleNotFoundError:
        return importlib.import_module("training.networks")  # stylegan2-ada checkout


def build_generator(*, arch: str = "stylegan2", c_dim: int = 0, seed: int = 0, z_dim: int = TINY["z_dim"],
                    w_dim: int = TINY["w_dim"], resolution: int = TINY["resolution"],
                    channels: int = TINY["channels"], mapping_layers: int = TINY["mapping_layers"]):
    """A tiny generator of the active checkout, weights drawn from ``seed``, in eval mode."""
    module = _networks(arch)
    torch.manual_seed(seed)
    mapping_kwargs = dict(num_layers=mapping_layers)
    if arch == "stylegan3":
        synthesis = dict(channel_base=256, channel_max=16, num_layers=4, num_critical=1, margin_size=2,
                         num_fp16_res=0)
    else:
        synthesis = dict(channel_base=256, channel_max=32, num_fp16_res=0)
    if module.__name__ == "training.networks":  # stylegan2-ada nests the synthesis arguments
        G = module.Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=channels,
                             mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis)
    else:
        G = module.Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=channels,
                             mapping_kwargs=mapping_kwargs, **synthesis)
    G.eval().requires_grad_(False)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        z = torch.randn(2048, z_dim, generator=gen)
        c = torch.zeros(2048, c_dim)
        if c_dim:
            c[torch.arange(2048), torch.randint(c_dim, (2048,), generator=gen)] = 1
        G.mapping.w_avg.copy_(G.mapping(z, c)[:, 0].mean(0))
        for name, param in G.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                param.copy_(0.1 + 0.2 * torch.rand([], generator=gen))
            elif "torgb" in name and name.endswith(".weight") and ".affine." not in name:
                param.mul_(0.5)
    return G


def build_discriminator(*, arch: str = "stylegan2", c_dim: int = 0, seed: int = 0,
                        resolution: int = TINY["resolution"], channels: int = TINY["channels"]):
    """A tiny discriminator of the active checkout (stylegan3 training uses the stylegan2 one)."""
    module = _networks("stylegan2")
    torch.manual_seed(seed + 2)
    return module.Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=channels, channel_base=256,
                                channel_max=32).eval().requires_grad_(False)


def network_dict(*, arch: str = "stylegan2", c_dim: int = 0, seed: int = 0, **sizes) -> dict:
    """What a training snapshot pickles: G, D, G_ema, training_set_kwargs, augment_pipe."""
    G = build_generator(arch=arch, c_dim=c_dim, seed=seed, **sizes)
    D = build_discriminator(arch=arch, c_dim=c_dim, seed=seed, resolution=G.img_resolution,
                            channels=G.img_channels)
    training_set_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path="tiny.zip",
                               use_labels=bool(c_dim), max_size=None, xflip=False, resolution=G.img_resolution)
    return dict(G=G, D=D, G_ema=copy.deepcopy(G), training_set_kwargs=training_set_kwargs, augment_pipe=None)


def write_network_pickle(path, *, arch: str = "stylegan2", c_dim: int = 0, seed: int = 0, **sizes) -> Path:
    """Pickle :func:`network_dict` to ``path`` (as training does: plain ``pickle.dump``) and return it."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(network_dict(arch=arch, c_dim=c_dim, seed=seed, **sizes), f)
    return path


class TinyGenerator(torch.nn.Module):
    """A plain-torch generator G(z, c) -> (n, 3, res, res) with ``z_dim`` and ``c_dim``: no mapping network."""

    def __init__(self, z_dim: int = 8, c_dim: int = 0, resolution: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim, self.c_dim, self.resolution = z_dim, c_dim, resolution
        self.fc = torch.nn.Linear(z_dim + c_dim, 3 * resolution * resolution)

    def forward(self, z, c):
        x = torch.cat([z, c.to(z.dtype)], 1) if self.c_dim else z
        return torch.tanh(self.fc(x)).reshape(-1, 3, self.resolution, self.resolution)


def write_generic_pickle(path, *, as_dict: bool = True, **kwargs) -> Path:
    """Pickle a :class:`TinyGenerator`, as ``{'G_ema': G}`` or bare; loading needs this module importable."""
    G = TinyGenerator(**kwargs).eval()
    with open(path, "wb") as f:
        pickle.dump(dict(G_ema=G) if as_dict else G, f)
    return Path(path)


def subprocess_env(*, prepend=(), **extra) -> dict:
    """Environment for a child Python: one CPU thread (tiny networks run far faster so), the repository and
    this folder importable (after the folders in ``prepend``), and no inherited ``STYLEGAN3_DIR``."""
    env = dict(os.environ)
    env.pop("STYLEGAN3_DIR", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in prepend] + [str(REPO_ROOT), str(TESTS_DIR)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(args, *, cwd=None, timeout: float = 300, prepend=(), **env) -> subprocess.CompletedProcess:
    """Run ``python args...`` with :func:`subprocess_env`; returns the completed process (text output)."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=subprocess_env(prepend=prepend, **env),
                          capture_output=True, text=True, timeout=timeout)


def settle_spectral_norms(model: torch.nn.Module, iterations: int = 50) -> None:
    """Run the power iteration of every spectral norm (``weight_u`` / ``weight_v`` buffers, as
    pytorch-pretrained-biggan and StudioGAN keep them) to convergence, so that a random-weight network
    renders the same images in eval mode as after its stored estimate was refreshed."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight_u"):
                W, u = module.weight_orig.flatten(1), module.weight_u
                for _ in range(iterations):
                    v = torch.nn.functional.normalize(W.t() @ u, dim=0, eps=1e-12)
                    u = torch.nn.functional.normalize(W @ v, dim=0, eps=1e-12)
                module.weight_u.copy_(u)
                module.weight_v.copy_(v)
