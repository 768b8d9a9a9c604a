"""Detector files: --detector parsing, the lookup order, offline errors that say where to put the file."""

import hashlib
import pickle

import pytest
import torch

from extensions.metrics import DetectorUnavailableError, MetricError
from extensions.metrics import detectors
from extensions.metrics.detectors import (INCEPTION_URL, VGG16_URL, cache_path, detector_name, load_detector_file,
                                          locate_detector, open_detector, parse_detector_option)


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
