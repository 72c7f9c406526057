"""MNIST and Fashion-MNIST (gzipped IDX files), against small files the test writes."""

import numpy as np
import pytest
import torch

from pyrovae import DataError, likelihoods
from pyrovae.data import InMemoryData, fashion_mnist, load, mnist

from .fakes import idx_bytes, respec, write_gzip

MODULES = {"mnist": mnist, "fashion_mnist": fashion_mnist}


def _write(folder, rng):
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    for key, spec in mnist.FILES.items():  # both data sets use MNIST's four file names
        write_gzip(folder / spec.name, idx_bytes(arrays[key]))
    return arrays


@pytest.mark.parametrize("name", sorted(MODULES))
def test_downloads_parses_and_reads_the_cache_offline(tmp_path, monkeypatch, server, name):
    module = MODULES[name]
    root, url = server
    arrays = _write(root, np.random.default_rng(0))
    monkeypatch.setattr(module, "FILES", {k: respec(s, root, url) for k, s in module.FILES.items()})
    images = load(name)  # into $PYROVAE_DATA/<name>
    assert images.train.shape == (6, 784) and images.test.shape == (4, 784) and images.train.dtype == np.uint8
    assert images.pixels == "8bit" and images.image_shape == (1, 28, 28)
    # row-major 28x28: the image as written, pixel for pixel
    assert np.array_equal(images.train.reshape(6, 28, 28), arrays["train_images"])
    assert np.array_equal(images.train_labels, arrays["train_labels"])
    assert np.array_equal(images.test_labels, arrays["test_labels"])
    d = InMemoryData(images, likelihoods.make("poisson", x_dim=784))  # parsed read-only bytes: no torch warning
    assert torch.equal(d.test, torch.from_numpy(arrays["test_images"].reshape(4, 784)).float())
    for f in root.iterdir():
        f.unlink()
    again = load(name)  # the cache, verified, with the mirror gone
    assert np.array_equal(again.test, images.test)


def test_a_damaged_cached_file_names_itself(tmp_path, monkeypatch):
    _write(tmp_path, np.random.default_rng(1))
    monkeypatch.setattr(mnist, "FILES", {k: respec(s, tmp_path) for k, s in mnist.FILES.items()})
    mnist.load_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-9] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"^{path} has SHA-256 [0-9a-f]{{64}}, not [0-9a-f]{{64}}: .*delete it"):
        mnist.load_mnist(tmp_path)


def test_files_that_are_not_idx_are_refused(tmp_path, monkeypatch):
    _write(tmp_path, np.random.default_rng(2))
    write_gzip(tmp_path / "train-labels-idx1-ubyte.gz", b"\x00\x00\x0d\x01" + bytes(8))  # floats, not bytes
    monkeypatch.setattr(mnist, "FILES", {k: respec(s, tmp_path) for k, s in mnist.FILES.items()})
    with pytest.raises(DataError, match="cannot read .*train-labels-idx1-ubyte.gz: not an IDX file of unsigned bytes"):
        mnist.load_mnist(tmp_path)


def test_the_real_files_are_pinned():
    for module in MODULES.values():
        names = [s.name for s in module.FILES.values()]
        assert names == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # fmt: skip
        assert all(len(s.sha256) == 64 and len(s.urls) == 2 for s in module.FILES.values())
    assert all(len(s.content_sha256) == 64 for s in mnist.FILES.values())
