"""extensions.paths: interpolation methods, their endpoints, the Gaussian prior along their paths, the
prior-to-Cauchy maps against high-precision references, degenerate pairs and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from extensions._checks import HubnessError
from extensions.paths import (GAUSSIAN_METHODS, INTERPOLATIONS, TAIL_FLOOR, cauchy_to_chi, cauchy_to_gaussian,
                              chi_to_cauchy, gaussian_to_cauchy, interpolate, register_interpolation)

METHODS = ("linear", "slerp", "normalized", "cauchy", "spherical-cauchy")
D = 512


def bits(x) -> np.ndarray:
    """The raw bits of a float array, so that -0.0 and 0.0 (or NaN payloads) differ."""
    x = np.ascontiguousarray(x.cpu().numpy() if isinstance(x, torch.Tensor) else x)
    return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def test_registry_holds_the_methods():
    assert set(METHODS) <= set(INTERPOLATIONS)
    assert set(GAUSSIAN_METHODS) == {"normalized", "cauchy", "spherical-cauchy"}


# ------------------------------------------------------------------------------------------------ endpoints

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape", [(7,), (4, 7)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_endpoints_are_exact(method, kind, shape, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    a[..., 0] = -0.0                            # a sign of zero that arithmetic would lose
    b[..., 1] = np.finfo(dtype).tiny / 4        # a subnormal
    b[..., 2] = -3 * a[..., 2] + 0.3            # values a formula would round
    t = np.array([0.0, 0.3, 1.0, 0.0, 0.7, 1.0])
    if kind == "torch":
        a, b, t = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(t)
    path = interpolate(a, b, t, method=method)
    assert isinstance(path, torch.Tensor if kind == "torch" else np.ndarray)
    assert tuple(path.shape) == (shape[:-1] + (6,) + shape[-1:])
    assert str(path.dtype).endswith(dtype)
    for i in (0, 3):
        np.testing.assert_array_equal(bits(path[..., i, :]), bits(a))
    for i in (2, 5):
        np.testing.assert_array_equal(bits(path[..., i, :]), bits(b))
    inner = path[..., [1, 4], :]
    inner = inner.numpy() if kind == "torch" else inner
    assert np.isfinite(inner).all()
    assert not np.array_equal(inner[..., 0, :], np.asarray(a))


@pytest.mark.parametrize("a, b, expected", [
    (np.zeros(4, np.float32), np.ones(4, np.float64), np.float64),
    (np.zeros(4, np.float16), np.ones(4, np.float32), np.float32),
    (np.zeros(4, np.int64), np.ones(4, np.int64), np.float64),
    (torch.zeros(4, dtype=torch.float16), torch.ones(4, dtype=torch.bfloat16), torch.float32),
    (torch.zeros(4, dtype=torch.int64), torch.ones(4), torch.float32),
    (torch.zeros(4), torch.ones(4, dtype=torch.float64), torch.float64),
    (np.zeros(4, np.float64), torch.ones(4), torch.float64),
])
def test_output_kind_and_dtype(a, b, expected):
    path = interpolate(a, b, [0.0, 0.5, 1.0])
    assert path.dtype == expected
    assert isinstance(path, torch.Tensor) == (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor))
    np.testing.assert_array_equal(np.asarray(path[1], dtype=np.float64), 0.5)


def test_torch_and_numpy_give_the_same_paths():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((5, 32)), rng.standard_normal((5, 32))
    t = np.linspace(0, 1, 7)
    for method in METHODS:
        from_numpy = interpolate(a, b, t, method=method)
        from_torch = interpolate(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(t), method=method)
        np.testing.assert_array_equal(from_numpy, from_torch.numpy())
        single = interpolate(a[3], b[3], t, method=method)
        np.testing.assert_allclose(single, from_numpy[3], rtol=1e-13, atol=1e-13)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_match_cpu_paths():
    a, b = torch.randn(6, 64, dtype=torch.float64), torch.randn(6, 64, dtype=torch.float64)
    t = torch.linspace(0, 1, 5)
    for method in METHODS:
        on_cuda = interpolate(a.cuda(), b.cuda(), t, method)
        assert on_cuda.device.type == "cuda"
        torch.testing.assert_close(on_cuda.cpu(), interpolate(a, b, t, method), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------- formulas, independently

def test_methods_match_their_formulas():
    """Each method against its definition written with scipy.stats (valid for moderate values)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((20, 16)), rng.standard_normal((20, 16))
    t = np.array([0.0, 0.1, 0.5, 0.9, 1.0])[None, :, None]
    A, B = a[:, None], b[:, None]
    np.testing.assert_allclose(interpolate(a, b, t.ravel(), "linear"), (1 - t) * A + t * B, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(interpolate(a, b, t.ravel(), "normalized"),
                               ((1 - t) * A + t * B) / np.sqrt((1 - t) ** 2 + t ** 2), rtol=1e-13, atol=1e-13)
    cauchy = st.norm.ppf(st.cauchy.cdf((1 - t) * st.cauchy.ppf(st.norm.cdf(A)) + t * st.cauchy.ppf(st.norm.cdf(B))))
    np.testing.assert_allclose(interpolate(a, b, t.ravel(), "cauchy"), cauchy, rtol=1e-9, atol=1e-9)

    # The classic slerp of the unit directions, from arccos (accurate here: the angles are far from 0 and pi).
    ra, rb = np.linalg.norm(A, axis=-1, keepdims=True), np.linalg.norm(B, axis=-1, keepdims=True)
    omega = np.arccos(np.sum(A / ra * B / rb, axis=-1, keepdims=True))
    direction = (np.sin((1 - t) * omega) * A / ra + np.sin(t * omega) * B / rb) / np.sin(omega)
    np.testing.assert_allclose(interpolate(a, b, t.ravel(), "slerp"), ((1 - t) * ra + t * rb) * direction,
                               rtol=1e-10, atol=1e-10)
    chi = st.chi(16)
    radius = chi.ppf(st.cauchy.cdf((1 - t) * st.cauchy.ppf(chi.cdf(ra)) + t * st.cauchy.ppf(chi.cdf(rb))))
    np.testing.assert_allclose(interpolate(a, b, t.ravel(), "spherical-cauchy"), radius * direction,
                               rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- the prior along the path

@pytest.fixture(scope="module")
def gaussian_pairs():
    rng = np.random.default_rng(20180605)
    return rng.standard_normal((2000, D)), rng.standard_normal((2000, D))


@pytest.mark.parametrize("method", GAUSSIAN_METHODS)
def test_gaussian_methods_keep_the_standard_normal(method, gaussian_pairs):
    a, b = gaussian_pairs
    ts = (0.25, 0.5, 0.75)
    path = interpolate(torch.from_numpy(a), torch.from_numpy(b), torch.tensor(ts, dtype=torch.float64), method)
    for j, t in enumerate(ts):
        points = path[:, j].numpy()
        coords = st.kstest(points.ravel(), st.norm.cdf).pvalue
        norms = st.kstest(np.linalg.norm(points, axis=1), st.chi(D).cdf).pvalue
        assert coords > 0.01 and norms > 0.01, (method, t, coords, norms)


def test_linear_midpoints_leave_the_prior(gaussian_pairs):
    a, b = gaussian_pairs
    mid = interpolate(a, b, [0.5], "linear")[:, 0]
    norms = np.linalg.norm(mid, axis=1)
    assert st.kstest(norms, st.chi(D).cdf).pvalue < 1e-6
    assert st.kstest(mid.ravel(), st.norm.cdf).pvalue < 1e-6
    # N(0, I / 2): the norm shrinks by sqrt(2), to about sqrt(d / 2).
    assert norms.mean() == pytest.approx(st.chi(D).mean() / math.sqrt(2), rel=0.01)
    assert norms.mean() == pytest.approx(math.sqrt(D / 2), rel=0.01)


# ------------------------------------------------------------------------------------------ the 1-D maps

def test_gaussian_cauchy_maps_match_mpmath():
    mp = pytest.importorskip("mpmath")
    z = np.concatenate([np.linspace(-8, 8, 161), [1e-10, -1e-300, 0.6744, 0.6745, 20.0, -30.0, 37.0]])
    with mp.workdps(350):   # enough digits that Phi(37) - 1/2 keeps its distance from 1/2
        ref = np.array([float(mp.tan(mp.pi * (mp.ncdf(mp.mpf(x)) - mp.mpf(1) / 2))) for x in z])
    c = gaussian_to_cauchy(torch.from_numpy(z))
    assert c.dtype == torch.float64
    np.testing.assert_allclose(c.numpy(), ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(cauchy_to_gaussian(ref).numpy(), z, rtol=1e-13, atol=0)
    np.testing.assert_allclose(cauchy_to_gaussian(gaussian_to_cauchy(z)).numpy(), z, rtol=1e-13, atol=0)


@pytest.mark.parametrize("d", [2, 16, D])
def test_chi_cauchy_maps_match_mpmath(d):
    mp = pytest.importorskip("mpmath")
    # From just above the smallest to just below the largest norm the maps resolve (tail probability 1e-300).
    lowest, highest = cauchy_to_chi([-1 / math.tan(math.pi * TAIL_FLOOR), 1 / math.tan(math.pi * TAIL_FLOOR)], d)
    r = np.linspace(float(lowest) * 1.001, float(highest) * 0.999, 60)
    with mp.workdps(350):
        ref = np.array([float(mp.tan(mp.pi * (mp.gammainc(mp.mpf(d) / 2, 0, mp.mpf(x) ** 2 / 2, regularized=True)
                                              - mp.mpf(1) / 2))) for x in r])
    np.testing.assert_allclose(chi_to_cauchy(r, d).numpy(), ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(cauchy_to_chi(ref, d).numpy(), r, rtol=1e-13, atol=0)


def test_maps_stay_finite_beyond_the_floor():
    far = 1 / math.tan(math.pi * TAIL_FLOOR)
    c = gaussian_to_cauchy(np.array([-1e6, -50.0, 50.0, 1e300])).numpy()
    np.testing.assert_allclose(c, [-far, -far, far, far], rtol=1e-12)
    np.testing.assert_allclose(cauchy_to_gaussian(c).numpy(), [-37.047, -37.047, 37.047, 37.047], rtol=1e-4)
    assert np.isfinite(chi_to_cauchy(np.array([0.0, 1e-300, 1e300]), D).numpy()).all()
    a = np.zeros(D)
    a[:3] = [60.0, -1e200, 0.0]
    b = np.ones(D)
    t = np.linspace(0, 1, 11)
    for method in METHODS:
        assert np.isfinite(interpolate(a, b, t, method)).all(), method
        assert np.isfinite(interpolate(np.zeros(D), b, t, method)).all(), method


# ------------------------------------------------------------------------------ slerp and degenerate pairs

@pytest.mark.parametrize("d", [3, D])
def test_slerp_keeps_unit_vectors_on_the_sphere(d):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((200, d)), rng.standard_normal((200, d))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    t = np.linspace(0, 1, 11)
    path = interpolate(a, b, t, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, rtol=0, atol=1e-13)
    # Constant speed along the great circle: the angle from a is t times the angle between a and b.
    omega = np.arccos(np.clip(np.sum(a * b, axis=1), -1, 1))[:, None]
    angle = np.arccos(np.clip(np.einsum("ntd,nd->nt", path, a), -1, 1))
    np.testing.assert_allclose(angle, t * omega, atol=1e-6)
    path32 = interpolate(torch.from_numpy(a).float(), torch.from_numpy(b).float(), torch.from_numpy(t), "slerp")
    np.testing.assert_allclose(path32.norm(dim=-1).numpy(), 1.0, atol=1e-6)


def _angle(x, y):
    """Angle between vectors (last axis), by atan2: accurate near 0 and pi."""
    cross = np.linalg.norm(x[..., None] * y[..., None, :] - y[..., None] * x[..., None, :], axis=(-2, -1)) / np.sqrt(2)
    return np.arctan2(cross, np.sum(x * y, axis=-1))


@pytest.mark.parametrize("method", ["slerp", "spherical-cauchy"])
def test_spherical_methods_on_degenerate_pairs(method):
    a = np.array([1.0, -2.0, 0.5, 3.0])
    t = np.linspace(0, 1, 21)

    parallel = interpolate(a, 2.5 * a, t, method)
    assert np.isfinite(parallel).all()
    np.testing.assert_allclose(_angle(parallel, a), 0, atol=1e-12)

    axis = np.array([0.0, 2.0, 0.0, 0.0])        # a . b == -|a||b| exactly: no rounding noise to lean on
    for x, b in ((a, -3 * a), (a, -a), (axis, -axis), (axis, -0.5 * axis)):
        path = interpolate(x, b, t, method)      # exactly opposite: a deterministic half great circle
        assert np.isfinite(path).all()
        np.testing.assert_allclose(_angle(path, x), np.pi * t, atol=1e-12)
        np.testing.assert_array_equal(path, interpolate(x, b, t, method))

    for eps in (1e-6, 1e-10, 1e-14):             # nearly opposite, either side of the fallback
        b = -a + eps * np.array([0.3, 0.1, -0.2, 0.0])
        path = interpolate(a, b, np.array([0.5, 1 - 1e-12, 1.0]), method)
        assert np.isfinite(path).all()
        assert np.linalg.norm(path[1] - b) < 1e-9 * np.linalg.norm(b)
        assert abs(_angle(path[0], a) - np.pi / 2) < 1e-6

    for eps in (1e-8, 1e-13):                    # nearly parallel: the direction barely moves
        b = a + eps * np.array([0.3, 0.1, -0.2, 0.0])
        path = interpolate(a, b, t, method)
        assert np.isfinite(path).all()
        np.testing.assert_allclose(_angle(path, a), t * _angle(a, b), atol=1e-15)

    zero = np.zeros(4)
    for x, y in ((zero, a), (a, zero), (zero, zero)):
        path = interpolate(x, y, t, method)
        assert np.isfinite(path).all()
        if method == "slerp":                    # no direction to turn: the straight line
            np.testing.assert_allclose(path, (1 - t)[:, None] * x + t[:, None] * y, rtol=1e-13, atol=1e-15)
        else:                                    # along the non-zero latent's direction
            direction = (x + y) / max(np.linalg.norm(x + y), 1e-300)
            np.testing.assert_allclose(path, np.linalg.norm(path, axis=1, keepdims=True) * direction, atol=1e-13)

    torch_path = interpolate(torch.tensor(a, dtype=torch.float32), -torch.tensor(a, dtype=torch.float32),
                             torch.linspace(0, 1, 5), method)
    assert bool(torch.isfinite(torch_path).all())


def test_slerp_with_unequal_norms_interpolates_the_norm_linearly():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((50, 8)), 3 * rng.standard_normal((50, 8))
    t = np.linspace(0, 1, 9)
    path = interpolate(a, b, t, "slerp")
    expected = (1 - t) * np.linalg.norm(a, axis=1)[:, None] + t * np.linalg.norm(b, axis=1)[:, None]
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), expected, rtol=1e-13)


# ------------------------------------------------------------------------------------------ input errors

A4, B4 = np.ones((3, 4)), np.zeros((3, 4))


@pytest.mark.parametrize("call, quoted", [
    (lambda: interpolate(A4, B4, [0.5], method="lerp"), "'lerp'"),
    (lambda: interpolate(A4, B4, [0.5], method=None), "None"),
    (lambda: interpolate(A4, B4, [0.5], method="linear", alpha=1), "'alpha'"),
    (lambda: interpolate(A4, np.zeros((3, 5)), [0.5]), "(3, 4) and (3, 5)"),
    (lambda: interpolate(np.zeros(4), B4, [0.5]), "(4,) and (3, 4)"),
    (lambda: interpolate(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), [0.5]), "(2, 3, 4)"),
    (lambda: interpolate(np.zeros((3, 0)), np.zeros((3, 0)), [0.5]), "(3, 0)"),
    (lambda: interpolate(A4, B4, [0.0, 1.5]), "1.5 at index 1"),
    (lambda: interpolate(A4, B4, torch.tensor([-0.25])), "-0.25"),
    (lambda: interpolate(A4, B4, [0.5, float("nan")]), "nan at index 1"),
    (lambda: interpolate(A4, B4, 0.5), "shape ()"),
    (lambda: interpolate(A4, B4, [[0.5]]), "(1, 1)"),
    (lambda: interpolate(A4, B4, ["x"]), "<U1"),
    (lambda: interpolate(np.where(np.arange(12).reshape(3, 4) == 6, np.nan, 1.0), B4, [0.5]), "nan at index (1, 2)"),
    (lambda: interpolate(A4[0], np.array([0, 0, np.inf, -np.inf]), [0.5]), "inf at index 2"),
    (lambda: interpolate(torch.ones(4, dtype=torch.complex64), torch.ones(4), [0.5]), "complex64"),
    (lambda: interpolate(np.array(["a", "b"]), np.array(["a", "b"]), [0.5]), "<U1"),
    (lambda: interpolate(np.ones((3, 1)), np.ones((3, 1)), [0.5], "slerp"), "d = 1"),
    (lambda: interpolate(np.ones(1), -np.ones(1), [0.5], "spherical-cauchy"), "d = 1"),
])
def test_bad_input_raises_hubness_error_quoting_the_value(call, quoted):
    with pytest.raises(HubnessError) as info:
        call()
    assert quoted in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------- registry

def test_registered_method_joins_with_options_and_exact_endpoints():
    @register_interpolation("test-bump")
    def bump(a, b, t, height=1.0):
        s = t[:, None]
        return (1 - s) * a[:, None] + s * b[:, None] + height * 4 * s * (1 - s)

    try:
        a, b = torch.zeros(2, 3), torch.ones(2, 3)
        path = interpolate(a, b, [0.0, 0.5, 1.0], method="test-bump", height=2.0)
        assert path.shape == (2, 3, 3) and path.dtype == torch.float32
        torch.testing.assert_close(path[:, 1], torch.full((2, 3), 2.5))
        assert bool((path[:, 0] == a).all()) and bool((path[:, 2] == b).all())
        with pytest.raises(HubnessError, match="'depth'"):
            interpolate(a, b, [0.5], method="test-bump", depth=1.0)

        register_interpolation("test-bad-shape")(lambda a, b, t: a)
        with pytest.raises(RuntimeError, match="test-bad-shape"):
            interpolate(a, b, [0.5], method="test-bad-shape")
    finally:
        INTERPOLATIONS.pop("test-bump", None)
        INTERPOLATIONS.pop("test-bad-shape", None)
