"""The paper's Table 2 protocol (fid2k2k_hub): FID against two disjoint real subsets and real-vs-real,
against the official computation on the same features."""

import json
import textwrap

import numpy as np
import pytest
import scipy.linalg

import tiny_networks
from extensions.metrics import MetricError
from extensions.metrics.frechet import frechet_distance_two_subsets, real_subsets


def official_fid(gen: np.ndarray, real: np.ndarray) -> float:
    """stylegan3's compute_fid on two feature sets: float64 1/n statistics, scipy's sqrtm of the product."""
    stats = []
    for x in (gen, real):
        x64 = x.astype(np.float64)
        mu = x64.sum(0) / len(x)
        stats.append((mu, x64.T @ x64 / len(x) - np.outer(mu, mu)))
    (mu_g, s_g), (mu_r, s_r) = stats
    s = scipy.linalg.sqrtm(s_g @ s_r)
    return float(np.real(np.square(mu_g - mu_r).sum() + np.trace(s_g + s_r - 2 * s)))


def features(seed=0, d=12):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)).astype(np.float32)
    real = rng.normal(size=(450, d)).astype(np.float32) @ mix
    gen = (rng.normal(size=(200, d)) * 1.2 + 0.3).astype(np.float32) @ mix
    return real, gen


def test_two_subsets_are_the_first_and_second_block_and_match_the_official_formula():
    real, gen = features()
    x64 = gen.astype(np.float64)
    mu_g = x64.mean(0)
    sigma_g = np.cov(x64, rowvar=False, bias=True)
    got = frechet_distance_two_subsets(real, mu_g, sigma_g, 200)
    assert got["subset1"] == pytest.approx(official_fid(gen, real[:200]), rel=1e-7)
    assert got["subset2"] == pytest.approx(official_fid(gen, real[200:400]), rel=1e-7)
    assert got["real_vs_real"] == pytest.approx(official_fid(real[:200], real[200:400]), rel=1e-7)
    # The generated set differs from the real one far more than two real subsets do.
    assert got["real_vs_real"] < min(got["subset1"], got["subset2"])


def test_too_few_real_images_is_an_error_that_says_how_many():
    real, _ = features()
    with pytest.raises(MetricError, match="need 1000, but there are only 450"):
        real_subsets(real, 500)
    with pytest.raises(MetricError, match="num_real must be an integer >= 2, got 1.5"):
        real_subsets(real, 1.5)


ENTRY_VS_OFFICIAL = textwrap.dedent('''
    import json, sys, types
    import numpy as np
    from extensions.stylegan.checkout import _missing_shims
    for name, module in _missing_shims().items():
        sys.modules.setdefault(name, module)
    from metrics import frechet_inception_distance, metric_utils
    from extensions.metrics.stylegan_hooks import load_entries

    entries = load_entries()
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(16, 16)).astype(np.float32)
    real = rng.normal(size=(4100, 16)).astype(np.float32) @ mix
    gen = (rng.normal(size=(2000, 16)) * 1.3 + 0.2).astype(np.float32) @ mix
    source, calls = {}, []

    def stats(features, max_items, **kwargs):
        s = metric_utils.FeatureStats(max_items=max_items, **kwargs)
        for start in range(0, len(features), 64):  # batches, as the official loops feed them
            s.append(features[start:start + 64])
        return s

    def dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, max_items=None, **kwargs):
        return stats(source["real"], max_items, **kwargs)

    def generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, max_items=None, **kwargs):
        calls.append(max_items)
        return stats(source["gen"], max_items, **kwargs)

    metric_utils.compute_feature_stats_for_dataset = dataset
    metric_utils.compute_feature_stats_for_generator = generator  # what the official compute_fid calls
    entries.hub_generator_stats = generator  # what the hub entry calls
    opts = types.SimpleNamespace(dataset_kwargs={}, rank=0)

    def official(real_part, gen_part):
        source.update(real=real_part, gen=gen_part)
        return frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=2000)

    source.update(real=real, gen=gen)
    ours = entries.fid2k2k_hub(opts)
    out = dict(ours=ours, subset1=official(real[:2000], gen), subset2=official(real[2000:4000], gen),
               real_vs_real=official(real[:2000], real[2000:4000]))
    source.update(real=real[:3999])
    del calls[:]
    try:
        entries.fid2k2k_hub(opts)
    except ValueError as exc:
        out.update(error=str(exc), generated=len(calls))
    print(json.dumps(out))
''')


@pytest.mark.needs_stylegan3
def test_the_calc_metrics_entry_equals_the_official_compute_fid_on_the_same_features(stylegan3_checkout, tmp_path):
    script = tmp_path / "entry_vs_official.py"
    script.write_text(ENTRY_VS_OFFICIAL)
    done = tiny_networks.run_python([script], cwd=tmp_path, prepend=[stylegan3_checkout], timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["ours"]) == {"fid2k2k_hub_subset1", "fid2k2k_hub_subset2", "fid2k2k_hub_real_vs_real"}
    for field in ("subset1", "subset2", "real_vs_real"):
        assert out["ours"][f"fid2k2k_hub_{field}"] == pytest.approx(out[field], rel=1e-6), field
    # A dataset of 3,999 images cannot hold two disjoint subsets of 2,000: one line, before any generation.
    assert "need 4000, but there are only 3999" in out["error"] and out["generated"] == 0
