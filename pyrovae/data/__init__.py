"""Data sets by name, held on the device: the embedded digits (offline), your own .npz file, and
MNIST, statically binarized MNIST, Fashion-MNIST, Omniglot and CIFAR-10, each fetched once into a
folder and checked against its SHA-256 at every load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .cifar10 import load_cifar10
from .digits import load_digits
from .fashion_mnist import load_fashion_mnist
from .files import DataFile, default_folder
from .images import PIXELS, Images
from .in_memory import BINARIZATIONS, InMemoryData
from .mnist import load_mnist
from .mnist_static import load_mnist_static
from .npz import load_npz
from .omniglot import load_omniglot
from .validation import VALIDATION_SEED, split_validation, validation_size

DATASETS: dict[str, Callable[..., Images]] = {
    "cifar10": load_cifar10,
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "mnist_static": load_mnist_static,
    "npz": load_npz,
    "omniglot": load_omniglot,
}

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "PIXELS",
    "VALIDATION_SEED",
    "DataFile",
    "Images",
    "InMemoryData",
    "default_folder",
    "load",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_static",
    "load_npz",
    "load_omniglot",
    "split_validation",
    "validation_size",
]


def load(name: str, valid: int | float = 0, **options: Any) -> Images:
    """The data set ``name`` (one of :data:`DATASETS`), built by its loader with ``options``
    (``path``: the folder that holds its files, or the .npz file; ``progress``: show downloads),
    with ``valid`` training points (a count or a fraction) carved out as a validation set by
    :func:`split_validation`; ``mnist_static`` brings its own and takes ``valid=0``."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return split_validation(DATASETS[name](**options), valid)
