"""Your own data: an .npz file with ``train`` and ``test`` arrays."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import Images


def load_npz(path: str | Path | None) -> Images:
    """Read ``train`` ``[N, ...]`` and ``test`` ``[M, ...]`` (and optionally ``train_labels``,
    ``test_labels``) from an .npz file. Each point is flattened; ``image_shape`` (C, H, W) is
    taken from the file when given, else from 3-D/4-D arrays, else (1, 1, D). uint8 arrays are
    8-bit pixels; float arrays are used as they are and must lie in the likelihood's support."""
    if path is None:
        raise DataError("dataset 'npz' needs data_path, the .npz file to read")
    path = Path(path)
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot read {path}: {first}") from e
    missing = [k for k in ("train", "test") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; it needs train and test")
    train, test = arrays["train"], arrays["test"]
    for key, a in (("train", train), ("test", test)):
        if a.dtype.kind not in "biuf":
            raise DataError(f"{path}: {key} holds {a.dtype} values; it needs numbers (uint8 pixels or floats)")
        if a.ndim < 2:
            raise DataError(
                f"{path}: {key} has shape {a.shape}; it needs one data point a row, [N, D] "
                "(or [N, H, W], [N, C, H, W] images)"
            )
        if a.shape[0] == 0 or math.prod(a.shape[1:]) == 0:
            raise DataError(f"{path}: {key} is empty (shape {a.shape}); it needs at least one data point")
    if (train.dtype == np.uint8) != (test.dtype == np.uint8):
        raise DataError(
            f"{path}: train is {train.dtype} but test is {test.dtype}; "
            "give both as uint8 pixels or both as numbers to use as they are"
        )
    shape: tuple[int, int, int]
    if "image_shape" in arrays:
        given = arrays["image_shape"]
        if given.shape != (3,) or given.dtype.kind not in "iu" or (given < 1).any():
            raise DataError(f"{path}: image_shape must be three positive integers (C, H, W), got {given.tolist()}")
        c, h, w = (int(v) for v in given)
        shape = (c, h, w)
    elif train.ndim == 4:
        shape = (train.shape[1], train.shape[2], train.shape[3])
    elif train.ndim == 3:
        shape = (1, train.shape[1], train.shape[2])
    else:
        shape = (1, 1, int(np.prod(train.shape[1:])))
    flat = [a.reshape(a.shape[0], -1) for a in (train, test)]
    if flat[0].shape[1] != flat[1].shape[1] or flat[0].shape[1] != int(np.prod(shape)):
        raise DataError(f"{path}: train, test and image_shape disagree on the size of a point")
    if flat[0].dtype != np.uint8:
        flat = [a.astype(np.float32) for a in flat]
    return Images(
        train=flat[0],
        test=flat[1],
        train_labels=arrays.get("train_labels"),
        test_labels=arrays.get("test_labels"),
        image_shape=shape,
        source=str(path),
    )
