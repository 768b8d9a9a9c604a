"""The quality benchmark (reduced size) and the report command on the embedded network."""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys

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


# ------------------------------------------------------------------------ one result, all or nothing

REPORT_FILES = sorted(FIGURES + ("report.json",))
SMALL = ["--pool-size", "200", "--t", "5", "--grid", "2x2", "--device", "cpu"]


def listing(folder):
    """Every name in ``folder``, hidden ones included."""
    return sorted(p.name for p in folder.iterdir())


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def temps(folder):
    from extensions.render import TEMP_SUFFIX
    return [p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def report_cli(args):
    module = _load_script("hubness_report_cli", REPO_ROOT / "hubness_report.py")
    return CliRunner().invoke(module.main, [str(a) for a in args])


def error_line(res):
    """The one line of a failed run: stderr holds it alone (no traceback, no warnings)."""
    lines = res.stderr.replace("\r", "\n").strip().splitlines()
    bars = ("mapping", "k-NN", "synthesis", "figures")
    errors = [line for line in lines if line.strip() and not line.startswith(bars)]
    assert len(errors) == 1 and errors[0].startswith("Error: "), res.stderr
    assert "Traceback" not in res.output and "Warning" not in res.stderr
    return errors[0]


class _FullDisk:
    """A file whose first write stores half its data, then finds the disk full."""

    def __init__(self, f, name):
        self.f, self.name = f, name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device", self.name)


def fill_disk_at(monkeypatch, nth):
    """The ``nth`` file a commit writes (extensions.report.commit_files) finds the disk full."""
    import builtins

    import extensions.report
    opened = []

    def opener(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        if "w" in mode:
            opened.append(file)
            if len(opened) == nth:
                return _FullDisk(f, str(file))
        return f

    monkeypatch.setattr(extensions.report, "open", opener, raising=False)
    return opened


def test_report_a_folder_in_the_way_writes_no_figure(stylegan_runtime, tmp_path):
    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    res = report_cli(["--outdir", out, *SMALL])
    assert res.exit_code == 1
    assert error_line(res) == (f"Error: cannot write '{out / 'report.json'}': a folder of that name is in the way; "
                               f"move it or choose another --outdir")
    assert listing(out) == ["notes.txt", "report.json"] and listing(out / "report.json") == []


def test_report_a_full_disk_leaves_the_earlier_report_and_no_new_folder(stylegan_runtime, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert report_cli(["--outdir", out, *SMALL]).exit_code == 0
    before = contents(out)
    assert sorted(before) == REPORT_FILES
    opened = fill_disk_at(monkeypatch, 3)  # the first two figures are written, the third finds the disk full
    res = report_cli(["--outdir", out, *SMALL[:-2], "--t", "6", "--psi", "0.5", "--device", "cpu"])
    assert res.exit_code == 1 and len(opened) == 3
    assert error_line(res) == (f"Error: cannot write '{out / 'hubness_spectrum.png'}': No space left on device; "
                               f"free space or fix permissions, or choose another --outdir")
    assert contents(out) == before and listing(out) == REPORT_FILES  # no new figure, no temporary file

    opened.clear()  # a run that made its folder (and the parents) removes them again
    fill_disk_at(monkeypatch, 5)
    res = report_cli(["--outdir", tmp_path / "new" / "deeper" / "out", *SMALL])
    assert res.exit_code == 1 and "report.json': No space left on device" in error_line(res)
    assert listing(tmp_path) == ["out"]


def test_report_json_refuses_non_finite_numbers():
    from extensions._checks import NonFiniteError
    from extensions.report import json_bytes
    assert json.loads(json_bytes({"a": [1.5, 2]}, "report.json")) == {"a": [1.5, 2]}
    for bad in (float("nan"), float("inf"), np.float32("-inf")):
        with pytest.raises(NonFiniteError, match=r"report.json would hold .* in \['d'\]\['x'\]\[1\]"):
            json_bytes({"d": {"x": [0.0, bad]}}, "report.json")


def write_nan_wavg_pickle(path):
    """The tiny network with NaN in its mean latent (mapping.w_avg) only, as a pickle at ``path``."""
    import pickle

    import tiny_networks
    data = tiny_networks.network_dict(seed=0)
    data["G_ema"].mapping.w_avg.fill_(float("nan"))
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


@pytest.fixture(scope="module")
def nan_wavg_pkl(stylegan_runtime, tmp_path_factory):
    return write_nan_wavg_pickle(tmp_path_factory.mktemp("nan") / "nan_wavg.pkl")


def test_report_a_nan_mean_latent_is_an_error_not_a_nan_report(nan_wavg_pkl, tmp_path):
    res = report_cli(["--network", nan_wavg_pkl, "--outdir", tmp_path / "out", *SMALL])
    assert res.exit_code == 1
    assert error_line(res).startswith(f"Error: network '{nan_wavg_pkl}' has NaN or inf in its mean latent (w_avg)")
    assert "mapping" not in res.stderr and listing(tmp_path) == []  # refused before the pool was drawn
    # In Z the mean latent is the origin: the same network reports, with finite numbers only.
    res = report_cli(["--network", nan_wavg_pkl, "--space", "z", "--outdir", tmp_path / "z", *SMALL])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "z" / "report.json").read_text(), parse_constant=pytest.fail)
    assert all(math.isfinite(v) and v > 0 for v in summary["distance_to_mean"].values())


@pytest.mark.parametrize("psi, message", [
    ("1e38", r"Error: --psi 1e\+38 puts truncated latents up to \S+ from the mean latent, beyond float32's range "
             r"\(3.4e\+38\); use --psi of magnitude at most (\S+) for this network \(e.g. 0.5 to 1\)$"),
    ("-1e308", r"Error: --psi -1e\+308 overflows the network's float32 arithmetic; use a truncation psi of moderate "
               r"size \(e.g. 0.5 to 1\)$"),
    ("nan", r"Error: --psi nan is not a finite number$"),
])
def test_report_an_overflowing_psi_names_psi_and_writes_nothing(stylegan_runtime, tmp_path, psi, message):
    res = report_cli(["--outdir", tmp_path / "out", "--psi", psi, *SMALL])
    assert res.exit_code == 1
    found = re.match(message, error_line(res))
    assert found, error_line(res)
    assert listing(tmp_path) == []
    if found.groups():  # the range it names works
        limit = float(found.group(1))
        res = report_cli(["--outdir", tmp_path / "out", "--psi", f"{0.99 * limit:g}", *SMALL])
        assert res.exit_code == 0 and "Warning" not in res.stderr, res.output
        summary = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=pytest.fail)
        assert all(math.isfinite(v) for v in summary["distance_to_mean"].values())


