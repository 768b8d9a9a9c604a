"""The generator feature loop on genuine tiny networks, with a tiny detector pickled as stylegan3's are.

Runs in-process on the stylegan2-ada runtime of the draggan wheel (no official checkout needed).
"""

import re

import numpy as np
import pytest
import torch

import tiny_networks
from extensions.metrics import (MetricError, density_coverage, frechet_distance_features, precision_recall)
from extensions.metrics.detectors import INCEPTION_URL, open_detector, parse_detector_option
from extensions.metrics.generator_features import (SamplerSpec, dataset_labels, generator_features,
                                                   seed_label_indices)
from extensions.pools import SeedPools, seed_latents
from extensions.samplers import make_sampler
from extensions.stylegan.adapter import make_adapter
from extensions.stylegan.loader import load_network

FEATURES = dict(return_features=True)


@pytest.fixture(scope="module")
def G(tiny_network_pkl):
    return load_network(tiny_network_pkl, device="cpu")


@pytest.fixture(scope="module")
def detector(tmp_path_factory, stylegan_runtime):
    import tiny_detector  # needs the runtime's torch_utils
    folder = tiny_detector.write_detectors(tmp_path_factory.mktemp("detectors"))
    return open_detector(INCEPTION_URL, files=parse_detector_option([str(folder)]))


def direct_features(G, detector, seeds, *, noise_mode="const", labels=None, truncation_psi=1):
    """What the loop must produce: each seed rendered by the generator's own forward, one at a time.

    Batched and single renders may round a pixel to the neighbouring uint8 value, which moves a feature
    by about 1e-3; a wrong latent moves it by O(1). Hence the tolerance of the comparisons below.
    """
    z = torch.from_numpy(seed_latents(seeds, G.z_dim)).float()
    c = torch.zeros(len(seeds), G.c_dim) if labels is None else torch.as_tensor(labels, dtype=torch.float32)
    with torch.no_grad():
        img = torch.cat([G(z[i:i + 1], c[i:i + 1], truncation_psi=truncation_psi, noise_mode=noise_mode)
                         for i in range(len(seeds))])
        img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return detector(img, **FEATURES)


def test_random_sampler_renders_consecutive_seeds_in_order(G, detector, one_thread):
    spec = SamplerSpec("random", seed=5, noise_mode="const")
    out = generator_features(G, detector, 23, spec=spec, detector_kwargs=FEATURES, batch_size=8, batch_gen=3,
                             device="cpu")
    assert out.features.shape == (23, 16)
    assert out.selection.seeds.tolist() == list(range(5, 28))
    torch.testing.assert_close(out.features, direct_features(G, detector, range(5, 28)), atol=5e-3, rtol=0)
    assert out.sampler["sampler"] == "random" and out.sampler["num"] == 23 and out.sampler["space"] == "w"


def test_runs_repeat_exactly_and_leave_the_callers_rng_alone(G, detector, one_thread):
    spec = SamplerSpec("random", seed=3)  # noise_mode='random', as stylegan3's metrics
    before = torch.get_rng_state()
    first = generator_features(G, detector, 12, spec=spec, detector_kwargs=FEATURES, device="cpu").features
    assert torch.equal(torch.get_rng_state(), before)
    again = generator_features(G, detector, 12, spec=spec, detector_kwargs=FEATURES, device="cpu").features
    assert torch.equal(first, again)
    const = generator_features(G, detector, 12, spec=SamplerSpec("random", seed=3, noise_mode="const"),
                               detector_kwargs=FEATURES, device="cpu").features
    assert not torch.allclose(first, const)  # the noise is drawn, and drawn from the seed


def test_hubness_features_are_those_of_the_engines_selection(G, detector, one_thread):
    spec = SamplerSpec("hubness", k=5, t=12, pool_size=300, noise_mode="const", seed=40)
    out = generator_features(G, detector, 30, spec=spec, detector_kwargs=FEATURES, batch_size=7, device="cpu")
    adapter = make_adapter(G)
    pools = SeedPools(G.z_dim, 300, start=40, transform=adapter.transform("w"), device="cpu")
    expected = make_sampler("hubness", k=5, t=12, max_pools=50, device="cpu").sample(pools, 30)
    assert out.selection.seeds.tolist() == expected.seeds.tolist()
    assert (out.selection.m >= 12).all() and len(out.selection.records) > 1
    torch.testing.assert_close(out.features, direct_features(G, detector, expected.seeds), atol=5e-3, rtol=0)
    assert out.sampler == dict(sampler="hubness", psi=1.0, k=5, t=12.0, include_self=False, backend="exact",
                               pool_size=300, seed=40, space="w", noise_mode="const", num=30,
                               pools_drawn=len(expected.records), latents_drawn=300 * len(expected.records),
                               m_min=int(expected.m.min()), m_max=int(expected.m.max()))


def test_top_q_hubness_and_low_quality_samplers(G, detector, one_thread):
    top = generator_features(G, detector, 20, spec=SamplerSpec("hubness", top=5, pool_size=100),
                             detector_kwargs=FEATURES, device="cpu")
    assert top.sampler["pools_drawn"] == 4 and top.sampler["top"] == 5 and "t" not in top.sampler
    low = generator_features(G, detector, 20, spec=SamplerSpec("hubness-lq", t_lq=0, pool_size=100),
                             detector_kwargs=FEATURES, device="cpu")
    assert (low.selection.m == 0).all() and low.sampler["t_lq"] == 0.0


