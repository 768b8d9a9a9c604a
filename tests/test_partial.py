"""The partial StyleGAN network (extensions.paths.partial) on genuine tiny stylegan2 / stylegan3 generators.

Checked against the network's own full forward: the partial output is the block's activation (a forward hook
on a full synthesis call), the layer subsets move exactly their ws rows (the Jacobian of the partial function
is the full-ws Jacobian summed over the subset's rows, from torch.autograd.functional.jacobian), and full
images follow the same rule, the base latent giving gen_images.py's image.
"""

import importlib
import textwrap

import numpy as np
import pytest
import torch

import tiny_networks
from extensions._checks import HubnessError
from extensions.paths.partial import PartialNetwork, reference_ops, resolve_block, synthesis_layout

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G(stylegan_runtime):
    """A tiny 16-px stylegan2 generator: blocks b4 (1 conv), b8, b16 (2 convs each), 6 ws rows."""
    return tiny_networks.build_generator(seed=3)


@pytest.fixture(scope="module")
def w0(G):
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim))
    return G.mapping(z, None)[0, 0]


def ws_of(G, w0, w, rows):
    """ws (1, num_ws, w_dim): ``rows`` set to ``w``, the others to ``w0`` (built independently of the module)."""
    ws = w0.reshape(1, 1, -1).repeat(1, G.num_ws, 1).clone()
    for r in rows:
        ws[0, r] = w
    return ws


def activation(G, ws, block):
    """The output feature map of ``block`` during a full ``G.synthesis(ws)`` forward, via a forward hook."""
    module = G.synthesis.input if block == "input" else getattr(G.synthesis, block)
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    try:
        G.synthesis(ws, noise_mode="const")
    finally:
        handle.remove()
    return seen[0][0]


def full_ws_jacobian(G, ws, block):
    """d activation / d ws, shape (*feature map, num_ws, w_dim)."""
    return torch.autograd.functional.jacobian(lambda x: activation(G, x[None], block), ws[0], vectorize=True,
                                              strategy="forward-mode")


def partial_jacobian(net, w):
    return torch.autograd.functional.jacobian(net, w, vectorize=True, strategy="forward-mode")


def stylegan2_generator(resolution, **synthesis):
    """A stylegan2 generator of the active runtime at any resolution, with few channels (construction only)."""
    module = importlib.import_module("training.networks")
    return module.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3,
                            mapping_kwargs=dict(num_layers=1),
                            synthesis_kwargs=dict(channel_base=4 * resolution, channel_max=4, num_fp16_res=0,
                                                  **synthesis))


# ------------------------------------------------------------------------------------------------------


def test_layers_are_styleganss_split_at_1024px(stylegan_runtime):
    """18 ws rows: coarse 0-2, middle 3-6, fine 7-17, as the seed's code (LayerMode) splits them."""
    G = stylegan2_generator(1024)
    layout = synthesis_layout(G)
    assert layout.num_ws == 18 and layout.blocks == tuple(f"b{2 ** i}" for i in range(2, 11))
    assert layout.subsets["coarse"] == tuple(range(0, 3))
    assert layout.subsets["middle"] == tuple(range(3, 7))
    assert layout.subsets["fine"] == tuple(range(7, 18))
    assert layout.subsets["all"] == tuple(range(18))
    # The middle resolution; every subset reaches it, so auto stays there.
    assert {resolve_block(G, "auto", layers) for layers in ("all", "coarse", "middle", "fine")} == {"b64"}


def test_layers_of_a_16px_network(G):
    layout = synthesis_layout(G)
    # b4: row 0; b8: rows 1-2; b16: rows 3-4 and its toRGB row 5.
    assert layout.subsets == dict(all=tuple(range(6)), coarse=(0, 1, 2), middle=(3, 4, 5), fine=())
    assert layout.reads == (1, 3, 5)
    assert resolve_block(G, "auto", "all") == "b8" and resolve_block(G, "auto", "coarse") == "b8"
    assert resolve_block(G, "auto", "middle") == "b16"  # b8 reads none of rows 3-5
    assert resolve_block(G, "16") == "b16" and resolve_block(G, "b4", "coarse") == "b4"


@pytest.mark.parametrize("block, layers", [("b4", "all"), ("b8", "coarse"), ("b16", "middle"), ("b16", "all")])
def test_partial_output_is_the_blocks_activation(G, w0, block, layers):
    net = PartialNetwork(G, w0, block=block, layers=layers, device="cpu")
    w = w0 + torch.from_numpy(np.random.RandomState(1).randn(G.w_dim)).float()
    expected = activation(G, ws_of(G, w0, w, net.rows), block)
    got = net(w)
    assert got.shape == expected.shape == net.output_shape and got.dtype == torch.float32
    assert torch.equal(got, expected)
    assert torch.equal(net(w0), activation(G, ws_of(G, w0, w0, []), block))


