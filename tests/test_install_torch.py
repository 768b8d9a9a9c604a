"""scripts/install_torch.py (which torch build `make` installs) and the Makefile's Python version check."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys

import pytest

from tiny_networks import REPO_ROOT

spec = importlib.util.spec_from_file_location("install_torch", REPO_ROOT / "scripts" / "install_torch.py")
install_torch = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = install_torch  # dataclasses look their module up there
spec.loader.exec_module(install_torch)

SMI_ONE_GPU = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5f4c2a1e-0000-0000-0000-000000000000)\n"
SMI_TWO_GPUS = SMI_ONE_GPU + "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-5f4c2a1e-0000-0000-0000-000000000001)\n"
SMI_NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                 "Make sure that the latest NVIDIA driver is installed and running.\n")


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- GPU detection -------------------------------------------------------------------------------------

@pytest.mark.parametrize("smi, proc, expected", [
    ((0, SMI_ONE_GPU), 1, True),
    ((0, SMI_TWO_GPUS), None, True),              # nvidia-smi alone suffices
    (None, 2, True),                              # container: driver's GPUs visible, no nvidia-smi
    (None, None, False),                          # no NVIDIA software at all
    ((9, SMI_NO_DRIVER), None, False),            # nvidia-smi installed, driver not loaded
    ((6, "No devices were found\n"), 0, False),   # driver loaded, no GPU
    ((0, "No devices were found\n"), 0, False),
    ((124, ""), None, False),                     # nvidia-smi hung
])
def test_nvidia_gpu_from_smi_and_proc(smi, proc, expected):
    present, evidence = install_torch.nvidia_gpu(smi, proc)
    assert present is expected
    if smi is not None and smi[0] != 0:
        assert f"exit {smi[0]}" in evidence
    if smi is None and not expected:
        assert "nvidia-smi not found" in evidence and "no /proc/driver/nvidia/gpus" in evidence


def test_nvidia_gpu_counts_listed_gpus():
    assert install_torch.nvidia_gpu((0, SMI_TWO_GPUS), None)[1] == "nvidia-smi -L lists 2 GPUs"
    assert install_torch.nvidia_gpu(None, 3)[1] == "/proc/driver/nvidia/gpus lists 3 GPUs"


# --- the decision --------------------------------------------------------------------------------------

@pytest.mark.parametrize("smi, proc", [(None, None), ((9, SMI_NO_DRIVER), None), ((6, "No devices were found"), 0)])
def test_linux_without_gpu_gets_the_cpu_build_local_wheel_first(smi, proc):
    plan = install_torch.plan("Linux", None, smi=smi, proc_gpus=proc)
    assert "CPU build" in plan.message and "no NVIDIA GPU" in plan.message
    local, index = plan.attempts
    # Both name the +cpu build, so neither can fall back to PyPI's CUDA wheel of the same version.
    assert local == ("torch==2.13.0+cpu", "--no-deps", "--no-index")
    assert index == ("torch==2.13.0+cpu", "--no-deps", "--index-url", "https://download.pytorch.org/whl/cpu")
    assert plan.deps == ("torch==2.13.0",)


@pytest.mark.parametrize("smi, proc", [((0, SMI_ONE_GPU), None), (None, 1), ((9, SMI_NO_DRIVER), 1)])
def test_linux_with_gpu_gets_pypi_default_build(smi, proc):
    plan = install_torch.plan("Linux", None, smi=smi, proc_gpus=proc)
    assert plan.attempts == (("torch==2.13.0",),) and plan.deps == ()
    assert "CUDA build" in plan.message


@pytest.mark.parametrize("system", ["Darwin", "Windows"])
def test_macos_and_windows_get_pypi_default_build_even_with_gpu_evidence(system):
    for smi in (None, (0, SMI_ONE_GPU)):
        plan = install_torch.plan(system, None, smi=smi)
        assert plan.attempts == (("torch==2.13.0",),) and plan.deps == ()
        assert system in plan.message and "CPU build" not in plan.message


@pytest.mark.parametrize("installed", ["2.13.0", "2.13.0+cpu", "2.13.0+cu130"])
def test_installed_torch_2_13_is_kept(installed):
    for system, smi in (("Linux", None), ("Linux", (0, SMI_ONE_GPU)), ("Darwin", None)):
        plan = install_torch.plan(system, installed, torch_index="https://example.org/whl", smi=smi)
        assert plan.attempts == () and plan.deps == ()
        assert installed in plan.message and "nothing to do" in plan.message


@pytest.mark.parametrize("installed", [None, "2.12.1+cpu", "2.13.1", "12.13.0"])
def test_other_torch_versions_are_replaced(installed):
    plan = install_torch.plan("Linux", installed, smi=(0, SMI_ONE_GPU))
    assert plan.attempts == (("torch==2.13.0",),)


def test_torch_index_overrides_detection():
    url = "https://download.pytorch.org/whl/cu130"
    for system, smi in (("Linux", None), ("Linux", (0, SMI_ONE_GPU)), ("Windows", None)):
        plan = install_torch.plan(system, None, torch_index=url, smi=smi)
        assert plan.attempts == (("torch==2.13.0", "--no-deps", "--index-url", url),)
        assert plan.deps == ("torch==2.13.0",) and url in plan.message


# --- probing the machine ------------------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    (f"#!/bin/sh\n[ \"$1\" = -L ] || exit 2\ncat <<'EOF'\n{SMI_TWO_GPUS}EOF\n", (0, SMI_TWO_GPUS)),
    (f"#!/bin/sh\ncat <<'EOF'\n{SMI_NO_DRIVER}EOF\nexit 9\n", (9, SMI_NO_DRIVER)),
])
def test_run_nvidia_smi_reads_a_fake_nvidia_smi(tmp_path, monkeypatch, script, expected):
    executable(tmp_path / "nvidia-smi", script)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")  # ahead of any real one
    assert install_torch.run_nvidia_smi() == expected


def test_run_nvidia_smi_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder
    assert install_torch.run_nvidia_smi() is None


# --- running pip ----------------------------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> {log}
case "$*" in *--no-index*) echo "ERROR: No matching distribution found for torch==2.13.0+cpu" >&2; exit 1 ;; esac
case "$*" in *{fail}*) exit 1 ;; esac
exit 0
"""


