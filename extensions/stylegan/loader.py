"""Load the generator (``G_ema``) of a network pickle from a path or URL.

URLs go through the checkout's ``dnnlib.util.open_url``, so its download cache (``$DNNLIB_CACHE_DIR`` or
``~/.cache/dnnlib/downloads``) is used and filled exactly as the official scripts do. Every way a load
can fail raises its own :class:`NetworkLoadError` subclass with a one-line message that names the file
and says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
from typing import Optional

import numpy as np
import torch

from .._checks import HubnessError, resolve_device
from .adapter import is_stylegan
from .checkout import Checkout, CheckoutNotFoundError, activate, compat_shims, find_checkout

log = logging.getLogger(__name__)

#: Top-level modules a network pickle imports from the checkout.
_CHECKOUT_PACKAGES = ("dnnlib", "torch_utils", "training", "legacy")
_ZIP_MAGIC = b"PK\x03\x04"


class NetworkLoadError(HubnessError):
    """A network pickle could not be loaded. ``path`` is the file or URL as given."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path


class NetworkNotFoundError(NetworkLoadError):
    """The file does not exist (or is a directory)."""


class NotAPickleError(NetworkLoadError):
    """The file is not a pickle, or is truncated."""


class MissingGeneratorError(NetworkLoadError):
    """The pickle holds no ``G_ema``."""


class NotAGeneratorError(NetworkLoadError):
    """``G_ema`` is not a generator (a torch.nn.Module with ``z_dim``)."""


class MissingDiscriminatorError(NetworkLoadError):
    """The pickle holds no discriminator ``D`` (a ``G_ema``-only or bare-module pickle)."""


class OfflineError(NetworkLoadError):
    """A URL could not be downloaded. ``cache_file`` is where the download cache would find it."""

    def __init__(self, message: str, path: str = "", cache_file: str = ""):
        super().__init__(message, path)
        self.cache_file = cache_file


def is_url(name: str) -> bool:
    """True for ``scheme://...`` names other than ``file://`` (the test ``open_url`` itself applies)."""
    return bool(re.match("^[a-z]+://", name)) and not name.startswith("file://")


def cache_file_for(url: str, cache_dir: str) -> str:
    """Where ``dnnlib.util.open_url`` looks for ``url`` in ``cache_dir``: ``<md5(url)>_<name>``.

    ``open_url`` accepts any single file named ``<md5(url)>_*``; the suffix used here is the URL's last
    path component.
    """
    md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
    name = re.sub(r"[^0-9a-zA-Z-._]", "_", url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]) or "network.pkl"
    return os.path.join(cache_dir, f"{md5}_{name}")


class _Unpickler(pickle.Unpickler):
    """Plain unpickling that recognises a legacy TensorFlow pickle instead of failing on it."""

    class TFNetworkStub(dict):
        pass

    def find_class(self, module, name):
        if module == "dnnlib.tflib.network" and name == "Network":
            return _Unpickler.TFNetworkStub
        return super().find_class(module, name)


def _local_path(network: str) -> str:
    if network.startswith("file://"):
        from urllib.parse import urlparse
        path = urlparse(network).path
        return path[1:] if re.match(r"^/[a-zA-Z]:", path) else path
    return os.path.expanduser(network)


