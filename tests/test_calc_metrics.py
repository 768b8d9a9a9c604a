"""calc_metrics under any sampler: option handling, the metrics/ folder beside a checkout, and (with
STYLEGAN3_DIR) the patched official calc_metrics.py end to end on a tiny network and detector."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import tiny_networks
from extensions.metrics import MetricError
from extensions.metrics.calc_metrics_cli import build_config, calc_metrics_options, worker_device
from extensions.metrics.stylegan_hooks import ENTRIES_FILE, hub_spec, official_spec

REPO = tiny_networks.REPO_ROOT


# ------------------------------------------------------------------------------------------ options

def test_without_sampler_the_official_metrics_keep_their_latents_and_hub_metrics_use_hubness():
    config = build_config(["fid50k_full", "fid2k_hub", "ppl2_wend"])
    assert official_spec(config) is None
    hub = hub_spec(config).describe()
    assert (hub["sampler"], hub["k"], hub["t"], hub["pool_size"], hub["space"]) == ("hubness", 5, 50.0, 10000, None)


def test_trunc_alone_means_truncation_and_a_sampler_applies_everywhere():
    assert official_spec(build_config(["fid50k_full"], truncation_psi=0.7)).describe()["sampler"] == "truncation"
    config = build_config(["kid50k_full"], sampler="hubness", top=100, pool_size=2000, seed=7)
    for spec in (official_spec(config), hub_spec(config)):
        assert spec.describe() == dict(sampler="hubness", psi=1.0, k=5, top=100, include_self=False,
                                       backend="exact", pool_size=2000, seed=7, space=None, noise_mode="random")


def test_metrics_with_their_own_latents_refuse_a_sampler():
    with pytest.raises(MetricError, match="ppl2_wend, eqr50k draw their own latents"):
        build_config(["fid50k_full", "ppl2_wend", "eqr50k"], sampler="hubness")
    assert official_spec(build_config(["ppl2_wend"])) is None  # no sampler: nothing to refuse


def test_bad_options_raise_errors_that_name_the_fix(tmp_path):
    with pytest.raises(MetricError, match="--trunc 0.7"):
        build_config(["fid50k_full"], sampler="truncation")
    with pytest.raises(MetricError, match="pool_size"):
        build_config(["fid2k_hub"], k=20, pool_size=10)
    with pytest.raises(MetricError, match="no such file"):
        build_config(["fid2k_hub"], detectors=[str(tmp_path / "missing.pkl")])


def test_options_parse_into_a_config(tmp_path):
    import click
    from click.testing import CliRunner

    (tmp_path / "vgg16.pkl").write_bytes(b"")

    @click.command()
    @calc_metrics_options
    def command(**options):
        click.echo(json.dumps(build_config(["pr50k3_full"], **options)))

    result = CliRunner().invoke(command, ["--sampler", "hubness-lq", "--t-lq", "0", "--pool-size", "500",
                                          "--trunc", "0.9", "--detector", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["sampler"] == "hubness-lq" and config["detectors"] == {"vgg16": str(tmp_path / "vgg16.pkl")}
    assert config["params"]["t_lq"] == 0 and config["params"]["pool_size"] == 500 and config["params"]["psi"] == 0.9
    assert official_spec(config).describe()["sampler"] == "hubness-lq"


def test_workers_fall_back_to_the_cpu_without_cuda():
    expected = torch.device("cuda", 1) if torch.cuda.is_available() else torch.device("cpu")
    assert worker_device(1) == expected


def test_the_entries_folder_never_shadows_a_checkouts_metrics_package(tmp_path):
    assert ENTRIES_FILE.is_file() and not (ENTRIES_FILE.parent / "__init__.py").exists()
    checkout = tmp_path / "checkout"
    (checkout / "metrics").mkdir(parents=True)
    (checkout / "metrics" / "__init__.py").write_text("")
    (checkout / "metrics" / "metric_main.py").write_text("ORIGIN = 'checkout'\n")
    # The project root first on sys.path, as when running from a clone: the checkout's package still wins.
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(checkout)!r}]\n"
            "import metrics.metric_main as m; print(m.ORIGIN)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "checkout", out.stderr


# ------------------------------------------------------------------------- the patched calc_metrics

HARNESS = textwrap.dedent('''
    """Run the patched calc_metrics.py as ``python calc_metrics.py ...``, with small versions of the
    official metrics registered first (the checkout's own compute functions, fewer images)."""
    import os, runpy, sys
    sys.path.insert(0, os.getcwd())
    from metrics import (frechet_inception_distance, inception_score, kernel_inception_distance, metric_main,
                         precision_recall)
    from extensions.metrics.stylegan_hooks import load_entries

    @metric_main.register_metric
    def fid2k(opts):
        return dict(fid2k=frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=2000))

    @metric_main.register_metric
    def kid300(opts):
        return dict(kid300=kernel_inception_distance.compute_kid(opts, max_real=None, num_gen=300,
                                                                 num_subsets=10, max_subset_size=48))

    @metric_main.register_metric
    def pr300k3(opts):
        p, r = precision_recall.compute_pr(opts, max_real=None, num_gen=300, nhood_size=3, row_batch_size=128,
                                           col_batch_size=128)
        return dict(pr300k3_precision=p, pr300k3_recall=r)

    @metric_main.register_metric
    def is300(opts):
        mean, std = inception_score.compute_is(opts, num_gen=300, num_splits=2)
        return dict(is300_mean=mean, is300_std=std)

    entries = load_entries()
    metric_main.register_metric(entries.pr_entry("pr300k3_hub", max_real=None, num_gen=300, k=3))
    metric_main.register_metric(entries.dc_entry("dc300k5_hub", max_real=None, num_gen=300, k=5))
    sys.argv = ["calc_metrics.py"] + sys.argv[1:]
    runpy.run_path("calc_metrics.py", run_name="__main__")
