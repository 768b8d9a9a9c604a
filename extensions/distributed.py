"""Hub values shared between processes, and the process groups of multi-process runs.

When ``torch.distributed`` is initialised (``torchrun``, or :func:`spawn` behind ``--gpus N``), every rank
holds the same pool (each builds it from the same seeds; nothing large is broadcast) and computes the
exact k-NN rows of a contiguous share of it against the whole pool; the k-occurrence counts are summed
with one all-reduce and, when asked, the neighbour lists are gathered. Each row's neighbours are those of
the single-process search (float32 distances from differences, ties to the lower index, whatever the
batch), so the hub values equal the single-process ones bit for bit.

An approximate search (``backend='approx'``) builds one graph over the whole pool, which does not split
by rows: rank 0 runs it and the counts reach the other ranks through the same reduction.

:func:`shared_neighbors` is what :func:`extensions.hubness.compute_hubness` calls; :func:`spawn` starts
``N`` processes stylegan3-style (``calc_metrics.py --gpus N``) and :func:`process_group_from_env` joins
the group of a ``torchrun`` launch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from ._checks import HubnessError, resolve_device
from .knn import knn

log = logging.getLogger(__name__)

#: Backends whose rows split between ranks ('auto' is the exact search, :func:`extensions.knn.knn`); the
#: others run on rank 0 (see the module docstring).
SPLIT_BACKENDS = ("exact", "auto")
_BACKEND_CODES = {"exact": 0, "approx": 1, "auto": 2}


def is_active() -> bool:
    """Whether a process group of more than one process is initialised in this process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def use_processes(distributed: Optional[bool]) -> bool:
    """Whether a computation shares its work between the processes of the group.

    Parameters
    ----------
    distributed : bool or None
        None: when :func:`is_active`. True: required (a one-process or missing group is an error). False: never.
    """
    if distributed is None:
        return is_active()
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise HubnessError("distributed=True needs an initialised torch.distributed process group (torchrun, or "
                           "torch.distributed.init_process_group); pass distributed=None to decide by the group")
    return bool(distributed) and dist.get_world_size() > 1


def row_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of rank ``rank``: contiguous shares whose sizes differ by at most one."""
    return rank * n // world_size, (rank + 1) * n // world_size


def backend_for(device) -> str:
    """torch.distributed backend for tensors on ``device``: nccl on CUDA, gloo otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def rank_device(rank: int, device=None) -> torch.device:
    """Device of rank ``rank`` in a multi-process run: ``cuda:rank`` when ``device`` is None or 'cuda' and
    CUDA is available, else the CPU (``device='cpu'``: the CPU for every rank).

    Raises
    ------
    HubnessError
        For a device naming one GPU (``cuda:1``): ranks take one GPU each, so name none.
    """
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is not None:
            raise HubnessError(f"device {str(device)!r} names one GPU, but each process takes its own (rank r runs "
                               f"on cuda:r); pass --device cuda or leave it out")
        if device.type != "cuda":
            return resolve_device(device)
    if not torch.cuda.is_available():
        if device is not None:
            resolve_device(device)  # 'cuda' without CUDA: the usual error
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if rank >= count:
        raise HubnessError(f"rank {rank} needs cuda:{rank}, but this machine has {count} CUDA device(s); use at "
                           f"most --gpus {count}")
    return torch.device("cuda", rank)


def _comm_device(device: torch.device) -> torch.device:
    """Where tensors of a collective live: CUDA under nccl (the current device unless ``device`` is one)."""
    if dist.get_backend() == "nccl":
        return device if device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def fingerprint(x: torch.Tensor) -> tuple[int, int]:
    """Two int64 checksums of a float32 array's bits (sum, and sum weighted by position), order-independent
    to compute, so every rank and device gets the same value for the same data."""
    flat = x.detach().contiguous().view(-1).view(torch.int32)
    total = weighted = 0
    step = 1 << 22
    for start in range(0, flat.numel(), step):
        chunk = flat[start:start + step].to(torch.int64)
        pos = torch.arange(start + 1, start + 1 + chunk.numel(), dtype=torch.int64, device=chunk.device)
        total += int(chunk.sum())
        weighted += int((chunk * pos).sum())  # wraps modulo 2**64 alike everywhere
    wrap = lambda v: (v + 2 ** 63) % 2 ** 64 - 2 ** 63  # noqa: E731 - Python ints into int64
    return wrap(total), wrap(weighted)