# ------------------------------------------------------------------------ signals and kills

# Runs SCRIPT ARGS as `python SCRIPT ARGS` does, with a signal sent to itself at a chosen moment:
# HOOK=figure: at the AT-th figure saved (matplotlib's Figure.savefig);
# HOOK=commit: at the AT-th temporary file renamed into place (os.replace of a *.stylegan3-hubness.tmp).
_SIGNALLING = """
import os, runpy, signal, sys
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])
import matplotlib.figure, extensions.render as render
SIGNAL, HOOK, AT = getattr(signal, os.environ["T_SIGNAL"]), os.environ["T_HOOK"], int(os.environ["T_AT"])
calls = []
def hooked(real, counts=lambda *a: True):
    def wrapper(*args, **kwargs):
        if counts(*args):
            calls.append(1)
            if len(calls) == AT:
                os.kill(os.getpid(), SIGNAL)
        return real(*args, **kwargs)
    return wrapper
if HOOK == "figure":
    matplotlib.figure.Figure.savefig = hooked(matplotlib.figure.Figure.savefig)
else:
    os.replace = hooked(os.replace, lambda src, dst: str(src).endswith(render.TEMP_SUFFIX))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_signalled(script, args, runtime_root, signame=None, hook="figure", at=1):
    """``script`` in a child process; with ``signame``, the signal it sends itself at ``hook`` number ``at``."""
    import tiny_networks
    env = tiny_networks.subprocess_env(STYLEGAN3_DIR=runtime_root, T_SIGNAL=signame or "SIGCONT", T_HOOK=hook,
                                       T_AT=at if signame else 0)
    return subprocess.run([sys.executable, "-c", _SIGNALLING, str(REPO_ROOT / script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_report_interrupted_while_figures_render_leaves_no_figure(stylegan_runtime, tmp_path, signame, code):
    out = tmp_path / "out"
    res = run_signalled("hubness_report.py", ["--outdir", out, *SMALL], stylegan_runtime.root, signame, "figure", 3)
    assert res.returncode == code and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("Interrupted: ")
    assert listing(tmp_path) == []  # two figures were rendered: none reached the disk, and no folder was made


def test_report_killed_mid_commit_then_rerun_leaves_one_complete_result(stylegan_runtime, tmp_path):
    from extensions.render import TEMP_RE
    root = stylegan_runtime.root
    out = tmp_path / "out"
    out.mkdir()
    (out / ".notes.1234-x.tmp").write_text("mine")  # a user's file that merely looks temporary
    killed = run_signalled("hubness_report.py", ["--outdir", out, *SMALL], root, "SIGKILL", "commit", 3)
    assert killed.returncode == -signal.SIGKILL
    left = [TEMP_RE.match(name) for name in temps(out)]
    assert len(left) == 3 and all(left)  # 2 files renamed into place, 3 temporaries left over
    pids = {int(m.group(1)) for m in left}
    assert len(pids) == 1 and not alive(pids.pop())  # the killed run's
    assert len([n for n in listing(out) if n in REPORT_FILES]) == 2

    rerun = run_signalled("hubness_report.py", ["--outdir", out, *SMALL], root)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert listing(out) == sorted([".notes.1234-x.tmp"] + REPORT_FILES)  # the leftovers went, the user's file stayed

    # SIGTERM during the renames waits for them: the interrupted run's result is complete, equal to the rerun's.
    other = tmp_path / "other"
    term = run_signalled("hubness_report.py", ["--outdir", other, *SMALL], root, "SIGTERM", "commit", 1)
    assert term.returncode == 143 and "Traceback" not in term.stderr, term.stderr[-2000:]
    assert listing(other) == REPORT_FILES
    mine = contents(out)
    del mine[".notes.1234-x.tmp"]
    assert contents(other) == mine
    for name in FIGURES:
        with PIL.Image.open(other / name) as im:
            im.load()  # complete PNGs
    assert json.loads((other / "report.json").read_text())["pool_size"] == 200



def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_report_of_a_generator_without_mapping_measures_from_the_origin(tmp_path):
    import torch

    from extensions.report import hubness_report

    class Generic(torch.nn.Module):  # G(z, c) with no mapping network: sampled in Z, mean latent the origin
        z_dim, c_dim = 8, 0

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(8, 3 * 8 * 8)

        def forward(self, z, c=None):
            return torch.tanh(self.layer(z)).reshape(-1, 3, 8, 8)

    report = hubness_report(Generic(), tmp_path / "out", pool_size=120, t=5, grid=(2, 2), spectrum_rows=2,
                            spectrum_cols=4, psi=0.5, device="cpu")
    assert listing(tmp_path / "out") == REPORT_FILES and report.summary["space"] == "z"
    z = SeedPools(8, 120, start=0, device="cpu").draw(0).latents.double().norm(dim=1).numpy()
    assert np.allclose(list(report.summary["distance_to_mean"].values())[1:], [z.mean(), 0.5 * z.mean()])
