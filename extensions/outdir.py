"""An output folder that belongs to one run at a time, and a manifest that vouches for what it holds.

Every command that writes results into a folder (``gen_images_hub.py``, the patched ``gen_images.py``)
goes through :class:`OutputDir`:

* **One run at a time.** The folder is locked (``flock`` on the folder itself) for the whole run; a second
  run stops at once and names the holder. The kernel drops the lock when its process dies, so a killed
  run never blocks the next one.
* **Only complete files of one result.** New files are written into a hidden staging folder inside the
  output folder and moved into place together at the end, after ``manifest.json``. A run that fails
  (bad input, non-finite numbers, a full disk) leaves the folder as it found it; a killed run leaves
  complete files only, and the next run removes or reuses what it left behind.
* **A manifest.** ``manifest.json`` lists every result file with its SHA-256 under the settings that
  produced it. A later run keeps an existing image only when the manifest vouches for it (same settings,
  same content); images the manifest does not vouch for, or that the new result does not contain, make
  the run stop unless ``clean=True`` (``--clean``), which removes them.

Files that do not look like results (a user's notes, say) are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable, Optional

from ._checks import HubnessError
from .render import TEMP_RE, atomic_file, made_folders, remove_made_folders, remove_stale_temps

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
LOCK_INFO_NAME = ".stylegan3-hubness.lock"
STAGING_NAME = ".stylegan3-hubness.staging"
#: Files a commit replaces or removes wait here until the new manifest is in place.
ASIDE_NAME = ".stylegan3-hubness.aside"
_MOVED_IN = "moved-in.txt"
_FORMAT = 1


class OutdirError(HubnessError):
    """The output folder cannot be used as asked (locked, unwritable, holds results of another run)."""


class OutdirBusyError(OutdirError):
    """Another run holds the output folder."""


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _lock(fd: int) -> bool:
    """Exclusive non-blocking lock of an open folder; False when someone else holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks on folders; run unlocked
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class OutputDir:
    """A locked output folder with staged writes and a manifest (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The folder; created when missing (and removed again if the run fails before writing anything).
    tool : str
        Name of the command, recorded in the manifest and the lock.
    option : str
        How the user names the folder in messages (``--outdir``).
    clean : bool
        Remove result files the new result does not vouch for instead of refusing to run.

    Use as a context manager; between ``__enter__`` and :meth:`commit` new files go to :meth:`staged`.
    """

    def __init__(self, path, *, tool: str = "gen_images_hub", option: str = "--outdir", clean: bool = False):
        text = str(path)
        if not text.strip():
            raise OutdirError(f"{option} is empty; give a folder, e.g. {option} out")
        self.path = Path(os.path.expanduser(text))
        self.tool = tool
        self.option = option
        self.clean = bool(clean)
        self.manifest: Optional[dict] = None
        self._hashes: dict = {}
        self._fd: Optional[int] = None
        self._locked = False
        self._created: list = []
        self._committed = False
        self.staging = self.path / STAGING_NAME

    # ------------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> "OutputDir":
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutdirError(f"{self.option} {str(p)!r} exists and is not a directory; choose another {self.option}")
        try:
            if not p.exists():
                try:
                    self._created = made_folders(p)
                except FileExistsError:  # a concurrent run made it first: the lock below decides
                    if not p.is_dir():
                        raise
            self._fd = os.open(p, os.O_RDONLY)
        except OSError as exc:
            remove_made_folders(self._created)
            raise OutdirError(f"cannot create or open {self.option} {str(p)!r} ({exc.strerror}); choose a folder "
                              f"you can write to") from exc
        try:
            if not _lock(self._fd):
                raise OutdirBusyError(f"{self.option} {str(p)!r} is in use by another run ({self._holder()}); wait "
                                      f"for it to finish or choose another {self.option}")
            self._locked = True
            self._write_lock_info()
            self._finish_interrupted_commit()
            self._remove_leftovers()
            self.manifest = self._read_manifest()
        except BaseException:
            self._release(remove_if_created=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._committed:
            # A failed run leaves the folder as it found it; an interrupted one keeps its staged images
            # for the next run with the same settings.
            if issubclass(exc_type, Exception):
                shutil.rmtree(self.staging, ignore_errors=True)
        self._release(remove_if_created=exc_type is not None)

    def _release(self, remove_if_created: bool) -> None:
        if self._locked:  # the holder's information is the holder's to remove
            with contextlib.suppress(FileNotFoundError):
                (self.path / LOCK_INFO_NAME).unlink()
            self._locked = False
        if remove_if_created:  # the folders this run made, while they are empty
            remove_made_folders(self._created)
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _write_lock_info(self) -> None:
        info = dict(tool=self.tool, pid=os.getpid(), host=socket.gethostname(),
                    started=time.strftime("%Y-%m-%d %H:%M:%S"))
        try:
            (self.path / LOCK_INFO_NAME).write_text(json.dumps(info))
        except OSError as exc:
            raise OutdirError(f"cannot write into {self.option} {str(self.path)!r} ({exc.strerror}); choose a "
                              f"folder you can write to") from exc

    def _holder(self) -> str:
        try:
            info = json.loads((self.path / LOCK_INFO_NAME).read_text())
            return f"{info['tool']}, pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def _remove_leftovers(self) -> None:
        """Temporary files of interrupted atomic writes (ours by name, of processes that are gone: another
        command may be writing its own file here now)."""
        for path in remove_stale_temps(self.path):
            log.info("removed %s left by an interrupted run", path)

    def _read_manifest(self) -> Optional[dict]:
        path = self.path / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or \
                    not isinstance(data.get("settings"), dict):
                raise ValueError("no settings or files table")
            for name, entry in data["files"].items():
                if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                        and isinstance(entry.get("bytes"), int)):
                    raise ValueError(f"bad entry for {name!r}")
            return data
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s (%s)", path, exc)
            return None

    # ------------------------------------------------------------------------------------ planning
    def vouched(self, names: Iterable[str], settings: dict) -> dict:
        """Which of ``names`` the manifest vouches for under ``settings``.

        Returns
        -------
        dict
            name -> 'ok' (present, same settings, same content), 'damaged' (listed under the same settings
            but missing or changed: render it again), 'other' (present but from other settings or not
            recorded at all) or 'absent'.
        """
        listed = {}
        if self.manifest is not None and self.manifest.get("settings") == settings:
            listed = self.manifest["files"]
        out = {}
        for name in names:
            path = self.path / name
            if name in listed:
                entry = listed[name]
                ok = path.is_file() and path.stat().st_size == entry.get("bytes") and file_sha256(path) == entry.get("sha256")
                if ok:
                    self._hashes[name] = dict(sha256=entry["sha256"], bytes=entry["bytes"])
                out[name] = "ok" if ok else "damaged"
            else:
                out[name] = "other" if path.exists() else "absent"
        return out

    def settings_changed(self, settings: dict) -> Optional[dict]:
        """(old, new) of each setting that differs from the manifest's, when the folder holds results."""
        if self.manifest is None or self.manifest.get("settings") == settings:
            return None
        old = self.manifest.get("settings") or {}
        return {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}

    def results_present(self, pattern: re.Pattern) -> list:
        """Names of files in the folder whose names match ``pattern`` (the command's result files)."""
        return sorted(e.name for e in self.path.iterdir() if e.is_file() and pattern.fullmatch(e.name))

    def refuse_or_clean(self, unwanted: list, reason: str) -> list:
        """Stop with one line naming ``unwanted`` files, unless ``clean``; returns what :meth:`commit` removes."""
        if not unwanted:
            return []
        if not self.clean:
            shown = ", ".join(unwanted[:3]) + (f" and {len(unwanted) - 3} more" if len(unwanted) > 3 else "")
            raise OutdirError(f"{self.option} {str(self.path)!r} holds {len(unwanted)} file(s) that this run would "
                              f"not vouch for ({shown}: {reason}); pass --clean to remove them, or choose another "
                              f"{self.option}")
        return list(unwanted)

    # ------------------------------------------------------------------------------------ writing
    def staged(self, name: str) -> Path:
        """Where to write result file ``name`` now; it moves into the folder at :meth:`commit`."""
        self.staging.mkdir(exist_ok=True)
        return self.staging / name

    def prepare_staging(self, settings: dict, wanted: Iterable[str]) -> set:
        """Keep the staged files of an interrupted run that made them with the same ``settings`` and that
        this run wants (returns their names); remove everything else staged."""
        key = self.staging / "settings.json"
        if self.staging.is_dir():
            try:
                same = json.loads(key.read_text(encoding="utf-8")) == settings
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.staging)
        self.staging.mkdir(exist_ok=True)
        key.write_text(json.dumps(settings, sort_keys=True))
        wanted, kept = set(wanted), set()
        for entry in self.staging.iterdir():
            if entry.name == "settings.json":
                continue
            if entry.is_file() and entry.name in wanted and not TEMP_RE.match(entry.name):
                kept.add(entry.name)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return kept

    def commit(self, settings: dict, keep: Iterable[str], remove: Iterable[str] = ()) -> dict:
        """Make the staged files the folder's result, all or nothing.

        Parameters
        ----------
        settings : dict
            JSON-able settings the result was made with (recorded in the manifest).
        keep : iterable of str
            Files already in the folder that belong to the result unchanged (vouched for).
        remove : iterable of str
            Files to delete (from :meth:`refuse_or_clean`).

        Returns
        -------
        dict
            name -> {'sha256', 'bytes'} of every result file, as written to ``manifest.json``.

        Raises
        ------
        OutdirError
            When a file cannot be moved or replaced; the folder is then restored as it was.

        Notes
        -----
        Files to be replaced or removed, and the old manifest, are first moved aside (renames, which undo);
        then the staged files move in, then the new manifest is written: that is the commit point. A run
        killed before it is rolled back by the next run, one killed after it is completed.
        """
        files = {}
        for name in keep:
            path = self.path / name
            files[name] = self._hashes.get(name) or dict(sha256=file_sha256(path), bytes=path.stat().st_size)
        staged = sorted(e.name for e in self.staging.iterdir() if e.is_file() and e.name != "settings.json"
                        and not TEMP_RE.match(e.name)) if self.staging.is_dir() else []
        for name in staged:
            path = self.staging / name
            files[name] = dict(sha256=file_sha256(path), bytes=path.stat().st_size)
        manifest = dict(format=_FORMAT, tool=self.tool, settings=settings, files=dict(sorted(files.items())))
        aside = self.path / ASIDE_NAME
        aside.mkdir(exist_ok=True)
        current = None
        try:
            # The old manifest goes first: from here on, a manifest in the folder means the commit finished.
            for name in [MANIFEST_NAME] + sorted((set(remove) | set(staged)) - {MANIFEST_NAME}):
                current = name
                target = self.path / name
                if target.is_dir() and not target.is_symlink():
                    raise IsADirectoryError(errno.EISDIR, "a folder stands where a result file goes", str(target))
                if target.exists() or target.is_symlink():
                    os.replace(target, aside / name)
            with open(aside / _MOVED_IN, "a", encoding="utf-8") as journal:
                for name in staged:
                    current = name
                    # Noted first: a roll-back moves back what arrived (the old file is already aside).
                    journal.write(name + "\n")
                    journal.flush()
                    os.replace(self.staging / name, self.path / name)
            current = MANIFEST_NAME
            with atomic_file(self.path / MANIFEST_NAME, "w") as f:
                json.dump(manifest, f, indent=1)
        except OSError as exc:
            self._roll_back()
            raise OutdirError(f"cannot replace {str(self.path / current)!r} ({exc.strerror or exc}); the folder "
                              f"is as it was: fix that file (permissions, immutable flag, a folder in its place) "
                              f"or choose another {self.option}") from exc
        shutil.rmtree(aside, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.manifest = manifest
        self._committed = True
        return files

    def _roll_back(self) -> None:
        """Undo a commit that did not reach its manifest: incoming files go back to staging, the files set
        aside return."""
        aside = self.path / ASIDE_NAME
        try:
            moved_in = [n for n in (aside / _MOVED_IN).read_text(encoding="utf-8").split("\n") if n]
        except OSError:
            moved_in = []
        self.staging.mkdir(exist_ok=True)
        for name in moved_in:
            with contextlib.suppress(OSError):
                os.replace(self.path / name, self.staging / name)
        for entry in aside.iterdir() if aside.is_dir() else ():
            if entry.name != _MOVED_IN:
                with contextlib.suppress(OSError):
                    os.replace(entry, self.path / entry.name)
        shutil.rmtree(aside, ignore_errors=True)

    def _finish_interrupted_commit(self) -> None:
        """A commit killed midway: completed when its manifest is in place, else rolled back."""
        aside = self.path / ASIDE_NAME
        if not aside.is_dir():
            return
        if (self.path / MANIFEST_NAME).is_file():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            log.info("rolling back a commit of %s that was interrupted", self.path)
            self._roll_back()
