"""``python -m extensions.hub_values``: hub values of embeddings in .npy/.npz files, against numpy brute force."""

import errno
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

import tiny_networks
from extensions._checks import engine_array
from extensions.hub_values_cli import main
from extensions.render import TEMP_SUFFIX
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
    with zipfile.ZipFile(folder / "readme.npz", "w") as z:  # a zip, but its member is no .npy
        z.writestr("readme.txt", "embeddings to follow")
    np.save(folder / "huge.npy", np.full((30, 4), 1e39, dtype=np.longdouble))
    np.save(folder / "tiny.npy", np.full((30, 4), 1e-300, dtype=np.longdouble))
    os.link(folder / "ok.npy", folder / "hard.npy")
    (folder / "out").mkdir()
    (folder / "outlink").symlink_to("out")
    (folder / "here").symlink_to(".")
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
        "zip member": (["readme.npz"], r"^Error: 'readme\.npz' holds 'readme\.txt', which is not a \.npy array; save "
                                       r"the embeddings with numpy\.savez$"),
        "huge": (["huge.npy"], r"values up to 1e\+39 in magnitude, beyond float32's range \(3\.4e\+38\)"
                               r".*; divide them by a power of ten first"),
        "tiny": (["tiny.npy"], r"values no larger than 1e-300 in magnitude, below float32's normal range "
                               r"\(1\.2e-38\).*; multiply them by a power of ten first"),
        "output is input": (["ok.npy", "--output", "./ok.npy"],
                            r"^Error: --output '\./ok\.npy' is the input file 'ok\.npy'; choose another --output"),
        "output is input via link": (["ok.npy", "--output", "here/ok.npy"],
                                     r"^Error: --output 'here/ok\.npy' is the input file 'ok\.npy'"),
        "output is a hard link": (["ok.npy", "--output", "hard.npy"],
                                  r"^Error: --output 'hard\.npy' is the input file 'ok\.npy'"),
        "neighbors is input": (["ok.npy", "--output", "m.npy", "--neighbors", str(folder / "ok.npy")],
                               r"^Error: --neighbors '.*ok\.npy' is the input file 'ok\.npy'; choose another "
                               r"--neighbors"),
        "neighbors is output": (["ok.npy", "--output", "out/m.npy", "--neighbors", "outlink/m.npy"],
                                r"^Error: --neighbors and --output name the same file; give two paths$"),
    }


