"""Omniglot (Burda et al.'s chardata.mat): no pinned SHA-256 until the user pins one, upright
images, grey levels binarized dynamically."""

import numpy as np
import pytest
import torch

from pyrovae import DataError, likelihoods
from pyrovae.data import InMemoryData, load
from pyrovae.data.omniglot import FILE

from .fakes import letter_l, sha256, write_chardata


@pytest.fixture
def chardata(tmp_path):
    rng = np.random.default_rng(0)
    train = np.stack([letter_l() * 0.9, rng.random((28, 28)), rng.random((28, 28))])
    test = np.stack([letter_l().T, rng.random((28, 28))])
    write_chardata(tmp_path / "chardata.mat", train, test, alphabets=np.array([4, 0, 49]))
    return tmp_path, train, test


def test_checked_against_burdas_git_blob_id_or_a_users_pin(chardata, monkeypatch):
    """pyrovae pins the blob id yburda/iwae publishes for datasets/OMNIGLOT/chardata.mat; another
    file is refused unless the user pins its SHA-256 (then it is checked against that)."""
    path, train, test = chardata
    assert FILE.git_blob == "016a3536ffe5e1d38e42563a18d7a78bfaf643ec" and FILE.sha256 is None
    with pytest.raises(DataError, match="chardata.mat has git blob id [0-9a-f]{40}, not 016a3536") as e:
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


def test_a_pinned_file_that_is_not_chardata_is_one_line(tmp_path, monkeypatch):
    """A user's pin on garbage: the hash matches, the parse fails, in one line naming the file."""
    (tmp_path / "chardata.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    monkeypatch.setenv("PYROVAE_SHA256_CHARDATA_MAT", sha256(tmp_path / "chardata.mat"))
    with pytest.raises(DataError) as e:
        load("omniglot", path=tmp_path)
    assert "chardata.mat" in str(e.value) and "\n" not in str(e.value), e.value
