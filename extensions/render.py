"""Writing generator outputs: images as ``gen_images.py`` writes them, grids, CSV and .npz files.

Every file is written to a temporary name in the destination folder and renamed into place, so a file
either exists complete or not at all, even when a run is interrupted.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from ._checks import HubnessError

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def seed_filename(seed: int) -> str:
    """``seed%04d.png``, the name ``gen_images.py`` gives the image of ``seed``."""
    return f"seed{int(seed):04d}.png"


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Generator output (n, C, H, W), nominally in [-1, 1], to uint8 images (n, H, W, C).

    The same arithmetic as ``gen_images.py``: ``x * 127.5 + 128``, clamped to [0, 255], truncated.
    """
    if not isinstance(img, torch.Tensor) or img.ndim != 4:
        raise HubnessError(f"images must be a tensor of shape (n, C, H, W), got "
                           f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def to_pil(array: np.ndarray) -> PIL.Image.Image:
    """A (H, W, C) uint8 array as a PIL image (C = 1, 3 or 4)."""
    if array.ndim != 3 or array.shape[2] not in _MODES or array.dtype != np.uint8:
        raise HubnessError(f"an image must be uint8 of shape (H, W, 1|3|4), got {array.dtype} {array.shape}")
    channels = array.shape[2]
    return PIL.Image.fromarray(array[:, :, 0] if channels == 1 else array, _MODES[channels])


#: This machine, in the names of temporary files: a folder shared between machines (NFS) holds temporaries
#: whose writers this machine cannot see, which it therefore never removes.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
#: Suffix of the temporary files of :func:`atomic_file` and :func:`atomic_files`, whose names are
#: ``.<name>.<pid>-<random>`` and this: a name no other program uses, so that leftovers of a killed run can be
#: told from a user's files, and from those of runs still writing.
TEMP_SUFFIX = f".{_HOST}.stylegan3-hubness.tmp"
TEMP_RE = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.([0-9a-f]{8})\.stylegan3-hubness\.tmp$")


def _temp_beside(path: Path) -> tuple[int, str]:
    # realpath: mkstemp collapses "link/.." by text, where the system follows the link
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX,
                                   dir=os.path.realpath(path.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    except BaseException as exc:
        os.close(fd)
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return fd, tmp


def remove_stale_temps(folder) -> list:
    """Remove the temporary files that killed runs on this machine left in ``folder`` (those of live processes,
    and of other machines, stay); returns their paths."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = TEMP_RE.match(entry.name)
            if (match and match.group(2) == _HOST and not entry.is_dir(follow_symlinks=False)
                    and not _alive(int(match.group(1)))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's process (or a name that is not a pid: keep it)
    return True


class deferred_signals:
    """Ctrl-C and SIGTERM inside the block wait until it ends, then act as they would have (in the main thread;
    elsewhere the block runs unprotected): renames of several files are not cut short between two of them."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self._saved, self._pending = {}, []
        if threading.current_thread() is threading.main_thread():
            try:
                for signum in self.SIGNALS:
                    try:
                        self._saved[signum] = signal.signal(signum, self._record)
                    except (ValueError, OSError, TypeError):
                        pass
            except BaseException:  # a signal handled while swapping: leave the handlers as they were
                self._restore()
                raise
        return self

    def _restore(self):
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self._pending.append((signum, frame))

    def __exit__(self, exc_type, exc, tb):
        self._restore()
        for signum in dict.fromkeys(signum for signum, _ in self._pending):  # each once, in arrival order
            frame = next(f for n, f in self._pending if n == signum)
            handler = self._saved.get(signum)
            if callable(handler):
                handler(signum, frame)  # raises KeyboardInterrupt (or exits) as the signal would have
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
        return False


def _set_aside(path: Path) -> Optional[str]:
    """A hard link to what ``path`` holds (a file, or a symlink itself), to put it back with; None when there
    is nothing (or a folder) there. Where hard links fail, a copy (the original stays in place until it is
    replaced, so a kill never leaves the path empty)."""
    if not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()):
        return None
    fd, backup = _temp_beside(path)
    os.close(fd)
    try:
        os.unlink(backup)
        os.link(path, backup, follow_symlinks=False)
    except OSError:  # no hard links on this filesystem
        with contextlib.suppress(FileNotFoundError):
            os.unlink(backup)
        if path.is_symlink():
            os.symlink(os.readlink(path), backup)
        else:
            shutil.copy2(path, backup)
    return backup


@contextlib.contextmanager
def atomic_files(paths: Sequence):
    """Temporary files next to each of ``paths``, renamed into place together when the block succeeds.

    Yields a dict path -> temporary path for the block to write (by name: matplotlib, numpy, ffmpeg). On an
    error none of ``paths`` changes and the temporary files are removed: a rename that fails (a folder in
    the way) puts back what the renames before it replaced, from links kept until the end. Ctrl-C and
    SIGTERM wait for the renames (or that roll-back) to end; only ``kill -9`` during them can leave some
    paths new and others old, all of them complete.
    """
    paths = list(dict.fromkeys(Path(p) for p in paths))
    temps = {}
    try:
        for path in paths:
            fd, tmp = _temp_beside(path)
            os.close(fd)
            temps[path] = Path(tmp)
        yield dict(temps)
        for tmp in temps.values():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError as exc:  # e.g. ENOSPC found at sync time: the file it concerns
                raise OSError(exc.errno, exc.strerror, str(tmp)) from exc
            finally:
                os.close(fd)
        with deferred_signals():
            _replace_all(temps)
    except BaseException as exc:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):  # name the file the user asked for
            for path, tmp in temps.items():
                if exc.filename == str(tmp):
                    raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _replace_all(temps: dict) -> None:
    """Rename each temporary onto its path; if one fails, put back what the earlier ones replaced."""
    done = []  # (path, what it held before or None, whether something was there)
    try:
        for path, tmp in temps.items():
            existed = os.path.lexists(path)
            backup = _set_aside(path)
            try:
                os.replace(tmp, path)
            except BaseException:
                if backup is not None:
                    os.unlink(backup)
                raise
            done.append((path, backup, existed))
    except BaseException:
        for path, backup, existed in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                elif not existed:
                    os.unlink(path)
        raise
    for _, backup, _ in done:
        if backup is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)


