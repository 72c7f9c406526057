"""Your own data: an .npz file with ``train`` and ``test`` arrays."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError
from .images import Images


def check_headers(path: Path) -> None:
    """Read each array's header before its data: an array of Python objects (which only unpickling
    could read, and pyrovae never unpickles a data file) or a shape larger than the bytes the file
    holds is one line, before anything is allocated."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as member:
                    _check_header(path, info, member)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"cannot read {path}: it does not exist") from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {path}: not an .npz file ({(str(e).splitlines() or [''])[0]})") from e


def _check_header(path: Path, info: zipfile.ZipInfo, member: IO[bytes]) -> None:
    name = info.filename.removesuffix(".npy")
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise DataError(f"{path}: array {name!r} is in .npy format {version}, which pyrovae does not read")
    shape, _, dtype = readers[version](member)
    if dtype.hasobject:
        raise DataError(
            f"{path}: array {name!r} holds Python objects (pickled); pyrovae reads numbers only and "
            "never unpickles a data file"
        )
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size:
        raise DataError(
            f"{path}: array {name!r} claims shape {shape} of {dtype} ({claimed:,} bytes), but the file "
            f"holds {info.file_size:,}: it is damaged or not what it says"
        )


def load_npz(path: str | Path | None) -> Images:
    """Read ``train`` ``[N, ...]`` and ``test`` ``[M, ...]`` (and optionally ``train_labels``,
    ``test_labels``) from an .npz file. Each point is flattened; ``image_shape`` (C, H, W) is
    taken from the file when given, else from 3-D/4-D arrays, else (1, 1, D). uint8 arrays are
    8-bit pixels; float arrays are used as they are and must lie in the likelihood's support."""
    if path is None:
        raise DataError("dataset 'npz' needs data_path, the .npz file to read")
    path = Path(path)
    check_headers(path)
    try:
        with np.load(path, allow_pickle=False) as f:
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
