"""The patch applier (``python -m extensions.patches``) and the project's patches on an official checkout."""

import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import tiny_networks
from extensions import patches as P

REPO_PATCHES = tiny_networks.REPO_ROOT / "patches"

ALPHA = "".join(f"line {i}\n" for i in range(1, 21))
ALPHA_PATCH = textwrap.dedent("""\
    A description before the diff is ignored.

    --- a/alpha.py
    +++ b/alpha.py
    @@ -2,4 +2,5 @@
     line 2
     line 3
    +inserted after 3
     line 4
     line 5
    @@ -14,5 +15,4 @@
     line 14
     line 15
    -line 16
     line 17
     line 18
    --- /dev/null
    +++ b/pkg/new.py
    @@ -0,0 +1,2 @@
    +created = True
    +print(created)
    """)
BETA = "one\ntwo\nthree"  # no newline at the end
BETA_PATCH = textwrap.dedent("""\
    --- a/beta.txt
    +++ b/beta.txt
    @@ -1,3 +1,4 @@
     one
     two
    -three
    \\ No newline at end of file
    +THREE
    +four
    """)


def checkout(tmp_path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir(parents=True)
    (root / "alpha.py").write_text(ALPHA)
    (root / "beta.txt").write_text(BETA)
    return root


def patch_dir(tmp_path, **patches) -> Path:
    folder = tmp_path / "patches"
    folder.mkdir(exist_ok=True)
    for name, text in patches.items():
        (folder / f"{name}.patch").write_text(text)
    return folder


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_apply_revert_cycle(tmp_path):
    root, folder = checkout(tmp_path), patch_dir(tmp_path, a_alpha=ALPHA_PATCH, b_beta=BETA_PATCH)
    before = snapshot(root)
    assert P.run("check", root, folder) == [
        "a_alpha.patch: not applied; apply changes alpha.py (+1 -1 lines), pkg/new.py (+2 -0 lines)",
        "b_beta.patch: not applied; apply changes beta.txt (+2 -1 lines)"]
    report = P.run("apply", root, folder)
    assert report[0].startswith("a_alpha.patch: applied: alpha.py") and report[1].startswith("b_beta.patch: applied")
    lines = ALPHA.splitlines(keepends=True)
    assert (root / "alpha.py").read_text() == "".join(lines[:3] + ["inserted after 3\n"] + lines[3:15] + lines[16:])
    assert (root / "pkg/new.py").read_text() == "created = True\nprint(created)\n"
    assert (root / "beta.txt").read_text() == "one\ntwo\nTHREE\nfour\n"
    assert P.run("check", root, folder) == ["a_alpha.patch: applied", "b_beta.patch: applied"]
    assert P.run("apply", root, folder) == ["a_alpha.patch: already applied, left alone",
                                            "b_beta.patch: already applied, left alone"]
    assert P.run("revert", root, folder)[0].startswith("a_alpha.patch: reverted: alpha.py (-1 +1 lines)")
    assert snapshot(root) == before and not (root / "pkg/new.py").exists()
    assert P.run("revert", root, folder) == ["a_alpha.patch: not applied, left alone",
                                             "b_beta.patch: not applied, left alone"]


@pytest.mark.skipif(shutil.which("patch") is None, reason="no patch(1) to compare with")
def test_same_result_as_gnu_patch(tmp_path):
    ours, theirs = checkout(tmp_path / "ours"), checkout(tmp_path / "theirs")
    folder = patch_dir(tmp_path, a_alpha=ALPHA_PATCH, b_beta=BETA_PATCH)
    P.run("apply", ours, folder)
    for name in ("a_alpha", "b_beta"):
        subprocess.run(["patch", "-p1", "-s", "-i", str(folder / f"{name}.patch")], cwd=theirs, check=True)
    assert snapshot(ours) == snapshot(theirs)


def test_shifted_context_still_applies(tmp_path):
    root, folder = checkout(tmp_path), patch_dir(tmp_path, a_alpha=ALPHA_PATCH)
    (root / "alpha.py").write_text("# a header the patch does not know\n" * 3 + ALPHA)
    P.run("apply", root, folder)
    text = (root / "alpha.py").read_text()
    assert "line 3\ninserted after 3\nline 4\n" in text and "line 16\n" not in text
    P.run("revert", root, folder)
    assert (root / "alpha.py").read_text() == "# a header the patch does not know\n" * 3 + ALPHA


def test_a_conflict_changes_nothing(tmp_path):
    root = checkout(tmp_path)
    folder = patch_dir(tmp_path, a_alpha=ALPHA_PATCH, b_beta=BETA_PATCH)
    (root / "beta.txt").write_text("one\n2\nthree")  # the second patch no longer fits
    before = snapshot(root)
    report = P.run("check", root, folder)
    assert report[0].startswith("a_alpha.patch: not applied")
    assert report[1] == "b_beta.patch: CONFLICT: beta.txt: hunk 1 (near line 1) does not match the file"
    with pytest.raises(P.PatchError, match="b_beta.patch does not fit .*nothing was changed"):
        P.run("apply", root, folder)
    assert snapshot(root) == before  # the first patch was not applied either


def test_partly_applied_set(tmp_path):
    root = checkout(tmp_path)
    patch_dir(tmp_path, a_alpha=ALPHA_PATCH)
    P.run("apply", root, tmp_path / "patches")
    folder = patch_dir(tmp_path, b_beta=BETA_PATCH)  # a later patch joins the folder
    assert P.run("apply", root, folder) == ["a_alpha.patch: already applied, left alone",
                                            "b_beta.patch: applied: beta.txt (+2 -1 lines)"]


def test_failed_write_restores_written_files(tmp_path, monkeypatch):
    root, folder = checkout(tmp_path), patch_dir(tmp_path, a_alpha=ALPHA_PATCH, b_beta=BETA_PATCH)
    before = snapshot(root)
    real = P._write
    calls = []

    def flaky(path, text):
        calls.append(path.name)
        if path.name == "beta.txt" and len(calls) < 5:
            raise OSError("disk full")
        real(path, text)

    monkeypatch.setattr(P, "_write", flaky)
    with pytest.raises(P.PatchError, match="writing 'beta.txt' failed .disk full.; the files already written"):
        P.run("apply", root, folder)
    assert snapshot(root) == before


def test_malformed_and_unsafe_patches(tmp_path):
    root = checkout(tmp_path)
    with pytest.raises(P.PatchError, match="no file changes found"):
        P.parse_patch("just words\n", "x.patch")
    with pytest.raises(P.PatchError, match="truncated"):
        P.parse_patch("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n", "x.patch")
    evil = "--- a/../outside.txt\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n"
    with pytest.raises(P.PatchError, match="points outside the checkout"):
        P.run("apply", root, patch_dir(tmp_path, evil=evil))
    with pytest.raises(P.PatchError, match="no .*patch files"):
        P.run("check", root, tmp_path / "checkout")
    with pytest.raises(P.PatchError, match="not a directory"):
        P.run("check", tmp_path / "none", tmp_path / "patches")


def test_command_line(tmp_path):
    root, folder = checkout(tmp_path), patch_dir(tmp_path, a_alpha=ALPHA_PATCH)
    run = lambda *a: tiny_networks.run_python(["-m", "extensions.patches", *a, "--patch-dir", folder])
    out = run("apply", "--stylegan3", root)
    assert out.returncode == 0 and out.stdout.startswith("a_alpha.patch: applied: alpha.py")
    (root / "alpha.py").write_text("changed\n")
    out = run("check", "--stylegan3", root)
    assert out.returncode == 1 and "CONFLICT" in out.stdout
    out = tiny_networks.run_python(["-m", "extensions.patches", "revert", "--patch-dir", folder],
                                   STYLEGAN3_DIR=root)
    assert out.returncode == 1 and out.stderr.startswith("error: a_alpha.patch does not fit")
    (tmp_path / "elsewhere").mkdir()
    for command in ("check", "apply"):  # a folder that is no checkout: one line, not a conflict per patch
        out = run(command, "--stylegan3", tmp_path / "elsewhere")
        assert out.returncode == 1 and out.stdout == "" and out.stderr == (
            f"error: '{tmp_path / 'elsewhere'}' is not a stylegan3 checkout: it has none of alpha.py; pass --stylegan3 "
            f"DIR of a checkout (or set STYLEGAN3_DIR)\n")


def test_project_patches_parse():
    files = P.patch_files()
    assert REPO_PATCHES / "gen_images.patch" in files
    for f in files:
        assert all(fp.path and fp.hunks for fp in P.parse_patch(f.read_text(), f.name))
    gen = P.parse_patch((REPO_PATCHES / "gen_images.patch").read_text())
    assert [fp.path for fp in gen] == ["gen_images.py"] and gen[0].counts() == (8, 0)  # adds lines only


# ------------------------------------------------------------------------------------------------------
# The project's patches on a copy of the official checkout.

OFFICIAL = tiny_networks.TESTS_DIR / "official_gen_images.py"


@pytest.fixture
def official_copy(stylegan3_checkout, tmp_path):
    from conftest import copy_checkout
    return copy_checkout(stylegan3_checkout, tmp_path / "stylegan3")


@pytest.mark.needs_stylegan3
def test_gen_images_patch_on_the_official_checkout(official_copy, tmp_path):
    original = (official_copy / "gen_images.py").read_bytes()
    before = snapshot(official_copy)
    assert P.run("check", official_copy) == [
        f"{f.name}: not applied; apply changes " + P.examine(official_copy, [f], {})[0].summary()
        for f in P.patch_files()]
    P.run("apply", official_copy)
    patched = (official_copy / "gen_images.py").read_bytes()
    if shutil.which("patch"):
        other = tmp_path / "other"
        other.mkdir()
        (other / "gen_images.py").write_bytes(original)
        subprocess.run(["patch", "-p1", "-s", "-i", str(REPO_PATCHES / "gen_images.patch")], cwd=other, check=True)
        assert (other / "gen_images.py").read_bytes() == patched
    assert "gen_images.patch: reverted: gen_images.py (-8 +0 lines)" in P.run("revert", official_copy)
    assert (official_copy / "gen_images.py").read_bytes() == original
    assert snapshot(official_copy) == before  # every patch of the folder is undone


@pytest.mark.needs_stylegan3
def test_patched_gen_images(official_copy, tmp_path):
    out = tiny_networks.run_python(["-m", "extensions.patches", "apply", "--stylegan3", official_copy])
    assert out.returncode == 0 and "gen_images.patch: applied" in out.stdout, out.stderr
    pkl = tmp_path / "net.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2], arch='stylegan3')", official_copy, pkl])
    assert build.returncode == 0, build.stderr[-2000:]
    base = ["--network", pkl, "--seeds", "0-47", "--trunc", 0.8, "--rotate", 10]
    hub = ["--sampler", "hubness", "--t", 0, "--num", 3, "--device", "cpu"]  # the runner puts gen_images on the CPU
    # STYLEGAN3_DIR names another checkout: the patched script keeps using its own.
    patched = tiny_networks.run_python([OFFICIAL, official_copy, *base, *hub, "--outdir", tmp_path / "patched"],
                                       STYLEGAN3_DIR=tiny_networks.stylegan2_ada_runtime())
    assert patched.returncode == 0, patched.stderr[-2000:]
    ours = tiny_networks.run_python([tiny_networks.REPO_ROOT / "gen_images_hub.py", "--stylegan3", official_copy,
                                     *base, *hub, "--outdir", tmp_path / "ours"])
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert "pkg_resources" not in ours.stderr  # the checkout's deprecation warning is silenced where we import it
    files = sorted(p.name for p in (tmp_path / "patched").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "ours").iterdir()) and len(files) == 3 + 3
    for name in files:  # images, pool.csv and latents.npz
        assert (tmp_path / "patched" / name).read_bytes() == (tmp_path / "ours" / name).read_bytes(), name
    names = [name for name in files if name.startswith("seed")]
    # Without hubness options the patched script runs the official code path, unchanged.
    seed = int(names[0][4:8])
    plain = tiny_networks.run_python([OFFICIAL, official_copy, "--network", pkl, "--seeds", seed, "--trunc", 0.8,
                                      "--rotate", 10, "--outdir", tmp_path / "plain"])
    assert plain.returncode == 0 and f"Generating image for seed {seed} (0/1)" in plain.stdout, plain.stderr
    assert not (tmp_path / "plain" / "pool.csv").exists()
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "plain" / names[0])),
                          np.asarray(PIL.Image.open(tmp_path / "ours" / names[0])))
    # Without the plugin installed, the patched script still runs, as before the patch.
    hidden = tiny_networks.run_python([OFFICIAL, official_copy, "--network", pkl, "--seeds", seed,
                                       "--outdir", tmp_path / "hidden"], HIDE_PLUGIN=1)
    assert hidden.returncode == 0 and (tmp_path / "hidden" / names[0]).is_file(), hidden.stderr[-2000:]
    for device in ("bogus", "meta"):  # the hub options' one-line errors hold in the patched script too
        bad = tiny_networks.run_python([OFFICIAL, official_copy, *base, *hub[:-2], "--device", device,
                                        "--outdir", tmp_path / device])
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
        assert bad.stderr.strip().splitlines()[-1].startswith("Error: device") and not (tmp_path / device).exists()
    refused = tiny_networks.run_python([OFFICIAL, official_copy, "--network", pkl, "--seeds", seed, "--sampler",
                                        "hubness", "--outdir", tmp_path / "refused"], HIDE_PLUGIN=1)
    assert refused.returncode == 2 and "No such option '--sampler'" in refused.stderr


