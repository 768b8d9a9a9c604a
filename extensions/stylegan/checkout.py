"""Find and import stylegan3-compatible code: ``dnnlib``, ``torch_utils`` and ``legacy``.

Network pickles store their classes as ``torch_utils.persistence`` objects, so unpickling needs the code
of an NVlabs/stylegan3 or stylegan2-ada-pytorch checkout on ``sys.path``. The checkout is found, in
order, from an explicit directory (the ``--stylegan3 DIR`` option), the ``STYLEGAN3_DIR`` environment
variable, or modules that are already importable (a script copied into a checkout).

The official code imports ``pkg_resources`` (gone from setuptools >= 82), ``distutils`` (gone from the
standard library in Python 3.12) and ``requests`` at module level. :func:`compat_shims` stands in for
whichever of them is missing while the checkout's modules are first imported, and removes itself
afterwards, so the user's checkout loads unedited on a modern stack. Likewise, the checkout's loader of
its compiled CUDA ops is wrapped in memory (:func:`register_built_plugins`) for PyTorch versions whose
``cpp_extension.load`` no longer registers the modules it builds.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .._checks import HubnessError

log = logging.getLogger(__name__)

ENV_VAR = "STYLEGAN3_DIR"
#: Files that make a directory a stylegan3-compatible checkout.
REQUIRED_FILES = ("dnnlib/__init__.py", "dnnlib/util.py", "torch_utils/__init__.py", "torch_utils/persistence.py",
                  "legacy.py")
#: Top-level module names a checkout provides; two checkouts cannot share one process.
CHECKOUT_MODULES = ("dnnlib", "torch_utils", "legacy", "training")
#: Modules imported once, under the shims, when a checkout is activated. Missing ones are skipped.
_PRELOAD = ("dnnlib", "dnnlib.util", "torch_utils.persistence", "torch_utils.misc", "torch_utils.custom_ops",
            "torch_utils.ops.conv2d_gradfix", "torch_utils.ops.grid_sample_gradfix", "torch_utils.ops.bias_act",
            "torch_utils.ops.upfirdn2d", "torch_utils.ops.conv2d_resample", "torch_utils.ops.fma", "legacy")

_WHAT_TO_DO = ("pass --stylegan3 DIR or set STYLEGAN3_DIR to a clone of NVlabs/stylegan3 or stylegan2-ada-pytorch "
               "(the folder that holds dnnlib/, torch_utils/ and legacy.py)")


class CheckoutError(HubnessError):
    """The stylegan3 code could not be found or imported."""


class CheckoutNotFoundError(CheckoutError):
    """No stylegan3-compatible checkout where one was looked for."""


@dataclass
class Checkout:
    """A stylegan3-compatible code base.

    Attributes
    ----------
    root : Path
        The folder holding ``dnnlib/``, ``torch_utils/`` and ``legacy.py``.
    kind : str
        'stylegan3' (has ``training/networks_stylegan3.py`` and the filtered_lrelu op), 'stylegan2-ada'
        (has ``training/networks.py``) or 'unknown'.
    source : str
        How it was found: '--stylegan3', 'STYLEGAN3_DIR' or 'importable'.
    """

    root: Path
    kind: str
    source: str
    modules: dict = field(default_factory=dict, repr=False)

    @property
    def dnnlib(self):
        return self.modules["dnnlib"]

    @property
    def legacy(self):
        return self.modules["legacy"]


def checkout_kind(root: Path) -> str:
    """'stylegan3', 'stylegan2-ada' or 'unknown', from the files under ``root``."""
    root = Path(root)
    if (root / "training/networks_stylegan3.py").is_file() and (root / "torch_utils/ops/filtered_lrelu.py").is_file():
        return "stylegan3"
    if (root / "training/networks.py").is_file():
        return "stylegan2-ada"
    return "unknown"


def missing_files(root: Path) -> list:
    """The :data:`REQUIRED_FILES` absent from ``root``."""
    return [name for name in REQUIRED_FILES if not (Path(root) / name).is_file()]


def _from_directory(directory, source: str) -> Checkout:
    root = Path(os.path.expanduser(str(directory))).resolve()
    if not root.is_dir():
        raise CheckoutNotFoundError(f"stylegan3 code not found: {source} {str(directory)!r} is not a directory; "
                                    f"{_WHAT_TO_DO}")
    missing = missing_files(root)
    if missing:
        raise CheckoutNotFoundError(f"stylegan3 code not found in {str(root)!r} (from {source}): it lacks "
                                    f"{', '.join(missing)}; {_WHAT_TO_DO}")
    return Checkout(root, checkout_kind(root), source)


def _importable_root() -> Optional[Path]:
    """Folder of already importable ``dnnlib``, ``torch_utils`` and ``legacy``, if they share one."""
    roots = set()
    for name in ("dnnlib", "torch_utils", "legacy"):
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is None:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            origin = spec.origin if spec is not None else None
        if not origin:
            return None
        path = Path(origin).resolve()
        roots.add(path.parent.parent if path.name == "__init__.py" else path.parent)
    return roots.pop() if len(roots) == 1 else None


def imported_checkout() -> Optional[Path]:
    """Root of the checkout whose ``dnnlib``, ``torch_utils`` and ``legacy`` are already imported, or None."""
    if not all(name in sys.modules for name in ("dnnlib", "torch_utils", "legacy")):
        return None
    return _importable_root()


def find_checkout(directory=None, *, environ=None) -> Checkout:
    """Locate stylegan3-compatible code: ``directory`` > ``$STYLEGAN3_DIR`` > already importable modules.

    Parameters
    ----------
    directory : str or Path, optional
        An explicit checkout (the ``--stylegan3`` option).
    environ : mapping, optional
        Environment to read ``STYLEGAN3_DIR`` from; default ``os.environ``.

    Raises
    ------
    CheckoutNotFoundError
        When the chosen source does not hold ``dnnlib/``, ``torch_utils/`` and ``legacy.py``, or when no
        source is available.
    """
    environ = os.environ if environ is None else environ
    if directory is not None and str(directory) != "":
        return _from_directory(directory, "--stylegan3")
    if environ.get(ENV_VAR):
        return _from_directory(environ[ENV_VAR], ENV_VAR)
    root = _importable_root()
    if root is not None and not missing_files(root):
        return Checkout(root, checkout_kind(root), "importable")
    raise CheckoutNotFoundError(f"stylegan3 code not found: dnnlib, torch_utils and legacy are not importable and "
                                f"{ENV_VAR} is not set; {_WHAT_TO_DO}")


# ---------------------------------------------------------------------------------------------------------
# Stand-ins for modules a modern stack no longer ships.

def _is_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _version_class():
    try:
        from packaging.version import Version
    except ImportError:
        from torch._vendor.packaging.version import Version  # torch vendors packaging
    return Version


def _shim_module(name: str, attrs: dict, *, package: bool = False, missing_hint: str = "") -> types.ModuleType:
    module = types.ModuleType(name, f"stylegan3-hubness stand-in for the missing module {name!r}")
    module.__dict__.update(attrs)
    module.__stylegan3_hubness_shim__ = True
    if package:
        module.__path__ = []

    def __getattr__(attr):
        raise AttributeError(f"module {name!r} is not installed; stylegan3-hubness provides only "
                             f"{', '.join(sorted(attrs)) or 'a placeholder'} in its place{missing_hint}")

    module.__getattr__ = __getattr__
    return module


def _strtobool(value: str) -> int:
    """``distutils.util.strtobool``: 1 for y/yes/t/true/on/1, 0 for n/no/f/false/off/0."""
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return 1
    if value in ("n", "no", "f", "false", "off", "0"):
        return 0
    raise ValueError(f"invalid truth value {value!r}")


def _requests_stub() -> types.ModuleType:
    """``requests`` without the network: ``compat.urlparse``/``urljoin`` (dnnlib's URL test and cache lookup
    use them before any download), and a clear error for anything else."""
    from urllib.parse import urljoin, urlparse
    module = types.ModuleType("requests", "stylegan3-hubness stand-in: the 'requests' package is not installed")
    module.__stylegan3_hubness_shim__ = True
    module.compat = types.SimpleNamespace(urlparse=urlparse, urljoin=urljoin)

    def __getattr__(attr):
        raise ModuleNotFoundError("downloading a URL needs the 'requests' package: pip install requests",
                                  name="requests")

    module.__getattr__ = __getattr__
    return module


def _missing_shims() -> dict:
    shims = {}
    if _is_missing("pkg_resources"):
        version = _version_class()
        shims["pkg_resources"] = _shim_module("pkg_resources", dict(parse_version=version),
                                              missing_hint=" (setuptools >= 82 removed pkg_resources)")
    if _is_missing("distutils"):
        util = _shim_module("distutils.util", dict(strtobool=_strtobool))
        shims["distutils"] = _shim_module("distutils", dict(util=util), package=True,
                                          missing_hint=" (Python 3.12 removed distutils)")
        shims["distutils.util"] = util
    if _is_missing("requests"):
        shims["requests"] = _requests_stub()
    return shims


@contextlib.contextmanager
def compat_shims():
    """Provide ``pkg_resources.parse_version``, ``distutils.util.strtobool`` and a ``requests`` placeholder
    while the block runs, for whichever of them is not installed.

    Yields the names of the stand-ins installed. Only stand-ins still in ``sys.modules`` at exit are
    removed; modules imported meanwhile keep the references they took.
    """
    shims = _missing_shims()
    for name, module in shims.items():
        sys.modules[name] = module
    if shims:
        log.debug("stand-ins for missing modules: %s", ", ".join(sorted(shims)))
    try:
        yield sorted(shims)
    finally:
        for name, module in shims.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def register_built_plugins(custom_ops) -> None:
    """Make the checkout's ``custom_ops.get_plugin`` find the CUDA ops it has just compiled.

    It compiles with ``torch.utils.cpp_extension.load`` and then imports the result by name, which
    worked while ``load`` registered the module in ``sys.modules``; newer PyTorch returns it without
    registering it, and the import fails (``No module named 'bias_act_plugin'``). The wrapper registers
    what ``load`` returns during the call; the checkout's files are not touched.
    """
    original = custom_ops.get_plugin
    if getattr(original, "__registers_plugins__", False):
        return

    @functools.wraps(original)
    def get_plugin(module_name, *args, **kwargs):
        import torch.utils.cpp_extension as cpp
        real_load = cpp.load

        def load(*load_args, **load_kwargs):
            module = real_load(*load_args, **load_kwargs)
            name = load_kwargs.get("name", load_args[0] if load_args else None)
            if isinstance(module, types.ModuleType) and name and name not in sys.modules:
                sys.modules[name] = module
            return module

        cpp.load = load
        try:
            return original(module_name, *args, **kwargs)
        finally:
            cpp.load = real_load

    get_plugin.__registers_plugins__ = True
    custom_ops.get_plugin = get_plugin


# ---------------------------------------------------------------------------------------------------------

_ACTIVE: dict = {}


def _module_root(module) -> Optional[Path]:
    origin = getattr(module, "__file__", None)
    if origin is None:
        paths = list(getattr(module, "__path__", []) or [])
        return Path(paths[0]).resolve().parent if paths else None
    path = Path(origin).resolve()
    return path.parent.parent if path.name == "__init__.py" else path.parent


def activate(checkout: Checkout) -> Checkout:
    """Put ``checkout`` on ``sys.path`` and import its modules (under :func:`compat_shims`).

    Returns the checkout with ``modules['dnnlib']`` and ``modules['legacy']`` set. Calling it again for
    the same checkout is free.

    Raises
    ------
    CheckoutError
        When another checkout's modules are already imported in this process, or when the checkout's
        code fails to import (e.g. a missing third-party package).
    """
    key = str(checkout.root)
    if key in _ACTIVE:
        return _ACTIVE[key]
    for name in CHECKOUT_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        root = _module_root(module)
        if root is not None and root != checkout.root and getattr(module, "__file__", None) is not None:
            raise CheckoutError(f"stylegan3 code from {str(root)!r} ({name}) is already imported in this process; "
                                f"cannot also load {str(checkout.root)!r}: use one checkout per process")
    if key not in sys.path:
        sys.path.insert(0, key)
    modules = {}
    with compat_shims(), warnings.catch_warnings():
        # setuptools < 81 warns on every `import pkg_resources` (the checkout's dnnlib/custom_ops do it).
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*pkg_resources.*", category=DeprecationWarning)
        for name in _PRELOAD:
            try:
                modules[name] = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                missing = (exc.name or "").split(".")[0]
                if missing in ("dnnlib", "torch_utils", "legacy"):
                    if name in ("dnnlib", "legacy"):
                        raise CheckoutError(f"stylegan3 code in {key!r} failed to import {name}: {exc}") from exc
                    log.debug("checkout %s has no %s; skipped", key, name)  # older checkouts lack some ops
                    continue
                raise CheckoutError(f"stylegan3 code in {key!r} failed to import {name}: {exc}; install the "
                                    f"missing package (pip install {missing})") from exc
            except ImportError as exc:
                raise CheckoutError(f"stylegan3 code in {key!r} failed to import {name}: {exc}") from exc
    if "torch_utils.custom_ops" in modules:
        register_built_plugins(modules["torch_utils.custom_ops"])
    checkout.modules.update(modules)
    _ACTIVE[key] = checkout
    log.info("stylegan3 code: %s (%s, from %s)", key, checkout.kind, checkout.source)
    return checkout


def load_checkout(directory=None, *, environ=None) -> Checkout:
    """:func:`find_checkout` then :func:`activate`."""
    return activate(find_checkout(directory, environ=environ))