def run_main_on_cpu_linux(tmp_path, monkeypatch, fail):
    """main() on a GPU-less Linux machine without torch, with a fake interpreter that logs its pip calls."""
    log = tmp_path / "pip.log"
    fake = executable(tmp_path / "python", FAKE_PYTHON.format(log=log, fail=fail))
    monkeypatch.setattr(sys, "executable", str(fake))
    monkeypatch.setattr(install_torch.platform, "system", lambda: "Linux")
    monkeypatch.setattr(install_torch, "installed_torch", lambda: None)
    monkeypatch.setattr(install_torch, "run_nvidia_smi", lambda: None)
    monkeypatch.setattr(install_torch, "count_proc_gpus", lambda: None)
    monkeypatch.delenv("TORCH_INDEX", raising=False)
    code = install_torch.main([])
    return code, log.read_text().splitlines()


def test_main_falls_back_from_local_wheel_to_cpu_index(tmp_path, monkeypatch, capsys):
    code, calls = run_main_on_cpu_linux(tmp_path, monkeypatch, fail="NEVER")
    assert code == 0
    assert calls == ["-m pip install -q torch==2.13.0+cpu --no-deps --no-index",
                     "-m pip install -q torch==2.13.0+cpu --no-deps --index-url https://download.pytorch.org/whl/cpu",
                     "-m pip install -q torch==2.13.0"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("install_torch: installing torch 2.13.0+cpu, the CPU build")
    assert out[1] == ("install_torch: No matching distribution found for torch==2.13.0+cpu (--no-deps --no-index); "
                      "trying --no-deps --index-url https://download.pytorch.org/whl/cpu")


def test_main_reports_one_line_when_every_source_fails(tmp_path, monkeypatch, capsys):
    code, calls = run_main_on_cpu_linux(tmp_path, monkeypatch, fail="download.pytorch.org")
    assert code == 1 and len(calls) == 2  # the dependencies step never runs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("install_torch: could not install torch 2.13.0") and "TORCH_INDEX" in err[0]


def test_main_keeps_the_installed_torch():
    from importlib.metadata import version
    installed = version("torch")
    if installed.split("+")[0] != "2.13.0":
        pytest.skip(f"this environment has torch {installed}")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "install_torch.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"install_torch: torch {installed} is already installed: nothing to do\n"


# --- the Makefile's Python check ------------------------------------------------------------------------

FAKE_OLD_PYTHON = """#!/bin/sh
echo "$*" >> {log}
case "$1" in -c) echo {version} ;; esac
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("version, accepted", [("2.7", False), ("3.9", False), ("3.10", True), ("3.13", True),
                                               ("4.0", True)])
def test_make_checks_the_python_version_first(tmp_path, version, accepted):
    log = tmp_path / "calls.log"
    fake = executable(tmp_path / f"python{version}", FAKE_OLD_PYTHON.format(log=log, version=version))
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "-C", str(REPO_ROOT), f"PYTHON={fake}", f"VENV={venv}", f"{venv}/.installed"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0  # the fake makes no venv, so the set-up fails later even when accepted
    calls = log.read_text().splitlines()
    if accepted:
        assert f"-m venv {venv}" in calls and "needs Python" not in done.stderr
    else:
        assert calls == [calls[0]] and calls[0].startswith("-c ")  # stopped before `-m venv`
        assert (f"stylegan3-hubness needs Python >= 3.10; found {version} at {fake}: set PYTHON=python3.10"
                in done.stderr.splitlines())
    assert not venv.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_names_a_missing_python(tmp_path):
    missing = tmp_path / "python3.99"
    done = subprocess.run(["make", "-C", str(REPO_ROOT), f"PYTHON={missing}", f"VENV={tmp_path / 'venv'}",
                           f"{tmp_path / 'venv'}/.installed"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert (f"stylegan3-hubness needs Python >= 3.10; found no Python at {missing}: set PYTHON=python3.10"
            in done.stderr.splitlines())


def test_setup_cfg_minimum_matches_torch_wheels_metadata():
    """python_requires is what the installed torch 2.13.0 wheel itself declares."""
    from importlib.metadata import metadata
    import configparser
    meta = metadata("torch")
    if not meta["Version"].startswith("2.13.0"):
        pytest.skip(f"this environment has torch {meta['Version']}")
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    assert cfg["options"]["python_requires"] == meta["Requires-Python"] == ">=3.10"
