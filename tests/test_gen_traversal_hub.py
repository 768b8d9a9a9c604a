"""gen_traversal_hub.py end to end on the embedded network and genuine tiny pickles: strips, latents, errors.

Every strip cell is checked against an independent render of its latent (ws rows set by the layer rule, the
network's own synthesis forward); the centre column against gen_images_hub.py's and, with STYLEGAN3_DIR set,
the official gen_images.py's image of the seed; the local basis against the SVD of the explicit Jacobian of
the block's activation (a forward hook on a full synthesis call).
"""

import json
import hashlib

import numpy as np
import pytest
import torch

import tiny_networks
from test_gen_images_hub import (command_runner, load_script, official_image, png, reference_m, reference_w,
                                 spectrum)
from test_partial import activation, ws_of

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = tiny_networks.REPO_ROOT / "gen_traversal_hub.py"
cli = command_runner(load_script(SCRIPT, "generate_traversals"))
images_cli = command_runner(load_script())
OFFICIAL = tiny_networks.TESTS_DIR / "official_gen_images.py"

CELL, CAPTION, GAP = 64, 12, 2  # 16-px images enlarged 4x, a caption strip under each, grey gaps


def cells(strip, rows, cols):
    """The images of a strip, [row][column], each (64, 64, C), without captions."""
    strip = strip[:, :, None] if strip.ndim == 2 else strip
    assert strip.shape[:2] == (rows * (CELL + CAPTION + GAP) - GAP, cols * (CELL + GAP) - GAP)
    rh, cw = CELL + CAPTION + GAP, CELL + GAP
    return [[strip[r * rh:r * rh + CELL, c * cw:c * cw + CELL] for c in range(cols)] for r in range(rows)]


def enlarged(image):
    """A (H, W[, C]) uint8 image as the strip shows it: 16 px -> 64 px."""
    image = image[:, :, None] if image.ndim == 2 else image
    return image.repeat(4, 0).repeat(4, 1)


def uint8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def render(G, w0, w, rows):
    """gen_images.py's arithmetic on ws with ``rows`` set to ``w``, the others ``w0``."""
    with torch.no_grad():
        return uint8(G.synthesis(ws_of(G, torch.as_tensor(w0), torch.as_tensor(w), rows), noise_mode="const"))


def load_G(runtime, pkl):
    with open(pkl, "rb") as f:
        return runtime.legacy.load_network_pkl(f)["G_ema"]


def explicit_basis(G, w0, rows, block):
    """Singular values and right singular vectors of the Jacobian of the block's activation w.r.t. the moved
    rows, from torch.autograd.functional.jacobian (descending)."""
    fn = lambda w: activation(G, ws_of(G, w0, w, rows), block).reshape(-1)  # noqa: E731
    J = torch.autograd.functional.jacobian(fn, w0, vectorize=True, strategy="forward-mode").double()
    _, s, vh = torch.linalg.svd(J, full_matrices=False)
    return s.numpy(), vh.T.numpy()


# ------------------------------------------------------------------------------------------------------


