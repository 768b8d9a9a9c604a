"""The embedded generator, its discriminator and the classifier, built from the weights files under ``extensions/data``.

The generator is stylegan2-ada's own ``Generator`` class (mapping network to W, synthesis network), so
it is driven through exactly the W-space path of a downloaded network pickle. Its class comes from
stylegan3-compatible code (``--stylegan3 DIR``, else code already imported in this process, else
``$STYLEGAN3_DIR``, importable modules, or the stylegan2-ada runtime of the ``draggan`` wheel); the
weights file provides only numbers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Optional

import torch

from .._checks import resolve_device
from .classifier import DigitClassifier
from .discriminator import Discriminator
from .weights import WeightsFileError, read_weights, load_state

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
GENERATOR_WEIGHTS = DATA_DIR / "digits_generator.npz"
DISCRIMINATOR_WEIGHTS = DATA_DIR / "digits_discriminator.npz"
CLASSIFIER_WEIGHTS = DATA_DIR / "digits_classifier.npz"
#: The ``--network`` name of the embedded generator.
NETWORK_NAME = "digits"
#: The embedded networks by ``--network`` name: (generator weights, discriminator weights). ``digits`` has a
#: 64-d W; ``digits-w512`` is the same training with z and w 512-d, like the paper's StyleGAN2.
EMBEDDED_NETWORKS = {
    NETWORK_NAME: (GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS),
    "digits-w512": (DATA_DIR / "digits_w512_generator.npz", DATA_DIR / "digits_w512_discriminator.npz"),
}


def _weights_path(path, role: int) -> Path:
    """``path`` as a weights file: None -> the default network's, an embedded name -> its file, else a path."""
    if path is None:
        path = NETWORK_NAME
    return EMBEDDED_NETWORKS[str(path)][role] if str(path) in EMBEDDED_NETWORKS else Path(path)


def draggan_runtime() -> Optional[Path]:
    """``draggan/stylegan2``, the stylegan2-ada code inside the installed ``draggan`` wheel, or None."""
    try:
        spec = importlib.util.find_spec("draggan")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "stylegan2"
    return root if (root / "legacy.py").is_file() else None


def stylegan_runtime(stylegan3=None):
    """Activate stylegan3-compatible code and return its :class:`~extensions.stylegan.checkout.Checkout`.

    Order: ``stylegan3`` (a directory); code already imported in this process (one process holds one
    checkout); ``$STYLEGAN3_DIR``; importable modules; the draggan runtime.

    Raises
    ------
    CheckoutNotFoundError
        When none of them is available.
    """
    from ..stylegan.checkout import CheckoutNotFoundError, activate, find_checkout
    if stylegan3 is None or str(stylegan3) == "":
        module = sys.modules.get("torch_utils")
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is not None:
            return activate(find_checkout(Path(origin).resolve().parent.parent))
    try:
        checkout = find_checkout(stylegan3)
    except CheckoutNotFoundError:
        if stylegan3 is not None and str(stylegan3) != "":
            raise
        root = draggan_runtime()
        if root is None:
            raise CheckoutNotFoundError(
                "the embedded network needs stylegan2-ada's code: pip install --no-deps draggan==1.1.6, or pass "
                "--stylegan3 DIR / set STYLEGAN3_DIR to a stylegan3 or stylegan2-ada-pytorch checkout") from None
        checkout = find_checkout(root)
        checkout.source = "the draggan wheel"
    return activate(checkout)


def generator_class(stylegan3=None):
    """stylegan2's ``Generator`` from the active code: ``training.networks_stylegan2`` (stylegan3) or
    ``training.networks`` (stylegan2-ada)."""
    stylegan_runtime(stylegan3)
    for name in ("training.networks_stylegan2", "training.networks"):
        try:
            return importlib.import_module(name).Generator
        except ModuleNotFoundError:
            continue
    raise ImportError("the stylegan code has neither training/networks_stylegan2.py nor training/networks.py")


def load_generator(path=None, device=None, *, stylegan3=None) -> torch.nn.Module:
    """The embedded digits generator (or another weights file of the same format), in eval mode.

    Parameters
    ----------
    path : str or Path, optional
        Weights file, or the name of an embedded network (:data:`EMBEDDED_NETWORKS`); default the committed
        ``digits_generator.npz``.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    stylegan3 : str or Path, optional
        stylegan3-compatible code to build the Generator class from (see :func:`stylegan_runtime`).

    Returns
    -------
    torch.nn.Module
        A stylegan2 ``Generator``: ``G.mapping(z, None)`` -> ws (n, num_ws, w_dim), ``G.synthesis(ws)`` ->
        images (n, 1, 16, 16) in about [-1, 1]; ``G.mapping.w_avg`` is the mean W.
    """
    path = _weights_path(path, 0)
    state, args, meta = read_weights(path)
    G = generator_class(stylegan3)(**args)
    load_state(G, state, path)
    G.eval().requires_grad_(False)
    G.weights_meta = meta
    log.info("embedded generator %s: %s", path.name, meta.get("summary", ""))
    return G.to(resolve_device(device))


def load_discriminator(path=None, device=None, *, stylegan3=None) -> Discriminator:
    """The discriminator trained against the embedded generator (or another weights file of the same
    format), in eval mode.

    Parameters
    ----------
    path : str or Path, optional
        Weights file, or the name of an embedded network (:data:`EMBEDDED_NETWORKS`); default the committed
        ``digits_discriminator.npz``.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    stylegan3 : str or Path, optional
        Taken so that both loaders accept the same arguments; the discriminator is this package's own
        class (:class:`~extensions.digits.discriminator.Discriminator`) and needs no stylegan code.

    Returns
    -------
    Discriminator
        ``D(img, c)`` -> logits (n, 1) of images (n, 1, 16, 16) in [-1, 1]; higher means more like real digits.
    """
    path = _weights_path(path, 1)
    state, args, meta = read_weights(path)
    try:
        D = Discriminator(**args)
    except TypeError as exc:
        raise WeightsFileError(f"weights file {str(path)!r} does not hold a discriminator: its arguments {args} "
                               f"do not build one ({exc})") from exc
    load_state(D, state, path)
    D.eval().requires_grad_(False)
    D.weights_meta = meta
    log.info("embedded discriminator %s: %s", path.name, meta.get("summary", ""))
    return D.to(resolve_device(device))


def load_classifier(path=None, device=None) -> DigitClassifier:
    """The embedded digits classifier, in eval mode (see :class:`DigitClassifier`)."""
    path = CLASSIFIER_WEIGHTS if path is None else Path(path)
    state, args, meta = read_weights(path)
    net = DigitClassifier(**args)
    load_state(net, state, path)
    net.eval().requires_grad_(False)
    net.weights_meta = meta
    return net.to(resolve_device(device))


def is_embedded(network) -> bool:
    """True when ``network`` names an embedded generator: None, '' (the default :data:`NETWORK_NAME`) or a
    key of :data:`EMBEDDED_NETWORKS`."""
    return network is None or str(network) == "" or str(network) in EMBEDDED_NETWORKS


def load_any_network(network=None, *, stylegan3=None, device=None) -> torch.nn.Module:
    """The embedded generator when ``network`` is None, '' or an embedded name ('digits', 'digits-w512'),
    else the generator of any other network source (:func:`extensions.generators.load_generator`: network
    pickles, BigGAN, ``module:callable``)."""
    if is_embedded(network):
        return load_generator(None if network in (None, "") else str(network), device=device, stylegan3=stylegan3)
    from ..generators import load_generator as load_from_source  # the registry imports this module
    return load_from_source(str(network), stylegan3=stylegan3, device=device)
