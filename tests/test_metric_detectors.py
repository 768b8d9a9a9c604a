"""Detector files: --detector parsing, the lookup order, offline errors that say where to put the file."""

import hashlib
import os
import pickle
import re

import pytest
import torch

from extensions.metrics import DetectorUnavailableError, MetricError
from extensions.metrics import detectors
from extensions.metrics.detectors import (INCEPTION_URL, VGG16_URL, cache_path, check_detector, detector_name,
                                          load_detector_file, locate_detector, open_detector, parse_detector_option)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty download cache and no registered files for every test."""
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib-cache"))
    detectors.clear_detector_files()
    yield
    detectors.clear_detector_files()


def plain_detector(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_detector_names_follow_stylegan3():
    assert detector_name(INCEPTION_URL) == "inception-2015-12-05"
    assert detector_name(VGG16_URL) == "vgg16"
    assert detector_name("/x/y/vgg16.pt") == "vgg16"


def test_parse_detector_option_files_folders_and_names(tmp_path):
    folder = tmp_path / "dets"
    folder.mkdir()
    inc = write_pickle(folder / "inception-2015-12-05.pkl", plain_detector())
    vgg = write_pickle(folder / "vgg16.pt", plain_detector())
    other = write_pickle(tmp_path / "my-vgg.pkl", plain_detector())
    assert parse_detector_option([str(folder)]) == {"inception-2015-12-05": str(inc), "vgg16": str(vgg)}
    assert parse_detector_option([str(inc)]) == {"inception-2015-12-05": str(inc)}
    # NAME=PATH overrides a file of another name; later values win.
    assert parse_detector_option([str(folder), f"vgg16={other}"])["vgg16"] == str(other)


def test_parse_detector_option_rejects_missing_files(tmp_path):
    with pytest.raises(MetricError, match="no such file or folder .*nope.pkl"):
        parse_detector_option([str(tmp_path / "nope.pkl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetricError, match=r"no \*.pkl or \*.pt file"):
        parse_detector_option([str(tmp_path / "empty")])


def test_lookup_order_registered_then_cache_then_download(tmp_path):
    assert locate_detector(INCEPTION_URL) is None  # nothing local: a download would be tried
    cached = tmp_path / "dnnlib-cache" / "downloads" / (hashlib.md5(INCEPTION_URL.encode()).hexdigest() + "_x.pkl")
    cached.parent.mkdir(parents=True)
    write_pickle(cached, plain_detector())
    assert locate_detector(INCEPTION_URL) == str(cached)
    assert cache_path(INCEPTION_URL).startswith(str(cached.parent))
    mine = write_pickle(tmp_path / "inception-2015-12-05.pkl", plain_detector())
    detectors.register_detector_files(parse_detector_option([str(mine)]))
    assert locate_detector(INCEPTION_URL) == str(mine)
    assert locate_detector(VGG16_URL) is None  # another name is untouched


def test_failed_download_says_which_file_to_put_where(tmp_path):
    url = "http://127.0.0.1:9/models/vgg16.pkl"  # the discard port: connection refused at once
    with pytest.raises(DetectorUnavailableError) as info:
        open_detector(url)
    message = str(info.value)
    assert "vgg16.pkl" in message and "--detector" in message
    assert cache_path(url) in message and str(tmp_path / "dnnlib-cache") in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_loads_pickles_and_torchscript_archives(tmp_path):
    module = plain_detector(seed=3)
    x = torch.randn(5, 3, 2, 2)
    pkl = write_pickle(tmp_path / "vgg16.pkl", module)
    pt = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(module), str(pt))
    for path in (pkl, pt):
        loaded = load_detector_file(str(path))
        assert torch.equal(loaded(x), module(x))
    files = parse_detector_option([str(tmp_path)])
    assert torch.equal(open_detector(INCEPTION_URL, files=files)(x), module(x))


def test_rejects_a_pickle_that_is_not_a_module(tmp_path):
    path = write_pickle(tmp_path / "vgg16.pkl", {"G_ema": None})
    with pytest.raises(MetricError, match="not a torch module"):
        load_detector_file(str(path))


# ------------------------------------------------------------------ files that are not (the right) detector

class FeatureNet(torch.nn.Module):
    """A detector with stylegan3's calling convention: uint8 images in, ``dim`` features out."""

    def __init__(self, dim, fill=None):
        super().__init__()
        self.dim, self.fill = dim, fill

    def forward(self, img, return_features=False):
        assert img.dtype == torch.uint8 and img.ndim == 4 and img.shape[1] == 3
        out = img.float().mean(dim=(1, 2, 3))[:, None].repeat(1, self.dim) / 255
        return out if self.fill is None else out.fill_(self.fill)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps(plain_detector())[:100]],
                         ids=["empty", "text", "truncated"])
