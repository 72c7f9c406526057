"""Your own data: an .npz file with ``train`` and ``test`` arrays."""

from __future__ import annotations

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
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    missing = [k for k in ("train", "test") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; it needs train and test")
    train, test = arrays["train"], arrays["test"]
    if "image_shape" in arrays:
        shape = tuple(int(v) for v in arrays["image_shape"])
    elif train.ndim == 4:
        shape = tuple(train.shape[1:])
    elif train.ndim == 3:
        shape = (1, *train.shape[1:])
    else:
        shape = (1, 1, int(np.prod(train.shape[1:])))
    flat = [a.reshape(a.shape[0], -1) for a in (train, test)]
    if flat[0].shape[1] != flat[1].shape[1] or flat[0].shape[1] != int(np.prod(shape)):
        raise DataError(f"{path}: train, test and image_shape disagree on the size of a point")
    if flat[0].dtype != np.uint8:
        flat = [a.astype(np.float32) for a in flat]
    return Images(
        train=flat[0], test=flat[1], train_labels=arrays.get("train_labels"),
        test_labels=arrays.get("test_labels"), image_shape=shape, source=str(path),
    )  # fmt: skip
