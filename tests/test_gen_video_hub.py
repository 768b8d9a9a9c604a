"""gen_video_hub.py and extensions.paths.video on genuine tiny networks: the official frames, keyframes,
hub keyframes, strip and mp4 outputs, errors.

gen_video.py's procedure (seeds tiled to K * W * H and shuffled, W mapped in one batch, a scipy interp1d
per cell over the keyframes repeated five times, each cell synthesized alone, x * 127.5 + 128 clamped to
uint8 and tiled H rows x W columns) is written out in ``official_frames`` for the stylegan2-ada runtime;
with STYLEGAN3_DIR set, the checkout's own ``gen_interp_video`` is run as well, its writer capturing frames.
"""

import os
import pickle
import stat
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest
import scipy.interpolate
import torch

import tiny_networks
from reference import brute_knn
from test_gen_images_hub import command_runner, load_script

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = tiny_networks.REPO_ROOT / "gen_video_hub.py"


CLI = load_script(SCRIPT, "generate_video")
cli = command_runner(CLI)


def load_G(runtime, pkl):
    with open(pkl, "rb") as f:
        return runtime.legacy.load_network_pkl(f)["G_ema"]


def official_frames(runtime, pkl, seeds, *, grid=(1, 1), num_keyframes=None, w_frames=4, psi=1.0,
                    shuffle_seed=None, kind="cubic"):
    """gen_video.py's frames, computed here step by step, shape (frames, H * rows, W * cols, C)."""
    G = load_G(runtime, pkl)
    cols, rows = grid
    keyframes = num_keyframes or len(seeds) // (cols * rows)
    tiled = np.array([seeds[i % len(seeds)] for i in range(keyframes * cols * rows)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(seed=shuffle_seed).shuffle(tiled)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in tiled]))
    ws = G.mapping(z=z, c=None, truncation_psi=psi)
    per_cell = ws.reshape(rows, cols, keyframes, *ws.shape[1:]).numpy()
    splines = [[scipy.interpolate.interp1d(np.arange(-2 * keyframes, 3 * keyframes),
                                           np.concatenate([per_cell[r, c]] * 5), kind=kind, axis=0)
                for c in range(cols)] for r in range(rows)]
    frames = []
    for f in range(keyframes * w_frames):
        cells = [[G.synthesis(ws=torch.from_numpy(splines[r][c](f / w_frames))[None], noise_mode="const")[0]
                  for c in range(cols)] for r in range(rows)]
        # rows of cells side by side, stacked top to bottom
        image = torch.cat([torch.cat(row, dim=2) for row in cells], dim=1)
        frames.append((image * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(frames), tiled, G


def our_plan(pkl, seeds, **kwargs):
    from extensions.paths.video import plan_video
    from extensions.stylegan.loader import load_network
    G = load_network(str(pkl), device="cpu")
    return plan_video(G, seeds, network=str(pkl), **kwargs)


def png(path):
    return np.asarray(PIL.Image.open(path))


# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, grid, psi, shuffle", [("cubic", (2, 1), 0.7, 5), ("linear", (1, 2), 1.0, None)])
def test_spline_frames_equal_gen_videos(stylegan_runtime, tiny_network_pkl, kind, grid, psi, shuffle):
    seeds = [3, 1, 4, 1, 5, 9]
    expected, tiled, _ = official_frames(stylegan_runtime, tiny_network_pkl, seeds, grid=grid, psi=psi,
                                         shuffle_seed=shuffle, kind=kind, w_frames=5)
    plan = our_plan(tiny_network_pkl, seeds, grid=grid, truncation_psi=psi, shuffle_seed=shuffle, method=kind,
                    w_frames=5)
    ours = np.stack(list(plan.frames()))
    assert plan.seeds.tolist() == tiled.tolist()
    assert ours.shape == expected.shape == (15, 16 * grid[1], 16 * grid[0], 3)
    assert ours.std() > 0 and np.array_equal(ours, expected)


def test_num_keyframes_tiles_the_seeds(stylegan_runtime, tiny_network_pkl):
    expected, tiled, _ = official_frames(stylegan_runtime, tiny_network_pkl, [7, 8, 9], num_keyframes=5,
                                         w_frames=2)
    plan = our_plan(tiny_network_pkl, [7, 8, 9], num_keyframes=5, w_frames=2)
    assert plan.seeds.tolist() == [7, 8, 9, 7, 8] == tiled.tolist()
    assert np.array_equal(np.stack(list(plan.frames())), expected)


@pytest.mark.parametrize("method, space", [("slerp", "w"), ("linear", "w"), ("spherical-cauchy", "z"),
                                           ("cauchy", "z"), ("normalized", "z"), ("cubic", "z")])
def test_frames_at_keyframes_are_the_keyframe_images(stylegan_runtime, tiny_network_pkl, method, space):
    G = load_G(stylegan_runtime, tiny_network_pkl)
    seeds, psi, w_frames = [10, 11, 12, 13], 0.8, 3
    plan = our_plan(tiny_network_pkl, seeds, grid=(2, 1), method=method, space=space, truncation_psi=psi,
                    w_frames=w_frames)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    ws = G.mapping(z=z, c=None, truncation_psi=psi)
    for k in range(2):
        frame = plan.render(k * w_frames)
        for cell in range(2):
            if space == "w":  # mapped in one batch, as gen_video.py maps the keyframes
                w = ws[cell * 2 + k:cell * 2 + k + 1]
            else:  # each frame's Z mapped alone
                w = G.mapping(z[cell * 2 + k:cell * 2 + k + 1], None, truncation_psi=psi)
            img = (G.synthesis(w, noise_mode="const")[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)
            image = img.permute(1, 2, 0).numpy()
            cut = frame[:, cell * 16:(cell + 1) * 16]
            if method == "cubic":  # a spline through the knots, in floating point: close, not bit for bit
                assert np.abs(cut.astype(int) - image.astype(int)).max() <= 1
            else:
                assert np.array_equal(cut, image), (k, cell)
    # the in-between frames move away from the keyframes
    assert not np.array_equal(plan.render(1), plan.render(0))


def test_piecewise_path_follows_interpolate(stylegan_runtime, tiny_network_pkl):
    from extensions.paths import interpolate
    G = load_G(stylegan_runtime, tiny_network_pkl)
    seeds = [20, 21, 22]
    plan = our_plan(tiny_network_pkl, seeds, method="spherical-cauchy", space="z", w_frames=4)
    z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])
    # frame 9 = keyframe 2 -> keyframe 0 (the loop closes) at t = 1/4
    expected = interpolate(z[2], z[0], [0.25], method="spherical-cauchy")
    assert np.array_equal(plan.latents(9)[0].numpy(), expected)
    w = G.mapping(torch.from_numpy(expected), None)
    img = (G.synthesis(w, noise_mode="const")[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    assert np.array_equal(plan.render(9), img.numpy())


def test_hub_sampler_keyframes_are_the_largest_hubs(stylegan_runtime, tiny_network_pkl, tmp_path):
    from extensions.paths.video import sampled_keyframe_seeds
    from extensions.stylegan.adapter import make_adapter
    from extensions.stylegan.loader import load_network
    G = load_G(stylegan_runtime, tiny_network_pkl)
    seeds = list(range(60))
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    idx, _ = brute_knn(G.mapping(z, None)[:, 0].numpy(), 5)
    m = np.bincount(idx.ravel(), minlength=len(seeds))
    top = sorted(range(len(seeds)), key=lambda i: (-m[i], i))[:4]
    adapter = make_adapter(load_network(str(tiny_network_pkl), device="cpu"))
    chosen, selection = sampled_keyframe_seeds(adapter, str(tiny_network_pkl), seeds, "hubness", num=4, t=0)
    assert chosen.tolist() == [seeds[i] for i in top]
    assert selection.m.tolist() == [int(m[i]) for i in top]
    strip = tmp_path / "hubs.png"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-59", "--sampler", "hubness", "--t", 0,
              "--num-keyframes", 2, "--grid", "2x1", "--w-frames", 2, "--strip", strip)
    assert res.exit_code == 0, res.output
    assert f"keyframe seeds {seeds[top[0]]} (m {m[top[0]]})" in res.output
    plan = our_plan(tiny_network_pkl, [seeds[i] for i in top], grid=(2, 1), w_frames=2)
    assert np.array_equal(png(strip)[:32, :64], plan.render(0).repeat(2, 0).repeat(2, 1))


def test_strip_tiles_evenly_spaced_frames(stylegan_runtime, tiny_network_pkl, tmp_path):
    strip = tmp_path / "strip.png"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 6, "--interp", "slerp", "--strip", strip)
    assert res.exit_code == 0, res.output
    sheet = png(strip)
    # 8 cells of 16 px enlarged 4x (image_grid's 64-pixel minimum), 2-pixel gaps, a 12-pixel label strip
    assert sheet.shape == (64 + 12, 8 * 64 + 7 * 2, 3)
    plan = our_plan(tiny_network_pkl, [0, 1, 2, 3], method="slerp", w_frames=6)
    for i in range(8):  # t = i / 8 of 24 frames: frame 3 i
        cell = sheet[:64, i * 66:i * 66 + 64]
        assert np.array_equal(cell, plan.render(3 * i).repeat(4, 0).repeat(4, 1)), i
    assert sheet[64:, :64].max() > 0  # the label "t=0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strip.png"]


def test_mp4_decodes_with_every_frame(stylegan_runtime, tiny_network_pkl, tmp_path):
    import imageio
    out = tmp_path / "video.mp4"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--grid", "2x1", "--w-frames", 5, "--output", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
    reader = imageio.get_reader(str(out))
    try:
        decoded = np.stack([frame for frame in reader])
    finally:
        reader.close()
    assert decoded.shape == (10, 16, 32, 3)
    plan = our_plan(tiny_network_pkl, [0, 1, 2, 3], grid=(2, 1), w_frames=5)
    rendered = np.stack(list(plan.frames())).astype(float)
    # Lossy H.264 with 4:2:0 chroma: compare luma, close to the rendered frames, far from the others.
    luma = np.array([0.299, 0.587, 0.114])
    err = np.abs(decoded @ luma - rendered @ luma).mean()
    assert err < 4 and err < np.abs(decoded @ luma - np.roll(rendered, 1, axis=0) @ luma).mean() / 3


# ------------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("args, message", [
    (["--w-frames", 0], "--w-frames must be at least 1"),
    (["--seeds", "5"], "at least 2 keyframes"),
    (["--seeds", "0-2", "--grid", "2x1"], "do not fill a 2x1 grid"),
    (["--num-keyframes", 1], "--num-keyframes must be at least 2"),
    (["--num-keyframes", 99999999999], "99,999,999,999 keyframes, more than the 10,000,000 a video may have"),
    (["--w-frames", 999999999], "3,999,999,996 frames, more than the 2,147,483,647 a video may have"),
    (["--interp", "cauchy"], "use --space z"),
    (["--interp", "bezier"], "'bezier' is not one of"),
    (["--output", "{d}"], "is a folder"),
    (["--strip", None, "--output", None], "nothing to write"),
    (["--sampler", "truncation"], "needs --trunc other than 1"),
    (["--grid", "auto"], "--grid auto has no meaning"),
    (["--grid", "0x2"], "W, H >= 1"),
    (["--device", "nodevice"], "is not a torch device"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_network_pkl, tmp_path, args, message):
    d = tmp_path / "out"
    d.mkdir()
    base = {"--network": tiny_network_pkl, "--seeds": "0-3", "--w-frames": 2, "--output": d / "v.mp4",
            "--strip": d / "s.png"}
    given = dict(zip(args[::2], args[1::2]))
    merged = {**base, **given}
    argv = [x for k, v in merged.items() if v is not None for x in (k, str(v).format(d=d))]
    res = cli(*argv)
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and message in last, res.output
    assert "Traceback" not in res.output
    assert list(d.iterdir()) == []


def test_missing_ffmpeg_is_an_error(tiny_network_pkl, tmp_path):
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--output", tmp_path / "v.mp4",
              env={"IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg")})
    assert res.exit_code == 1 and "pip install imageio-ffmpeg" in res.output.splitlines()[-1], res.output
    assert list(tmp_path.iterdir()) == []


