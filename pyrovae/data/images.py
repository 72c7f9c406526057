"""A raw image data set: flattened data points with a fixed train/test (and validation) split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

# what the stored values are, which decides what each likelihood's data_kind gets (see InMemoryData)
PIXELS = (
    "8bit",  # uint8 levels 0..255 (MNIST, Fashion-MNIST, CIFAR-10, the digits)
    "grey",  # grey levels in [0, 1] (Omniglot)
    "binary",  # already binary 0/1, used as they are (statically binarized MNIST)
    "values",  # numbers used as they are (your own float data)
)


@dataclass(frozen=True)
class Images:
    """``train`` ``[N, D]`` and ``test`` ``[M, D]`` flattened data points, labels beside them,
    and optionally a validation part ``valid`` ``[V, D]`` for early stopping.

    ``pixels`` says what the values are (:data:`PIXELS`); left empty it follows the dtype:
    uint8 arrays are 8-bit pixels, float arrays values used as they are.
    """

    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    image_shape: tuple[int, int, int]
    source: str
    pixels: str = ""
    valid: np.ndarray | None = None
    valid_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.pixels:
            object.__setattr__(self, "pixels", "8bit" if self.train.dtype == np.uint8 else "values")
        if self.pixels not in PIXELS:
            raise DataError(f"unknown pixels {self.pixels!r}; valid: {', '.join(PIXELS)}")
        parts = [("train", self.train), ("test", self.test)]
        parts += [("valid", self.valid)] if self.valid is not None else []
        for name, a in parts:
            if a.ndim != 2 or a.shape[1] != self.x_dim:
                raise DataError(f"{self.source}: {name} has shape {a.shape}; it needs [N, {self.x_dim}]")
            if self.pixels == "8bit" and a.dtype != np.uint8:
                raise DataError(f"{self.source}: {name} holds {a.dtype}; 8-bit pixels are uint8")

    def fingerprint(self) -> str:
        """SHA-256 over the values of every part (train, test, validation, labels) and their
        shapes and types: two data sets with the same fingerprint hold the same numbers."""
        digest = hashlib.sha256(f"{self.pixels} {self.image_shape}".encode())
        for a in (self.train, self.test, self.valid, self.train_labels, self.test_labels, self.valid_labels):
            if a is not None:
                digest.update(f"{a.dtype} {a.shape}".encode())
                digest.update(np.ascontiguousarray(a).data)
        return digest.hexdigest()

    @property
    def x_dim(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def num_valid(self) -> int:
        return 0 if self.valid is None else int(self.valid.shape[0])
