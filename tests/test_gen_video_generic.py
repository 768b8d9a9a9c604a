"""gen_video_hub.py and extensions.paths.video on generators without a mapping network: a tiny random BigGAN
saved in pytorch-pretrained-biggan's folder format (as test_biggan.py builds it) and ``module:callable``
TinyGenerators (tiny_networks.py). Z-space videos: keyframe frames against the package's (or the module's)
own call for the seed, in-between frames against the generator on :func:`extensions.paths.interpolate`'s
latents, hub keyframes against an independent brute-force Z-space k-NN, and the one-line errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import scipy.interpolate
import torch

import tiny_networks
from reference import brute_knn
from test_gen_video_hub import cli, png

from extensions.paths import interpolate
from extensions.paths.video import plan_video
from extensions.stylegan.adapter import make_adapter
from extensions.stylegan.loader import load_network

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "tiny_networks:TinyGenerator"  # z_dim 8, unconditional, 3x8x8 images
NETS = textwrap.dedent('''
    from tiny_networks import TinyGenerator

    def conditional():
        return TinyGenerator(z_dim=6, c_dim=3, seed=1)
''')


def randn(seeds, z_dim):
    """gen_images.py's latents, shape (n, z_dim), float64."""
    return np.concatenate([np.random.RandomState(int(s)).randn(1, z_dim) for s in seeds])


def top_seeds(seeds, z, num, k=5):
    """The ``num`` largest hub values of an independent numpy k-NN in Z, largest first (ties: lower index)."""
    idx, _ = brute_knn(z, k)
    m = np.bincount(idx.ravel(), minlength=len(seeds))
    order = sorted(range(len(seeds)), key=lambda i: (-m[i], i))[:num]
    return [int(seeds[i]) for i in order], [int(m[i]) for i in order]


