"""Statically binarized MNIST (.amat text files): parsing, its own validation set, binary pixels
used as they are."""

import numpy as np
import pytest
import torch

from pyrovae import DataError, likelihoods
from pyrovae.data import InMemoryData, load, mnist_static
from pyrovae.data.mnist_static import parse_amat

from .fakes import respec, write_amat


@pytest.fixture
def folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {key: rng.integers(0, 2, (n, 784), dtype=np.uint8) for key, n in (("train", 5), ("valid", 3),
                                                                              ("test", 2))}  # fmt: skip
    for key, spec in mnist_static.FILES.items():
        write_amat(tmp_path / spec.name, arrays[key])
    monkeypatch.setattr(mnist_static, "FILES", {k: respec(s, tmp_path, size=None)
                                                for k, s in mnist_static.FILES.items()})  # fmt: skip
    return tmp_path, arrays


def test_parses_the_three_files_into_binary_images(folder):
    path, arrays = folder
    images = load("mnist_static", path=path)
    assert images.pixels == "binary" and images.image_shape == (1, 28, 28)
    for key in ("train", "valid", "test"):
        assert np.array_equal(getattr(images, key), arrays[key])
    assert images.train_labels is None and images.num_valid == 3
    with pytest.raises(DataError, match="has its own validation set"):
        load("mnist_static", path=path, valid=2)


@pytest.mark.parametrize("binarization", ["dynamic", "fixed"])
def test_binary_pixels_are_used_as_they_are(folder, binarization):
    path, arrays = folder
    d = InMemoryData(load("mnist_static", path=path), likelihoods.make("bernoulli", x_dim=784), binarization, seed=3)
    assert not d.dynamic
    assert torch.equal(next(d.train_batches(5, order=torch.arange(5))), torch.from_numpy(arrays["train"]).float())
    assert torch.equal(d.test, torch.from_numpy(arrays["test"]).float())
    assert torch.equal(torch.cat(list(d.valid_batches(2))), torch.from_numpy(arrays["valid"]).float())
    unit = InMemoryData(load("mnist_static", path=path), likelihoods.make("continuous_bernoulli", x_dim=784))
    assert torch.equal(unit.train, d.train)
    with pytest.raises(DataError, match="holds binary pixels, not 8-bit levels: likelihood 'poisson' models counts"):
        InMemoryData(load("mnist_static", path=path), likelihoods.make("poisson", x_dim=784))


def test_amat_parsing_is_strict():
    assert parse_amat(b"0 1 1\n1 0 0\n", width=3).tolist() == [[0, 1, 1], [1, 0, 0]]
    assert parse_amat(b"0 1 1\r\n1 0 0", width=3).tolist() == [[0, 1, 1], [1, 0, 0]]  # CRLF, no final newline
    for text, message in [(b"0 1\n1 0 0\n", "line 1 holds 2 values, not 3"), (b"0 1 2\n", "byte 4 is b'2'"),
                          (b"0 10 1\n", "several digits"), (b"", "no values")]:  # fmt: skip
        with pytest.raises(DataError, match=message):
            parse_amat(text, width=3)
