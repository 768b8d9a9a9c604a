"""BigGAN through pytorch-pretrained-biggan: a tiny random-weight BigGAN-deep saved in the package's folder
format and loaded like a real one; hub seeds against an independent Z-space k-NN; every image against the
package's own call; the one-line errors."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import tiny_networks
from tiny_networks import settle_spectral_norms
from reference import brute_knn

biggan = pytest.importorskip("pytorch_pretrained_biggan")  # installed by `make` (setup.cfg)

from extensions.render import load_png  # noqa: E402
from extensions.stylegan.loader import load_network  # noqa: E402
from test_gen_images_hub import CLI, command_runner  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
cli = command_runner(CLI)
CLASS = 7


def tiny_biggan(seed: int = 0, channel_width: int = 8):
    """A random-weight BigGAN-deep, 128 px. The unconditional batch norm's weight and bias (uninitialised
    memory in the package) are set to 1 and 0, and spectral norm's u, v to converged singular vectors, as
    in a trained checkpoint: with the random ones the activations overflow to NaN."""
    torch.manual_seed(seed)
    config = biggan.BigGANConfig(output_dim=128, z_dim=128, class_embed_dim=128, channel_width=channel_width,
                                 num_classes=1000)
    model = biggan.BigGAN(config)
    with torch.no_grad():
        model.generator.bn.weight.fill_(1)
        model.generator.bn.bias.zero_()
        settle_spectral_norms(model)
    return model, config


def save_folder(folder, model, config):
    """The package's folder format: what ``BigGAN.from_pretrained(folder)`` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string())
    return folder


@pytest.fixture(scope="module")
def biggan_dir(tmp_path_factory):
    return save_folder(tmp_path_factory.mktemp("biggan") / "tiny-biggan", *tiny_biggan())


@pytest.fixture(scope="module")
def package_model(biggan_dir):
    """The package's own load of the folder, in eval mode (spectral norm's power iteration off)."""
    return biggan.BigGAN.from_pretrained(str(biggan_dir)).eval()


def package_image(model, seed, psi, class_idx=CLASS) -> np.ndarray:
    """The package's README procedure for one seed, converted as ``save_as_images`` converts it."""
    noise = torch.from_numpy(biggan.truncated_noise_sample(truncation=psi, batch_size=1, seed=seed))
    label = torch.from_numpy(biggan.one_hot_from_int(class_idx, batch_size=1))
    with torch.no_grad():
        out = model(noise, label, psi)
    return np.asarray(biggan.convert_to_images(out)[0])


def hub_values(seeds, psi, k=5) -> np.ndarray:
    """Independent hub values: numpy brute-force k-NN on the package's draws (paper convention)."""
    z = np.concatenate([biggan.truncated_noise_sample(truncation=psi, batch_size=1, seed=int(s)) for s in seeds])
    idx, _ = brute_knn(z, k)
    return np.bincount(idx.ravel(), minlength=len(seeds))


def top_seeds(seeds, m, num):
    order = sorted(range(len(seeds)), key=lambda i: (-m[i], i))  # largest m first, ties by lower index
    return [int(seeds[i]) for i in order[:num]]


def test_folder_loads_like_the_package(biggan_dir, package_model):
    G = load_network(str(biggan_dir), device="cpu")
    assert (G.z_dim, G.c_dim, G.img_resolution) == (128, 1000, 128) and not G.training
    ours, theirs = G.biggan.state_dict(), package_model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_hub_seeds_and_images_match_the_package(biggan_dir, package_model, tmp_path):
    seeds, psi = np.arange(150), 0.4
    m = hub_values(seeds, psi)
    # psi scales every latent alike: the k-NN lists, hence the hub values, are those of psi = 1.
    assert np.array_equal(m, hub_values(seeds, 1.0))
    out = tmp_path / "hubs"
    result = cli("--network", biggan_dir, "--seeds", "0-149", "--sampler", "hubness", "--t", "0", "--num", "3",
                 "--class", CLASS, "--trunc", psi, "--outdir", out)
    assert result.exit_code == 0, result.output
    chosen = top_seeds(seeds, m, 3)
    with open(out / "pool.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["m"]) for r in rows] == m.tolist()
    assert sorted((int(r["order"]), int(r["seed"])) for r in rows if r["chosen"] == "1") == list(enumerate(chosen, 1))
    for seed in chosen:
        assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), package_image(package_model, seed, psi))
    npz = np.load(out / "latents.npz")
    expected = np.concatenate([biggan.truncated_noise_sample(truncation=psi, batch_size=1, seed=s) for s in chosen])
    assert np.array_equal(npz["z"], expected.astype(np.float64))
    meta = json.loads(str(npz["meta"]))
    assert meta["generator"] == "BigGAN" and meta["space"] == "z"


def test_random_and_truncation_samplers_render_the_seeds(biggan_dir, package_model, tmp_path):
    for sampler, psi in (("random", 1.0), ("truncation", 0.7)):
        out = tmp_path / sampler
        result = cli("--network", biggan_dir, "--seeds", "5,3", "--sampler", sampler, "--trunc", psi, "--class", 3,
                     "--outdir", out)
        assert result.exit_code == 0, result.output
        for seed in (5, 3):
            assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), package_image(package_model, seed, psi, 3))