def test_nan_network_names_network_and_seeds(stylegan_runtime, tiny_network_pkl, tmp_path):
    with open(tiny_network_pkl, "rb") as f:
        data = pickle.load(f)
    G = data["G_ema"]
    with torch.no_grad():
        next(p for n, p in G.synthesis.named_parameters() if n.endswith("weight")).fill_(float("nan"))
    bad = tmp_path / "nan.pkl"
    with open(bad, "wb") as f:
        pickle.dump(data, f)
    out = tmp_path / "out"
    out.mkdir()
    res = cli("--network", bad, "--seeds", "4,7", "--w-frames", 2, "--output", out / "v.mp4", "--strip",
              out / "s.png")
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert "NaN or inf" in last and str(bad) in last and "4->7" in last, last
    assert list(out.iterdir()) == []


def test_interrupt_exits_130_and_leaves_nothing(tiny_network_pkl, tmp_path, monkeypatch):
    from extensions.paths import video
    original = video.VideoPlan.render

    def render(self, frame):
        if frame == 3:
            raise KeyboardInterrupt
        return original(self, frame)

    monkeypatch.setattr(video.VideoPlan, "render", render)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 4, "--output", tmp_path / "v.mp4")
    assert res.exit_code == 130
    assert "Interrupted" in res.output
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------------
# Against the official gen_video.py of an NVlabs/stylegan3 checkout.

