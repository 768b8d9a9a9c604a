"""Outputs you can trust: one run per folder, a manifest that vouches for kept images, no partial or foreign
files after failures or kills, non-finite numbers as errors, and one-line errors for bad input.

Runs ``gen_images_hub.py`` as users do (child processes) where signals, locks and kills are involved, and
in-process otherwise.
"""

import errno
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest
import torch

import tiny_networks
from extensions.outdir import LOCK_INFO_NAME, STAGING_NAME, OutdirError, OutputDir
from extensions.render import TEMP_SUFFIX
from test_gen_images_hub import SCRIPT, cli, official_image, png, with_options

pytestmark = pytest.mark.usefixtures("one_thread")


def visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def start(args, runtime_root, **env):
    """The script in a child process (stylegan2-ada runtime from the draggan wheel)."""
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args), "--device", "cpu"],
                            env=tiny_networks.subprocess_env(STYLEGAN3_DIR=runtime_root, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Runs a script as `python SCRIPT ARGS` does, once the interpreter has started: a signal during the
# interpreter's own start-up (20-120 ms, before any line of the script runs) is beyond what a script controls.
_LAUNCHER = ("import os, runpy, sys; sys.argv = sys.argv[1:]; sys.path[0] = os.path.dirname(sys.argv[0]); "
             "os.write(1, b'>'); runpy.run_path(sys.argv[0], run_name='__main__')")


def start_started(script, args, runtime_root):
    """``script`` in a child process that has written one byte (``>``) once its interpreter is up."""
    p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(script), *map(str, args)],
                         env=tiny_networks.subprocess_env(STYLEGAN3_DIR=runtime_root),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert os.read(p.stdout.fileno(), 1) == b">"
    return p


def wait_for_staging(out, proc, timeout=60):
    """Block until the run has staged at least one image (it is rendering)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        staging = out / STAGING_NAME
        if staging.is_dir() and any(p.suffix == ".png" for p in staging.iterdir()):
            return True
        time.sleep(0.02)
    return False


def contents(folder):
    """Every visible file's bytes, with latents.npz by its arrays (zip entries carry timestamps)."""
    out = {}
    for name in visible(folder):
        if (folder / name).is_dir():
            continue
        if name == "latents.npz":
            with np.load(folder / name, allow_pickle=False) as data:
                out[name] = {k: data[k].tobytes() for k in data.files}
        elif name == "manifest.json":
            files = json.loads((folder / name).read_text())["files"]
            out[name] = {k: v for k, v in files.items() if k != "latents.npz"}
        else:
            out[name] = (folder / name).read_bytes()
    return out


def broken_pickle(path, where):
    """The tiny network with NaN in its mapping ('mapping') or synthesis ('synthesis') weights."""
    data = tiny_networks.network_dict(seed=0)
    module = data["G_ema"].mapping if where == "mapping" else data["G_ema"].synthesis
    param = [p for p in module.parameters() if p.ndim >= 2][-1]
    with torch.no_grad():
        param.fill_(float("nan"))
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


# ------------------------------------------------------------------------------------ one run per folder


