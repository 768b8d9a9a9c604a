"""StudioGAN runs through a PyTorch-StudioGAN checkout (``STUDIOGAN_DIR``; the tests of its classes are
skipped without one): a tiny random-weight generator built from StudioGAN's own classes, saved as StudioGAN
saves it (its YAML and ``misc.save_model``'s ``model=G_ema-best-weights-step=N.pth``) and loaded like a real
run; every image against a direct call of StudioGAN's generator; hub seeds against an independent Z-space
k-NN; truncation against scipy's truncated normal; the one-line errors. The truncation map and the
evaluation hook's options need no checkout."""

from __future__ import annotations

import csv
import importlib
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

from extensions._checks import HubnessError
from extensions.generators import studiogan as S
from extensions.render import load_png
from extensions.stylegan.loader import load_network
from reference import brute_knn
from tiny_networks import settle_spectral_norms
from test_gen_images_hub import CLI, command_runner

pytestmark = pytest.mark.usefixtures("one_thread")
cli = command_runner(CLI)
CLASS = 1

CONFIG = """\
DATA:
  name: "CIFAR10"
  img_size: 32
  num_classes: 3
MODEL:
  backbone: "big_resnet"
  g_cond_mtd: "cBN"
  d_cond_mtd: "PD"
  apply_g_sn: True
  apply_d_sn: True
  apply_attn: True
  attn_g_loc: [2]
  attn_d_loc: [1]
  z_dim: 8
  g_shared_dim: 4
  g_conv_dim: {width}
  d_conv_dim: 4
  apply_g_ema: True
"""


@pytest.fixture(scope="module")
def modules():
    """StudioGAN's ``config``, ``models.model`` and ``utils.misc`` from the checkout of ``STUDIOGAN_DIR``."""
    return S.activate(S.find_checkout())


def tiny_generator(modules, config_path, seed):
    """StudioGAN's BigGAN ``Generator`` built from its classes as ``load_generator_discriminator`` builds it,
    random weights, spectral norms' u, v set to converged singular vectors (as after training)."""
    cfgs = modules["config"].Configurations(str(config_path))
    big_resnet = importlib.import_module("models.big_resnet")
    torch.manual_seed(seed)
    M = cfgs.MODEL
    G = big_resnet.Generator(z_dim=M.z_dim, g_shared_dim=M.g_shared_dim, img_size=cfgs.DATA.img_size,
                             g_conv_dim=M.g_conv_dim, apply_attn=M.apply_attn, attn_g_loc=M.attn_g_loc,
                             g_cond_mtd=M.g_cond_mtd, num_classes=cfgs.DATA.num_classes, g_init=M.g_init,
                             g_depth=M.g_depth, mixed_precision=False, MODULES=cfgs.MODULES, MODEL=M)
    settle_spectral_norms(G)
    return G.eval()


@pytest.fixture(scope="module")
def run(modules, tmp_path_factory):
    """A run folder: its YAML, ``model=G_ema-best-...`` (the generator evaluated) and ``model=G-best-...``
    (other weights, which the folder form must not pick)."""
    folder = tmp_path_factory.mktemp("studiogan") / "run"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(CONFIG.format(width=4))
    G = tiny_generator(modules, folder / "tiny.yaml", seed=0)
    modules["misc"].save_model(model="G_ema", when="best", step=40, ckpt_dir=str(folder),
                               states={"state_dict": G.state_dict()})
    other = tiny_generator(modules, folder / "tiny.yaml", seed=1)
    modules["misc"].save_model(model="G", when="best", step=40, ckpt_dir=str(folder),
                               states={"state_dict": other.state_dict(), "optimizer": {}})
    return folder, G


def direct_image(G, z, class_idx=CLASS) -> torch.Tensor:
    """StudioGAN's evaluation call ``G(z, labels, eval=True)`` on one latent (1, z_dim), float (3, H, W)."""
    with torch.no_grad():
        return G(torch.as_tensor(z, dtype=torch.float32), torch.tensor([class_idx]), eval=True)[0]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def seed_z(seed, z_dim=8) -> np.ndarray:
    return np.random.RandomState(seed).randn(1, z_dim)


def truncated(z, t) -> np.ndarray:
    """scipy's quantile map of the standard normal onto the normal truncated to [-t, t]."""
    return stats.truncnorm.ppf(stats.norm.cdf(z), -t, t)


