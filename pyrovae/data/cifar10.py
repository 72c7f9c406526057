"""CIFAR-10: 50,000 training and 10,000 test 8-bit colour images, 32x32, in 10 classes, read from
the binary version's archive in memory (nothing is unpacked to disk, nothing unpickled). For the
discretized logistic likelihood (8-bit levels 0..255).

Each record of ``cifar-10-batches-bin/*.bin`` is one label byte and 3,072 pixel bytes: 1,024 red,
1,024 green, 1,024 blue, each plane 32x32 row-major, which is already the ``(3, 32, 32)`` layout.

References: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import DataFile, default_folder, fetch, read_verified
from .images import Images

FILE = DataFile(
    "cifar-10-binary.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    size=170_052_171,
)
FOLDER = "cifar-10-batches-bin/"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)
IMAGE_SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32  # label byte, then the R, G, B planes


def parse_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3072]`` (uint8, planes R, G, B) and labels ``[N]`` of one CIFAR-10 .bin file."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(f"cannot read {where}: {len(data)} bytes is not a whole number of {RECORD}-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)  # [N, 1 + 3072]
    labels = records[:, 0]
    if labels.max() > 9:
        raise DataError(f"cannot read {where}: a label is {int(labels.max())}; CIFAR-10 labels are 0..9")
    return records[:, 1:], labels


def load_cifar10(path: str | Path | None = None, progress: bool = False) -> Images:
    """CIFAR-10's own split, 8-bit ``[50000, 3072]`` and ``[10000, 3072]`` images of shape
    (3, 32, 32) with labels, from the folder ``path`` (default ``$PYROVAE_DATA/cifar10``),
    downloading the archive (163 MiB) if missing."""
    folder = Path(path) if path is not None else default_folder("cifar10")
    fetch("cifar10", [FILE], folder, progress)
    archive = folder / FILE.name
    tar_bytes = read_verified(FILE, folder, gunzip=True)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for name in TRAIN_BATCHES + TEST_BATCHES:
                try:
                    member = tar.getmember(FOLDER + name)
                except KeyError:
                    raise DataError(f"cannot read {archive}: it lacks {FOLDER + name}") from None
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    raise DataError(f"cannot read {archive}: {FOLDER + name} is not a regular file")
                parts[name] = parse_batch(f.read(), f"{archive}:{FOLDER + name}")
    except tarfile.TarError as e:
        raise DataError(f"cannot read {archive}: {e}") from e

    def join(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([parts[n][0] for n in names]), np.concatenate([parts[n][1] for n in names])

    (train, train_labels), (test, test_labels) = join(TRAIN_BATCHES), join(TEST_BATCHES)
    return Images(
        train=train,
        test=test,
        train_labels=train_labels,
        test_labels=test_labels,
        image_shape=IMAGE_SHAPE,
        source=f"CIFAR-10 from {folder}",
        pixels="8bit",
    )
