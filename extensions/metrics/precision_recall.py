"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).

precision = fraction of generated features inside the k-NN balls of the real features;
recall    = fraction of real features inside the k-NN balls of the generated features.
stylegan3's ``pr50k3_full`` uses k = 3 on VGG16 features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..knn import DEFAULT_MEMORY_BUDGET_MB
from ._checks import check_nhood
from .manifold import ball_counts, knn_radii, prepare_pair


@dataclass
class PrecisionRecall:
    """Improved precision and recall, both in [0, 1]."""

    precision: float
    recall: float


def precision_recall(real, fake, k: int = 3, *, closed: bool = True,
                     memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, device=None,
                     block_rows: Optional[int] = None) -> PrecisionRecall:
    """Improved precision and recall of generated features against real features.

    Parameters
    ----------
    real : array-like, shape (n_real, d)
    fake : array-like, shape (n_fake, d)
    k : int
        Neighbourhood size of the k-NN radii (paper and stylegan3: 3).
    closed : bool
        Boundary points count as inside (True, the reference implementation) or not (False, ``prdc``).
    memory_budget_mb : float
        Bound on one distance block; no (n_real, n_fake) matrix is ever held.
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    block_rows : int, optional
        Probe rows per distance block; overrides the budget.

    Returns
    -------
    PrecisionRecall
    """
    real, fake = prepare_pair(real, fake, device)
    k = check_nhood(k, min(real.shape[0], fake.shape[0]), "features in each set")
    kw = dict(memory_budget_mb=memory_budget_mb, device=real.device)
    real_radii = knn_radii(real, k, **kw)
    fake_radii = knn_radii(fake, k, **kw)
    precision = ball_counts(fake, real, real_radii, closed=closed, block_rows=block_rows, **kw).counts > 0
    recall = ball_counts(real, fake, fake_radii, closed=closed, block_rows=block_rows, **kw).counts > 0
    return PrecisionRecall(float(precision.double().mean()), float(recall.double().mean()))
