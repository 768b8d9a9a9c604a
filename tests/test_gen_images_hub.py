"""gen_images_hub.py end to end on genuine tiny networks: the official images, hub values, outputs, errors.

The official gen_images.py procedure (load with legacy.load_network_pkl, z = RandomState(seed).randn(1,
z_dim), G(z, label, truncation_psi, noise_mode), x * 127.5 + 128 clamped to uint8) is written out in
``official_image`` for the stylegan2-ada runtime; with STYLEGAN3_DIR set, the checkout's own gen_images.py
is run as well.
"""

import csv
import hashlib
import importlib.util
import json
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import tiny_networks
from reference import brute_knn

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = tiny_networks.REPO_ROOT / "gen_images_hub.py"


def load_script(script=SCRIPT, command="generate_images"):
    """The click command of a root script, imported from its file."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, command)


def command_runner(command):
    """``cli(*args, env=None)`` running ``command`` in this process, on the CPU unless --device is given."""
    def cli(*args, env=None):
        args = [str(a) for a in args]
        if "--device" not in args:
            args += ["--device", "cpu"]
        return CliRunner().invoke(command, args, env=env, catch_exceptions=False)
    return cli


CLI = load_script()
cli = command_runner(CLI)


def official_image(runtime, pkl, seed, *, psi=1.0, class_idx=None, noise_mode="const"):
    with open(pkl, "rb") as f:
        G = runtime.legacy.load_network_pkl(f)["G_ema"]
    label = torch.zeros([1, G.c_dim])
    if G.c_dim != 0:
        label[:, class_idx] = 1
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    img = G(z, label, truncation_psi=psi, noise_mode=noise_mode)
    img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img[0].numpy()


def png(path):
    return np.asarray(PIL.Image.open(path))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def reference_w(runtime, pkl, seeds, class_idx=None):
    with open(pkl, "rb") as f:
        G = runtime.legacy.load_network_pkl(f)["G_ema"]
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    c = torch.zeros([len(seeds), G.c_dim])
    if class_idx is not None:
        c[:, class_idx] = 1
    return G.mapping(z, c)[:, 0].numpy(), z.numpy()


def reference_m(latents, k=5):
    idx, _ = brute_knn(latents, k)
    return np.bincount(idx.ravel(), minlength=len(latents))


def spectrum(m):
    return sorted(range(len(m)), key=lambda i: (-m[i], i))


# ------------------------------------------------------------------------------------------------------


def test_hub_seeds_render_the_official_images(stylegan_runtime, tiny_network_pkl, tmp_path):
    seeds = list(range(120))
    m = reference_m(reference_w(stylegan_runtime, tiny_network_pkl, seeds)[0])
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-119", "--sampler", "hubness", "--t", 0, "--num", 5,
              "--trunc", 0.7, "--outdir", out)
    assert res.exit_code == 0, res.output
    expected = [seeds[i] for i in spectrum(m)[:5]]
    assert sorted(p.name for p in out.glob("seed*.png")) == sorted(f"seed{s:04d}.png" for s in expected)
    for seed in expected:
        assert np.array_equal(png(out / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_network_pkl, seed, psi=0.7))
    rows = read_csv(out / "pool.csv")
    assert [int(r["seed"]) for r in rows] == seeds
    assert [int(r["m"]) for r in rows] == m.tolist()
    ranks = {i: r + 1 for r, i in enumerate(spectrum(m))}
    assert [int(r["rank"]) for r in rows] == [ranks[i] for i in range(120)]
    chosen = {int(r["seed"]): int(r["order"]) for r in rows if r["chosen"] == "1"}
    assert chosen == {s: i + 1 for i, s in enumerate(expected)}


def test_include_self_and_the_approximate_backend(stylegan_runtime, tiny_network_pkl, tmp_path):
    """--include-self counts as the authors' code does (each latent in its own list: +1, and k - 1 others per
    list); --knn-backend approx runs NN-descent and prints its measured recall."""
    seeds = list(range(120))
    m = reference_m(reference_w(stylegan_runtime, tiny_network_pkl, seeds)[0], k=4) + 1
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-119", "--sampler", "hubness", "--t", 0, "--num", 5,
              "--include-self", "--knn-backend", "approx", "--outdir", out)
    assert res.exit_code == 0, res.output
    assert [int(r["m"]) for r in read_csv(out / "pool.csv")] == m.tolist()
    assert sorted(p.name for p in out.glob("seed*.png")) == sorted(f"seed{seeds[i]:04d}.png" for i in spectrum(m)[:5])
    assert "approximate k-NN: recall@5 measured 1.000" in res.output  # 120 latents: NN-descent finds them all
    sampler = json.loads(str(np.load(out / "latents.npz", allow_pickle=False)["meta"]))["sampler"]
    assert sampler["include_self"] is True and sampler["backend"] == "approx"
    exact = cli("--network", tiny_network_pkl, "--seeds", "0-119", "--sampler", "hubness", "--t", 0, "--num", 5,
                "--outdir", tmp_path / "exact")
    assert exact.exit_code == 0 and "approximate" not in exact.output
    assert [int(r["m"]) for r in read_csv(tmp_path / "exact" / "pool.csv")] == reference_m(
        reference_w(stylegan_runtime, tiny_network_pkl, seeds)[0]).tolist()


def test_threshold_keeps_every_seed_at_or_above_it(stylegan_runtime, tiny_conditional_pkl, tmp_path):
    seeds = list(range(100, 180))
    w, _ = reference_w(stylegan_runtime, tiny_conditional_pkl, seeds, class_idx=2)
    m = reference_m(w)
    t = int(np.sort(m)[-6])
    out = tmp_path / "out"
    res = cli("--network", tiny_conditional_pkl, "--seeds", "100-179", "--class", 2, "--sampler", "hubness",
              "--t", t, "--outdir", out)
    assert res.exit_code == 0, res.output
    expected = [seeds[i] for i in spectrum(m) if m[i] >= t]
    data = np.load(out / "latents.npz", allow_pickle=False)
    assert data["seeds"].tolist() == expected and data["m"].tolist() == sorted(m[m >= t].tolist(), reverse=True)
    for seed in expected[:3]:
        assert np.array_equal(png(out / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_conditional_pkl, seed, class_idx=2))
    # Hub values depend on the class: another class chooses from other W latents.
    m0 = reference_m(reference_w(stylegan_runtime, tiny_conditional_pkl, seeds, class_idx=0)[0])
    assert not np.array_equal(m0, m)


def test_more_than_the_seeds_yield_draws_further_seeds(stylegan_runtime, tiny_network_pkl, tmp_path):
    w, _ = reference_w(stylegan_runtime, tiny_network_pkl, range(60))
    m0 = reference_m(w)
    t = int(np.sort(m0)[-3])  # pool 0 yields a few, so more pools are needed
    have = int((m0 >= t).sum())
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-59", "--sampler", "hubness", "--t", t,
            "--num", have + 4, "--pool-size", 40, "--outdir"]
    res = cli(*args, out)
    assert res.exit_code == 0, res.output
    assert "further pool(s) of 40 seeds (60-" in res.output and "the 60 given seeds yielded" in res.output
    rows = read_csv(out / "pool.csv")
    pools = sorted({int(r["pool"]) for r in rows})
    for p in pools[1:]:
        first = 60 + 40 * (p - 1)
        pool_rows = [r for r in rows if int(r["pool"]) == p]
        assert [int(r["seed"]) for r in pool_rows] == list(range(first, first + 40))
        mp = reference_m(reference_w(stylegan_runtime, tiny_network_pkl, range(first, first + 40))[0])
        assert [int(r["m"]) for r in pool_rows] == mp.tolist()
    data = np.load(out / "latents.npz", allow_pickle=False)
    assert len(data["seeds"]) == have + 4 and (data["m"] >= t).all()
    assert data["seeds"][:have].tolist() == [i for i in spectrum(m0)[:have]]
    assert (data["seeds"][have:] >= 60).all()
    again = cli(*args, tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load(tmp_path / "again" / "latents.npz")["seeds"], data["seeds"])


def test_random_sampler_is_the_official_behaviour(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "7,3,12", "--noise-mode", "none", "--outdir", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["seed0003.png", "seed0007.png", "seed0012.png"]
    for seed in (7, 3, 12):
        assert np.array_equal(png(out / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_network_pkl, seed, noise_mode="none"))
    assert [r["m"] for r in read_csv(out / "pool.csv")] == ["", "", ""]
    more = cli("--network", tiny_network_pkl, "--seeds", "7,3,12", "--num", 5, "--outdir", tmp_path / "more")
    assert more.exit_code == 0 and "drew 1 further pool(s) of 3 seeds (13-15)" in more.output
    assert np.load(tmp_path / "more" / "latents.npz")["seeds"].tolist() == [7, 3, 12, 13, 14]


def test_truncation_sampler(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "1-3", "--sampler", "truncation", "--trunc", 0.5,
              "--outdir", out)
    assert res.exit_code == 0, res.output
    for seed in (1, 2, 3):
        assert np.array_equal(png(out / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_network_pkl, seed, psi=0.5))


def test_low_quality_sampler_and_z_space(stylegan_runtime, tiny_network_pkl, tmp_path):
    seeds = list(range(50))
    w, z = reference_w(stylegan_runtime, tiny_network_pkl, seeds)
    for space, latents in (("w", w), ("z", z)):
        m = reference_m(latents, k=4)
        out = tmp_path / space
        res = cli("--network", tiny_network_pkl, "--seeds", "0-49", "--sampler", "hubness-lq", "--k", 4,
                  "--t-lq", 1, "--space", space, "--outdir", out)
        assert res.exit_code == 0, res.output
        data = np.load(out / "latents.npz", allow_pickle=False)
        low = sorted((i for i in range(50) if m[i] <= 1), key=lambda i: (m[i], i))
        assert data["seeds"].tolist() == low and data["m"].tolist() == [int(m[i]) for i in low]
        assert json.loads(str(data["meta"]))["space"] == space


def test_outputs_npz_grid_and_atomicity(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-39", "--sampler", "hubness", "--t", 0, "--num", 5,
              "--trunc", 0.8, "--grid", "--outdir", out)
    assert res.exit_code == 0, res.output
    data = np.load(out / "latents.npz", allow_pickle=False)
    assert set(data.files) == {"seeds", "z", "w", "m", "pool", "meta"}
    seeds = data["seeds"]
    assert np.array_equal(data["z"], np.stack([np.random.RandomState(s).randn(32) for s in seeds]))
    with open(tiny_network_pkl, "rb") as f:
        G = stylegan_runtime.legacy.load_network_pkl(f)["G_ema"]
    w = np.concatenate([G.mapping(torch.from_numpy(data["z"][i:i + 1]), torch.zeros(1, 0), truncation_psi=0.8)
                        [:, 0].numpy() for i in range(len(seeds))])
    assert data["w"].dtype == np.float32 and np.array_equal(data["w"], w)
    meta = json.loads(str(data["meta"]))
    assert meta["render"]["truncation_psi"] == 0.8 and meta["sampler"]["sampler"] == "hubness"
    grid = png(out / "grid.png")
    cell, gap, strip = 64, 2, 12  # 16x16 images enlarged 4x; grey gaps; a caption strip under each cell
    assert grid.shape == (2 * (cell + strip + gap) - gap, 3 * (cell + gap) - gap, 3)  # 5 images: 3 columns, 2 rows
    tiles = [grid[r * (cell + strip + gap):r * (cell + strip + gap) + cell, c * (cell + gap):c * (cell + gap) + cell]
             for r in range(2) for c in range(3)]
    assert (tiles[5] == 96).all()  # the unused cell shows the background
    assert (grid[cell + strip:cell + strip + gap] == 96).all()  # a gap between the rows
    for i, seed in enumerate(seeds):
        assert np.array_equal(tiles[i], png(out / f"seed{seed:04d}.png").repeat(4, 0).repeat(4, 1))
    caption = grid[cell:cell + strip, :cell]
    assert caption.max() > 200 and caption.min() == 0  # the seed is written under its cell
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary or staging files left
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"seed{s:04d}.png" for s in seeds} | {"pool.csv", "latents.npz", "grid.png"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]


def test_grid_takes_stylegan3s_wxh(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-5", "--grid", "2x2", "--outdir", out)
    assert res.exit_code == 0, res.output
    cell, gap, strip = 64, 2, 12
    assert png(out / "grid.png").shape == (2 * (cell + strip + gap) - gap, 2 * (cell + gap) - gap, 3)  # 4 of 6 shown
    for bad in ("0x3", "3", "axb", "2x2x2"):
        res = cli("--network", tiny_network_pkl, "--seeds", "0-5", "--grid", bad, "--outdir", tmp_path / bad)
        assert res.exit_code == 2 and "--grid" in res.stderr and not (tmp_path / bad).exists()


def test_rerun_keeps_vouched_images_and_refuses_other_settings(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-5", "--outdir", out]
    assert cli(*args).exit_code == 0
    original = (out / "seed0002.png").read_bytes()
    (out / "seed0002.png").write_bytes(original[:40])  # a truncated image is not kept
    (out / "seed0004.png").unlink()
    res = cli(*args)
    assert res.exit_code == 0 and "wrote 2 image(s)" in res.output and "kept 4 already there" in res.output
    assert (out / "seed0002.png").read_bytes() == original and (out / "seed0004.png").is_file()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    res = cli(*args[:-2], "--trunc", 0.5, "--outdir", out)
    assert res.exit_code == 1 and "holds images rendered with other settings" in res.output
    assert "truncation_psi: 1.0 then, 0.5 now" in res.output and "--clean" in res.output
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    res = cli(*args[:-2], "--trunc", 0.5, "--clean", "--outdir", out)
    assert res.exit_code == 0 and "wrote 6 image(s)" in res.output
    assert (out / "seed0002.png").read_bytes() != original


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    from extensions import render
    target = tmp_path / "seed0001.png"

    def explode(self, f, *a, **k):
        f.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(PIL.Image.Image, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        render.save_png(np.zeros((4, 4, 3), np.uint8), target)
    assert list(tmp_path.iterdir()) == []


def test_generic_generator_end_to_end(tmp_path):
    pkl = tiny_networks.write_generic_pickle(tmp_path / "generic.pkl", z_dim=8, c_dim=2, resolution=8)
    out = tmp_path / "out"
    res = cli("--network", pkl, "--seeds", "0-29", "--class", 1, "--sampler", "hubness", "--t", 0, "--num", 3,
              "--outdir", out)
    assert res.exit_code == 0, res.output
    with open(pkl, "rb") as f:
        G = pickle.load(f)["G_ema"].eval()
    z = np.stack([np.random.RandomState(s).randn(8) for s in range(30)])
    m = reference_m(z)
    data = np.load(out / "latents.npz", allow_pickle=False)
    assert data["seeds"].tolist() == spectrum(m)[:3] and "w" not in data.files
    label = torch.tensor([[0.0, 1.0]])
    for seed in data["seeds"]:
        img = G(torch.from_numpy(np.random.RandomState(seed).randn(1, 8)).float(), label)
        img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
        assert np.array_equal(png(out / f"seed{seed:04d}.png"), img)


# ------------------------------------------------------------------------------------------------------
# Errors: one line, non-zero exit, nothing written.


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_network_pkl, stylegan_runtime):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.pkl").write_text("not a pickle at all\n")
    data = tiny_network_pkl.read_bytes()
    (d / "truncated.pkl").write_bytes(data[: len(data) // 3])
    (d / "no_g_ema.pkl").write_bytes(pickle.dumps({"G": 1, "D": 2}))
    (d / "d_only.pkl").write_bytes(pickle.dumps({"G_ema": tiny_networks.build_discriminator()}))
    tiny_networks.write_generic_pickle(d / "generic.pkl", z_dim=8)
    (d / "a_file").write_text("x")
    return d


ERRORS = [
    (["--network", "{d}/missing.pkl"], "not found"),
    (["--network", "{d}/text.pkl"], "is not a network pickle or is truncated"),
    (["--network", "{d}/truncated.pkl"], "is not a network pickle or is truncated"),
    (["--network", "{d}/no_g_ema.pkl"], "holds no 'G_ema'"),
    (["--network", "{d}/d_only.pkl"], "so not a generator"),
    (["--network", "http://127.0.0.1:9/nets/tiny.pkl"], "on an offline machine copy the file to '{d}/cache/downloads/"),
    (["--stylegan3", "{d}/nowhere"], "stylegan3 code not found: --stylegan3"),
    (["--network", "{cond}"], "give a class label with --class"),
    (["--network", "{cond}", "--class", "3"], "class 3 is out of range"),
    (["--sampler", "truncation"], "--sampler truncation needs --trunc other than 1"),
    (["--sampler", "hubness", "--k", "10"], "--k 10 needs pools of more than 10 latents, but --seeds gives 8"),
    (["--sampler", "hubness", "--t", "1000"], "hubness sampler found no latents among "),
    (["--sampler", "hubness", "--t", "1000", "--num", "3"], "instead (--t 0 --num 3)"),
    (["--network", "{d}/generic.pkl", "--trunc", "0.7"], "truncation needs a mapping network"),
    (["--network", "{d}/generic.pkl", "--space", "w"], "space 'w' is not available"),
    (["--outdir", "{d}/a_file"], "exists and is not a directory"),
    (["--device", "cuda:0"], "CUDA is not available"),
]


def with_options(args, extra):
    """``args`` with the option/value pairs of ``extra`` replacing or joining its own."""
    args = list(args)
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    return args


@pytest.mark.parametrize("extra, message", ERRORS, ids=[m[:32] for _, m in ERRORS])
def test_bad_input_is_one_line_and_writes_nothing(extra, message, bad_files, tiny_network_pkl,
                                                  tiny_conditional_pkl, tmp_path):
    fill = dict(d=bad_files, cond=tiny_conditional_pkl)
    extra = [e.format(**fill) for e in extra]
    args = with_options(["--network", str(tiny_network_pkl), "--seeds", "0-7", "--outdir", str(tmp_path / "out")],
                        extra)
    if torch.cuda.is_available() and "cuda" in " ".join(extra):
        pytest.skip("CUDA is available here")
    res = cli(*args, env={"DNNLIB_CACHE_DIR": str(bad_files / "cache")})
    assert res.exit_code == 1, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message.format(**fill) in last, res.stderr
    assert not (tmp_path / "out").exists()


def test_bad_seeds_are_a_usage_error(tiny_network_pkl, tmp_path):
    res = cli("--network", tiny_network_pkl, "--seeds", "1,x", "--outdir", tmp_path / "out")
    assert res.exit_code == 2 and "'x' is neither a seed nor a range" in res.stderr
    res = cli("--network", tiny_network_pkl, "--seeds", "9-3", "--outdir", tmp_path / "out")
    assert res.exit_code == 2 and "is empty" in res.stderr
    assert not (tmp_path / "out").exists()


def test_script_without_checkout_or_pkg_resources(tiny_network_pkl, tmp_path, stylegan_runtime):
    """The script as users run it, in a child process: no checkout is an error; a modern stack works."""
    base = ["--network", tiny_network_pkl, "--seeds", "0-19", "--sampler", "hubness", "--t", 0, "--num", 3,
            "--device", "cpu"]
    lost = tiny_networks.run_python([SCRIPT, *base, "--outdir", tmp_path / "lost"])
    assert lost.returncode == 1 and "Error: " in lost.stderr and "STYLEGAN3_DIR" in lost.stderr
    assert not (tmp_path / "lost").exists()
    stack = tmp_path / "stack"
    stack.mkdir()
    from test_loader import SITECUSTOMIZE
    (stack / "sitecustomize.py").write_text(SITECUSTOMIZE)
    ok = tiny_networks.run_python([SCRIPT, *base, "--outdir", tmp_path / "ok"], prepend=[stack],
                                  STYLEGAN3_DIR=stylegan_runtime.root)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "hubness: chose 3 of 20 latents" in ok.stdout and "synthesis" in ok.stderr  # progress bars
    for seed in np.load(tmp_path / "ok" / "latents.npz")["seeds"]:
        assert np.array_equal(png(tmp_path / "ok" / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_network_pkl, int(seed)))


# ------------------------------------------------------------------------------------------------------
# Against the official gen_images.py of an NVlabs/stylegan3 checkout.


OFFICIAL = tiny_networks.TESTS_DIR / "official_gen_images.py"


@pytest.mark.needs_stylegan3
@pytest.mark.parametrize("arch, extra", [("stylegan3", ["--translate", "0.2,-0.1", "--rotate", "20"]),
                                         ("stylegan2", ["--class", "1"])])
def test_official_gen_images_renders_the_hub_seeds(stylegan3_checkout, tmp_path, arch, extra):
    pkl = tmp_path / f"{arch}.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2], arch=sys.argv[3], c_dim=int(sys.argv[4]))",
                                      stylegan3_checkout, pkl, arch, 3 if "--class" in extra else 0])
    assert build.returncode == 0, build.stderr[-2000:]
    hub = tiny_networks.run_python([SCRIPT, "--network", pkl, "--seeds", "0-63", "--sampler", "hubness", "--t", 0,
                                    "--num", 4, "--trunc", 0.7, *extra, "--device", "cpu", "--outdir", tmp_path / "hub"],
                                   STYLEGAN3_DIR=stylegan3_checkout)
    assert hub.returncode == 0, hub.stderr[-2000:]
    seeds = np.load(tmp_path / "hub" / "latents.npz")["seeds"].tolist()
    official = tiny_networks.run_python([OFFICIAL, stylegan3_checkout, "--network", pkl,
                                         "--seeds", ",".join(map(str, seeds)), "--trunc", 0.7, *extra,
                                         "--outdir", tmp_path / "official"])
    assert official.returncode == 0, official.stderr[-2000:]
    for seed in seeds:
        ours, theirs = png(tmp_path / "hub" / f"seed{seed:04d}.png"), png(tmp_path / "official" / f"seed{seed:04d}.png")
        assert ours.std() > 0 and np.array_equal(ours, theirs), seed
