"""StyleGAN network pickles (stylegan3, stylegan2-ada): the source that claims every remaining path or URL.

Loading is :func:`extensions.stylegan.loader.load_pickle_network`; the generator is driven by
:class:`extensions.stylegan.adapter.StyleGANAdapter` (hub values in W), or by the generic Z-space adapter
for a pickled module with ``z_dim`` that has no mapping network.
"""

from __future__ import annotations

import os

from ..outdir import file_sha256
from ..stylegan.loader import _local_path, is_url, load_pickle_discriminator, load_pickle_network
from .registry import NetworkSource


class StyleGANSource(NetworkSource):
    name = "stylegan"
    takes = "a stylegan3 / stylegan2-ada network pickle: path, file:// URL or URL"

    def claims(self, network: str) -> bool:
        return True

    def load(self, network, *, device, stylegan3=None, checkout=None, cache_dir=None, **options):
        return load_pickle_network(network, stylegan3=stylegan3, device=device, checkout=checkout,
                                   cache_dir=cache_dir)

    def load_discriminator(self, network, *, device, stylegan3=None, **options):
        return load_pickle_discriminator(network, stylegan3=stylegan3, device=device)

    def identity(self, network):
        """The URL, or the local file with the SHA-256 of its content (a snapshot overwritten in place
        renders other images)."""
        if is_url(network):
            return dict(network=network)
        path = os.path.abspath(_local_path(network))
        return dict(network=path, network_sha256=file_sha256(path) if os.path.isfile(path) else None)