_OFFICIAL = """
import sys, numpy as np, torch
import tiny_networks
checkout, pkl, out = sys.argv[1:4]
tiny_networks.use_runtime(checkout)
import gen_video, legacy
frames = []

class Capture:
    def append_data(self, frame):
        frames.append(np.array(frame))

    def close(self):
        pass

gen_video.imageio.get_writer = lambda *args, **kwargs: Capture()
with open(pkl, "rb") as f:
    G = legacy.load_network_pkl(f)["G_ema"]
gen_video.gen_interp_video(G=G, mp4=out + ".mp4", bitrate="12M", grid_dims=(2, 1), num_keyframes=3, w_frames=4,
                           seeds=[0, 5, 9, 2], shuffle_seed=3, psi=0.7, device=torch.device("cpu"))
from extensions.paths.video import plan_video
from extensions.stylegan.loader import load_network
plan = plan_video(load_network(pkl, stylegan3=checkout, device="cpu"), [0, 5, 9, 2], grid=(2, 1), num_keyframes=3,
                  w_frames=4, shuffle_seed=3, truncation_psi=0.7)
np.savez(out, official=np.stack(frames), ours=np.stack(list(plan.frames())))
"""


@pytest.mark.needs_stylegan3
@pytest.mark.parametrize("arch", ["stylegan3", "stylegan2"])
def test_official_gen_video_frames(stylegan3_checkout, tmp_path, arch):
    pkl = tmp_path / f"{arch}.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2], arch=sys.argv[3])",
                                      stylegan3_checkout, pkl, arch])
    assert build.returncode == 0, build.stderr[-2000:]
    run = tiny_networks.run_python(["-c", _OFFICIAL, stylegan3_checkout, pkl, tmp_path / "frames"],
                                   prepend=[stylegan3_checkout])
    assert run.returncode == 0, run.stderr[-3000:]
    frames = np.load(tmp_path / "frames.npz")
    assert frames["official"].shape == (12, 16, 32, 3)
    assert frames["ours"].std() > 0 and np.array_equal(frames["ours"], frames["official"])


