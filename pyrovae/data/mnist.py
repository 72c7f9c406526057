"""MNIST: 60,000 training and 10,000 test images of 8-bit digits, downloaded once into a folder.

With a Bernoulli likelihood the pixels are binarized dynamically (a fresh Bernoulli draw of each
grey level every epoch, the test set drawn once): the protocol of Burda et al. (2016).

References: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition" (1998); Burda, Grosse, Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016).
"""

from __future__ import annotations

from pathlib import Path

from .files import DataFile, default_folder
from .idx import load_idx_images
from .images import Images

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")


def _file(name: str, sha256: str, content_sha256: str) -> DataFile:
    return DataFile(name, tuple(m + name for m in MIRRORS), sha256, content_sha256)


# SHA-256 of each .gz as served, and of its uncompressed IDX content (a copy gzipped again, as
# ../shared/tools/fetch-mnist writes them, has other bytes and the same content)
FILES = {
    "train_images": _file(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train_labels": _file(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test_images": _file(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test_labels": _file(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}


def load_mnist(path: str | Path | None = None, progress: bool = False) -> Images:
    """MNIST's own split, 8-bit ``[60000, 784]`` and ``[10000, 784]`` with labels, from the folder
    ``path`` (default ``$PYROVAE_DATA/mnist`` or ``~/.cache/pyrovae/mnist``), downloading what is
    missing; every file is checked against its SHA-256 at every load."""
    folder = Path(path) if path is not None else default_folder("mnist")
    return load_idx_images("mnist", FILES, folder, f"MNIST from {folder}", progress)
