"""The full-MNIST download and IDX parser, against small files the test writes."""

import gzip
import struct

import numpy as np
import pytest

from pyrovae import DataError
from pyrovae.data import load_mnist
from pyrovae.data.mnist import FILES


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mirror(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "mirror"
    src.mkdir()
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28)),
        "train_labels": rng.integers(0, 10, 6),
        "test_images": rng.integers(0, 256, (4, 28, 28)),
        "test_labels": rng.integers(0, 10, 4),
    }
    for key, fname in FILES.items():
        write_idx(src / fname, arrays[key])
    return src, arrays


def test_downloads_parses_and_caches(tmp_path, mirror):
    src, arrays = mirror
    cache = tmp_path / "cache"
    images = load_mnist(cache, mirrors=("file:///nonexistent/", src.as_uri() + "/"))
    assert images.train.shape == (6, 784) and images.test.shape == (4, 784)
    assert np.array_equal(images.train, arrays["train_images"].reshape(6, 784))
    assert np.array_equal(images.test_labels, arrays["test_labels"])
    assert images.image_shape == (1, 28, 28)
    # the second load reads the cache and needs no mirror
    assert np.array_equal(load_mnist(cache, mirrors=()).test, images.test)


def test_unreachable_mirrors_and_corrupt_files_fail_clearly(tmp_path, mirror):
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path / "empty", mirrors=("file:///nonexistent/",))
    src, _ = mirror
    cache = tmp_path / "cache"
    load_mnist(cache, mirrors=(src.as_uri() + "/",))
    (cache / FILES["test_labels"]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read MNIST file .*t10k-labels.*delete it to download again"):
        load_mnist(cache, mirrors=())