def test_conditional_network_takes_a_class(stylegan_runtime, tiny_conditional_pkl, tmp_path):
    strip = tmp_path / "s.png"
    res = cli("--network", tiny_conditional_pkl, "--seeds", "0-1", "--w-frames", 2, "--strip", strip)
    assert res.exit_code == 1 and "--class" in res.output.strip().splitlines()[-1], res.output
    assert list(tmp_path.iterdir()) == []
    res = cli("--network", tiny_conditional_pkl, "--seeds", "0-1", "--w-frames", 2, "--interp", "slerp",
              "--class", 2, "--strip", strip)
    assert res.exit_code == 0, res.output
    G = load_G(stylegan_runtime, tiny_conditional_pkl)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (0, 1)]))
    c = torch.zeros([2, G.c_dim])
    c[:, 2] = 1
    ws = G.mapping(z, c)
    sheet = png(strip)
    for cell, frame in enumerate((0, 2)):  # 4 frames: t = 0, 1/4, 1/2, 3/4; frames 0 and 2 are the keyframes
        img = (G.synthesis(ws[cell:cell + 1], noise_mode="const")[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        expected = img.permute(1, 2, 0).numpy().repeat(4, 0).repeat(4, 1)
        assert np.array_equal(sheet[:64, 2 * cell * 66:2 * cell * 66 + 64], expected), cell


# ------------------------------------------------------------------------------------------------------
# --interp discriminator: discriminator-aware geodesics between the keyframes.


def uint8_image(G, w):
    """A W latent (1, num_ws, w_dim) synthesized alone, as uint8 (H, W, C)."""
    img = (G.synthesis(w, noise_mode="const")[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.permute(1, 2, 0).numpy()


def mapped_keys(G, seeds):
    """W of the keyframe seeds in one batch (as plan_video maps them), shape (n, w_dim)."""
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    return G.mapping(z, None)[:, 0]


def discriminator_plan(network, seeds, **kwargs):
    from extensions.paths.video import plan_video
    from extensions.stylegan.loader import load_discriminator_of, load_network
    G = load_network(str(network), device="cpu")
    D = load_discriminator_of(str(network), device="cpu")
    return plan_video(G, seeds, network=str(network), method="discriminator", discriminator=D, device="cpu",
                      **kwargs)


def check_segments(plan, G, G_fn, D_fn, keys, *, cell=(0, 0), strength=1.0, iterations=3):
    """Every segment of one cell is discriminator_path's result for its endpoints, and its frames render it."""
    from extensions.paths import discriminator_path
    K, w_frames = plan.num_keyframes, plan.w_frames
    for k in range(K):
        expected = discriminator_path(G_fn, D_fn, keys[k], keys[(k + 1) % K], steps=w_frames + 1, strength=strength,
                                      iterations=iterations, device="cpu")
        assert expected.best_iteration > 0                        # the optimiser moved the path
        assert torch.equal(plan.paths[cell[0], cell[1], k], expected.latents), k
        for j in range(w_frames):
            frame = plan.render(k * w_frames + j)
            h, w = frame.shape[0] // plan.grid[1], frame.shape[1] // plan.grid[0]
            cut = frame[cell[0] * h:(cell[0] + 1) * h, cell[1] * w:(cell[1] + 1) * w]
            image = uint8_image(G, expected.latents[j][None, None].repeat(1, G.num_ws, 1))
            assert np.array_equal(cut, image), (k, j)
            if j == 0:  # the keyframe's own image
                assert np.array_equal(cut, uint8_image(G, keys[k][None, None].repeat(1, G.num_ws, 1))), k


def test_discriminator_video_on_the_digits_network(stylegan_runtime, tmp_path):
    from extensions.paths import digits_functions
    seeds = [3, 8, 5]
    plan = discriminator_plan("digits", seeds, w_frames=4, d_iterations=3)
    assert plan.paths.shape == (1, 1, 3, 5, 64) and plan.num_frames == 12
    G_fn, D_fn, adapter = digits_functions(device="cpu")
    check_segments(plan, adapter.G, G_fn, D_fn, mapped_keys(adapter.G, seeds))
    # The CLI writes the same frames.
    strip, out = tmp_path / "s.png", tmp_path / "v.mp4"
    res = cli("--seeds", "3,8,5", "--interp", "discriminator", "--w-frames", 4, "--d-iterations", 3,
              "--strip-frames", 12, "--strip", strip, "--output", out)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "(12 frames)" in res.output
    sheet = png(strip)
    for f in range(12):
        cell = sheet[:64, f * 66:f * 66 + 64]
        assert np.array_equal(cell, plan.render(f)[:, :, 0].repeat(4, 0).repeat(4, 1)), f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "v.mp4"]


def test_discriminator_video_on_a_stylegan2_pickle(stylegan_runtime, tiny_network_pkl, tmp_path, monkeypatch):
    import imageio
    from extensions.paths import adapter_functions
    with open(tiny_network_pkl, "rb") as f:
        data = pickle.load(f)
    G, D = data["G_ema"], data["D"]
    seeds = [0, 1, 2, 3]   # 2 keyframes in each of the 2 cells: cell 0 has 0 -> 1, cell 1 has 2 -> 3
    plan = discriminator_plan(tiny_network_pkl, seeds, grid=(2, 1), w_frames=5, d_strength=2.0, d_iterations=4)
    assert plan.paths.shape == (1, 2, 2, 6, 32)
    G_fn, D_fn, _ = adapter_functions(G, D)
    keys = mapped_keys(G, seeds)
    check_segments(plan, G, G_fn, D_fn, keys[:2], cell=(0, 0), strength=2.0, iterations=4)
    check_segments(plan, G, G_fn, D_fn, keys[2:], cell=(0, 1), strength=2.0, iterations=4)
    out = tmp_path / "v.mp4"
    from extensions.stylegan import loader
    reads = []
    real_unpickle = loader._unpickle
    monkeypatch.setattr(loader, "_unpickle", lambda f, *a: (reads.append(f), real_unpickle(f, *a))[1])
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--grid", "2x1", "--interp", "discriminator",
              "--w-frames", 5, "--d-iterations", 2, "--output", out)
    assert res.exit_code == 0, res.output
    assert len(reads) == 1  # G and D from one read of the snapshot
    assert loader._read_once is None  # nothing kept after the load
    reader = imageio.get_reader(str(out))
    try:
        assert np.stack([frame for frame in reader]).shape == (10, 16, 32, 3)
    finally:
        reader.close()


def test_discriminator_frames_score_higher_than_linear_frames(stylegan_runtime):
    from extensions.paths import digits_functions
    G_fn, D_fn, adapter = digits_functions(device="cpu")
    seeds, w_frames = [11, 12], 6
    plan = discriminator_plan("digits", seeds, w_frames=w_frames, d_iterations=15)
    keys = mapped_keys(adapter.G, seeds)
    aware = torch.cat([plan.latents(f)[0][:, 0] for f in range(plan.num_frames)])
    t = torch.arange(w_frames, dtype=torch.float32)[:, None] / w_frames
    linear = torch.cat([keys[k] + t * (keys[1 - k] - keys[k]) for k in range(2)])   # 11 -> 12 -> 11, same frames
    assert torch.equal(aware[::w_frames], linear[::w_frames])                       # the same keyframes
    assert not torch.allclose(aware, linear, atol=1e-3)
    scores = {name: float(D_fn(G_fn(w)).mean()) for name, w in (("aware", aware), ("linear", linear))}
    assert scores["aware"] >= scores["linear"], scores


def test_discriminator_video_of_a_conditional_network_scores_the_class(stylegan_runtime, tiny_conditional_pkl):
    from extensions.paths import adapter_functions, discriminator_path
    from extensions.stylegan.adapter import make_adapter
    with open(tiny_conditional_pkl, "rb") as f:
        data = pickle.load(f)
    G, D = data["G_ema"], data["D"]
    labels = make_adapter(G).labels(2)
    plan = discriminator_plan(tiny_conditional_pkl, [4, 6], w_frames=3, d_iterations=3, labels=labels)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (4, 6)]))
    keys = G.mapping(z, labels.repeat(2, 1))[:, 0]
    G_fn, D_fn, _ = adapter_functions(G, D, class_idx=2)
    other = adapter_functions(G, D, class_idx=0)[1]
    expected = discriminator_path(G_fn, D_fn, keys[0], keys[1], steps=4, iterations=3, device="cpu")
    wrong = discriminator_path(G_fn, other, keys[0], keys[1], steps=4, iterations=3, device="cpu")
    assert torch.equal(plan.paths[0, 0, 0], expected.latents)
    assert not torch.equal(plan.paths[0, 0, 0], wrong.latents)   # D is asked about class 2, not class 0


