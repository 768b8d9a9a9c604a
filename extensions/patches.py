"""Apply the project's patches (``patches/*.patch``) to a stylegan3 checkout, check them, or revert them.

::

    python -m extensions.patches check  --stylegan3 ~/stylegan3
    python -m extensions.patches apply  --stylegan3 ~/stylegan3
    python -m extensions.patches revert --stylegan3 ~/stylegan3
    python -m extensions.patches apply  --studiogan ~/PyTorch-StudioGAN

``studiogan*.patch`` files go to the PyTorch-StudioGAN checkout of ``--studiogan``, the others to the
stylegan3 checkout; with both options every patch of both is checked before either is written.

Every patch file is checked before anything is written: each is either applied already, applicable, or
in conflict (the checkout differs from what the patch expects). One conflict stops the command with
nothing changed; otherwise all pending patches are applied (or all applied ones reverted) together, and
a failed write rolls back the files already written. The unified-diff applier is pure Python (no ``git``
or ``patch`` needed): context must match exactly, at the stated line or shifted by any offset.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ._checks import HubnessError

#: The patches shipped with the project (a source checkout or editable install).
DEFAULT_PATCH_DIR = Path(__file__).resolve().parent.parent / "patches"

#: Which checkout a patch file belongs to: ``studiogan*.patch`` to PyTorch-StudioGAN, the rest to stylegan3.
TOOLKITS = ("stylegan3", "studiogan")

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(HubnessError):
    """A patch file is malformed or does not fit the checkout."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list = field(default_factory=list)  # (tag, text) with tag in ' -+'; text without line end
    old_eof_newline: bool = True  # False after "\ No newline at end of file" on the old side
    new_eof_newline: bool = True

    def side(self, new: bool) -> list:
        keep = "+" if new else "-"
        return [text for tag, text in self.lines if tag in (" ", keep)]


@dataclass
class FilePatch:
    """The hunks of one file. ``old_path``/``new_path`` are None for '/dev/null' (creation/deletion)."""

    old_path: Optional[str]
    new_path: Optional[str]
    hunks: list

    @property
    def path(self) -> str:
        return self.new_path or self.old_path

    def counts(self) -> tuple:
        added = sum(tag == "+" for h in self.hunks for tag, _ in h.lines)
        removed = sum(tag == "-" for h in self.hunks for tag, _ in h.lines)
        return added, removed


def _strip(path: str) -> Optional[str]:
    path = path.split("\t")[0].strip()
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        path = path[2:]
    return path


def parse_patch(text: str, name: str = "patch") -> list:
    """The :class:`FilePatch` es of a unified diff (text before the first ``---`` line is ignored)."""
    lines = text.splitlines()
    patches, i = [], 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        fp = FilePatch(_strip(lines[i][4:]), _strip(lines[i + 1][4:]), [])
        i += 2
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if m is None:
                raise PatchError(f"{name}: malformed hunk header {lines[i]!r}")
            hunk = Hunk(int(m[1]), int(m[2] or 1), int(m[3]), int(m[4] or 1))
            i += 1
            old_n = new_n = 0
            while i < len(lines) and (old_n < hunk.old_len or new_n < hunk.new_len or lines[i].startswith("\\")):
                line = lines[i]
                if line.startswith("\\"):
                    last = hunk.lines[-1][0] if hunk.lines else " "
                    if last in (" ", "-"):
                        hunk.old_eof_newline = False
                    if last in (" ", "+"):
                        hunk.new_eof_newline = False
                    i += 1
                    continue
                tag, body = (line[0], line[1:]) if line else (" ", "")
                if tag not in " -+":
                    raise PatchError(f"{name}: unexpected line {line!r} in a hunk of {fp.path}")
                hunk.lines.append((tag, body))
                old_n += tag in " -"
                new_n += tag in " +"
                i += 1
            if old_n != hunk.old_len or new_n != hunk.new_len:
                raise PatchError(f"{name}: hunk of {fp.path} is truncated ({old_n}/{hunk.old_len} old lines, "
                                 f"{new_n}/{hunk.new_len} new lines)")
            fp.hunks.append(hunk)
        if not fp.hunks:
            raise PatchError(f"{name}: no hunks for {fp.path}")
        patches.append(fp)
    if not patches:
        raise PatchError(f"{name}: no file changes found (expected a unified diff)")
    return patches


def _split(content: str):
    """Lines without their ends, the newline style, and whether the last line ends with one."""
    newline = "\r\n" if "\r\n" in content else "\n"
    lines = content.splitlines()
    return lines, newline, content.endswith(("\n", "\r"))