@pytest.mark.needs_stylegan3
def test_patched_gen_video(official_copy, tmp_path):
    out = tiny_networks.run_python(["-m", "extensions.patches", "apply", "--stylegan3", official_copy])
    assert out.returncode == 0 and "gen_video.patch: applied" in out.stdout, out.stderr
    pkl = tmp_path / "net.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2])", official_copy, pkl])
    assert build.returncode == 0, build.stderr[-2000:]
    args = ["--network", pkl, "--seeds", "0-39", "--sampler", "hubness", "--t", 0, "--num-keyframes", 3,
            "--w-frames", 4, "--interp", "slerp", "--device", "cpu"]
    patched = tiny_networks.run_python([official_copy / "gen_video.py", *args, "--output", tmp_path / "p.mp4",
                                        "--strip", tmp_path / "p.png"], cwd=official_copy)
    assert patched.returncode == 0, patched.stderr[-2000:]
    two = tiny_networks.run_python([official_copy / "gen_video.py", *args, "--gpus", 2, "--output", tmp_path / "p2.mp4",
                                    "--strip", tmp_path / "p2.png"], cwd=official_copy)  # hub values shared by 2
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "p2.png").read_bytes() == (tmp_path / "p.png").read_bytes()
    ours = tiny_networks.run_python([tiny_networks.REPO_ROOT / "gen_video_hub.py", "--stylegan3", official_copy, *args,
                                     "--output", tmp_path / "o.mp4", "--strip", tmp_path / "o.png"])
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "p.png")), np.asarray(PIL.Image.open(tmp_path / "o.png")))
    bad = tiny_networks.run_python([official_copy / "gen_video.py", *args[:-2], "--device", "bogus",
                                    "--output", tmp_path / "b.mp4"], cwd=official_copy)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("Error: device")
    assert not (tmp_path / "b.mp4").exists()
    assert "gen_video.patch: reverted: gen_video.py (-8 +0 lines)" in P.run("revert", official_copy)