def test_load_discriminator_of_returns_the_pickled_d(stylegan_runtime, tiny_network_pkl, tmp_path):
    from extensions.stylegan.loader import MissingDiscriminatorError, NetworkLoadError, load_discriminator_of
    with open(tiny_network_pkl, "rb") as f:
        data = pickle.load(f)
    D = load_discriminator_of(str(tiny_network_pkl), device="cpu")
    assert not D.training and not any(p.requires_grad for p in D.parameters())
    expected = data["D"].state_dict()
    assert D.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in D.state_dict().items())
    for name, content in (("g_only.pkl", {"G_ema": data["G_ema"]}), ("module.pkl", data["G_ema"])):
        path = tmp_path / name
        with open(path, "wb") as f:
            pickle.dump(content, f)
        with pytest.raises(MissingDiscriminatorError, match="holds no discriminator 'D'") as info:
            load_discriminator_of(str(path), device="cpu")
        assert isinstance(info.value, NetworkLoadError) and str(path) in str(info.value)
        assert "network-snapshot-*.pkl" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content", ["g_only", "module"])
def test_pickle_without_d_is_one_line_and_writes_nothing(stylegan_runtime, tiny_network_pkl, tmp_path, content):
    with open(tiny_network_pkl, "rb") as f:
        data = pickle.load(f)
    bad = tmp_path / f"{content}.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"G_ema": data["G_ema"]} if content == "g_only" else data["G_ema"], f)
    out = tmp_path / "out"
    out.mkdir()
    res = cli("--network", bad, "--seeds", "0-3", "--interp", "discriminator", "--w-frames", 4,
              "--output", out / "v.mp4", "--strip", out / "s.png")
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and "holds no discriminator 'D'" in last and str(bad) in last, res.output
    assert "--interp discriminator needs a training snapshot (network-snapshot-*.pkl)" in last
    assert "Traceback" not in res.output
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--d-strength", -1], "--d-strength must be a finite number >= 0"),
    (["--d-strength", "nan"], "--d-strength must be a finite number >= 0"),
    (["--d-iterations", -2], "--d-iterations must be an integer >= 0"),
    (["--w-frames", 1], "needs --w-frames 2 or more"),
    (["--space", "z"], "drop --space z"),
])
def test_bad_discriminator_options_are_one_line(tiny_network_pkl, tmp_path, args, message):
    d = tmp_path / "out"
    d.mkdir()
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--interp", "discriminator", "--output", d / "v.mp4",
              *args)
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and message in last, res.output
    assert list(d.iterdir()) == []