@pytest.mark.needs_studiogan  # the checkout's classes
def test_run_loads_the_saved_generator(run):
    folder, G = run
    ours = load_network(str(folder), device="cpu")
    assert (ours.z_dim, ours.c_dim, ours.img_resolution, ours.backbone) == (8, 3, 32, "big_resnet")
    assert not ours.training
    theirs = G.state_dict()
    state = ours.studiogan.state_dict()
    assert state.keys() == theirs.keys() and all(torch.equal(state[k], theirs[k]) for k in theirs)
    pair = load_network(f"{folder / 'tiny.yaml'}:{folder / 'model=G-best-weights-step=40.pth'}", device="cpu")
    assert not torch.equal(pair.studiogan.linear0.weight_orig, G.linear0.weight_orig)  # the pair names G
    from extensions.generators import source_for
    assert source_for("tiny.yaml:G.pth").name == "studiogan"  # not module 'tiny.yaml', attribute 'G.pth'
    bound = ours.bind_class(2)  # the report's figures take unconditional generators
    assert bound.c_dim == 0 and bound.studiogan is ours.studiogan
    with torch.no_grad():
        assert torch.equal(bound(torch.from_numpy(seed_z(5)).float())[0], direct_image(G, seed_z(5), 2))
    with pytest.raises(HubnessError, match="class 3 is out of range: this network has 3 classes"):
        ours.bind_class(3)


@pytest.mark.needs_studiogan  # the checkout's classes
def test_random_sampler_renders_studiogans_images(run, tmp_path):
    folder, G = run
    out = tmp_path / "random"
    result = cli("--network", folder, "--seeds", "4,2", "--class", CLASS, "--outdir", out)
    assert result.exit_code == 0, result.output
    for seed in (4, 2):
        assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), to_uint8(direct_image(G, seed_z(seed))))