def test_a_file_that_is_not_a_pickle_is_named(tmp_path, content):
    path = tmp_path / "inception-2015-12-05.pkl"
    path.write_bytes(content)
    with pytest.raises(MetricError) as info:
        load_detector_file(str(path))
    message = str(info.value)
    assert str(path) in message and "not a pickle" in message and "--detector" in message
    assert "\n" not in message


def test_a_zip_that_is_not_torchscript_is_named(tmp_path):
    import zipfile
    path = tmp_path / "vgg16.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("images/0.png", b"x")
    with pytest.raises(MetricError, match=f"{path}.* not a TorchScript archive.*vgg16.pkl"):
        load_detector_file(str(path))


def test_load_errors_name_the_detector_asked_for(tmp_path):
    path = write_pickle(tmp_path / "whatever.pkl", {"G_ema": None})
    with pytest.raises(MetricError, match=r"whatever.pkl holds a dict.*\(vgg16.pkl,"):
        load_detector_file(str(path), "vgg16")


def test_check_detector_accepts_a_feature_network_and_returns_its_width():
    assert check_detector(FeatureNet(16), "/x/inception-2015-12-05.pkl", INCEPTION_URL) == 16
    assert check_detector(FeatureNet(2048), "/x/inception-2015-12-05.pkl", INCEPTION_URL) == 2048
    assert check_detector(FeatureNet(4096), "/x/vgg16.pkl", VGG16_URL) == 4096


def test_check_detector_rejects_modules_that_are_not_feature_networks():
    with pytest.raises(MetricError, match=r"/x/a.pkl is not a stylegan3 feature detector: .*TypeError.*"
                                          r"return_features.*inception-2015-12-05.pkl with --detector"):
        check_detector(plain_detector(), "/x/a.pkl", INCEPTION_URL)
    with pytest.raises(MetricError, match=r"/x/a.pkl is not .* returned shape \(2, 3, 64, 64\), not features"):
        check_detector(Returns(lambda img: img), "/x/a.pkl", INCEPTION_URL)
    with pytest.raises(MetricError, match=r"returned shape \(2,\), not features of shape \(2, d\)"):
        check_detector(Returns(lambda img: img.float().sum(dim=(1, 2, 3))), "/x/a.pkl", INCEPTION_URL)
    with pytest.raises(MetricError, match=r"returned a tuple"):
        check_detector(Returns(lambda img: (img,)), "/x/a.pkl", INCEPTION_URL)
    with pytest.raises(MetricError, match="/x/a.pkl returned non-finite features"):
        check_detector(FeatureNet(8, fill=float("nan")), "/x/a.pkl", VGG16_URL)


class Returns(torch.nn.Module):
    """Takes stylegan3's arguments but returns ``function(images)``."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, img, return_features=False):
        return self.function(img)


def test_check_detector_recognises_the_other_genuine_detector():
    with pytest.raises(MetricError, match=r"/x/i.pkl gives 4096 features per image like vgg16.pkl, but "
                                          r"inception-2015-12-05 \(2048 features\) is needed"):
        check_detector(FeatureNet(4096), "/x/i.pkl", INCEPTION_URL)
    with pytest.raises(MetricError, match=r"gives 2048 features per image like inception-2015-12-05.pkl, but "
                                          r"vgg16 \(4096 features\)"):
        check_detector(FeatureNet(2048), "/x/v.pkl", VGG16_URL)


def test_a_download_the_cache_cannot_hold_names_the_cache_file_not_a_temporary_one(tmp_path):
    """The cache's downloads folder is unwritable (a link to /sys, where even root cannot create files)."""
    import http.server
    import threading

    if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and _can_create("/sys"):
        pytest.skip("needs a folder where files cannot be created")
    body = pickle.dumps(torch.nn.Linear(100, 100))  # over 8 KiB: dnnlib.util.open_url reads smaller ones as text

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "dnnlib-cache").mkdir()
        os.symlink("/sys", tmp_path / "dnnlib-cache" / "downloads")
        url = f"http://127.0.0.1:{server.server_address[1]}/files/vgg16.pkl"
        with pytest.raises(DetectorUnavailableError) as info:
            open_detector(url)
    finally:
        server.shutdown()
        server.server_close()
    message = str(info.value)
    md5 = hashlib.md5(url.encode()).hexdigest()
    named = re.search(r"save the downloaded feature detector to (\S+) ", message)
    assert named, message
    assert named[1].startswith(str(tmp_path / "dnnlib-cache" / "downloads" / md5)) and named[1].endswith("vgg16.pkl")
    assert "tmp_" not in message and "DNNLIB_CACHE_DIR" in message and "--detector" in message


def _can_create(folder):
    try:
        with open(os.path.join(folder, ".probe-stylegan3-hubness"), "wb"):
            pass
    except OSError:
        return False
    os.remove(os.path.join(folder, ".probe-stylegan3-hubness"))
    return True
