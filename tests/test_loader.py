"""Finding the stylegan3 code and loading network pickles: success paths and one error per failure."""

import hashlib
import pickle
import shutil
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

import tiny_networks
from extensions import HubnessError
from extensions.stylegan import checkout as ck
from extensions.stylegan import loader
from extensions.stylegan.loader import (MissingGeneratorError, NetworkLoadError, NetworkNotFoundError,
                                        NotAGeneratorError, NotAPickleError, OfflineError, load_network)

pytestmark = pytest.mark.usefixtures("one_thread")

# Python 3.12 without distutils (it exists only once setuptools is imported) and setuptools >= 82 without
# pkg_resources, simulated for a child process through sitecustomize.
SITECUSTOMIZE = textwrap.dedent('''
    import importlib.abc, sys

    class _Gone(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top == "pkg_resources" or (top == "distutils" and "setuptools" not in sys.modules):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Gone())
''')


@pytest.fixture(scope="module")
def modern_stack(tmp_path_factory):
    """A folder whose sitecustomize.py hides pkg_resources and distutils from a child Python."""
    folder = tmp_path_factory.mktemp("modern_stack")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def copy_runtime(dest):
    """A second checkout: a copy of the draggan stylegan2-ada runtime."""
    shutil.copytree(tiny_networks.stylegan2_ada_runtime(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# ------------------------------------------------------------------------------------------------------
# Finding the checkout


def test_find_checkout_precedence(stylegan_runtime, tmp_path):
    other = copy_runtime(tmp_path / "other")
    runtime = tiny_networks.stylegan2_ada_runtime().resolve()
    explicit = ck.find_checkout(runtime, environ={"STYLEGAN3_DIR": str(other)})
    assert (explicit.root, explicit.source, explicit.kind) == (runtime, "--stylegan3", "stylegan2-ada")
    from_env = ck.find_checkout(None, environ={"STYLEGAN3_DIR": str(other)})
    assert (from_env.root, from_env.source) == (other.resolve(), "STYLEGAN3_DIR")
    importable = ck.find_checkout(None, environ={})  # the runtime is on sys.path in this process
    assert (importable.root, importable.source) == (runtime, "importable")


def test_find_checkout_errors_name_the_folder(tmp_path):
    with pytest.raises(ck.CheckoutNotFoundError, match="not a directory"):
        ck.find_checkout(tmp_path / "nowhere")
    (tmp_path / "dnnlib").mkdir()
    (tmp_path / "dnnlib" / "__init__.py").write_text("")
    with pytest.raises(ck.CheckoutNotFoundError) as err:
        ck.find_checkout(None, environ={"STYLEGAN3_DIR": str(tmp_path)})
    message = str(err.value)
    assert str(tmp_path) in message and "STYLEGAN3_DIR" in message
    assert "torch_utils/persistence.py" in message and "legacy.py" in message and "dnnlib/__init__.py" not in message
    assert isinstance(err.value, HubnessError)


def test_no_checkout_anywhere_is_one_clear_error(tiny_network_pkl):
    code = ("from extensions.stylegan import find_checkout, load_network\n"
            "for call in (lambda: find_checkout(), lambda: load_network(r'%s')):\n"
            "    try:\n        call()\n    except Exception as e:\n        print(type(e).__name__, '|', e)\n"
            % tiny_network_pkl)
    out = tiny_networks.run_python(["-c", code])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("CheckoutNotFoundError |") for line in lines), out.stdout
    assert "stylegan3 code not found" in lines[0] and "--stylegan3 DIR" in lines[0]
    assert str(tiny_network_pkl) in lines[1] and "torch_utils" in lines[1] and "STYLEGAN3_DIR" in lines[1]


def test_second_checkout_in_one_process_is_refused(stylegan_runtime, tmp_path):
    other = copy_runtime(tmp_path / "other")
    with pytest.raises(ck.CheckoutError, match="already imported"):
        ck.activate(ck.find_checkout(other))
    assert ck.activate(ck.find_checkout(stylegan_runtime.root)) is stylegan_runtime


def test_shims_stand_in_only_for_missing_modules_and_leave():
    saved = {name: sys.modules.pop(name) for name in ("pkg_resources", "requests") if name in sys.modules}
    blocker = _Blocker({"pkg_resources", "requests"})
    sys.meta_path.insert(0, blocker)
    try:
        with ck.compat_shims() as names:
            assert "pkg_resources" in names and "requests" in names and "distutils" not in names
            from pkg_resources import parse_version
            assert parse_version("1.11.0a") < parse_version("1.11.0") < parse_version("2.1")
            import requests
            with pytest.raises(ModuleNotFoundError, match="pip install requests"):
                requests.Session()
            with pytest.raises(AttributeError, match="provides only parse_version"):
                import pkg_resources
                pkg_resources.require("x")
        assert "pkg_resources" not in sys.modules and "requests" not in sys.modules
    finally:
        sys.meta_path.remove(blocker)
        sys.modules.update(saved)
    assert ck._strtobool("Yes") == 1 and ck._strtobool("off") == 0
    with pytest.raises(ValueError):
        ck._strtobool("maybe")


class _Blocker:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


CHILD_LOAD = textwrap.dedent('''
    import sys, types
    import numpy as np, torch
    root, pkl = sys.argv[1], sys.argv[2]
    # Control: the checkout's own imports fail on this stack (a placeholder isolates requests).
    sys.path.insert(0, root)
    had_requests = "requests" in sys.modules
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    for module in ("dnnlib", "torch_utils.ops.conv2d_gradfix"):
        try:
            __import__(module)
            print("CONTROL", module, "imported")
        except ModuleNotFoundError as exc:
            print("CONTROL", module, "failed on", exc.name)
    if not had_requests:
        del sys.modules["requests"]
    sys.path.remove(root)
    from extensions.stylegan import load_network, make_adapter
    G = load_network(pkl, stylegan3=root, device="cpu")
    import dnnlib
    img = make_adapter(G).generate(np.random.RandomState(7).randn(1, G.z_dim), truncation_psi=0.5)
    print("OK", float(img.abs().sum()), dnnlib.util.strtobool("yes"))
    print("LEFT", [name for name, m in list(sys.modules.items()) if vars(m).get("__stylegan3_hubness_shim__")])
''')


def test_loads_without_distutils(stylegan_runtime, tiny_network_pkl, modern_stack):
    out = tiny_networks.run_python(["-c", CHILD_LOAD, stylegan_runtime.root, tiny_network_pkl],
                                   prepend=[modern_stack])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CONTROL dnnlib failed on distutils" in out.stdout, out.stdout  # the simulation bites
    G = load_network(tiny_network_pkl, device="cpu")
    from extensions.stylegan import make_adapter
    expected = make_adapter(G).generate(np.random.RandomState(7).randn(1, G.z_dim), truncation_psi=0.5)
    ok = [line for line in out.stdout.splitlines() if line.startswith("OK")][0].split()
    assert float(ok[1]) == pytest.approx(float(expected.abs().sum()), rel=1e-6) and ok[2] == "1"
    assert "LEFT []" in out.stdout  # the stand-ins are gone once the checkout is imported


@pytest.mark.needs_stylegan3
def test_official_checkout_loads_without_pkg_resources_and_distutils(stylegan3_checkout, modern_stack, tmp_path):
    pkl = tmp_path / "sg3.pkl"
    build = tiny_networks.run_python(["-c", "import sys, tiny_networks as t; t.use_runtime(sys.argv[1]); "
                                      "t.write_network_pickle(sys.argv[2], arch='stylegan3')",
                                      stylegan3_checkout, pkl])
    assert build.returncode == 0, build.stderr[-2000:]
    out = tiny_networks.run_python(["-c", CHILD_LOAD, stylegan3_checkout, pkl],
                                   prepend=[modern_stack])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CONTROL dnnlib failed on distutils" in out.stdout
    assert "CONTROL torch_utils.ops.conv2d_gradfix failed on pkg_resources" in out.stdout
    assert "OK" in out.stdout and "LEFT []" in out.stdout
    assert ck.checkout_kind(stylegan3_checkout) == "stylegan3"


# ------------------------------------------------------------------------------------------------------
# Loading


def test_load_network_returns_g_ema(stylegan_runtime, tiny_network_pkl):
    G = load_network(tiny_network_pkl, device="cpu")
    with open(tiny_network_pkl, "rb") as f:
        reference = stylegan_runtime.legacy.load_network_pkl(f)["G_ema"]
    assert type(G).__name__ == "Generator" and G.z_dim == 32 and G.c_dim == 0
    ref_state = reference.state_dict()
    assert G.state_dict().keys() == ref_state.keys()
    assert all(torch.equal(v, ref_state[k]) for k, v in G.state_dict().items())
    assert not any(p.requires_grad for p in G.parameters())
    assert load_network(f"file://{tiny_network_pkl}", device="cpu").z_dim == 32


def test_missing_file_and_directory(tmp_path, stylegan_runtime):
    with pytest.raises(NetworkNotFoundError, match="not found") as err:
        load_network(tmp_path / "nope.pkl")
    assert str(tmp_path / "nope.pkl") in str(err.value)
    with pytest.raises(NetworkNotFoundError, match="is a directory"):
        load_network(tmp_path)


def test_an_unreadable_file_says_so(tiny_network_pkl, stylegan_runtime, monkeypatch):
    def no_permission(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(loader, "open", no_permission, raising=False)  # as a file of another user's, mode 600
    with pytest.raises(NetworkLoadError, match=r"cannot read network pickle .*\(Permission denied\); make the file "
                                               r"readable"):
        load_network(str(tiny_network_pkl), device="cpu")


def test_not_a_pickle_truncated_and_zip(tmp_path, tiny_network_pkl, stylegan_runtime):
    text = tmp_path / "notes.pkl"
    text.write_text("these are not the weights you are looking for\n")
    data = tiny_network_pkl.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (text, truncated):
        with pytest.raises(NotAPickleError, match="not a network pickle or is truncated") as err:
            load_network(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    archive = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, archive)
    with pytest.raises(NotAPickleError, match="zip archive"):
        load_network(archive)


def test_pickle_without_g_ema(tmp_path, stylegan_runtime):
    path = tmp_path / "nog.pkl"
    path.write_bytes(pickle.dumps({"G": torch.nn.Linear(2, 2), "D": torch.nn.Linear(2, 1)}))
    with pytest.raises(MissingGeneratorError, match="holds no 'G_ema'") as err:
        load_network(path)
    assert "'G', 'D'" in str(err.value) and str(path) in str(err.value)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(MissingGeneratorError, match="holds a list"):
        load_network(listed)


def test_g_ema_that_is_not_a_generator(tmp_path, stylegan_runtime):
    d_only = tmp_path / "d.pkl"
    d_only.write_bytes(pickle.dumps({"G_ema": tiny_networks.build_discriminator()}))
    with pytest.raises(NotAGeneratorError, match="Discriminator without a positive integer z_dim") as err:
        load_network(d_only)
    assert str(d_only) in str(err.value)
    text = tmp_path / "s.pkl"
    text.write_bytes(pickle.dumps({"G_ema": "generator"}))
    with pytest.raises(NotAGeneratorError, match="is a str, not a generator"):
        load_network(text)


def test_pickle_needing_an_unknown_module(tmp_path, stylegan_runtime):
    module = types.ModuleType("vanishing_module")
    exec("import torch\nclass Net(torch.nn.Module):\n    z_dim = 4\n", module.__dict__)
    sys.modules["vanishing_module"] = module
    try:
        data = pickle.dumps({"G_ema": module.Net()})
    finally:
        del sys.modules["vanishing_module"]
    path = tmp_path / "v.pkl"
    path.write_bytes(data)
    with pytest.raises(NetworkLoadError, match="'vanishing_module', which is not importable"):
        load_network(path)


def test_generic_module_pickles(tmp_path, stylegan_runtime):
    as_dict = tiny_networks.write_generic_pickle(tmp_path / "g.pkl", z_dim=6)
    bare = tiny_networks.write_generic_pickle(tmp_path / "bare.pkl", as_dict=False, z_dim=6)
    for path in (as_dict, bare):
        G = load_network(path, device="cpu")
        assert isinstance(G, tiny_networks.TinyGenerator) and G.z_dim == 6 and not G.training


def test_offline_url_says_where_the_cache_looks(tmp_path, tiny_network_pkl, stylegan_runtime, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/models/tiny-network.pkl"  # port 9 (discard) refuses at once: offline
    with pytest.raises(OfflineError) as err:
        load_network(url)
    message = str(err.value)
    expected = tmp_path / "cache" / "downloads" / f"{hashlib.md5(url.encode()).hexdigest()}_tiny-network.pkl"
    assert err.value.cache_file == str(expected) and str(expected) in message and url in message
    assert "DNNLIB_CACHE_DIR" in message and "\n" not in message
    # Following the advice makes the same call work, through dnnlib's own cache lookup.
    expected.parent.mkdir(parents=True)
    shutil.copy(tiny_network_pkl, expected)
    assert load_network(url, device="cpu").z_dim == 32


def test_url_without_checkout_is_a_checkout_error(tmp_path):
    with pytest.raises(ck.CheckoutNotFoundError, match="needs dnnlib"):
        loader._open("https://example.org/net.pkl", None, None)


def test_explicit_wrong_checkout_is_not_ignored(tiny_network_pkl, tmp_path):
    with pytest.raises(ck.CheckoutNotFoundError, match=str(tmp_path)):
        load_network(tiny_network_pkl, stylegan3=tmp_path)


def test_cache_file_name_matches_open_url_lookup(stylegan_runtime, tmp_path, tiny_network_pkl):
    url = "https://example.org/a/b/net work.pkl?download=1"
    target = loader.cache_file_for(url, str(tmp_path))
    shutil.copy(tiny_network_pkl, target)
    with stylegan_runtime.dnnlib.util.open_url(url, cache_dir=str(tmp_path)) as f:
        assert f.read(2) == tiny_network_pkl.read_bytes()[:2]


def test_built_cuda_ops_are_found_on_newer_torch(stylegan_runtime, monkeypatch):
    import importlib
    import torch.utils.cpp_extension as cpp
    built = types.ModuleType("hubness_test_plugin")
    fake_load = lambda name, **kwargs: built  # newer torch: the module is returned, not registered
    monkeypatch.setattr(cpp, "load", fake_load)
    custom_ops = types.ModuleType("custom_ops")

    def get_plugin(module_name, **kwargs):  # what the official custom_ops.get_plugin does after compiling
        cpp.load(name=module_name, sources=[])
        return importlib.import_module(module_name)

    custom_ops.get_plugin = get_plugin
    with pytest.raises(ModuleNotFoundError, match="hubness_test_plugin"):
        custom_ops.get_plugin("hubness_test_plugin")
    ck.register_built_plugins(custom_ops)
    try:
        assert custom_ops.get_plugin("hubness_test_plugin") is built
    finally:
        sys.modules.pop("hubness_test_plugin", None)
    assert cpp.load is fake_load  # torch is left as it was
    assert stylegan_runtime.modules["torch_utils.custom_ops"].get_plugin.__registers_plugins__
