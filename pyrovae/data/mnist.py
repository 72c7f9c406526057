"""The full MNIST data set (60,000 + 10,000 images), downloaded once into a cache folder."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import Images

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def default_root() -> Path:
    return Path(os.environ.get("PYROVAE_DATA", Path.home() / ".cache" / "pyrovae")) / "mnist"


def read_idx(path: Path) -> np.ndarray:
    """Parse a (gzipped) IDX file of unsigned bytes: magic 0x0000080N, N big-endian sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an IDX file of unsigned bytes")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise DataError(f"cannot read MNIST file {path}: {e}; delete it to download again") from e


def download(root: Path, mirrors: tuple[str, ...] = MIRRORS) -> None:
    """Fetch the four files that are missing in ``root``, each written atomically."""
    root.mkdir(parents=True, exist_ok=True)
    for fname in FILES.values():
        target = root / fname
        if target.exists():
            continue
        errors = []
        for base in mirrors:
            try:
                with urllib.request.urlopen(base + fname, timeout=60) as r:
                    payload = r.read()
            except OSError as e:
                errors.append(f"{base}: {e}")
                continue
            fd, tmp = tempfile.mkstemp(dir=root, prefix=fname + ".")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, target)
            break
        else:
            raise DataError(f"could not download {fname}: " + "; ".join(errors))


def load_mnist(path: str | Path | None = None, mirrors: tuple[str, ...] = MIRRORS) -> Images:
    """MNIST's own split: 60,000 training and 10,000 test images, downloaded into the folder
    ``path`` (default ``$PYROVAE_DATA/mnist`` or ``~/.cache/pyrovae/mnist``) if missing."""
    root = Path(path) if path is not None else default_root()
    download(root, mirrors)
    arrays = {key: read_idx(root / fname) for key, fname in FILES.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"MNIST {split}: {n_img} images but {n_lab} labels")
    h, w = arrays["train_images"].shape[1:]
    return Images(
        train=arrays["train_images"].reshape(-1, h * w),
        test=arrays["test_images"].reshape(-1, h * w),
        train_labels=arrays["train_labels"], test_labels=arrays["test_labels"],
        image_shape=(1, h, w), source=f"MNIST from {root}",
    )  # fmt: skip