def tiny_image(G, z, c=None) -> np.ndarray:
    """The module's own call on one latent, as gen_images.py quantizes it: uint8 (H, W, 3)."""
    z = torch.as_tensor(z, dtype=torch.float32).reshape(1, -1)
    c = torch.zeros(1, G.c_dim) if c is None else c
    with torch.no_grad():
        img = G(z, c)
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def strip_cells(path, count, height, width):
    """The ``count`` frames (height, width) of a --strip contact sheet (enlarged until the longer side is at
    least 64 px, 2-px gaps), at their own size."""
    sheet = png(path)
    scale = max(1, -(-64 // max(height, width)))
    h, w = height * scale, width * scale
    return [sheet[:h, i * (w + 2):i * (w + 2) + w][::scale, ::scale] for i in range(count)]


# ------------------------------------------------------------------------------------------------------ BigGAN

biggan = pytest.importorskip("pytorch_pretrained_biggan")
from test_biggan import CLASS, biggan_dir, hub_values, package_image, package_model  # noqa: E402, F401 (fixtures)


def package_call(model, z, psi, class_idx=CLASS) -> np.ndarray:
    """The package's model on one latent (n = 1), converted as its ``convert_to_images``."""
    label = torch.from_numpy(biggan.one_hot_from_int(class_idx, batch_size=1))
    with torch.no_grad():
        out = model(torch.as_tensor(z, dtype=torch.float32).reshape(1, -1), label, psi)
    return np.asarray(biggan.convert_to_images(out)[0])


def test_biggan_keyframes_are_the_package_images_and_frames_follow_interpolate(biggan_dir, package_model):
    G = load_network(str(biggan_dir), device="cpu")
    psi, seeds = 0.4, [3, 8, 5]
    plan = plan_video(G, seeds, network=str(biggan_dir), method="slerp", w_frames=2, truncation_psi=psi,
                      labels=make_adapter(G).labels(CLASS))
    assert plan.space == "z" and plan.num_frames == 6
    for k, seed in enumerate(seeds):
        assert np.array_equal(plan.render(2 * k), package_image(package_model, seed, psi)), seed
    z = np.concatenate([biggan.truncated_noise_sample(truncation=psi, batch_size=1, seed=s) for s in seeds])
    # frame 5: keyframe 5 -> keyframe 3 (the loop closes) at t = 1/2
    expected = interpolate(z[2].astype(np.float64), z[0].astype(np.float64), [0.5], method="slerp")
    assert np.array_equal(plan.latents(5)[0].numpy(), expected)
    frame = plan.render(5)
    assert np.array_equal(frame, package_call(package_model, expected, psi))
    assert not np.array_equal(frame, plan.render(4))


def test_biggan_hub_keyframes_are_the_largest_z_hubs(biggan_dir, package_model, tmp_path):
    seeds, psi = np.arange(60), 0.5
    m = hub_values(seeds, 1.0)  # independent: numpy k-NN on the package's draws (every psi ranks alike)
    top = sorted(range(len(seeds)), key=lambda i: (-m[i], i))[:2]
    strip, video = tmp_path / "hubs.png", tmp_path / "hubs.mp4"
    res = cli("--network", biggan_dir, "--seeds", "0-59", "--sampler", "hubness", "--t", 0, "--num-keyframes", 2,
              "--w-frames", 2, "--class", CLASS, "--trunc", psi, "--strip", strip, "--strip-frames", 2,
              "--output", video)
    assert res.exit_code == 0, res.output
    assert f"keyframe seeds {top[0]} (m {m[top[0]]}), {top[1]} (m {m[top[1]]})" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hubs.mp4", "hubs.png"]
    cells = strip_cells(strip, 2, 128, 128)  # frames 0 and 2: the two keyframes
    for cell, i in zip(cells, top):
        assert np.array_equal(cell, package_image(package_model, int(seeds[i]), psi)), int(seeds[i])


@pytest.mark.parametrize("args, message", [
    (["--space", "w"], "drop --space w"),
    (["--interp", "discriminator"], "has neither: use --interp cubic, linear or slerp"),
    (["--class", None], "give a class label with --class (0..999)"),
    (["--class", 1000], "class 1000 is out of range"),
    (["--interp", "cauchy"], "normals truncated to [-2, 2]"),
    (["--interp", "normalized", "--trunc", 1], "keeps an N(0, I) prior"),
    (["--trunc", 1.5], "outside BigGAN's truncation range"),
])
def test_biggan_bad_input_is_one_line_and_writes_nothing(biggan_dir, tmp_path, args, message):
    _one_line_error(biggan_dir, tmp_path, args, message, {"--class": CLASS})


# ------------------------------------------------------------------------------------------------ module:callable


@pytest.mark.parametrize("method", ["slerp", "normalized", "cauchy", "spherical-cauchy"])
def test_module_keyframes_are_the_module_images_and_frames_follow_interpolate(method):
    G = load_network(TINY, device="cpu")
    own = tiny_networks.TinyGenerator()  # the module's own generator, built again
    seeds, w_frames = [4, 9, 2, 7], 3
    plan = plan_video(G, seeds, network=TINY, grid=(2, 1), method=method, w_frames=w_frames)
    z = randn(seeds, 8)
    for k in range(2):
        frame = plan.render(k * w_frames)
        for cell in range(2):
            assert np.array_equal(frame[:, cell * 8:(cell + 1) * 8], tiny_image(own, z[cell * 2 + k])), (k, cell)
    # frame 4: keyframe 1 -> keyframe 0 of each cell at t = 1/3
    frame = plan.render(4)
    for cell in range(2):
        latent = interpolate(z[cell * 2 + 1], z[cell * 2], [1 / 3], method=method)
        assert np.array_equal(plan.latents(4)[cell].numpy(), latent)
        assert np.array_equal(frame[:, cell * 8:(cell + 1) * 8], tiny_image(own, latent)), cell
    assert not np.array_equal(frame, plan.render(3))


def test_module_cubic_frames_follow_gen_videos_spline():
    G = load_network(TINY, device="cpu")
    own = tiny_networks.TinyGenerator()
    seeds, w_frames = [1, 5, 6], 4
    plan = plan_video(G, seeds, network=TINY, w_frames=w_frames)  # cubic, as gen_video.py
    spline = scipy.interpolate.interp1d(np.arange(-6, 9), np.tile(randn(seeds, 8), [5, 1]), kind="cubic", axis=0)
    for frame in (0, 5, 11):
        assert np.array_equal(plan.render(frame), tiny_image(own, spline(frame / w_frames))), frame


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``nets.py`` (a conditional TinyGenerator) in the current directory."""
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    return "nets.py:conditional"


def test_module_hub_keyframes_with_a_class(nets, tmp_path):
    seeds = np.arange(60)
    chosen, m = top_seeds(seeds, randn(seeds, 6), 4)
    strip = tmp_path / "out" / "hubs.png"
    strip.parent.mkdir()
    res = cli("--network", nets, "--seeds", "0-59", "--sampler", "hubness", "--t", 0, "--num-keyframes", 2,
              "--grid", "2x1", "--w-frames", 2, "--class", 2, "--strip", strip, "--strip-frames", 2)
    assert res.exit_code == 0, res.output
    assert f"keyframe seeds {chosen[0]} (m {m[0]}), {chosen[1]} (m {m[1]})" in res.output
    own = tiny_networks.TinyGenerator(z_dim=6, c_dim=3, seed=1)
    c = torch.nn.functional.one_hot(torch.tensor([2]), 3)
    z = randn(chosen, 6)
    # cell (0, 0) runs through chosen seeds 0, 1; cell (0, 1) through 2, 3; strip frames 0 and 2 are keyframes
    for k, cell in enumerate(strip_cells(strip, 2, 8, 16)):
        for col in range(2):
            assert np.array_equal(cell[:, col * 8:(col + 1) * 8], tiny_image(own, z[col * 2 + k], c)), (k, col)


@pytest.mark.parametrize("args, message", [
    (["--space", "w"], "without a mapping network (no W)"),
    (["--interp", "discriminator"], "has neither"),
    (["--class", None], "give a class label with --class (0..2)"),
    (["--trunc", 0.7], "leave --trunc at 1"),
])
def test_module_bad_input_is_one_line_and_writes_nothing(nets, tmp_path, args, message):
    _one_line_error(nets, tmp_path, args, message, {"--class": 1})


def _one_line_error(network, tmp_path, args, message, extra):
    d = tmp_path / "out"
    d.mkdir()
    base = {"--network": network, "--seeds": "0-3", "--w-frames": 2, "--output": d / "v.mp4",
            "--strip": d / "s.png", **extra}
    merged = {**base, **dict(zip(args[::2], args[1::2]))}
    res = cli(*[x for k, v in merged.items() if v is not None for x in (k, str(v))])
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and message in last, res.output
    assert "Traceback" not in res.output
    assert list(d.iterdir()) == []