def test_model_names_load_from_the_package_cache(biggan_dir, package_model, tmp_path, monkeypatch):
    from pytorch_pretrained_biggan import model as package
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    name = "biggan-deep-128"
    for url, source in ((package.PRETRAINED_CONFIG_ARCHIVE_MAP[name], "config.json"),
                        (package.PRETRAINED_MODEL_ARCHIVE_MAP[name], "pytorch_model.bin")):
        # The package names a download sha256(url).sha256(etag); the name without the ETag part is found too.
        stem = hashlib.sha256(url.encode()).hexdigest()
        target = cache / (stem + ("." + "0" * 64 if source == "config.json" else ""))
        shutil.copy(biggan_dir / source, target)
    G = load_network(name, device="cpu")
    ours, theirs = G.biggan.state_dict(), package_model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # The manifest identifies the images by the files' content, under the name and from a folder alike.
    from extensions.stylegan.generate import network_identity
    digest = hashlib.sha256((biggan_dir / "pytorch_model.bin").read_bytes()).hexdigest()
    folder = network_identity(str(biggan_dir))
    assert folder["network"] == str(biggan_dir) and folder["weights_sha256"] == digest
    assert network_identity(name) == dict(folder, network=name)


def test_offline_names_the_files_and_the_folder(tmp_path, monkeypatch):
    import requests
    from pytorch_pretrained_biggan import file_utils, model as package

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 's3.amazonaws.com'")

    monkeypatch.setattr(file_utils.requests, "head", offline)
    monkeypatch.setattr(file_utils.requests, "get", offline)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    out = tmp_path / "out"
    result = cli("--network", "biggan-deep-256", "--seeds", "0-3", "--class", 1, "--outdir", out)
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: could not download biggan-deep-256 (ConnectionError")
    for url in (package.PRETRAINED_CONFIG_ARCHIVE_MAP["biggan-deep-256"],
                package.PRETRAINED_MODEL_ARCHIVE_MAP["biggan-deep-256"]):
        assert f"{url} as {cache / hashlib.sha256(url.encode()).hexdigest()}" in line
    assert not out.exists()


def test_one_line_errors(biggan_dir, tmp_path):
    other = tiny_biggan(channel_width=4)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"hidden_size": 768, "num_attention_heads": 12}))
    (bert / "model.safetensors").write_bytes(b"")  # no pytorch_model.bin: the config is still named first
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(biggan_dir / "config.json", config_only)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(biggan_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({"G_ema": torch.nn.Linear(2, 2)}))
    misfit = tmp_path / "misfit"
    save_folder(misfit, other[0], tiny_biggan()[1])  # channel width 4 weights, width 8 config
    cases = [
        ((), "this network is conditional (1000 classes): give a class label with --class (0..999)"),
        (("--class", 1000), "class 1000 is out of range: this network has 1000 classes, use --class 0..999"),
        (("--class", 1, "--trunc", 1.5), "--trunc 1.5 is outside BigGAN's truncation range (0, 1]"),
        (("--class", 1, "--trunc", 0), "--trunc 0 is outside BigGAN's truncation range (0, 1]"),
        (("--class", 1, "--network", "biggan-deep-1024"), "unknown BigGAN model 'biggan-deep-1024'; choose "
                                                          "biggan-deep-128, biggan-deep-256, biggan-deep-512"),
        (("--class", 1, "--network", config_only), "lacks pytorch_model.bin"),
        (("--class", 1, "--network", bert), "is not a BigGAN config (it has hidden_size, num_attention_heads"),
        (("--class", 1, "--network", pickled), "is not a PyTorch state dict"),
        (("--class", 1, "--network", misfit), "does not fit config.json"),
        (("--class", 1, "--network", biggan_dir / "pytorch_model.bin"),
         "the folder holding it and its config.json"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        if "--network" not in args:
            args = ("--network", biggan_dir) + args
        result = cli("--seeds", "0-3", "--outdir", out, *args)
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(lines) == 1, (args, result.output)
        assert message in lines[0], (message, lines[0])
        assert "Traceback" not in result.output and not out.exists()


def test_metric_loop_features_are_the_package_images(biggan_dir, package_model):
    from extensions.metrics.generator_features import SamplerSpec, class_labels, generator_features

    def detector(images):  # uint8 (n, 3, H, W) -> mean colour of 4x4 blocks, exactly representable
        assert images.dtype == torch.uint8
        return torch.nn.functional.avg_pool2d(images.double(), 32).flatten(1)

    G = load_network(str(biggan_dir), device="cpu")
    psi, pool = 0.5, np.arange(40)
    spec = SamplerSpec("hubness", psi=psi, top=3, pool_size=40, seed=0)
    # One image per synthesis call, as the package's call below (batching may round a pixel differently).
    res = generator_features(G, detector, 3, spec=spec, labels=class_labels(G.c_dim, CLASS), device="cpu",
                             batch_gen=1)
    chosen = top_seeds(pool, hub_values(pool, psi), 3)
    assert res.selection.seeds.tolist() == chosen
    images = np.stack([package_image(package_model, s, psi) for s in chosen])
    expected = detector(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert torch.equal(res.features, expected.float())  # the feature list keeps float32


def test_report_figures_use_the_package_draws(biggan_dir, tmp_path):
    from extensions.report import hubness_report
    from test_gen_images_hub import load_script

    G = load_network(str(biggan_dir), device="cpu").bind_class(CLASS)
    report = hubness_report(G, tmp_path / "report", pool_size=40, t=1000, grid=(2, 1), spectrum_rows=1,
                            spectrum_cols=2, device="cpu")
    pool = np.arange(40)
    assert report.summary["space"] == "z"
    assert report.summary["hubs"]["seeds"] == top_seeds(pool, hub_values(pool, 1.0), 2)
    assert report.summary["stats"]["max"] == int(hub_values(pool, 1.0).max())
    # The command needs the class of a conditional BigGAN, and writes nothing without it.
    main = command_runner(load_script(tiny_networks.REPO_ROOT / "hubness_report.py", "main"))
    result = main("--network", biggan_dir, "--pool-size", 40, "--outdir", tmp_path / "cli")
    assert result.exit_code == 1 and "give a class label with --class (0..999)" in result.output
    assert not (tmp_path / "cli").exists()
