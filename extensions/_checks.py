"""Input validation shared by the engine: one typed error per bad input, quoting the value."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch


class HubnessError(ValueError):
    """Bad input to the hubness engine (a ValueError, so callers can catch either)."""


class ThresholdUnreachableError(RuntimeError):
    """A sampler could not collect the requested latents within its pool budget."""


class NonFiniteError(HubnessError):
    """A network produced NaN or inf (latents or images). ``seed`` is the first affected seed, if known."""

    def __init__(self, message: str, seed=None):
        super().__init__(message)
        self.seed = seed


def check_truncation_psi(psi, option: str = "--trunc") -> float:
    """A truncation psi as a float: a finite number within float32 (the network's arithmetic)."""
    if isinstance(psi, bool):
        raise HubnessError(f"{option} must be a number, got {psi!r}")
    try:
        psi = float(psi)
    except (TypeError, ValueError, OverflowError):
        raise HubnessError(f"{option} must be a number, got {psi!r}") from None
    if not math.isfinite(psi):
        raise HubnessError(f"{option} must be a finite number, got {psi}")
    if abs(psi) > float(np.finfo(np.float32).max):
        raise HubnessError(f"{option} {psi:g} overflows the network's float32 arithmetic; use a truncation psi of "
                           f"moderate size (e.g. 0.5 to 1)")
    return psi


def non_finite_pixels(network, where: str, *, truncation_psi: float = 1, moved: bool = False, seed=None,
                      after: str = " (nothing was written)") -> NonFiniteError:
    """The error for NaN or inf pixels ``where`` (e.g. "for seed 3") of ``network`` (its name, or None): the
    options that can cause them, when given (--trunc other than 1, --translate/--rotate), come first; else
    the network is broken."""
    causes = []
    if truncation_psi != 1:
        causes.append(f"--trunc {truncation_psi:g} may move the latents too far (use a truncation psi of moderate "
                      f"size, e.g. 0.5 to 1)")
    if moved:
        causes.append("--translate/--rotate may be too large")
    broken = "the synthesis network is broken: check its weights or use another snapshot"
    text = f"{', or '.join(causes)}, or {broken}" if causes else broken
    name = "the network" if network is None else f"network {network!r}"
    return NonFiniteError(f"{name} renders NaN or inf pixels {where}; {text}{after}", seed)


def resolve_device(device=None) -> torch.device:
    """``None`` means CUDA when available, else CPU; anything else must be a device that can compute here.

    Raises
    ------
    HubnessError
        For names torch does not know, devices that hold no data (``meta``), and CUDA/MPS devices this
        machine does not have.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str) and not device.strip():
        raise HubnessError("device is empty; use 'cpu', 'cuda' or 'cuda:N'")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise HubnessError(f"device {str(device)!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HubnessError(f"device={str(device)!r} was requested but CUDA is not available; use device='cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise HubnessError(f"device={str(device)!r} does not exist: this machine has {count} CUDA device(s), "
                               f"cuda:0..cuda:{count - 1}")
    elif device.type != "cpu":
        # Accelerators other than CUDA (mps, xpu, ...) expose torch.<type>.is_available(); 'meta' holds no data.
        backend = getattr(torch.backends, device.type, None) if device.type == "mps" else getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if device.type == "meta" or not callable(available) or not available():
            raise HubnessError(f"device={str(device)!r} cannot compute here; use 'cpu'"
                               + (", 'cuda' or 'cuda:N'" if torch.cuda.is_available() else ""))
    return device


#: dtypes :func:`as_latents` takes as they are, in native byte order.
_ENGINE_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                                              np.int64, np.uint8))

#: Largest integer magnitude float32 holds exactly (with every integer below it).
_FLOAT32_EXACT_INT = 1 << 24


def engine_array(array: np.ndarray, where: str, notes: Optional[list] = None) -> np.ndarray:
    """``array`` (finite real numbers) in a dtype the engine takes, rounded no more than the float32 search
    rounds it.

    Native float16/32/64 and int8..int64/uint8 stay as they are (the engine rounds them to float32 once).
    Other byte orders are swapped, and uint16/uint32 (and uint64 up to 2**63 - 1) become int32/int64, all
    exactly. Larger uint64 values and extended precision are rounded straight to float32, one rounding as
    for every other dtype (going through float64 would round twice); extended-precision values beyond
    float32's range, or all below its normal range, are errors that say how to rescale, as float64 ones
    are in the engine. Integers beyond 2**24 in magnitude, which float32 rounds, add a line to ``notes``.

    Raises
    ------
    HubnessError
        Extended-precision values that float32 cannot hold.
    """
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if max(-low, high) > _FLOAT32_EXACT_INT and notes is not None:
            notes.append(f"{where} holds integers up to {max(-low, high)} in magnitude; the search runs in "
                         f"float32, which holds integers exactly only up to 2**24 = {_FLOAT32_EXACT_INT}, so "
                         f"larger ones are rounded to float32's 24 significant bits")
        if array.dtype not in _ENGINE_DTYPES:
            if high <= np.iinfo(np.int64).max:
                array = array.astype(np.int32 if array.dtype.itemsize < 4 else np.int64)
            else:
                array = array.astype(np.float32)  # correctly rounded, as the engine's int64 -> float32
    elif array.dtype not in _ENGINE_DTYPES:  # extended precision (np.longdouble)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            rounded = array.astype(np.float32)
        if not np.isfinite(array).all():  # NaN/inf: the caller names the rows
            return rounded
        largest = np.abs(array).max() if array.size else 0
        mantissa, exponent = np.format_float_scientific(largest, precision=2, unique=False).split("e")
        shown = f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"  # as '%.3g' writes it, beyond float64's range too
        if not np.isfinite(rounded).all():
            raise HubnessError(f"{where} has values up to {shown} in magnitude, beyond float32's range (3.4e+38), in "
                               f"which the search runs; divide them by a power of ten first (neighbours do not "
                               f"depend on scale)")
        if largest != 0 and float(np.abs(rounded).max()) < np.finfo(np.float32).tiny:
            raise HubnessError(f"{where} has values no larger than {shown} in magnitude, below float32's normal "
                               f"range (1.2e-38), in which the search runs; multiply them by a power of ten first "
                               f"(neighbours do not depend on scale)")
        array = rounded
    return array


def as_latents(x, name: str = "latents", device=None) -> torch.Tensor:
    """Return ``x`` as a finite float32 tensor of shape (n, d) on ``device`` (default: its own).

    float64 data that float32 cannot hold (beyond 3.4e38, or entirely below 1.2e-38) is an error that
    says to rescale it, rather than inf or flushed values.
    """
    if isinstance(x, np.ndarray) or not isinstance(x, torch.Tensor):
        try:
            x = np.asarray(x)
            if x.dtype.kind in "iuf" and (not x.dtype.isnative or x.dtype not in _ENGINE_DTYPES):
                x = engine_array(x, name)  # unsigned, byte-swapped or extended: what torch takes, exactly
            x = torch.as_tensor(x)
        except HubnessError:
            raise
        except (TypeError, ValueError) as exc:
            raise HubnessError(f"{name} must be a numeric array of shape (n, d), got {type(x).__name__}") from exc
    if x.ndim != 2:
        raise HubnessError(f"{name} must have shape (n, d), got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise HubnessError(f"{name} must be real-valued, got dtype {x.dtype}")
    if x.shape[1] < 1:
        raise HubnessError(f"{name} must have at least one dimension per latent, got shape {tuple(x.shape)}")
    source = x.detach()
    x = source.to(device=device if device is not None else x.device, dtype=torch.float32)
    # a finite sum means every value is finite: one cheap pass, and a closer look only otherwise
    if not (math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())):
        if source.is_floating_point() and bool(torch.isfinite(source).all()):  # finite, but not in float32
            raise HubnessError(f"{name} have values up to {float(source.abs().max()):.3g} in magnitude, beyond "
                               f"float32's range (3.4e+38); divide them by a power of ten first "
                               f"(neighbours do not depend on scale)")
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise HubnessError(f"{name} contain NaN or inf in {bad} row(s); drop or fix those latents first")
    if source.dtype == torch.float64 and x.numel():
        low, high = torch.aminmax(x)
        largest = max(-float(low), float(high))
        if largest < torch.finfo(torch.float32).tiny and bool((source != 0).any()):
            # every value lost precision in float32 (or all of it)
            largest = float(source.abs().max())
            raise HubnessError(f"{name} have values no larger than {largest:.3g} in magnitude, below float32's "
                               f"normal range (1.2e-38); multiply them by a power of ten first "
                               f"(neighbours do not depend on scale)")
    return x


def real_values(x, name: str):
    """``x`` (a tensor, array or nested sequence of real numbers) as a tensor holding its own values (no
    rounding), and whether it came as a tensor; anything else is a :class:`HubnessError` naming ``name``."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise HubnessError(f"{name} must hold real numbers, got dtype {x.dtype}")
        return x.detach(), True
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise HubnessError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from exc
    if arr.dtype.kind not in "fiu":
        raise HubnessError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)  # torch has no extended precision
    return torch.as_tensor(np.ascontiguousarray(arr) if arr.ndim else arr), False  # keeps a 0-d array 0-d


