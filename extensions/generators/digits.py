"""The embedded networks ('digits', 'digits-w512', and the default when ``--network`` is not given): a
source like any other, so neither the StyleGAN loader nor :mod:`extensions.digits` imports the other."""

from __future__ import annotations

from ..digits.network import EMBEDDED_NETWORKS, NETWORK_NAME, is_embedded, load_discriminator, load_generator
from .registry import NetworkSource


class DigitsSource(NetworkSource):
    name = "digits"
    takes = f"an embedded network: {', '.join(EMBEDDED_NETWORKS)} (default {NETWORK_NAME})"

    def claims(self, network: str) -> bool:
        return is_embedded(network)

    def load(self, network, *, device, stylegan3=None, **options):
        return load_generator(network or None, device=device, stylegan3=stylegan3)

    def load_discriminator(self, network, *, device, stylegan3=None, **options):
        return load_discriminator(network or None, device=device)

    def identity(self, network):
        return dict(network=network or NETWORK_NAME)