def test_truncation_moves_towards_w_avg_as_the_generator_does(G, detector, one_thread):
    out = generator_features(G, detector, 10, spec=SamplerSpec("truncation", psi=0.5, noise_mode="const"),
                             detector_kwargs=FEATURES, device="cpu")
    torch.testing.assert_close(out.features, direct_features(G, detector, range(10), truncation_psi=0.5),
                               atol=5e-3, rtol=0)


class LabelledImages:
    """A labelled dataset as stylegan3's metrics see one: a length and one-hot labels."""

    def __init__(self, n, classes):
        self.n, self.classes = n, classes

    def __len__(self):
        return self.n

    def get_label(self, i):
        return np.eye(self.classes, dtype=np.float32)[i % self.classes]


def test_conditional_networks_take_one_label_per_seed(tiny_conditional_pkl, detector, one_thread):
    G = load_network(tiny_conditional_pkl, device="cpu")
    data = LabelledImages(7, G.c_dim)
    spec = SamplerSpec("hubness", t=4, pool_size=60, noise_mode="const")
    out = generator_features(G, detector, 9, spec=spec, labels=dataset_labels(data), detector_kwargs=FEATURES,
                             device="cpu")
    seeds = out.selection.seeds
    labels = np.stack([data.get_label(i) for i in seed_label_indices(seeds, len(data))])
    assert len(np.unique(labels.argmax(1))) > 1
    torch.testing.assert_close(out.features, direct_features(G, detector, seeds, labels=labels), atol=5e-3, rtol=0)
    with pytest.raises(MetricError, match="conditional"):
        generator_features(G, detector, 4, detector_kwargs=FEATURES, device="cpu")


class RankSink:
    """Keeps what one process would broadcast, batch by batch."""

    def __init__(self):
        self.batches = []

    def append_torch(self, x, num_gpus=1, rank=0):
        self.batches.append(x.clone())


def test_processes_split_the_images_and_interleave_back_in_order(G, detector, one_thread):
    spec = SamplerSpec("random", noise_mode="const")
    single = generator_features(G, detector, 21, spec=spec, detector_kwargs=FEATURES, batch_size=4,
                                device="cpu").features
    sinks = [RankSink() for _ in range(3)]
    for rank, sink in enumerate(sinks):
        generator_features(G, detector, 21, spec=spec, detector_kwargs=FEATURES, batch_size=4, sink=sink,
                           num_gpus=3, rank=rank, device="cpu")
    assert len({len(s.batches) for s in sinks}) == 1
    # stylegan3's FeatureStats.append_torch interleaves the processes' rows, then keeps max_items of them.
    gathered = torch.cat([torch.stack(step, dim=1).flatten(0, 1) for step in zip(*(s.batches for s in sinks))])
    torch.testing.assert_close(gathered[:21], single, atol=5e-3, rtol=0)


def test_metrics_tell_the_generator_from_another(G, detector, one_thread):
    other = tiny_networks.build_generator(seed=7)
    real_seeds = range(100000, 100160)
    real = direct_features(G, detector, real_seeds)
    elsewhere = direct_features(other, detector, real_seeds)
    for spec in (SamplerSpec("random", noise_mode="const"), SamplerSpec("hubness", t=10, pool_size=400)):
        gen = generator_features(G, detector, 160, spec=spec, detector_kwargs=FEATURES, device="cpu").features
        same, diff = frechet_distance_features(real, gen), frechet_distance_features(elsewhere, gen)
        assert 0 <= same < diff
        pr_same, pr_diff = precision_recall(real, gen, 3), precision_recall(elsewhere, gen, 3)
        assert pr_same.precision > pr_diff.precision and pr_same.recall > pr_diff.recall
        dc_same, dc_diff = density_coverage(real, gen, 5), density_coverage(elsewhere, gen, 5)
        assert dc_same.coverage > dc_diff.coverage and dc_same.density > dc_diff.density


def test_bad_input_is_refused_with_the_fix(G, detector):
    with pytest.raises(MetricError, match="--trunc 0.7"):
        SamplerSpec("truncation")
    with pytest.raises(MetricError, match="pool_size"):
        SamplerSpec("hubness", k=10, pool_size=10)
    with pytest.raises(MetricError, match="unknown sampler 'best'"):
        SamplerSpec("best")
    with pytest.raises(MetricError, match=r"returned \(4,\)"):
        generator_features(G, lambda img, **kw: img.float().mean((1, 2, 3)), 4, device="cpu")


@pytest.mark.parametrize("sampler, psi, cause", [("random", 1, "the synthesis network is broken"),
                                                 ("hubness", 1, "the synthesis network is broken"),
                                                 ("truncation", 1e38, "--trunc 1e+38 may move the latents too far")])
def test_non_finite_images_are_an_error_not_black_features(G, detector, one_thread, sampler, psi, cause):
    import copy
    from extensions._checks import NonFiniteError
    broken = copy.deepcopy(G)
    if psi == 1:  # NaN in the synthesis network: every image is NaN
        with torch.no_grad():
            [p for p in broken.synthesis.parameters() if p.ndim >= 2][-1].fill_(float("nan"))
    spec = SamplerSpec(sampler, psi=psi, **(dict(t=0, pool_size=50) if sampler == "hubness" else {}))
    with pytest.raises(NonFiniteError, match=r"NaN or inf pixels for seed \d+; " + re.escape(cause)) as info:
        generator_features(broken, detector, 6, spec=spec, detector_kwargs=FEATURES, device="cpu")
    assert info.value.seed is not None
