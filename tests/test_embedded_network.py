"""The embedded digits generator and classifier: weights format, loading, determinism, trained behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from extensions.digits import (CLASSIFIER_WEIGHTS, DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, DigitClassifier,
                               Discriminator, FeatureDetector, WeightsFileError, digit_images, load_classifier,
                               load_discriminator, load_generator, read_weights, save_weights, translate)
from extensions._checks import HubnessError
from extensions.stylegan.adapter import make_adapter


@pytest.fixture(scope="module")
def G(stylegan_runtime):
    return load_generator(device="cpu")


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(device="cpu")


def test_committed_weights_are_plain_arrays_of_a_few_mb():
    for path in (GENERATOR_WEIGHTS, CLASSIFIER_WEIGHTS):
        assert path.stat().st_size < 3e6
        with np.load(path, allow_pickle=False) as data:  # raises if any entry needs pickle
            assert all(data[name].dtype != object for name in data.files)
            args = json.loads(str(data["__args__"]))
            meta = json.loads(str(data["__meta__"]))
        assert isinstance(args, dict) and args
        assert meta["script"].startswith("scripts/train_digits_")


def test_generator_is_a_stylegan_generator_sampled_in_w(G):
    adapter = make_adapter(G)
    assert adapter.kind == "StyleGAN" and adapter.default_space == "w"
    assert (G.img_resolution, G.img_channels, G.c_dim) == (16, 1, 0)
    assert float(G.mapping.w_avg.norm()) > 0  # trained: the tracked mean W moved away from its zero init


def test_generator_synthesises_deterministic_images(G, stylegan_runtime):
    z = torch.from_numpy(np.random.RandomState(3).randn(8, G.z_dim).astype(np.float32))
    a = G(z, None, noise_mode="const")
    b = load_generator(device="cpu")(z, None, noise_mode="const")  # a fresh load of the same file
    assert a.shape == (8, 1, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # different latents, different images
    w = G.mapping(z, None)[:, 0]
    assert torch.equal(make_adapter(G).synthesize(w, noise_mode="const"), a)  # the W path renders the same


def test_generator_draws_digits_the_classifier_recognises(G, classifier):
    z = torch.from_numpy(np.random.RandomState(0).randn(256, G.z_dim).astype(np.float32))
    judged = classifier.judge(G(z, None, noise_mode="const"))
    assert float(judged["confidence"].mean()) > 0.8
    assert len(torch.unique(judged["label"])) == 10  # every digit class is drawn
    noise = torch.rand(256, 1, 16, 16) * 2 - 1
    assert float(classifier.judge(noise)["confidence"].mean()) < float(judged["confidence"].mean())


def test_classifier_recognises_real_digits(classifier):
    images, labels = digit_images(16)
    judged = classifier.judge(images)
    assert float((judged["label"] == labels).float().mean()) > 0.97
    assert judged["features"].shape == (len(images), classifier.feature_dim)


def test_feature_detector_takes_uint8_like_the_metric_loop(classifier):
    images, _ = digit_images(16)
    uint8 = (images[:16] * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    detector = FeatureDetector(classifier)
    feats = detector(uint8.repeat(1, 3, 1, 1))
    assert torch.allclose(feats, classifier.features((uint8.float() - 128) / 127.5), atol=1e-5)
    assert torch.allclose(feats, classifier.features(images[:16]), rtol=0.02, atol=0.2)  # quantisation only
    assert torch.allclose(detector.probabilities(feats).sum(dim=1), torch.ones(16))
    with pytest.raises(Exception, match="uint8"):
        detector(images[:2])


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    net = DigitClassifier(channels=4, feature_dim=8)
    path = save_weights(tmp_path / "c.npz", net, dict(channels=4, feature_dim=8), dict(note="x"))
    state, args, meta = read_weights(path)
    assert args == dict(channels=4, feature_dim=8) and meta == dict(note="x")
    clone = load_classifier(path)
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(clone.features(x), net.eval().features(x))


def test_weights_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsFileError, match="does not exist"):
        read_weights(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(WeightsFileError, match="pickled.npz"):
        read_weights(tmp_path / "pickled.npz")
    np.savez(tmp_path / "noargs.npz", a=np.zeros(2))
    with pytest.raises(WeightsFileError, match="__args__"):
        read_weights(tmp_path / "noargs.npz")
    small = save_weights(tmp_path / "small.npz", DigitClassifier(channels=4), dict(channels=8))
    with pytest.raises(WeightsFileError, match="shape mismatch"):
        load_classifier(small)


def test_translate_shifts_and_fills_with_background():
    img = torch.full((1, 1, 5, 5), -1.0)
    img[0, 0, 2, 2] = 1.0
    gen = torch.Generator().manual_seed(0)
    out = translate(img.repeat(64, 1, 1, 1), 1, 1.0, generator=gen)
    peaks = [tuple((o[0] == 1).nonzero()[0].tolist()) for o in out]
    assert set(peaks) <= {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}
    assert len(set(peaks)) > 4  # shifts vary per image
    assert torch.all((out == 1).sum(dim=(1, 2, 3)) == 1) and torch.all(out.sum(dim=(1, 2, 3)) == img.sum())
    assert torch.equal(translate(img, 1, 0.0), img)


def _script_at(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(name):
    from tiny_networks import REPO_ROOT
    return _script_at(REPO_ROOT / "scripts" / f"{name}.py", name)


def test_gan_training_script_is_seeded_and_writes_loadable_weights(stylegan_runtime, tmp_path):
    train = _script("train_digits_gan")
    before = torch.get_num_threads()
    paths = []
    try:
        for run in ("a", "b"):
            paths.append(tmp_path / f"{run}.npz")
            train.main(["--out", str(paths[-1]), "--steps", "3", "--log-every", "2", "--channels", "8",
                        "--z-dim", "16", "--mapping-layers", "2", "--batch", "8"])
    finally:
        torch.set_num_threads(before)
    (state_a, args_a, meta_a), (state_b, _, _) = read_weights(paths[0]), read_weights(paths[1])
    assert meta_a["step"] == 3 and args_a["z_dim"] == 16
    assert all(torch.equal(state_a[name], state_b[name]) for name in state_a)  # same seed, same weights
    G = load_generator(paths[0], device="cpu")
    assert G(torch.zeros(2, 16), None, noise_mode="const").shape == (2, 1, 16, 16)


def test_classifier_training_script_writes_loadable_weights(tmp_path):
    train = _script("train_digits_classifier")
    before = torch.get_num_threads()
    try:
        train.main(["--out", str(tmp_path / "c.npz"), "--epochs", "1"])
    finally:
        torch.set_num_threads(before)
    net = load_classifier(tmp_path / "c.npz")
    _, _, meta = read_weights(tmp_path / "c.npz")
    images, labels = digit_images(16)
    assert float((net.judge(images)["label"] == labels).float().mean()) > 0.5  # one epoch already learns
    assert 0.5 < meta["heldout_accuracy"] <= 1


def test_main_command_defaults_to_the_embedded_network(G, tmp_path):
    from click.testing import CliRunner

    from extensions.pools import seed_latents
    from extensions.render import load_png, to_uint8
    from extensions.stylegan.loader import load_network
    import tiny_networks

    gen = _script_at(tiny_networks.REPO_ROOT / "gen_images_hub.py", "gen_images_hub_cli")
    for sampler in (["--sampler", "random"], ["--sampler", "hubness", "--t", "3"]):
        out = tmp_path / sampler[1]
        result = CliRunner().invoke(gen.generate_images, ["--seeds", "0-199", "--num", "6", "--grid", "--device", "cpu",
                                                          "--outdir", str(out)] + sampler)
        assert result.exit_code == 0, result.output
        seeds = sorted(int(p.stem[4:]) for p in out.glob("seed*.png"))
        assert len(seeds) == 6 and (out / "grid.png").is_file()
        z = torch.from_numpy(seed_latents(seeds, G.z_dim)).float()
        expected = to_uint8(G(z, None, noise_mode="const"))
        for seed, image in zip(seeds, expected):
            assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), image)
    assert seeds != list(range(6))  # the hubness sampler chose other seeds than the first six
    assert isinstance(load_network("digits", device="cpu"), type(G))


def test_discriminator_rejects_batches_it_cannot_score():
    D = Discriminator(channels=4)
    with pytest.raises(HubnessError, match="got 6"):
        D(torch.zeros(6, 1, 16, 16))
    with pytest.raises(HubnessError, match=r"\(4, 3, 16, 16\)"):
        D(torch.zeros(4, 3, 16, 16))
    with pytest.raises(WeightsFileError, match="does not hold a discriminator"):
        load_discriminator(GENERATOR_WEIGHTS)


def test_gan_training_script_writes_the_discriminator_next_to_the_generator(stylegan_runtime, tmp_path):
    train = _script("train_digits_gan")
    options = ["--steps", "2", "--log-every", "2", "--channels", "8", "--z-dim", "16", "--mapping-layers", "2",
               "--batch", "8"]
    before = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exc:
            train.main(["--out", str(tmp_path / "g.npz"), "--out-discriminator", str(tmp_path / "g.npz")] + options)
        assert "another path" in str(exc.value.code) and not any(tmp_path.iterdir())
        train.main(["--out", str(tmp_path / "digits_generator.npz")] + options)
    finally:
        torch.set_num_threads(before)
    path = tmp_path / "digits_discriminator.npz"
    _, args, meta = read_weights(path)
    _, _, g_meta = read_weights(tmp_path / "digits_generator.npz")
    assert args == dict(channels=8, resolution=16) and meta["step"] == 2 and meta["options"] == g_meta["options"]
    assert load_discriminator(path, device="cpu")(torch.zeros(4, 1, 16, 16)).shape == (4, 1)


@pytest.fixture(scope="module")
def D():
    return load_discriminator(device="cpu")


def test_discriminator_weights_are_plain_arrays_saved_with_the_generator():
    assert DISCRIMINATOR_WEIGHTS.stat().st_size < 3e6
    with np.load(DISCRIMINATOR_WEIGHTS, allow_pickle=False) as data:  # raises if any entry needs pickle
        assert all(data[name].dtype != object for name in data.files)
        args = json.loads(str(data["__args__"]))
        meta = json.loads(str(data["__meta__"]))
    assert args == dict(channels=32, resolution=16)
    _, _, g_meta = read_weights(GENERATOR_WEIGHTS)
    # The pair comes from one training run: same options, same step.
    assert meta["script"] == g_meta["script"] == "scripts/train_digits_gan.py"
    assert (meta["options"], meta["step"]) == (g_meta["options"], g_meta["step"])


def test_discriminator_scores_real_digits_above_noise(D):
    images, _ = digit_images(16)  # the training data: 8x8 digits, bilinear to 16x16, [-1, 1]
    real = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:256]]
    noise = torch.rand(256, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_logits, noise_logits = D(real, None), D(noise, None)
    assert real_logits.shape == noise_logits.shape == (256, 1)
    assert not D.training and not any(p.requires_grad for p in D.parameters())
    # Measured: means 0.37 and -1.16, each logit with sd 0.3-0.4; untrained Ds put the means within 0.05.
    assert float(real_logits.mean()) > float(noise_logits.mean()) + 1
    assert float((real_logits > noise_logits.median()).float().mean()) > 0.95
    for n in (1, 3, 8):
        assert D(real[:n]).shape == (n, 1)


def test_discriminator_weights_round_trip(D, tmp_path):
    _, args, meta = read_weights(DISCRIMINATOR_WEIGHTS)
    copy = save_weights(tmp_path / "d.npz", D, args, meta)
    with np.load(DISCRIMINATOR_WEIGHTS, allow_pickle=False) as a, np.load(copy, allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(load_discriminator(copy, device="cpu")(x), D(x))
