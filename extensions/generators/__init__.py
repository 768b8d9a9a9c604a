"""Network sources: every kind of generator ``--network`` can name, one file per toolkit.

==============  =========================================================================================
``digits``      the embedded networks (``digits``, ``digits-w512``; the default)
``studiogan``   StudioGAN runs (``CONFIG.yaml:CHECKPOINT.pth`` or a folder) through a checkout's own code
``module``      ``module:callable``: any ``torch.nn.Module`` ``G(z[, c])`` with ``z_dim`` (Z-space hub values)
``biggan``      BigGAN-deep through ``pytorch-pretrained-biggan``: ``biggan-deep-128|256|512`` or a folder
``stylegan``    stylegan3 / stylegan2-ada network pickles (path or URL): every value no other source claims
==============  =========================================================================================

:func:`load_generator` asks the sources in this order; :func:`register_source` adds one (before the
StyleGAN source unless told otherwise). :func:`extensions.stylegan.loader.load_network` is the same door.
A generator class can name its adapter (``adapter_class``) for :func:`extensions.stylegan.make_adapter`.
"""

from .registry import (NetworkSource, load_discriminator, load_generator, network_identity, register_source,
                       source_for, sources)
from .stylegan import StyleGANSource
from .digits import DigitsSource
from .module import ModuleSource
from .biggan import BigGANAdapter, BigGANGenerator, BigGANSource, load_biggan
from .studiogan import StudioGANAdapter, StudioGANGenerator, StudioGANSource, load_studiogan

for _source in (StyleGANSource(), DigitsSource(), ModuleSource(), BigGANSource()):
    register_source(_source)
register_source(StudioGANSource(), before="module")  # ``cfg.yaml:G.pth`` also reads as ``module:attr``

__all__ = [
    "NetworkSource", "load_discriminator", "load_generator", "network_identity", "register_source",
    "source_for", "sources", "StyleGANSource", "DigitsSource", "ModuleSource", "BigGANSource",
    "BigGANAdapter", "BigGANGenerator", "load_biggan", "StudioGANSource", "StudioGANAdapter",
    "StudioGANGenerator", "load_studiogan",
]
