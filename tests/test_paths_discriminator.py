"""extensions.paths.discriminator: the discrete energy against an explicit loop, fixed endpoints, energy
descent, paths that bend away from a region a toy discriminator penalises, the network helpers (minibatch-std
context, W and Z spaces), the embedded digits networks, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tiny_networks
from extensions._checks import HubnessError
from extensions.paths import interpolate
from extensions.paths.discriminator import (adapter_functions, digits_functions, discriminator_function,
                                            discriminator_path, path_energy, segment_costs)

# A toy generator R^2 -> 4x4 images (a fixed random linear map + tanh) and a discriminator that scores the
# images near G((0, -0.15)) as unrealistic: the straight path from (-2, 0) to (2, 0) passes right by them.
_M = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
A, B = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.0])


def toy_G(z: torch.Tensor) -> torch.Tensor:
    return torch.tanh(z @ _M.T / 2).reshape(-1, 1, 4, 4)


_BAD = toy_G(torch.tensor([[0.0, -0.15]]))


def toy_D(x: torch.Tensor) -> torch.Tensor:
    return 1 - 4 * torch.exp(-(x - _BAD).pow(2).flatten(1).mean(1) / 0.05)


def loop_energy(images: np.ndarray, scores: np.ndarray, strength: float, downsample: int = 1) -> float:
    """The energy by explicit loops in float64: pixel blocks averaged, c from sigmoid(s)^-strength."""
    images = np.asarray(images, dtype=np.float64)
    total = 0.0
    for i in range(len(images) - 1):
        p, q = 1 / (1 + math.exp(-scores[i])), 1 / (1 + math.exp(-scores[i + 1]))     # D's P(real)
        c = math.sqrt(p ** -strength * q ** -strength)
        x, y = images[i], images[i + 1]
        if downsample > 1:
            ch, h, w = x.shape
            x = x.reshape(ch, h // downsample, downsample, w // downsample, downsample).mean(axis=(2, 4))
            y = y.reshape(ch, h // downsample, downsample, w // downsample, downsample).mean(axis=(2, 4))
        squared = 0.0
        for value in (y - x).ravel():
            squared += value * value
        total += c * squared / (y - x).size
    return total


# ---------------------------------------------------------------------------------------------------- energy

@pytest.mark.parametrize("strength", [0.0, 0.7, 2.5])
@pytest.mark.parametrize("downsample", [1, 2])
def test_energy_equals_an_explicit_loop(strength, downsample):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(6, 2, 8, 8, generator=gen) * 2 - 1
    scores = torch.randn(6, generator=gen) * 2
    got = float(path_energy(images, scores, strength, downsample=downsample))
    want = loop_energy(images.numpy(), scores.tolist(), strength, downsample)
    assert got == pytest.approx(want, rel=1e-5)


def test_segment_costs_are_positive_and_decrease_with_realism():
    scores = torch.linspace(-8, 8, 17)
    costs = segment_costs(scores, 1.5)
    assert costs.shape == (16,) and bool((costs >= 1).all())
    assert bool((costs.diff() < 0).all())                          # more realistic segments are cheaper
    assert torch.equal(segment_costs(scores, 0.0), torch.ones(16))


def test_initial_energy_is_that_of_the_linear_path():
    result = discriminator_path(toy_G, toy_D, A, B, steps=9, strength=1.3, iterations=0, device="cpu")
    line = interpolate(A, B, torch.linspace(0, 1, 9))
    images = toy_G(line)
    want = loop_energy(images.numpy(), toy_D(images).tolist(), 1.3)
    assert result.energy_history.shape == (1,)
    assert float(result.energy_history[0]) == pytest.approx(want, rel=1e-5)
    assert torch.equal(result.latents, line) and torch.equal(result.initial_latents, line)


# ------------------------------------------------------------------------------------------------- the path

@pytest.mark.parametrize("optimizer, lr, iterations", [("adam", 0.01, 100), ("lbfgs", 1.0, 20)])
def test_optimised_path_keeps_its_endpoints_and_lowers_the_energy(optimizer, lr, iterations):
    a, b = A + torch.tensor([0.0, 0.3]), B - torch.tensor([0.1, 0.2])
    seen = []
    result = discriminator_path(toy_G, toy_D, a, b, steps=13, strength=1.0, iterations=iterations, lr=lr,
                                optimizer=optimizer, device="cpu", progress=lambda *args: seen.append(args))
    assert result.latents.shape == (13, 2) and result.d_scores.shape == (13,)
    assert torch.equal(result.latents[0], a) and torch.equal(result.latents[-1], b)
    history = result.energy_history
    assert history.shape == (iterations + 1,) and bool(torch.isfinite(history).all())
    assert history[-1] < 0.7 * history[0]
    # Mostly downhill: a few small overshoots at most.
    assert int((history.diff() > 1e-3 * history[0]).sum()) <= iterations // 10
    assert result.energy == float(history.min()) == float(history[result.best_iteration])
    # The reported energy and scores are those of the returned path.
    images = toy_G(result.latents)
    assert torch.allclose(result.d_scores, toy_D(images))
    assert result.energy == pytest.approx(loop_energy(images.numpy(), toy_D(images).tolist(), 1.0), rel=1e-5)
    assert [s[:2] for s in seen] == [(i, iterations) for i in range(1, iterations + 1)]
    assert [s[2] for s in seen] == pytest.approx(history[1:].tolist())


def test_path_bends_away_from_the_penalised_region():
    runs = {lam: discriminator_path(toy_G, toy_D, A, B, steps=15, strength=lam, iterations=100, lr=0.01,
                                    device="cpu") for lam in (0.0, 1.0)}
    plain, aware = runs[0.0], runs[1.0]
    # The straight path passes the bad images (D about -2.4); the D-aware one goes round them.
    assert float(plain.d_scores.min()) < -2
    assert float(aware.d_scores.min()) > float(plain.d_scores.min()) + 2
    assert float(aware.latents[:, 1].max()) > 0.3 > float(plain.latents[:, 1].abs().max())
    # strength = 0 is the image-space geodesic: its plain (unweighted) energy beats the D-aware path's.
    plain_energy = [float(path_energy(toy_G(r.latents), r.d_scores, 0.0)) for r in (plain, aware)]
    assert plain_energy[0] < plain_energy[1]


def test_init_method_sets_the_starting_path():
    a, b = torch.tensor([1.0, 0.5]), torch.tensor([-0.8, 0.9])
    result = discriminator_path(toy_G, toy_D, a, b, steps=7, iterations=0, init="slerp", device="cpu")
    assert torch.equal(result.initial_latents, interpolate(a, b, torch.linspace(0, 1, 7, dtype=torch.float64),
                                                           method="slerp"))


# ------------------------------------------------------------------------------------------ network helpers

def test_stylegan_helpers_drive_synthesis_in_w_with_a_fixed_minibatch_context(stylegan_runtime, one_thread):
    G = tiny_networks.build_generator(seed=0)
    D = tiny_networks.build_discriminator(seed=0)
    G_fn, D_fn, adapter = adapter_functions(G, D)
    w = adapter.map(torch.randn(5, adapter.z_dim, generator=torch.Generator().manual_seed(1)))
    images = G_fn(w)
    assert torch.equal(images, adapter.synthesize(w, noise_mode="const"))
    # Each image shares its minibatch-std group with the images of seeds 0, 1, 2 (stylegan2's groups of 4).
    context = adapter.generate(torch.from_numpy(np.stack([np.random.RandomState(s).randn(adapter.z_dim)
                                                          for s in range(3)])))
    scores = D_fn(images)
    assert scores.shape == (5,)
    for i in range(5):
        alone = D(torch.cat([images[i:i + 1], context]), torch.zeros(4, 0))[0, 0]
        assert float(scores[i]) == pytest.approx(float(alone), rel=1e-5, abs=1e-6)
    assert torch.allclose(D_fn(images[2:3]), scores[2:3], atol=1e-6)     # independent of the other images
    # Without a context the batch is scored as it comes.
    assert torch.equal(discriminator_function(D)(images[:4]), D(images[:4], torch.zeros(4, 0))[:, 0])


def test_generic_helpers_drive_the_generator_in_z():
    G = tiny_networks.TinyGenerator(z_dim=8, resolution=8, seed=0)
    G_fn, D_fn, adapter = adapter_functions(G, _MeanD())
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    assert adapter.default_space == "z"
    assert torch.equal(G_fn(z), G(z, torch.zeros(3, 0)))
    assert torch.allclose(D_fn(G_fn(z)), G(z, None).mean(dim=(1, 2, 3)))  # no minibatch std: no context


class _MeanD(torch.nn.Module):
    c_dim = 0

    def forward(self, img, c):
        return img.mean(dim=(1, 2, 3))[:, None]


def test_digits_path_is_more_realistic_than_the_linear_path(stylegan_runtime, one_thread):
    G_fn, D_fn, adapter = digits_functions(device="cpu")
    w = adapter.map(torch.randn(4, adapter.z_dim, generator=torch.Generator().manual_seed(0)))
    for a, b in ((w[0], w[1]), (w[2], w[3])):
        result = discriminator_path(G_fn, D_fn, a, b, steps=10, strength=1.0, iterations=15, lr=0.02, device="cpu")
        plain = discriminator_path(G_fn, D_fn, a, b, steps=10, strength=0.0, iterations=15, lr=0.02, device="cpu")
        linear = D_fn(G_fn(interpolate(a, b, torch.linspace(0, 1, 10))))
        assert torch.allclose(result.initial_d_scores, linear, atol=1e-5)
        assert float(result.d_scores.mean()) >= float(linear.mean())
        # The gain comes from D's weight, not from shortening the path alone (measured: +0.36 and +0.07
        # over linear, against -0.02 and +0.02 for the image-space geodesic).
        assert float(result.d_scores.mean()) > float(plain.d_scores.mean())
        assert result.energy < float(result.energy_history[0])
        assert torch.equal(result.latents[0], a) and torch.equal(result.latents[-1], b)


# ------------------------------------------------------------------------------------- batches of points

@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("batch_size", [1, 2, 4, 7])
def test_batched_passes_give_the_one_pass_path(optimizer, batch_size):
    """Points in batches (two passes per gradient) follow the same iterates as one pass over all points."""
    one = discriminator_path(toy_G, toy_D, A, B, steps=9, strength=1.3, iterations=6, optimizer=optimizer,
                             batch_size=9, device="cpu")
    batched = discriminator_path(toy_G, toy_D, A, B, steps=9, strength=1.3, iterations=6, optimizer=optimizer,
                                 batch_size=batch_size, device="cpu")
    assert one.best_iteration > 0
    torch.testing.assert_close(batched.energy_history, one.energy_history, rtol=1e-5, atol=0)
    torch.testing.assert_close(batched.latents, one.latents, rtol=1e-5, atol=1e-6)
    assert torch.equal(batched.latents[0], A) and torch.equal(batched.latents[-1], B)


def test_batched_gradient_matches_autograd_through_all_points(stylegan_runtime, one_thread):
    """On the embedded networks (minibatch-std context), Adam steps from batches of 3 points equal the
    steps from one pass, which autograd differentiates directly."""
    G_fn, D_fn, adapter = digits_functions(device="cpu")
    w = adapter.map(torch.randn(2, adapter.z_dim, generator=torch.Generator().manual_seed(5)))
    runs = [discriminator_path(G_fn, D_fn, w[0], w[1], steps=8, iterations=3, lr=0.002, batch_size=size,
                               device="cpu") for size in (8, 3)]
    assert runs[0].best_iteration > 0
    torch.testing.assert_close(runs[1].energy_history, runs[0].energy_history, rtol=1e-4, atol=0)
    torch.testing.assert_close(runs[1].latents, runs[0].latents, rtol=1e-4, atol=1e-5)


def test_points_per_pass_follows_the_image_size():
    from extensions.paths.discriminator import POINTS_BUDGET, points_per_pass
    assert points_per_pass((1, 8, 8), 121) == 121
    assert points_per_pass((3, 1024, 1024), 121) == POINTS_BUDGET // (3 * 1024 * 1024)
    assert points_per_pass((3, 4096, 4096), 121) == 1


# ---------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=2), "steps must be >= 3.*got 2"),
    (dict(steps=4.0), "steps must be an integer.*4.0"),
    (dict(strength=-0.5), "strength must be >= 0.*-0.5"),
    (dict(strength=float("nan")), "strength must be a finite number.*nan"),
    (dict(iterations=-1), "iterations must be >= 0.*-1"),
    (dict(lr=0.0), "lr must be > 0.*0.0"),
    (dict(optimizer="sgd"), "optimizer must be one of adam, lbfgs.*'sgd'"),
    (dict(init="bogus"), "unknown interpolation method 'bogus'"),
    (dict(downsample=0), "downsample must be >= 1.*0"),
    (dict(batch_size=0), "batch_size must be >= 1.*0"),
    (dict(b=torch.zeros(3)), r"same shape.*\(2,\) and \(3,\)"),
    (dict(a=torch.tensor([0.0, float("inf")])), "a holds 1 non-finite value.*inf at index 1"),
    (dict(b=np.zeros((2, 2))), r"b must have shape \(d,\) or \(1, d\).*\(2, 2\)"),
])
def test_bad_input_is_a_one_line_error_quoting_the_value(kwargs, match):
    args = dict(a=A, b=B, steps=5, device="cpu", iterations=1)
    args.update(kwargs)
    with pytest.raises(HubnessError, match=match) as info:
        discriminator_path(toy_G, toy_D, args.pop("a"), args.pop("b"), **args)
    assert "\n" not in str(info.value)


def test_non_finite_energy_stops_with_an_error():
    def G_nan(z):
        return toy_G(z) / (z[:, :1, None, None] > 1.5).float().logical_not()   # inf once a point passes 1.5

    with pytest.raises(HubnessError, match="energy of the initial path is (inf|nan)") as info:
        discriminator_path(G_nan, toy_D, A, torch.tensor([2.0, 0.0]), steps=5, iterations=3, device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(HubnessError, match=r"path energy (after iteration \d+ is (nan|inf)|or its gradient became non-finite)"):
        # finite start, but a huge step drives a point past the edge
        discriminator_path(G_nan, toy_D, A, torch.tensor([1.4, 0.0]), steps=5, iterations=50, lr=5.0,
                           device="cpu")


def test_outputs_of_the_wrong_shape_are_errors():
    with pytest.raises(HubnessError, match=r"G_fn returned \(5, 16\)"):
        discriminator_path(lambda z: toy_G(z).flatten(1), toy_D, A, B, steps=5, device="cpu")
    with pytest.raises(HubnessError, match=r"D_fn returned \(5, 2\)"):
        discriminator_path(toy_G, lambda x: toy_D(x)[:, None].repeat(1, 2), A, B, steps=5, device="cpu")
