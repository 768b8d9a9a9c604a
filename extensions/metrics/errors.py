"""Typed errors of the metric code, and the file an OSError is really about."""

from __future__ import annotations

import errno
import os
import re
from typing import Optional

from .._checks import HubnessError


class MetricError(HubnessError):
    """Bad input to a metric (features, statistics, options); a ValueError, so callers can catch either."""


class DetectorUnavailableError(FileNotFoundError):
    """A feature detector pickle could neither be found locally nor downloaded.

    The message names the file and every place it is looked up, so a user on an offline machine knows
    where to put it.
    """


# Temporary names the checkout writes before an atomic rename: dnnlib.util.open_url downloads to
# ``tmp_<uuid hex>_<name>`` beside the target; metric_utils saves statistics to ``<cache file>.<uuid hex>``.
_TEMP_NAMES = (re.compile(r"^tmp_[0-9a-f]{32}_(?P<name>.+)$"), re.compile(r"^(?P<name>.+)\.[0-9a-f]{32}$"))


def real_path(path) -> str:
    """The file a temporary file stands for (the rename target), else ``path`` itself."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    for pattern in _TEMP_NAMES:
        match = pattern.match(name)
        if match:
            return os.path.join(folder, match["name"])
    return path


def _within(path: str, folder: Optional[str]) -> bool:
    if not folder:
        return False
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def os_error_message(exc: OSError, cache_dir: Optional[str] = None) -> str:
    """One line for an OSError: what went wrong, with which real file, and what to do.

    Parameters
    ----------
    exc : OSError
    cache_dir : str, optional
        dnnlib's cache folder; files under it get the advice to move the cache with ``DNNLIB_CACHE_DIR``.
    """
    filename = getattr(exc, "filename", None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if filename is None:
        return " ".join(f"{type(exc).__name__}: {reason}".split())
    path = real_path(filename)
    folder = os.path.dirname(path) or "."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"let this user read {path} and write to {folder}"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = f"free space on the disk that holds {folder}"
    elif exc.errno == errno.ENOENT:
        advice = f"check that {path} exists"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        advice = f"{path} or one of its parents is a file where a folder is needed; move that file away"
    elif exc.errno == errno.EISDIR:
        advice = f"{path} is a folder where a file is needed; move that folder away"
    else:
        advice = f"check that {path} can be read and {folder} written"
    if _within(path, cache_dir):
        advice += f", or set DNNLIB_CACHE_DIR to a writable folder (the cache is {cache_dir})"
    return " ".join(f"{reason}: {path}; {advice}".split())