@pytest.mark.parametrize("layers", ["all", "coarse", "middle"])
def test_subset_jacobian_is_the_full_ws_jacobian_restricted(G, w0, layers):
    net = PartialNetwork(G, w0, block="b16", layers=layers, device="cpu")
    w = w0 + 0.5 * torch.from_numpy(np.random.RandomState(2).randn(G.w_dim)).float()
    full = full_ws_jacobian(G, ws_of(G, w0, w, net.rows), "b16")     # (C, H, W, num_ws, w_dim)
    rows = {"all": range(6), "coarse": [0, 1, 2], "middle": [3, 4, 5]}[layers]
    expected = full[..., list(rows), :].sum(dim=-2)
    got = partial_jacobian(net, w)                                      # (C, H, W, w_dim)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # The rows outside the subset carry derivatives of the full network that the subset leaves out.
    others = [r for r in range(6) if r not in rows]
    if others:
        assert full[..., others, :].abs().max() > 0


def test_rows_outside_the_subset_stay_at_the_base_latent(G, w0):
    net = PartialNetwork(G, w0, layers="coarse", device="cpu")
    w = torch.randn(4, G.w_dim)
    ws = net.ws(w)
    assert ws.shape == (4, 6, G.w_dim)
    assert torch.equal(ws[:, :3], w[:, None].expand(4, 3, -1))
    assert torch.equal(ws[:, 3:], w0.expand(4, 3, -1))


def test_torch_func_jvp_matches_the_jacobian(G, w0):
    """local_basis differentiates the function with torch.func."""
    net = PartialNetwork(G, w0, block="b8", device="cpu")
    v = torch.from_numpy(np.random.RandomState(3).randn(G.w_dim)).float()
    out, jv = torch.func.jvp(net, (w0,), (v,))
    assert torch.equal(out, net(w0))
    torch.testing.assert_close(jv, partial_jacobian(net, w0) @ v, rtol=1e-5, atol=1e-6)


def test_images_follow_the_layer_rule_and_the_base_is_gen_images_image(G, w0):
    net = PartialNetwork(G, w0, layers="middle", device="cpu")
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim))
    official = G(z, torch.zeros(1, 0), truncation_psi=1, noise_mode="const")  # gen_images.py's call
    w = w0 + torch.from_numpy(np.random.RandomState(4).randn(G.w_dim)).float()
    images = net.images(torch.stack([w0, w]))
    assert images.shape == (2, 3, 16, 16)
    assert torch.equal(images[0], official[0])
    assert torch.equal(images[1], G.synthesis(ws_of(G, w0, w, [3, 4, 5]), noise_mode="const")[0])
    assert not torch.equal(images[1], images[0])


def test_embedded_network(stylegan_runtime):
    from extensions.digits import load_generator
    G = load_generator(device="cpu")
    layout = synthesis_layout(G)
    assert layout.subsets["coarse"] == (0, 1, 2) and layout.subsets["middle"] == (3, 4, 5)
    w0 = G.mapping(torch.from_numpy(np.random.RandomState(0).randn(1, 64)), None)[0, 0]
    net = PartialNetwork(G, w0, device="cpu")
    assert net.block == "b8" and net.output_shape == (32, 8, 8)
    w = w0 + torch.randn(64)
    assert torch.equal(net(w), activation(G, ws_of(G, w0, w, range(6)), "b8"))
    with pytest.raises(HubnessError, match=r"16-px stylegan2 network has no fine layers .*coarse \(rows 0-2\), "
                                           r"middle \(rows 3-5\)"):
        PartialNetwork(G, w0, layers="fine", device="cpu")


@pytest.mark.parametrize("block, layers, message", [
    ("b32", "all", "block 'b32' is not in this stylegan2 synthesis network; choose one of b4, b8, b16 or auto"),
    ("L2", "all", "block 'L2' is not in this stylegan2"),
    ("b8", "middle", "--layers middle moves ws rows 3-5, which block b8 does not read (it reads rows 0-2); choose "
                     "a later --block (e.g. b16)"),
    ("auto", "everything", "--layers 'everything' is not one of all, coarse, middle, fine"),
])
def test_bad_blocks_and_layers_are_typed_errors(G, w0, block, layers, message):
    with pytest.raises(HubnessError) as info:
        PartialNetwork(G, w0, block=block, layers=layers, device="cpu")
    assert message in str(info.value)


def test_bad_base_latents_are_typed_errors(G, w0):
    with pytest.raises(HubnessError, match=r"shape \(32,\), got \(31,\)"):
        PartialNetwork(G, w0[:31], device="cpu")
    with pytest.raises(HubnessError, match="NaN or inf"):
        PartialNetwork(G, torch.full_like(w0, float("nan")), device="cpu")
    with pytest.raises(HubnessError, match="no StyleGAN synthesis network"):
        PartialNetwork(tiny_networks.TinyGenerator(), w0, device="cpu")


