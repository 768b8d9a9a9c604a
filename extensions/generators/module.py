"""The generic door: ``--network module:callable`` for any other generator.

``module`` is an importable module (``mypkg.nets``, looked up on ``sys.path`` and in the current folder)
or a Python file (``./nets.py``); ``callable`` names a function or class in it (dotted names reach
attributes, e.g. ``nets:Zoo.small``) that, called without arguments, returns a ``torch.nn.Module``
``G(z)`` or ``G(z, c)`` with an integer ``z_dim`` (and ``c_dim`` for class-conditional generators,
``c`` one-hot of shape (n, c_dim)). Its latents are standard normal, drawn per seed as ``gen_images.py``
draws them, and hub values are computed in Z (:class:`extensions.stylegan.adapter.GenericAdapter`).
A module object in place of the callable is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys

import numpy as np
import torch

from ..outdir import file_sha256
from ..stylegan.loader import NetworkLoadError, NotAGeneratorError
from .registry import NetworkSource

_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
#: ``package.module:attr.attr`` or ``path/to/file.py:attr``.
PATTERN = re.compile(rf"^(?P<module>{_NAME}|.+\.py):(?P<attr>{_NAME})$")


class ModuleSource(NetworkSource):
    name = "module"
    takes = "module:callable, returning a torch.nn.Module G(z[, c]) with z_dim (and c_dim)"

    def claims(self, network: str) -> bool:
        return PATTERN.match(network) is not None and not os.path.exists(network)

    def load(self, network, *, device, **options):
        module_name, attr = PATTERN.match(network).group("module", "attr")
        module = _import(network, module_name)
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise NetworkLoadError(f"--network {network!r}: {getattr(obj, '__name__', module_name)!r} has no "
                                       f"attribute {part!r}; name a function or class defined in {module_name!r}",
                                       network)
            obj = getattr(obj, part)
        if isinstance(obj, torch.nn.Module):
            G = obj
        elif not callable(obj):
            raise NotAGeneratorError(f"--network {network!r}: {attr!r} is of type {type(obj).__name__}, not "
                                     f"callable; name a function or class that returns the generator (a "
                                     f"torch.nn.Module)", network)
        else:
            try:
                G = obj()
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:
                raise NetworkLoadError(f"--network {network!r}: calling {attr}() failed ({type(exc).__name__}: "
                                       f"{_first_line(exc)}); it must take no arguments and return the generator",
                                       network) from exc
        if not isinstance(G, torch.nn.Module):
            raise NotAGeneratorError(f"--network {network!r}: {attr}() returned a {type(G).__name__}, not a "
                                     f"torch.nn.Module; return the generator module G(z[, c])", network)
        for name, least in (("z_dim", 1), ("c_dim", 0)):
            value = getattr(G, name, 0 if name == "c_dim" else None)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                what = "latent z" if name == "z_dim" else "one-hot class label c (0: unconditional)"
                raise NotAGeneratorError(f"--network {network!r}: the {type(G).__name__} it returned has "
                                         f"{name} = {value!r}; set G.{name} to the size of its {what}", network)
        return G.eval().requires_grad_(False).to(device)

    def identity(self, network):
        """The name and, when the module lives in a file, that file's SHA-256 (edited code renders other
        images)."""
        module_name = PATTERN.match(network).group("module")
        path = module_name if module_name.endswith(".py") else None
        if path is None:
            module = sys.modules.get(module_name)
            path = getattr(module, "__file__", None)
        ident = dict(network=network)
        if path and os.path.isfile(path):
            ident.update(module_file=os.path.abspath(path), module_sha256=file_sha256(path))
        return ident


def _import(network: str, module_name: str):
    """The module ``module_name`` (a dotted name, or a ``.py`` file), with the current folder importable."""
    try:
        if module_name.endswith(".py"):
            path = os.path.abspath(os.path.expanduser(module_name))
            if not os.path.isfile(path):
                raise NetworkLoadError(f"--network {network!r}: file {module_name!r} not found; check the path "
                                       f"before the colon", network)
            name = f"_hub_network_{os.path.splitext(os.path.basename(path))[0]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look their module up by name
            spec.loader.exec_module(module)
            return module
        added = os.getcwd() not in sys.path
        if added:
            sys.path.append(os.getcwd())
        try:
            return importlib.import_module(module_name)
        finally:
            if added:
                sys.path.remove(os.getcwd())
    except NetworkLoadError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise NetworkLoadError(f"--network {network!r}: module {module_name!r} not found; install it, run from "
                                   f"the folder that holds it, add that folder to PYTHONPATH, or write the file "
                                   f"path (./{module_name.replace('.', '/')}.py:...)", network) from exc
        raise NetworkLoadError(f"--network {network!r}: module {module_name!r} imports {missing!r}, which is not "
                               f"installed; install it", network) from exc
    except (KeyboardInterrupt, MemoryError):
        raise
    except BaseException as exc:  # the user's module may raise anything while it runs, SystemExit included
        raise NetworkLoadError(f"--network {network!r}: importing {module_name!r} failed ({type(exc).__name__}: "
                               f"{_first_line(exc)}); fix the module", network) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