def test_embedded_network_strips_and_latents(stylegan_runtime, tmp_path):
    from extensions.digits import load_generator
    out = tmp_path / "out"
    res = cli("--seeds", "0,3", "--directions", "0-2", "--steps", 2, "--step-size", 0.5, "--outdir", out)
    assert res.exit_code == 0, res.output
    assert "wrote 2 traversal(s) of 3 direction(s)" in res.output
    names = {"seed0000_traversal.png", "seed0000_traversal.npz", "seed0003_traversal.png", "seed0003_traversal.npz",
             "manifest.json"}
    assert {p.name for p in out.iterdir()} == names  # no staging or temporary files left
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["settings"]["block"] == "b8" and manifest["settings"]["rank"] == 9

    gen = images_cli("--seeds", "0,3", "--outdir", tmp_path / "images")
    assert gen.exit_code == 0, gen.output
    G = load_generator(device="cpu")
    for seed in (0, 3):
        data = np.load(out / f"seed{seed:04d}_traversal.npz", allow_pickle=False)
        assert data["curves"].shape == (3, 5, 64) and data["curves"].dtype == np.float32
        w = G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, 64)), None)[0, 0].numpy()
        assert np.array_equal(data["w"], w) and int(data["seed"]) == seed
        assert np.array_equal(data["z"], np.random.RandomState(seed).randn(64))
        assert (data["curves"][:, 2] == w).all()
        assert np.allclose(data["offsets"], [-1, -0.5, 0, 0.5, 1])
        steps = np.linalg.norm(np.diff(data["curves"], axis=1), axis=2)
        assert np.allclose(steps, 0.5, rtol=1e-4)  # unit directions, 0.5 apart
        sv = data["singular_values"]
        assert sv.shape == (9,) and (np.diff(sv) <= 0).all() and sv[-1] > 0
        basis = data["basis"]
        assert basis.shape == (64, 3) and np.allclose(basis.T @ basis, np.eye(3), atol=1e-5)
        assert data["directions"].tolist() == [0, 1, 2] and data["rows"].tolist() == list(range(6))
        meta = json.loads(str(data["meta"]))
        assert meta["render"]["method"] == "iterative" and meta["render"]["layers"] == "all" and meta["seed"] == seed
        # The first step of each direction follows the seed's basis vector.
        for i in range(3):
            assert np.allclose(data["curves"][i, 3] - w, 0.5 * basis[:, i], atol=1e-5)
            assert np.allclose(data["curves"][i, 1] - w, -0.5 * basis[:, i], atol=1e-5)
        grid = cells(png(out / f"seed{seed:04d}_traversal.png"), 3, 5)
        centre = enlarged(png(tmp_path / "images" / f"seed{seed:04d}.png"))
        for i in range(3):
            assert np.array_equal(grid[i][2], centre)
            for j in (0, 1, 3, 4):
                assert np.array_equal(grid[i][j], enlarged(render(G, w, data["curves"][i, j], range(6))))
                assert not np.array_equal(grid[i][j], centre)


def test_centre_is_gen_images_image_and_the_basis_is_the_jacobians(stylegan_runtime, tiny_conditional_pkl,
                                                                   tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_conditional_pkl, "--seeds", "4", "--class", 1, "--trunc", 0.7, "--layers", "coarse",
              "--method", "linear", "--directions", "0,2", "--steps", 2, "--step-size", 0.8, "--rank", 6,
              "--outdir", out)
    assert res.exit_code == 0, res.output
    G = load_G(stylegan_runtime, tiny_conditional_pkl)
    data = np.load(out / "seed0004_traversal.npz", allow_pickle=False)
    w = data["w"]
    c = torch.tensor([[0.0, 1.0, 0.0]])
    assert np.array_equal(w, G.mapping(torch.from_numpy(data["z"][None]), c, truncation_psi=0.7)[0, 0].numpy())
    assert data["rows"].tolist() == [0, 1, 2]
    # Local basis of the partial network up to b8 (auto) with rows 0-2 moved, from the explicit Jacobian.
    s, v = explicit_basis(G, torch.from_numpy(w), [0, 1, 2], "b8")
    np.testing.assert_allclose(data["singular_values"], s[:6], rtol=1e-3)
    for col, d in enumerate((0, 2)):
        assert abs(float(v[:, d] @ data["basis"][:, col])) > 0.999
    # Linear: w + k * step * v.
    k = np.arange(-2, 3, dtype=np.float32)[:, None]
    np.testing.assert_allclose(data["curves"], w + 0.8 * k * data["basis"].T[:, None], rtol=1e-6, atol=1e-6)
    grid = cells(png(out / "seed0004_traversal.png"), 2, 5)
    centre = enlarged(official_image(stylegan_runtime, tiny_conditional_pkl, 4, psi=0.7, class_idx=1))
    for i in range(2):
        assert np.array_equal(grid[i][2], centre)
        for j in (0, 1, 3, 4):
            assert np.array_equal(grid[i][j], enlarged(render(G, w, data["curves"][i, j], [0, 1, 2])))


def test_step_size_zero_gives_identical_columns(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "2", "--directions", "0-1", "--steps", 2, "--step-size", 0,
              "--outdir", out)
    assert res.exit_code == 0, res.output
    data = np.load(out / "seed0002_traversal.npz")
    assert (data["curves"] == data["w"]).all()
    grid = cells(png(out / "seed0002_traversal.png"), 2, 5)
    assert all(np.array_equal(cell, grid[0][2]) for row in grid for cell in row)


