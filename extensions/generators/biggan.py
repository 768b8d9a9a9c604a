"""BigGAN-deep through ``pytorch-pretrained-biggan`` (PyPI): loader, generator module and adapter.

``--network`` takes the package's names, ``biggan-deep-128``, ``biggan-deep-256`` and
``biggan-deep-512`` (weights and config from the package's cache, ``$PYTORCH_PRETRAINED_BIGGAN_CACHE``
or ``~/.pytorch_pretrained_biggan``, downloaded there when missing), or a folder holding ``config.json``
and ``pytorch_model.bin`` in the package's format (``BigGAN.from_pretrained(folder)`` reads the same).

Latents are drawn as the package's own example draws them: seed s with truncation psi is
``truncated_noise_sample(truncation=psi, batch_size=1, seed=s)`` (a normal truncated to [-2, 2], times
psi), and the model is called with the same psi (``model(z, one_hot, psi)``), so a seed renders the
image of the package's README code with ``model.eval()``. Hub values are computed in Z on the draws at
psi = 1: psi scales every latent of a pool by the same factor, which scales every distance alike and
changes no k-NN list, so the hub values and the chosen seeds are those of any psi. A sampler's truncation
(``mean + psi * (z - mean)`` with mean 0) then gives exactly ``truncated_noise_sample(truncation=psi)``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .._checks import HubnessError, check_class
from ..outdir import file_sha256
from ..stylegan.adapter import TruncatedZAdapter
from ..stylegan.loader import NetworkLoadError, NetworkNotFoundError, NotAGeneratorError, OfflineError
from .registry import NetworkSource

log = logging.getLogger(__name__)

#: The package's model names (``pytorch_pretrained_biggan.model.PRETRAINED_MODEL_ARCHIVE_MAP``).
MODEL_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
#: Keys only a BigGAN config has; a folder whose config.json has none is another toolkit's.
_CONFIG_KEYS = ("channel_width", "class_embed_dim", "layers", "n_stats")


def _package():
    """``pytorch_pretrained_biggan``, or a one-line error saying how to install it."""
    try:
        import pytorch_pretrained_biggan
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "pytorch_pretrained_biggan"
        raise NetworkLoadError(f"BigGAN needs the PyPI packages pytorch-pretrained-biggan and boto3 ({missing!r} "
                               f"is missing): pip install pytorch-pretrained-biggan boto3") from exc
    return pytorch_pretrained_biggan


def cache_dir() -> Path:
    """The package's download cache, read as the package reads it."""
    return Path(os.getenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", Path.home() / ".pytorch_pretrained_biggan"))


def model_urls(name: str) -> dict:
    """{'config': URL, 'weights': URL} of a model name of the package."""
    from pytorch_pretrained_biggan import model
    return dict(config=model.PRETRAINED_CONFIG_ARCHIVE_MAP[name], weights=model.PRETRAINED_MODEL_ARCHIVE_MAP[name])


def cache_name(url: str) -> str:
    """The package's cache file name of ``url`` without its ETag part: ``sha256(url)``. The package adds
    ``.sha256(etag)`` when it downloads; both names are found."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def cached_file(url: str, folder: Path) -> Optional[Path]:
    """The cached copy of ``url`` in ``folder`` (the newest, if several ETags were downloaded), or None."""
    stem = cache_name(url)
    found = [Path(p) for p in glob.glob(str(folder / f"{stem}*"))
             if not p.endswith(".json") and Path(p).name.split(".")[0] == stem and os.path.isfile(p)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_files(network: str) -> dict:
    """{'config': Path, 'weights': Path} of a model name or a folder; downloads a name's missing files
    into the package's cache.

    Raises
    ------
    NetworkLoadError
        An unknown name; a folder without its files.
    OfflineError
        A name whose files are not cached and could not be downloaded: the message names each URL and the
        exact file to put it in.
    """
    if network in MODEL_NAMES:
        _package()
        folder, urls = cache_dir(), model_urls(network)
        files = {role: cached_file(url, folder) for role, url in urls.items()}
        for role, url in urls.items():
            if files[role] is not None:
                continue
            from pytorch_pretrained_biggan.file_utils import cached_path
            log.info("downloading %s (%s) into %s", network, role, folder)
            try:
                files[role] = Path(cached_path(url, cache_dir=str(folder)))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # requests, botocore and the package raise many types
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
                wanted = "; ".join(f"{u} as {folder / cache_name(u)}" for r, u in urls.items() if files[r] is None)
                raise OfflineError(f"could not download {network} ({type(exc).__name__}: {reason}); on an offline "
                                   f"machine put the files in the package's cache {str(folder)!r} "
                                   f"($PYTORCH_PRETRAINED_BIGGAN_CACHE): {wanted}; or save them as {CONFIG_NAME} and "
                                   f"{WEIGHTS_NAME} in a folder and pass --network FOLDER", network,
                                   str(folder / cache_name(urls["weights"]))) from exc
        return files
    path = Path(os.path.expanduser(network))
    if not path.is_dir():
        raise NetworkNotFoundError(f"unknown BigGAN model {network!r}; choose {', '.join(MODEL_NAMES)}, or pass a "
                                   f"folder holding {CONFIG_NAME} and {WEIGHTS_NAME}", network)
    files = dict(config=path / CONFIG_NAME, weights=path / WEIGHTS_NAME)
    if files["config"].is_file():  # another toolkit's folder is named as such before a file is missed
        read_config(files["config"], network)
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise NetworkNotFoundError(f"BigGAN folder {network!r} lacks {' and '.join(missing)}; it must hold "
                                   f"{CONFIG_NAME} and {WEIGHTS_NAME} as BigGAN.from_pretrained reads them", network)
    return files


def read_config(path: Path, network: str) -> dict:
    """The BigGAN config in ``path`` as a dict.

    Raises
    ------
    NetworkLoadError, NotAGeneratorError
        Not JSON; JSON without any key only a BigGAN config has (another toolkit's config).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NetworkLoadError(f"{str(path)!r} is not a JSON file ({type(exc).__name__}); the BigGAN config must be "
                               f"the package's {CONFIG_NAME}", network) from exc
    if not isinstance(raw, dict) or not any(key in raw for key in _CONFIG_KEYS):
        keys = ", ".join(list(raw)[:6]) if isinstance(raw, dict) else type(raw).__name__
        raise NotAGeneratorError(f"{str(path)!r} is not a BigGAN config (it has {keys or 'no keys'}, none of "
                                 f"{', '.join(_CONFIG_KEYS)}): a checkpoint of another toolkit? --network takes "
                                 f"BigGAN folders, StyleGAN pickles and module:callable", network)
    return raw


def load_biggan(network: str, device=None) -> "BigGANGenerator":
    """A BigGAN from a model name or a folder, as :class:`BigGANGenerator` in eval mode on ``device``.

    Builds ``BigGAN(BigGANConfig.from_json_file(config.json))`` and loads ``pytorch_model.bin`` as
    ``BigGAN.from_pretrained`` does, but requires every weight to be present and of the right shape (the
    package loads with ``strict=False``, which would leave random weights in place of missing ones).

    Raises
    ------
    NetworkLoadError
        One line per failure, naming the file: unknown name, missing file, a config or weights file of
        another toolkit, weights that do not fit the config; :class:`OfflineError` for a failed download.
    """
    files = resolve_files(network)
    pkg = _package()
    raw = read_config(files["config"], network)
    try:
        model = pkg.BigGAN(pkg.BigGANConfig.from_dict(raw))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise NetworkLoadError(f"{str(files['config'])!r} does not build a BigGAN ({type(exc).__name__}: "
                               f"{str(exc)[:120]}); use the package's {CONFIG_NAME}", network) from exc
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning precedes the error raised below
            warnings.simplefilter("ignore")
            state = torch.load(files["weights"], map_location="cpu", weights_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120]
        raise NotAGeneratorError(f"{str(files['weights'])!r} is not a PyTorch state dict ({type(exc).__name__}: "
                                 f"{reason}); a StyleGAN network pickle is passed as --network FILE.pkl",
                                 network) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NotAGeneratorError(f"{str(files['weights'])!r} holds a {type(state).__name__} that is not a state dict "
                                 f"of tensors: a checkpoint of another toolkit? pass BigGAN's {WEIGHTS_NAME}", network)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise NotAGeneratorError(f"{str(files['weights'])!r} lacks {len(missing)} of the {len(expected)} BigGAN "
                                 f"weights (e.g. {missing[0]!r}): a checkpoint of another toolkit, or of another "
                                 f"model than {CONFIG_NAME} describes", network)
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise NotAGeneratorError(f"{str(files['weights'])!r} does not fit {CONFIG_NAME}: {k!r} has shape "
                                 f"{tuple(state[k].shape)}, the config builds {tuple(expected[k].shape)}; use the "
                                 f"config saved with these weights", network)
    model.load_state_dict(state, strict=False)  # as from_pretrained; every expected key is present
    return BigGANGenerator(model, network).eval().requires_grad_(False).to(device or "cpu")


def check_truncation(psi) -> float:
    """BigGAN's truncation as a float in (0, 1] (the model asserts that range)."""
    try:
        psi = float(psi)
    except (TypeError, ValueError):
        raise HubnessError(f"--trunc must be a number, got {psi!r}") from None
    if not 0 < psi <= 1:
        raise HubnessError(f"--trunc {psi:g} is outside BigGAN's truncation range (0, 1]; use e.g. --trunc 0.4 (the "
                           f"package's example) or 1")
    return psi


class BigGANGenerator(torch.nn.Module):
    """A ``pytorch_pretrained_biggan.BigGAN`` with the attributes the samplers read.

    Attributes
    ----------
    biggan : pytorch_pretrained_biggan.BigGAN
    z_dim, c_dim : int
        Latent size and number of classes (one-hot labels of shape (n, c_dim)); c_dim is 0 once a class
        is bound (:meth:`bind_class`).
    num_classes : int
    class_idx : int or None
        The bound class.
    img_resolution, img_channels : int
    name : str
        The ``--network`` value it was loaded from.
    """

    def __init__(self, biggan: torch.nn.Module, name: str = "", class_idx: Optional[int] = None):
        super().__init__()
        self.biggan = biggan
        self.z_dim = int(biggan.config.z_dim)
        self.num_classes = int(biggan.config.num_classes)
        self.class_idx = class_idx
        self.c_dim = self.num_classes if class_idx is None else 0
        self.img_resolution = int(biggan.config.output_dim)
        self.img_channels = 3
        self.name = name

    def bind_class(self, class_idx: int) -> "BigGANGenerator":
        """The same model as an unconditional generator of class ``class_idx`` (for code that takes
        unconditional generators only, such as the report's figures); the weights are shared."""
        return BigGANGenerator(self.biggan, self.name, check_class(class_idx, self.num_classes)).train(self.training)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Images (n, 3, H, W) in [-1, 1] of latents z (n, z_dim) and one-hot labels c (n, c_dim)."""
        if self.class_idx is not None:
            c = torch.zeros(len(z), self.num_classes, device=z.device)
            c[:, self.class_idx] = 1
        return self.biggan(z, c, check_truncation(truncation_psi))

    def seed_latents(self, seeds: Sequence[int], truncation_psi: float = 1.0) -> np.ndarray:
        """``truncated_noise_sample(truncation=psi, batch_size=1, seed=s)`` per seed, shape (n, z_dim),
        float64 holding the package's float32 values."""
        from pytorch_pretrained_biggan import truncated_noise_sample
        psi = check_truncation(truncation_psi)
        out = np.empty((len(seeds), self.z_dim), dtype=np.float64)
        for row, seed in enumerate(seeds):
            out[row] = truncated_noise_sample(batch_size=1, dim_z=self.z_dim, truncation=psi, seed=int(seed))[0]
        return out


class BigGANAdapter(TruncatedZAdapter):
    """Drives a :class:`BigGANGenerator`: Z space, class labels required, truncation psi in the latent
    draw and in the model, images converted to uint8 as the package's ``convert_to_images``."""

    kind = "BigGAN"

    def check_truncation(self, psi) -> float:
        return check_truncation(psi)

    def seed_latents(self, seeds, truncation_psi=1.0):
        return self.G.seed_latents(seeds, truncation_psi)

    @property
    def sample_z(self):
        return self.G.seed_latents

    def quantize(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, H, W) as ``convert_to_images``: ``((x + 1) / 2) * 256`` clipped to [0, 255],
        truncated (float32 arithmetic in the same order, so the same bytes as the package's PNGs)."""
        return (((img + 1) / 2.0) * 256).clamp(0, 255).to(torch.uint8)


BigGANGenerator.adapter_class = BigGANAdapter


class BigGANSource(NetworkSource):
    name = "biggan"
    takes = f"BigGAN-deep: {', '.join(MODEL_NAMES)} or a folder with {CONFIG_NAME} and {WEIGHTS_NAME}"

    def claims(self, network: str) -> bool:
        if network in MODEL_NAMES:
            return True
        path = os.path.expanduser(network)
        if os.path.isdir(path):
            return any(os.path.isfile(os.path.join(path, n)) for n in (CONFIG_NAME, WEIGHTS_NAME))
        # An unknown model name (not a file, not a URL) gets the list of names, not "pickle not found".
        return network.lower().startswith("biggan") and not os.path.exists(path) and "/" not in network

    def load(self, network, *, device, **options):
        return load_biggan(network, device)

    def identity(self, network):
        files = resolve_files(network)
        ident = dict(network=network if network in MODEL_NAMES else os.path.abspath(os.path.expanduser(network)))
        ident.update({f"{role}_sha256": file_sha256(path) for role, path in files.items()})
        return ident
