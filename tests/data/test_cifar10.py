"""CIFAR-10 (the binary version's .tar.gz), read in memory from a small archive the test writes."""

import numpy as np
import pytest

from pyrovae import DataError, likelihoods
from pyrovae.data import InMemoryData, cifar10, load

from .fakes import respec, write_cifar


def _batches(rng, names):
    return {n: (rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 2, dtype=np.uint8))
            for n in names}  # fmt: skip


def test_reads_the_archive_in_memory_as_channel_planes(tmp_path, monkeypatch):
    batches = _batches(np.random.default_rng(0), cifar10.TRAIN_BATCHES + cifar10.TEST_BATCHES)
    write_cifar(tmp_path / cifar10.FILE.name, batches)
    monkeypatch.setattr(cifar10, "FILE", respec(cifar10.FILE, tmp_path, size=None))
    images = load("cifar10", path=tmp_path)
    assert images.image_shape == (3, 32, 32) and images.pixels == "8bit"
    assert images.train.shape == (10, 3072) and images.test.shape == (2, 3072)
    train = np.concatenate([batches[n][0] for n in cifar10.TRAIN_BATCHES])
    assert np.array_equal(images.train.reshape(-1, 3, 32, 32), train)  # R, G, B planes, each row-major
    assert np.array_equal(images.test_labels, batches["test_batch.bin"][1])
    assert [p.name for p in tmp_path.iterdir()] == [cifar10.FILE.name]  # nothing unpacked to disk
    d = InMemoryData(images, likelihoods.make("discretized_logistic", x_dim=3072))
    assert d.train.max().item() == train.max() and d.train.dtype.is_floating_point


def test_an_archive_without_a_batch_is_refused(tmp_path, monkeypatch):
    write_cifar(tmp_path / cifar10.FILE.name, _batches(np.random.default_rng(1), cifar10.TRAIN_BATCHES))
    monkeypatch.setattr(cifar10, "FILE", respec(cifar10.FILE, tmp_path, size=None))
    lacks = "cannot read .*cifar-10-binary.tar.gz: it lacks cifar-10-batches-bin/test_batch.bin"
    with pytest.raises(DataError, match=lacks):
        load("cifar10", path=tmp_path)
