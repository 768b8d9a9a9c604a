"""stylegan3 / stylegan2-ada integration: find the checkout, load network pickles, adapt generators and
render sampled latents.

==============  ===========================================================================================
``checkout``    find stylegan3-compatible code (``--stylegan3 DIR`` > ``$STYLEGAN3_DIR`` > importable)
``loader``      ``load_network(path_or_url) -> G_ema``, one error type per failure
``adapter``     ``make_adapter(G)``: z/w dimensions, Z -> W mapping, synthesis, labels, input transform
``generate``    ``generate_images(...)``: choose latents with a sampler and write images, CSV and .npz
``cli``         click options shared by ``gen_images_hub.py`` and the patched ``gen_images.py``
==============  ===========================================================================================
"""

from .adapter import GenericAdapter, GeneratorAdapter, StyleGANAdapter, input_transform, is_stylegan, make_adapter
from .checkout import (Checkout, CheckoutError, CheckoutNotFoundError, activate, compat_shims, find_checkout,
                       load_checkout)
from .generate import GenerationResult, generate_images
from .loader import (MissingGeneratorError, NetworkLoadError, NetworkNotFoundError, NotAGeneratorError,
                     NotAPickleError, OfflineError, load_network)

__all__ = [
    "GenericAdapter", "GeneratorAdapter", "StyleGANAdapter", "input_transform", "is_stylegan", "make_adapter",
    "Checkout", "CheckoutError", "CheckoutNotFoundError", "activate", "compat_shims", "find_checkout",
    "load_checkout", "GenerationResult", "generate_images", "MissingGeneratorError", "NetworkLoadError",
    "NetworkNotFoundError", "NotAGeneratorError", "NotAPickleError", "OfflineError", "load_network",
]
