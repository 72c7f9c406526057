"""A raw image data set: 8-bit pixels, flattened, with a fixed train/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Images:
    """``train`` ``[N, D]`` and ``test`` ``[M, D]`` flattened data points, labels beside them.

    uint8 arrays are 8-bit pixels, converted to what a likelihood models (binary draws, grey
    levels, counts); float arrays are used as they are.
    """

    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    image_shape: tuple[int, int, int]
    source: str

    @property
    def x_dim(self) -> int:
        return int(np.prod(self.image_shape))
