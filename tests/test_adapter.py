"""GeneratorAdapter over real stylegan2-ada generators (and a stylegan3 one when STYLEGAN3_DIR is set)."""

import numpy as np
import pytest
import torch

import tiny_networks
from extensions import HubnessError, SeedPools
from extensions.stylegan import GenericAdapter, StyleGANAdapter, input_transform, load_network, make_adapter

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G(tiny_network_pkl):
    return load_network(tiny_network_pkl, device="cpu")


@pytest.fixture(scope="module")
def G_cond(tiny_conditional_pkl):
    return load_network(tiny_conditional_pkl, device="cpu")


def official_z(seed, z_dim):
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim))


def test_dimensions_and_spaces(G, G_cond):
    a = make_adapter(G)
    assert isinstance(a, StyleGANAdapter)
    assert (a.z_dim, a.c_dim, a.w_dim, a.num_ws) == (G.z_dim, 0, G.w_dim, G.num_ws)
    assert a.spaces == ("w", "z") and a.default_space == "w" and not a.has_input_transform
    assert make_adapter(G_cond).c_dim == 3
    with pytest.raises(HubnessError, match="space 'x'"):
        a.check_space("x")


def test_batched_mapping_is_first_row_of_ws(G):
    a = make_adapter(G)
    z = torch.randn(7, G.z_dim)
    ws = G.mapping(z, torch.zeros(7, 0))
    assert torch.equal(ws, ws[:, :1].expand_as(ws))  # one w repeated num_ws times
    assert torch.allclose(a.map(z), ws[:, 0], atol=1e-6)
    truncated = G.mapping(z, torch.zeros(7, 0), truncation_psi=0.6)[:, 0]
    assert torch.allclose(a.map(z, truncation_psi=0.6), truncated, atol=1e-6)
    assert not torch.allclose(truncated, ws[:, 0], atol=1e-3)  # w_avg is not zero: truncation moves w
    assert torch.equal(a.mean_latent("w"), G.mapping.w_avg) and torch.equal(a.mean_latent("z"), torch.zeros(32))


def test_generate_matches_the_official_call_bit_for_bit(G):
    a = make_adapter(G)
    for seed, psi, mode in [(0, 1, "const"), (5, 0.7, "const"), (9, 0.5, "none")]:
        z = official_z(seed, G.z_dim)  # float64, as gen_images.py passes it
        expected = G(z, torch.zeros([1, 0]), truncation_psi=psi, noise_mode=mode)
        assert torch.equal(a.generate(z, truncation_psi=psi, noise_mode=mode), expected)
        assert torch.equal(a.synthesize(a.map(z, truncation_psi=psi), noise_mode=mode), expected)


def test_noise_modes(G):
    a = make_adapter(G)
    z = official_z(3, G.z_dim)
    const, none = a.generate(z, noise_mode="const"), a.generate(z, noise_mode="none")
    assert not torch.equal(const, none)  # the tiny net has non-zero noise strengths
    torch.manual_seed(0)
    r1 = a.generate(z, noise_mode="random")
    r2 = a.generate(z, noise_mode="random")
    assert not torch.equal(r1, r2)
    with pytest.raises(HubnessError, match="noise_mode must be one of"):
        a.generate(z, noise_mode="loud")


def test_transform_feeds_seed_pools(G):
    a = make_adapter(G)
    pools = SeedPools(G.z_dim, 10, seeds=range(10), transform=a.transform("w"), batch_size=4, device="cpu")
    pool = pools.draw(0)
    assert pool.latents.shape == (10, G.w_dim)
    assert torch.allclose(pool.latents, a.map(pool.z), atol=1e-6)
    assert a.transform("z") is None