def made_folders(path) -> list:
    """Create ``path`` and its missing parents, one level at a time; returns the folders this call created,
    deepest first (what a failed run removes again)."""
    path = Path(os.getcwd(), path)  # absolute, with any ".." left for the system to resolve
    made = []
    try:
        for folder in [*reversed(path.parents), path]:
            if folder.is_dir():
                continue
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not folder.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(folder)) from None
                continue
            made.append(folder)
    except BaseException:
        remove_made_folders(made[::-1])
        raise
    return made[::-1]


def remove_made_folders(made: list) -> None:
    """Remove the folders :func:`made_folders` created, those still empty, deepest first."""
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def created_folder(path):
    """Create ``path`` and its missing parents; if the block fails, remove the ones it created that are still
    empty (a failed run leaves no new folders behind)."""
    made = made_folders(path)
    try:
        yield Path(path)
    except BaseException:
        remove_made_folders(made)
        raise


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb"):
    """Open a temporary file next to ``path``; on success rename it to ``path``, on error delete it."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else dict(newline="", encoding="utf-8"))) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file the user asked for
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_png(array: np.ndarray, path) -> None:
    """Write a (H, W, C) uint8 image as PNG, atomically."""
    image = to_pil(array)
    with atomic_file(path) as f:
        image.save(f, format="PNG")


def image_grid(images: Sequence[np.ndarray], cols: Optional[int] = None, min_cell: int = 64, gap: int = 0, *,
               rows: Optional[int] = None, labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """Tile equally sized (H, W, C) images row by row into one uint8 image.

    Parameters
    ----------
    images : sequence of np.ndarray, each (H, W, C) uint8
    cols, rows : int, optional
        Layout (stylegan3's ``--grid WxH`` is ``cols x rows``). ``cols`` defaults to ceil(sqrt(n)) and
        ``rows`` to what the images fill; with both given, only the first ``cols * rows`` images are shown.
    min_cell : int
        Images smaller than this many pixels are enlarged by an integer factor s (nearest neighbour) so
        a grid of tiny images stays readable; s = 1 otherwise.
    gap : int
        Pixels of grey between cells; unfilled cells show the background (black without gaps, grey with).
    labels : sequence of str, optional
        One caption per image, written in a strip under its cell.

    Returns
    -------
    np.ndarray, shape (rows * (s * H + strip + gap) - gap, cols * (s * W + gap) - gap, C)
    """
    if len(images) == 0:
        raise HubnessError("a grid needs at least one image")
    shape = images[0].shape
    if any(im.shape != shape for im in images):
        raise HubnessError(f"grid images must share one shape; got {sorted({im.shape for im in images})}")
    if labels is not None and len(labels) != len(images):
        raise HubnessError(f"a grid needs one label per image, got {len(labels)} for {len(images)}")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = rows or math.ceil(len(images) / cols)
    images = list(images)[:cols * rows]
    scale = max(1, -(-min_cell // max(shape[0], shape[1])))
    if scale > 1:
        images = [im.repeat(scale, axis=0).repeat(scale, axis=1) for im in images]
    h, w, c = images[0].shape
    strip = 12 if labels is not None else 0  # the default bitmap font is 11 pixels high
    ch = h + strip
    background = 96 if gap else 0
    grid = np.full((rows * (ch + gap) - gap, cols * (w + gap) - gap, c), background, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        y, x = r * (ch + gap), q * (w + gap)
        grid[y:y + h, x:x + w] = im
        if strip:
            grid[y + h:y + ch, x:x + w] = _caption(str(labels[i]), w, strip, c)
    return grid


def _caption(text: str, width: int, height: int, channels: int) -> np.ndarray:
    """White text on black, (height, width, channels) uint8, cut to the width."""
    import PIL.ImageDraw
    canvas = PIL.Image.new("L", (width, height), 0)
    PIL.ImageDraw.Draw(canvas).text((2, 0), text, fill=255)
    out = np.asarray(canvas)[:, :, None]
    return np.repeat(out, channels, axis=2) if channels != 1 else out


def load_png(path) -> np.ndarray:
    """A PNG as a (H, W, C) uint8 array."""
    with PIL.Image.open(path) as im:
        array = np.asarray(im)
    return array[:, :, None] if array.ndim == 2 else array


def write_csv(path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV file atomically (None cells are left empty)."""
    with atomic_file(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])


def write_npz(path, **arrays) -> None:
    """Write arrays to an uncompressed .npz atomically; object arrays (pickles) are refused."""
    clean = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            raise HubnessError(f"array {name!r} has dtype object; .npz outputs hold no pickles")
        clean[name] = value
    buf = io.BytesIO()
    np.savez(buf, **clean)
    with atomic_file(path) as f:
        f.write(buf.getvalue())
