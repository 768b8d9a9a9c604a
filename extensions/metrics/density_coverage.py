"""Density and coverage (Naeem et al., ICML 2020).

density  = (1 / (k M)) sum_j sum_i 1[fake_j in B(real_i, r_i)]   (expected 1 when fake ~ real)
coverage = (1 / N) sum_i 1[some fake_j in B(real_i, r_i)]
with r_i the distance of real_i to its k-th nearest real neighbour, N real and M generated features.
The paper recommends k = 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..knn import DEFAULT_MEMORY_BUDGET_MB
from ._checks import check_nhood
from .manifold import ball_counts, knn_radii, prepare_pair


@dataclass
class DensityCoverage:
    """Density (>= 0, unbounded) and coverage (in [0, 1])."""

    density: float
    coverage: float


def density_coverage(real, fake, k: int = 5, *, closed: bool = True,
                     memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None,
                     block_rows: Optional[int] = None) -> DensityCoverage:
    """Density and coverage of generated features with respect to real features.

    Parameters
    ----------
    real : array-like, shape (n_real, d)
    fake : array-like, shape (n_fake, d)
    k : int
        Neighbourhood size of the real k-NN radii (paper: 5).
    closed : bool
        Boundary points count as inside (True, like precision/recall here) or not (False, ``prdc``).
    memory_budget_mb : float
        Bound on one distance block; no (n_real, n_fake) matrix is ever held.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    block_rows : int, optional
        Probe rows per distance block; overrides the budget.

    Returns
    -------
    DensityCoverage
    """
    real, fake = prepare_pair(real, fake, device)
    k = check_nhood(k, real.shape[0], "real features")
    kw = dict(memory_budget_mb=memory_budget_mb, device=real.device)
    radii = knn_radii(real, k, **kw)
    hits = ball_counts(fake, real, radii, closed=closed, block_rows=block_rows, **kw)
    density = float(hits.counts.double().mean()) / k
    return DensityCoverage(density, float((hits.centre_counts > 0).double().mean()))
