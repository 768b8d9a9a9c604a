"""extensions.paths.local_basis: the local basis against the SVD of the explicit Jacobian (a random MLP and a
tiny stylegan2 synthesis network), chunked against one-shot products, the Krylov method against the exact
one, Grassmannian distances against scipy's principal angles, linear and iterative traversals, and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import tiny_networks
from extensions._checks import HubnessError, NonFiniteError
from extensions.paths import (curve_traversal, grassmann_distance, linear_traversal, local_basis,
                              principal_angles)


def mlp(d: int, out_shape=(4, 5, 6), *, decay: float = 1.0, seed: int = 0):
    """A random tanh MLP R^d -> out_shape; ``decay < 1`` scales input coordinate i by decay**i, so that the
    Jacobian's singular values fall off geometrically (distinct, like a GAN's local basis)."""
    gen = torch.Generator().manual_seed(seed)
    m = int(np.prod(out_shape))
    W1 = torch.randn(48, d, generator=gen) / math.sqrt(d) * decay ** torch.arange(d, dtype=torch.float32)
    b1 = torch.randn(48, generator=gen) * 0.1
    W2 = torch.randn(m, 48, generator=gen) / math.sqrt(48)

    def fn(w: torch.Tensor) -> torch.Tensor:
        return (W2 @ torch.tanh(W1 @ w + b1)).reshape(out_shape)

    return fn


def explicit_svd(fn, w: torch.Tensor):
    """Singular values (descending) and right singular vectors (d, d) of the explicit Jacobian, float64."""
    J = torch.autograd.functional.jacobian(fn, w).reshape(-1, w.shape[0]).double()
    _, S, Vh = torch.linalg.svd(J, full_matrices=False)
    return S, Vh.T


def assert_matches_svd(res, S, V, k: int, *, angle_tol: float = 1e-4, sv_rtol: float = 1e-4):
    """The leading k directions equal the SVD's as a subspace and one by one (|cos| ~ 1), with equal
    singular values (relative to the largest)."""
    B = res.basis.double().cpu()
    assert res.basis.dtype == torch.float32 and res.singular_values.dtype == torch.float32
    np.testing.assert_allclose(B.T @ B, np.eye(B.shape[1]), atol=1e-6)
    np.testing.assert_allclose(res.singular_values[:k].double(), S[:k], atol=sv_rtol * float(S[0]))
    assert bool((res.singular_values[1:] <= res.singular_values[:-1]).all())
    angles = scipy.linalg.subspace_angles(B[:, :k].numpy(), V[:, :k].numpy())
    assert angles.max() < angle_tol
    padded = torch.cat([S, S.new_zeros(1)])
    for i in range(k):
        distinct = (padded[i] - padded[i + 1]) / S[0] > 1e-2 and (i == 0 or (S[i - 1] - S[i]) / S[0] > 1e-2)
        if distinct:
            assert abs(float(B[:, i] @ V[:, i])) > 1 - 1e-6, i


# ----------------------------------------------------------------------------------------- against the SVD

@pytest.mark.parametrize("method", ["gram", "krylov"])
def test_basis_of_an_mlp_equals_the_svd_of_its_jacobian(method):
    d = 24
    fn = mlp(d, decay=0.8)
    w = torch.randn(d, generator=torch.Generator().manual_seed(1))
    S, V = explicit_svd(fn, w)
    rank = None if method == "gram" else 4
    res = local_basis(fn, w, rank, method=method, device="cpu")
    assert res.basis.shape == (d, rank or d) and res.singular_values.shape == (rank or d,)
    assert_matches_svd(res, S, V, 4)
    if method == "gram":
        # every singular value, the small ones too (float32 products: absolute error ~ sqrt(eps) * sigma_1)
        np.testing.assert_allclose(res.singular_values.double(), S, atol=1e-3 * float(S[0]))


def test_basis_of_a_flat_spectrum_mlp_equals_the_svd(one_thread):
    d = 10
    fn = mlp(d, out_shape=(30,), seed=4)
    w = torch.randn(d, generator=torch.Generator().manual_seed(5))
    S, V = explicit_svd(fn, w)
    for method in ("gram", "krylov"):
        assert_matches_svd(local_basis(fn, w, 6, method=method, device="cpu"), S, V, 6)


def test_basis_of_a_tiny_stylegan2_synthesis_network(stylegan_runtime, one_thread):
    G = tiny_networks.build_generator(seed=3)
    num_ws = G.synthesis.num_ws

    def fn(w):
        return G.synthesis(w[None, None].expand(1, num_ws, -1), noise_mode="const")

    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(7)), None)[0, 0]
    S, V = explicit_svd(fn, w)
    assert_matches_svd(local_basis(fn, w, device="cpu"), S, V, 8)
    assert_matches_svd(local_basis(fn, w, 5, method="krylov", device="cpu"), S, V, 5)


def test_autograd_engine_equals_torch_func():
    d = 12
    fn = mlp(d, decay=0.8, seed=2)
    w = torch.randn(d, generator=torch.Generator().manual_seed(3))
    a = local_basis(fn, w, engine="func", device="cpu")
    b = local_basis(fn, w, engine="autograd", device="cpu")
    np.testing.assert_allclose(a.singular_values, b.singular_values, rtol=1e-5, atol=1e-6 * float(a.singular_values[0]))
    np.testing.assert_allclose(a.basis[:, :6], b.basis[:, :6], atol=1e-4)


def test_engine_auto_falls_back_when_torch_func_cannot_trace(caplog):
    class Square(torch.autograd.Function):      # old-style Function: torch.func refuses it, autograd does not
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    A = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    fn = lambda w: Square.apply(A @ w)                                     # noqa: E731
    w = torch.randn(5, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError):
        local_basis(fn, w, engine="func", device="cpu")
    S, V = explicit_svd(lambda v: (A @ v) ** 2, w)
    with caplog.at_level("WARNING", logger="extensions.paths.local_basis"):
        assert_matches_svd(local_basis(fn, w, device="cpu"), S, V, 5)
        curve_traversal(fn, w, 0, 2, 0.1, device="cpu")                 # the same fn: no second attempt
    assert sum("torch.func cannot differentiate" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------------------------ chunks and methods

@pytest.mark.parametrize("method,rank", [("gram", None), ("krylov", 3)])
def test_chunked_equals_one_shot(method, rank):
    d = 20
    fn = mlp(d, decay=0.8, seed=6)
    w = torch.randn(d, generator=torch.Generator().manual_seed(2))
    one = local_basis(fn, w, rank, method=method, device="cpu", memory_budget_mb=1024)
    # 120 float32 outputs per direction = 480 bytes: a budget of 1e-3 MiB holds 2 directions per chunk
    many = local_basis(fn, w, rank, method=method, device="cpu", memory_budget_mb=1e-3)
    tiny = local_basis(fn, w, rank, method=method, device="cpu", memory_budget_mb=1e-9)       # one at a time
    for other in (many, tiny):
        np.testing.assert_allclose(other.singular_values, one.singular_values, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(other.basis[:, :8], one.basis[:, :8], atol=1e-5)


def test_krylov_equals_the_top_of_the_exact_basis():
    d = 40
    fn = mlp(d, out_shape=(200,), decay=0.75, seed=8)
    w = torch.randn(d, generator=torch.Generator().manual_seed(9))
    exact = local_basis(fn, w, method="gram", device="cpu")
    for rank in (1, 3, 5):
        res = local_basis(fn, w, rank, method="krylov", device="cpu")
        np.testing.assert_allclose(res.singular_values, exact.singular_values[:rank],
                                   rtol=1e-5, atol=1e-6 * float(exact.singular_values[0]))
        assert grassmann_distance(res.basis, exact.basis[:, :rank]) < 1e-4
        np.testing.assert_allclose(res.basis, exact.basis[:, :rank], atol=1e-4)   # same signs too


def test_auto_picks_krylov_for_a_small_rank_and_it_stops_early():
    d = 48
    fn = mlp(d, out_shape=(100,), decay=0.6, seed=8)
    w = torch.randn(d, generator=torch.Generator().manual_seed(9))
    exact = local_basis(fn, w, method="gram", device="cpu")
    assert local_basis(fn, w, 2, device="cpu").method == "gram"          # all 48 directions fit one chunk
    auto = local_basis(fn, w, 2, device="cpu", memory_budget_mb=1e-3)   # 2 directions per chunk
    assert auto.method == "krylov" and auto.products < d and exact.products == d
    np.testing.assert_allclose(auto.singular_values, exact.singular_values[:2], rtol=1e-5)
    np.testing.assert_allclose(auto.basis, exact.basis[:, :2], atol=1e-4)


def test_rank_deficient_jacobian():
    # fn depends on 2 of 6 coordinates: four singular values are 0, and the basis is still orthonormal
    A = torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    fn = lambda w: torch.sin(A @ w[:2])                                    # noqa: E731
    w = torch.randn(6, generator=torch.Generator().manual_seed(1))
    S, V = explicit_svd(fn, w)
    for method, rank in (("gram", None), ("krylov", 4)):
        res = local_basis(fn, w, rank, method=method, device="cpu")
        assert_matches_svd(res, S, V, 2)
        np.testing.assert_allclose(res.singular_values[2:], 0, atol=1e-3 * float(S[0]))


def test_device_none_is_the_default_device():
    fn = mlp(5, out_shape=(8,))
    res = local_basis(fn, torch.zeros(5))
    assert res.basis.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------------------- Grassmann

def random_orthonormal(d: int, r: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_grassmann_distance_of_a_subspace_with_itself_is_zero():
    U = random_orthonormal(30, 5, 0)
    for metric in ("geodesic", "projection"):
        assert grassmann_distance(U, U, metric) < 1e-12
        assert grassmann_distance(U, U.float(), metric) < 1e-6


def test_grassmann_distance_of_orthogonal_subspaces_is_maximal():
    Q = random_orthonormal(20, 8, 1)
    for r in (1, 3, 4):
        U, V = Q[:, :r], Q[:, 4:4 + r]
        assert grassmann_distance(U, V) == pytest.approx(math.pi / 2 * math.sqrt(r), rel=1e-12)
        assert grassmann_distance(U, V, "projection") == pytest.approx(math.sqrt(r), rel=1e-12)
        W = random_orthonormal(20, r, 10 + r)                            # any other subspace is closer
        assert grassmann_distance(U, W) < math.pi / 2 * math.sqrt(r)


def test_grassmann_distance_against_scipy_and_the_projection_formula():
    for seed in range(5):
        U, V = random_orthonormal(12, 4, seed), random_orthonormal(12, 4, 100 + seed)
        theta = scipy.linalg.subspace_angles(U.numpy(), V.numpy())
        np.testing.assert_allclose(np.sort(principal_angles(U, V).numpy()), np.sort(theta), atol=1e-12)
        assert grassmann_distance(U, V) == pytest.approx(float(np.sqrt((theta ** 2).sum())), rel=1e-10)
        frob = torch.linalg.matrix_norm(U @ U.T - V @ V.T) / math.sqrt(2)
        assert grassmann_distance(U, V, "projection") == pytest.approx(float(frob), rel=1e-10)


def test_grassmann_distance_is_symmetric_and_invariant_to_the_basis():
    U, V = random_orthonormal(16, 3, 2), random_orthonormal(16, 3, 3)
    R1, R2 = random_orthonormal(3, 3, 4), random_orthonormal(3, 3, 5)
    scale = torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64)
    for metric in ("geodesic", "projection"):
        ref = grassmann_distance(U, V, metric)
        assert grassmann_distance(V, U, metric) == pytest.approx(ref, rel=1e-12)
        assert grassmann_distance(U @ R1, V @ R2, metric) == pytest.approx(ref, rel=1e-10)
        assert grassmann_distance(U @ R1 * scale, V, metric) == pytest.approx(ref, rel=1e-10)   # any basis


def test_small_principal_angles_are_accurate():
    # arccos of a cosine within 1e-18 of 1 would give 0; the sine gives the angle itself
    t = 1e-9
    U = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    V = torch.tensor([[math.cos(t)], [math.sin(t)], [0.0]], dtype=torch.float64)
    assert grassmann_distance(U, V) == pytest.approx(t, rel=1e-6)
    assert grassmann_distance(U, V, "projection") == pytest.approx(math.sin(t), rel=1e-6)


# ----------------------------------------------------------------------------------------------- traversals

def test_linear_traversal_is_exact():
    gen = torch.Generator().manual_seed(0)
    w, v = torch.randn(7, generator=gen), torch.randn(7, generator=gen)
    path = linear_traversal(w, v, 4, 0.3)
    assert path.shape == (9, 7) and path.dtype == torch.float32
    assert torch.equal(path[4], w)
    for i, s in enumerate(range(-4, 5)):
        np.testing.assert_allclose(path[i].double(), w.double() + s * 0.3 * v.double(), rtol=1e-6, atol=1e-6)
    assert torch.equal(linear_traversal(w, v, 0, 0.3), w[None])


def test_curve_traversal_with_step_zero_stays_put(one_thread):
    fn = mlp(6, out_shape=(20,), seed=3)
    w = torch.randn(6, generator=torch.Generator().manual_seed(4))
    path = curve_traversal(fn, w, 1, 3, 0.0, device="cpu")
    assert path.shape == (7, 6)
    assert all(torch.equal(row, w) for row in path)


def test_curve_traversal_first_step_follows_the_local_direction(one_thread):
    d = 8
    fn = mlp(d, out_shape=(30,), decay=0.7, seed=5)
    w = torch.randn(d, generator=torch.Generator().manual_seed(6))
    _, V = explicit_svd(fn, w)
    calls = []
    for index in (0, 2):
        h = 0.05
        path = curve_traversal(fn, w, index, 3, h, device="cpu",
                               progress=lambda done, total: calls.append((done, total)))
        assert torch.equal(path[3], w)
        plus, minus = path[4].double() - w.double(), path[2].double() - w.double()
        v = V[:, index] * (1 if float(plus @ V[:, index]) > 0 else -1)           # the SVD's sign is arbitrary
        np.testing.assert_allclose(plus, h * v, atol=1e-6)
        np.testing.assert_allclose(minus, -h * v, atol=1e-6)
    assert calls[:5] == [(i, 5) for i in range(1, 6)]                              # 1 + 2 * (steps - 1) bases


def test_curve_traversal_of_a_linear_map_is_the_straight_line():
    gen = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(15, 6, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
    A = U @ torch.diag(torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])) @ V.T       # distinct singular values
    fn = lambda w: A @ w                                                   # noqa: E731
    w = torch.randn(6, generator=gen)
    for index in (0, 3):
        curve = curve_traversal(fn, w, index, 5, 0.2, device="cpu")
        v = local_basis(fn, w, device="cpu").basis[:, index]
        np.testing.assert_allclose(curve, linear_traversal(w, v, 5, 0.2), atol=1e-5)


def test_curve_traversal_follows_a_circle_where_the_line_leaves_it():
    # fn(x, y) = (radius, 5 * angle): at radius 1 the tangent moves fn 5x faster than the radial direction,
    # so direction 0 is the tangent. Each step along the tangent of the current point gives
    # |w_k|^2 = |w_{k-1}|^2 + h^2 = 1 + k h^2 exactly; the straight line gives 1 + (k h)^2.
    fn = lambda w: torch.stack([torch.linalg.vector_norm(w), 5 * torch.atan2(w[1], w[0])])   # noqa: E731
    w = torch.tensor([1.0, 0.0])
    h, steps = 0.05, 20
    curve = curve_traversal(fn, w, 0, steps, h, device="cpu")
    line = linear_traversal(w, torch.tensor([0.0, 1.0]), steps, h)
    k = torch.arange(-steps, steps + 1, dtype=torch.float64).abs()
    np.testing.assert_allclose(torch.linalg.vector_norm(curve.double(), dim=1), torch.sqrt(1 + k * h * h), rtol=1e-5)
    np.testing.assert_allclose(torch.linalg.vector_norm(line.double(), dim=1), torch.sqrt(1 + (k * h) ** 2),
                               rtol=1e-6)
    assert float(curve[-1, 0]) < 0.9 and float(curve[0, 1]) < 0 < float(curve[-1, 1])


# ----------------------------------------------------------------------------------------------------- errors

def test_bad_inputs_are_typed_errors_that_quote_the_value():
    fn = mlp(4, out_shape=(6,))
    w = torch.zeros(4)
    cases = [
        (lambda: local_basis(fn, w, 0, device="cpu"), "got 0"),
        (lambda: local_basis(fn, w, 5, device="cpu"), "got 5"),
        (lambda: local_basis(fn, w, 2.0, device="cpu"), "got 2.0"),
        (lambda: local_basis(fn, w, True, device="cpu"), "got True"),
        (lambda: local_basis(fn, torch.tensor([0.0, float("nan"), 0.0, 0.0]), device="cpu"), "non-finite"),
        (lambda: local_basis(fn, torch.zeros(2, 4), device="cpu"), "(2, 4)"),
        (lambda: local_basis(fn, w, method="svd", device="cpu"), "'svd'"),
        (lambda: local_basis(fn, w, engine="jax", device="cpu"), "'jax'"),
        (lambda: local_basis(fn, w, memory_budget_mb=0, device="cpu"), "got 0"),
        (lambda: local_basis(lambda v: 1, w, device="cpu"), "int"),
        (lambda: linear_traversal(w, torch.ones(3), 2, 0.1), "(3,)"),
        (lambda: linear_traversal(w, torch.ones(4), -1, 0.1), "got -1"),
        (lambda: linear_traversal(w, torch.ones(4), 2, float("inf")), "inf"),
        (lambda: curve_traversal(fn, w, 4, 2, 0.1, device="cpu"), "got 4"),
        (lambda: curve_traversal(fn, w, -1, 2, 0.1, device="cpu"), "got -1"),
        (lambda: curve_traversal(fn, w, 2, 2, 0.1, rank=2, device="cpu"), "rank=2, index=2"),
        (lambda: curve_traversal(fn, w, 0, 1.5, 0.1, device="cpu"), "got 1.5"),
        (lambda: curve_traversal(fn, w, 0, 2, float("nan"), device="cpu"), "nan"),
        (lambda: grassmann_distance(torch.eye(4)[:, :2], torch.eye(4)[:, :3]), "(4, 3)"),
        (lambda: grassmann_distance(torch.eye(4)[:, :2], torch.eye(4)[:, :2], "chordal"), "'chordal'"),
        (lambda: grassmann_distance(torch.ones(4, 2), torch.eye(4)[:, :2]), "linearly dependent"),
        (lambda: grassmann_distance(torch.ones(4), torch.eye(4)[:, :1]), "(4,)"),
        (lambda: grassmann_distance(torch.eye(4)[:, :2] * float("nan"), torch.eye(4)[:, :2]), "non-finite"),
    ]
    for call, quoted in cases:
        with pytest.raises(HubnessError) as info:
            call()
        assert quoted in str(info.value), (quoted, str(info.value))


def test_non_finite_outputs_and_jacobians_are_errors():
    w = torch.tensor([1.0, 0.0, 2.0])
    with pytest.raises(NonFiniteError, match="fn\\(w\\) holds 1 non-finite"):
        local_basis(lambda v: torch.log(v), w, device="cpu")                   # log(0) = -inf
    with pytest.raises(NonFiniteError, match="Jacobian"):
        local_basis(lambda v: torch.sqrt(v), w, device="cpu")                  # finite, but d/dv sqrt(0) = inf
    # a curve that walks into the non-finite region says how far from w it got
    fn = lambda v: torch.log(v[:1] + 1.0) * torch.ones(3)                      # noqa: E731
    with pytest.raises(NonFiniteError, match="at distance"):
        curve_traversal(fn, torch.tensor([0.0, 0.0]), 0, 5, 0.3, device="cpu")


def test_krylov_that_cannot_converge_within_its_budget_says_so():
    fn = mlp(30, out_shape=(60,), seed=1)                                      # flat spectrum
    w = torch.randn(30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(HubnessError, match="max_products=5"):
        local_basis(fn, w, 2, method="krylov", oversample=0, max_products=5, device="cpu")
    # blocks of 2: 4 products are within the budget of 5, a third block would not be
    res = local_basis(fn, w, 2, method="krylov", oversample=0, max_products=30, tol=0.5, device="cpu")
    assert res.products <= 30 and res.products % 2 == 0
    # what it returns meets its tolerance: |J^T J v - s^2 v| <= tol * s_max(J)^2, against the explicit Jacobian
    J = torch.autograd.functional.jacobian(fn, w).double()
    gram, top = J.T @ J, torch.linalg.svdvals(J)[0] ** 2
    for v, s in zip(res.basis.double().T, res.singular_values.double()):
        assert float((gram @ v - s ** 2 * v).norm()) <= 0.5 * float(top)


# ------------------------------------------------------------------------------------- the benchmark, reduced

def test_benchmark_reduced_writes_consistent_tables(stylegan_runtime, tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("local_basis_benchmark",
                                                  tiny_networks.REPO_ROOT / "benchmarks" / "local_basis.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "lb.md"
    assert bench.main(["--seeds", "2", "--hubs", "2", "--directions", "2", "--steps", "2", "--pool-size", "300",
                       "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    for title in ("Classifier confidence along the traversals", "Warpage", "Local geometry", "Time per local basis",
                  "What held"):
        assert title in text
    raw = json.loads(out.with_suffix(".json").read_text())
    lin, it = np.asarray(raw["confidence"]["linear"]), np.asarray(raw["confidence"]["iterative"])
    assert lin.shape == it.shape == (2, 2, 5)
    # the centre and the first step each way are the same latents on both paths
    np.testing.assert_allclose(lin[:, :, 1:4], it[:, :, 1:4], atol=1e-6)
    same = np.asarray(raw["confidence"]["linear, same displacement"])
    np.testing.assert_allclose(same[:, :, 1:4], lin[:, :, 1:4], atol=1e-4)
    disp = np.asarray(raw["displacement"])
    np.testing.assert_allclose(disp[:, :, 3], raw["step_size"], rtol=1e-5)       # one step = step_size
    assert max(raw["krylov_largest_angle"]) < 1e-3
    spectra = raw["spectra"]
    assert min(spectra["hubs"]["m"]) >= max(spectra["anti-hubs"]["m"])
    np.testing.assert_allclose(spectra["matched non-hubs"]["|w - w_avg|"], spectra["hubs"]["|w - w_avg|"], atol=0.05)
    assert all(0 < e <= 1 for e in spectra["random"]["top-5 energy"])
    capsys.readouterr()
    assert bench.main(["--steps", "0", "--out", str(tmp_path / "bad.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0] and not (tmp_path / "bad.md").exists()
