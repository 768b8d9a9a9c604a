"""The registry of network sources: what ``--network`` may name, and which code loads it.

A source claims the ``--network`` values it understands (:meth:`NetworkSource.claims`) and turns one into
a generator module (:meth:`NetworkSource.load`). :func:`source_for` asks the registered sources in
order; the first that claims a value loads it. The StyleGAN source comes last and claims every path or
URL, so a value nothing else claims is read as a network pickle, as before sources existed.
"""

from __future__ import annotations

import logging
from typing import List, Optional

import torch

from .._checks import resolve_device
from ..stylegan.loader import MissingDiscriminatorError

log = logging.getLogger(__name__)

_SOURCES: List["NetworkSource"] = []


class NetworkSource:
    """One kind of ``--network`` value: a toolkit's checkpoints, a name of bundled weights, a Python door.

    Subclasses set :attr:`name` and implement :meth:`claims` and :meth:`load`.
    """

    #: Short name, e.g. 'stylegan', 'biggan'.
    name = ""
    #: One line for listings: which values the source takes.
    takes = ""

    def claims(self, network: str) -> bool:
        """True when this source loads ``network`` (it may still fail, with an error of its own)."""
        raise NotImplementedError

    def load(self, network: str, *, device: torch.device, **options) -> torch.nn.Module:
        """The generator ``network`` names, on ``device``, with gradients off.

        ``options`` are those of :func:`load_generator` (``stylegan3``, ``checkout``, ``cache_dir``); a
        source ignores those it has no use for.
        """
        raise NotImplementedError

    def load_discriminator(self, network: str, *, device: torch.device, **options) -> torch.nn.Module:
        """The discriminator paired with ``network``'s generator, when the source has one."""
        raise MissingDiscriminatorError(f"{network!r} ({self.takes}) comes without a discriminator; --interp "
                                        f"discriminator needs a StyleGAN training snapshot (network-snapshot-*.pkl) "
                                        f"or an embedded network", network)

    def identity(self, network: str) -> dict:
        """What identifies ``network``'s images in a manifest (JSON-serialisable)."""
        return dict(network=network)


def register_source(source: NetworkSource, *, before: Optional[str] = None) -> NetworkSource:
    """Add ``source`` to the registry: before the source named ``before`` (default: before the StyleGAN
    source, which claims every remaining path or URL). A source of the same name is replaced."""
    if not isinstance(source, NetworkSource):
        raise TypeError(f"expected a NetworkSource, got {type(source).__name__}")
    _SOURCES[:] = [s for s in _SOURCES if s.name != source.name]
    anchor = "stylegan" if before is None else before
    names = [s.name for s in _SOURCES]
    _SOURCES.insert(names.index(anchor) if anchor in names else len(_SOURCES), source)
    return source


def sources() -> tuple:
    """The registered sources, in the order they are asked."""
    return tuple(_SOURCES)


def source_for(network) -> NetworkSource:
    """The first registered source that claims ``network`` (a str, or None for the default)."""
    network = "" if network is None else str(network)
    for source in _SOURCES:
        if source.claims(network):
            return source
    raise LookupError(f"no network source claims {network!r}")  # unreachable: the StyleGAN source claims all


def load_generator(network, *, stylegan3=None, device=None, **options) -> torch.nn.Module:
    """The generator ``network`` names, through the first source that claims it.

    Parameters
    ----------
    network : str or None
        None or '': the embedded digits network; see the sources for the rest (:func:`sources`).
    stylegan3 : str or Path, optional
        stylegan3-compatible code for StyleGAN pickles and the embedded network.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    **options
        ``checkout``, ``cache_dir``: passed to the StyleGAN source.

    Returns
    -------
    torch.nn.Module
        A module with ``z_dim`` (and ``c_dim``); :func:`extensions.stylegan.make_adapter` drives it.
    """
    device = resolve_device(device)
    network = "" if network is None else str(network)
    source = source_for(network)
    log.debug("network %r: source %s", network, source.name)
    return source.load(network, device=device, stylegan3=stylegan3, **options)


def load_discriminator(network, *, stylegan3=None, device=None) -> torch.nn.Module:
    """The discriminator of ``network`` (a StyleGAN training snapshot or an embedded network)."""
    device = resolve_device(device)
    network = "" if network is None else str(network)
    return source_for(network).load_discriminator(network, device=device, stylegan3=stylegan3)


def network_identity(network) -> dict:
    """What identifies ``network``'s images in a manifest (see :meth:`NetworkSource.identity`)."""
    network = "" if network is None else str(network)
    return source_for(network).identity(network)