@pytest.mark.needs_studiogan  # the checkout's classes
def test_hub_seeds_and_truncated_images(run, tmp_path):
    folder, G = run
    seeds, t = np.arange(120), 0.7
    z = np.concatenate([seed_z(s) for s in seeds])
    idx, _ = brute_knn(z, 5)
    m = np.bincount(idx.ravel(), minlength=len(seeds))
    chosen = [int(seeds[i]) for i in sorted(range(len(seeds)), key=lambda i: (-m[i], i))[:3]]
    out = tmp_path / "hubs"
    result = cli("--network", folder, "--seeds", "0-119", "--sampler", "hubness", "--t", 0, "--num", 3,
                 "--class", CLASS, "--trunc", t, "--outdir", out)
    assert result.exit_code == 0, result.output
    with open(out / "pool.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["m"]) for r in rows] == m.tolist()
    assert sorted((int(r["order"]), int(r["seed"])) for r in rows if r["chosen"] == "1") == list(enumerate(chosen, 1))
    npz = np.load(out / "latents.npz")
    assert np.allclose(npz["z"], t * z[chosen])  # the samplers carry t * z (truncation toward the zero mean)
    for seed in chosen:
        zt = truncated(seed_z(seed), t)
        assert np.abs(zt).max() <= t
        expected = direct_image(G, zt)
        ours = load_png(out / f"seed{seed:04d}.png")
        # t * z passes through float32 before the map: the last bits of a latent may differ.
        assert np.abs(ours.astype(int) - to_uint8(expected).astype(int)).max() <= 1
    loaded = load_network(str(folder), device="cpu")
    zt = truncated(seed_z(chosen[0]), t)
    c = torch.zeros(1, 3)
    c[0, CLASS] = 1
    with torch.no_grad():
        img = loaded(torch.from_numpy(t * seed_z(chosen[0])).float(), c, t)[0]
    assert torch.allclose(img, direct_image(G, zt), atol=1e-5)
    assert np.allclose(loaded.model_latents([chosen[0]], t), zt, atol=1e-12)


def test_truncation_map_is_scipys_truncated_normal():
    z = torch.from_numpy(np.random.RandomState(0).randn(2000, 4))
    for t in (0.25, 1.5, 4.0):
        ours = S.truncate_normal(z, t).numpy()
        assert np.allclose(ours, truncated(z.numpy(), t), atol=1e-9)
        assert np.all(np.diff(ours[np.argsort(z[:, 0].numpy()), 0]) >= 0)  # monotone: seeds keep their order
    assert torch.equal(S.truncate_normal(z, 1.0), z)


@pytest.mark.needs_studiogan  # the checkout's classes
def test_one_line_errors(run, modules, tmp_path, monkeypatch):
    folder, G = run
    checkout = os.environ[S.ENV_VAR]
    yaml, ckpt = folder / "tiny.yaml", folder / "model=G_ema-best-weights-step=40.pth"
    wide = tmp_path / "wide.yaml"
    wide.write_text(CONFIG.format(width=8))
    plain = tmp_path / "model=G-best-weights-step=1.pth"
    torch.save(G.state_dict(), plain)  # a bare state dict (e.g. BigGAN's pytorch_model.bin)
    pickled = tmp_path / "model=G-best-weights-step=2.pth"
    pickled.write_bytes(pickle.dumps({"G_ema": torch.nn.Linear(2, 2)}))
    disc = tmp_path / "model=D-best-weights-step=40.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(2, 2)}}, disc)
    two = tmp_path / "two"
    shutil.copytree(folder, two)
    shutil.copy(wide, two)
    cases = [
        ((), "this network is conditional (3 classes): give a class label with --class (0..2)"),
        (("--class", 3), "class 3 is out of range: this network has 3 classes, use --class 0..2"),
        (("--class", 1, "--trunc", 0), "--trunc 0 is not a StudioGAN truncation threshold"),
        (("--class", 1, "--trunc", -1), "--trunc -1 is not a StudioGAN truncation threshold"),
        (("--class", 1, "--network", f"{wide}:{ckpt}"), f"{str(ckpt)!r} does not fit {str(wide)!r}: "
                                                        f"'linear0.bias' has shape (256,), the config builds (512,)"),
        (("--class", 1, "--network", f"{yaml}:{plain}"), "is not a StudioGAN checkpoint (a dict with 'state_dict'"),
        (("--class", 1, "--network", f"{yaml}:{pickled}"), "is not a StudioGAN checkpoint (UnpicklingError"),
        (("--class", 1, "--network", f"{yaml}:{disc}"), "1 unexpected (e.g."),
        (("--class", 1, "--network", yaml), "is a config alone; name the generator checkpoint it trained too"),
        (("--class", 1, "--network", two), "must hold exactly one config YAML (found: tiny.yaml, wide.yaml)"),
        (("--class", 1, "--studiogan", tmp_path / "nowhere"), "StudioGAN code not found: --studiogan"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        if "--network" not in args:
            args = ("--network", folder) + args
        result = cli(*args, "--seeds", "0-3", "--outdir", out)
        assert result.exit_code == 1, (args, result.output)
        line = result.output.strip().splitlines()[-1]
        assert line.startswith("Error: ") and message in line, (args, line)
        assert "Traceback" not in result.output
        assert not out.exists() or not any(out.iterdir()), args
        monkeypatch.setenv(S.ENV_VAR, checkout)  # --studiogan sets it; monkeypatch restores it after the test


@pytest.mark.needs_studiogan  # the checkout's classes
def test_missing_checkout_is_one_line(run, tmp_path, monkeypatch):
    folder, _ = run
    monkeypatch.delenv(S.ENV_VAR)
    out = tmp_path / "out"
    result = cli("--network", folder, "--seeds", "0-3", "--class", 1, "--outdir", out)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: StudioGAN code not found: STUDIOGAN_DIR is not set; pass --studiogan DIR or set STUDIOGAN_DIR to a "
        "clone of POSTECH-CVLab/PyTorch-StudioGAN (the folder that holds src/config.py and src/models/)")
    assert not out.exists()


STYLEGAN2_CONFIG = """\
DATA:
  name: "Tiny"
  img_size: 8
  num_classes: 3
MODEL:
  backbone: "stylegan2"
  g_cond_mtd: "cAdaIN"
  d_cond_mtd: "SPD"
  g_act_fn: "Auto"
  d_act_fn: "Auto"
  z_dim: 16
  w_dim: 16
  g_conv_dim: "N/A"
  d_conv_dim: "N/A"
  apply_g_ema: True
STYLEGAN:
  mapping_network: 2
  d_architecture: "orig"
  d_epilogue_mbstd_group_size: 4
"""


@pytest.fixture(scope="module")
def stylegan2_run(modules, tmp_path_factory):
    """A conditional StudioGAN StyleGAN2 run (8 px, z_dim = w_dim = 16), built by StudioGAN's
    ``load_generator_discriminator``, random weights and a random w_avg, saved by ``misc.save_model``."""
    folder = tmp_path_factory.mktemp("studiogan") / "stylegan2"
    folder.mkdir()
    (folder / "run.yaml").write_text(STYLEGAN2_CONFIG)
    cfgs = modules["config"].Configurations(str(folder / "run.yaml"))
    cfgs.RUN.mixed_precision = False
    torch.manual_seed(2)
    G = modules["model"].load_generator_discriminator(
        DATA=cfgs.DATA, OPTIMIZATION=cfgs.OPTIMIZATION, MODEL=cfgs.MODEL, STYLEGAN=cfgs.STYLEGAN,
        MODULES=cfgs.MODULES, RUN=cfgs.RUN, device="cpu", logger=None)[0]
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    modules["misc"].save_model(model="G_ema", when="current", step=7, ckpt_dir=str(folder),
                               states={"state_dict": G.state_dict()})
    return folder, G.eval().requires_grad_(False)


@pytest.mark.needs_studiogan  # the checkout's classes
def test_stylegan2_hub_seeds_in_w_and_images(stylegan2_run, tmp_path):
    folder, G = stylegan2_run
    seeds, psi = np.arange(60), 0.6
    c = torch.zeros(1, 3)
    c[0, CLASS] = 1
    with torch.no_grad():
        w = np.concatenate([G.mapping(torch.from_numpy(np.random.RandomState(s).randn(1, 16)).float(), c)[:, 0].numpy()
                            for s in seeds]).astype(np.float64)
    idx, _ = brute_knn(w, 5)
    m = np.bincount(idx.ravel(), minlength=len(seeds))
    order = sorted(range(len(seeds)), key=lambda i: (-m[i], i))[:2]
    out = tmp_path / "w"
    result = cli("--network", folder, "--seeds", "0-59", "--sampler", "hubness", "--t", 0, "--num", 2,
                 "--class", CLASS, "--trunc", psi, "--outdir", out)
    assert result.exit_code == 0, result.output
    with open(out / "pool.csv") as f:
        rows = list(csv.DictReader(f))
    # float32 mapping in batches vs one at a time: hub values may differ where distances tie to rounding.
    assert sum(int(r["m"]) != m[i] for i, r in enumerate(rows)) <= 2
    chosen = [int(r["seed"]) for r in sorted((r for r in rows if r["chosen"] == "1"), key=lambda r: int(r["order"]))]
    assert chosen == [int(seeds[i]) for i in order]
    for seed in chosen:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, 16)).float()
        with torch.no_grad():  # StudioGAN's Generator.forward: mapping with psi (w_avg), then synthesis
            img = G(z, c, truncation_psi=psi, noise_mode="const")[0]
        assert np.abs(load_png(out / f"seed{seed:04d}.png").astype(int) - to_uint8(img).astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------------
# The patch: --sampler and the hub options inside StudioGAN's evaluation.

HOOK_SCRIPT = """
import argparse, sys
import numpy as np, torch
from pathlib import Path
from extensions.generators import studiogan as S, studiogan_eval as hub
src = Path(sys.argv[1]) / "src"
modules = S.activate(src)
parser = argparse.ArgumentParser()
hub.add_arguments(parser)
hub.configure(parser.parse_args(["--sampler", "hubness", "--hub_t", sys.argv[3], "--hub_pool_size", "60"]))
import utils.sample as sample
assert sample.hub is hub  # the patched module took the hook
G = S.load_studiogan(sys.argv[2], "cpu", sys.argv[1])
cfgs = modules["config"].Configurations(str(next(Path(sys.argv[2]).glob("*.yaml"))))
cfgs.RUN.langevin_sampling = False
out = {}
for batch in range(2):
    images, labels = sample.generate_images(
        z_prior="gaussian", truncation_factor=0.8, batch_size=4, z_dim=8, num_classes=3, y_sampler="totally_random",
        radius="N/A", generator=G.studiogan, discriminator=None, is_train=False, LOSS=cfgs.LOSS, RUN=cfgs.RUN,
        MODEL=cfgs.MODEL, is_stylegan=False, generator_mapping=None, generator_synthesis=None, style_mixing_p=0.0,
        device="cpu", stylegan_update_emas=False, cal_trsp_cost=False)[:2]
    out[f"images{batch}"], out[f"labels{batch}"] = images.numpy(), labels.numpy()
out["seeds"] = np.array(hub.stream(8).taken)
np.savez(sys.argv[4], **out)
"""


@pytest.fixture(scope="module")
def patched_checkout(tmp_path_factory):
    from extensions import patches
    root = tmp_path_factory.mktemp("patched") / "PyTorch-StudioGAN"
    shutil.copytree(S.find_checkout(), root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    assert patches.run("apply", root, toolkit="studiogan") == [
        "studiogan.patch: applied: src/main.py (+11 -0 lines), src/utils/sample.py (+8 -0 lines)"]
    return root


@pytest.mark.needs_studiogan  # the checkout's classes
def test_patched_evaluation_renders_hub_latents(patched_checkout, run, tmp_path):
    import tiny_networks
    folder, G = run
    seeds, t = np.arange(60), 7
    idx, _ = brute_knn(np.concatenate([seed_z(s) for s in seeds]), 5)
    m = np.bincount(idx.ravel(), minlength=len(seeds))
    expected = seeds[m >= t][:8]  # every hub of the pool, in seed order
    assert len(expected) == 8
    script = tmp_path / "hook.py"
    script.write_text(HOOK_SCRIPT)
    result = tiny_networks.run_python([script, patched_checkout, folder, t, tmp_path / "out.npz"])
    assert result.returncode == 0, result.stderr
    out = np.load(tmp_path / "out.npz")
    assert out["seeds"].tolist() == expected.tolist()
    for batch in range(2):
        for row in range(4):
            seed = expected[4 * batch + row]
            label = int(out[f"labels{batch}"][row])
            direct = direct_image(G, truncated(seed_z(seed), 0.8), label).numpy()
            assert np.allclose(out[f"images{batch}"][row], direct, atol=1e-5), (batch, row)


def test_hook_options_and_unpatched_sampling(monkeypatch, capsys):
    import argparse
    from extensions.generators import studiogan_eval as hub
    monkeypatch.setenv(hub.ENV_VAR, "")  # configure() sets it: removed after the test
    parser = argparse.ArgumentParser()
    hub.add_arguments(parser)
    assert hub.configure(parser.parse_args([])) is None  # --sampler random: StudioGAN's own latents
    zs = torch.randn(3, 8)
    assert hub.eval_latents(zs, 0.5) is zs
    with pytest.raises(SystemExit) as exc:
        hub.configure(parser.parse_args(["--sampler", "hubness", "--hub_k", "0"]))
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: --hub_k 0 must be at least 1 and below --hub_pool_size 10000\n"
    config = hub.configure(parser.parse_args(["--sampler", "hubness-lq", "--hub_t_lq", "0", "--hub_pool_size", "30",
                                              "--hub_max_pools", "2"]))
    assert config["sampler"] == "hubness-lq"
    # Anti-hubs (m = 0) of the two pools 0-29 and 30-59, each pool with its own k-NN.
    m = np.concatenate([np.bincount(brute_knn(np.concatenate([seed_z(s) for s in range(a, a + 30)]), 5)[0].ravel(),
                                    minlength=30) for a in (0, 30)])
    wanted = [s for s in range(60) if m[s] == 0]
    got = hub.eval_latents(torch.zeros(len(wanted), 8, dtype=torch.float64)).numpy()
    assert np.array_equal(got, np.concatenate([seed_z(s) for s in wanted]))
    hub.configure(parser.parse_args(["--sampler", "hubness", "--hub_t", "1000", "--hub_pool_size", "30",
                                     "--hub_max_pools", "2"]))
    with pytest.raises(HubnessError, match="2 pools of 30 seeds yielded 0 of the 1 latents with m >= 1000 a batch"):
        hub.eval_latents(torch.zeros(1, 8))


class _Pixels(torch.nn.Module):
    """A 'detector' whose features are the uint8 pixels it is given."""

    def forward(self, images):
        return images.flatten(1).float()


@pytest.mark.needs_studiogan  # the checkout's classes
def test_metric_loop_renders_truncated_hub_latents(run):
    from extensions.metrics.generator_features import SamplerSpec, class_labels, generator_features
    folder, G = run
    t = 0.6
    ours = load_network(str(folder), device="cpu")
    spec = SamplerSpec("hubness", t=0, top=4, pool_size=60, psi=t)
    out = generator_features(ours, _Pixels(), 4, spec=spec, labels=class_labels(3, CLASS), batch_size=4)
    seeds = out.selection.seeds
    idx, _ = brute_knn(np.concatenate([seed_z(s) for s in range(60)]), 5)
    m = np.bincount(idx.ravel(), minlength=60)
    assert sorted(seeds.tolist()) == sorted(sorted(range(60), key=lambda i: (-m[i], i))[:4])
    for row, seed in enumerate(seeds):
        expected = to_uint8(direct_image(G, truncated(seed_z(int(seed)), t))).transpose(2, 0, 1).reshape(-1)
        assert np.abs(out.features[row].numpy() - expected).max() <= 1, seed
