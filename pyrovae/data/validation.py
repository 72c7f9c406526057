"""A validation set carved from the training set, for early stopping: the same split every run.

The points are drawn by ``numpy.random.default_rng(VALIDATION_SEED).permutation(N)``, a generator
seeded on its own, so the split depends only on the size of the training set and of the
validation part: never on pyrovae's ``seed``, the estimator or torch's RNG. Every run, seed and
estimator on a data set is stopped on the same points, and none of them is trained on.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from ..errors import ConfigError, DataError
from .images import Images

VALIDATION_SEED = 0


def validation_size(size: int | float, num_train: int) -> int:
    """The number of points ``size`` asks for: a count (an int >= 0) or a fraction in [0, 1)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ConfigError(f"validation size must be a count or a fraction in [0, 1), got {size!r}")
    if isinstance(size, numbers.Integral):
        n = int(size)
    elif 0 <= size < 1:
        n = round(float(size) * num_train)
    else:
        raise ConfigError(f"validation size {size!r} is neither a count (an integer) nor a fraction in [0, 1)")
    if n < 0 or n >= num_train:
        raise ConfigError(f"validation size {size!r} must leave training points: the training set has {num_train}")
    return n


def split_validation(images: Images, size: int | float) -> Images:
    """``images`` with ``size`` training points (a count, or a fraction of the training set) moved
    to ``valid``; the rest stay in ``train`` in their order. ``size=0`` returns ``images``. A data
    set that comes with its own validation set (``mnist_static``) is refused."""
    n = validation_size(size, images.train.shape[0])
    if n == 0:
        return images
    if images.valid is not None:
        raise DataError(
            f"{images.source} has its own validation set ({images.num_valid} points); "
            "carve none from its training set (validation size 0)"
        )
    order = np.random.default_rng(VALIDATION_SEED).permutation(images.train.shape[0])
    valid_idx, train_idx = np.sort(order[:n]), np.sort(order[n:])
    labels = images.train_labels
    return dataclasses.replace(
        images,
        train=images.train[train_idx],
        valid=images.train[valid_idx],
        train_labels=None if labels is None else labels[train_idx],
        valid_labels=None if labels is None else labels[valid_idx],
    )
