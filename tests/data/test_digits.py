"""The embedded digits and the in-memory, on-device data they become."""

import numpy as np
import pytest
import torch

from pyrovae import ConfigError, likelihoods
from pyrovae.data import InMemoryData, load, load_digits


def test_real_digits_with_a_fixed_balanced_split():
    d = load_digits()
    assert d.train.shape == (4500, 784) and d.test.shape == (500, 784)
    assert d.train.dtype == np.uint8 and d.image_shape == (1, 28, 28)
    assert np.bincount(d.train_labels).tolist() == [450] * 10
    assert np.bincount(d.test_labels).tolist() == [50] * 10
    assert 0.10 < d.train.mean() / 255 < 0.16  # MNIST's mean ink
    again = load_digits()
    assert np.array_equal(d.train, again.train) and np.array_equal(d.test, again.test)


def _data(name, **kw):
    return InMemoryData(load_digits(), likelihoods.make(name, x_dim=784), **kw)


def test_dynamic_binarization_redraws_each_epoch_and_the_test_set_is_fixed():
    d = _data("bernoulli", binarization="dynamic")
    torch.manual_seed(0)
    a = next(d.train_batches(4500))
    b = next(d.train_batches(4500))
    assert set(a.unique().tolist()) == {0.0, 1.0}
    # the same images in another order, drawn again: compare sorted per-image ink instead
    assert not torch.equal(a.sum(0), b.sum(0))
    assert abs(a.mean().item() - b.mean().item()) < 0.01
    test_a, test_b = d.test, _data("bernoulli", seed=123).test
    assert torch.equal(test_a, test_b)  # one binarized test set for every run


def test_fixed_binarization_depends_on_the_seed_only():
    a, b, c = (
        _data("bernoulli", binarization="fixed", seed=1),
        _data("bernoulli", binarization="fixed", seed=1),
        _data("bernoulli", binarization="fixed", seed=2),
    )
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)


@pytest.mark.parametrize("name, lo, hi", [("gaussian", 0.0, 1.0), ("poisson", 0.0, 255.0),
                                          ("discretized_logistic", 0.0, 255.0),
                                          ("continuous_bernoulli", 0.0, 1.0)])  # fmt: skip
def test_each_likelihood_gets_its_representation(name, lo, hi):
    d = _data(name)
    assert d.train.min().item() == lo and d.train.max().item() == hi
    assert len(d.train.unique()) > 2  # grey levels kept


def test_batches_cover_the_epoch_once_and_keep_a_last_partial_batch():
    d = _data("poisson")  # integer counts: sums are exact in any order
    batches = list(d.train_batches(1000))
    assert [b.shape[0] for b in batches] == [1000] * 4 + [500]
    assert [b.shape[0] for b in d.train_batches(1000, drop_last=True)] == [1000] * 4
    assert torch.equal(torch.cat(batches).sum(0), d.train.sum(0))


def test_unknown_dataset_and_binarization():
    valid = "cifar10, digits, fashion_mnist, mnist, mnist_static, npz, omniglot"
    with pytest.raises(ConfigError, match=f"unknown dataset 'cifar'; valid datasets: {valid}$"):
        load("cifar")
    with pytest.raises(ConfigError, match="unknown binarization 'soft'"):
        _data("bernoulli", binarization="soft")
