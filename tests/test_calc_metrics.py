"""calc_metrics under any sampler: option handling, the metrics/ folder beside a checkout, and (with
STYLEGAN3_DIR) the patched official calc_metrics.py end to end on a tiny network and detector."""

import errno
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
import uuid

import click
import numpy as np
import pytest
import torch

import tiny_networks
from extensions import HubnessError, ThresholdUnreachableError
from extensions.metrics import DetectorUnavailableError, MetricError, SamplerSpec
from extensions.metrics.calc_metrics_cli import (build_config, calc_metrics_options, error_line, spawn,
                                                 unreachable_advice, worker_device)
from extensions.metrics.errors import real_path
from extensions.metrics.stylegan_hooks import ENTRIES_FILE, hub_spec, official_spec
from extensions.pools import SeedPools, seed_latents
from extensions.samplers import make_sampler
from reference import brute_knn

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


# ----------------------------------------------------------------------------------- one-line errors

def largest_m(pool_size, pools, k, z_dim):
    """Largest hub value over the first ``pools`` pools of consecutive seeds, by brute force."""
    best = 0
    for p in range(pools):
        idx, _ = brute_knn(seed_latents(range(p * pool_size, (p + 1) * pool_size), z_dim).astype(np.float32), k)
        best = max(best, int(np.bincount(idx.ravel(), minlength=pool_size).max()))
    return best


def test_an_unreachable_threshold_becomes_one_line_naming_the_options():
    pools = SeedPools(8, 200)
    with pytest.raises(ThresholdUnreachableError) as info:  # three pools without a match stop the search
        make_sampler("hubness", k=5, t=1000, max_pools=50).sample(pools, 50)
    line = error_line(info.value, build_config(["fid2k_hub"], t=1000, pool_size=200))
    assert "\n" not in line and line.startswith("hubness sampler collected 0 of 50 latents after 3 pool(s) of 200")
    assert f"largest m seen: {largest_m(200, 3, 5, 8)})" in line
    # The engine's advice in library terms is replaced by the calc_metrics options.
    assert line.endswith("; lower --t (to at most the largest m seen), raise --pool-size or --max-pools, or pass "
                         "--top Q to take the Q largest hub values of every pool")
    assert "lower t," not in line


def test_an_exhausted_top_sampler_names_top_and_max_pools():
    with pytest.raises(ThresholdUnreachableError) as info:
        make_sampler("hubness", k=5, top=10, max_pools=2).sample(SeedPools(8, 200), 50)
    line = error_line(info.value, build_config(["fid2k_hub"], top=10, max_pools=2, pool_size=200))
    assert "collected 20 of 50 latents after 2 pool(s)" in line and line.endswith("; raise --top or --max-pools")
    assert "--t-lq" in unreachable_advice(SamplerSpec("hubness-lq"))


def test_error_line_keeps_fixable_failures_and_leaves_bugs_alone():
    assert error_line(MetricError("detector /x/y.pkl holds a dict,\n  not a torch module")) == \
        "detector /x/y.pkl holds a dict, not a torch module"
    assert error_line(DetectorUnavailableError("copy it to /c/downloads/x.pkl")) == "copy it to /c/downloads/x.pkl"
    assert error_line(HubnessError("k = 0")) == "k = 0"
    for bug in (ValueError("x"), RuntimeError("y"), KeyError("z"), TypeError("w")):
        assert error_line(bug) is None


def test_real_path_maps_the_checkouts_temporary_files_to_their_targets():
    hex_ = uuid.uuid4().hex
    # dnnlib.util.open_url: <cache>/downloads/tmp_<hex>_<md5>_<name>; metric_utils: <cache file>.<hex>
    assert real_path(f"/c/downloads/tmp_{hex_}_abc_vgg16.pkl") == "/c/downloads/abc_vgg16.pkl"
    assert real_path(f"/c/gan-metrics/data-vgg16-{hex_}.pkl.{hex_}") == f"/c/gan-metrics/data-vgg16-{hex_}.pkl"
    for path in ("/r/network-snapshot-000000.pkl", "/r/tmp_x_y.pkl", f"/r/{hex_}.pkl"):
        assert real_path(path) == path


def _cannot_create_in(folder):
    try:
        with open(os.path.join(folder, f".probe-{uuid.uuid4().hex[:8]}"), "wb") as f:
            os.remove(f.name)
        return False
    except OSError:
        return True


needs_unwritable_sys = pytest.mark.skipif(not (os.path.isdir("/sys") and _cannot_create_in("/sys")),
                                          reason="needs /sys, where not even root can create files")


