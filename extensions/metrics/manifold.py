"""k-NN manifold estimates of a feature set: radii of its k-NN balls and how probes fall into them.

The shared core of improved precision/recall (Kynkaanniemi et al. 2019) and density/coverage
(Naeem et al. 2020). Distances are squared Euclidean throughout (comparing squares avoids a square root
and changes no comparison). Radii come from the engine's exact k-NN, membership from its blocked
distances, so memory is bounded by a budget whatever the number of features: no n x m matrix is held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from .._checks import resolve_device
from ..knn import DEFAULT_MEMORY_BUDGET_MB, pair_sqdist, strict_matmul, exact_knn, sqdist_blocks
from .errors import MetricError
from ._checks import as_features, check_nhood, check_same_dim

log = logging.getLogger(__name__)


def knn_radii(features, k: int, *, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None,
              precision: str = "fp32") -> torch.Tensor:
    """Squared distance of every feature to its k-th nearest other feature.

    Parameters
    ----------
    features : array-like, shape (n, d)
    k : int
        ``1 <= k < n``. A point is not its own neighbour, so this equals the (k+1)-th smallest distance
        of a row that includes the zero self-distance (stylegan3's ``kthvalue(k + 1)``, prdc's radii).
    memory_budget_mb : float
        Bound on one distance block.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    precision : {'fp32', 'bf16', 'auto'}
        Screen precision of the exact k-NN; the radii do not depend on it.

    Returns
    -------
    torch.Tensor, shape (n,), float32, on ``device``
    """
    device = resolve_device(device)
    x = as_features(features, "features", device)
    k = check_nhood(k, x.shape[0], "features")
    res = exact_knn(x, k, precision=precision, memory_budget_mb=memory_budget_mb, device=device)
    return res.distances[:, k - 1]


@dataclass
class BallCounts:
    """How probes fall into the k-NN balls of a set of centres.

    Attributes
    ----------
    counts : torch.Tensor, shape (n_probes,), int64
        Number of balls containing each probe.
    centre_counts : torch.Tensor, shape (n_centres,), int64
        Number of probes inside each centre's ball.
    rechecked : int
        Pairs whose screened distance was too close to the radius to decide, recomputed exactly.
    """

    counts: torch.Tensor
    centre_counts: torch.Tensor
    rechecked: int = 0


def ball_counts(probes, centres, radii, *, closed: bool = True,
                memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None,
                block_rows: Optional[int] = None) -> BallCounts:
    """Count, for every probe, the balls B(centre_i, radius_i) that contain it, block by block.

    Membership is decided on the float32 squared distances computed from differences, the values
    :func:`knn_radii` returns, so radii and distances agree and the result does not depend on the
    blocking. The blocked GEMM distances of :func:`extensions.knn.sqdist_blocks` only screen: a pair
    is settled by them when a rigorous rounding-error bound keeps it clear of the radius, and
    recomputed from differences otherwise.

    Parameters
    ----------
    probes : array-like, shape (m, d)
    centres : array-like, shape (n, d)
    radii : array-like, shape (n,)
        Squared radii, e.g. from :func:`knn_radii`.
    closed : bool
        True: a probe on the boundary is inside (``<=``, Kynkaanniemi's reference code and stylegan3).
        False: open balls (``<``, the ``prdc`` package).
    memory_budget_mb : float
        Bound on the working set of one block of probe rows (distances, bounds and masks together).
    block_rows : int, optional
        Probe rows per block; overrides the budget.

    Returns
    -------
    BallCounts
    """
    device = resolve_device(device)
    p = as_features(probes, "probes", device)
    c = as_features(centres, "centres", device)
    check_same_dim(p, c, "probes", "centres")
    r = torch.as_tensor(radii).to(device=device, dtype=torch.float32).reshape(-1)
    if r.shape[0] != c.shape[0]:
        raise MetricError(f"radii must have one entry per centre ({c.shape[0]}), got {r.shape[0]}")
    if not (memory_budget_mb > 0):
        raise MetricError(f"memory_budget_mb must be positive, got {memory_budget_mb!r}")

    # Centre both sets here so the error bound can use the norms the GEMM actually sees.
    mean = c.double().mean(0)
    pc, cc = (p.double() - mean).float(), (c.double() - mean).float()
    drift = float(cc.double().mean(0).norm())  # sqdist_blocks re-centres on this (round-off sized) mean
    p_norm = pc.norm(dim=1) * (1 + 1e-6) + drift
    c_norm = cc.norm(dim=1) * (1 + 1e-6) + drift
    dim = p.shape[1]
    u = 2.0 ** -24  # the GEMMs run in strict float32 (see extensions.knn.strict_matmul)
    gamma = dim * u / (1 - dim * u) if dim * u < 0.5 else float("inf")  # inf: every pair is rechecked
    # GEMM expansion and centring round-off, relative to (|p| + |c|)^2; then the reference's own error.
    coef = 2 * gamma + 16 * u
    gamma_ref = (dim.bit_length() + 3) * u

    counts = torch.empty(p.shape[0], dtype=torch.int64, device=device)
    centre_counts = torch.zeros(c.shape[0], dtype=torch.int64, device=device)
    rechecked = 0
    with strict_matmul(device):  # the bound below assumes float32 accumulation
        for start, stop, block in sqdist_blocks(pc, cc, memory_budget_mb=memory_budget_mb / 4, device=device,
                                                block_rows=block_rows):
            # In-place steps keep the working set near three float blocks (hence a quarter of the budget each).
            eps = (p_norm[start:stop, None] + c_norm[None, :]).square_().mul_(coef)
            eps.mul_(1 + gamma_ref).add_(block, alpha=gamma_ref).add_(1e-30)
            upper = block + eps
            surely_in = (upper <= r) if closed else (upper < r)
            del upper
            unsure = block.sub_(eps) <= r
            unsure &= ~surely_in
            del eps
            rows, cols = unsure.nonzero(as_tuple=True)
            if rows.numel():
                exact = pair_sqdist(p, c, rows + start, cols)
                surely_in[rows, cols] = (exact <= r[cols]) if closed else (exact < r[cols])
                rechecked += int(rows.numel())
            counts[start:stop] = surely_in.sum(1)
            centre_counts += surely_in.sum(0)
    if rechecked:
        log.debug("ball membership: %d of %d pairs rechecked from differences", rechecked, p.shape[0] * c.shape[0])
    return BallCounts(counts, centre_counts, rechecked)


def prepare_pair(real, fake, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (real, generated) feature pair: float32 tensors on ``device`` with equal widths."""
    device = resolve_device(device)
    real = as_features(real, "real features", device)
    fake = as_features(fake, "generated features", device)
    check_same_dim(real, fake, "real features", "generated features")
    return real, fake
