"""One interface over the generators the plugin samples from.

:class:`StyleGANAdapter` wraps a stylegan3 or stylegan2-ada generator: batched Z -> W mapping (the first
row of the mapping output, ``ws[:, 0]``, where the paper computes hub values), synthesis from W, class
labels, noise mode and, for stylegan3 networks, the input translation/rotation of ``gen_images.py``.
:class:`GenericAdapter` covers any ``torch.nn.Module`` with ``z_dim`` and ``G(z, c)``: its latents are
sampled in Z (the paper: any GAN whose latents are standard normal).

Every image goes through the same operations as ``gen_images.py``'s ``G(z, label, truncation_psi,
noise_mode)`` (mapping, then synthesis), so one seed renders the same image with both.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .._checks import HubnessError, check_class
from ..pools import seed_latents

NOISE_MODES = ("const", "random", "none")


class GeneratorAdapter:
    """Common interface. Use :func:`make_adapter` to get the right subclass for a generator.

    Attributes
    ----------
    G : torch.nn.Module
    z_dim, c_dim : int
    w_dim, num_ws : int or None
        None for generators without a mapping network.
    spaces : tuple of str
        Sampling spaces available: ('w', 'z') for StyleGAN, ('z',) otherwise. The first is the default.
    device : torch.device
    """

    kind = "generic"
    spaces: tuple = ("z",)
    w_dim: Optional[int] = None
    num_ws: Optional[int] = None

    def __init__(self, G: torch.nn.Module):
        self.G = G
        self.z_dim = int(G.z_dim)
        c_dim = getattr(G, "c_dim", 0)
        self.c_dim = int(c_dim) if isinstance(c_dim, (int, np.integer)) and not isinstance(c_dim, bool) else 0
        params = list(G.parameters()) + list(G.buffers())
        self.device = params[0].device if params else torch.device("cpu")

    @property
    def default_space(self) -> str:
        return self.spaces[0]

    @property
    def has_input_transform(self) -> bool:
        """True for stylegan3 generators, whose input layer takes ``--translate``/``--rotate``."""
        return False

    def check_space(self, space: Optional[str]) -> str:
        """``space`` (or the default) if this generator supports it."""
        space = self.default_space if space is None else space
        if space not in self.spaces:
            raise HubnessError(f"space {space!r} is not available for this {self.kind} generator; choose "
                               f"{' or '.join(repr(s) for s in self.spaces)}")
        return space

    def labels(self, class_idx: Optional[int], n: int = 1) -> torch.Tensor:
        """Conditioning labels, shape (n, c_dim): one-hot ``class_idx``, or zeros for unconditional nets.

        Raises
        ------
        HubnessError
            When a conditional network gets no class, or the class is out of range.
        """
        c = torch.zeros([n, self.c_dim], device=self.device)
        if self.c_dim == 0:
            return c
        if class_idx is None:
            raise HubnessError(f"this network is conditional ({self.c_dim} classes): give a class label "
                               f"with --class (0..{self.c_dim - 1})")
        c[:, check_class(class_idx, self.c_dim)] = 1
        return c

    def as_z(self, z) -> torch.Tensor:
        """``z`` as float32 on the generator's device, shape (n, z_dim)."""
        z = torch.as_tensor(z)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise HubnessError(f"z must have shape (n, {self.z_dim}), got {tuple(z.shape)}")
        return z.to(self.device, torch.float32)

    def check_truncation(self, psi) -> float:
        """``psi`` if this generator can render with that truncation (checked before any work starts)."""
        return float(psi)

    def seed_latents(self, seeds: Sequence[int], truncation_psi: float = 1) -> np.ndarray:
        """Z latents of ``seeds`` as rendered with ``truncation_psi``, shape (n, z_dim), float64.

        ``RandomState(seed).randn(1, z_dim)`` as ``gen_images.py`` draws them; truncation acts later
        (in W for StyleGAN), so ``truncation_psi`` plays no part here.
        """
        return seed_latents(seeds, self.z_dim)

    @property
    def sample_z(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        """``SeedPools(sample_z=...)``: how a pool draws z from seeds; None for ``gen_images.py``'s draw."""
        return None

    def quantize(self, img: torch.Tensor) -> torch.Tensor:
        """Images (n, C, H, W) to uint8 as ``gen_images.py``: ``x * 127.5 + 128``, clamped, truncated."""
        return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

    def transform(self, space: Optional[str] = None, labels: Optional[torch.Tensor] = None
                  ) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """The map from a batch of z to the sampling space, for :class:`extensions.pools.SeedPools`.

        None for Z (the identity).
        """
        self.check_space(space)
        return None

    def mean_latent(self, space: Optional[str] = None) -> torch.Tensor:
        """Centre of truncation in ``space``, shape (d,)."""
        space = self.check_space(space)
        raise HubnessError(f"truncation needs a mapping network (G.mapping.w_avg); this {self.kind} generator "
                           f"samples in {space.upper()}: leave --trunc at 1")

    def set_input_transform(self, translate: Sequence[float] = (0, 0), rotate: float = 0) -> bool:
        """Apply ``gen_images.py``'s ``--translate``/``--rotate``; False when the generator has no input layer."""
        return False

    def generate(self, z, labels: Optional[torch.Tensor] = None, *, truncation_psi: float = 1,
                 noise_mode: str = "const") -> torch.Tensor:
        """Images of latents ``z`` (n, z_dim): float (n, C, H, W), nominally in [-1, 1]."""
        raise NotImplementedError


class StyleGANAdapter(GeneratorAdapter):
    """A stylegan3 or stylegan2-ada generator: ``G.mapping`` to W, ``G.synthesis`` from W."""

    kind = "StyleGAN"
    spaces = ("w", "z")

    def __init__(self, G: torch.nn.Module):
        super().__init__(G)
        self.w_dim = int(G.w_dim)
        self.num_ws = int(G.num_ws)

    @property
    def has_input_transform(self) -> bool:
        return hasattr(self.G.synthesis, "input") and hasattr(self.G.synthesis.input, "transform")

    def map(self, z, labels: Optional[torch.Tensor] = None, *, truncation_psi: float = 1) -> torch.Tensor:
        """W latents of ``z`` (n, z_dim): the first row of the mapping output, shape (n, w_dim).

        The mapping broadcasts one w to all ``num_ws`` rows (no truncation cutoff), so the first row
        is the whole of it.
        """
        z = self.as_z(z)
        if labels is None:
            labels = self.labels(None, len(z))
        ws = self.G.mapping(z, labels, truncation_psi=truncation_psi)
        return ws[:, 0]

    def broadcast(self, w) -> torch.Tensor:
        """(n, w_dim) -> (n, num_ws, w_dim), as the mapping network repeats its output."""
        w = torch.as_tensor(w).to(self.device, torch.float32)
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise HubnessError(f"w must have shape (n, {self.w_dim}), got {tuple(w.shape)}")
        return w.unsqueeze(1).repeat([1, self.num_ws, 1])

    def synthesize(self, w, *, noise_mode: str = "const") -> torch.Tensor:
        """Images of W latents ``w`` (n, w_dim): float (n, C, H, W)."""
        _check_noise_mode(noise_mode)
        return self.G.synthesis(self.broadcast(w), noise_mode=noise_mode)

    def transform(self, space=None, labels=None):
        """Batched Z -> W (``ws[:, 0]``, truncation_psi=1) with ``labels`` (1, c_dim) for every latent."""
        if self.check_space(space) == "z":
            return None

        c = labels if labels is not None else self.labels(None, 1)

        def to_w(z: torch.Tensor) -> torch.Tensor:
            return self.map(z, c[:1].repeat(len(z), 1))

        return to_w

    def mean_latent(self, space=None):
        if self.check_space(space) == "z":
            return torch.zeros(self.z_dim, device=self.device)
        return self.G.mapping.w_avg.detach().to(torch.float32)

    def set_input_transform(self, translate=(0, 0), rotate=0):
        if not self.has_input_transform:
            return False
        self.G.synthesis.input.transform.copy_(torch.from_numpy(input_transform(translate, rotate)))
        return True

    def generate(self, z, labels=None, *, truncation_psi=1, noise_mode="const"):
        z = self.as_z(z)
        return self.synthesize(self.map(z, labels, truncation_psi=truncation_psi), noise_mode=noise_mode)


class GenericAdapter(GeneratorAdapter):
    """Any ``torch.nn.Module`` with ``z_dim`` whose forward takes ``(z, c)``, or ``(z)`` when ``c_dim`` is 0:
    sampled in Z."""

    kind = "generic"
    spaces = ("z",)

    def generate(self, z, labels=None, *, truncation_psi=1, noise_mode="const"):
        if truncation_psi != 1:
            self.mean_latent("z")  # raises: no mapping network to truncate with
        z = self.as_z(z)
        if labels is None:
            labels = self.labels(None, len(z))
        img = self.G(z, labels) if self.c_dim > 0 or _takes_two(self.G) else self.G(z)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[0] != len(z):
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise HubnessError(f"the generator returned {shape} for {len(z)} latents; expected images of shape "
                               f"({len(z)}, C, H, W)")
        if not img.is_floating_point():
            raise HubnessError(f"the generator returned {img.dtype} images; expected real floating-point pixels "
                               f"(nominally in [-1, 1])")
        return img


class TruncatedZAdapter(GenericAdapter):
    """A Z-space generator ``G(z, c, truncation_psi)`` whose latents are drawn already truncated (scaled by
    psi around zero, as BigGAN's and StudioGAN's samplers draw them) and that takes psi itself."""

    spaces = ("z",)

    def mean_latent(self, space=None):
        """Zero: truncation toward it, ``psi * z``, is the truncated draw."""
        self.check_space(space)
        return torch.zeros(self.z_dim, device=self.device)

    def generate(self, z, labels=None, *, truncation_psi=1, noise_mode="const"):
        z = self.as_z(z)
        if labels is None:
            labels = self.labels(None, len(z))
        return self.G(z, labels.to(self.device, torch.float32), truncation_psi)


def input_transform(translate: Sequence[float] = (0, 0), rotate: float = 0) -> np.ndarray:
    """The inverse rotation/translation matrix stylegan3's input layer expects, shape (3, 3), float64.

    Same arithmetic as ``gen_images.py``, so the float32 buffer it is copied into holds the same bits.
    """
    tx, ty = (float(v) for v in translate)
    angle = float(rotate) / 360.0 * np.pi * 2
    s, c = np.sin(angle), np.cos(angle)
    m = np.array([[c, s, tx], [-s, c, ty], [0, 0, 1]], dtype=np.float64)
    return np.linalg.inv(m)


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise HubnessError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


def is_stylegan(G) -> bool:
    """True for generators with a mapping network and a synthesis network (stylegan3, stylegan2-ada)."""
    return all(hasattr(G, name) for name in ("mapping", "synthesis", "w_dim", "num_ws")) and \
        hasattr(G.mapping, "w_avg")


def _takes_two(G: torch.nn.Module) -> bool:
    """True when ``G.forward`` accepts two positional arguments (z, c)."""
    try:
        inspect.signature(G.forward).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a C function): assume stylegan's G(z, c)
        return True
    return True


def make_adapter(G: torch.nn.Module) -> GeneratorAdapter:
    """The adapter a generator class names (``adapter_class``, e.g. BigGAN's), else :class:`StyleGANAdapter`
    for StyleGAN generators, else :class:`GenericAdapter`."""
    if not isinstance(G, torch.nn.Module) or not isinstance(getattr(G, "z_dim", None), (int, np.integer)):
        raise HubnessError(f"expected a generator (torch.nn.Module with z_dim), got {type(G).__name__}")
    own = getattr(type(G), "adapter_class", None)
    if isinstance(own, type) and issubclass(own, GeneratorAdapter):
        return own(G)
    return StyleGANAdapter(G) if is_stylegan(G) else GenericAdapter(G)
