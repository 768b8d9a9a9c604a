"""Install torch 2.13.0 into this interpreter's environment, choosing the build for this machine.

Linux without an NVIDIA GPU gets the CPU build: PyPI's Linux wheels are CUDA builds that pull several GB
of nvidia-* and triton wheels. It comes from a local wheel when pip finds one (``find-links``), else from
PyTorch's CPU index. Linux with an NVIDIA GPU, macOS and Windows get PyPI's default wheel. A torch 2.13.0
already installed is kept. ``TORCH_INDEX=<url>`` installs torch from that index instead, with no detection.

    python scripts/install_torch.py             # what `make` runs with the .venv's python
    python scripts/install_torch.py --dry-run   # print the decision and the pip commands only

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROC_GPUS = "/proc/driver/nvidia/gpus"

# Outcome of `nvidia-smi -L`: None when nvidia-smi is not on PATH, else (exit status, output).
SmiResult = Optional[Tuple[int, str]]


@dataclass(frozen=True)
class Plan:
    """What to install and why.

    Attributes
    ----------
    message : str
        One line for the user: the build and the reason.
    attempts : tuple of tuple of str
        ``pip install`` argument lists that install torch alone, tried in order until one succeeds.
    deps : tuple of str
        ``pip install`` arguments run after a successful attempt: torch's dependencies (empty: none).
    """

    message: str
    attempts: Tuple[Tuple[str, ...], ...] = ()
    deps: Tuple[str, ...] = ()


def nvidia_gpu(smi: SmiResult, proc_gpus: Optional[int]) -> Tuple[bool, str]:
    """Whether the machine has an NVIDIA GPU, from `nvidia-smi -L` and the driver's /proc entries.

    Parameters
    ----------
    smi : (int, str) or None
        Exit status and output of ``nvidia-smi -L``; None when nvidia-smi is not installed.
    proc_gpus : int or None
        Number of entries in /proc/driver/nvidia/gpus; None when that folder is absent.

    Returns
    -------
    (bool, str)
        Presence, and the evidence in words.
    """
    listed = 0 if smi is None or smi[0] != 0 else len(re.findall(r"^GPU \d+:", smi[1], flags=re.M))
    if listed:
        return True, f"nvidia-smi -L lists {listed} GPU{'s' if listed > 1 else ''}"
    # A container may see the driver's GPUs without nvidia-smi installed in it.
    if proc_gpus:
        return True, f"{PROC_GPUS} lists {proc_gpus} GPU{'s' if proc_gpus > 1 else ''}"
    if smi is None:
        smi_said = "nvidia-smi not found"
    elif smi[0] != 0:
        smi_said = f"nvidia-smi -L failed (exit {smi[0]})"
    else:
        smi_said = "nvidia-smi -L lists no GPU"
    return False, f"{smi_said}, {'no ' + PROC_GPUS if proc_gpus is None else PROC_GPUS + ' is empty'}"


def plan(system: str, installed: Optional[str], torch_index: str = "", smi: SmiResult = None,
         proc_gpus: Optional[int] = None) -> Plan:
    """Decide how to install torch ``TORCH_VERSION``.

    Parameters
    ----------
    system : str
        ``platform.system()``: "Linux", "Darwin", "Windows", ...
    installed : str or None
        Version of the torch importable in the target environment ("2.13.0+cpu"), None when none is.
    torch_index : str
        Index URL chosen by the user (``TORCH_INDEX``); empty for automatic choice.
    smi, proc_gpus
        GPU evidence on Linux, see `nvidia_gpu`.

    Returns
    -------
    Plan
    """
    pin = f"torch=={TORCH_VERSION}"
    if installed is not None and installed.split("+")[0] == TORCH_VERSION:
        return Plan(f"torch {installed} is already installed: nothing to do")
    deps = (pin,)  # torch itself is then satisfied, so pip adds only the dependencies the chosen wheel names
    if torch_index:
        return Plan(f"installing torch {TORCH_VERSION} from TORCH_INDEX={torch_index} (no GPU detection)",
                    ((pin, "--no-deps", "--index-url", torch_index),), deps)
    if system == "Linux":
        has_gpu, evidence = nvidia_gpu(smi, proc_gpus)
        if has_gpu:
            return Plan(f"installing torch {TORCH_VERSION}, PyPI's default CUDA build ({evidence})", ((pin,),))
        cpu_pin = f"{pin}+cpu"  # the label keeps pip from falling back to PyPI's CUDA wheel of the same version
        return Plan(f"installing torch {TORCH_VERSION}+cpu, the CPU build (no NVIDIA GPU: {evidence}), from a "
                    f"local wheel if pip finds one, else {CPU_INDEX}; set TORCH_INDEX to choose another build",
                    ((cpu_pin, "--no-deps", "--no-index"), (cpu_pin, "--no-deps", "--index-url", CPU_INDEX)),
                    deps)
    why = ("PyPI's Windows wheel is CPU-only; for CUDA set TORCH_INDEX to a CUDA index of download.pytorch.org"
           if system == "Windows" else "PyPI's wheel is the build for this platform")
    return Plan(f"installing torch {TORCH_VERSION}, PyPI's default build ({system}: {why})", ((pin,),))


def installed_torch() -> Optional[str]:
    """Version of the torch this interpreter can import, or None."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def run_nvidia_smi() -> SmiResult:
    """Exit status and output of ``nvidia-smi -L``; None when nvidia-smi is not on PATH."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return 124, ""
    except OSError:
        return 126, ""
    return done.returncode, done.stdout


def count_proc_gpus() -> Optional[int]:
    """Number of GPUs the NVIDIA kernel driver reports, None when it is not loaded."""
    try:
        return len(os.listdir(PROC_GPUS))
    except OSError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the decision and pip commands only")
    args = parser.parse_args(argv)

    system = platform.system()
    linux = system == "Linux"
    decision = plan(system, installed_torch(), os.environ.get("TORCH_INDEX", "").strip(),
                    smi=run_nvidia_smi() if linux else None, proc_gpus=count_proc_gpus() if linux else None)
    print(f"install_torch: {decision.message}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    if args.dry_run:
        for i, attempt in enumerate(decision.attempts):
            print(("  " if i == 0 else "  else: ") + shlex.join(pip + list(attempt)))
        if decision.deps:
            print("  then:  " + shlex.join(pip + list(decision.deps)))
        return 0

    for i, attempt in enumerate(decision.attempts):
        last = i == len(decision.attempts) - 1
        # Earlier attempts are probes (a local wheel may not exist): their errors are noise.
        done = subprocess.run(pip + list(attempt), capture_output=not last)
        if done.returncode == 0:
            break
        if last:
            print(f"install_torch: could not install torch {TORCH_VERSION} (pip exit {done.returncode}); "
                  f"set TORCH_INDEX to a reachable index, or install torch {TORCH_VERSION} with "
                  f"{sys.executable} -m pip first", file=sys.stderr)
            return 1
        said = (done.stderr or b"").decode(errors="replace").strip().splitlines() or [f"pip exit {done.returncode}"]
        print(f"install_torch: {said[-1].removeprefix('ERROR: ')} ({shlex.join(attempt[1:])}); "
              f"trying {shlex.join(decision.attempts[i + 1][1:])}", flush=True)
    if decision.deps and subprocess.run(pip + list(decision.deps)).returncode != 0:
        print("install_torch: torch's dependencies failed to install; see pip's message above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