def apply_to_text(content: Optional[str], fp: FilePatch, *, reverse: bool = False) -> Optional[str]:
    """``content`` with ``fp`` applied (``reverse``: undone); None stands for an absent file.

    Raises
    ------
    PatchError
        When a hunk's lines are not found in ``content``, or the file's existence contradicts the patch.
    """
    source_absent = (fp.new_path if reverse else fp.old_path) is None
    target_absent = (fp.old_path if reverse else fp.new_path) is None
    if source_absent != (content is None):
        raise PatchError(f"{fp.path} {'already exists' if source_absent else 'does not exist'}")
    lines, newline, eof_newline = _split(content or "")
    out, pos, drift = [], 0, 0
    for n, hunk in enumerate(fp.hunks, 1):
        old, new = hunk.side(reverse), hunk.side(not reverse)
        start, length = (hunk.new_start, hunk.new_len) if reverse else (hunk.old_start, hunk.old_len)
        expected = start if length == 0 else start - 1  # an empty side names the line it follows
        at = _find(lines, old, expected + drift, pos)
        if at is None:
            raise PatchError(f"{fp.path}: hunk {n} (near line {start}) does not match the file")
        drift = at - expected  # a shifted hunk shifts the ones after it alike
        out.extend(lines[pos:at])
        out.extend(new)
        pos = at + len(old)
        if n == len(fp.hunks) and pos == len(lines):
            eof_newline = hunk.old_eof_newline if reverse else hunk.new_eof_newline
    out.extend(lines[pos:])
    if target_absent:
        if out:
            raise PatchError(f"{fp.path}: deleting it would drop lines the patch does not know")
        return None
    text = newline.join(out)
    return text + newline if out and eof_newline else text


def _find(lines: list, block: list, start: int, lower: int) -> Optional[int]:
    """Index >= ``lower`` where ``block`` matches ``lines``, nearest to ``start`` first."""
    if not block:
        return min(max(start, lower), len(lines))
    last = len(lines) - len(block)
    for at in sorted(range(lower, last + 1), key=lambda a: (abs(a - start), a)):
        if lines[at:at + len(block)] == block:
            return at
    return None


@dataclass
class PatchState:
    """Where one patch file stands against a checkout: 'applied', 'pending' or 'conflict'."""

    name: str
    state: str
    changes: list  # (path, lines added, lines removed)
    detail: str = ""

    @property
    def files(self) -> list:
        return [path for path, _, _ in self.changes]

    def summary(self, reverse: bool = False) -> str:
        return ", ".join(f"{path} ({'-' if reverse else '+'}{added} {'+' if reverse else '-'}{removed} lines)"
                         for path, added, removed in self.changes)


