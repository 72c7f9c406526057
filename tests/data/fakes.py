"""Small files in each real format, with their own SHA-256, and specs that point at them."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import socket
import struct
import tarfile
from pathlib import Path

import numpy as np

from pyrovae.data.files import DataFile


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def closed_port_url() -> str:
    """A localhost URL nothing listens on: a download from it fails at once, connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def respec(spec: DataFile, folder: Path, base: str | None = None, **changes) -> DataFile:
    """``spec`` pinned to the hash of the file of its name in ``folder``, served at ``base``
    (default: a closed port) instead of the real mirrors."""
    base = base or closed_port_url()
    sha = sha256(folder / spec.name)
    return dataclasses.replace(spec, urls=(base + spec.name,), sha256=sha, content_sha256=None, **changes)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gzip(path: Path, content: bytes, mtime: int = 0, level: int = 9) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime, compresslevel=level) as f:
        f.write(content)


def write_amat(path: Path, images: np.ndarray) -> None:
    """One image a line, 0/1 values separated by spaces, as Larochelle's files."""
    path.write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in images))


def write_cifar(path: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A .tar.gz holding ``cifar-10-batches-bin/<name>``: label byte + 3072 pixel bytes a record."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (images, labels) in batches.items():
            records = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1).astype(np.uint8)
            data = records.tobytes()
            info = tarfile.TarInfo("cifar-10-batches-bin/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


def write_chardata(path: Path, train: np.ndarray, test: np.ndarray, alphabets: np.ndarray) -> None:
    """Burda's chardata.mat layout: ``data`` [784, N], one image a column, each column a 28x28
    image in MATLAB's column-major order (``img(:)``), and a one-hot ``target`` [50, N]."""
    import scipy.io

    def columns(images: np.ndarray) -> np.ndarray:
        return np.stack([img.ravel(order="F") for img in images], axis=1).astype(np.float64)

    target = np.zeros((50, len(train)))
    target[alphabets, np.arange(len(train))] = 1
    scipy.io.savemat(path, {"data": columns(train), "testdata": columns(test), "target": target})


def letter_l(side: int = 28) -> np.ndarray:
    """An upright "L": a vertical stroke on the left, a horizontal one at its foot."""
    img = np.zeros((side, side))
    img[3:22, 5] = 1.0
    img[21, 5:18] = 1.0
    return img
