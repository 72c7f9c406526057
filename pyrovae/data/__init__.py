"""Data sets: the embedded digits (offline) and full MNIST (downloaded), held on the device."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .digits import load_digits
from .images import Images
from .in_memory import BINARIZATIONS, InMemoryData
from .mnist import load_mnist
from .npz import load_npz

DATASETS = {"digits": load_digits, "mnist": load_mnist, "npz": load_npz}

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "Images",
    "InMemoryData",
    "load",
    "load_digits",
    "load_mnist",
    "load_npz",
]


def load(name: str, **options: Any) -> Images:
    """The data set ``name``: "digits" (embedded), "mnist" (downloaded), "npz" (your file)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)
