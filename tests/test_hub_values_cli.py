"""``python -m extensions.hub_values``: hub values of embeddings in .npy/.npz files, against numpy brute force."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

import tiny_networks
from extensions.hub_values_cli import main
from reference import brute_knn, integer_latents


def expected(x, k, include_self=False):
    """Neighbour lists and hub values by numpy float64 brute force (ties: lower index)."""
    others = brute_knn(x, k - 1 if include_self else k)[0]
    nn = np.concatenate([np.arange(len(x))[:, None], others], 1) if include_self else others
    return np.bincount(nn.ravel(), minlength=len(x)), nn


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args] + ["--device", "cpu"], catch_exceptions=False)


@pytest.mark.parametrize("include_self", [False, True])
def test_npy_round_trip_equals_brute_force(tmp_path, include_self):
    x = integer_latents(97, 3, 5, low=-1, high=2)  # ties everywhere
    np.save(tmp_path / "x.npy", x)
    flag = ["--include-self"] if include_self else []
    done = cli(tmp_path / "x.npy", "--k", 4, *flag, "--output", tmp_path / "m.npy", "--neighbors", tmp_path / "nn.npy")
    assert done.exit_code == 0, done.output
    m, nn = expected(x, 4, include_self)
    out_m, out_nn = np.load(tmp_path / "m.npy"), np.load(tmp_path / "nn.npy")
    assert out_m.dtype == np.int64 and out_nn.dtype == np.int64 and out_nn.shape == (97, 4)
    np.testing.assert_array_equal(out_m, m)
    np.testing.assert_array_equal(out_nn, nn)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "nn.npy", "x.npy"]  # no temporary left
    assert f"largest m {m.max()}" in done.stdout


def test_npz_with_one_array_or_a_key(tmp_path):
    x = np.random.default_rng(1).standard_normal((120, 8))  # float64 is read as float32
    np.savez(tmp_path / "one.npz", w=x)
    np.savez(tmp_path / "two.npz", w=x, labels=np.arange(120))
    m = expected(x.astype(np.float32), 5)[0]
    for args in (["one.npz"], ["two.npz", "--key", "w"]):
        assert cli(tmp_path / args[0], *args[1:], "--output", tmp_path / "m.npy").exit_code == 0
        np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), m)
    assert not (tmp_path / "nn.npy").exists()


def bad_inputs(folder):
    x = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    nan = x.copy()
    nan[17, 2], nan[21, 0] = np.nan, np.inf
    np.save(folder / "nan.npy", nan)
    np.save(folder / "flat.npy", x[0])
    np.save(folder / "ok.npy", x)
    np.save(folder / "text.npy", np.array(["a", "b"] * 4).reshape(4, 2))
    np.savez(folder / "two.npz", a=x, b=x)
    (folder / "junk.npy").write_bytes(b"not an array")
    return {
        "missing": (["missing.npy"], r"'.*missing\.npy' does not exist"),
        "junk": (["junk.npy"], r"is not a \.npy or \.npz file"),
        "nan": (["nan.npy"], r"row 17 of .*nan\.npy' holds NaN or inf \(2 row\(s\) in all\)"),
        "flat": (["flat.npy"], r"has shape \(4,\); hub values need one row per point, shape \(n, d\)"),
        "text": (["text.npy"], r"holds <U1 values; hub values need real numbers"),
        "k": (["ok.npy", "--k", "30"], r"--k 30 needs more than 30 rows, but .*ok\.npy' holds 30; lower --k to at most 29"),
        "several": (["two.npz"], r"holds 2 arrays \(a, b\); choose one with --key NAME"),
        "no such key": (["two.npz", "--key", "c"], r"has no array 'c'; it holds a, b"),
        "key on npy": (["ok.npy", "--key", "a"], r"--key 'a' applies to \.npz files"),
        "folder": (["ok.npy", "--output", "."], r"--output '\.' is a folder"),
        "no folder": (["ok.npy", "--output", "nowhere/m.npy"], r"the folder .*nowhere' does not exist"),
    }


@pytest.mark.parametrize("case", ["missing", "junk", "nan", "flat", "text", "k", "several", "no such key",
                                  "key on npy", "folder", "no folder"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, pattern = bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    if "--output" not in args:
        args = args + ["--output", "m.npy"]
    done = cli(*args)
    lines = done.output.strip().splitlines()
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.output
    assert re.search(pattern, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_runs_as_a_module_and_under_torchrun_with_the_same_result(tmp_path):
    x = integer_latents(203, 4, 9, low=-1, high=2)
    np.save(tmp_path / "x.npy", x)
    single = tiny_networks.run_python(["-m", "extensions.hub_values", tmp_path / "x.npy", "--k", 5, "--output",
                                       tmp_path / "m1.npy", "--neighbors", tmp_path / "nn1.npy", "--device", "cpu"],
                                      timeout=120)
    assert single.returncode == 0, single.stderr
    assert "k-NN of 203 rows (k = 5)" in single.stderr  # the progress line goes to stderr
    two = tiny_networks.run_python(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2,
                                    "-m", "extensions.hub_values", tmp_path / "x.npy", "--k", 5, "--output",
                                    tmp_path / "m2.npy", "--neighbors", tmp_path / "nn2.npy", "--device", "cpu"],
                                   timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stdout and two.stdout.count("wrote") == 1  # rank 0 alone writes and reports
    m, nn = expected(x, 5)
    for name, ref in (("m1", m), ("m2", m), ("nn1", nn), ("nn2", nn)):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), ref)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