def _open(network: str, checkout: Optional[Checkout], cache_dir: Optional[str]):
    if not is_url(network):
        path = _local_path(network)
        if os.path.isdir(path):
            raise NetworkNotFoundError(f"network pickle {network!r} is a directory; pass the .pkl file inside it "
                                       f"(or a BigGAN folder holding config.json and pytorch_model.bin)", network)
        if not os.path.isfile(path):
            raise NetworkNotFoundError(f"network pickle {network!r} not found; check the path, or pass a URL "
                                       f"(https://...) to download it", network)
        try:
            return open(path, "rb")
        except OSError as exc:  # e.g. no read permission: not the output folder's problem
            raise NetworkLoadError(f"cannot read network pickle {network!r} ({exc.strerror or exc}); make the file "
                                   f"readable or copy it somewhere you can read it", network) from exc
    if checkout is None:
        raise CheckoutNotFoundError(f"downloading {network!r} needs dnnlib from the stylegan3 code, which was not "
                                    f"found; pass --stylegan3 DIR or set STYLEGAN3_DIR, or download the file and "
                                    f"pass its path")
    util = checkout.dnnlib.util
    cache_dir = cache_dir or util.make_cache_dir_path("downloads")
    log.info("downloading %s (cache: %s)", network, cache_dir)
    try:
        return util.open_url(network, cache_dir=cache_dir, verbose=False)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # open_url re-raises whatever requests raised last
        target = cache_file_for(network, cache_dir)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OfflineError(f"could not download {network!r} ({type(exc).__name__}: {reason[:200]}); on an offline "
                           f"machine copy the file to {target!r} (dnnlib's download cache; set DNNLIB_CACHE_DIR "
                           f"to move it) or pass its local path to --network", network, target) from exc


def _unpickle(f, network: str, checkout: Optional[Checkout]):
    head = f.read(4)
    f.seek(0)
    if head == _ZIP_MAGIC:
        raise NotAPickleError(f"{network!r} is a zip archive (torch.save?), not a network pickle; pass the .pkl "
                              f"written by stylegan3/stylegan2-ada training (network-snapshot-*.pkl), or for a "
                              f"BigGAN's pytorch_model.bin the folder holding it and its config.json", network)
    try:
        data = _Unpickler(f).load()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in _CHECKOUT_PACKAGES:
            if checkout is None:
                raise CheckoutNotFoundError(f"{network!r} needs the stylegan3 code (module {exc.name!r}), which "
                                            f"was not found; pass --stylegan3 DIR or set STYLEGAN3_DIR to a clone "
                                            f"of NVlabs/stylegan3 or stylegan2-ada-pytorch") from exc
            raise CheckoutNotFoundError(f"{network!r} needs module {exc.name!r}, which the stylegan3 code in "
                                        f"{str(checkout.root)!r} lacks; use a checkout that matches the network "
                                        f"(NVlabs/stylegan3 loads stylegan3 and stylegan2 pickles)") from exc
        raise NetworkLoadError(f"{network!r} needs the Python module {exc.name!r}, which is not importable; "
                               f"install it or add the folder that defines it to PYTHONPATH", network) from exc
    except (MemoryError, KeyboardInterrupt):
        raise
    except RuntimeError as exc:
        if "CUDA" not in str(exc):
            raise NotAPickleError(f"{network!r} is not a network pickle or is truncated (RuntimeError: "
                                  f"{str(exc)[:120]}); download it again, or pass the .pkl written by training",
                                  network) from exc
        raise NetworkLoadError(f"{network!r} holds tensors saved on a CUDA device and this machine has no CUDA; "
                               f"load it where CUDA is available, or save the network from the CPU", network) from exc
    except Exception as exc:  # unpickling garbage raises nearly any exception type
        raise NotAPickleError(f"{network!r} is not a network pickle or is truncated ({type(exc).__name__}: "
                              f"{str(exc)[:120]}); download it again, or pass the .pkl written by training",
                              network) from exc
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(x, _Unpickler.TFNetworkStub) for x in data):
        if checkout is None:
            raise CheckoutNotFoundError(f"{network!r} is a TensorFlow pickle; converting it needs legacy.py from "
                                        f"the stylegan3 code: pass --stylegan3 DIR or set STYLEGAN3_DIR")
        f.seek(0)
        with compat_shims():
            data = checkout.legacy.load_network_pkl(f)
    return data


