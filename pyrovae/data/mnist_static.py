"""Statically binarized MNIST: one fixed Bernoulli draw of each MNIST image, 50,000 training,
10,000 validation and 10,000 test images, as published by Larochelle and Murray (2011).

The pixels are already binary, so they are used as they are whatever the binarization setting;
the validation set is the published one (``valid``), not carved from the training set.

References: Larochelle, Murray, "The Neural Autoregressive Distribution Estimator" (AISTATS 2011);
Salakhutdinov, Murray, "On the Quantitative Analysis of Deep Belief Networks" (ICML 2008).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import DataFile, default_folder, fetch, read_verified
from .images import Images

MIRROR = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
PIXELS_PER_IMAGE = 784


def _file(name: str, sha256: str, size: int) -> DataFile:
    return DataFile(name, (MIRROR + name,), sha256, size=size)


FILES = {  # SHA-256 of each .amat as served (plain HTTP only: the hash is what guards it)
    "train": _file(
        "binarized_mnist_train.amat", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", 78_400_000
    ),
    "valid": _file(
        "binarized_mnist_valid.amat", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", 15_680_000
    ),
    "test": _file(
        "binarized_mnist_test.amat", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", 15_680_000
    ),
}
# each byte's class: 0 anything else, 1 a digit 0/1, 2 a separator (space, tab, carriage return), 3 a newline
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[[ord("0"), ord("1")]] = 1
_CLASS[[ord(" "), ord("\t"), ord("\r")]] = 2
_CLASS[ord("\n")] = 3


def parse_amat(data: bytes, where: str = "amat data", width: int = PIXELS_PER_IMAGE) -> np.ndarray:
    """The binary images ``[N, width]`` (uint8 0/1) of an .amat text: one image a line, ``width``
    single-digit values ``0``/``1`` separated by spaces. Vectorised over the bytes (78 MB in about
    a second) and strict: any other character, or a line of another length, fails."""
    b = np.frombuffer(data, dtype=np.uint8)
    cls = _CLASS[b]
    if (cls == 0).any():
        at = int(np.argmax(cls == 0))
        raise DataError(f"cannot read {where}: byte {at} is {data[at : at + 1]!r}; only 0, 1, spaces and newlines")
    digit = cls == 1
    if (digit[1:] & digit[:-1]).any():
        raise DataError(f"cannot read {where}: a value of several digits; every value is a single 0 or 1")
    starts = np.concatenate([[0], np.flatnonzero(cls == 3) + 1])
    starts = starts[starts < b.size]  # a final newline starts no line
    per_line = np.add.reduceat(digit.view(np.uint8), starts, dtype=np.int64) if b.size else np.zeros(0, np.int64)
    per_line = per_line[per_line > 0]  # blank lines hold no image
    bad = np.flatnonzero(per_line != width)
    if bad.size or not per_line.size:
        found = f"line {int(bad[0]) + 1} holds {int(per_line[bad[0]])} values" if bad.size else "no values"
        raise DataError(f"cannot read {where}: {found}, not {width} a line")
    return (b[digit] - ord("0")).reshape(-1, width)  # [N, width]


def load_mnist_static(path: str | Path | None = None, progress: bool = False) -> Images:
    """Binarized MNIST with its fixed split, binary ``[50000, 784]`` train, ``[10000, 784]``
    validation and test (no labels), from the folder ``path`` (default
    ``$PYROVAE_DATA/mnist_static``), downloading what is missing."""
    folder = Path(path) if path is not None else default_folder("mnist_static")
    fetch("mnist_static", list(FILES.values()), folder, progress)
    arrays = {key: parse_amat(read_verified(spec, folder), str(folder / spec.name)) for key, spec in FILES.items()}
    return Images(
        train=arrays["train"],
        test=arrays["test"],
        train_labels=None,
        test_labels=None,
        image_shape=(1, 28, 28),
        source=f"statically binarized MNIST from {folder}",
        pixels="binary",
        valid=arrays["valid"],
        valid_labels=None,
    )