def test_a_held_folder_stops_a_second_run_at_once(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    with OutputDir(out, tool="test-holder"):
        t0 = time.time()
        res = cli("--network", tiny_network_pkl, "--seeds", "0-9", "--outdir", out)
        assert res.exit_code == 1 and time.time() - t0 < 30
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: ") and "is in use by another run (test-holder, pid " + str(os.getpid()) in line
        assert visible(out) == []
    assert list(out.iterdir()) == []  # the lock went with the holder
    assert cli("--network", tiny_network_pkl, "--seeds", "0-9", "--outdir", out).exit_code == 0


def test_a_folder_another_run_creates_first_is_opened_not_refused(tmp_path, monkeypatch):
    # Two runs both find the folder missing; the second's mkdir meets the first's folder.
    from extensions import render
    out = tmp_path / "out"
    real_mkdir = os.mkdir

    def racing_mkdir(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(out):
            real_mkdir(path)  # the other run, a moment earlier
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(render.os, "mkdir", racing_mkdir)
    with pytest.raises(ValueError):
        with OutputDir(out) as run:
            assert run._locked and not run._created
            raise ValueError("this run fails")
    assert out.is_dir()  # the other run's folder stays: a failed run removes only a folder it created


def test_concurrent_runs_never_both_succeed(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    base = ["--network", tiny_network_pkl, "--seeds", "0-299", "--outdir", out]
    a = start([*base, "--trunc", 0.5], stylegan_runtime.root)
    b = start([*base, "--trunc", 0.9], stylegan_runtime.root)
    results = [(p.wait(timeout=300), p.communicate()) for p in (a, b)]
    codes = [code for code, _ in results]
    assert sorted(codes) == [0, 1], results
    loser = results[codes.index(1)][1][1].strip().splitlines()[-1]
    assert loser.startswith("Error: ") and ("in use by another run" in loser or "other settings" in loser), loser
    psi = 0.5 if codes[0] == 0 else 0.9
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["truncation_psi"] == psi
    assert visible(out) == sorted([f"seed{s:04d}.png" for s in range(300)] + ["latents.npz", "manifest.json",
                                                                                "pool.csv"])
    for seed in (0, 150, 299):  # every image is the winner's
        assert np.array_equal(png(out / f"seed{seed:04d}.png"),
                              official_image(stylegan_runtime, tiny_network_pkl, seed, psi=psi))


def test_kill_at_random_points_then_rerun_equals_an_uninterrupted_run(stylegan_runtime, tiny_network_pkl, tmp_path):
    args = ["--network", tiny_network_pkl, "--seeds", "0-399", "--sampler", "hubness", "--t", 0, "--num", 150,
            "--grid", "10x15"]
    ref = tmp_path / "ref"
    t0 = time.time()
    p = start([*args, "--outdir", ref], stylegan_runtime.root)
    assert p.wait(timeout=300) == 0, p.communicate()
    duration = time.time() - t0
    expected = contents(ref)
    rng = np.random.default_rng(0)
    for trial, delay in enumerate(rng.uniform(0.05, 1.0, size=4) * duration):
        out = tmp_path / f"run{trial}"
        p = start([*args, "--outdir", out], stylegan_runtime.root)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        if out.exists():
            for name in visible(out):  # whatever it left is complete
                if name.endswith(".png"):
                    with PIL.Image.open(out / name) as im:
                        im.load()
        again = start([*args, "--outdir", out], stylegan_runtime.root)
        assert again.wait(timeout=300) == 0, again.communicate()
        assert contents(out) == expected, f"trial {trial}, killed after {delay:.2f} s"
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_images_staged_by_a_killed_run_join_only_a_result_that_wants_them(stylegan_runtime, tiny_network_pkl,
                                                                           tmp_path):
    out = tmp_path / "out"
    p = start(["--network", tiny_network_pkl, "--seeds", "0-1999", "--outdir", out], stylegan_runtime.root)
    assert wait_for_staging(out, p), p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    staged = sorted(q.name for q in (out / STAGING_NAME).iterdir() if q.name.startswith("seed"))
    assert staged  # same settings, another selection: these must not become part of the next result
    res = cli("--network", tiny_network_pkl, "--seeds", "1500-1502", "--outdir", out)
    assert res.exit_code == 0, res.output
    assert visible(out) == ["latents.npz", "manifest.json", "pool.csv", "seed1500.png", "seed1501.png",
                            "seed1502.png"]


def test_interrupt_exits_130_and_the_rerun_finishes(stylegan_runtime, tiny_network_pkl, tmp_path):
    args = ["--network", tiny_network_pkl, "--seeds", "0-1999", "--noise-mode", "none"]
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / f"out{code}"
        p = start([*args, "--outdir", out], stylegan_runtime.root)
        assert wait_for_staging(out, p), p.communicate()
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == code, err
        assert err.strip().splitlines()[-1].startswith("Interrupted") and "Traceback" not in err
        assert visible(out) == []  # nothing half-done in sight; staged images wait for the next run
        assert not (out / LOCK_INFO_NAME).exists()
    res = cli(*args, "--outdir", tmp_path / "out130")
    assert res.exit_code == 0 and "wrote" in res.output
    assert len([n for n in visible(tmp_path / "out130") if n.startswith("seed")]) == 2000


# ------------------------------------------------------------------------------------ what a folder holds


def test_a_new_selection_refuses_or_cleans_old_images(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    base = ["--network", tiny_network_pkl, "--seeds", "0-99", "--k", 4, "--num", 5, "--outdir", out]
    assert cli(*base, "--sampler", "hubness", "--t", 0).exit_code == 0
    (out / "notes.txt").write_text("mine")
    hubs = set(visible(out))
    res = cli(*base, "--sampler", "hubness-lq", "--t-lq", 3)
    assert res.exit_code == 1 and "would not vouch for" in res.output and "--clean" in res.output
    assert set(visible(out)) == hubs
    res = cli(*base, "--sampler", "hubness-lq", "--t-lq", 3, "--clean")
    assert res.exit_code == 0 and "removed 5 file(s)" in res.output, res.output
    seeds = np.load(out / "latents.npz")["seeds"].tolist()
    assert sorted(n for n in visible(out) if n.startswith("seed")) == sorted(f"seed{s:04d}.png" for s in seeds)
    assert (out / "notes.txt").read_text() == "mine"  # not a result file: never touched


def test_images_no_run_wrote_are_not_kept(stylegan_runtime, tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fake = np.zeros((16, 16, 3), np.uint8)
    PIL.Image.fromarray(fake).save(out / "seed0003.png")
    args = ["--network", tiny_network_pkl, "--seeds", "0-5", "--outdir", out]
    res = cli(*args)
    assert res.exit_code == 1 and "seed0003.png" in res.output and "--clean" in res.output
    assert np.array_equal(png(out / "seed0003.png"), fake)
    assert cli(*args, "--clean").exit_code == 0
    assert np.array_equal(png(out / "seed0003.png"), official_image(stylegan_runtime, tiny_network_pkl, 3))


def test_stale_temp_files_of_a_killed_run_are_removed(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [out / f".seed0001.png.{dead.pid}-abc123_x{TEMP_SUFFIX}", out / f".pool.csv.{dead.pid}-q9z{TEMP_SUFFIX}"]
    for p in stale:
        p.write_bytes(b"half")
    users = [out / ".hidden-user-file", out / ".thesis.draft.tmp", out / ".notes.1234-x.tmp"]
    for p in users:
        p.write_text("mine")
    assert cli("--network", tiny_network_pkl, "--seeds", "0-3", "--outdir", out).exit_code == 0
    assert not any(p.exists() for p in stale) and all(p.read_text() == "mine" for p in users)


# ------------------------------------------------------------------------------------ non-finite numbers


@pytest.mark.parametrize("where, extra", [("mapping", []), ("mapping", ["--sampler", "hubness", "--t", "0"]),
                                          ("synthesis", []), ("synthesis", ["--space", "z", "--sampler", "hubness",
                                                                            "--t", "0", "--num", "3"])])
def test_a_network_that_outputs_nan_is_an_error_before_any_file(stylegan_runtime, tmp_path, where, extra):
    pkl = broken_pickle(tmp_path / f"nan_{where}.pkl", where)
    out = tmp_path / "out"
    res = cli("--network", pkl, "--seeds", "5-24", *extra, "--outdir", out)
    assert res.exit_code == 1, res.output
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: network '{pkl}'") and "NaN or inf" in line, line
    if "--space" not in extra:
        assert re.search(r"seed 5\b", line)  # the first bad seed (in Z-space hubness, the first chosen one)
    assert "your latents" not in line and not out.exists()


@pytest.mark.parametrize("psi, message", [("1e300", "overflows the network's float32 arithmetic"),
                                          ("3e38", "to NaN or inf; use a truncation psi of moderate size")])
def test_an_overflowing_truncation_names_trunc(tiny_network_pkl, tmp_path, psi, message):
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--trunc", psi, "--outdir", tmp_path / "out")
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: --trunc {float(psi):g}") and message in line, line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ bad input: one line


@pytest.mark.parametrize("extra, message, code", [
    (["--device", "bogus"], "device 'bogus' is not a torch device", 1),
    (["--device", "meta"], "device='meta' cannot compute here", 1),
    (["--outdir", ""], "--outdir is empty", 1),
    (["--outdir", "/proc/no/such/dir"], "cannot create or open --outdir '/proc/no/such/dir'", 1),
    (["--seeds", "0-99999999999"], "seed 99999999999 is out of range", 2),
    (["--seeds", "0-99999999"], "names 100,000,000 seeds", 2),
    (["--grid", "7"], "--grid '7' is not WxH", 2),
    (["--translate", "nan,0"], "must be finite numbers", 1),
    (["--rotate", "inf"], "must be finite numbers", 1),
    (["--sampler", "hubness", "--t", "nan"], "--t must be a finite number", 1),
])
def test_bad_input_is_one_line_fast_and_writes_nothing(tiny_network_pkl, tmp_path, extra, message, code):
    args = with_options(["--network", str(tiny_network_pkl), "--seeds", "0-7", "--outdir", str(tmp_path / "out")],
                        extra)
    t0 = time.time()
    res = cli(*args) if "--device" in extra else cli(*args, "--device", "cpu")
    assert res.exit_code == code and time.time() - t0 < 20, res.output
    lines = res.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in res.stderr, res.stderr
    if code == 1:
        assert len(lines) == 1 or not lines[-2].strip() or "Loading" in lines[-2]
    assert not (tmp_path / "out").exists() and not (tmp_path / "").joinpath("seed0000.png").exists()


def test_a_pool_larger_than_memory_is_refused_before_allocating(tiny_network_pkl, tmp_path, monkeypatch):
    from extensions import pools
    monkeypatch.setattr(pools, "available_memory", lambda device=None: 64 * 2 ** 20)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-999999", "--sampler", "hubness", "--outdir", tmp_path / "o")
    assert res.exit_code == 1 and not (tmp_path / "o").exists()
    line = res.stderr.strip().splitlines()[-1]
    assert "a pool of 1,000,000 latents needs about" in line and "--pool-size" in line
    need = pools.pool_bytes(10 ** 6, 32, 32, hub=True)
    assert need > 32 * 2 ** 20 and f"{need / 2 ** 30:.1f} GiB" in line


def test_a_full_disk_names_the_real_file_and_leaves_the_folder_as_it_was(tiny_network_pkl, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-3", "--outdir", out]
    assert cli(*args).exit_code == 0
    before = contents(out)
    real_save = PIL.Image.Image.save

    calls = []

    def full(self, fp, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # seeds 0-3 are kept; seed 4 is staged, seed 5 finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(PIL.Image.Image, "save", full)
    res = cli(*args[:-3], "0-7", "--outdir", out)
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert f"cannot write '{out / 'seed0005.png'}': No space left on device" in line, line
    assert contents(out) == before and [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_seed_ranges_are_counted_before_they_are_built():
    from extensions.stylegan.cli import parse_seeds
    t0 = time.time()
    with pytest.raises(ValueError, match="names 4,294,967,296 seeds"):
        parse_seeds("0-4294967295")
    assert time.time() - t0 < 1
    assert parse_seeds("3,0-2,9").tolist() == [3, 0, 1, 2, 9]


# ------------------------------------------------------------------------------------ audited corners


def test_a_commit_that_cannot_finish_restores_the_folder(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-5", "--grid", "--outdir", out]
    assert cli(*args).exit_code == 0
    before = contents(out)
    (out / "seed0004.png").unlink()
    (out / "seed0004.png").mkdir()  # a folder where a result file goes: found only when it is replaced
    del before["seed0004.png"]
    res = cli(*args, "--trunc", 0.7, "--clean")
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert f"cannot replace '{out / 'seed0004.png'}'" in line and "the folder is as it was" in line, line
    assert {k: v for k, v in contents(out).items() if k != "seed0004.png"} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    (out / "seed0004.png").rmdir()
    assert cli(*args, "--trunc", 0.7, "--clean").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["truncation_psi"] == 0.7


class _Killed(BaseException):
    """The process dies: nothing of the run's own error handling runs."""


@pytest.mark.parametrize("renames", range(8))  # the commit below renames 8 times
def test_a_commit_killed_midway_is_rolled_back_or_completed(tmp_path, monkeypatch, renames):
    from extensions import outdir as od
    out = tmp_path / "out"

    def run(settings, files, remove=(), keep=()):
        with OutputDir(out, clean=True) as d:
            d.prepare_staging(settings, files)
            for name, data in files.items():
                d.staged(name).write_bytes(data)
            d.commit(settings, keep=keep, remove=remove)

    run({"v": 1}, {"a.png": b"a1", "b.png": b"b1", "pool.csv": b"t1"})
    old = contents(out)
    real, calls = os.replace, []

    def dies(src, dst):
        calls.append(dst)
        if len(calls) > renames:
            raise _Killed()
        return real(src, dst)

    monkeypatch.setattr(od.os, "replace", dies)
    with pytest.raises(_Killed):
        run({"v": 2}, {"a.png": b"a2", "c.png": b"c2", "pool.csv": b"t2"}, remove=["b.png"])
    monkeypatch.setattr(od.os, "replace", real)
    with OutputDir(out):  # the next run finishes or undoes the half commit before anything else
        pass
    after = contents(out)
    new = {"a.png": b"a2", "c.png": b"c2", "pool.csv": b"t2"}
    assert after in (old, {**new, "manifest.json": after.get("manifest.json")}), (renames, after)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == set(visible(out)) - {"manifest.json"}  # it vouches for exactly what is there
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] in ([], [STAGING_NAME])


@pytest.mark.parametrize("manifest", ['{"files": {}, "settings": 5}', '[1, 2]', '{"files": {"seed0000.png": "x"}, '
                                      '"settings": {}}', '{"settings": {}, "files": {"seed0000.png": {"sha256": 1}}}'])
def test_a_malformed_manifest_vouches_for_nothing(tiny_network_pkl, tmp_path, manifest):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-3", "--outdir", out]
    assert cli(*args).exit_code == 0
    (out / "manifest.json").write_text(manifest)
    res = cli(*args)
    assert res.exit_code == 1 and "Traceback" not in res.stderr and "--clean" in res.stderr.splitlines()[-1]
    assert cli(*args, "--clean").exit_code == 0


def test_results_the_new_run_does_not_make_are_not_left_behind(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    args = ["--network", tiny_network_pkl, "--seeds", "0-3", "--outdir", out]
    assert cli(*args, "--grid").exit_code == 0
    res = cli(*args)  # no grid this time: the old one would show another result
    assert res.exit_code == 1 and "grid.png" in res.stderr
    assert cli(*args, "--clean").exit_code == 0 and not (out / "grid.png").exists()
    user = tmp_path / "user"
    user.mkdir()
    (user / "pool.csv").write_text("my own table")
    res = cli(*args[:-1], user)
    assert res.exit_code == 1 and "pool.csv" in res.stderr and (user / "pool.csv").read_text() == "my own table"


def test_a_file_url_network_is_identified_by_its_content(stylegan_runtime, tmp_path):
    from extensions.stylegan.generate import network_identity
    pkl = tiny_networks.write_network_pickle(tmp_path / "snap.pkl", seed=0)
    first = network_identity(f"file://{pkl}")
    assert first == network_identity(str(pkl)) and first["network"] == str(pkl)
    assert first["network_sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    tiny_networks.write_network_pickle(pkl, seed=1)  # a snapshot overwritten in place
    assert network_identity(f"file://{pkl}")["network_sha256"] != first["network_sha256"]


def test_a_nan_mean_latent_blames_the_network_not_trunc(stylegan_runtime, tmp_path):
    data = tiny_networks.network_dict(seed=0)
    data["G_ema"].mapping.w_avg.fill_(float("nan"))
    pkl = tmp_path / "nan_wavg.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(data, f)
    res = cli("--network", pkl, "--seeds", "0-3", "--trunc", 0.7, "--outdir", tmp_path / "out")
    line = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and line.startswith(f"Error: network '{pkl}' has NaN or inf in its mean latent"), line
    assert not (tmp_path / "out").exists()


def test_a_refused_run_leaves_the_holders_lock_alone(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    with OutputDir(out, tool="holder"):
        for _ in range(2):
            res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--outdir", out)
            assert res.exit_code == 1 and "(holder, pid" in res.stderr


def test_overflow_and_range_messages_are_one_clean_line(tiny_network_pkl, tmp_path):
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--trunc", "1e39", "--outdir", tmp_path / "a")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--num", 10 ** 12, "--outdir", tmp_path / "b")
    assert res.exit_code == 1 and "raise --max-pools" in res.stderr and not (tmp_path / "b").exists()
    res = cli("--network", tiny_network_pkl, "--seeds", "0-9", "--sampler", "hubness", "--t", 0, "--num", 20,
              "--pool-size", 10 ** 12, "--outdir", tmp_path / "p")
    assert res.exit_code == 1 and res.stderr.strip().endswith("use a smaller --pool-size") and not (tmp_path / "p").exists()
    res = cli("--network", tiny_network_pkl, "--seeds", "\u0661\u0662", "--outdir", tmp_path / "c")
    assert res.exit_code == 2 and "neither a seed nor a range" in res.stderr


def test_a_failed_run_removes_the_folders_it_made_and_names_the_option_that_overflows(tiny_network_pkl, tmp_path):
    res = cli("--network", tiny_network_pkl, "--seeds", "0-3", "--trunc", "1e38", "--outdir", tmp_path / "a" / "b" / "c")
    line = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and "--trunc 1e+38" in line and "psi of moderate size" in line, line
    assert list(tmp_path.iterdir()) == []  # a/b/c were made by the run, and went with it
    # the embedded network's W stays finite there, its pixels do not
    res = cli("--seeds", "0-3", "--trunc", "1e38", "--outdir", tmp_path / "d")
    line = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and "renders NaN or inf pixels for seed 0; --trunc 1e+38 may move the latents" in line
    assert list(tmp_path.iterdir()) == []


def test_a_refused_run_leaves_the_users_files_alone(tiny_network_pkl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = {".thesis.draft.tmp": "draft", "seed0007.png": "not an image of a run"}
    for name, text in mine.items():
        (out / name).write_text(text)
    res = cli("--network", tiny_network_pkl, "--seeds", "0-5", "--outdir", out)
    assert res.exit_code == 1 and "would not vouch for" in res.stderr
    assert {p.name: p.read_text() for p in out.iterdir()} == mine


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(stylegan_runtime, tiny_network_pkl, tmp_path):
    for delay in (0.05, 0.2, 0.6, 1.2):
        p = start_started(SCRIPT, ["--network", tiny_network_pkl, "--seeds", "0-1999", "--outdir",
                                   tmp_path / f"o{delay}", "--device", "cpu"], stylegan_runtime.root)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130 and "Traceback" not in err, (delay, err[-1500:])


@pytest.mark.parametrize("script", ["hubness_report.py", "compare_samplers.py"])
def test_figure_scripts_exit_130_on_ctrl_c_and_leave_no_figure(stylegan_runtime, tmp_path, script):
    for delay in (0.05, 0.3, 2.0):
        out = tmp_path / f"o{delay}"
        p = start_started(tiny_networks.REPO_ROOT / script, ["--outdir", out, "--t", "15", "--device", "cpu"],
                          stylegan_runtime.root)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130 and "Traceback" not in err, (delay, err[-1500:])
        assert not out.exists() or not [q for q in out.iterdir() if q.suffix in (".png", ".json")]


# ------------------------------------------------------------------------------------ files written together


def test_atomic_files_commit_all_or_leave_every_path_as_it_was(tmp_path):
    from extensions.render import atomic_files, remove_stale_temps
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("before")

    def listing():
        return {p.name: (p.read_text() if p.is_file() else "<dir>") for p in tmp_path.iterdir()}

    before = listing()
    with pytest.raises(RuntimeError):  # the block fails: nothing changes
        with atomic_files([old, new]) as temps:
            temps[old].write_text("after")
            raise RuntimeError("stop")
    assert listing() == before
    (tmp_path / "blocked").mkdir()  # a rename fails after two succeeded: both are put back
    with pytest.raises(OSError) as info:
        with atomic_files([old, new, tmp_path / "blocked"]) as temps:
            for tmp in temps.values():
                tmp.write_text("after")
    assert info.value.filename == str(tmp_path / "blocked")
    assert listing() == dict(before, blocked="<dir>")
    with atomic_files([old, new]) as temps:
        for tmp in temps.values():
            tmp.write_text("after")
    assert listing() == {"old.txt": "after", "new.txt": "after", "blocked": "<dir>"}
    assert remove_stale_temps(tmp_path) == []  # no temporaries or backups were left


def test_atomic_files_finish_their_renames_before_ctrl_c_and_put_symlinks_back(tmp_path, monkeypatch):
    from extensions import render
    a, b = tmp_path / "a.png", tmp_path / "b.json"
    target = tmp_path / "target.txt"
    target.write_text("linked")
    a.symlink_to(target)
    b.write_text("old b")
    real_replace, calls = os.replace, []

    def replace(src, dst):  # Ctrl-C arrives while the first file is renamed into place
        calls.append(dst)
        real_replace(src, dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(render.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with render.atomic_files([a, b]) as temps:
            for tmp in temps.values():
                tmp.write_text("new")
    assert a.read_text() == b.read_text() == "new" and not a.is_symlink()  # the commit finished, then stopped
    monkeypatch.setattr(render.os, "replace", real_replace)
    a.unlink()
    a.symlink_to(target)
    (tmp_path / "c").mkdir()  # a later rename fails: the symlink comes back as a symlink
    with pytest.raises(OSError):
        with render.atomic_files([a, b, tmp_path / "c"]) as temps:
            for tmp in temps.values():
                tmp.write_text("newer")
    assert a.is_symlink() and a.read_text() == "linked" and b.read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if render.TEMP_RE.match(p.name)]


def test_only_this_machines_dead_writers_temporaries_are_removed(tmp_path):
    from extensions.render import TEMP_SUFFIX, remove_stale_temps
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".m.npy.{dead.pid}-ab{TEMP_SUFFIX}"
    live = tmp_path / f".m.npy.{os.getppid()}-cd{TEMP_SUFFIX}"
    elsewhere = tmp_path / f".m.npy.{dead.pid}-ef.0123abcd.stylegan3-hubness.tmp"  # another machine's (NFS)
    for p in (stale, live, elsewhere):
        p.write_text("x")
    with OutputDir(tmp_path, tool="test"):  # an output folder's start-up removes what remove_stale_temps does
        pass
    assert not stale.exists() and live.exists() and elsewhere.exists()
    assert remove_stale_temps(tmp_path) == []


def test_a_failed_run_removes_only_folders_it_made(tmp_path):
    from extensions.render import created_folder
    (tmp_path / "results").mkdir()
    with pytest.raises(RuntimeError):
        with created_folder(tmp_path / "nothere" / ".." / "results" / "run1"):
            raise RuntimeError("fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"] and not any((tmp_path / "results").iterdir())
    with pytest.raises(OutdirError):
        with OutputDir(tmp_path / "results" / "a" / "b"):
            raise OutdirError("fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"] and not any((tmp_path / "results").iterdir())


def test_file_commits_without_hard_links_and_through_dotdot_paths(tmp_path, monkeypatch):
    from extensions import render
    results = tmp_path / "results"
    with render.created_folder(tmp_path / "nothere" / ".." / "results" / "run") as run:
        assert run.is_dir() and (results / "run").is_dir()
    a, b = results / "a.txt", results / "b.txt"
    a.write_text("old a")
    (results / "blocked").mkdir()

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(render.os, "link", no_links)
    seen = []
    real_replace = os.replace

    def replace(src, dst):  # the original is still in place when its replacement arrives
        seen.append(os.path.lexists(dst) if os.fspath(dst) == os.fspath(a) else None)
        return real_replace(src, dst)
    monkeypatch.setattr(render.os, "replace", replace)
    with pytest.raises(OSError):
        with render.atomic_files([a, str(a), b, results / "blocked"]) as temps:  # a named twice
            for tmp in temps.values():
                tmp.write_text("new")
    assert True in seen and a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in results.iterdir()) == ["a.txt", "blocked", "run"]


def test_deferred_signals_act_on_every_signal_that_arrived(monkeypatch):
    from extensions.render import deferred_signals
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)
                got.append("block ended")
        assert got == ["block ended", signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
