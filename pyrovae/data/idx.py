"""The IDX format of MNIST and Fashion-MNIST, and a data set made of four IDX files.

An IDX file of unsigned bytes: magic ``00 00 08 N`` (N dimensions), N big-endian uint32 sizes,
then the values in row-major order. Images are ``[N, 28, 28]``, labels ``[N]``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import DataFile, fetch, read_verified
from .images import Images

SPLITS = ("train_images", "train_labels", "test_images", "test_labels")


def parse_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """The uint8 array held by the (uncompressed) IDX bytes ``data``."""
    try:
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an IDX file of unsigned bytes")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (ValueError, struct.error) as e:
        raise DataError(f"cannot read {where}: {e}") from e


def load_idx_images(
    dataset: str, files: dict[str, DataFile], folder: Path, source: str, progress: bool = False
) -> Images:
    """The data set of the four gzipped IDX ``files`` (keys :data:`SPLITS`) in ``folder``, fetched
    if missing and verified as they are read: 8-bit images ``[N, H * W]`` and their labels."""
    fetch(dataset, list(files.values()), folder, progress)
    arrays = {}
    for key in SPLITS:
        arrays[key] = parse_idx(read_verified(files[key], folder, gunzip=True), str(folder / files[key].name))
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{dataset} {split}: images of shape {images.shape} and labels of shape {labels.shape} "
                "do not make a data set of [N, H, W] images and [N] labels"
            )
    h, w = arrays["train_images"].shape[1:]
    if arrays["test_images"].shape[1:] != (h, w):
        raise DataError(f"{dataset}: train images are {h}x{w}, test images {arrays['test_images'].shape[1:]}")
    return Images(
        train=arrays["train_images"].reshape(-1, h * w),  # [N, H * W]
        test=arrays["test_images"].reshape(-1, h * w),
        train_labels=arrays["train_labels"],
        test_labels=arrays["test_labels"],
        image_shape=(1, h, w),
        source=source,
        pixels="8bit",
    )