def test_hub_sampler_traverses_the_hub_seeds(stylegan_runtime, tiny_network_pkl, tmp_path):
    m = reference_m(reference_w(stylegan_runtime, tiny_network_pkl, range(60))[0])
    out = tmp_path / "out"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-59", "--sampler", "hubness", "--t", 0, "--num", 2,
              "--directions", "0", "--steps", 1, "--outdir", out)
    assert res.exit_code == 0, res.output
    hubs = spectrum(m)[:2]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"seed{s:04d}_traversal.png" for s in hubs)
    for seed in hubs:
        assert int(np.load(out / f"seed{seed:04d}_traversal.npz")["m"]) == m[seed]


def test_rerun_keeps_vouched_files_and_refuses_foreign_ones(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-1", "--directions", "0", "--steps", 1, "--outdir", out]
    assert cli(*args).exit_code == 0
    original = (out / "seed0001_traversal.png").read_bytes()
    (out / "seed0001_traversal.png").write_bytes(original[:50])  # damaged: computed again
    res = cli(*args)
    assert res.exit_code == 0 and "wrote 1 traversal(s)" in res.output and "kept 1 already there" in res.output
    assert (out / "seed0001_traversal.png").read_bytes() == original
    (out / "seed0007_traversal.npz").write_bytes(b"not ours")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    res = cli(*args)
    assert res.exit_code == 1 and "seed0007_traversal.npz" in res.output and "--clean" in res.output
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    res = cli(*args[:-2], "--step-size", 0.25, "--outdir", out)
    assert res.exit_code == 1 and "step_size: 0.5 then, 0.25 now" in res.output
    res = cli(*args[:-2], "--step-size", 0.25, "--clean", "--outdir", out)
    assert res.exit_code == 0 and not (out / "seed0007_traversal.npz").exists()
    assert float(np.load(out / "seed0000_traversal.npz")["offsets"][-1]) == 0.25


def test_interrupted_run_leaves_complete_files_and_the_next_run_finishes(tiny_network_pkl, tmp_path, monkeypatch):
    from extensions.paths import traversal_cli
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-2", "--directions", "0", "--steps", 1, "--outdir", out]
    real, calls = traversal_cli.write_npz, []

    def write_then_stop(path, **arrays):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, **arrays)

    monkeypatch.setattr(traversal_cli, "write_npz", write_then_stop)
    res = cli(*args)
    assert res.exit_code == 130 and "Interrupted" in res.output
    assert not list(out.glob("seed*")) and not (out / "manifest.json").exists()
    monkeypatch.setattr(traversal_cli, "write_npz", real)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {f"seed{s:04d}_traversal.{e}" for s in range(3) for e in ("png", "npz")} \
        | {"manifest.json"}


def test_nan_network_is_one_line_and_writes_nothing(stylegan_runtime, tmp_path):
    data = tiny_networks.network_dict(seed=2)
    with torch.no_grad():
        data["G_ema"].synthesis.b8.conv0.weight[0, 0, 0, 0] = float("nan")
    pkl = tmp_path / "nan.pkl"
    import pickle
    pkl.write_bytes(pickle.dumps(data))
    res = cli("--network", pkl, "--seeds", "5", "--outdir", tmp_path / "out")
    assert res.exit_code == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "NaN or inf" in last and "seed 5" in last, res.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def generic_pkl(tmp_path_factory):
    return tiny_networks.write_generic_pickle(tmp_path_factory.mktemp("generic") / "generic.pkl", z_dim=8)