def check_same_pool(x: torch.Tensor, k: int, include_self: bool, backend: str, comm: torch.device) -> None:
    """Raise :class:`HubnessError` on every rank unless all ranks hold the same pool and options.

    A rank that held another pool would make the reduction sum counts of different pools, silently.
    """
    mine = torch.tensor([x.shape[0], x.shape[1], k, int(include_self), _BACKEND_CODES.get(backend, 9),
                         *fingerprint(x)], dtype=torch.int64, device=comm)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    for rank, theirs in enumerate(every):
        if not torch.equal(theirs, every[0]):
            fields = ("n", "d", "k", "include_self", "backend")
            diff = [f"{f} {int(a)} vs {int(b)}" for f, a, b in zip(fields, every[0].tolist(), theirs.tolist()) if a != b]
            raise HubnessError(f"the processes hold different pools or options (rank {rank} differs from rank 0"
                               f"{': ' + ', '.join(diff) if diff else ' in the latents'}); every rank must compute "
                               f"hub values of the same latents with the same k and options, or pass "
                               f"distributed=False for a computation of its own")


def _agree_no_failure(failed: bool, comm: torch.device) -> None:
    """Every rank learns whether some rank failed, so none waits forever for a failed one."""
    flag = torch.tensor([1 if failed else 0], dtype=torch.int64, device=comm)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if int(flag) and not failed:
        raise HubnessError("another process failed while computing hub values; see its error")


def _gather_rows(rows: torch.Tensor, ranges: list, comm: torch.device) -> torch.Tensor:
    """All ranks' rows, in rank order: each rank's (hi - lo, k) block, padded to the longest for all_gather."""
    longest = max(hi - lo for lo, hi in ranges)
    padded = torch.zeros(longest, rows.shape[1], dtype=rows.dtype, device=comm)
    padded[:len(rows)] = rows.to(comm)
    parts = [torch.empty_like(padded) for _ in ranges]
    dist.all_gather(parts, padded)
    return torch.cat([p[:hi - lo] for p, (lo, hi) in zip(parts, ranges)]).cpu()


@dataclass
class SharedNeighbors:
    """Result of :func:`shared_neighbors` (identical on every rank).

    Attributes
    ----------
    counts : np.ndarray, shape (n,), int64
        How many neighbour lists hold each latent (the hub values), over all ranks.
    neighbors : np.ndarray, shape (n, k), int64, or None
        Every row's neighbours, gathered from the ranks (None unless asked for).
    backend : str
        What ran ('exact', or 'approx' when rank 0's approximate graph was kept).
    recall : float or None
        Measured recall of rank 0's approximate search.
    info : dict
        This rank's search diagnostics, plus ``rank``, ``world_size``, ``rows`` (its share) and the
        ``fallback_rows`` / ``full_rows`` summed over the ranks.
    """

    counts: np.ndarray
    neighbors: Optional[np.ndarray]
    backend: str
    recall: Optional[float]
    info: dict


def shared_neighbors(x: torch.Tensor, k: int, *, include_self: bool = False, backend: str = "exact",
                     neighbors: bool = True, device=None, **knn_kwargs) -> SharedNeighbors:
    """k-NN lists of a pool split over the ranks of the process group; counts summed on every rank.

    Parameters
    ----------
    x : torch.Tensor, shape (n, d), float32
        The pool, the same on every rank (checked).
    k : int
        Neighbours per list, ``1 <= k < n``; under ``include_self`` each list is the latent itself then
        ``k - 1`` others.
    backend : {'exact', 'approx', 'auto'}
        'exact' and 'auto' split the rows between the ranks; 'approx' runs on rank 0 alone.
    neighbors : bool
        Also gather every row's neighbours (an all_gather of n x k indices).
    device : torch.device, optional
        Where this rank searches.
    **knn_kwargs
        Passed to the k-NN backend.

    Returns
    -------
    SharedNeighbors
    """
    device = resolve_device(device)
    rank, world = dist.get_rank(), dist.get_world_size()
    n = x.shape[0]
    others = k - 1 if include_self else k
    comm = _comm_device(device)
    check_same_pool(x, k, include_self, backend, comm)
    split = backend in SPLIT_BACKENDS
    ranges = [row_range(n, r, world) for r in range(world)] if split else [(0, n)] + [(n, n)] * (world - 1)
    lo, hi = ranges[rank]
    result = None
    failed = False
    try:
        if others == 0 or hi == lo:
            rows = torch.empty(hi - lo, others, dtype=torch.int64)
        elif split:
            result = knn(x, others, backend=backend, queries=x[lo:hi],
                         query_indices=torch.arange(lo, hi, device=x.device), device=device, **knn_kwargs)
            rows = result.indices.cpu()
        else:
            result = knn(x, others, backend=backend, device=device, **knn_kwargs)
            rows = result.indices.cpu()
        if include_self:
            rows = torch.cat([torch.arange(lo, hi)[:, None], rows], 1)
    except BaseException:
        failed = True
        raise
    finally:
        _agree_no_failure(failed, comm)
    counts = torch.bincount(rows.reshape(-1), minlength=n).to(torch.int64).to(comm)
    info = dict(result.info) if result is not None else {}
    # what rank 0's search was (exact or approximate, its recall) and the rows re-screened on every rank
    summary = torch.tensor([0.0, float("nan"), float(info.get("fallback_rows", 0)), float(info.get("full_rows", 0))],
                           dtype=torch.float64, device=comm)
    if rank == 0 and result is not None:
        summary[0] = float(result.backend == "approx")
        summary[1] = float("nan") if result.recall is None else float(result.recall)
    if rank != 0:
        summary[:2] = 0.0
    dist.all_reduce(counts)
    dist.all_reduce(summary)
    gathered = _gather_rows(rows, ranges, comm).numpy() if neighbors else None
    summary = summary.cpu().tolist()
    info.update(rank=rank, world_size=world, rows=(lo, hi), fallback_rows=int(summary[2]), full_rows=int(summary[3]))
    log.debug("rank %d of %d: k-NN rows %d-%d of %d", rank, world, lo, hi, n)
    return SharedNeighbors(counts.cpu().numpy(), gathered, "approx" if summary[0] else "exact",
                           None if np.isnan(summary[1]) else summary[1], info)


