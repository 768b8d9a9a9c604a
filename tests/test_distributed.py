"""Hub values shared between processes (gloo on the CPU) equal one process's, bit for bit.

Each multi-process test spawns two processes once (``extensions.distributed.spawn``) that run several
cases and save what they computed; the test then compares with one process and with numpy brute force.
"""

import json

import numpy as np
import pytest
import torch

import tiny_networks
from extensions import KnnResult, compute_hubness, exact_knn
from extensions import distributed
from extensions.metrics.generator_features import SamplerSpec, generator_features
from extensions.stylegan.loader import load_network
from reference import brute_knn, integer_latents

# (name, n, d, k, include_self, data seed): n odd or prime, so no world size divides it; integer data has ties
CASES = [
    ("ties", 101, 3, 5, False, 0),
    ("ties_self", 101, 3, 5, True, 1),
    ("self_only", 37, 2, 1, True, 2),
    ("k1", 53, 2, 1, False, 3),
    ("gauss", 257, 24, 7, False, 4),
]


def case_data(n, d, seed):
    if seed == 4:
        return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return integer_latents(n, d, seed, low=-1, high=2)


def _hub_worker(rank, folder):
    torch.set_num_threads(1)
    out = {}
    for name, n, d, k, include_self, seed in CASES:
        res = compute_hubness(case_data(n, d, seed), k, include_self=include_self, device="cpu")
        out[f"{name}_m"], out[f"{name}_nn"] = res.m, res.neighbors
        out[f"{name}_rows"] = np.array(res.info["rows"])
    res = compute_hubness(case_data(101, 3, 0), 5, backend="auto", device="cpu")
    out["auto_m"], out["auto_rows"] = res.m, np.array(res.info["rows"])
    # One graph over the whole pool, as NN-descent builds it (its exact equivalent stands in: pynndescent's
    # compilation alone takes minutes on a busy CPU): rank 0 alone searches, every rank gets the result.
    calls, search = [], distributed.knn

    def graph(x, k, *, backend, **kwargs):
        calls.append(len(x))
        found = search(x, k, backend="exact", **kwargs)
        return KnnResult(found.indices, found.distances, "approx", 0.97, {})

    distributed.knn = graph
    res = compute_hubness(case_data(101, 3, 0), 5, backend="approx", device="cpu")
    distributed.knn = search
    out.update(approx_m=res.m, approx_nn=res.neighbors, approx_calls=np.array(calls),
               approx_info=np.array([res.backend, str(res.recall)]))
    res = compute_hubness(case_data(101, 3, 0), 5, device="cpu", neighbors=False)
    out["no_nn_m"], out["no_nn_is_none"] = res.m, np.array(res.neighbors is None)
    own = compute_hubness(case_data(101, 3, 0), 5, device="cpu", distributed=False)
    out["local_m"], out["local_has_rows"] = own.m, np.array("rows" in own.info)
    try:  # rank 1 holds another pool: every rank must refuse, none may hang
        compute_hubness(case_data(60, 3, rank), 4, device="cpu")
        out["mismatch"] = np.array("")
    except ValueError as exc:
        out["mismatch"] = np.array(str(exc))
    np.savez(f"{folder}/rank{rank}.npz", **out)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    distributed.spawn(_hub_worker, args=(str(folder),), nprocs=2, device="cpu")
    return [dict(np.load(folder / f"rank{r}.npz")) for r in range(2)]


