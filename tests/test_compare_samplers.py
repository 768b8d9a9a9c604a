"""The sampler comparison figure (compare_samplers.py, extensions.comparison) on the embedded network."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import signal

import numpy as np
import PIL.Image
import prdc
import pytest
import torch
from click.testing import CliRunner

from extensions.comparison import FIGURE, NUMBERS, DigitsJudge, compare_samplers
from extensions.digits import FeatureDetector, load_classifier, load_generator
from extensions.hubness import compute_hubness
from extensions.pools import SeedPools
from extensions.render import to_uint8
from extensions.samplers import make_sampler
from extensions.stylegan.adapter import make_adapter

from test_quality_report import (alive, contents, error_line, fill_disk_at, listing, run_signalled, temps,
                                 write_nan_wavg_pickle)
from tiny_networks import REPO_ROOT

POOL, GRID, T, T_LQ = 2000, (4, 4), 12, 1


def _load_script(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits(stylegan_runtime):
    G = load_generator(device="cpu")
    adapter = make_adapter(G)
    pools = SeedPools(adapter.z_dim, POOL, start=0, transform=adapter.transform("w"), device="cpu")
    return G, adapter, pools


@pytest.fixture(scope="module")
def judged(digits, tmp_path_factory):
    G, _, _ = digits
    out = tmp_path_factory.mktemp("compare")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small network runs faster on one thread of a busy CPU
    try:
        result = compare_samplers(G, out, pool_size=POOL, k=5, t=T, t_lq=T_LQ, psi=0.7, grid=GRID,
                                  judge=DigitsJudge(device="cpu"), device="cpu", title="digits")
    finally:
        torch.set_num_threads(threads)
    return result, out


def _render(adapter, latents):
    with torch.no_grad():
        return to_uint8(adapter.synthesize(latents, noise_mode="const"))


def test_each_panel_holds_the_samplers_choices_from_one_pool(digits, judged):
    _, adapter, pools = digits
    result, _ = judged
    samplers = [make_sampler("random"), make_sampler("truncation", psi=0.7, mean=adapter.mean_latent("w")),
                make_sampler("hubness", k=5, t=T), make_sampler("hubness-lq", k=5, t_lq=T_LQ)]
    assert [p.sampler["sampler"] for p in result.panels] == ["random", "truncation", "hubness", "hubness-lq"]
    m = compute_hubness(pools.draw(0).latents, 5, device="cpu").m
    for panel, sampler in zip(result.panels, samplers):
        every = sampler.sample(pools, None)  # all the sampler takes from pool 0
        first = sampler.sample(pools, 16)    # what gen_images_hub.py --num 16 renders
        assert np.array_equal(panel.seeds, every.seeds)
        assert np.array_equal(panel.seeds[:16], first.seeds) and first.records[0].index == 0
        assert np.array_equal(panel.m, m[panel.seeds])  # pool 0 holds seeds 0..POOL-1 at their own index
        assert np.array_equal(panel.images, _render(adapter, first.latents))
    assert min(result.panels[2].m) >= T and max(result.panels[3].m) <= T_LQ
    assert np.array_equal(result.panels[0].seeds, np.arange(POOL))


def test_numbers_equal_the_classifier_run_directly(digits, judged, stylegan_runtime):
    _, adapter, pools = digits
    result, out = judged
    quality = _load_script("quality_benchmark_cmp", REPO_ROOT / "benchmarks" / "quality.py")
    classifier = load_classifier(device="cpu")
    real = quality.real_features(FeatureDetector(classifier).eval()).numpy()
    samplers = [make_sampler("random"), make_sampler("truncation", psi=0.7, mean=adapter.mean_latent("w")),
                make_sampler("hubness", k=5, t=T), make_sampler("hubness-lq", k=5, t_lq=T_LQ)]
    for panel, sampler in zip(result.panels, samplers):
        images = _render(adapter, sampler.sample(pools, None).latents)
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 128) / 127.5
        verdict = classifier.judge(x)
        assert panel.scores["confidence"] == pytest.approx(float(verdict["confidence"].mean()), abs=1e-6)
        ref = prdc.compute_prdc(real, verdict["features"].numpy(), 3)
        assert panel.scores["precision"] == pytest.approx(ref["precision"], abs=1e-12)
    saved = json.loads((out / NUMBERS).read_text())
    for panel, entry in zip(result.panels, saved["panels"]):
        assert entry["confidence"] == panel.scores["confidence"] and entry["count"] == len(panel.seeds)
        assert entry["shown_seeds"] == panel.seeds[:16].tolist()
    with PIL.Image.open(out / FIGURE) as im:
        # four panels of 4x4 cells of 64 pixels (16-pixel digits enlarged 4x) with 4-pixel gaps
        assert im.format == "PNG" and im.size[0] >= 4 * (4 * 64 + 3 * 4)


def test_titles_without_a_judge_give_counts_and_hub_values(digits, tmp_path):
    G, _, _ = digits
    result = compare_samplers(G, tmp_path, pool_size=POOL, t=T, grid="4x2", device="cpu")
    assert all(p.scores == {} and len(p.images) == 8 for p in result.panels)
    hub = result.panels[2]
    title = hub.title(POOL)
    assert "confidence" not in title
    assert f"{len(hub.seeds)} of {POOL} latents; 8 shown, m {hub.m[:8].min()}-{hub.m[:8].max()}" in title
    assert json.loads((tmp_path / NUMBERS).read_text())["judge"] is None


def _cli(script, args):
    module = _load_script(script.replace(".py", "_cli"), REPO_ROOT / script)
    return CliRunner().invoke(module.main, [str(a) for a in args])


@pytest.mark.parametrize("script", ["compare_samplers.py", "hubness_report.py"])
@pytest.mark.parametrize("grid, message", [("8", "is not WxH"), ("8x", "is not WxH"), ("axb", "is not WxH"),
                                           ("8x8x8", "is not WxH"), ("-1x4", "is not WxH"),
                                           ("0x8", "W, H >= 1"), ("auto8", "is not WxH")])
def test_bad_grid_is_a_one_line_usage_error(script, grid, message, tmp_path, stylegan_runtime):
    res = _cli(script, ["--outdir", tmp_path / "out", "--grid", grid, "--device", "cpu"])
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--grid'") and message in last
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--pool-size", "100", "--grid", "16x8"], "--grid 16x8 needs 128 latents, but --pool-size is 100"),
    (["--pool-size", "300", "--t", "99"], "hubness, m >= 99 holds 0 of the 300 latents"),
    (["--pool-size", "300", "--t", "0", "--t-lq", "0", "--grid", "12x12"], "raise t_lq to"),
    (["--device", "nowhere"], "is not a torch device"),
    (["--trunc", "nan"], "--trunc nan is not a finite number"),
    (["--t", "inf"], "--t inf is not a finite number"),
])
def test_compare_errors_are_one_line_and_write_nothing(args, message, tmp_path, stylegan_runtime):
    res = _cli("compare_samplers.py", ["--outdir", tmp_path / "out", "--device", "cpu"] + args)
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("Error: ") and message in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_cli_shows_truthful_progress_on_stderr(tmp_path, stylegan_runtime):
    res = _cli("compare_samplers.py", ["--outdir", tmp_path / "out", "--pool-size", "300", "--t", "6",
                                       "--grid", "2x2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.stderr.replace("\r", "\n").splitlines()
    knn = [line for line in lines if line.startswith("k-NN of 300 latents (k = 5): ")]
    assert knn and all("/s" not in line for line in knn)  # a one-shot step shows elapsed time, no rate
    assert any(line.startswith("mapping: 100%") and "300/300" in line for line in lines)
    assert any(line.startswith("synthesis: 100%") and "img/s" in line for line in lines)
    assert "comparison.png" in res.stdout and "synthesis" not in res.stdout


@pytest.mark.parametrize("script", ["compare_samplers.py", "hubness_report.py"])
def test_outdir_under_a_file_fails_before_any_work(script, tmp_path, stylegan_runtime):
    (tmp_path / "a_file").write_text("x")
    res = _cli(script, ["--outdir", tmp_path / "a_file" / "out", "--device", "cpu"])
    assert res.exit_code == 1 and "lies under the file" in res.stderr.strip().splitlines()[-1]
    assert "mapping" not in res.stderr  # refused before the pool was drawn
    assert (tmp_path / "a_file").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_network_that_renders_nan_is_an_error_not_a_black_figure(digits, tmp_path):
    from extensions._checks import NonFiniteError
    from extensions.report import hubness_report
    G = copy.deepcopy(digits[0])
    with torch.no_grad():
        next(G.synthesis.parameters()).fill_(float("nan"))  # the mapping stays finite: hub values work
    with pytest.raises(NonFiniteError, match="NaN or inf in 8 image"):
        compare_samplers(G, tmp_path / "cmp", pool_size=300, t=6, grid="4x2", device="cpu")
    with pytest.raises(NonFiniteError, match="first seed"):
        hubness_report(G, tmp_path / "rep", pool_size=300, t=6, grid="4x2", device="cpu")
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "rep").exists()



# ------------------------------------------------------------------------ option ranges: one line naming the option

@pytest.mark.parametrize("script", ["compare_samplers.py", "hubness_report.py"])
@pytest.mark.parametrize("args, line", [
    (["--pool-size", "99999999999"],
     "Error: --pool-size 99999999999 is too large: the seeds of a pool must stay below 2**32; use --pool-size "
     "4294967296 or less (with --seed 0)"),
    (["--pool-size", "300", "--seed", "4294967200"],
     "Error: --seed 4294967200 is too large for --pool-size 300: the pool's seeds 4294967200..4294967499 must stay "
     "below 2**32; use --seed 4294966996 or less, or a smaller --pool-size"),
    (["--pool-size", "300", "--seed", "4294967296"],
     "Error: --seed 4294967296 is out of range: seeds lie in 0..4294967295 (below 2**32); use a smaller --seed"),
    (["--pool-size", "200", "--k", "200"],
     "Error: --k 200 must be below --pool-size 200: each latent's 200 nearest neighbours come from the other "
     "latents of the pool; lower --k or raise --pool-size"),
    (["PSI", "-1e300"],
     "Error: PSI -1e+300 overflows the network's float32 arithmetic; use a truncation psi of moderate size (e.g. 0.5 "
     "to 1)"),
])
def test_out_of_range_options_are_one_line_naming_the_option(script, args, line, tmp_path, stylegan_runtime):
    psi = "--trunc" if script == "compare_samplers.py" else "--psi"
    args, line = [psi if a == "PSI" else a for a in args], line.replace("PSI", psi)
    res = _cli(script, ["--outdir", tmp_path / "out", "--device", "cpu", *args])
    assert res.exit_code == 1
    assert error_line(res) == line
    assert "mapping" not in res.stderr and listing(tmp_path) == []  # refused before any work


def test_the_largest_seed_a_message_names_works(tmp_path, stylegan_runtime):
    res = _cli("hubness_report.py", ["--outdir", tmp_path / "out", "--pool-size", "200", "--seed", "4294967096",
                                     "--t", "5", "--grid", "2x2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["seed"] == 4294967096 and max(summary["hubs"]["seeds"]) <= 2 ** 32 - 1


# ------------------------------------------------------------------------ one result, all or nothing

SMALL = ["--pool-size", "300", "--t", "5", "--grid", "2x2", "--device", "cpu"]
RESULT = sorted([FIGURE, NUMBERS])


def test_compare_a_folder_in_the_way_writes_no_figure(tmp_path, stylegan_runtime):
    out = tmp_path / "out"
    (out / NUMBERS).mkdir(parents=True)
    res = _cli("compare_samplers.py", ["--outdir", out, *SMALL])
    assert res.exit_code == 1
    assert error_line(res) == (f"Error: cannot write '{out / NUMBERS}': a folder of that name is in the way; "
                               f"move it or choose another --outdir")
    assert listing(out) == [NUMBERS] and listing(out / NUMBERS) == []


def test_compare_a_full_disk_leaves_the_earlier_result_and_no_new_folder(tmp_path, stylegan_runtime, monkeypatch):
    out = tmp_path / "out"
    assert _cli("compare_samplers.py", ["--outdir", out, *SMALL]).exit_code == 0
    before = contents(out)
    assert sorted(before) == RESULT
    opened = fill_disk_at(monkeypatch, 2)  # the figure is written, its numbers find the disk full
    res = _cli("compare_samplers.py", ["--outdir", out, *SMALL, "--trunc", "0.5"])
    assert res.exit_code == 1 and len(opened) == 2
    assert error_line(res) == (f"Error: cannot write '{out / NUMBERS}': No space left on device; free space or fix "
                               f"permissions, or choose another --outdir")
    assert contents(out) == before and listing(out) == RESULT

    fill_disk_at(monkeypatch, 1)
    res = _cli("compare_samplers.py", ["--outdir", tmp_path / "new" / "deeper" / "out", *SMALL])
    assert res.exit_code == 1 and f"{FIGURE}': No space left on device" in error_line(res)
    assert listing(tmp_path) == ["out"]  # the folders the run made are gone again


# ------------------------------------------------------------------------ non-finite numbers

def test_compare_a_nan_mean_latent_blames_the_network(tmp_path, tmp_path_factory, stylegan_runtime):
    nan_wavg_pkl = write_nan_wavg_pickle(tmp_path_factory.mktemp("nan") / "nan_wavg.pkl")
    res = _cli("compare_samplers.py", ["--network", nan_wavg_pkl, "--outdir", tmp_path / "out", *SMALL])
    assert res.exit_code == 1
    assert error_line(res).startswith(f"Error: network '{nan_wavg_pkl}' has NaN or inf in its mean latent (w_avg)")
    assert "mapping" not in res.stderr and listing(tmp_path) == []


@pytest.mark.parametrize("psi, line", [
    ("1e38", r"Error: --trunc 1e\+38 moves truncated latents beyond float32's range \(for this pool, any psi above "
             r"about \S+ in magnitude does\); use a truncation psi of moderate size \(e.g. 0.5 to 1\)$"),
    ("5e37", r"Error: --trunc 5e\+37 makes the generator produce NaN or inf \(first seed 0\); use a truncation psi of "
             r"moderate size \(e.g. 0.5 to 1\)$"),
])
def test_compare_an_overflowing_trunc_names_trunc_not_the_network(psi, line, tmp_path, stylegan_runtime):
    res = _cli("compare_samplers.py", ["--outdir", tmp_path / "out", *SMALL, "--trunc", psi])
    assert res.exit_code == 1
    assert re.match(line, error_line(res)), error_line(res)
    assert "check the network" not in res.stderr and listing(tmp_path) == []


# ------------------------------------------------------------------------ signals and kills

def test_compare_interrupted_while_the_figure_renders_leaves_nothing(tmp_path, stylegan_runtime):
    res = run_signalled("compare_samplers.py", ["--outdir", tmp_path / "out", *SMALL], stylegan_runtime.root,
                        "SIGTERM", "figure", 1)
    assert res.returncode == 143 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert listing(tmp_path) == []


def test_compare_killed_mid_commit_then_rerun_leaves_one_complete_result(tmp_path, stylegan_runtime):
    from extensions.render import TEMP_RE
    root = stylegan_runtime.root
    out = tmp_path / "out"
    killed = run_signalled("compare_samplers.py", ["--outdir", out, *SMALL], root, "SIGKILL", "commit", 2)
    assert killed.returncode == -signal.SIGKILL
    left = [TEMP_RE.match(name) for name in temps(out)]
    assert len(left) == 1 and left[0] and not alive(int(left[0].group(1)))
    assert listing(out) == sorted([FIGURE] + temps(out))  # the figure was renamed, its numbers were not

    rerun = run_signalled("compare_samplers.py", ["--outdir", out, *SMALL], root)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert listing(out) == RESULT  # the killed run's temporary went

    other = tmp_path / "other"
    term = run_signalled("compare_samplers.py", ["--outdir", other, *SMALL], root, "SIGTERM", "commit", 1)
    assert term.returncode == 143 and "Traceback" not in term.stderr, term.stderr[-2000:]
    assert contents(other) == contents(out)  # complete, and equal to an uninterrupted run's
    with PIL.Image.open(other / FIGURE) as im:
        im.load()
    assert json.loads((other / NUMBERS).read_text())["pool_size"] == 300