# ----------------------------------------------------------------------------------------- process groups

@dataclass
class ProcessInfo:
    """This process in a run: its rank, the number of processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def leader(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def process_group_from_env(device=None):
    """Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set), join its process group for the block.

    Rank r computes on ``cuda:LOCAL_RANK`` when CUDA is available (``device`` None or 'cuda'), else on the
    CPU, with nccl or gloo to match. Without those variables, or with a group already initialised, the
    block runs as it is. Yields a :class:`ProcessInfo`.
    """
    env = os.environ
    if dist.is_initialized():
        yield ProcessInfo(dist.get_rank(), dist.get_world_size(), resolve_device(device))
        return
    if "RANK" not in env or "WORLD_SIZE" not in env:
        yield ProcessInfo(0, 1, resolve_device(device))
        return
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise HubnessError(f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r} are not integers; launch with "
                           f"torchrun, or unset them for a single process") from None
    own = rank_device(local, device)
    if own.type == "cuda":
        torch.cuda.set_device(own)
    dist.init_process_group(backend_for(own), init_method="env://", rank=rank, world_size=world)
    try:
        yield ProcessInfo(rank, world, own)
    finally:
        dist.destroy_process_group()


def init_file_method(folder: str) -> str:
    """A ``file://`` init method in ``folder``, as stylegan3's scripts build it (Windows too)."""
    path = os.path.abspath(os.path.join(folder, ".torch_distributed_init"))
    return "file:///" + path.replace("\\", "/") if os.name == "nt" else f"file://{path}"


def spawn(fn, args=(), nprocs: int = 1, *, init_group: bool = True, device=None) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` processes (``torch.multiprocessing.spawn``), stylegan3-style.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by name).
    init_group : bool
        Initialise the process group (``file://`` in a temporary folder, nccl on CUDA, gloo otherwise,
        device from :func:`rank_device`) before ``fn``; False leaves that to ``fn`` (stylegan3's
        ``calc_metrics.py`` initialises its own). Either way the group is destroyed when ``fn`` returns.
    device : optional
        Passed to :func:`rank_device` (``'cpu'``: every rank on the CPU, with gloo).

    Raises
    ------
    click.ClickException
        When a process ends with one (a one-line error): the lowest rank's message, not the worker's traceback.
    torch.multiprocessing.ProcessRaisedException
        Any other failure of a process (spawn then stops the others).
    """
    # torch logs a warning for each process it stops after another failed: the failure itself is reported
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    with tempfile.TemporaryDirectory(prefix="hubness-ranks-") as folder:
        try:
            spawn_log.setLevel(logging.ERROR)
            torch.multiprocessing.spawn(fn=_spawned, args=(fn, folder, tuple(args), nprocs, init_group, device),
                                        nprocs=nprocs)
        except (torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException):
            messages = sorted(name for name in os.listdir(folder) if name.startswith("error-"))
            if not messages:
                raise
            import click
            with open(os.path.join(folder, messages[0]), encoding="utf-8") as f:
                message = f.read()
            raise click.ClickException(message) from None
        finally:
            spawn_log.setLevel(level)


def _spawned(rank: int, fn, folder: str, args: tuple, nprocs: int, init_group: bool, device) -> None:
    import click
    try:
        if init_group:
            own = rank_device(rank, device)
            if own.type == "cuda":
                torch.cuda.set_device(own)
            dist.init_process_group(backend_for(own), init_method=init_file_method(folder), rank=rank,
                                    world_size=nprocs)
        try:
            fn(rank, *args)
        finally:
            # Also a group ``fn`` made itself: one left to the interpreter's exit can abort the process
            # (gloo, "terminate called without an active exception") once another rank has ended.
            if dist.is_initialized():
                dist.destroy_process_group()
    except click.ClickException as exc:
        _leave_message(folder, rank, exc.format_message())
        raise
    except HubnessError as exc:  # e.g. a rank's device does not exist
        _leave_message(folder, rank, " ".join(str(exc).split()))
        raise


def _leave_message(folder: str, rank: int, message: str) -> None:
    with open(os.path.join(folder, f"error-{rank:05d}.txt"), "w", encoding="utf-8") as f:
        f.write(message)
