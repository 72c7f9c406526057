"""Fashion-MNIST: 60,000 training and 10,000 test 8-bit images of clothes, in MNIST's IDX format.

References: Xiao, Rasul, Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms" (arXiv:1708.07747, 2017).
"""

from __future__ import annotations

from pathlib import Path

from .files import DataFile, default_folder
from .idx import load_idx_images
from .images import Images

MIRRORS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # plain HTTP: the SHA-256 guards it
)


def _file(name: str, sha256: str) -> DataFile:
    return DataFile(name, tuple(m + name for m in MIRRORS), sha256)


FILES = {  # SHA-256 of each .gz as served
    "train_images": _file(
        "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    "train_labels": _file(
        "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    "test_images": _file(
        "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    "test_labels": _file(
        "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
}


def load_fashion_mnist(path: str | Path | None = None, progress: bool = False) -> Images:
    """Fashion-MNIST's own split, 8-bit ``[60000, 784]`` and ``[10000, 784]`` with labels, from
    the folder ``path`` (default ``$PYROVAE_DATA/fashion_mnist``), downloading what is missing."""
    folder = Path(path) if path is not None else default_folder("fashion_mnist")
    return load_idx_images("fashion_mnist", FILES, folder, f"Fashion-MNIST from {folder}", progress)
