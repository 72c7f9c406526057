"""The validation set carved from the training set: the same points every run, disjoint from
training, and batched on the device like the test set."""

import numpy as np
import pytest
import torch

from pyrovae import ConfigError, likelihoods
from pyrovae.data import Images, InMemoryData, load, load_digits, split_validation


def _numbered(n):
    ids = np.arange(n, dtype=np.float32)[:, None]  # each point carries its index
    return Images(train=ids, test=ids[:2], train_labels=np.arange(n), test_labels=None, image_shape=(1, 1, 1),
                  source="numbered points")  # fmt: skip


@pytest.mark.parametrize("size, expected", [(10, 10), (0.25, 25), (0.0, 0), (0, 0)])
def test_sizes_are_counts_or_fractions_and_the_split_is_fixed_and_disjoint(size, expected):
    a, b = split_validation(_numbered(100), size), split_validation(_numbered(100), size)
    assert a.num_valid == expected and a.train.shape[0] == 100 - expected
    if expected:
        assert np.array_equal(a.valid, b.valid)  # the same points every time
        ids = np.concatenate([a.train[:, 0], a.valid[:, 0]])
        assert sorted(ids.tolist()) == list(range(100))  # disjoint, and together the training set
        assert np.array_equal(a.valid_labels, a.valid[:, 0].astype(int))  # labels follow their points
        assert np.all(np.diff(a.train[:, 0]) > 0)  # the rest keep their order
        assert not np.array_equal(a.valid[:, 0], np.arange(expected))  # drawn, not the first ones


@pytest.mark.parametrize("size", [100, -1, 1.5, True, "10"])
def test_sizes_that_leave_no_training_set_or_are_not_numbers_are_refused(size):
    with pytest.raises(ConfigError, match="validation size"):
        split_validation(_numbered(100), size)


def test_validation_batches_are_binarized_once_whatever_the_seed():
    bern = likelihoods.make("bernoulli", x_dim=784)
    images = load("digits", valid=500)
    assert images.train.shape == (4000, 784) and images.valid.shape == (500, 784)
    a = InMemoryData(images, bern, seed=1)
    b = InMemoryData(images, bern, "fixed", seed=2)
    assert a.num_valid == 500 and set(a.valid.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.valid, b.valid)
    assert torch.equal(torch.cat(list(a.valid_batches(128))), a.valid)
    assert [x.shape[0] for x in a.valid_batches(200)] == [200, 200, 100]
    plain = InMemoryData(load_digits(), bern)
    assert plain.num_valid == 0 and plain.valid is None and list(plain.valid_batches(100)) == []