@needs_unwritable_sys
def test_os_errors_name_the_real_file_and_what_to_do(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink("/sys", cache / "gan-metrics")  # a statistics folder nobody can write to
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(cache))
    target = cache / "gan-metrics" / "data-inception-2015-12-05-0123.pkl"
    with pytest.raises(PermissionError) as info:  # what metric_utils does when it saves statistics
        open(f"{target}.{uuid.uuid4().hex}", "wb")
    line = error_line(info.value)
    assert line.startswith(f"Permission denied: {target}; let this user read {target} and write to {target.parent}")
    assert line.endswith(f"or set DNNLIB_CACHE_DIR to a writable folder (the cache is {cache})")
    outside = tmp_path / "run" / "metric-fid2k.jsonl"
    outside.mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as info:
        open(outside, "at")
    assert error_line(info.value) == f"Is a directory: {outside}; {outside} is a folder where a file is needed; " \
                                     f"move that folder away"
    assert error_line(OSError(errno.EIO, "Input/output error")) == "OSError: Input/output error"


def _fail_in_click(rank, message):
    raise click.ClickException(f"{message} from rank {rank}")


def _fail_with_a_bug(rank):
    raise ValueError(f"a bug in rank {rank}")


def _write_rank(rank, folder):
    (folder / f"rank{rank}").write_text(str(rank))


def test_spawn_carries_a_workers_one_line_error_out_and_nothing_else(tmp_path):
    spawn(_write_rank, args=(tmp_path,), nprocs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]
    with pytest.raises(click.ClickException) as info:
        spawn(_fail_in_click, args=("stop",), nprocs=2)
    assert re.fullmatch(r"stop from rank [01]", info.value.format_message())
    with pytest.raises(torch.multiprocessing.ProcessRaisedException, match=r"ValueError: a bug in rank [01]"):
        spawn(_fail_with_a_bug, nprocs=2)


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
    run_dir, det_dir, swapped = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    tiny_networks.write_network_pickle(run_dir / "network-snapshot-000000.pkl", seed=0)
    (run_dir / "training_options.json").write_text(json.dumps(dict(note="tiny")))
    tiny_detector.write_detectors(det_dir)
    swapped.mkdir()  # VGG16's width under Inception's name
    tiny_detector.write_detector(swapped / "inception-2015-12-05.pkl", num_features=4096)
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
    run_dir, det_dir, data, swapped = root / "run", root / "detectors", root / "data", root / "swapped"
    run_dir.mkdir()
    made = tiny_networks.run_python(["-c", NETWORK, checkout, run_dir, det_dir, swapped], timeout=300,
                                    PYTHONPATH=python_path(site))
    assert made.returncode == 0, made.stderr
    data.mkdir()
    rng = np.random.default_rng(0)
    import PIL.Image
    for i in range(48):  # smooth colour fields, 16x16 like the network's output
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        PIL.Image.fromarray(small).resize((16, 16), PIL.Image.BILINEAR).save(data / f"img{i:03d}.png")
    return dict(root=root, checkout=checkout, site=site, run_dir=run_dir, detectors=det_dir, data=data,
                swapped=swapped)


def calc_metrics(patched, *args, timeout=400, cache=None, network=None):
    network = network or patched["run_dir"] / "network-snapshot-000000.pkl"
    common = [f"--network={network}", f"--data={patched['data']}", "--verbose=false"]
    return tiny_networks.run_python(["hub_harness.py", *common, *args], cwd=patched["checkout"], timeout=timeout,
                                    PYTHONPATH=python_path(patched["site"], patched["checkout"]),
                                    DNNLIB_CACHE_DIR=cache or patched["root"] / "dnnlib-cache")


def one_line_error(done):
    """The error line of a failed run, after checking it failed with exactly one such line and no traceback.

    calc_metrics routes stderr into stdout (dnnlib.util.Logger), so both are read; warnings may precede it.
    """
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output[-5000:]
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output[-5000:]
    return errors[0]


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
    # ... and so do the precision/recall entries: the same VGG16 features, the same k = 3 balls (the official
    # value is a float32 mean).
    ours, official = lines["pr300k3_hub"]["results"], lines["pr300k3"]["results"]
    for key in ("precision", "recall"):
        assert ours[f"pr300k3_hub_{key}"] == pytest.approx(official[f"pr300k3_{key}"], abs=1e-6), (ours, official)
    dc = lines["dc300k5_hub"]["results"]
    assert dc["dc300k5_hub_density"] >= 0 and 0 <= dc["dc300k5_hub_coverage"] <= 1


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
    line = one_line_error(done)
    assert line.startswith("Error: kid300: could not download the feature detector 'inception-2015-12-05'")
    assert "--detector=/path/to/inception-2015-12-05.pkl" in line
    cached = re.search(r"copy it to (\S+) ", line)[1]
    assert cached.startswith(str(patched["root"] / "dnnlib-cache" / "downloads" / ""))
    assert cached.endswith("_inception-2015-12-05.pkl")


