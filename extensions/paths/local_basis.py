"""Local coordinates in a latent space: the local basis, iterative curve traversal and Grassmannian distances.

Following "Do Not Escape From the Manifold: Discovering the Local Coordinates on the Latent Space of GANs"
(Choi et al., 2021): at a latent ``w`` the *local basis* of a differentiable ``fn`` (for a GAN: the partial
generator from W to an intermediate feature map) is the ordered set of right singular vectors of its
Jacobian ``J`` (m x d), i.e. the eigenvectors of ``J^T J`` with eigenvalues ``sigma^2``. The leading ones
span the directions in which ``fn`` changes most; a few carry almost all of the change.

``J`` never exists whole: every computation applies ``J^T J`` to a block of directions, ``J Q`` by
forward-mode products (``torch.func.jvp``, vmapped over the directions) and ``J^T (J Q)`` by reverse-mode
ones (``torch.func.vjp``), in chunks whose ``m x chunk`` float32 outputs fit ``memory_budget_mb``.
The methods (:func:`local_basis`, ``method=``):

* ``gram``: ``J^T J`` applied to the d unit vectors gives the d x d Gram matrix, accumulated chunk by
  chunk in float64 and eigendecomposed in float64; d products. Exact up to the float32 rounding of the
  products, which the Gram matrix squares: a singular value sigma_i is off by at most about
  ``eps * sigma_1^2 / sigma_i`` (eps ~ 1e-7), so small ones are accurate only to ~ 3e-4 sigma_1.
* ``krylov``: block Lanczos with full reorthogonalisation (randomized block Krylov with Rayleigh-Ritz),
  for ``rank << d``. A seeded Gaussian block of ``rank + oversample`` directions is multiplied by
  ``J^T J`` repeatedly; each product is orthogonalised against all earlier blocks, and the Ritz pairs of
  ``J^T J`` on the span are refined until every requested pair has a residual ``|J^T J v - theta v|``
  below ``tol * theta_1``. It needs far fewer than d products when the leading singular values stand
  apart from the rest (Krylov spaces converge much faster than power iteration). Once the span reaches
  all d dimensions the Rayleigh-Ritz step is exact, so the method never costs more than about one
  ``gram`` and never returns an unconverged basis (with ``max_products`` it raises instead).
* ``auto`` (default): ``krylov`` when a rank is given, four blocks still hold fewer than d directions and
  the d directions do not fit one chunk (then ``gram`` is a single batched call, faster than the sequence
  of Krylov blocks); else ``gram``.

Eigenvector signs are fixed so that each basis vector's largest-magnitude coordinate is positive (the
singular vectors of an SVD are only defined up to sign), so results are deterministic.

Networks whose custom autograd functions do not support ``torch.func`` (StyleGAN's CUDA plugins) are
handled by ``engine="autograd"`` (one direction at a time through double backward); ``engine="auto"``
falls back to it when ``torch.func`` raises.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .._checks import HubnessError, NonFiniteError, real_values, resolve_device
from ..knn import rows_per_block
from .discriminator import _check_int, _check_number
from .discriminator import _endpoint as _latent

log = logging.getLogger(__name__)

__all__ = ["LocalBasis", "METHODS", "METRICS", "curve_traversal", "grassmann_distance", "linear_traversal",
           "local_basis", "principal_angles"]

METHODS = ("auto", "gram", "krylov")
ENGINES = ("auto", "func", "autograd")
METRICS = ("geodesic", "projection")
#: Most directions per batched call: wider batches gain little speed while the network's intermediate
#: activations (not counted by the memory budget, often several times the output) grow with them.
MAX_CHUNK = 64
#: Residual tolerance of ``krylov`` relative to the largest eigenvalue of J^T J; float32 products carry
#: errors of about 1e-7 of it, so tighter values cannot be met reliably.
DEFAULT_TOL = 1e-5


@dataclass
class LocalBasis:
    """The local basis of a function at a latent.

    Attributes
    ----------
    basis : torch.Tensor, shape (d, r), float32
        Orthonormal columns: the right singular vectors of the Jacobian, ordered by singular value.
    singular_values : torch.Tensor, shape (r,), float32
        The singular values, descending (>= 0).
    method : str
        ``gram`` or ``krylov``: the method that computed it.
    products : int
        Jacobian products ``J^T J q`` it took (the cost: one jvp and one vjp each).
    """

    basis: torch.Tensor
    singular_values: torch.Tensor
    method: str = ""
    products: int = 0


# ------------------------------------------------------------------------------------------- J^T J products

class _Gram:
    """``J^T J`` at ``w`` applied to blocks of directions, in chunks that fit the memory budget."""

    def __init__(self, fn: Callable, w: torch.Tensor, memory_budget_mb: float, engine: str):
        self.fn, self.w, self.engine = fn, w, engine
        with torch.no_grad():
            out = fn(w)
        if not isinstance(out, torch.Tensor):
            raise HubnessError(f"fn must return a tensor, got {type(out).__name__}")
        if not out.is_floating_point():
            raise HubnessError(f"fn must return floating-point values, got dtype {out.dtype}")
        bad = ~torch.isfinite(out)
        if bool(bad.any()):
            raise NonFiniteError(f"fn(w) holds {int(bad.sum())} non-finite value(s) of {out.numel()}; "
                                 "the local basis needs a finite output")
        self.out_shape = tuple(out.shape)
        self.m = max(1, out.numel())
        self.chunk = rows_per_block(self.m, 4, memory_budget_mb, max_rows=min(w.shape[0], MAX_CHUNK))
        self.products = 0
        self._vjp = None
        self._graph = None

    def __call__(self, Q: torch.Tensor) -> torch.Tensor:
        """``J^T J Q`` for Q of shape (d, b), float32 products returned as float64 (d, b)."""
        Q32 = Q.to(self.w.dtype)
        cols = []
        for start in range(0, Q.shape[1], self.chunk):
            block = Q32[:, start:start + self.chunk].T.contiguous()           # (c, d)
            cols.append(self._apply(block).detach().T.double())
        self.products += Q.shape[1]
        result = torch.cat(cols, dim=1)
        bad = ~torch.isfinite(result)
        if bool(bad.any()):
            raise NonFiniteError(f"the Jacobian of fn at w holds non-finite values ({int(bad.sum())} non-finite "
                                 f"entries of J^T J applied to {Q.shape[1]} direction(s)); check fn near w")
        return result

    def _apply(self, block: torch.Tensor) -> torch.Tensor:
        if self.engine == "auto" and _known_untraceable(self.fn):
            self.engine = "autograd"
        if self.engine in ("auto", "func"):
            try:
                return self._apply_func(block)
            except (RuntimeError, NotImplementedError) as exc:
                if self.engine == "func":
                    raise
                log.warning("torch.func cannot differentiate fn (%s); using double backward, one direction at "
                            "a time", str(exc).splitlines()[0][:200])
                _remember_untraceable(self.fn)
                self.engine = "autograd"
        return self._apply_autograd(block)

    def _apply_func(self, block: torch.Tensor) -> torch.Tensor:
        from torch.func import jvp, vjp, vmap
        fn, w = self.fn, self.w
        Y = vmap(lambda q: jvp(fn, (w,), (q,))[1])(block)                   # (c, *out): J q per direction
        if self._vjp is None:
            _, self._vjp = vjp(fn, w)
        return vmap(self._vjp)(Y)[0]                                          # (c, d): J^T J q

    def _apply_autograd(self, block: torch.Tensor) -> torch.Tensor:
        # J q = d/du <J^T u, q>: the gradient of the (linear in u) vector-Jacobian product, then J^T (J q).
        if self._graph is None:
            with torch.enable_grad():
                w = self.w.detach().requires_grad_(True)
                out = self.fn(w)
                u = torch.zeros_like(out, requires_grad=True)
                (g,) = torch.autograd.grad(out, w, u, create_graph=True)
            self._graph = (w, out, u, g)
        w, out, u, g = self._graph
        rows = []
        for q in block:
            (jq,) = torch.autograd.grad(g, u, q, retain_graph=True)
            (jtjq,) = torch.autograd.grad(out, w, jq, retain_graph=True)
            rows.append(jtjq)
        return torch.stack(rows)


#: Functions torch.func failed on, so that later bases of the same fn (a curve's) go to autograd at once.
_UNTRACEABLE = weakref.WeakSet()


def _known_untraceable(fn) -> bool:
    try:
        return fn in _UNTRACEABLE
    except TypeError:                                    # not weakly referenceable
        return False


def _remember_untraceable(fn) -> None:
    with contextlib.suppress(TypeError):
        _UNTRACEABLE.add(fn)


def _eigh_desc(H: torch.Tensor):
    """Eigenpairs of a symmetric float64 matrix, eigenvalues descending."""
    vals, vecs = torch.linalg.eigh(0.5 * (H + H.T))
    return vals.flip(0), vecs.flip(1)


def _fix_signs(V: torch.Tensor) -> torch.Tensor:
    """Each column multiplied by the sign of its largest-magnitude coordinate (first of ties)."""
    idx = V.abs().argmax(dim=0)
    signs = torch.sign(V[idx, torch.arange(V.shape[1], device=V.device)])
    signs[signs == 0] = 1
    return V * signs


def _gram_method(gram: _Gram, d: int, r: int):
    eye = torch.eye(d, dtype=torch.float64, device=gram.w.device)
    vals, vecs = _eigh_desc(gram(eye))
    return vals[:r], vecs[:, :r]


def _orthonormalise(block: torch.Tensor, K: Optional[torch.Tensor], gen: torch.Generator, d: int,
                    want: int) -> torch.Tensor:
    """Up to ``want`` orthonormal columns of ``block`` orthogonal to ``K``, topped up with random ones."""
    size = 0 if K is None else K.shape[1]
    want = min(want, d - size)
    if want <= 0:
        return block[:, :0]
    for _ in range(2):                                   # twice is enough (Kahan / Parlett)
        if K is not None:
            block = block - K @ (K.T @ block)
    q, r = torch.linalg.qr(block)
    scale = float(r.diagonal().abs().max()) if r.numel() else 0.0
    keep = r.diagonal().abs() > 1e-10 * max(scale, 1e-300)
    q = q[:, keep][:, :want]
    if q.shape[1] < want:                                # invariant subspace found: continue with fresh directions
        basis = q if K is None else torch.cat([K, q], dim=1)
        extra = torch.randn(d, want - q.shape[1], generator=gen, dtype=torch.float64).to(block.device)
        q = torch.cat([q, _orthonormalise(extra, basis, gen, d, want - q.shape[1])], dim=1)
    return q


def _krylov_method(gram: _Gram, d: int, r: int, oversample: int, tol: float, max_products: Optional[int],
                   seed: int):
    b = min(d, r + oversample)
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(d, b, generator=gen, dtype=torch.float64).to(gram.w.device)
    K = _orthonormalise(start, None, gen, d, b)
    Z = gram(K)                                           # Z = J^T J K, kept for exact Ritz residuals
    budget = d if max_products is None else max_products
    while True:
        vals, vecs = _eigh_desc(K.T @ Z)
        ritz, images = K @ vecs[:, :r], Z @ vecs[:, :r]
        residual = torch.linalg.vector_norm(images - ritz * vals[:r], dim=0)
        scale = max(float(vals[0]), 0.0)
        worst = float(residual.max()) / scale if scale > 0 else 0.0
        if worst <= tol or K.shape[1] >= d:
            log.debug("krylov: %d directions, %d J^T J products, worst relative residual %.2e",
                      K.shape[1], gram.products, worst)
            return vals[:r], ritz
        if gram.products + min(b, d - K.shape[1]) > budget:
            raise HubnessError(f"krylov did not converge within max_products={max_products} "
                               f"(worst relative residual {worst:.2e} > tol={tol:g}); raise max_products or "
                               f"use method='gram'")
        # the newest block times J^T J extends the Krylov space; Z's last b columns are exactly that
        new = _orthonormalise(Z[:, -b:].clone(), K, gen, d, b)
        K = torch.cat([K, new], dim=1)
        Z = torch.cat([Z, gram(new)], dim=1)


# ------------------------------------------------------------------------------------------------- the basis

def local_basis(fn: Callable[[torch.Tensor], torch.Tensor], w, rank: Optional[int] = None, *,
                memory_budget_mb: float = 256.0, method: str = "auto", device=None, engine: str = "auto",
                oversample: int = 8, tol: float = DEFAULT_TOL, max_products: Optional[int] = None,
                seed: int = 0) -> LocalBasis:
    """The local basis of ``fn`` at ``w``: the top right singular vectors of its Jacobian.

    Parameters
    ----------
    fn : callable
        Differentiable map from a latent of shape (d,) (float32, on ``device``) to a tensor of any shape
        (m values), e.g. a feature map. Must be deterministic (no fresh noise per call).
    w : torch.Tensor or numpy.ndarray, shape (d,) or (1, d)
        A finite latent.
    rank : int, optional
        Number r of directions, 1 <= r <= d; None: all d.
    memory_budget_mb : float
        Bound on the m x chunk float32 outputs of one chunk of Jacobian-vector products (the network's
        intermediate activations per direction come on top); chunks hold at most :data:`MAX_CHUNK`
        directions.
    method : str
        ``gram``, ``krylov`` or ``auto`` (see the module docstring).
    device : str or torch.device, optional
        Where ``w`` and the products live; None: CUDA when available, else CPU. ``fn`` must work there.
    engine : str
        ``func`` (torch.func jvp/vjp, vmapped), ``autograd`` (double backward, one direction at a time) or
        ``auto`` (``func``, falling back to ``autograd`` when torch.func cannot trace ``fn``).
    oversample : int
        ``krylov``: extra directions per block beyond ``rank`` (>= 0).
    tol : float
        ``krylov``: residual tolerance relative to the largest eigenvalue of J^T J (> 0).
    max_products : int, optional
        ``krylov``: at most this many J^T J products (default d, which always suffices).
    seed : int
        ``krylov``: seed of the starting block.

    Returns
    -------
    LocalBasis
        ``basis`` (d, r) and ``singular_values`` (r,), float32, on ``device``.

    Raises
    ------
    HubnessError
        For a bad rank, method, engine, budget or latent; NonFiniteError (a HubnessError) when ``fn(w)``
        or its Jacobian is not finite.
    """
    device = resolve_device(device)
    w = _latent(w, "w").to(device)
    d = w.shape[0]
    r = _check_rank(rank, d)
    if not isinstance(method, str) or method not in METHODS:
        raise HubnessError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise HubnessError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _check_positive(memory_budget_mb, "memory_budget_mb")
    _check_positive(tol, "tol")
    oversample = _check_int(oversample, "oversample", 0, "0: blocks of exactly rank directions")
    if max_products is not None:
        max_products = _check_int(max_products, "max_products", 1, "None: up to d, which always suffices")
    gram = _Gram(fn, w, memory_budget_mb, engine)
    if method == "auto":
        # One chunk of d directions is one batched call: then gram is as fast as any sequence of Krylov blocks.
        method = "krylov" if rank is not None and 4 * min(d, r + oversample) < d and gram.chunk < d else "gram"
    if method == "gram":
        vals, vecs = _gram_method(gram, d, r)
    else:
        vals, vecs = _krylov_method(gram, d, r, oversample, tol, max_products, seed)
    log.debug("local basis: d=%d, m=%d, rank %d by %s, %d products in chunks of %d", d, gram.m, r, method,
              gram.products, gram.chunk)
    basis = _fix_signs(vecs).to(torch.float32)
    singular = vals.clamp(min=0).sqrt().to(torch.float32)
    return LocalBasis(basis=basis, singular_values=singular, method=method, products=gram.products)


# ------------------------------------------------------------------------------------------------ traversals

def linear_traversal(w, direction, steps: int, step_size: float) -> torch.Tensor:
    """The straight path ``w + s * step_size * direction`` for ``s = -steps .. steps``.

    Parameters
    ----------
    w, direction : torch.Tensor or numpy.ndarray, shape (d,)
        Finite latent and direction (used as given, not normalised).
    steps : int
        >= 0 steps each way.
    step_size : float
        Finite length of one step in units of ``direction``.

    Returns
    -------
    torch.Tensor, shape (2 * steps + 1, d), float32
        On ``w``'s device; row ``steps`` is ``w`` exactly.
    """
    w = _latent(w, "w")
    direction = _latent(direction, "direction").to(w.device)
    if direction.shape != w.shape:
        raise HubnessError(f"direction must have w's shape {tuple(w.shape)}, got {tuple(direction.shape)}")
    steps = _check_int(steps, "steps", 0, "0: only w itself")
    step_size = _check_number(step_size, "step_size")
    s = torch.arange(-steps, steps + 1, dtype=torch.float32, device=w.device)
    return w + (s * step_size)[:, None] * direction


def curve_traversal(fn: Callable[[torch.Tensor], torch.Tensor], w, index: int, steps: int, step_size: float, *,
                    rank: Optional[int] = None, memory_budget_mb: float = 256.0,
                    progress: Optional[Callable[[int, int], None]] = None, device=None,
                    **basis_kwargs) -> torch.Tensor:
    """Iterative curve traversal along the ``index``-th local direction of ``fn`` (Choi et al. 2021).

    From ``w``, walk both ways in steps of length ``step_size``: the first step follows ``±v_index`` of the
    local basis at ``w``; every later step recomputes the local basis (top ``rank``) at the current point
    and follows the basis vector best aligned (largest ``|cos|``) with the previous step, its sign chosen
    to keep going the same way. The curve bends with the local geometry where a straight line leaves it.

    Parameters
    ----------
    fn : callable
        As for :func:`local_basis`.
    w : torch.Tensor or numpy.ndarray, shape (d,) or (1, d)
        Finite starting latent.
    index : int
        0-based index of the local direction (0 <= index < d).
    steps : int
        >= 0 steps each way.
    step_size : float
        Finite length of one step (0: every row is ``w``; negative: the curve runs the other way).
    rank : int, optional
        Candidates per step; default ``min(d, 3 * (index + 1))``; must exceed ``index``.
    memory_budget_mb : float
        As for :func:`local_basis`.
    progress : callable, optional
        ``progress(done, total)`` after each local basis (``total = 1 + 2 * max(steps - 1, 0)``).
    device : str or torch.device, optional
        None: CUDA when available, else CPU.
    **basis_kwargs
        Passed on to :func:`local_basis` (``method``, ``engine``, ``tol``, ...).

    Returns
    -------
    torch.Tensor, shape (2 * steps + 1, d), float32
        Rows ``s = -steps .. steps`` on ``device``; row ``steps`` is ``w`` exactly.
    """
    device = resolve_device(device)
    w = _latent(w, "w").to(device)
    d = w.shape[0]
    index = _check_index(index, d)
    steps = _check_int(steps, "steps", 0, "0: only w itself")
    step_size = _check_number(step_size, "step_size")
    if rank is None:
        rank = min(d, 3 * (index + 1))
    rank = _check_rank(rank, d)
    if rank <= index:
        raise HubnessError(f"rank must exceed index (the direction is one of the top rank), got rank={rank}, "
                           f"index={index}")
    total = 1 + 2 * max(steps - 1, 0)
    done = 0

    def basis_at(x: torch.Tensor) -> torch.Tensor:
        nonlocal done
        try:
            res = local_basis(fn, x, rank, memory_budget_mb=memory_budget_mb, device=device, **basis_kwargs)
        except NonFiniteError as exc:
            raise NonFiniteError(f"at distance {float(torch.linalg.vector_norm(x - w)):.4g} from w: {exc}") from exc
        done += 1
        if progress is not None:
            progress(done, total)
        return res.basis

    start = basis_at(w)[:, index]
    sides = []
    for sign in (1.0, -1.0):
        x, direction, points = w, sign * start, []
        for s in range(1, steps + 1):
            x = x + step_size * direction
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteError(f"the curve left float32's range after {s} steps of {step_size:g}")
            points.append(x)
            if s < steps:
                B = basis_at(x)
                cos = B.T @ direction
                j = int(cos.abs().argmax())
                direction = B[:, j] * (1.0 if float(cos[j]) >= 0 else -1.0)
        sides.append(points)
    rows = sides[1][::-1] + [w] + sides[0]
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------------- Grassmannian

def principal_angles(U, V) -> torch.Tensor:
    """Principal angles between the column spans of ``U`` and ``V``.

    Parameters
    ----------
    U, V : torch.Tensor or numpy.ndarray, shape (d, r)
        Bases with linearly independent columns (orthonormal ones are used as they are, up to float64
        re-orthonormalisation), the same shape.

    Returns
    -------
    torch.Tensor, shape (r,), float64, CPU
        Angles in [0, pi/2], ascending. Small angles come from sines and large ones from cosines, so
        both are accurate to float64 rounding.
    """
    Qu, Qv = _subspace(U, "U"), _subspace(V, "V")
    if Qu.shape != Qv.shape:
        raise HubnessError(f"U and V must have the same shape (d, r), got {tuple(Qu.shape)} and {tuple(Qv.shape)}")
    cross = Qu.T @ Qv
    cosines = torch.linalg.svdvals(cross).clamp(0, 1)                          # descending
    sines = torch.linalg.svdvals(Qv - Qu @ cross).clamp(0, 1).flip(0)          # ascending: same angle order
    return torch.where(cosines ** 2 >= 0.5, torch.arcsin(sines), torch.arccos(cosines))


def grassmann_distance(U, V, metric: str = "geodesic") -> float:
    """Distance between the subspaces spanned by the columns of ``U`` and ``V`` on the Grassmannian.

    With principal angles ``theta_1 .. theta_r`` (:func:`principal_angles`):

    * ``geodesic``: ``sqrt(sum theta_i^2)``, the arc length of the Grassmannian's geodesic; 0 for equal
      subspaces, ``pi/2 * sqrt(r)`` for orthogonal ones.
    * ``projection``: ``||U U^T - V V^T||_F / sqrt(2) = sqrt(sum sin^2 theta_i)``; 0 to ``sqrt(r)``. The
      ``1/sqrt(2)`` makes it the chordal distance of the sines, comparable with the geodesic for small
      angles (both ~ ``sqrt(sum theta_i^2)``).

    Parameters
    ----------
    U, V : torch.Tensor or numpy.ndarray, shape (d, r)
        Bases (orthonormal columns, or any linearly independent ones) of two r-dimensional subspaces.
    metric : str
        ``geodesic`` or ``projection``.

    Returns
    -------
    float
        Symmetric in U and V; independent of the bases chosen within the subspaces.
    """
    if not isinstance(metric, str) or metric not in METRICS:
        raise HubnessError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    theta = principal_angles(U, V)
    if metric == "geodesic":
        return float(torch.linalg.vector_norm(theta))
    return float(torch.linalg.vector_norm(torch.sin(theta)))


# ------------------------------------------------------------------------------------------------- checks

def _subspace(x, name: str) -> torch.Tensor:
    """An orthonormal float64 basis (d, r) of the span of ``x``'s columns."""
    x = real_values(x, name)[0].to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[1] < 1 or x.shape[0] < x.shape[1]:
        raise HubnessError(f"{name} must have shape (d, r) with 1 <= r <= d, got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise HubnessError(f"{name} holds {int(bad.sum())} non-finite value(s); use a finite basis")
    q, r = torch.linalg.qr(x)
    diag = r.diagonal().abs()
    if float(diag.min()) <= 1e-10 * max(float(diag.max()), 1e-300):
        raise HubnessError(f"{name}'s {x.shape[1]} columns are linearly dependent (they span fewer than "
                           f"{x.shape[1]} dimensions); pass a basis of the subspace")
    return q


def _check_positive(value, name: str) -> float:
    value = _check_number(value, name)
    if value <= 0:
        raise HubnessError(f"{name} must be > 0, got {value!r}")
    return value


def _check_rank(rank, d: int) -> int:
    if rank is None:
        return d
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= d:
        raise HubnessError(f"rank must be an integer with 1 <= rank <= d = {d} (None: all d), got {rank!r}")
    return int(rank)


def _check_index(index, d: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < d:
        raise HubnessError(f"index must be an integer with 0 <= index < d = {d} (0: the leading direction), "
                           f"got {index!r}")
    return int(index)