def _target(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise PatchError(f"patch path {rel!r} points outside the checkout")
    return path


def _read(root: Path, rel: str) -> Optional[str]:
    path = _target(root, rel)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", newline="") as f:  # keep CRLF visible to the applier
        return f.read()


def patch_files(patch_dir=None, toolkit: str = "stylegan3") -> list:
    """The ``*.patch`` files of ``patch_dir`` (default: the project's ``patches/``) for ``toolkit``
    (:data:`TOOLKITS`), sorted by name."""
    if toolkit not in TOOLKITS:
        raise PatchError(f"unknown toolkit {toolkit!r}; use {' or '.join(TOOLKITS)}")
    patch_dir = Path(patch_dir) if patch_dir is not None else DEFAULT_PATCH_DIR
    if not patch_dir.is_dir():
        raise PatchError(f"patch folder {str(patch_dir)!r} not found; pass --patch-dir (the patches/ folder of a "
                         f"stylegan3-hubness clone)")
    files = [f for f in sorted(patch_dir.glob("*.patch")) if f.name.startswith("studiogan") == (toolkit == "studiogan")]
    if not files:
        raise PatchError(f"no {'studiogan*' if toolkit == 'studiogan' else '*'}.patch files in {str(patch_dir)!r}")
    return files


def _try(fps: list, contents: dict, *, reverse: bool) -> Optional[dict]:
    result = {}
    try:
        for fp in (reversed(fps) if reverse else fps):
            result[fp.path] = apply_to_text(result.get(fp.path, contents[fp.path]), fp, reverse=reverse)
    except PatchError:
        return None
    return result


def _why(fps: list, contents: dict) -> str:
    result = {}
    for fp in fps:
        try:
            result[fp.path] = apply_to_text(result.get(fp.path, contents[fp.path]), fp)
        except PatchError as exc:
            return str(exc)
    return "it is partly applied"


def examine(root, patches: list, contents: dict, *, reverse: bool = False) -> list:
    """Classify each patch file against ``contents`` (path -> text, filled from ``root`` as needed).

    Pending patches are applied to ``contents`` as they are met (``reverse``: applied ones are
    undone instead, patches taken in the order given), so later patches are judged on the result.
    """
    root = Path(root)
    states = []
    for patch_file in patches:
        fps = parse_patch(Path(patch_file).read_text(encoding="utf-8"), Path(patch_file).name)
        for fp in fps:
            if fp.path not in contents:
                contents[fp.path] = _read(root, fp.path)
        forward = _try(fps, contents, reverse=False)
        backward = _try(fps, contents, reverse=True)
        changes = [(fp.path, *fp.counts()) for fp in fps]
        if forward is not None and backward is None:
            states.append(PatchState(Path(patch_file).name, "pending", changes))
            if not reverse:
                contents.update(forward)
        elif backward is not None:
            states.append(PatchState(Path(patch_file).name, "applied", changes))
            if reverse:
                contents.update(backward)
        else:
            states.append(PatchState(Path(patch_file).name, "conflict", changes, _why(fps, contents)))
    return states


def run(command: str, root, patch_dir=None, toolkit: str = "stylegan3") -> list:
    """Check, apply or revert every patch of ``patch_dir`` for ``toolkit`` on the checkout ``root``.

    Returns
    -------
    list of str
        One line per patch file, saying where it stands or what was done.

    Raises
    ------
    PatchError
        For apply/revert on any conflict (nothing is written), or a failed write (files already written
        are restored).
    """
    if command not in ("check", "apply", "revert"):
        raise PatchError(f"unknown command {command!r}; use check, apply or revert")
    root = Path(root)
    if not root.is_dir():
        raise PatchError(f"checkout {str(root)!r} is not a directory; pass --{toolkit} DIR")
    patches = patch_files(patch_dir, toolkit)
    reverse = command == "revert"
    contents = {}
    states = examine(root, list(reversed(patches)) if reverse else patches, contents, reverse=reverse)
    if reverse:
        states.reverse()
    if states and all(st.state == "conflict" and st.detail.endswith("does not exist") for st in states):
        files = ", ".join(st.detail[:-len(" does not exist")] for st in states)
        hint = " (or set STYLEGAN3_DIR)" if toolkit == "stylegan3" else ""
        raise PatchError(f"{str(root)!r} is not a {toolkit} checkout: it has none of {files}; pass --{toolkit} DIR of "
                         f"a checkout{hint}")
    if command == "check":
        return [f"{s.name}: " + {"applied": "applied",
                                 "pending": f"not applied; apply changes {s.summary()}",
                                 "conflict": f"CONFLICT: {s.detail}"}[s.state] for s in states]
    conflicts = [s for s in states if s.state == "conflict"]
    if conflicts:
        raise PatchError("; ".join(f"{s.name} does not fit {str(root)!r}: {s.detail}" for s in conflicts) +
                         "; nothing was changed")
    original = {rel: _read(root, rel) for rel in contents}
    _write_all(root, {rel: text for rel, text in contents.items() if text != original[rel]}, original)
    todo = "applied" if reverse else "pending"
    return [f"{s.name}: " + (f"{'reverted' if reverse else 'applied'}: {s.summary(reverse)}" if s.state == todo
                             else ("not applied, left alone" if reverse else "already applied, left alone"))
            for s in states]


def _write_all(root: Path, new: dict, original: dict) -> None:
    done = []
    for rel, text in new.items():
        try:
            _write(_target(root, rel), text)
        except OSError as exc:
            for prev in done:
                _write(_target(root, prev), original[prev])
            raise PatchError(f"writing {rel!r} failed ({exc}); the files already written were restored") from exc
        done.append(rel)


def _write(path: Path, text: Optional[str]) -> None:
    if text is None:
        if path.exists():
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.patching")
    mode = path.stat().st_mode if path.exists() else None
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extensions.patches", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("check", "apply", "revert"))
    parser.add_argument("--stylegan3", metavar="DIR", default=None,
                        help="the stylegan3 checkout [default: $STYLEGAN3_DIR, else the current folder]")
    parser.add_argument("--studiogan", metavar="DIR", default=None,
                        help="a PyTorch-StudioGAN checkout, for the studiogan*.patch files")
    parser.add_argument("--patch-dir", metavar="DIR", default=None,
                        help=f"folder of *.patch files [default: {DEFAULT_PATCH_DIR}]")
    args = parser.parse_args(argv)
    targets = [("studiogan", args.studiogan)] if args.studiogan else []
    if args.stylegan3 or not args.studiogan:
        targets.insert(0, ("stylegan3", args.stylegan3 or os.environ.get("STYLEGAN3_DIR") or "."))
    try:
        if args.command != "check" and len(targets) > 1:  # all or nothing over both checkouts
            conflicts = [line for toolkit, root in targets for line in run("check", root, args.patch_dir, toolkit)
                         if "CONFLICT" in line]
            if conflicts:
                raise PatchError("; ".join(conflicts) + "; nothing was changed")
        lines = [line for toolkit, root in targets for line in run(args.command, root, args.patch_dir, toolkit)]
    except PatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 1 if args.command == "check" and any("CONFLICT" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