def test_reference_ops_route_the_custom_ops_to_torch(stylegan_runtime, monkeypatch):
    from torch_utils.ops import bias_act, upfirdn2d
    for module in (bias_act, upfirdn2d):
        monkeypatch.setattr(module, "_init", lambda: True)  # as where the CUDA plugins build
    before = (bias_act._init, upfirdn2d._init)
    with reference_ops():
        assert bias_act._init() is False and upfirdn2d._init() is False
    assert (bias_act._init, upfirdn2d._init) == before and bias_act._init() is True


def test_native_ops_keep_the_plugins_and_compute_the_same_function_on_the_cpu(G, w0, monkeypatch):
    from torch_utils.ops import bias_act
    seen = []
    monkeypatch.setattr(bias_act, "_init", lambda: True)
    monkeypatch.setattr(bias_act, "_bias_act_ref", lambda *a, _ref=bias_act._bias_act_ref, **kw: (
        seen.append(bias_act._init()), _ref(*a, **kw))[1])
    w = w0 + torch.from_numpy(np.random.RandomState(6).randn(G.w_dim)).float()
    ref = PartialNetwork(G, w0, block="b16", layers="middle", device="cpu")
    ref_out = ref(w)
    assert seen and not any(seen)  # the reference ops ran with the plugins switched off
    seen.clear()
    native = PartialNetwork(G, w0, block="b16", layers="middle", device="cpu", reference_ops=False)
    assert torch.equal(native(w), ref_out)
    assert seen and all(seen)  # ... and with them left alone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_partial_network_agrees_with_the_cpu(G, w0):
    import copy
    from extensions.paths import local_basis
    net_cpu = PartialNetwork(copy.deepcopy(G), w0, block="b16", device="cpu")
    net = PartialNetwork(copy.deepcopy(G), w0, block="b16", device="cuda")
    v = torch.from_numpy(np.random.RandomState(3).randn(G.w_dim)).float()
    out, jv = torch.func.jvp(net, (w0.cuda(),), (v.cuda(),))  # torch.func through the reference ops
    _, jv_cpu = torch.func.jvp(net_cpu, (w0,), (v,))
    torch.testing.assert_close(out.cpu(), net_cpu(w0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(jv.cpu(), jv_cpu, rtol=1e-3, atol=1e-4)
    # The network's own CUDA kernels, differentiated by double backward, give the same basis.
    native = PartialNetwork(net.G, w0, block="b16", device="cuda", reference_ops=False)
    a = local_basis(net, w0, rank=4, device="cuda")
    b = local_basis(native, w0, rank=4, device="cuda", engine="autograd")
    torch.testing.assert_close(a.singular_values, b.singular_values, rtol=1e-3, atol=1e-5)
    assert (a.basis.T @ b.basis).diagonal().abs().min() > 0.999


# ------------------------------------------------------------------------------------------------------
# stylegan3 (its filtered_lrelu op comes only with an official checkout): in a child process.

STYLEGAN3_CHECK = textwrap.dedent("""
    import sys, torch
    import tiny_networks
    tiny_networks.use_runtime(sys.argv[1])
    torch.set_num_threads(1)
    from extensions.paths.partial import PartialNetwork, synthesis_layout
    from test_partial import activation, ws_of, full_ws_jacobian, partial_jacobian
    G = tiny_networks.build_generator(arch="stylegan3", seed=4)          # input, L0..L4: 6 ws rows
    layout = synthesis_layout(G)
    assert layout.kind == "stylegan3" and layout.blocks[0] == "input" and len(layout.blocks) == 6
    # StyleGAN's 3 / 4 / 11 of 18 rows scaled to 6: coarse row 0, middle row 1, fine rows 2-5.
    assert layout.subsets["coarse"] == (0,) and layout.subsets["middle"] == (1,), layout.subsets
    assert layout.subsets["fine"] == (2, 3, 4, 5)
    w0 = G.mapping(torch.randn(1, G.z_dim), None)[0, 0]
    w = w0 + torch.randn(G.w_dim)
    for block, layers in (("L1", "all"), ("L3", "fine"), ("input", "coarse")):
        net = PartialNetwork(G, w0, block=block, layers=layers, device="cpu")
        assert torch.equal(net(w), activation(G, ws_of(G, w0, w, net.rows), net.block)), block
    net = PartialNetwork(G, w0, block="L2", layers="fine", device="cpu")
    full = full_ws_jacobian(G, ws_of(G, w0, w, net.rows), net.block)
    torch.testing.assert_close(partial_jacobian(net, w), full[..., [2, 3, 4, 5], :].sum(-2), rtol=1e-4, atol=1e-5)
    official = G(torch.zeros(1, G.z_dim), None, noise_mode="const")
    base = G.mapping(torch.zeros(1, G.z_dim), None)[0, 0]
    img = PartialNetwork(G, base, layers="fine", device="cpu").images(base[None])
    assert torch.equal(img, official)
    print("ok")
""")


@pytest.mark.needs_stylegan3
def test_stylegan3_partial_network(stylegan3_checkout):
    res = tiny_networks.run_python(["-c", STYLEGAN3_CHECK, stylegan3_checkout])
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