''')

# The official code imports requests (and distutils); where they are missing, the project's stand-ins
# take their place in every process of the run, DataLoader workers included.
SITECUSTOMIZE = textwrap.dedent('''
    import sys
    from extensions.stylegan.checkout import _missing_shims
    for _name, _module in _missing_shims().items():
        sys.modules.setdefault(_name, _module)
''')

NETWORK = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import tiny_networks
    tiny_networks.use_runtime(Path(sys.argv[1]))
    import tiny_detector
    run_dir, det_dir = Path(sys.argv[2]), Path(sys.argv[3])
    tiny_networks.write_network_pickle(run_dir / "network-snapshot-000000.pkl", seed=0)
    (run_dir / "training_options.json").write_text(json.dumps(dict(note="tiny")))
    tiny_detector.write_detectors(det_dir)
''')


def python_path(*first):
    """``first`` ahead of the repository and the tests folder (the project root holds a metrics/ folder
    too: the runs check that the checkout's metrics package still wins)."""
    return os.pathsep.join(str(p) for p in (*first, REPO, tiny_networks.TESTS_DIR))


@pytest.fixture(scope="module")
def patched(stylegan3_checkout, tmp_path_factory):
    """A patched copy of the checkout, a run folder with a tiny network, detectors and a dataset."""
    from extensions import patches

    root = tmp_path_factory.mktemp("sg3")
    checkout = root / "stylegan3"
    shutil.copytree(stylegan3_checkout, checkout, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    patches.run("apply", checkout)
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (checkout / "hub_harness.py").write_text(HARNESS)
    run_dir, det_dir, data = root / "run", root / "detectors", root / "data"
    run_dir.mkdir()
    made = tiny_networks.run_python(["-c", NETWORK, checkout, run_dir, det_dir], timeout=300,
                                    PYTHONPATH=python_path(site))
    assert made.returncode == 0, made.stderr
    data.mkdir()
    rng = np.random.default_rng(0)
    import PIL.Image
    for i in range(48):  # smooth colour fields, 16x16 like the network's output
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        PIL.Image.fromarray(small).resize((16, 16), PIL.Image.BILINEAR).save(data / f"img{i:03d}.png")
    return dict(root=root, checkout=checkout, site=site, run_dir=run_dir, detectors=det_dir, data=data)


def calc_metrics(patched, *args, timeout=400):
    common = [f"--network={patched['run_dir'] / 'network-snapshot-000000.pkl'}", f"--data={patched['data']}",
              "--verbose=false"]
    return tiny_networks.run_python(["hub_harness.py", *common, *args], cwd=patched["checkout"], timeout=timeout,
                                    PYTHONPATH=python_path(patched["site"], patched["checkout"]),
                                    DNNLIB_CACHE_DIR=patched["root"] / "dnnlib-cache")


def jsonl(patched, metric):
    path = patched["run_dir"] / f"metric-{metric}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


HUB_OPTIONS = ["--top=50", "--pool-size=500", "--k=5", "--seed=3"]
METRICS = "fid2k_hub,fid2k,kid300,pr300k3,is300,pr300k3_hub,dc300k5_hub"


@pytest.mark.needs_stylegan3
@pytest.mark.parametrize("sampler", ["hubness", "random"])
def test_every_metric_runs_under_the_sampler_and_records_it(patched, sampler):
    done = calc_metrics(patched, f"--metrics={METRICS}", f"--sampler={sampler}", *HUB_OPTIONS,
                        f"--detector={patched['detectors']}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = {name: jsonl(patched, name)[-1] for name in METRICS.split(",")}
    for name, line in lines.items():
        # As calc_metrics writes it: one JSON object per line, results plus metadata, pickle path relative.
        assert line["metric"] == name and line["num_gpus"] == 1 and line["snapshot_pkl"] == "network-snapshot-000000.pkl"
        assert {"results", "total_time", "total_time_str", "timestamp"} <= set(line)
        assert all(np.isfinite(v) for v in line["results"].values()), line
        assert line["sampler"]["sampler"] == sampler and line["sampler"]["seed"] == 3
    hub = lines["fid2k_hub"]["sampler"]
    if sampler == "hubness":
        assert (hub["top"], hub["pool_size"], hub["k"], hub["pools_drawn"]) == (50, 500, 5, 40)
        assert hub["m_min"] >= 1
    else:
        assert "top" not in hub and hub["latents_drawn"] == 2000  # the first 2000 seeds, nothing more
    # Same sampler, same seed: the hub entry and the official compute_fid see the same images, so our
    # Frechet distance must equal the official one.
    assert lines["fid2k_hub"]["results"]["fid2k_hub"] == pytest.approx(lines["fid2k"]["results"]["fid2k"], rel=1e-6)
    for key in ("pr300k3_hub_precision", "pr300k3_hub_recall", "dc300k5_hub_coverage"):
        assert 0 <= lines[key.rsplit("_", 1)[0]]["results"][key] <= 1


@pytest.mark.needs_stylegan3
def test_without_a_sampler_official_metrics_are_untouched_and_hub_metrics_use_hubness(patched):
    done = calc_metrics(patched, "--metrics=fid2k,fid2k_hub", *HUB_OPTIONS, f"--detector={patched['detectors']}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    official, hub = jsonl(patched, "fid2k")[-1], jsonl(patched, "fid2k_hub")[-1]
    assert "sampler" not in official and official["results"]["fid2k"] > 0
    assert hub["sampler"]["sampler"] == "hubness" and hub["results"]["fid2k_hub"] > 0


@pytest.mark.needs_stylegan3
def test_option_errors_and_missing_detectors_say_what_to_do(patched):
    # calc_metrics routes stderr into stdout (dnnlib.util.Logger): read both.
    done = calc_metrics(patched, "--metrics=ppl2_wend", "--sampler=hubness")
    assert done.returncode == 2 and "draw their own latents" in done.stdout + done.stderr
    done = calc_metrics(patched, "--metrics=fid2k_hub", "--sampler=truncation")
    assert done.returncode == 2 and "--trunc 0.7" in done.stdout + done.stderr
    done = calc_metrics(patched, "--metrics=kid300", "--sampler=random")  # no --detector, no internet
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "DetectorUnavailableError" in output
    assert "inception-2015-12-05.pkl" in output and "--detector" in output
    assert str(patched["root"] / "dnnlib-cache" / "downloads") in output


@pytest.mark.needs_stylegan3
def test_the_patch_applies_and_reverts_to_the_official_script(stylegan3_checkout, tmp_path):
    from extensions import patches

    copy = tmp_path / "copy"
    shutil.copytree(stylegan3_checkout, copy, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    original = (copy / "calc_metrics.py").read_bytes()
    patches.run("apply", copy)
    patched_text = (copy / "calc_metrics.py").read_text()
    assert "calc_metrics_cli as hub" in patched_text and "@with_hub_options" in patched_text
    patches.run("revert", copy)
    assert (copy / "calc_metrics.py").read_bytes() == original
