"""The partial StyleGAN network: one W latent -> the feature map of a chosen synthesis block.

The local basis of a latent (Choi et al. 2021, "Do Not Escape From the Manifold") is the ordered set of
right singular vectors of the Jacobian of a *partial* generator, W -> an intermediate feature map.
:class:`PartialNetwork` is that map for the two synthesis networks of stylegan3 and stylegan2-ada, as a
differentiable function of one latent ``w`` (w_dim,), for :func:`extensions.paths.local_basis` and
:func:`extensions.paths.curve_traversal`.

**Blocks.** stylegan2 (``networks_stylegan2`` / stylegan2-ada's ``networks``): the blocks ``b4``, ``b8``,
..., ``b{resolution}``; block ``b{r}`` outputs its feature map x (C, r, r) and reads the ws rows of its
convolutions and of every block before it. stylegan3 (``networks_stylegan3``): ``input`` and the layers
``L0_...``, ``L1_...``, ...; layer j (``input`` is 0) reads ws rows 0..j. A block is named as the
synthesis network names it (``b16``, ``L3_52_1024``), or by its resolution (``16``) or layer prefix
(``L3``). The default, ``'auto'``, is the middle one (``block_resolutions[n // 2]``: b64 of a 1024-px
stylegan2, b8 of the 16-px embedded network; for stylegan3 the middle of ``input, L0, ..., Ln``), moved
deeper when the layer subset begins after it, so that the moved rows reach the feature map. The seed's
paper works in StyleGAN2's W with a partial network up to an intermediate layer; the middle resolution
keeps the feature map small (a 1024-px network's b64 is 512 x 64 x 64) while it sees the coarse and
middle styles.

**Layer subsets** (``layers``): a step moves only some ws rows; the others stay at the base latent
``w0``. ``fn(w)`` builds ws with the rows of the subset set to ``w`` and the rest to ``w0``, and
:meth:`PartialNetwork.images` renders full images by the same rule, so strip images match the function
whose basis is taken.

* stylegan2, by the resolution of the convolutions that read a row (StyleGAN's split): ``coarse`` 4-8 px,
  ``middle`` 16-32 px, ``fine`` 64 px and up; the last block's toRGB row goes with its resolution. For a
  1024-px network (18 rows): coarse 0-2, middle 3-6, fine 7-17, the rows of the seed's code. A network
  below 64 px has no fine rows (the 16-px embedded network: coarse 0-2, middle 3-5).
* stylegan3 has no per-resolution blocks: the split is by depth, StyleGAN's 3 / 4 / 11 of 18 rows scaled
  to num_ws: ``coarse`` rows 0..c-1, ``middle`` c..m-1, ``fine`` m.. with c = round(num_ws / 6) and
  m = round(7 num_ws / 18) (16 rows of a 1024-px network: 0-2, 3-5, 6-15).
* ``all``: every row.

**Numerics.** The partial forward runs in float32 (``force_fp32``), with constant noise and the stylegan
ops' pure-torch reference implementations, which torch.func's jvp/vjp/vmap can differentiate (the custom
CUDA kernels cannot). On the CPU this is what a full forward computes, bit for bit; on CUDA, layers that a
full forward runs in float16 agree to float16 rounding. ``reference_ops=False`` keeps the CUDA kernels
(for large networks; differentiate them with ``local_basis(..., engine="autograd")``). :meth:`PartialNetwork.images` runs the network's
own full forward (float16 where it uses it, custom kernels), as ``gen_images.py`` does, so the base
latent's image is ``gen_images.py``'s image of the seed.

Example
-------
>>> net = PartialNetwork(G, w0, layers="coarse")          # doctest: +SKIP
>>> basis = local_basis(net, w0, rank=5)                   # doctest: +SKIP
>>> curve = curve_traversal(net, w0, 0, steps=5, step_size=0.5, rank=5)   # (11, w_dim)  # doctest: +SKIP
>>> images = net.images(curve)                             # (11, C, H, W)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .._checks import HubnessError, resolve_device

__all__ = ["LAYER_SUBSETS", "PartialNetwork", "SynthesisLayout", "reference_ops", "resolve_block", "synthesis_layout"]

#: The ``layers`` choices.
LAYER_SUBSETS = ("all", "coarse", "middle", "fine")
#: stylegan2 resolutions (px) of coarse and middle layers; larger ones are fine.
_COARSE_MAX, _MIDDLE_MAX = 8, 32
#: Modules of stylegan's custom ops whose ``_init()`` picks the CUDA kernel over the reference code.
_OPS = ("torch_utils.ops.bias_act", "torch_utils.ops.upfirdn2d", "torch_utils.ops.filtered_lrelu")
_ops_lock = threading.RLock()


@dataclass(frozen=True)
class SynthesisLayout:
    """How a synthesis network reads its ws rows.

    Attributes
    ----------
    kind : {'stylegan2', 'stylegan3'}
    blocks : tuple of str
        Block (stylegan2) or layer (stylegan3) names, in forward order.
    reads : tuple of int
        ``reads[i]``: the output of ``blocks[i]`` depends on ws rows ``0 .. reads[i] - 1``.
    num_ws : int
    subsets : dict
        ``'all' | 'coarse' | 'middle' | 'fine'`` -> tuple of ws rows (see the module docstring).
    resolution : int
        Image resolution (px).
    """

    kind: str
    blocks: tuple
    reads: tuple
    num_ws: int
    subsets: dict
    resolution: int

    def describe(self, layers: str) -> str:
        """``'rows 3-6'``-style description of a subset."""
        return _rows_text(self.subsets[layers])


def _rows_text(rows: Sequence[int]) -> str:
    if not rows:
        return "no rows"
    lo, hi = min(rows), max(rows)
    return f"row {lo}" if lo == hi else f"rows {lo}-{hi}"


def synthesis_layout(G) -> SynthesisLayout:
    """The block structure of ``G.synthesis`` (a stylegan2 or stylegan3 generator).

    Raises
    ------
    HubnessError
        For a generator whose synthesis network is neither.
    """
    syn = getattr(G, "synthesis", None)
    num_ws = getattr(G, "num_ws", None) or getattr(syn, "num_ws", None)
    if syn is None or not isinstance(num_ws, int):
        raise HubnessError(f"{type(G).__name__} has no StyleGAN synthesis network (G.synthesis, G.num_ws); the "
                           f"partial network needs a stylegan2 or stylegan3 generator")
    resolution = int(getattr(syn, "img_resolution", 0) or getattr(G, "img_resolution", 0))
    if hasattr(syn, "block_resolutions"):
        blocks, reads, row_res, end = [], [], [], 0
        for res in syn.block_resolutions:
            block = getattr(syn, f"b{res}")
            end += int(block.num_conv)
            blocks.append(f"b{res}")
            reads.append(end)
            row_res += [int(res)] * int(block.num_conv)
        row_res += [row_res[-1]] * (num_ws - len(row_res))  # the last block's toRGB row
        subsets = dict(coarse=tuple(r for r, res in enumerate(row_res) if res <= _COARSE_MAX),
                       middle=tuple(r for r, res in enumerate(row_res) if _COARSE_MAX < res <= _MIDDLE_MAX),
                       fine=tuple(r for r, res in enumerate(row_res) if res > _MIDDLE_MAX))
        kind = "stylegan2"
    elif hasattr(syn, "layer_names") and hasattr(syn, "input"):
        blocks = ["input"] + list(syn.layer_names)
        reads = list(range(1, len(blocks) + 1))
        c = max(1, round(num_ws / 6))
        m = max(c + 1, round(7 * num_ws / 18))
        subsets = dict(coarse=tuple(range(0, c)), middle=tuple(range(c, m)), fine=tuple(range(m, num_ws)))
        kind = "stylegan3"
    else:
        raise HubnessError(f"the synthesis network {type(syn).__name__} is neither stylegan2's (blocks b4, b8, ...) "
                           f"nor stylegan3's (input, L0, L1, ...); the partial network cannot split it")
    subsets = dict(all=tuple(range(num_ws)), **subsets)
    return SynthesisLayout(kind, tuple(blocks), tuple(reads), int(num_ws), subsets, resolution)


def resolve_block(G, block="auto", layers: str = "all") -> str:
    """The name of the block a :class:`PartialNetwork` of ``G`` would end at (checks ``block`` and ``layers``
    without building one).

    Raises
    ------
    HubnessError
        As :class:`PartialNetwork`.
    """
    layout = synthesis_layout(G)
    _check_subset(layout, layers)
    return layout.blocks[_resolve_block(layout, block, layers)]


def _check_subset(layout: SynthesisLayout, layers: str) -> tuple:
    if layers not in LAYER_SUBSETS:
        raise HubnessError(f"--layers {layers!r} is not one of {', '.join(LAYER_SUBSETS)}")
    rows = layout.subsets[layers]
    if not rows:
        have = ", ".join(f"{k} ({_rows_text(v)})" for k, v in layout.subsets.items() if v and k != "all")
        raise HubnessError(f"--layers {layers}: this {layout.resolution}-px {layout.kind} network has no {layers} "
                           f"layers (fine = 64 px and up); choose all, {have}")
    return rows


def _resolve_block(layout: SynthesisLayout, block, layers: str) -> int:
    """Index into ``layout.blocks`` of ``block`` (a name, a resolution, a layer prefix or 'auto')."""
    rows = layout.subsets[layers]
    first = min(rows)
    if block is None or str(block).strip().lower() == "auto":
        index = len(layout.blocks) // 2
        while layout.reads[index] <= first:  # the subset begins after the middle block: go deeper
            index += 1
        return index
    text = str(block).strip()
    names = layout.blocks
    if text in names:
        index = names.index(text)
    elif layout.kind == "stylegan2" and text.isdigit() and f"b{int(text)}" in names:
        index = names.index(f"b{int(text)}")
    elif layout.kind == "stylegan3" and any(n.split("_")[0] == text for n in names):
        index = [n.split("_")[0] for n in names].index(text)
    else:
        shown = ", ".join(names if len(names) <= 8 else names[:4] + ("...",) + names[-2:])
        raise HubnessError(f"block {text!r} is not in this {layout.kind} synthesis network; choose one of {shown} "
                           f"or auto")
    if layout.reads[index] <= first:
        raise HubnessError(f"--layers {layers} moves ws {_rows_text(rows)}, which block {names[index]} does not read "
                           f"(it reads {_rows_text(range(layout.reads[index]))}); choose a later --block (e.g. "
                           f"{names[next(i for i, r in enumerate(layout.reads) if r > first)]}) or auto, or other "
                           f"--layers")
    return index


class _Reached(Exception):
    """Carries the target block's output out of the synthesis forward."""

    def __init__(self, output):
        super().__init__()
        self.output = output