def generator_from(data, network: str = "network") -> torch.nn.Module:
    """The generator of an unpickled network: ``data['G_ema']``, or ``data`` itself if it is a module.

    Raises
    ------
    MissingGeneratorError, NotAGeneratorError
    """
    if isinstance(data, dict):
        if "G_ema" not in data:
            keys = ", ".join(repr(k) for k in list(data)[:8]) or "none"
            raise MissingGeneratorError(f"{network!r} holds no 'G_ema' (keys: {keys}); pass a network pickle "
                                        f"written by stylegan3/stylegan2-ada training (network-snapshot-*.pkl)",
                                        network)
        G, what = data["G_ema"], "'G_ema'"
    elif isinstance(data, torch.nn.Module):
        G, what = data, "the pickled module"
    else:
        raise MissingGeneratorError(f"{network!r} holds a {type(data).__name__}, not a network dict with 'G_ema'; "
                                    f"pass a network pickle written by stylegan3/stylegan2-ada training", network)
    if not isinstance(G, torch.nn.Module):
        raise NotAGeneratorError(f"{what} in {network!r} is a {type(G).__name__}, not a generator "
                                 f"(a torch.nn.Module); pass a network pickle whose G_ema is the generator", network)
    z_dim = getattr(G, "z_dim", None)
    if isinstance(z_dim, bool) or not isinstance(z_dim, (int, np.integer)) or z_dim < 1:
        raise NotAGeneratorError(f"{what} in {network!r} is a {type(G).__name__} without a positive integer z_dim, "
                                 f"so not a generator G(z, c); pass the generator's pickle (G_ema), not a "
                                 f"discriminator or feature network", network)
    return G


def load_network(network: str, *, stylegan3=None, device=None, checkout: Optional[Checkout] = None,
                 cache_dir: Optional[str] = None) -> torch.nn.Module:
    """The generator ``network`` names, through the registered network sources
    (:mod:`extensions.generators`): a StyleGAN network pickle (:func:`load_pickle_network`), an embedded
    network ('digits'), a BigGAN ('biggan-deep-128' or a folder), or ``module:callable``.

    Takes the arguments of :func:`load_pickle_network`; a source ignores those it has no use for.
    """
    from ..generators import load_generator  # the registry imports this module: import it at call time
    return load_generator(network, stylegan3=stylegan3, device=device, checkout=checkout, cache_dir=cache_dir)


def load_pickle_network(network: str, *, stylegan3=None, device=None, checkout: Optional[Checkout] = None,
                        cache_dir: Optional[str] = None) -> torch.nn.Module:
    """The generator ``G_ema`` of a network pickle, on ``device``, with gradients off.

    Parameters
    ----------
    network : str
        Path, ``file://`` URL or URL of a network pickle (a dict with ``G_ema``, as written by stylegan3 and
        stylegan2-ada training), or of a pickled ``torch.nn.Module`` with ``z_dim`` and ``forward(z, c)``.
    stylegan3 : str or Path, optional
        Checkout to use (see :func:`extensions.stylegan.checkout.find_checkout`); ignored when ``checkout``
        is given.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    checkout : Checkout, optional
        An already found checkout.
    cache_dir : str, optional
        Download cache for URLs; default dnnlib's (``$DNNLIB_CACHE_DIR`` or ``~/.cache/dnnlib``) + ``/downloads``.

    Returns
    -------
    torch.nn.Module
        StyleGAN generators keep the mode they were pickled in (training snapshots store G_ema in eval
        mode), as ``gen_images.py`` uses them; any other module is put in eval mode.

    Raises
    ------
    NetworkNotFoundError, NotAPickleError, MissingGeneratorError, NotAGeneratorError, OfflineError
        One per failure, each naming the file.
    CheckoutNotFoundError
        When the pickle needs stylegan3 code that was not found.
    """
    network = str(network)
    device = resolve_device(device)
    data = _load_pickle(network, stylegan3, checkout, cache_dir)
    G = generator_from(data, network)
    if not is_stylegan(G):
        G.eval()
    return G.requires_grad_(False).to(device)


