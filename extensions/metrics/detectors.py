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

Both formats load: stylegan3's pickles and stylegan2-ada's TorchScript ``.pt`` archives. A file that is
neither, or that holds something other than a feature network, is a :class:`MetricError` naming it
(:func:`load_detector_file`, :func:`check_detector`).
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
import uuid
import warnings
import zipfile
from typing import Iterable, Optional

import torch

from .errors import DetectorUnavailableError, MetricError, real_path

log = logging.getLogger(__name__)

_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/"
#: The detectors of stylegan3's metrics (stylegan2-ada serves the same networks as TorchScript ``.pt``).
INCEPTION_URL = _NGC + "inception-2015-12-05.pkl"
VGG16_URL = _NGC + "vgg16.pkl"
DETECTOR_SUFFIXES = (".pkl", ".pt")
#: Features per image (``return_features=True``) of the genuine detectors, by name.
FEATURE_DIMS = {"inception-2015-12-05": 2048, "vgg16": 4096}

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
            raise DetectorUnavailableError(f"detector file {path} does not exist; pass an existing detector "
                                           f"pickle with --detector")
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


def _root_reason(exc: BaseException) -> str:
    """``Type: message`` of an error, the message taken from its innermost cause: network libraries nest
    the one telling part (``[Errno -2] Name or service not known``) several wrappers deep."""
    root, seen = exc, {id(exc)}
    while True:
        inner = root.__cause__ or root.__context__
        if inner is None or id(inner) in seen:
            break
        root, seen = inner, seen | {id(inner)}
    message = str(root) or str(exc)
    return " ".join(f"{type(exc).__name__}: {message}".split())


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
        temp = os.path.join(os.path.dirname(target), f"tmp_{uuid.uuid4().hex}_{os.path.basename(target)}")  # as dnnlib
        try:
            with urllib.request.urlopen(url, timeout=60) as res, open(temp, "wb") as out:
                shutil.copyfileobj(res, out)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.remove(temp)
        return target
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # network errors come in many types (requests, urllib, socket, OSError)
        filename = getattr(exc, "filename", None)
        if isinstance(exc, OSError) and filename:  # the download arrived; the cache folder refused it
            path, file = real_path(filename), url.split("/")[-1]
            raise DetectorUnavailableError(
                f"could not save the downloaded feature detector to {path} ({exc.strerror or exc}); make "
                f"{os.path.dirname(path)} writable, set DNNLIB_CACHE_DIR to a writable folder, or pass the file "
                f"with --detector=/path/to/{file}") from exc
        raise _unavailable(url, _root_reason(exc)) from exc


def _genuine(name: str) -> str:
    """The genuine detector file for a detector name."""
    return f"{name}.pkl" if name in FEATURE_DIMS else "inception-2015-12-05.pkl or vgg16.pkl"


def load_detector_file(path: str, name: Optional[str] = None) -> torch.nn.Module:
    """Load a detector file: a pickle (stylegan3) or a TorchScript archive (stylegan2-ada ``.pt``).

    Pickles of stylegan3 detectors hold ``torch_utils.persistence`` classes, so ``torch_utils`` of a
    checkout (or of the stylegan2-ada runtime) must be importable. ``name`` is the detector asked for
    (default: the file's own name); error messages name its genuine file.

    Raises
    ------
    MetricError
        The file is neither a pickle nor a TorchScript archive, or holds no torch module; the message
        names the file. (OSError when it cannot be read.)
    """
    fix = (f"pass the detector file itself ({_genuine(name or detector_name(path))}, as stylegan3 or stylegan2-ada "
           f"download it) with --detector")
    if zipfile.is_zipfile(path):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is what stylegan2-ada ships
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:  # a zip file, but not a TorchScript archive
            raise MetricError(f"detector {path} is a zip file but not a TorchScript archive "
                              f"({_root_reason(exc)[:200]}); {fix}") from exc
    with open(path, "rb") as f:
        try:
            module = pickle.load(f)
        except ModuleNotFoundError as exc:
            raise MetricError(f"detector {path} needs module {exc.name!r} to unpickle; put a stylegan3 or "
                              f"stylegan2-ada checkout on sys.path (its torch_utils)") from exc
        except MemoryError:
            raise
        except Exception as exc:  # pickle reports a foreign or damaged file in many types
            raise MetricError(f"detector {path} is not a pickle that loads ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]}); {fix}") from exc
    if not isinstance(module, torch.nn.Module):
        raise MetricError(f"detector {path} holds a {type(module).__name__}, not a torch module; {fix}")
    return module


def check_detector(module: torch.nn.Module, path: str, url: str, device=torch.device("cpu")) -> int:
    """Check that ``module`` (loaded from ``path`` for ``url``) works as stylegan3's metrics call it.

    One call on two small uint8 images with ``return_features=True`` must give finite features of shape
    (2, d). The genuine detectors resize their input, so any image size works; a detector of the other
    kind (the VGG16 file where the Inception one is asked for, or the reverse) is recognised by d.

    Returns
    -------
    int
        d, the features per image.

    Raises
    ------
    MetricError
        Naming the file, what it did, and the file to pass instead.
    """
    name = detector_name(url)
    fix = f"pass the genuine {_genuine(name)} with --detector"
    images = torch.arange(2 * 3 * 64 * 64, dtype=torch.int64).reshape(2, 3, 64, 64).mul(37).remainder(256)
    images = images.to(device=device, dtype=torch.uint8)
    try:
        with torch.no_grad():
            out = module(images, return_features=True)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # whatever a foreign module does with these arguments
        raise MetricError(f"detector {path} is not a stylegan3 feature detector: calling it on uint8 images "
                          f"with return_features=True raised {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}; {fix}") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(images):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise MetricError(f"detector {path} is not a stylegan3 feature detector: for 2 images it returned {got}, "
                          f"not features of shape (2, d); {fix}")
    dim = int(out.shape[1])
    for other, other_dim in FEATURE_DIMS.items():
        if other != name and dim == other_dim and FEATURE_DIMS.get(name, dim) != dim:
            raise MetricError(f"detector {path} gives {dim} features per image like {other}.pkl, but "
                              f"{name} ({FEATURE_DIMS[name]} features) is needed here; {fix}")
    if not torch.isfinite(out).all():
        raise MetricError(f"detector {path} returned non-finite features (NaN or inf); {fix}")
    return dim


def detector_path(url: str, *, files: Optional[dict[str, str]] = None, verbose: bool = False) -> str:
    """The local file of a detector URL or path: found (see the module docstring) or downloaded.

    Raises
    ------
    DetectorUnavailableError
        Not available locally and the download failed; the message says which file to put where.
    """
    path = locate_detector(url, files)
    if path is None:
        return _download(url, verbose)
    log.info("feature detector %s from %s", detector_name(url), path)
    return path


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
    MetricError
        The file is not a detector (see :func:`load_detector_file`).
    """
    return load_detector_file(detector_path(url, files=files, verbose=verbose))