ERRORS = [
    (["--directions", "64"], "--directions 64 is beyond this network's W (64 dimensions: directions 0..63)"),
    (["--layers", "fine"], "--layers fine: this 16-px stylegan2 network has no fine layers"),
    (["--block", "b32"], "block 'b32' is not in this stylegan2 synthesis network"),
    (["--block", "b4", "--layers", "middle"], "which block b4 does not read"),
    (["--rank", "2", "--directions", "0-4"], "--rank 2 computes directions 0..1, but --directions asks for 4"),
    (["--rank", "65"], "--rank 65 is more than this network's W has (64 dimensions)"),
    (["--step-size", "-1"], "--step-size must be a finite number >= 0"),
    (["--step-size", "nan"], "--step-size must be a finite number >= 0"),
    (["--trunc", "inf"], "--trunc must be a finite number"),
    (["--trunc", "1e38"], "truncation psi of moderate size"),
    (["--sampler", "hubness", "--t", "1000"], "hubness sampler found no latents among"),
    (["--network", "{generic}"], "traversals in W need a stylegan2 or stylegan3 generator"),
    (["--network", "{cond}"], "give a class label with --class"),
    (["--outdir", "{generic}"], "exists and is not a directory"),
    (["--device", "cuda:0"], "CUDA is not available"),
]


@pytest.mark.parametrize("extra, message", ERRORS, ids=[m[:32] for _, m in ERRORS])
def test_bad_input_is_one_line_and_writes_nothing(extra, message, generic_pkl, tiny_conditional_pkl, tmp_path):
    if torch.cuda.is_available() and "cuda:0" in extra:
        pytest.skip("CUDA is available here")
    extra = [e.format(generic=generic_pkl, cond=tiny_conditional_pkl) for e in extra]
    args = ["--seeds", "0-7", "--outdir", str(tmp_path / "out")]
    if "--outdir" in extra:
        args = args[:2]
    res = cli(*args, *extra)
    assert res.exit_code == 1, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last, res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, option", [(["--steps", "0"], "--steps"), (["--method", "curvy"], "--method"),
                                           (["--layers", "top"], "--layers"),
                                           (["--directions", "a-b"], "--directions"),
                                           (["--directions", "-1"], "'-1' is neither a direction nor a range")])
def test_bad_option_values_are_usage_errors(extra, option, tmp_path):
    res = cli("--seeds", "0", "--outdir", tmp_path / "out", *extra)
    assert res.exit_code == 2 and option in res.stderr and not (tmp_path / "out").exists()


def test_script_in_a_child_process(tmp_path):
    """As users run it: progress bars on stderr, files written."""
    res = tiny_networks.run_python([SCRIPT, "--seeds", "1", "--directions", "0-1", "--steps", 1, "--device", "cpu",
                                    "--outdir", tmp_path / "out"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "local bases" in res.stderr and "wrote 1 traversal(s)" in res.stdout
    assert (tmp_path / "out" / "seed0001_traversal.png").is_file()


@pytest.mark.needs_stylegan3
@pytest.mark.parametrize("arch, layers", [("stylegan3", "fine"), ("stylegan2", "middle")])
def test_centre_is_the_official_gen_images_image(stylegan3_checkout, tmp_path, arch, layers):
    pkl = tmp_path / f"{arch}.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2], arch=sys.argv[3])",
                                      stylegan3_checkout, pkl, arch])
    assert build.returncode == 0, build.stderr[-2000:]
    ours = tiny_networks.run_python([SCRIPT, "--network", pkl, "--seeds", "0-31", "--sampler", "hubness", "--t", 0,
                                     "--num", 2, "--trunc", 0.7, "--layers", layers, "--directions", "0-1",
                                     "--steps", 1, "--device", "cpu", "--outdir", tmp_path / "ours"],
                                    STYLEGAN3_DIR=stylegan3_checkout)
    assert ours.returncode == 0, ours.stderr[-2000:]
    seeds = sorted(int(p.name[4:8]) for p in (tmp_path / "ours").glob("*.png"))
    assert len(seeds) == 2
    official = tiny_networks.run_python([OFFICIAL, stylegan3_checkout, "--network", pkl, "--seeds",
                                         ",".join(map(str, seeds)), "--trunc", 0.7, "--outdir", tmp_path / "official"])
    assert official.returncode == 0, official.stderr[-2000:]
    for seed in seeds:
        grid = cells(png(tmp_path / "ours" / f"seed{seed:04d}_traversal.png"), 2, 3)
        centre = enlarged(png(tmp_path / "official" / f"seed{seed:04d}.png"))
        assert centre.std() > 0
        assert np.array_equal(grid[0][1], centre) and np.array_equal(grid[1][1], centre)
        assert not np.array_equal(grid[0][0], centre)
