"""Feature detectors (Inception, VGG16) from local files, the download cache, or the network.

stylegan3 downloads its detectors from NGC on first use, which fails on machines without internet
access. Here a detector URL is resolved, in order, to

1. a local file registered for its name (``--detector`` of the patched calc_metrics, or
   :func:`register_detector_files`), the name being the URL's file name without extension
   (``inception-2015-12-05``, ``vgg16``), as stylegan3's ``get_feature_detector_name`` derives it;
2. the file itself, when the "URL" is a local path;
3. a copy in dnnlib's download cache (``$DNNLIB_CACHE_DIR/downloads`` or ``~/.cache/dnnlib/downloads``,
   file ``<md5 of the URL>_<anything>``), where stylegan3 itself looks first;
4. a download; when it fails, :class:`DetectorUnavailableError` says which file to put where.

Both formats load: stylegan3's pickles and stylegan2-ada's TorchScript ``.pt`` archives.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from typing import Iterable, Optional

import torch

from .errors import DetectorUnavailableError, MetricError

log = logging.getLogger(__name__)

_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/"
#: The detectors of stylegan3's metrics (stylegan2-ada serves the same networks as TorchScript ``.pt``).
INCEPTION_URL = _NGC + "inception-2015-12-05.pkl"
VGG16_URL = _NGC + "vgg16.pkl"
DETECTOR_SUFFIXES = (".pkl", ".pt")

_registered: dict[str, str] = {}


def detector_name(url: str) -> str:
    """Name of a detector URL or path: its file name without extension (stylegan3's convention)."""
    return os.path.splitext(str(url).replace("\\", "/").split("/")[-1])[0]


def _is_url(url: str) -> bool:
    return re.match(r"^[a-z]+://", str(url)) is not None


def parse_detector_option(values: Iterable[str]) -> dict[str, str]:
    """Map detector names to local files from ``--detector`` values.

    Parameters
    ----------
    values : iterable of str
        Each one of ``PATH`` (a file, registered under its name), ``DIR`` (every ``*.pkl`` / ``*.pt``
        in it, by name) or ``NAME=PATH``.

    Returns
    -------
    dict
        name -> absolute path.
    """
    files: dict[str, str] = {}
    for value in values or ():
        value = str(value)
        name, path = (value.split("=", 1) if "=" in value and not os.path.exists(value) else (None, value))
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(path):
            if name is not None:
                raise MetricError(f"--detector {value!r}: {path} is a folder; NAME=PATH needs a file")
            found = sorted(p for p in os.listdir(path) if p.endswith(DETECTOR_SUFFIXES))
            if not found:
                raise MetricError(f"--detector {value!r}: no *.pkl or *.pt file in {path}")
            for entry in found:
                files.setdefault(detector_name(entry), os.path.join(path, entry))
        elif os.path.isfile(path):
            files[name or detector_name(path)] = path
        else:
            raise MetricError(f"--detector {value!r}: no such file or folder {path}; pass an existing detector "
                              f"pickle such as inception-2015-12-05.pkl or vgg16.pkl")
    return files


def register_detector_files(files: dict[str, str]) -> None:
    """Use these local files (name -> path) for detector URLs of the same name, process-wide."""
    _registered.update({str(k): str(v) for k, v in files.items()})


def registered_detector_files() -> dict[str, str]:
    """The local files registered so far (name -> path)."""
    return dict(_registered)


def clear_detector_files() -> None:
    """Forget every registered local detector file."""
    _registered.clear()


def download_cache_dir() -> str:
    """dnnlib's download cache: where stylegan3 keeps (and first looks for) downloaded files."""
    try:
        import dnnlib  # the checkout's own rule, honouring dnnlib.util.set_cache_dir
        return dnnlib.make_cache_dir_path("downloads")
    except ImportError:
        pass
    if "DNNLIB_CACHE_DIR" in os.environ:
        return os.path.join(os.environ["DNNLIB_CACHE_DIR"], "downloads")
    home = os.environ.get("HOME") or os.environ.get("USERPROFILE")
    root = os.path.join(home, ".cache", "dnnlib") if home else os.path.join(tempfile.gettempdir(), ".cache", "dnnlib")
    return os.path.join(root, "downloads")


def cache_path(url: str) -> str:
    """The path under which a copy of ``url`` is found in the download cache."""
    md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
    return os.path.join(download_cache_dir(), f"{md5}_{url.split('/')[-1]}")


def locate_detector(url: str, files: Optional[dict[str, str]] = None) -> Optional[str]:
    """Local file for a detector URL (steps 1-3 of the module docstring), or None if it must be downloaded."""
    name = detector_name(url)
    table = dict(_registered)
    table.update(files or {})
    if name in table:
        return table[name]
    if not _is_url(url) or url.startswith("file://"):
        path = url[len("file://"):] if url.startswith("file://") else url
        if not os.path.isfile(path):
            raise DetectorUnavailableError(f"detector file {path} does not exist")
        return path
    md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
    cached = glob.glob(os.path.join(download_cache_dir(), md5 + "_*"))
    return cached[0] if len(cached) == 1 else None


def _unavailable(url: str, reason: str) -> DetectorUnavailableError:
    name, file = detector_name(url), url.split("/")[-1]
    return DetectorUnavailableError(
        f"could not download the feature detector {name!r} from {url} ({reason}). Without internet access, "
        f"fetch {file} on another machine and either pass it to calc_metrics.py with --detector=/path/to/{file} "
        f"(or --detector={name}=/path/to/file, or --detector=/folder/holding/it), or copy it to "
        f"{cache_path(url)} (dnnlib's download cache; DNNLIB_CACHE_DIR moves it)")


def _download(url: str, verbose: bool) -> str:
    """Download into the cache (via dnnlib when importable, as stylegan3 does) and return the file path."""
    try:
        import dnnlib
    except ImportError:
        dnnlib = None
    try:
        if dnnlib is not None:
            return dnnlib.util.open_url(url, verbose=verbose, return_filename=True)
        target = cache_path(url)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as res, tempfile.NamedTemporaryFile(
                dir=os.path.dirname(target), delete=False) as tmp:
            shutil.copyfileobj(res, tmp)
        os.replace(tmp.name, target)
        return target
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # network errors come in many types (requests, urllib, socket, OSError)
        raise _unavailable(url, f"{type(exc).__name__}: {exc}") from exc


def load_detector_file(path: str) -> torch.nn.Module:
    """Load a detector file: a pickle (stylegan3) or a TorchScript archive (stylegan2-ada ``.pt``).

    Pickles of stylegan3 detectors hold ``torch_utils.persistence`` classes, so ``torch_utils`` of a
    checkout (or of the stylegan2-ada runtime) must be importable.
    """
    if zipfile.is_zipfile(path):
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is what stylegan2-ada ships
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location="cpu").eval()
    with open(path, "rb") as f:
        try:
            module = pickle.load(f)
        except ModuleNotFoundError as exc:
            raise MetricError(f"detector {path} needs module {exc.name!r} to unpickle; put a stylegan3 or "
                              f"stylegan2-ada checkout on sys.path (its torch_utils)") from exc
    if not isinstance(module, torch.nn.Module):
        raise MetricError(f"detector {path} holds a {type(module).__name__}, not a torch module; "
                          f"pass the detector pickle itself (e.g. inception-2015-12-05.pkl)")
    return module


def open_detector(url: str, *, files: Optional[dict[str, str]] = None, verbose: bool = False) -> torch.nn.Module:
    """The detector module for a URL or path, on the CPU, from the first source that has it.

    Parameters
    ----------
    url : str
        Detector URL (e.g. :data:`INCEPTION_URL`) or local path.
    files : dict, optional
        name -> local path, on top of the files registered with :func:`register_detector_files`.

    Raises
    ------
    DetectorUnavailableError
        Not available locally and the download failed; the message says which file to put where.
    """
    path = locate_detector(url, files)
    if path is None:
        path = _download(url, verbose)
    else:
        log.info("feature detector %s from %s", detector_name(url), path)
    return load_detector_file(path)