def test_rows_split_into_contiguous_shares_of_nearly_equal_size():
    for n in (1, 2, 7, 100, 101, 1000003):
        for world in (1, 2, 3, 5, 8):
            ranges = [distributed.row_range(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [hi - lo for lo, hi in ranges]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shares_of_rows_searched_apart_equal_the_whole_search(world):
    # what each rank runs, side by side in one process: the tie rule does not depend on the rows searched
    x = integer_latents(301, 4, 7, low=-1, high=2)
    whole = exact_knn(x, 6, device="cpu").indices
    parts = [exact_knn(x, 6, queries=x[lo:hi], query_indices=np.arange(lo, hi), device="cpu").indices
             for lo, hi in (distributed.row_range(len(x), r, world) for r in range(world))]
    assert torch.equal(torch.cat(parts), whole)
    np.testing.assert_array_equal(whole.numpy(), brute_knn(x, 6)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("data", ["integers", "gaussian"])
def test_on_cuda_shares_of_rows_equal_the_whole_search_and_the_cpu(data):
    # pools of GPU size: the self-search (upper triangle) and the row-share search take different CUDA paths
    rng = np.random.default_rng(0)
    x = (rng.integers(-1, 2, size=(20011, 64)) if data == "integers" else rng.standard_normal((20011, 512)))
    x = torch.as_tensor(x, dtype=torch.float32, device="cuda")
    whole = exact_knn(x, 5, device="cuda").indices
    parts = [exact_knn(x, 5, queries=x[lo:hi], query_indices=torch.arange(lo, hi, device="cuda"), device="cuda").indices
             for lo, hi in (distributed.row_range(len(x), r, 3) for r in range(3))]
    assert torch.equal(torch.cat(parts), whole)
    rows = torch.arange(0, len(x), 97, device="cuda")  # a sample of rows on the CPU
    cpu = exact_knn(x.cpu(), 5, queries=x[rows].cpu(), query_indices=rows.cpu(), device="cpu").indices
    assert torch.equal(cpu, whole[rows].cpu())


@pytest.mark.parametrize("name,n,d,k,include_self,seed", CASES)
def test_two_processes_give_one_processs_hub_values_and_neighbours(two_ranks, name, n, d, k, include_self, seed):
    x = case_data(n, d, seed)
    single = compute_hubness(x, k, include_self=include_self, device="cpu")
    others = brute_knn(x, k - 1 if include_self else k)[0]
    expected = np.concatenate([np.arange(n)[:, None], others], 1) if include_self else others
    np.testing.assert_array_equal(single.neighbors, expected)
    for rank, out in enumerate(two_ranks):
        np.testing.assert_array_equal(out[f"{name}_m"], single.m)
        np.testing.assert_array_equal(out[f"{name}_nn"], single.neighbors)
        assert out[f"{name}_m"].dtype == np.int64 and out[f"{name}_m"].sum() == n * k
        assert tuple(out[f"{name}_rows"]) == distributed.row_range(n, rank, 2)


def test_neighbours_are_gathered_only_when_asked_and_distributed_false_stays_local(two_ranks):
    single = compute_hubness(case_data(101, 3, 0), 5, device="cpu").m
    for out in two_ranks:
        np.testing.assert_array_equal(out["no_nn_m"], single)
        assert bool(out["no_nn_is_none"])
        np.testing.assert_array_equal(out["local_m"], single)
        assert not bool(out["local_has_rows"])


def test_auto_splits_the_rows_and_an_approximate_graph_is_built_once_on_rank_0(two_ranks):
    single = compute_hubness(case_data(101, 3, 0), 5, device="cpu")
    for rank, out in enumerate(two_ranks):
        np.testing.assert_array_equal(out["auto_m"], single.m)
        assert tuple(out["auto_rows"]) == distributed.row_range(101, rank, 2)
        np.testing.assert_array_equal(out["approx_m"], single.m)
        np.testing.assert_array_equal(out["approx_nn"], single.neighbors)
        assert out["approx_calls"].tolist() == ([101] if rank == 0 else [])
        assert out["approx_info"].tolist() == ["approx", "0.97"]


def test_ranks_holding_different_pools_all_refuse(two_ranks):
    for out in two_ranks:
        assert "different pools" in str(out["mismatch"]) and "rank 1" in str(out["mismatch"])


def test_distributed_true_without_a_process_group_is_an_error():
    with pytest.raises(ValueError, match="process group"):
        compute_hubness(case_data(20, 2, 0), 3, device="cpu", distributed=True)


# ------------------------------------------------------------------------- the metric loop, two processes

class PixelDetector(torch.nn.Module):
    """The first 48 pixel values of each image as its features: equal features mean equal images."""

    def forward(self, img):
        return img.flatten(1)[:, :48].float()


class RankSink:
    """Keeps the rows one process would broadcast, batch by batch (stylegan3's FeatureStats interleaves them)."""

    def __init__(self):
        self.batches = []

    def append_torch(self, x, num_gpus=1, rank=0):
        self.batches.append(x.clone())


SPEC = dict(name="hubness", top=4, pool_size=151, seed=11, noise_mode="const")


def _metric_worker(rank, folder):
    torch.set_num_threads(1)
    searched = []
    search = distributed.knn

    def spy(x, k, *, queries=None, **kwargs):
        searched.append(len(queries))
        return search(x, k, queries=queries, **kwargs)

    distributed.knn = spy
    G = load_network("digits", device="cpu")
    sink = RankSink()
    out = generator_features(G, PixelDetector(), 10, spec=SamplerSpec(**SPEC), batch_size=4, sink=sink,
                             num_gpus=2, rank=rank, device="cpu")
    np.savez(f"{folder}/rank{rank}.npz", seeds=out.selection.seeds, m=out.selection.m,
             features=torch.stack(sink.batches).numpy(), searched=np.array(searched))


def test_the_metric_loop_under_two_processes_yields_one_processs_images(tmp_path, one_thread):
    distributed.spawn(_metric_worker, args=(str(tmp_path),), nprocs=2, device="cpu")
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    G = load_network("digits", device="cpu")
    single = generator_features(G, PixelDetector(), 10, spec=SamplerSpec(**SPEC), batch_size=4, device="cpu")
    assert len(single.selection.records) == 3  # top 4 of each pool of 151: three pools, each shared
    for rank, out in enumerate(ranks):
        np.testing.assert_array_equal(out["seeds"], single.selection.seeds)
        np.testing.assert_array_equal(out["m"], single.selection.m)
        assert out["searched"].tolist() == [75 + rank] * 3  # each rank searched its share of each pool
    # interleave the ranks' batches as FeatureStats does; a pixel may round to the next uint8 value in
    # another batch composition, a different image differs by far more
    gathered = np.stack([ranks[0]["features"], ranks[1]["features"]], 2).reshape(-1, 48)[:10]
    assert np.abs(gathered - single.features.numpy()).max() <= 1


# --------------------------------------------------------------------------- gen_images_hub.py --gpus 2

def gen_images(outdir, *args):
    done = tiny_networks.run_python([tiny_networks.REPO_ROOT / "gen_images_hub.py", "--seeds=0-200",
                                     "--sampler=hubness", "--t=16", "--num=5", "--pool-size=151", "--device=cpu",
                                     f"--outdir={outdir}", *args], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_gen_images_hub_with_two_processes_writes_one_processs_images(tmp_path):
    gen_images(tmp_path / "one")
    gen_images(tmp_path / "two", "--gpus=2")
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "pool.csv").read_text() == (two / "pool.csv").read_text()
    images = sorted(p.name for p in one.glob("seed*.png"))
    assert len(images) == 5 and images == sorted(p.name for p in two.glob("seed*.png"))
    assert all((one / name).read_bytes() == (two / name).read_bytes() for name in images)
    pools = {line.split(",")[1] for line in (one / "pool.csv").read_text().splitlines()[1:]}
    assert len(pools) > 1  # further pools were drawn, each shared by both processes
    assert json.loads((two / "manifest.json").read_text())["files"].keys() == \
        json.loads((one / "manifest.json").read_text())["files"].keys()


def test_gen_images_hub_gpus_errors_are_one_line(tmp_path):
    done = tiny_networks.run_python([tiny_networks.REPO_ROOT / "gen_images_hub.py", "--seeds=0-200",
                                     "--sampler=hubness", "--t=1000", "--num=5", "--max-pools=2", "--device=cpu",
                                     "--gpus=2", f"--outdir={tmp_path / 'out'}"], timeout=300)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-3000:]
    assert "--t 0 --num 5" in lines[0]
    assert not (tmp_path / "out").exists() or not any(p.name.startswith("seed") for p in (tmp_path / "out").iterdir())


# ------------------------------------------------- gen_video_hub.py and gen_traversal_hub.py --gpus 2
# Under two processes rank 0 cannot finish a hub-value computation alone (the group is active, so it waits for
# the other rank's share): equal outputs mean the work was shared and gave one process's selection.

def run_script(script, *args):
    done = tiny_networks.run_python([tiny_networks.REPO_ROOT / script, "--seeds=0-200", "--sampler=hubness",
                                     "--t=0", "--pool-size=151", "--device=cpu", *args], timeout=300)
    return done


def test_gen_video_hub_with_two_processes_writes_one_processs_video(tmp_path):
    outputs = {}
    for gpus in (1, 2):
        out = tmp_path / f"gpus{gpus}"
        out.mkdir()
        done = run_script("gen_video_hub.py", "--num-keyframes=3", "--w-frames=3", f"--output={out / 'v.mp4'}",
                          f"--strip={out / 'strip.png'}", f"--gpus={gpus}")
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[gpus] = done.stdout
        assert sorted(p.name for p in out.iterdir()) == ["strip.png", "v.mp4"]  # no leftovers of either rank
    one, two = tmp_path / "gpus1", tmp_path / "gpus2"
    assert (one / "strip.png").read_bytes() == (two / "strip.png").read_bytes()
    assert (one / "v.mp4").read_bytes() == (two / "v.mp4").read_bytes()
    keyframes = [line for line in outputs[1].splitlines() if "keyframe seeds" in line]
    assert keyframes and keyframes == [line for line in outputs[2].splitlines() if "keyframe seeds" in line]


def test_gen_traversal_hub_with_two_processes_writes_one_processs_traversals(tmp_path):
    for gpus in (1, 2):
        done = run_script("gen_traversal_hub.py", "--num=2", "--directions=0-1", "--steps=1",
                          f"--outdir={tmp_path / f'gpus{gpus}'}", f"--gpus={gpus}")
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = tmp_path / "gpus1", tmp_path / "gpus2"
    names = sorted(p.name for p in one.iterdir() if p.suffix in (".png", ".npz"))
    assert len(names) == 4 and names == sorted(p.name for p in two.iterdir() if p.suffix in (".png", ".npz"))
    assert all((one / name).read_bytes() == (two / name).read_bytes() for name in names)
    assert json.loads((two / "manifest.json").read_text())["files"] == json.loads((one / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("script, args", [("gen_video_hub.py", ["--output=v.mp4"]),
                                          ("gen_traversal_hub.py", ["--outdir=out"])])
def test_video_and_traversal_gpus_errors_are_one_line(tmp_path, script, args):
    args = [a.replace("=", f"={tmp_path}/", 1) for a in args]
    done = run_script(script, "--t=1000", "--max-pools=2", "--num-keyframes=2" if "video" in script else "--num=2",
                      "--gpus=2", *args)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-3000:]
    assert not any(p.name.startswith(("v.", ".v.", "seed")) for p in tmp_path.rglob("*"))


# ------------------------------------------------------------- the patched calc_metrics.py --gpus 2

from test_calc_metrics import HUB_OPTIONS, calc_metrics, jsonl, patched  # noqa: E402,F401 - the fixture too


@pytest.mark.needs_stylegan3
def test_calc_metrics_with_two_processes_shares_hub_values_and_scores_the_same_images(patched):
    runs = {}
    for gpus in (1, 2):
        # fid2k_hub: the harness's smaller entries are registered in its own process only, not in workers
        done = calc_metrics(patched, "--metrics=fid2k_hub", f"--gpus={gpus}", "--noise-mode=const", *HUB_OPTIONS,
                            f"--detector={patched['detectors']}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs[gpus] = jsonl(patched, "fid2k_hub")[-1]
    assert runs[2]["num_gpus"] == 2
    assert runs[1]["sampler"] == runs[2]["sampler"]  # same pools drawn, same hub-value range chosen
    # the same 2,000 images, rendered in other batches (a pixel may round differently)
    assert runs[2]["results"]["fid2k_hub"] == pytest.approx(runs[1]["results"]["fid2k_hub"], rel=1e-3)