def test_labels_for_conditional_networks(G, G_cond):
    a, c = make_adapter(G), make_adapter(G_cond)
    assert a.labels(None, 4).shape == (4, 0)
    assert torch.equal(c.labels(2, 2), torch.tensor([[0., 0., 1.]] * 2))
    with pytest.raises(HubnessError, match="conditional .3 classes.: give a class label with --class"):
        c.labels(None)
    for bad in (3, -1, True):
        with pytest.raises(HubnessError, match="out of range"):
            c.labels(bad)
    z = torch.randn(5, G_cond.z_dim)
    w0 = c.map(z, c.labels(0, 5))
    w1 = c.map(z, c.labels(1, 5))
    assert not torch.allclose(w0, w1)
    t1 = c.transform("w", c.labels(1))
    assert torch.allclose(t1(z), w1, atol=1e-6)
    expected = G_cond(z[:1], c.labels(1), truncation_psi=0.8, noise_mode="const")
    assert torch.equal(c.generate(z[:1], c.labels(1), truncation_psi=0.8), expected)


def test_input_transform_is_the_inverse_rotation_translation():
    m = input_transform((0.3, -0.2), 30)
    a = np.deg2rad(30)
    forward = np.array([[np.cos(a), np.sin(a), 0.3], [-np.sin(a), np.cos(a), -0.2], [0, 0, 1]])
    assert np.allclose(m @ forward, np.eye(3))
    assert np.array_equal(input_transform(), np.eye(3))


def test_stylegan2_network_ignores_translate(G):
    assert make_adapter(G).set_input_transform((0.5, 0), 10) is False


def test_generic_module_samples_in_z(tmp_path):
    G = tiny_networks.TinyGenerator(z_dim=6, c_dim=2, resolution=4)
    a = make_adapter(G)
    assert isinstance(a, GenericAdapter) and a.spaces == ("z",) and a.w_dim is None
    assert a.transform() is None
    z = torch.randn(3, 6)
    assert torch.equal(a.generate(z, a.labels(1, 3)), G(z, a.labels(1, 3)))
    with pytest.raises(HubnessError, match="truncation needs a mapping network"):
        a.generate(z, a.labels(1, 3), truncation_psi=0.7)
    with pytest.raises(HubnessError, match="space 'w' is not available"):
        a.check_space("w")
    with pytest.raises(HubnessError, match="z must have shape"):
        a.generate(torch.randn(3, 5), a.labels(1, 3))


def test_generic_module_with_wrong_output_is_reported():
    class Flat(torch.nn.Module):
        z_dim = 4

        def forward(self, z, c):
            return z * 2

    with pytest.raises(HubnessError, match=r"returned \(2, 4\) for 2 latents"):
        make_adapter(Flat()).generate(torch.randn(2, 4))


def test_non_generators_are_refused():
    with pytest.raises(HubnessError, match="expected a generator"):
        make_adapter(torch.nn.Linear(2, 2))


STYLEGAN3_CHILD = '''
import sys, numpy as np, torch, tiny_networks as t
t.use_runtime(sys.argv[1])
from extensions.stylegan import make_adapter
G = t.build_generator(arch="stylegan3")
a = make_adapter(G)
assert a.has_input_transform and a.spaces == ("w", "z")
z = torch.from_numpy(np.random.RandomState(4).randn(1, G.z_dim))
plain = a.generate(z)
assert a.set_input_transform((0.25, -0.1), 12.5)
moved = a.generate(z, truncation_psi=0.7)
# The procedure of gen_images.py, written out: inverse matrix into the input layer, then G(z, c, psi).
s, c = np.sin(12.5 / 360.0 * np.pi * 2), np.cos(12.5 / 360.0 * np.pi * 2)
m = np.eye(3); m[0][0] = c; m[0][1] = s; m[0][2] = 0.25; m[1][0] = -s; m[1][1] = c; m[1][2] = -0.1
G.synthesis.input.transform.copy_(torch.from_numpy(np.linalg.inv(m)))
expected = G(z, torch.zeros([1, 0]), truncation_psi=0.7, noise_mode="const")
print("EQUAL", torch.equal(moved, expected), "MOVED", not torch.equal(plain, moved))
'''


@pytest.mark.needs_stylegan3
def test_stylegan3_generator_translate_rotate(stylegan3_checkout):
    out = tiny_networks.run_python(["-c", STYLEGAN3_CHILD, stylegan3_checkout])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EQUAL True MOVED True" in out.stdout
