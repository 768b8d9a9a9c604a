"""StudioGAN runs (POSTECH-CVLab/PyTorch-StudioGAN), loaded through StudioGAN's own code from a checkout.

StudioGAN is not a package: its code comes from a checkout outside this project, found from
``--studiogan DIR`` or ``$STUDIOGAN_DIR`` (the clone, or its ``src/`` folder). Its ``src/`` goes on
``sys.path`` and the run is built as StudioGAN builds it: ``config.Configurations(YAML)`` and
``models.model.load_generator_discriminator``, then the generator's ``state_dict`` is loaded strictly.

``--network`` takes a run in one of two forms:

* ``CONFIG.yaml:CHECKPOINT.pth``: the run's config and a generator checkpoint StudioGAN saved
  (``model=G-best-weights-step=N.pth``, ``model=G_ema-...``; a dict with ``state_dict``);
* ``FOLDER``: a folder holding exactly one ``*.yaml`` and the generator checkpoints of
  ``checkpoints/RUN_NAME/``: ``G_ema`` before ``G`` (StudioGAN evaluates the EMA generator when the
  run keeps one), ``best`` before ``current``.

Sampling
--------
* BigGAN, SNGAN, ContraGAN... (every backbone but ``stylegan2``/``stylegan3``): hub values in Z. Seed s
  draws ``RandomState(s).randn(1, z_dim)`` as ``gen_images.py`` does (StudioGAN's sampler draws a batch
  from torch's global generator, which gives no image per seed). ``--trunc t`` is StudioGAN's
  ``--truncation_factor t``: the latent follows a normal truncated to [-t, t], obtained from the seed's
  normal draw by the quantile map ``Q_t(z) = Phi^-1(Phi(-t) + Phi(z) (Phi(t) - Phi(-t)))`` per coordinate
  (the distribution of ``truncnorm.rvs(-t, t)``, monotone, so a seed keeps its orthant). ``--trunc 1``,
  the default, is StudioGAN's ``-1`` (no truncation); a threshold of exactly 1 is therefore not
  available (use 0.999). Hub values are computed on the untruncated draws; the samplers carry ``t * z``
  (truncation toward the zero mean), which the generator turns back into ``Q_t(z)``.
* StyleGAN2 / StyleGAN3 backbones: hub values in W (or Z with ``--space z``), driven like NVlabs'
  networks; ``--trunc psi`` is StudioGAN's ``truncation_factor`` for them (psi in W, 1 = none).

The generator is put in eval mode: batch norms use their running statistics (StudioGAN's default
evaluation, without ``-std_stat``/``-batch_stat``) and spectral norms their stored estimate.
Runs with InfoGAN codes (``MODEL.info_type``) are refused.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import logging
import os
import re
import sys
import traceback
import types
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .._checks import HubnessError, check_class
from ..outdir import file_sha256
from ..stylegan.adapter import TruncatedZAdapter
from ..stylegan.checkout import CheckoutError, CheckoutNotFoundError
from ..stylegan.loader import NetworkLoadError, NetworkNotFoundError, NotAGeneratorError
from .registry import NetworkSource

log = logging.getLogger(__name__)

ENV_VAR = "STUDIOGAN_DIR"
#: Files that make a folder StudioGAN's ``src/``.
REQUIRED_FILES = ("config.py", "models/model.py", "models/big_resnet.py", "utils/ops.py", "utils/misc.py")
#: Top-level names StudioGAN's ``src/`` provides; another code base's modules of these names block it.
CHECKOUT_MODULES = ("config", "models", "utils", "sync_batchnorm")
#: Third-party modules StudioGAN's model code imports only for training, data and plots; a stand-in
#: takes the place of each one that is not installed, so that the generators load without them.
_OPTIONAL = {"torchvision": ("datasets", "utils", "transforms"), "seaborn": (), "kornia": ("filters",),
             "h5py": (), "wandb": ()}
CHECKPOINT_RE = re.compile(r"^model=(?P<model>G|G_ema)-(?P<when>best|current)-weights-step=(?P<step>\d+)\.pth$")
_PAIR_RE = re.compile(r"^(?P<config>.+\.ya?ml):(?P<ckpt>.+)$", re.IGNORECASE)
STYLE_BACKBONES = ("stylegan2", "stylegan3")

_WHAT_TO_DO = ("pass --studiogan DIR or set STUDIOGAN_DIR to a clone of POSTECH-CVLab/PyTorch-StudioGAN (the folder "
               "that holds src/config.py and src/models/)")


# ---------------------------------------------------------------------------------------------------------
# The checkout

def set_checkout(directory) -> None:
    """Use ``directory`` as the StudioGAN checkout (the ``--studiogan`` option): it becomes
    ``$STUDIOGAN_DIR``, so that processes started later (``--gpus``) find it too."""
    global _FROM_OPTION
    if directory is not None and str(directory) != "":
        os.environ[ENV_VAR] = _FROM_OPTION = str(directory)


_FROM_OPTION: Optional[str] = None


def find_checkout(directory=None, *, environ=None) -> Path:
    """StudioGAN's ``src/`` folder: from ``directory``, else ``$STUDIOGAN_DIR``.

    Raises
    ------
    CheckoutNotFoundError
        Neither is given, or the folder (nor its ``src/``) holds :data:`REQUIRED_FILES`.
    """
    environ = os.environ if environ is None else environ
    if directory is not None and str(directory) != "":
        given, source = directory, "--studiogan"
    elif environ.get(ENV_VAR):
        given = environ[ENV_VAR]
        source = "--studiogan" if given == _FROM_OPTION else ENV_VAR
    else:
        raise CheckoutNotFoundError(f"StudioGAN code not found: {ENV_VAR} is not set; {_WHAT_TO_DO}")
    root = Path(os.path.expanduser(str(given))).resolve()
    if not root.is_dir():
        raise CheckoutNotFoundError(f"StudioGAN code not found: {source} {str(given)!r} is not a directory; "
                                    f"{_WHAT_TO_DO}")
    for src in (root / "src", root):
        if all((src / name).is_file() for name in REQUIRED_FILES):
            return src
    missing = [name for name in REQUIRED_FILES if not (root / "src" / name).is_file()]
    raise CheckoutNotFoundError(f"StudioGAN code not found in {str(root)!r} (from {source}): it lacks "
                                f"src/{', src/'.join(missing)}; {_WHAT_TO_DO}")


def _placeholder(module_name: str, attr: str):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError(f"{module_name}.{attr} needs the package {module_name.split('.')[0]!r}, which "
                                  f"is not installed (StudioGAN's generators load without it)",
                                  name=module_name.split(".")[0])

    missing.__name__ = attr
    return missing


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"stylegan3-hubness stand-in for the missing module {name!r}")
    module.__path__ = []
    module.__stylegan3_hubness_shim__ = True

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(name, attr)

    module.__getattr__ = __getattr__
    return module


@contextlib.contextmanager
def _stand_ins():
    """Stand-ins for the :data:`_OPTIONAL` packages that are not installed, while StudioGAN's modules are
    first imported; removed afterwards (the modules keep the placeholders they took)."""
    installed = {}
    for name, subs in _OPTIONAL.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            continue
        installed[name] = _stand_in(name)
        for sub in subs:
            installed[f"{name}.{sub}"] = child = _stand_in(f"{name}.{sub}")
            setattr(installed[name], sub, child)
    sys.modules.update(installed)
    try:
        yield sorted(installed)
    finally:
        for name, module in installed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


_ACTIVE: dict = {}


def activate(src: Path) -> dict:
    """Put StudioGAN's ``src/`` on ``sys.path`` and import ``config`` and ``models.model``.

    Returns {'config': module, 'model': module}; free when called again for the same folder.

    Raises
    ------
    CheckoutError
        Modules of the same names from elsewhere are imported; StudioGAN's code fails to import (a
        package it needs at import time is missing: PyYAML, scipy, matplotlib, tqdm).
    """
    key = str(src)
    if key in _ACTIVE:
        return _ACTIVE[key]
    for name in CHECKOUT_MODULES:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", []) or []), None)
        if module is not None and origin and not str(Path(origin).resolve()).startswith(key + os.sep):
            raise CheckoutError(f"a module {name!r} from {origin!r} is already imported in this process; StudioGAN's "
                                f"code ({key!r}) needs that name: use another process")
    if key not in sys.path:
        sys.path.insert(0, key)
    try:
        with _stand_ins() as shims, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if shims:
                log.debug("stand-ins for missing packages: %s", ", ".join(shims))
            modules = dict(config=importlib.import_module("config"), model=importlib.import_module("models.model"),
                           misc=importlib.import_module("utils.misc"))
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        package = {"yaml": "pyyaml"}.get(missing, missing)
        raise CheckoutError(f"StudioGAN code in {key!r} failed to import: {exc}; install the missing package "
                            f"(pip install {package})") from exc
    except Exception as exc:
        raise CheckoutError(f"StudioGAN code in {key!r} failed to import ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:160]}); use a clone of POSTECH-CVLab/PyTorch-StudioGAN")
    _ACTIVE[key] = modules
    log.info("StudioGAN code: %s", key)
    return modules


# ---------------------------------------------------------------------------------------------------------
# Runs: a config YAML and a generator checkpoint

def _checkpoint_rank(path: Path) -> tuple:
    match = CHECKPOINT_RE.match(path.name)
    return (match.group("model") == "G_ema", match.group("when") == "best", int(match.group("step")))


def resolve_run(network: str) -> dict:
    """{'config': Path, 'checkpoint': Path} of a ``--network`` value (see the module docstring).

    Raises
    ------
    NetworkNotFoundError
        A file or folder that is not there; a folder without one YAML or without generator checkpoints.
    """
    match = _PAIR_RE.match(network)
    if match:
        files = dict(config=Path(os.path.expanduser(match.group("config"))),
                     checkpoint=Path(os.path.expanduser(match.group("ckpt"))))
        for role, path in files.items():
            if not path.is_file():
                raise NetworkNotFoundError(f"StudioGAN run {network!r}: {role} file {str(path)!r} not found; pass "
                                           f"--network CONFIG.yaml:model=G-best-weights-step=N.pth or a folder "
                                           f"holding both", network)
        return files
    path = Path(os.path.expanduser(network))
    if path.is_file():
        what = "config" if path.suffix.lower() in (".yaml", ".yml") else "checkpoint"
        other = "the generator checkpoint it trained" if what == "config" else "the run's config YAML"
        raise NetworkNotFoundError(f"StudioGAN run {network!r} is a {what} alone; name {other} too: --network "
                                   f"CONFIG.yaml:CHECKPOINT.pth, or a folder holding both", network)
    if not path.is_dir():
        raise NetworkNotFoundError(f"StudioGAN run {network!r} not found", network)
    configs = sorted(glob.glob(os.path.join(glob.escape(str(path)), "*.y*ml")))
    ckpts = sorted((Path(p) for p in glob.glob(os.path.join(glob.escape(str(path)), "model=G*.pth"))
                    if CHECKPOINT_RE.match(os.path.basename(p))), key=_checkpoint_rank)
    if len(configs) != 1:
        found = ", ".join(os.path.basename(c) for c in configs) or "none"
        raise NetworkNotFoundError(f"StudioGAN folder {network!r} must hold exactly one config YAML (found: {found}); "
                                   f"or pass --network CONFIG.yaml:CHECKPOINT.pth", network)
    if not ckpts:
        raise NetworkNotFoundError(f"StudioGAN folder {network!r} holds no generator checkpoint "
                                   f"(model=G-best-weights-step=N.pth or model=G_ema-...); put the run's "
                                   f"checkpoints/RUN_NAME files there", network)
    return dict(config=Path(configs[0]), checkpoint=ckpts[-1])


def _read_checkpoint(path: Path, network: str) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:100]
        raise NotAGeneratorError(f"{str(path)!r} is not a StudioGAN checkpoint ({type(exc).__name__}: {reason}); "
                                 f"a StyleGAN network pickle is passed as --network FILE.pkl", network) from exc
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(list(ckpt)[:4]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise NotAGeneratorError(f"{str(path)!r} is not a StudioGAN checkpoint (a dict with 'state_dict'; it has "
                                 f"{keys or 'nothing'}): a checkpoint of another toolkit? a BigGAN folder is "
                                 f"passed as --network FOLDER with config.json", network)
    return state


def _reason(exc: BaseException) -> str:
    """``Type: message`` of an exception from StudioGAN's code, or ``Type at file:line`` when it has no
    message (its checks are bare asserts)."""
    text = " ".join(str(exc).split())[:120]
    if text:
        return f"{type(exc).__name__}: {text}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}{where}"


def build_run(config_path: Path, src: Path, network: str = ""):
    """StudioGAN's ``Configurations`` of ``config_path`` and its generator with fresh weights, built by
    ``load_generator_discriminator`` on the CPU. Returns (cfgs, Gen)."""
    modules = activate(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfgs = modules["config"].Configurations(str(config_path))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise NetworkLoadError(f"{str(config_path)!r} is not a StudioGAN config ({_reason(exc)}); use the YAML the "
                               f"run was trained with", network) from exc
    if getattr(cfgs.MODEL, "info_type", "N/A") != "N/A":
        raise NetworkLoadError(f"{str(config_path)!r} trains InfoGAN codes (MODEL.info_type "
                               f"{cfgs.MODEL.info_type!r}), whose latents are not standard normal; not supported",
                               network)
    if getattr(cfgs.MODEL, "z_prior", "gaussian") != "gaussian":
        raise NetworkLoadError(f"{str(config_path)!r} draws latents from a {cfgs.MODEL.z_prior!r} prior "
                               f"(MODEL.z_prior); only gaussian runs are supported", network)
    cfgs.RUN.mixed_precision = False
    try:
        # StudioGAN's Ema prints to stdout when it copies the generator.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            built = modules["model"].load_generator_discriminator(
                DATA=cfgs.DATA, OPTIMIZATION=cfgs.OPTIMIZATION, MODEL=cfgs.MODEL, STYLEGAN=cfgs.STYLEGAN,
                MODULES=cfgs.MODULES, RUN=cfgs.RUN, device="cpu", logger=None)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise NetworkLoadError(f"{str(config_path)!r} does not build a StudioGAN generator ({_reason(exc)}); use "
                               f"the YAML the run was trained with", network) from exc
    return cfgs, built[0]


def load_studiogan(network: str, device=None, studiogan=None) -> torch.nn.Module:
    """The generator of a StudioGAN run, in eval mode on ``device``.

    Returns a :class:`StudioGANGenerator` (Z space), or StudioGAN's own StyleGAN2/3 generator (which
    :class:`extensions.stylegan.adapter.StyleGANAdapter` drives in W).

    Raises
    ------
    CheckoutError
        No StudioGAN checkout.
    NetworkLoadError
        One line per failure: a missing file, a checkpoint of another toolkit, weights that do not fit the
        config.
    """
    files = resolve_run(network)
    src = find_checkout(studiogan)
    state = _read_checkpoint(files["checkpoint"], network)
    cfgs, G = build_run(files["config"], src, network)
    expected = G.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = missing[0] if missing else unexpected[0]
        raise NotAGeneratorError(f"{str(files['checkpoint'])!r} does not fit {str(files['config'])!r}: "
                                 f"{len(missing)} weights missing, {len(unexpected)} unexpected (e.g. {example!r}); "
                                 f"pass the config the run was trained with and a generator (model=G...) "
                                 f"checkpoint", network)
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise NotAGeneratorError(f"{str(files['checkpoint'])!r} does not fit {str(files['config'])!r}: {k!r} has "
                                 f"shape {tuple(state[k].shape)}, the config builds {tuple(expected[k].shape)}; pass "
                                 f"the config the run was trained with", network)
    G.load_state_dict(state, strict=True)
    G = G.eval().requires_grad_(False)
    if cfgs.MODEL.backbone in STYLE_BACKBONES:
        G.name = network
        return G.to(device or "cpu")
    return StudioGANGenerator(G, cfgs, network).eval().to(device or "cpu")


# ---------------------------------------------------------------------------------------------------------
# Z-space generators

def check_truncation(t) -> float:
    """StudioGAN's truncation threshold as a float: 1 for none (StudioGAN's -1), else t > 0."""
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise HubnessError(f"--trunc must be a number, got {t!r}") from None
    if not np.isfinite(t) or t <= 0:
        raise HubnessError(f"--trunc {t:g} is not a StudioGAN truncation threshold: use t > 0 (latents in [-t, t], "
                           f"StudioGAN's --truncation_factor t), or 1 (the default) for none")
    return t


def truncate_normal(z: torch.Tensor, t: float) -> torch.Tensor:
    """:func:`quantile_map` at ``--trunc t``: the identity for t = 1 (no truncation)."""
    return z if t == 1 else quantile_map(z, t)


def quantile_map(z: torch.Tensor, t: float) -> torch.Tensor:
    """The quantile map of the standard normal onto the normal truncated to [-t, t], per coordinate
    (StudioGAN's ``truncation_factor`` t > 0). Float64 arithmetic, result in ``z``'s dtype."""
    x = z.to(torch.float64)
    lo = torch.special.ndtr(torch.tensor(-t, dtype=torch.float64, device=z.device))
    u = lo + torch.special.ndtr(x) * (1 - 2 * lo)
    return torch.special.ndtri(u).clamp(-t, t).to(z.dtype)


class StudioGANGenerator(torch.nn.Module):
    """A StudioGAN generator of a Z-space backbone with the attributes the samplers read.

    Attributes
    ----------
    studiogan : torch.nn.Module
        StudioGAN's ``Generator``; called as StudioGAN evaluates it, ``G(z, labels, eval=True)`` with
        integer labels (n,).
    z_dim, c_dim : int
        Latent size and number of classes (one-hot labels (n, c_dim)); c_dim is 0 for runs without
        class conditioning (``g_cond_mtd: W/O``) and once a class is bound (:meth:`bind_class`).
    num_classes, img_resolution, img_channels : int
    class_idx : int or None
        The bound class.
    backbone, name : str
    """

    def __init__(self, studiogan: torch.nn.Module, cfgs, name: str = "", class_idx: Optional[int] = None):
        super().__init__()
        self.studiogan = studiogan
        self.cfgs = cfgs
        self.z_dim = int(cfgs.MODEL.z_dim)
        self.num_classes = int(cfgs.DATA.num_classes)
        self.conditional = cfgs.MODEL.g_cond_mtd != "W/O"
        self.class_idx = class_idx
        self.c_dim = self.num_classes if self.conditional and class_idx is None else 0
        self.img_resolution = int(cfgs.DATA.img_size)
        self.img_channels = int(cfgs.DATA.img_channels)
        self.backbone = str(cfgs.MODEL.backbone)
        self.name = name

    def bind_class(self, class_idx: int) -> "StudioGANGenerator":
        """The same model as an unconditional generator of class ``class_idx`` (for code that takes
        unconditional generators only, such as the report's figures); the weights are shared."""
        class_idx = check_class(class_idx, self.num_classes)
        return StudioGANGenerator(self.studiogan, self.cfgs, self.name, class_idx).train(self.training)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0) -> torch.Tensor:
        """Images (n, C, H, W) in [-1, 1] of latents z (n, z_dim), as the samplers carry them (``t * z``
        at threshold ``truncation_psi`` = t), and one-hot labels c (n, c_dim)."""
        t = check_truncation(truncation_psi)
        z = truncate_normal(z / t, t) if t != 1 else z
        if self.class_idx is not None:
            labels = torch.full((len(z),), self.class_idx, dtype=torch.long, device=z.device)
        elif self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise HubnessError(f"labels must be one-hot of shape (n, {self.c_dim})")
            labels = c.argmax(dim=1)
        else:
            labels = torch.zeros(len(z), dtype=torch.long, device=z.device)
        return self.studiogan(z, labels, eval=True)

    def model_latents(self, seeds: Sequence[int], t: float = 1.0) -> np.ndarray:
        """The latents StudioGAN's generator receives for ``seeds`` at threshold t: ``Q_t(RandomState(s)
        .randn(1, z_dim))``, shape (n, z_dim), float64."""
        from ..pools import seed_latents
        z = torch.from_numpy(seed_latents(seeds, self.z_dim))
        return truncate_normal(z, check_truncation(t)).numpy()


class StudioGANAdapter(TruncatedZAdapter):
    """Drives a :class:`StudioGANGenerator`: Z space, ``gen_images.py``'s latents per seed, StudioGAN's
    truncation threshold as ``--trunc`` (see the module docstring)."""

    kind = "StudioGAN"

    def check_truncation(self, psi) -> float:
        return check_truncation(psi)

    def seed_latents(self, seeds, truncation_psi=1.0):
        """``t * RandomState(s).randn(1, z_dim)`` per seed: the latents the samplers carry at threshold t
        (the generator feeds ``Q_t(z)``, :meth:`StudioGANGenerator.model_latents`)."""
        from ..pools import seed_latents
        return seed_latents(seeds, self.z_dim) * check_truncation(truncation_psi)


StudioGANGenerator.adapter_class = StudioGANAdapter


# ---------------------------------------------------------------------------------------------------------

def _looks_like_run(path: str) -> bool:
    if os.path.isdir(path):
        return any(CHECKPOINT_RE.match(n) for n in os.listdir(path)) or \
            (bool(glob.glob(os.path.join(glob.escape(path), "*.y*ml"))) and
             bool(glob.glob(os.path.join(glob.escape(path), "model=*.pth"))))
    return os.path.isfile(path) and (CHECKPOINT_RE.match(os.path.basename(path)) is not None or
                                     path.lower().endswith((".yaml", ".yml")))


class StudioGANSource(NetworkSource):
    name = "studiogan"
    takes = "a StudioGAN run: CONFIG.yaml:model=G-...-weights-step=N.pth, or a folder holding both"

    def claims(self, network: str) -> bool:
        if _PAIR_RE.match(network):
            return True
        return bool(network) and _looks_like_run(os.path.expanduser(network))

    def load(self, network, *, device, studiogan=None, **options):
        return load_studiogan(network, device, studiogan)

    def identity(self, network):
        files = resolve_run(network)
        ident = dict(network=network)
        ident.update({f"{role}": os.path.abspath(p) for role, p in files.items()})
        ident.update({f"{role}_sha256": file_sha256(p) for role, p in files.items()})
        return ident
