"""``python -m extensions.hub_values``: hub values of any embedding set in a .npy or .npz file.

Reads an (n, d) array (W latents, CLIP features, ...), computes each row's hub value m (how many k-NN
lists of the other rows hold it) and writes m, shape (n,) int64, as .npy; ``--neighbors`` also writes
the (n, k) int64 neighbour lists. Under ``torchrun`` every process reads the file, searches its share of
the rows (:mod:`extensions.distributed`) and rank 0 writes the results, each to a temporary name, the
names renamed into place together once both files are complete: a failed run (a full disk) changes
neither file, a killed one leaves complete files only, and the next run removes the temporaries it left.
The input, ``--output`` and ``--neighbors`` must be three different files.

The search runs in float32, as every search of the engine does: float16, float32 and integers up to 2**24
in magnitude are searched exactly; float64 and extended precision (``np.longdouble``) are rounded once to
float32, and so are larger integers (a note on stderr says so). Other byte orders and unsigned types are
converted without loss first.

The module is named ``hub_values_cli`` rather than ``hub_values`` so that importing it leaves the
package's :func:`extensions.hub_values` function alone; ``extensions/hub_values.py`` only runs it.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from typing import Optional

import click
import numpy as np

from ._checks import HubnessError, engine_array

#: Rows checked for NaN/inf at a time (bounds the temporary mask).
_CHECK_ROWS = 1 << 16



def read_embeddings(path: str, key: Optional[str] = None, notes: Optional[list] = None) -> np.ndarray:
    """The (n, d) array of a .npy file, or of a .npz file's only array (or its array ``key``), in a dtype the
    engine takes (see :func:`engine_array`); what the conversion to float32 rounds is appended to ``notes``.

    Raises
    ------
    HubnessError
        One line quoting the file: missing or unreadable, not an array file (or an .npz member that is not a
        .npy array), an .npz holding several arrays and no ``key`` (or no array ``key``), not 2-D, not real
        numbers, holding NaN/inf (the first bad row is named), or extended-precision values beyond float32's
        range.
    """
    if not os.path.exists(path):
        raise HubnessError(f"{path!r} does not exist; give the .npy or .npz file of the embeddings")
    if os.path.isdir(path):
        raise HubnessError(f"{path!r} is a folder; give the .npy or .npz file of the embeddings")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
            raise HubnessError(f"{path!r} is not a .npy or .npz file; save the embeddings with numpy.save or "
                               f"numpy.savez")
        loaded = np.load(path, allow_pickle=False)
    except HubnessError:
        raise
    except PermissionError:
        raise HubnessError(f"cannot read {path!r}: permission denied") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HubnessError(f"cannot read {path!r} as a .npy or .npz array ({reason}); save the embeddings with "
                           f"numpy.save or numpy.savez") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if key is None:
                if len(names) != 1:
                    listed = ", ".join(names) if names else "no arrays"
                    raise HubnessError(f"{path!r} holds {len(names)} arrays ({listed}); choose one with --key NAME")
                key = names[0]
            elif key not in names:
                raise HubnessError(f"{path!r} has no array {key!r}; it holds {', '.join(names) or 'no arrays'}")
            try:
                array = loaded[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise HubnessError(f"cannot read array {key!r} of {path!r} ({reason})") from None
        where = f"array {key!r} of {path!r}"
        if not isinstance(array, np.ndarray):  # numpy hands a member that is not a .npy over as bytes
            raise HubnessError(f"{path!r} holds {key!r}, which is not a .npy array; save the embeddings with "
                               f"numpy.savez")
    else:
        if key is not None:
            raise HubnessError(f"--key {key!r} applies to .npz files, but {path!r} holds a single array; leave "
                               f"--key out")
        array, where = loaded, repr(path)
    if array.ndim != 2:
        raise HubnessError(f"{where} has shape {array.shape}; hub values need one row per point, shape (n, d)")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise HubnessError(f"{where} holds {array.dtype} values; hub values need real numbers")
    if array.shape[1] < 1:
        raise HubnessError(f"{where} has shape {array.shape}: rows without coordinates")
    if np.issubdtype(array.dtype, np.floating):
        bad_rows = 0
        first = None
        for start in range(0, array.shape[0], _CHECK_ROWS):
            bad = ~np.isfinite(array[start:start + _CHECK_ROWS]).all(axis=1)
            if bad.any():
                first = start + int(np.argmax(bad)) if first is None else first
                bad_rows += int(bad.sum())
        if first is not None:
            raise HubnessError(f"row {first} of {where} holds NaN or inf ({bad_rows} row(s) in all); drop or fix "
                               f"those rows first")
    return engine_array(array, where, notes)


def check_k_rows(k: int, n: int, include_self: bool, where: str) -> None:
    """``k`` must leave at least one other row per list: k < n."""
    if k >= n:
        raise HubnessError(f"--k {k} needs more than {k} rows, but {where} holds {n}; lower --k to at most "
                           f"{max(1, n - 1)}" + ("" if n >= 2 else " and give at least 2 rows"))


def write_npys(arrays: dict) -> None:
    """Write each array of ``{path: array}`` as .npy: to temporary files next to them, renamed into place
    together once all are complete, so that after an error (a full disk) none of the paths has changed."""
    from .render import atomic_files
    with atomic_files(list(arrays)) as temps:
        for path, array in arrays.items():
            tmp = temps[Path(path)]
            try:
                with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
                    np.save(f, array, allow_pickle=False)
            except OSError as exc:
                if exc.filename is None:  # name the file, so that atomic_files reports the user's path
                    raise OSError(exc.errno, exc.strerror, str(tmp)) from exc
                raise


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: equal once symbolic links are resolved (the last component need
    not exist; its folder is resolved), or one existing file (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.argument("input_path", metavar="INPUT.npy|INPUT.npz", type=str)
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="k-NN list size")
@click.option("--include-self", is_flag=True, default=False,
              help="Count each row as its own first neighbour (the authors' reference code; scikit-learn's "
                   "kneighbors_graph)")
@click.option("--backend", type=click.Choice(["exact", "approx", "auto"]), default="exact", show_default=True,
              help="k-NN search: exact; approx (pynndescent, recall measured; runs on rank 0 under torchrun); auto")
@click.option("--output", required=True, metavar="M.npy", help="Where the hub values go: int64, shape (n,)")
@click.option("--neighbors", "neighbors_path", default=None, metavar="NN.npy",
              help="Also write the neighbour lists: int64, shape (n, k), nearest first (ties: lower index)")
@click.option("--key", default=None, metavar="NAME", help="The array of an .npz file that holds several")
@click.option("--device", default=None, help="torch device [default: cuda if available, else cpu; under torchrun "
                                              "cuda:LOCAL_RANK]")
@click.option("--quiet", is_flag=True, default=False, help="No progress on stderr")
def main(input_path, k, include_self, backend, output, neighbors_path, key, device, quiet):
    """Hub values of the rows of INPUT (an (n, d) array in .npy, or in .npz with --key), searched in float32.

    \b
    python -m extensions.hub_values clip.npy --k 5 --output m.npy --neighbors nn.npy
    torchrun --nproc_per_node 4 -m extensions.hub_values w.npz --key w --k 5 --output m.npy
    """
    from .stylegan.cli import one_line_errors

    leader = os.environ.get("RANK", "0").strip() in ("", "0")  # under torchrun, rank 0 alone reports input errors
    with one_line_errors("--output"):
        try:
            for option, path in (("--output", output), ("--neighbors", neighbors_path)):
                if path is not None and same_file(path, input_path):
                    raise HubnessError(f"{option} {path!r} is the input file {input_path!r}; choose another "
                                       f"{option} (the input would be overwritten)")
            if neighbors_path is not None and same_file(neighbors_path, output):
                raise HubnessError("--neighbors and --output name the same file; give two paths")
            for option, path in (("--output", output), ("--neighbors", neighbors_path)):
                if path is None:
                    continue
                if os.path.isdir(path):
                    raise HubnessError(f"{option} {path!r} is a folder; give a file name such as m.npy")
                folder = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(folder):
                    raise HubnessError(f"{option} {path!r}: the folder {folder!r} does not exist; create it or "
                                       f"choose another {option}")
                if not os.access(folder, os.W_OK):
                    raise HubnessError(f"{option} {path!r}: the folder {folder!r} is not writable; choose another "
                                       f"{option}")
            notes = []
            array = read_embeddings(input_path, key, notes)
            where = repr(input_path) if key is None else f"array {key!r} of {input_path!r}"
            check_k_rows(k, array.shape[0], include_self, where)
        except HubnessError:
            if not leader:  # every rank read the same file and found the same fault: rank 0 says it once
                sys.exit(1)
            raise
        if leader:
            from .render import remove_stale_temps
            for path in (output, neighbors_path):  # what runs killed while writing left there
                if path is not None:
                    remove_stale_temps(os.path.dirname(os.path.abspath(path)))
            for note in notes:
                click.echo(f"Note: {note}", err=True)
        _compute_and_write(array, k, include_self, backend, output, neighbors_path, device, quiet)


def _compute_and_write(array, k, include_self, backend, output, neighbors_path, device, quiet) -> None:
    from .distributed import process_group_from_env
    from .hubness import compute_hubness, hubness_stats
    from .report import Progress

    with process_group_from_env(device) as proc:
        bars = Progress(proc.leader and not quiet)
        who = f", {proc.world_size} processes" if proc.world_size > 1 else ""
        with bars.step(f"k-NN of {array.shape[0]:,} rows (k = {k}{who})"):
            res = compute_hubness(array, k, include_self=include_self, backend=backend, device=proc.device,
                                  neighbors=neighbors_path is not None)
        if not proc.leader:
            return
        arrays = {output: res.m} if neighbors_path is None else {output: res.m, neighbors_path: res.neighbors}
        try:
            write_npys(arrays)
        except OSError as exc:
            if neighbors_path is not None and exc.filename is not None and Path(exc.filename) == Path(neighbors_path):
                from .stylegan.cli import os_error_message
                raise HubnessError(os_error_message(exc, "--neighbors")) from exc
            raise
    stats = hubness_stats(res.m, k)
    recall = "" if res.recall is None else f", recall {res.recall:.3f}"
    click.echo(f"wrote {output}: hub values of {len(res.m):,} rows (k = {k}{', self included' if include_self else ''}"
               f", {res.backend}{recall}{who}); largest m {stats.max}, skewness {stats.skewness:.2f}"
               + (f"; neighbours in {neighbors_path}" if neighbors_path is not None else ""))