def dead_pid():
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    from extensions.render import TEMP_SUFFIX
    pid = dead_pid()
    stale = [tmp_path / f".v.mp4.{pid}-abc123{TEMP_SUFFIX}", tmp_path / f".s.png.{pid}-q9z{TEMP_SUFFIX}",
             tmp_path / f".old.mp4.{pid}-x1{TEMP_SUFFIX}"]
    for p in stale:
        p.write_bytes(b"half")
    live = tmp_path / f".v.mp4.{os.getpid()}-live{TEMP_SUFFIX}"  # a running process's: kept
    live.write_bytes(b"being written")
    (tmp_path / ".other.tmp.mp4").write_bytes(b"not ours")
    res = cli("--seeds", "0-1", "--w-frames", 2, "--interp", "linear", "--output", tmp_path / "v.mp4",
              "--strip", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in stale) and (tmp_path / ".other.tmp.mp4").read_bytes() == b"not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".other.tmp.mp4", live.name, "s.png", "v.mp4"])
    assert video_frames(tmp_path / "v.mp4") == 4


# ------------------------------------------------------------------------------------------------------
# Output files: containers, ffmpeg failures, one commit for the video and the strip, folders, same-file names.


def video_frames(path):
    """The frames imageio decodes from a video file (a complete, playable file), counted."""
    import imageio
    reader = imageio.get_reader(str(path))
    try:
        return sum(1 for _ in reader)
    finally:
        reader.close()