def check_class(class_idx, num_classes: int) -> int:
    """``class_idx`` as an int in 0..num_classes-1, else a :class:`HubnessError` that says which to use."""
    if isinstance(class_idx, bool) or not isinstance(class_idx, (int, np.integer)) or \
            not 0 <= class_idx < num_classes:
        raise HubnessError(f"class {class_idx!r} is out of range: this network has {num_classes} classes, "
                           f"use --class 0..{num_classes - 1}")
    return int(class_idx)


def check_k(k, n: int, *, name: str = "k") -> int:
    """``k`` must be an integer with 1 <= k < n (a latent cannot be its own neighbour)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise HubnessError(f"{name} must be an integer, got {k!r}")
    k = int(k)
    if n < 2:
        raise HubnessError(f"Expected at least 2 latents, but n_samples = {n}")
    if k < 1:
        raise HubnessError(f"Expected {name} >= 1, but {name} = {k}")
    if k >= n:
        raise HubnessError(f"Expected {name} < n_samples, but n_samples = {n}, {name} = {k}")
    return k


def check_threshold(t, name: str = "t") -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not np.isfinite(t):
        raise HubnessError(f"{name} must be a finite number, got {t!r}")
    if t < 0:
        raise HubnessError(f"Expected {name} >= 0 (hub values are counts), but {name} = {t}")
    return float(t)


def check_count(num, name: str = "num") -> int:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise HubnessError(f"{name} must be a positive integer, got {num!r}")
    return int(num)
