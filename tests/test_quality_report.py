"""The quality benchmark (reduced size) and the report command on the embedded network."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from extensions.digits import load_generator
from extensions.hubness import compute_hubness
from extensions.pools import SeedPools
from extensions.report import FIGURES
from extensions.stylegan.adapter import make_adapter

from tiny_networks import REPO_ROOT


def _load_script(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality(stylegan_runtime):
    return _load_script("quality_benchmark", REPO_ROOT / "benchmarks" / "quality.py")


def test_quality_benchmark_reduced_produces_every_column(quality, tmp_path):
    out = tmp_path / "quality.md"
    raw = quality.main(["--seeds", "0,1", "--num", "64", "--pool-size", "400", "--t", "4,7", "--top", "40",
                        "--threads", "1", "--out", str(out)])
    labels = ["random", "truncation psi=0.9", "truncation psi=0.7", "truncation psi=0.5", "hubness t=4",
              "hubness t=7", "hubness top=40/pool", "hubness-lq t_lq=1"]
    assert list(raw["results"]) == labels
    table = out.read_text().splitlines()
    assert all(f" {col} |" in table[0] for col in quality.COLUMNS)
    for label in labels:
        row = next(line for line in table if line.startswith(f"| {label} |"))
        assert row.count("±") == len(quality.COLUMNS)
        for seed in ("0", "1"):
            r = raw["results"][label][seed]
            assert all(math.isfinite(r[col]) for col in quality.COLUMNS)
            assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["coverage"] <= 1
            assert 0.1 <= r["confidence"] <= 1 and r["FID"] >= 0
            assert sum(raw["class_histograms"][label][seed]) == 64
    for seed in ("0", "1"):
        assert raw["results"]["random"][seed]["W1 classes"] == 0
        hub, lq = raw["results"]["hubness t=7"][seed], raw["results"]["hubness-lq t_lq=1"][seed]
        assert hub["m_range"][0] >= 7 and lq["m_range"][1] <= 1
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["results"]["random"]["0"]["FID"] == raw["results"]["random"]["0"]["FID"]


def test_class_w1_is_the_distance_between_histograms(quality):
    assert quality.class_w1(np.array([0, 0, 1]), np.array([0, 0, 1])) == 0
    assert quality.class_w1(np.array([0, 0]), np.array([3, 3])) == pytest.approx(3)
    assert quality.class_w1(np.array([0, 9]), np.array([0, 0])) == pytest.approx(4.5)


def test_report_command_writes_every_figure(stylegan_runtime, tmp_path):
    report_cli = _load_script("hubness_report_cli", REPO_ROOT / "hubness_report.py")
    result = CliRunner().invoke(report_cli.main, ["--outdir", str(tmp_path), "--pool-size", "300", "--grid", "4x4",
                                                  "--t", "6", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # Progress goes to stderr: counted steps with their units, the one-shot k-NN with its elapsed time only.
    bars = result.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("mapping: 100%") and "300/300" in line and "latent/s" in line for line in bars)
    assert any(line.startswith("k-NN of 300 latents (k = 5): 00:") for line in bars)
    assert all("/s" not in line for line in bars if line.startswith("k-NN"))
    assert any(line.startswith("synthesis: 100%") and "img/s" in line for line in bars)
    assert "synthesis" not in result.stdout
    for name in FIGURES:
        with PIL.Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and min(im.size) >= 200
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["grid"] == [4, 4]
    # The counts in the report are those of the pool's hub values, recomputed here independently.
    adapter = make_adapter(load_generator(device="cpu"))
    pool = SeedPools(adapter.z_dim, 300, start=0, transform=adapter.transform("w"), device="cpu").draw(0)
    m = compute_hubness(pool.latents, 5, device="cpu").m
    assert summary["stats"]["max"] == int(m.max())
    assert summary["low_quality"]["count"] == int((m <= 1).sum())
    assert set(summary["low_quality"]["seeds"]) <= set(np.flatnonzero(m <= 1).tolist())
    hub_seeds = summary["hubs"]["seeds"]
    assert len(hub_seeds) == 16
    if summary["hubs"]["label"].startswith("hubs (m >= 6)"):
        assert summary["hubs"]["count"] == int((m >= 6).sum()) and min(m[hub_seeds]) >= 6
        hubs = np.flatnonzero(m >= 6)
    else:  # fewer than 16 latents reach t: the largest hub values stand in
        assert min(m[hub_seeds]) >= max(np.delete(m, hub_seeds))
        hubs = np.array(hub_seeds)
    # Fig. 9's numbers: mean distances to G.mapping.w_avg, from the pool's W latents (psi = 0.7 by default)
    dist = np.linalg.norm(pool.latents.double().numpy() - load_generator(device="cpu").mapping.w_avg.double().numpy(),
                          axis=1)
    means = list(summary["distance_to_mean"].values())
    assert list(summary["distance_to_mean"])[1:] == ["random latents", "truncated, psi = 0.7"]
    assert np.allclose(means, [dist[hubs].mean(), dist.mean(), 0.7 * dist.mean()], rtol=1e-5)
    assert means[0] < means[1]  # hubs lie nearer the mean latent than random latents (the figure's point)


def test_report_rejects_a_pool_too_small_for_its_figures(stylegan_runtime, tmp_path):
    report_cli = _load_script("hubness_report_cli", REPO_ROOT / "hubness_report.py")
    result = CliRunner().invoke(report_cli.main, ["--outdir", str(tmp_path), "--pool-size", "20", "--device", "cpu"])
    assert result.exit_code == 1
    assert "pool_size = 20 is too small" in result.output


def test_report_library_is_silent_without_progress(stylegan_runtime, tmp_path, capfd):
    from extensions.report import hubness_report
    report = hubness_report(load_generator(device="cpu"), tmp_path, pool_size=200, t=6, grid="3x2", spectrum_rows=2,
                            spectrum_cols=4, device="cpu")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert len(report.summary["hubs"]["seeds"]) == 6 and report.summary["grid"] == [3, 2]


@pytest.mark.parametrize("value, grid", [("8x8", (8, 8)), ("4x2", (4, 2)), (" 3X1 ", (3, 1)), ((5, 2), (5, 2)),
                                         ("auto", (8, 8))])
def test_grid_is_columns_by_rows(value, grid):
    from extensions.report import check_grid
    assert check_grid(value) == grid
