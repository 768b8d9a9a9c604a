"""The second embedded network, 'digits-w512': stylegan2's Generator with z and w 512-d and an 8-layer
mapping (learning-rate multiplier 0.01), trained by the same seeded script as 'digits'."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from extensions.digits import digit_images, load_classifier, load_discriminator, load_generator, read_weights
from extensions.digits.network import EMBEDDED_NETWORKS, is_embedded
from tiny_networks import REPO_ROOT

W512 = "digits-w512"


def _train_script():
    spec = importlib.util.spec_from_file_location("train_digits_gan_w512", REPO_ROOT / "scripts" / "train_digits_gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_seeded_w512_training_run_reproduces_bit_for_bit(stylegan_runtime, tmp_path):
    train = _train_script()
    before = torch.get_num_threads()
    runs = []
    try:
        for run in ("a", "b"):
            out = tmp_path / run / "digits_w512_generator.npz"
            train.main(["--out", str(out), "--steps", "2", "--log-every", "2", "--batch", "8", "--channels", "8",
                        "--z-dim", "512", "--w-dim", "512"])
            runs.append((read_weights(out), read_weights(out.with_name("digits_w512_discriminator.npz"))))
    finally:
        torch.set_num_threads(before)
    ((g_a, args, meta), (d_a, _, _)), ((g_b, _, _), (d_b, _, _)) = runs
    assert (args["z_dim"], args["w_dim"], args["mapping_kwargs"]) == (512, 512, {"num_layers": 8})
    assert meta["step"] == 2 and meta["options"]["w_dim"] == 512
    for a, b in ((g_a, g_b), (d_a, d_b)):
        assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    G = load_generator(tmp_path / "a" / "digits_w512_generator.npz", device="cpu")
    assert G.mapping.fc0.bias_gain == pytest.approx(0.01)  # stylegan2's mapping lr multiplier


def test_w_dim_defaults_to_z_dim_so_the_digits_options_are_unchanged(stylegan_runtime, tmp_path):
    train = _train_script()
    before = torch.get_num_threads()
    try:
        train.main(["--out", str(tmp_path / "g.npz"), "--steps", "1", "--log-every", "1", "--batch", "8",
                    "--channels", "8", "--z-dim", "16", "--mapping-layers", "2"])
    finally:
        torch.set_num_threads(before)
    _, args, _ = read_weights(tmp_path / "g.npz")
    assert args["z_dim"] == args["w_dim"] == 16


committed = pytest.mark.skipif(not EMBEDDED_NETWORKS[W512][0].is_file(), reason="digits-w512 weights not committed")


@committed
def test_w512_weights_are_plain_arrays_loaded_without_pickle():
    args, steps = [], []
    for path in EMBEDDED_NETWORKS[W512]:
        with np.load(path, allow_pickle=False) as data:  # raises if any entry needs pickle
            assert all(data[name].dtype != object for name in data.files)
            args.append(json.loads(str(data["__args__"])))
            meta = json.loads(str(data["__meta__"]))
        assert meta["script"] == "scripts/train_digits_gan.py" and meta["options"]["w_dim"] == 512
        steps.append(meta["step"])
    g_args, d_args = args
    assert (g_args["z_dim"], g_args["w_dim"], g_args["mapping_kwargs"]["num_layers"]) == (512, 512, 8)
    assert d_args == dict(channels=32, resolution=16) and steps == [7000, 7000]  # G and D of one run


@committed
def test_w512_is_selected_by_name_and_draws_digits(stylegan_runtime):
    assert is_embedded(W512) and not is_embedded("digits-w513")
    G = load_generator(W512, device="cpu")
    D = load_discriminator(W512, device="cpu")
    assert (G.z_dim, G.w_dim, G.mapping.fc0.bias_gain) == (512, 512, pytest.approx(0.01))
    z = torch.from_numpy(np.random.RandomState(0).randn(64, 512)).float()
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
        scores = D(img).reshape(-1)
    judged = load_classifier(device="cpu").judge(img)
    assert img.shape == (64, 1, 16, 16) and torch.isfinite(scores).all()
    # A trained generator: recognisable digits, most classes present (no collapse onto a few).
    assert float(judged["confidence"].mean()) > 0.8
    assert len(set(judged["label"].tolist())) >= 8
    # ... nearer the real digits than noise is (the classifier alone is confident on noise too: ~0.85)
    real = digit_images(16)[0].reshape(-1, 256).double()
    noise = torch.rand(64, 1, 16, 16) * 2 - 1
    nearest = {name: float(torch.cdist(x.reshape(-1, 256).double(), real).min(1).values.mean())
               for name, x in (("generated", img), ("noise", noise))}
    assert nearest["generated"] < 0.5 * nearest["noise"], nearest