def snapshot(folder):
    """Every entry under ``folder``, hidden ones too: file bytes, link targets, folders."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                entries[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                entries[key] = ("dir",)
            else:
                with open(path, "rb") as f:
                    entries[key] = ("file", f.read())
    return entries


def filled_folder(tmp_path):
    """A folder that holds an earlier run's video and strip and a file of the user's."""
    d = tmp_path / "out"
    d.mkdir()
    (d / "v.mp4").write_bytes(b"an earlier video")
    (d / "s.png").write_bytes(b"an earlier strip")
    (d / "notes.txt").write_text("the user's")
    return d


def last_line(res):
    assert "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.output
    return res.output.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["v.mp4", "v.mov", "v.mkv", "V.MP4"])
def test_accepted_containers_hold_every_frame(tiny_network_pkl, tmp_path, name):
    d = filled_folder(tmp_path)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-1", "--w-frames", 3, "--output", d / name,
              "--strip", d / "s.png")
    assert res.exit_code == 0, res.output
    assert f"wrote {str(d / name)!r} (6 frames)" in res.output
    assert video_frames(d / name) == 6
    assert png(d / "s.png").shape == (64 + 12, 6 * 64 + 5 * 2, 3)
    names = {"notes.txt", "s.png", "v.mp4", name}  # V.MP4 is another file than the earlier v.mp4
    assert {p.name for p in d.iterdir()} == names  # no temporary file left


@pytest.mark.parametrize("name", ["x.webm", "x.png", "x.gif", "x.txt", "x.npy", "x.avi", "x"])
def test_other_video_extensions_are_refused_up_front(tiny_network_pkl, tmp_path, name):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    out = d / name
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", out, "--strip",
              d / "s.png")
    assert res.exit_code == 1
    what = f"a {out.suffix} file" if out.suffix else "a name without an extension"
    assert last_line(res) == (f"Error: --output {str(out)!r}: {what} cannot hold the H.264 video this command "
                              f"writes; give a name ending in .mp4, .mov or .mkv (e.g. --output video.mp4)")
    assert "Loading networks" not in res.output  # refused before any work
    assert snapshot(d) == before


def test_strip_must_be_a_png(tiny_network_pkl, tmp_path):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--strip", d / "s.jpg")
    assert res.exit_code == 1
    assert last_line(res) == (f"Error: --strip {str(d / 's.jpg')!r}: the contact sheet is a PNG image; give a name "
                              f"ending in .png (e.g. --strip strip.png)")
    assert snapshot(d) == before


FAKE_FFMPEG = '''#!{python}
import os, resource, subprocess, sys
real, mode = {real!r}, {mode!r}
args = sys.argv[1:]
if "rawvideo" in args:  # the encoding call; reading the file back runs the real ffmpeg
    if mode == "enospc":  # what a full disk ends in
        sys.stderr.write("[out#0/mp4 @ 0x5581] Error writing trailer: No space left on device\\n")
        sys.exit(228)
    if mode == "fsize":  # a file size limit: writes fail (EFBIG) as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
    if mode == "truncate":  # exit 0 with a file cut short (no moov atom)
        subprocess.call([real] + args)
        os.truncate(args[-1][len("file:"):], 300)
        sys.exit(0)
    if mode == "drop":  # read every frame, encode only 3 of them, exit 0
        frames = sys.stdin.buffer.read()
        args[-1:-1] = ["-frames:v", "3"]
        subprocess.run([real] + args, input=frames)
        sys.exit(0)
os.execv(real, [real] + args)
'''


def fake_ffmpeg(tmp_path, mode):
    """An IMAGEIO_FFMPEG_EXE that fails the encoding call as ``mode`` says."""
    import imageio_ffmpeg
    exe = tmp_path / f"ffmpeg-{mode}"
    exe.write_text(FAKE_FFMPEG.format(python=sys.executable, real=imageio_ffmpeg.get_ffmpeg_exe(), mode=mode))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.parametrize("mode, reason", [
    ("enospc", "ffmpeg could not write the video {out!r}: Error writing trailer: No space left on device (exit "
               "status 228); nothing was written: free space or fix permissions, or choose another --output"),
    ("fsize", "ffmpeg could not write the video {out!r}: Error writing trailer: File too large (exit status 229); "
              "nothing was written: free space or fix permissions, or choose another --output"),
    ("truncate", "the video ffmpeg wrote for {out!r} cannot be read back: moov atom not found (exit status 183); "
                 "nothing was written: free space or choose another --output"),
    ("drop", "ffmpeg wrote 3 of 12 frames into {out!r}; nothing was written: check the disk and ffmpeg ({exe}), or "
             "choose another --output"),
])
def test_failed_ffmpeg_is_one_line_and_leaves_the_folder_as_it_was(tiny_network_pkl, tmp_path, mode, reason):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    out, exe = d / "v.mp4", fake_ffmpeg(tmp_path, mode)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 3, "--output", out,
              "--strip", d / "s.png", env={"IMAGEIO_FFMPEG_EXE": str(exe)})
    assert res.exit_code == 1, res.output
    assert last_line(res) == "Error: " + reason.format(out=str(out), exe=exe)
    assert not any(line.startswith("wrote") for line in res.output.splitlines())
    # neither the strip (complete before the video failed) nor the video: the earlier files, no temporary ones
    assert snapshot(d) == before


def test_write_video_reports_ffmpegs_error_and_counts_frames(tmp_path):
    from extensions.paths.video_cli import VideoWriteError, count_video_frames, write_video
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)]
    with pytest.raises(VideoWriteError) as info:  # the real ffmpeg refuses H.264 in WebM
        write_video(frames, tmp_path / "x.tmp", "webm", name="x.webm")
    text = str(info.value)
    assert text.startswith("ffmpeg could not write the video 'x.webm': Only VP8 or VP9") and "\n" not in text, text
    assert write_video(iter(frames), tmp_path / "y.mkv", "matroska", num_frames=5) == 5
    assert count_video_frames(tmp_path / "y.mkv") == 5 == video_frames(tmp_path / "y.mkv")
    with pytest.raises(VideoWriteError, match="ffmpeg wrote 5 of 6 frames"):
        write_video(frames, tmp_path / "z.mp4", "mp4", num_frames=6)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoWriteError, match="cannot be read back"):
        count_video_frames(tmp_path / "empty.mp4")


def test_a_failed_strip_leaves_no_video_and_names_the_strip(tiny_network_pkl, tmp_path, monkeypatch):
    import errno
    from extensions.paths import video_cli

    class Full:
        def save(self, path, format=None):
            with open(path, "wb") as f:
                f.write(b"half a png")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(video_cli, "to_pil", lambda sheet: Full())
    d = filled_folder(tmp_path)
    before = snapshot(d)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", d / "v.mp4",
              "--strip", d / "s.png")
    assert res.exit_code == 1
    assert last_line(res) == (f"Error: cannot write {str(d / 's.png')!r}: No space left on device; free space or "
                              f"fix permissions, or choose another --output")
    assert snapshot(d) == before


def test_video_goes_to_a_hidden_temporary_file_first(tiny_network_pkl, tmp_path, monkeypatch):
    from extensions.paths import video_cli
    from extensions.render import TEMP_SUFFIX
    seen = []
    original = video_cli.write_video

    def write_video(frames, path, *args, **kwargs):
        seen.append((path, sorted(p.name for p in path.parent.iterdir())))
        return original(frames, path, *args, **kwargs)

    monkeypatch.setattr(video_cli, "write_video", write_video)
    out = tmp_path / "new" / "v.mp4"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-1", "--w-frames", 2, "--output", out)
    assert res.exit_code == 0, res.output
    (path, listing), = seen
    assert path.parent == out.parent and path.name.startswith(".v.mp4.") and path.name.endswith(TEMP_SUFFIX)
    assert listing == [path.name]  # the folder was made; the video is not there until it is complete
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.mp4"] and video_frames(out) == 4


def test_missing_folders_are_made_and_removed_again_on_failure(tiny_network_pkl, tmp_path):
    out, strip = tmp_path / "a" / "b" / "v.mp4", tmp_path / "a" / "c" / "s.png"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", out, "--strip", strip)
    assert res.exit_code == 0, res.output
    assert video_frames(out) == 8 and png(strip).shape[0] == 64 + 12
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.mp4"]
    bad = tmp_path / "x" / "y" / "v.mp4"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", bad, "--strip",
              tmp_path / "x" / "s.png", env={"IMAGEIO_FFMPEG_EXE": str(fake_ffmpeg(tmp_path, "enospc"))})
    assert res.exit_code == 1 and "No space left on device" in last_line(res)
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("not a folder")
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--output", tmp_path / "file" / "sub" / "v.mp4")
    assert res.exit_code == 1
    assert last_line(res) == (f"Error: --output {str(tmp_path / 'file' / 'sub' / 'v.mp4')!r}: "
                              f"{str(tmp_path / 'file')!r} is a file, not a folder; choose another path")
    assert (tmp_path / "file").read_text() == "not a folder" and not (tmp_path / "file.mp4").exists()


@pytest.mark.parametrize("case", ["same path", "folder link", "dangling link", "hard link"])
def test_video_and_strip_naming_one_file_are_refused(tiny_network_pkl, tmp_path, case):
    d = filled_folder(tmp_path)
    output, strip = d / "x.mp4", d / "x.mp4"
    if case == "folder link":
        (d / "alias").symlink_to(d)
        strip = d / "alias" / "x.mp4"
    elif case == "dangling link":  # the video does not exist yet
        (d / "link.png").symlink_to("x.mp4")
        strip = d / "link.png"
    elif case == "hard link":
        output.write_bytes(b"an earlier video")
        os.link(output, d / "hard.png")
        strip = d / "hard.png"
    before = snapshot(d)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", output, "--strip", strip)
    assert res.exit_code == 1
    assert last_line(res) == (f"Error: --output {str(output)!r} and --strip {str(strip)!r} name the same file; give "
                              f"the video and the contact sheet different names (e.g. --output video.mp4 --strip "
                              f"strip.png)")
    assert snapshot(d) == before


@pytest.mark.parametrize("value", ["-1", "99999999999", "4294967296"])
def test_shuffle_seed_out_of_range_is_a_usage_error(tiny_network_pkl, tmp_path, value):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--output", d / "v.mp4", "--shuffle-seed", value)
    assert res.exit_code == 2
    assert last_line(res) == f"Error: Invalid value for '--shuffle-seed': {value} is not in the range 0<=x<=4294967295."
    assert snapshot(d) == before


def test_largest_shuffle_seed_runs_and_the_library_refuses_others(tiny_network_pkl, tmp_path):
    from extensions._checks import HubnessError
    from extensions.paths.video import keyframe_seeds
    from extensions.paths.video_cli import render_video
    strip = tmp_path / "s.png"
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--strip", strip,
              "--shuffle-seed", 4294967295)
    assert res.exit_code == 0, res.output
    expected = np.arange(4)
    np.random.RandomState(4294967295).shuffle(expected)
    assert keyframe_seeds(range(4), shuffle_seed=4294967295).tolist() == expected.tolist()
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(HubnessError, match=r"--shuffle-seed must be an integer in 0\.\.4294967295"):
            keyframe_seeds(range(4), shuffle_seed=bad)
    # the patched gen_video.py's --shuffle-seed is a plain int: refused before the network loads
    with pytest.raises(HubnessError, match=r"--shuffle-seed must be an integer in 0\.\.4294967295 \(numpy "
                                           r"RandomState\), got -1"):
        render_video("no-such-network.pkl", [0, 1, 2, 3], -1, (1, 1), None, 2, 1.0, None, None, "cubic", None,
                     str(tmp_path / "t.png"), 8, None, "random", "cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


@pytest.mark.parametrize("value, message", [
    ("1e300", "--trunc 1e+300 overflows the network's float32 arithmetic; use a truncation psi of moderate size "
              "(e.g. 0.5 to 1)"),
    ("-1e39", "--trunc -1e+39 overflows the network's float32 arithmetic; use a truncation psi of moderate size "
              "(e.g. 0.5 to 1)"),
    ("inf", "--trunc must be a finite number, got inf"),
    ("-inf", "--trunc must be a finite number, got -inf"),
    ("nan", "--trunc must be a finite number, got nan"),
])
def test_bad_trunc_is_one_line(tiny_network_pkl, tmp_path, value, message):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--w-frames", 2, "--output", d / "v.mp4",
              "--strip", d / "s.png", "--trunc", value)
    assert res.exit_code == 1
    assert last_line(res) == f"Error: {message}"
    assert snapshot(d) == before


def test_an_overflowing_trunc_is_named_before_a_broken_network(tmp_path):
    d = filled_folder(tmp_path)
    before = snapshot(d)
    res = cli("--seeds", "0-3", "--w-frames", 2, "--output", d / "v.mp4", "--trunc", "1e38")  # the embedded network
    assert res.exit_code == 1
    assert last_line(res).startswith("Error: network 'digits' renders NaN or inf pixels at frame 0 between keyframe "
                                     "seeds 0->1; --trunc 1e+38 may move the latents too far")
    assert snapshot(d) == before


def test_a_killed_run_leaves_complete_files_and_the_next_cleans_up(tmp_path):
    from extensions.render import TEMP_SUFFIX
    out, strip = tmp_path / "v.mp4", tmp_path / "s.png"
    (tmp_path / "keep.txt").write_text("the user's")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--seeds", "0-3", "--w-frames", "5000", "--device", "cpu",
                             "--output", str(out), "--strip", str(strip)],
                            cwd=tiny_networks.REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        temps = []
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".v.mp4.") and p.stat().st_size > 0]
            if temps:  # ffmpeg is writing the video
                break
            time.sleep(0.05)
        assert temps, "the run never started writing its video"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "v.mp4" not in names and "s.png" not in names and "keep.txt" in names
    assert all(n.endswith(TEMP_SUFFIX) for n in names if n != "keep.txt")
    res = cli("--seeds", "0-1", "--w-frames", 2, "--output", out, "--strip", strip)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "s.png", "v.mp4"]
    assert video_frames(out) == 4
