"""The network-source registry and its generic door, ``--network module:callable``: Z-space hub seeds
against an independent k-NN, images against the module's own call, one-line errors; the embedded network
as one source among the others (no import circle between the StyleGAN loader and extensions.digits)."""

from __future__ import annotations

import ast
import csv
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import tiny_networks
from reference import brute_knn
from test_gen_images_hub import CLI, command_runner

from extensions.render import load_png
from extensions.stylegan.loader import load_network

pytestmark = pytest.mark.usefixtures("one_thread")
cli = command_runner(CLI)

NETS = textwrap.dedent('''
    import torch

    class Toy(torch.nn.Module):
        """G(z) or G(z, c): a fixed random linear map to 3x8x8 images through tanh."""

        def __init__(self, z_dim=12, c_dim=0):
            super().__init__()
            gen = torch.Generator().manual_seed(z_dim + c_dim)
            self.z_dim, self.c_dim = z_dim, c_dim
            self.register_buffer("proj", torch.randn(z_dim + c_dim, 3 * 8 * 8, generator=gen) / z_dim ** 0.5)

        def forward(self, z, *c):
            x = torch.cat([z, *c], dim=1) if self.c_dim else z
            return torch.tanh(x @ self.proj).view(-1, 3, 8, 8)

    class Conditional(Toy):
        def forward(self, z, c):
            return super().forward(z, c)

    def unconditional():
        return Toy()

    def conditional():
        return Conditional(c_dim=3)

    def no_z_dim():
        return torch.nn.Linear(2, 2)

    def not_a_module():
        return "G"

    class ComplexToy(Toy):
        def forward(self, z, *c):
            return super().forward(z) * (1 + 1j)

    def complex_images():
        return ComplexToy()

    def broken():
        raise RuntimeError("weights missing")

    ANSWER = 42
''')


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``nets.py`` in a folder that is the current directory (importable as ``nets``)."""
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "nets", raising=False)
    yield tmp_path / "nets.py"
    sys.modules.pop("nets", None)


def z_of(seeds, z_dim):
    return np.concatenate([np.random.RandomState(int(s)).randn(1, z_dim) for s in seeds])


def expected_image(G, seed, c=None):
    z = torch.from_numpy(z_of([seed], G.z_dim)).float()
    img = G(z) if c is None else G(z, c)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_module_callable_hub_seeds_and_images(nets, tmp_path):
    for network in (f"{nets}:unconditional", "nets:unconditional"):  # a file path, or a module on the cwd
        out = tmp_path / network.split(":")[0].replace("/", "_")
        result = cli("--network", network, "--seeds", "0-119", "--sampler", "hubness", "--t", "0", "--num", "4",
                     "--outdir", out)
        assert result.exit_code == 0, result.output
        m = np.bincount(brute_knn(z_of(range(120), 12), 5)[0].ravel(), minlength=120)
        chosen = sorted(range(120), key=lambda i: (-m[i], i))[:4]
        with open(out / "pool.csv") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["m"]) for r in rows] == m.tolist()
        picked = sorted((r for r in rows if r["chosen"] == "1"), key=lambda r: int(r["order"]))
        assert [int(r["seed"]) for r in picked] == chosen
        G = load_network(network, device="cpu")
        assert type(G).__name__ == "Toy" and not G.training
        for seed in chosen:
            assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), expected_image(G, seed))


def test_conditional_module_takes_the_class(nets, tmp_path):
    out = tmp_path / "cond"
    result = cli("--network", "nets:conditional", "--seeds", "3,8", "--class", 2, "--outdir", out)
    assert result.exit_code == 0, result.output
    G = load_network("nets:conditional", device="cpu")
    c = torch.tensor([[0.0, 0.0, 1.0]])
    for seed in (3, 8):
        assert np.array_equal(load_png(out / f"seed{seed:04d}.png"), expected_image(G, seed, c))


def test_module_errors_are_one_line(nets, tmp_path):
    cases = [
        ("nosuchmodule:make", "module 'nosuchmodule' not found"),
        (f"{tmp_path}/missing.py:make", "file"),
        ("nets:ANSWER", "'ANSWER' is of type int, not callable"),
        ("nets:nothing", "'nets' has no attribute 'nothing'"),
        ("nets:no_z_dim", "has z_dim = None; set G.z_dim"),
        ("nets:not_a_module", "not_a_module() returned a str, not a torch.nn.Module"),
        ("nets:broken", "calling broken() failed (RuntimeError: weights missing)"),
        ("nets:conditional", "this network is conditional (3 classes): give a class label with --class (0..2)"),
        ("nets:complex_images", "the generator returned torch.complex64 images; expected real floating-point"),
    ]
    for i, (network, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = cli("--network", network, "--seeds", "0-3", "--outdir", out)
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(lines) == 1, (network, result.output)
        assert message in lines[0], (message, lines[0])
        assert "Traceback" not in result.output and not out.exists()
    result = cli("--network", "nets:unconditional", "--seeds", "0-3", "--trunc", "0.7", "--outdir", tmp_path / "t")
    assert result.exit_code == 1 and "leave --trunc at 1" in result.output


def test_registry_order_and_a_registered_source():
    from extensions.generators import NetworkSource, register_source, source_for, sources
    from extensions.generators import registry

    names = [s.name for s in sources()]
    assert names[-1] == "stylegan" and set(names) >= {"digits", "module", "biggan"}
    assert [source_for(n).name for n in ("", "digits", "digits-w512", "nets:make", "biggan-deep-256",
                                         "https://host/x.pkl", "net.pkl")] == \
        ["digits", "digits", "digits", "module", "biggan", "stylegan", "stylegan"]

    class Toys(NetworkSource):
        name = "toys"

        def claims(self, network):
            return network.startswith("toy-")

        def load(self, network, *, device, **options):
            G = torch.nn.Linear(int(network[4:]), 3)
            G.z_dim = G.in_features
            return G.to(device)

    saved = list(registry._SOURCES)
    try:
        register_source(Toys())
        assert [s.name for s in sources()][-2:] == ["toys", "stylegan"]
        assert load_network("toy-5", device="cpu").z_dim == 5
    finally:
        registry._SOURCES[:] = saved


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_no_import_circle_between_the_stylegan_loader_and_digits():
    root = tiny_networks.REPO_ROOT / "extensions"
    loader_imports = set(_imports(root / "stylegan" / "loader.py"))
    assert not any("digits" in name for name in loader_imports), loader_imports
    for path in (root / "digits").glob("*.py"):
        assert not any("loader" in name for name in _imports(path)), path
    # Each side imports on its own in a fresh interpreter, and the embedded network loads through the registry.
    code = ("import extensions.digits, extensions.stylegan.loader as l; "
            "print(type(l.load_network('digits', device='cpu')).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tiny_networks.REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "Generator", done.stderr[-2000:]
