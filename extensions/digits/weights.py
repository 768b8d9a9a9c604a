"""Network weights as data: a ``.npz`` of named float arrays plus JSON constructor arguments.

A weights file holds every entry of a module's ``state_dict()`` as a plain array, and two JSON strings:
``__args__`` (the keyword arguments that build the module) and ``__meta__`` (how it was trained). It
is read with ``allow_pickle=False``, so loading runs no code from the file: the module class comes
from the installed package, the file only fills in its numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._checks import HubnessError

ARGS_KEY = "__args__"
META_KEY = "__meta__"


class WeightsFileError(HubnessError):
    """A weights file is missing, unreadable or does not fit the module it is meant for."""


def save_weights(path, module: torch.nn.Module, args: dict, meta: Optional[dict] = None) -> Path:
    """Write ``module.state_dict()`` with its constructor ``args`` to ``path`` (.npz, float arrays as float32).

    Parameters
    ----------
    path : str or Path
    module : torch.nn.Module
    args : dict
        JSON-serialisable keyword arguments with which ``type(module)(**args)`` rebuilds the module.
    meta : dict, optional
        JSON-serialisable provenance (data set, seed, steps, ...).

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    arrays = {}
    for name, tensor in module.state_dict().items():
        if name in (ARGS_KEY, META_KEY):
            raise WeightsFileError(f"state dict entry {name!r} collides with a reserved key of the weights format")
        value = tensor.detach().cpu()
        arrays[name] = value.float().numpy() if value.is_floating_point() else value.numpy()
    arrays[ARGS_KEY] = np.array(json.dumps(args, sort_keys=True))
    arrays[META_KEY] = np.array(json.dumps(meta or {}, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_weights(path) -> tuple[dict, dict, dict]:
    """Read a weights file written by :func:`save_weights`.

    Returns
    -------
    state : dict of str -> torch.Tensor
        The state dict.
    args : dict
        Constructor arguments.
    meta : dict
        Provenance.

    Raises
    ------
    WeightsFileError
        When the file does not exist, is not an ``.npz`` written by :func:`save_weights`, or needs pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {str(path)!r} does not exist; pass the path of a .npz written by "
                               f"save_weights (or retrain it with the scripts in scripts/)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise WeightsFileError(f"weights file {str(path)!r} is not a readable .npz of plain arrays ({exc}); "
                               f"rewrite it with save_weights") from exc
    if ARGS_KEY not in arrays:
        raise WeightsFileError(f"weights file {str(path)!r} has no {ARGS_KEY} entry (constructor arguments); "
                               f"rewrite it with save_weights")
    args = json.loads(str(arrays.pop(ARGS_KEY)))
    meta = json.loads(str(arrays.pop(META_KEY))) if META_KEY in arrays else {}
    # np.array copies into a writable, contiguous array and keeps 0-d entries 0-d.
    state = {name: torch.from_numpy(np.array(value)) for name, value in arrays.items()}
    return state, args, meta


def load_state(module: torch.nn.Module, state: dict, path="") -> torch.nn.Module:
    """``module.load_state_dict(state)`` (strict), with dtypes matched and mismatches reported as one line."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [name for name in set(own) & set(state) if tuple(own[name].shape) != tuple(state[name].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch in {', '.join(sorted(shapes)[:3])}")
        raise WeightsFileError(f"weights {str(path)!r} do not fit {type(module).__name__}: {'; '.join(parts)}")
    module.load_state_dict({name: value.to(own[name].dtype) for name, value in state.items()})
    return module
