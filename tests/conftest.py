"""Shared fixtures: tiny genuine network pickles (see tiny_networks.py) and an official checkout when given.

``STYLEGAN3_DIR`` pointing to an NVlabs/stylegan3 checkout enables the tests marked ``needs_stylegan3``;
they run the checkout's code in child processes, because one process can import only one checkout and
the in-process tests use the stylegan2-ada runtime of the ``draggan`` wheel.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import tiny_networks


# Taken out of the environment: in-process tests must find the stylegan2-ada runtime, not this checkout.
_STYLEGAN3_DIR = os.environ.pop("STYLEGAN3_DIR", None)


def stylegan3_dir():
    """The official checkout from ``STYLEGAN3_DIR``, or None."""
    return Path(_STYLEGAN3_DIR) if _STYLEGAN3_DIR else None


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_stylegan3: needs an NVlabs/stylegan3 checkout in STYLEGAN3_DIR")
    config.addinivalue_line("markers", "needs_studiogan: needs a PyTorch-StudioGAN checkout in STUDIOGAN_DIR")


def copy_checkout(source: Path, dest: Path) -> Path:
    """A working copy of a checkout (code only), so that tests never write into the user's one."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "docs", "__pycache__", "*.pyc"))
    return dest


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("STUDIOGAN_DIR"):
        skip_studiogan = pytest.mark.skip(reason="set STUDIOGAN_DIR to a PyTorch-StudioGAN checkout to run")
        for item in items:
            if "needs_studiogan" in item.keywords:
                item.add_marker(skip_studiogan)
    if stylegan3_dir() is not None:
        return
    skip = pytest.mark.skip(reason="set STYLEGAN3_DIR to an NVlabs/stylegan3 checkout (c233a91) to run")
    for item in items:
        if "needs_stylegan3" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stylegan3_checkout(tmp_path_factory) -> Path:
    """A copy of the official stylegan3 checkout of ``STYLEGAN3_DIR`` (for tests marked ``needs_stylegan3``)."""
    root = stylegan3_dir()
    if root is None:
        pytest.skip("STYLEGAN3_DIR is not set")
    if not (root / "gen_images.py").is_file() or not (root / "training" / "networks_stylegan3.py").is_file():
        pytest.fail(f"STYLEGAN3_DIR={root} is not an NVlabs/stylegan3 checkout")
    return copy_checkout(root, tmp_path_factory.mktemp("stylegan3") / "stylegan3")


@pytest.fixture(scope="session")
def stylegan_runtime():
    """The stylegan2-ada runtime of the draggan wheel, activated in this process (a Checkout)."""
    if tiny_networks.stylegan2_ada_runtime() is None:
        pytest.skip("the stylegan2-ada runtime is missing: pip install --no-deps draggan==1.1.6")
    return tiny_networks.use_runtime()


@pytest.fixture(scope="session")
def tiny_network_pkl(tmp_path_factory, stylegan_runtime) -> Path:
    """An unconditional stylegan2-ada network pickle (G, D, G_ema): z_dim = w_dim = 32, 16x16 RGB."""
    with tiny_threads():
        return tiny_networks.write_network_pickle(tmp_path_factory.mktemp("net") / "tiny.pkl", c_dim=0, seed=0)


@pytest.fixture(scope="session")
def tiny_conditional_pkl(tmp_path_factory, stylegan_runtime) -> Path:
    """A conditional (3 classes) stylegan2-ada network pickle, otherwise like ``tiny_network_pkl``."""
    with tiny_threads():
        return tiny_networks.write_network_pickle(tmp_path_factory.mktemp("net") / "tiny_cond.pkl", c_dim=3, seed=1)


class tiny_threads:
    """One torch thread inside the block: tiny networks run many times faster so on a busy CPU."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (see :class:`tiny_threads`)."""
    with tiny_threads():
        yield