#: Inside :func:`reading_once`: the unpickled network files read so far, by (network, checkout, cache).
_read_once: Optional[dict] = None


@contextlib.contextmanager
def reading_once():
    """Inside the block, a network pickle is read and unpickled once: loading its discriminator after its
    generator (a training snapshot holds both) reuses the contents, which are kept until the block ends."""
    global _read_once
    outer = _read_once
    if outer is None:
        _read_once = {}
    try:
        yield
    finally:
        if outer is None:
            _read_once = None


def _load_pickle(network: str, stylegan3, checkout: Optional[Checkout], cache_dir: Optional[str]):
    """The unpickled contents of a network pickle (path or URL), through the checkout when one is found."""
    if checkout is None:
        try:
            checkout = find_checkout(stylegan3)
        except CheckoutNotFoundError:
            if stylegan3 is not None or os.environ.get("STYLEGAN3_DIR"):
                raise  # an explicit location that is wrong is an error, not a fallback
            checkout = None  # a pickle of plain torch modules needs no checkout
    if checkout is not None:
        checkout = activate(checkout)
    key = (network, None if checkout is None else str(checkout.root), cache_dir)
    if _read_once is not None and key in _read_once:
        return _read_once[key]
    log.info("loading network from %s", network)
    with _open(network, checkout, cache_dir) as f:
        if checkout is not None:
            with compat_shims():
                data = _unpickle(f, network, checkout)
        else:
            data = _unpickle(f, network, None)
    if _read_once is not None:
        _read_once[key] = data
    return data


def load_discriminator_of(network: str, *, stylegan3=None, device=None) -> torch.nn.Module:
    """The discriminator paired with the generator ``network`` names, through the registered network
    sources: ``D`` of a StyleGAN training snapshot (:func:`load_pickle_discriminator`) or an embedded
    network's discriminator (:func:`extensions.digits.load_discriminator`)."""
    from ..generators import load_discriminator  # the registry imports this module: import it at call time
    return load_discriminator(network, stylegan3=stylegan3, device=device)


def load_pickle_discriminator(network: str, *, stylegan3=None, device=None) -> torch.nn.Module:
    """The discriminator ``D`` of a network pickle (a training snapshot), on ``device``, in eval mode, with
    gradients off.

    Parameters
    ----------
    network : str
        Path, ``file://`` URL or URL of a network pickle holding ``D`` (``network-snapshot-*.pkl`` of
        stylegan3 or stylegan2-ada training).
    stylegan3 : str or Path, optional
        Checkout to use, as in :func:`load_network`.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.

    Returns
    -------
    torch.nn.Module
        ``D(img, c)`` -> logits (n, 1) of images (n, C, H, W) in [-1, 1].

    Raises
    ------
    MissingDiscriminatorError
        When the pickle holds no ``D`` (a generator-only dict or a pickled module), or a ``D`` that is not
        a torch.nn.Module.
    NetworkNotFoundError, NotAPickleError, OfflineError, CheckoutNotFoundError
        As :func:`load_network`.
    """
    network = str(network)
    device = resolve_device(device)
    data = _load_pickle(network, stylegan3, None, None)
    D = data.get("D") if isinstance(data, dict) else None
    if not isinstance(D, torch.nn.Module):
        found = (f"keys: {', '.join(repr(k) for k in list(data)[:8]) or 'none'}" if isinstance(data, dict)
                 else f"a pickled {type(data).__name__}")
        what = "holds no discriminator 'D'" if D is None else f"holds a {type(D).__name__} as 'D', not a discriminator"
        raise MissingDiscriminatorError(f"{network!r} {what} ({found}); --interp discriminator needs a training "
                                        f"snapshot (network-snapshot-*.pkl), which pickles D beside G_ema", network)
    return D.eval().requires_grad_(False).to(device)
