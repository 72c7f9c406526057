"""Omniglot (Burda et al.'s chardata.mat): no pinned SHA-256 until the user pins one, upright
images, grey levels binarized dynamically."""

import numpy as np
import pytest
import torch

from pyrovae import DataError, likelihoods
from pyrovae.data import InMemoryData, load

from .fakes import letter_l, sha256, write_chardata


@pytest.fixture
def chardata(tmp_path):
    rng = np.random.default_rng(0)
    train = np.stack([letter_l() * 0.9, rng.random((28, 28)), rng.random((28, 28))])
    test = np.stack([letter_l().T, rng.random((28, 28))])
    write_chardata(tmp_path / "chardata.mat", train, test, alphabets=np.array([4, 0, 49]))
    return tmp_path, train, test


def test_refused_until_pinned_then_upright_grey_levels(chardata, monkeypatch):
    path, train, test = chardata
    with pytest.raises(DataError, match="^no SHA-256 is pinned for chardata.mat") as e:
        load("omniglot", path=path)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("PYROVAE_SHA256_CHARDATA_MAT", sha256(path / "chardata.mat"))
    images = load("omniglot", path=path)
    assert images.pixels == "grey" and images.train.dtype == np.float32 and images.image_shape == (1, 28, 28)
    # the column-major "L" comes out upright, row-major: a vertical stroke on the left, its foot at the bottom
    first = images.train[0].reshape(28, 28)
    assert np.allclose(first, letter_l() * 0.9) and first[3:22, 5].all() and first[21, 5:18].all()
    assert np.allclose(images.train.reshape(-1, 28, 28), train) and np.allclose(images.test.reshape(-1, 28, 28), test)
    assert images.train_labels.tolist() == [4, 0, 49] and images.test_labels is None


def test_grey_levels_are_drawn_for_bernoulli_and_refused_as_counts(chardata, monkeypatch):
    path, *_ = chardata
    monkeypatch.setenv("PYROVAE_SHA256_CHARDATA_MAT", sha256(path / "chardata.mat"))
    images = load("omniglot", path=path)
    d = InMemoryData(images, likelihoods.make("bernoulli", x_dim=784))
    assert d.dynamic and set(next(d.train_batches(3)).unique().tolist()) <= {0.0, 1.0}
    assert set(d.test.unique().tolist()) == {0.0, 1.0}
    unit = InMemoryData(images, likelihoods.make("gaussian", x_dim=784))
    assert torch.equal(unit.train, torch.from_numpy(images.train))
    refused = r"holds grey levels in \[0, 1\], not 8-bit levels: likelihood 'discretized_logistic' models counts"
    with pytest.raises(DataError, match=refused + " 0..255; use one of bernoulli"):
        InMemoryData(images, likelihoods.make("discretized_logistic", x_dim=784))