@pytest.mark.needs_stylegan3
def test_an_unreachable_hub_value_threshold_is_one_line(patched):
    done = calc_metrics(patched, "--metrics=fid2k_hub", "--t=1000", "--pool-size=500",
                        f"--detector={patched['detectors']}")
    line = one_line_error(done)
    assert line.startswith("Error: fid2k_hub: hubness sampler collected 0 of 2000 latents after 3 pool(s) of 500 "
                           "(m >= 1000, k = 5; largest m seen: ")
    m = int(re.search(r"largest m seen: (\d+)\)", line)[1])
    assert 5 <= m < 500  # at least k (the mean), and a real count of k-NN lists
    assert "lower --t" in line and "--top Q" in line and "--pool-size" in line


@pytest.mark.needs_stylegan3
def test_a_detector_that_is_not_a_pickle_is_named(patched, tmp_path):
    bad = tmp_path / "inception-2015-12-05.pkl"
    bad.write_bytes(b"<html>Sign in to download</html>")
    line = one_line_error(calc_metrics(patched, "--metrics=kid300", f"--detector={bad}"))
    assert line.startswith(f"Error: kid300: detector {bad} is not a pickle that loads (")
    assert "pass the detector file itself (inception-2015-12-05.pkl" in line and "--detector" in line


@pytest.mark.needs_stylegan3
@pytest.mark.parametrize("kind", ["dict", "module", "swapped"])
def test_a_detector_of_the_wrong_kind_is_named(patched, tmp_path, kind):
    if kind == "swapped":
        path = patched["swapped"] / "inception-2015-12-05.pkl"
        option = f"--detector={path}"
        expected = (f"detector {path} gives 4096 features per image like vgg16.pkl, but inception-2015-12-05 "
                    f"(2048 features) is needed here; pass the genuine inception-2015-12-05.pkl with --detector")
    else:
        path = tmp_path / f"{kind}.pkl"
        with open(path, "wb") as f:
            pickle.dump({"G_ema": None} if kind == "dict" else torch.nn.Linear(3, 4), f)
        option = f"--detector=inception-2015-12-05={path}"
        expected = (f"detector {path} holds a dict, not a torch module" if kind == "dict" else
                    f"detector {path} is not a stylegan3 feature detector: calling it on uint8 images with "
                    f"return_features=True raised TypeError")
    line = one_line_error(calc_metrics(patched, "--metrics=kid300", option))
    assert line.startswith(f"Error: kid300: {expected}")


@pytest.mark.needs_stylegan3
@needs_unwritable_sys
def test_an_unwritable_statistics_cache_names_the_cache_file_not_its_temporary(patched, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink("/sys", cache / "gan-metrics")
    line = one_line_error(calc_metrics(patched, "--metrics=kid300", f"--detector={patched['detectors']}",
                                       cache=cache))
    # metric_utils saves <cache>/gan-metrics/<tag>.pkl through <that>.<uuid hex>
    match = re.fullmatch(r"Error: kid300: Permission denied: (\S+); let this user read \1 and write to (\S+), "
                         r"or set DNNLIB_CACHE_DIR to a writable folder \(the cache is (\S+)\)", line)
    assert match, line
    assert match[1].startswith(str(cache / "gan-metrics" / ""))
    assert re.search(r"-inception-2015-12-05-[0-9a-f]{32}\.pkl$", match[1])  # the cache file, no .<hex> suffix
    assert match[2] == str(cache / "gan-metrics") and match[3] == str(cache)


@pytest.mark.needs_stylegan3
def test_an_unwritable_result_file_is_one_line(patched, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(patched["run_dir"], run_dir, ignore=shutil.ignore_patterns("*.jsonl"))
    (run_dir / "metric-kid300.jsonl").mkdir()
    done = calc_metrics(patched, "--metrics=kid300", f"--detector={patched['detectors']}",
                        network=run_dir / "network-snapshot-000000.pkl")
    line = one_line_error(done)
    target = run_dir / "metric-kid300.jsonl"
    assert line == f"Error: kid300: Is a directory: {target}; {target} is a folder where a file is needed; " \
                   f"move that folder away"


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