@pytest.mark.parametrize("case", ["missing", "junk", "nan", "flat", "text", "k", "several", "no such key",
                                  "key on npy", "folder", "no folder", "zip member", "huge", "tiny",
                                  "output is input", "output is input via link", "output is a hard link",
                                  "neighbors is input", "neighbors is output"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, pattern = bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    inputs = {p.name: p.read_bytes() for p in tmp_path.glob("*.np?")}
    if "--output" not in args:
        args = args + ["--output", "m.npy"]
    done = cli(*args)
    lines = done.output.strip().splitlines()
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.output
    assert re.search(pattern, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not list((tmp_path / "out").iterdir())
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.np?")} == inputs  # the input is untouched


def dead_pid():
    """The pid of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def stale_temp(folder, name, pid):
    """A zero-byte temporary of ``name`` as :func:`extensions.render.atomic_files` names them."""
    path = folder / f".{name}.{pid}-k9x{TEMP_SUFFIX}"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("earlier_run", [False, True])
def test_a_full_disk_at_the_second_file_leaves_neither(tmp_path, monkeypatch, earlier_run):
    x = integer_latents(40, 3, 3, low=-1, high=2)
    np.save(tmp_path / "x.npy", x)
    if earlier_run:  # the files of an earlier run stay as they were, both
        np.save(tmp_path / "m.npy", np.arange(3))
        np.save(tmp_path / "nn.npy", np.arange(4))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    saves = []
    real_save = np.save

    def save(file, array, *args, **kwargs):
        saves.append(array.shape)
        if len(saves) == 2:
            file.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    done = cli(tmp_path / "x.npy", "--k", 3, "--output", tmp_path / "m.npy", "--neighbors", tmp_path / "nn.npy",
               "--quiet")
    assert saves == [(40,), (40, 3)]  # m was complete when nn.npy failed
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no m.npy, no temporary
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert done.output.strip() == (f"Error: cannot write {str(tmp_path / 'nn.npy')!r}: No space left on device; free "
                                   f"space or fix permissions, or choose another --neighbors")


def test_the_next_run_removes_what_a_killed_one_left(tmp_path):
    x = integer_latents(60, 3, 4, low=-1, high=2)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "nn").mkdir()
    args = [tmp_path / "x.npy", "--k", 4, "--output", tmp_path / "m.npy", "--neighbors", tmp_path / "nn" / "nn.npy",
            "--device", "cpu", "--quiet"]
    # kill -9 in the middle of writing: both temporaries exist, neither is complete
    killed = tiny_networks.run_python(["-c", "import os, signal, sys, numpy\n"
                                             "numpy.save = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                                             "from extensions.hub_values_cli import main\n"
                                             "main(sys.argv[1:])", *args], timeout=120)
    assert killed.returncode == -9, killed.stderr
    left = [p for p in [*tmp_path.iterdir(), *(tmp_path / "nn").iterdir()] if p.name.startswith(".")]
    assert sorted(p.name.split(".")[1] for p in left) == ["m", "nn"] and all(p.stat().st_size == 0 for p in left)
    assert not (tmp_path / "m.npy").exists() and not (tmp_path / "nn" / "nn.npy").exists()
    # a live process's temporary and a user's dot-file stay
    live = stale_temp(tmp_path, "m.npy", os.getpid())
    (tmp_path / ".m.npy.tmp").write_bytes(b"mine")
    done = cli(*args[:-3])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".m.npy.tmp", live.name, "m.npy", "nn", "x.npy"])
    assert [p.name for p in (tmp_path / "nn").iterdir()] == ["nn.npy"]
    m, nn = expected(x, 4)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), m)
    np.testing.assert_array_equal(np.load(tmp_path / "nn" / "nn.npy"), nn)


def numeric_dtype_cases():
    small = integer_latents(80, 3, 6, low=0, high=3)  # ties everywhere, exact in every dtype
    gauss = np.random.default_rng(7).standard_normal((80, 5))
    cases = {dt: small.astype(dt) for dt in ("u2", "u4", "u8", ">u2", ">i2", ">i4", ">i8", ">f2", ">f4", ">f8")}
    cases["longdouble"] = small.astype(np.longdouble)
    cases[">f4 gauss"] = gauss.astype(">f4")
    cases[">f8 gauss"] = gauss.astype(">f8")  # rounded to float32, as native float64 is
    cases["longdouble gauss"] = gauss.astype(np.longdouble) / 3  # not float64 values: rounded once to float32
    return cases


@pytest.mark.parametrize("case", list(numeric_dtype_cases()))
def test_every_real_dtype_equals_brute_force_on_its_float32_values(tmp_path, case):
    x = numeric_dtype_cases()[case]
    np.save(tmp_path / "x.npy", x)
    assert np.load(tmp_path / "x.npy").dtype == x.dtype
    done = cli(tmp_path / "x.npy", "--k", 5, "--output", tmp_path / "m.npy", "--neighbors", tmp_path / "nn.npy")
    assert done.exit_code == 0, done.output
    assert "Note:" not in done.output  # no integer beyond 2**24: nothing was rounded that float32 search promises
    m, nn = expected(x.astype(np.float32), 5)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), m)
    np.testing.assert_array_equal(np.load(tmp_path / "nn.npy"), nn)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "nn.npy", "x.npy"]


def test_integers_beyond_float32_are_searched_rounded_and_a_note_says_so(tmp_path):
    steps = integer_latents(70, 3, 8, low=0, high=4).astype(np.uint64)
    x = np.uint64(2 ** 63) + steps * np.uint64(2 ** 40)  # beyond int64; float32 holds these exactly
    np.save(tmp_path / "x.npy", x)
    done = cli(tmp_path / "x.npy", "--k", 4, "--output", tmp_path / "m.npy")
    assert done.exit_code == 0, done.output
    notes = [line for line in done.output.splitlines() if line.startswith("Note:")]
    assert notes == [f"Note: {str(tmp_path / 'x.npy')!r} holds integers up to {2 ** 63 + 3 * 2 ** 40} in magnitude; "
                     f"the search runs in float32, which holds integers exactly only up to 2**24 = 16777216, so "
                     f"larger ones are rounded to float32's 24 significant bits"]
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), expected(steps, 4)[0])
    # one rounding, straight to float32 (2**64 - 1 rounds up to 2**64; int64 values as the engine rounds them)
    big = np.array([[2 ** 64 - 1, 2 ** 63 + 2 ** 39 + 1]], dtype=np.uint64)
    np.testing.assert_array_equal(engine_array(big, "x"), np.array([[2.0 ** 64, 2.0 ** 63 + 2.0 ** 40]], np.float32))
    assert engine_array(np.array([[2 ** 63 - 1]], np.uint64), "x").dtype == np.int64  # exact, as an int64
    assert engine_array(np.array([[7]], ">u4"), "x").dtype == np.int64


@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="np.longdouble is float64 here")
def test_extended_precision_is_rounded_once():
    # 1 + 2**-24 + 2**-60 lies just above a float32 midpoint: rounded straight it goes up; through float64 it
    # becomes the midpoint itself and ties to even, down to 1
    value = np.longdouble(1) + np.longdouble(2.0 ** -24) + np.longdouble(2.0 ** -60)
    assert np.float32(np.float64(value)) == 1
    got = engine_array(np.array([[value]]), "x")
    assert got.dtype == np.float32 and got[0, 0] == np.float32(1 + 2.0 ** -23)


def test_runs_as_a_module_and_under_torchrun_with_the_same_result(tmp_path):
    x = integer_latents(203, 4, 9, low=-1, high=2)
    np.save(tmp_path / "x.npy", x)
    single = tiny_networks.run_python(["-m", "extensions.hub_values", tmp_path / "x.npy", "--k", 5, "--output",
                                       tmp_path / "m1.npy", "--neighbors", tmp_path / "nn1.npy", "--device", "cpu"],
                                      timeout=120)
    assert single.returncode == 0, single.stderr
    assert "k-NN of 203 rows (k = 5)" in single.stderr  # the progress line goes to stderr
    stale_temp(tmp_path, "m2.npy", dead_pid())  # rank 0 removes it
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