@contextlib.contextmanager
def reference_ops():
    """Inside the block, stylegan's custom ops (bias_act, upfirdn2d, filtered_lrelu) run their pure-torch
    reference code also on CUDA, which torch.func can differentiate; the CUDA kernels come back after."""
    with _ops_lock:
        saved = []
        try:
            for name in _OPS:
                module = sys.modules.get(name)
                if module is not None and callable(getattr(module, "_init", None)):
                    saved.append((module, module._init))
                    module._init = _no_plugin
            yield
        finally:
            for module, init in saved:
                module._init = init


def _no_plugin():
    return False


class PartialNetwork:
    """``w`` (w_dim,) -> the feature map of one synthesis block, with only the ws rows of ``layers`` moved.

    Parameters
    ----------
    G : torch.nn.Module
        A stylegan2 or stylegan3 generator (``G.synthesis``, ``G.num_ws``, ``G.w_dim``).
    w0 : array-like, shape (w_dim,)
        The base latent: rows outside ``layers`` stay here (the W latent of a seed, truncation applied).
    block : str or int, optional
        Where the partial network ends (see the module docstring); ``'auto'``: the middle block.
    layers : {'all', 'coarse', 'middle', 'fine'}
        Which ws rows a latent sets (see the module docstring).
    noise_mode : {'const', 'none', 'random'}
        Synthesis noise; 'const' (default) makes the function deterministic.
    device : str or torch.device, optional
        None: CUDA when available, else CPU. ``G`` is moved there (in place, as ``Module.to``).
    reference_ops : bool
        Run stylegan's custom ops as pure torch (default), which torch.func differentiates. False keeps the
        network's CUDA kernels (faster, less memory at high resolution); their Jacobian products then need
        ``local_basis(..., engine="autograd")`` (double backward).

    Attributes
    ----------
    layout : SynthesisLayout
    block : str
        The block's name.
    rows : tuple of int
        The ws rows a latent sets.
    output_shape : tuple
        Shape of ``self(w)``: (C, H, W) of the block's feature map.

    Raises
    ------
    HubnessError
        An unknown block or subset, a subset with no rows in this network or none that the block reads, a
        ``w0`` of the wrong shape or with NaN/inf.
    """

    def __init__(self, G, w0, *, block="auto", layers: str = "all", noise_mode: str = "const", device=None,
                 reference_ops: bool = True):
        if noise_mode not in ("const", "none", "random"):
            raise HubnessError(f"noise_mode {noise_mode!r} is not one of const, none, random")
        self.layout = synthesis_layout(G)
        rows = _check_subset(self.layout, layers)
        self.device = resolve_device(device)
        self.G = G.to(self.device)
        self.w_dim = int(G.w_dim)
        self.num_ws = self.layout.num_ws
        self.layers = layers
        self.rows = rows
        self.noise_mode = noise_mode
        self.reference_ops = bool(reference_ops)
        index = _resolve_block(self.layout, block, layers)
        self.block = self.layout.blocks[index]
        self._module = self.G.synthesis.input if self.block == "input" else getattr(self.G.synthesis, self.block)
        w0 = torch.as_tensor(w0)
        if w0.ndim == 2 and w0.shape[0] == 1:
            w0 = w0[0]
        if w0.shape != (self.w_dim,):
            raise HubnessError(f"the base latent must have shape ({self.w_dim},), got {tuple(w0.shape)}")
        if not bool(torch.isfinite(w0).all()):
            raise HubnessError("the base latent has NaN or inf entries")
        self.w0 = w0.detach().to(self.device, torch.float32)
        mask = torch.zeros(self.num_ws, 1, dtype=torch.bool, device=self.device)
        mask[list(rows)] = True
        self._mask = mask
        with torch.no_grad():
            self.output_shape = tuple(self(self.w0).shape)

    def ws(self, w) -> torch.Tensor:
        """Latents (..., w_dim) -> ws (..., num_ws, w_dim): the rows of ``layers`` from ``w``, others ``w0``."""
        w = torch.as_tensor(w).to(self.device, torch.float32)
        # A select (not an index write into a copy of w0) keeps ws a pure function of w for torch.func.
        return torch.where(self._mask, w.unsqueeze(-2), self.w0)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """The block's feature map at latent ``w`` (w_dim,): shape (C, H, W), float32, differentiable."""
        ws = self.ws(w).unsqueeze(0)
        module = self._module

        def stop(mod, inputs, output):
            raise _Reached(output[0] if isinstance(output, tuple) else output)

        handle = module.register_forward_hook(stop)
        try:
            with reference_ops() if self.reference_ops else contextlib.nullcontext():
                self.G.synthesis(ws, noise_mode=self.noise_mode, force_fp32=True)
        except _Reached as reached:
            return reached.output[0]
        finally:
            handle.remove()
        raise HubnessError(f"block {self.block} never ran in the synthesis forward")  # pragma: no cover

    def images(self, latents, *, noise_mode: Optional[str] = None) -> torch.Tensor:
        """Full images of latents (n, w_dim) by the same layer rule, through the network's own forward.

        Returns
        -------
        torch.Tensor, shape (n, C, H, W), float32 on the network's device
            A latent equal to ``w0`` gives ``G.synthesis`` of the broadcast ``w0``: ``gen_images.py``'s image.
        """
        latents = torch.as_tensor(latents).to(self.device, torch.float32)
        if latents.ndim != 2 or latents.shape[1] != self.w_dim:
            raise HubnessError(f"latents must have shape (n, {self.w_dim}), got {tuple(latents.shape)}")
        mode = self.noise_mode if noise_mode is None else noise_mode
        with torch.no_grad():
            # One latent per call, as gen_images.py: batched convolutions may round differently.
            return torch.cat([self.G.synthesis(self.ws(latents[j:j + 1]), noise_mode=mode)
                              for j in range(len(latents))])
